"""Pick an algorithm for a correlation, and say why."""

from __future__ import annotations

from . import ALGORITHMS


def choose(spec):
    """Return ``(method, reason)`` for ``spec``.

    A simple cost model: the direct method does one pass over the input per
    kernel tap, so it wins when the taps are few compared with the channels
    (1x1 kernels, depthwise layers); otherwise im2col + GEMM.
    """
    cg = spec.in_channels // spec.groups
    if cg == 1:
        return "direct", f"depthwise-like (1 input channel per group): {spec.taps} broadcast multiplies"
    if spec.taps == 1:
        return "direct", "1-tap kernel: a single matrix product, no im2col copy"
    for name in ("gemm", "direct"):
        ok, _ = ALGORITHMS[name].supports(spec)
        if ok:
            return name, f"{spec.taps} taps x {cg} channels per group: im2col + BLAS GEMM"
    raise AssertionError("direct supports everything")

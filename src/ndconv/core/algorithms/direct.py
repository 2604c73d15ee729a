"""Direct method: the lecture's formula, a sum over kernel taps of shifted slices.

``y = sum_t w[:, :, t] @ x[shifted by t]``: one matrix product (or, for
depthwise layers, one broadcast multiply) per kernel tap, never a loop over
pixels. Best when the kernel has few taps; its cost grows with the taps.

With numba installed, float32/float64 correlations without input dilation
run the same sum compiled (:mod:`._direct_jit`): stride 1 layers as one
contiguous multiply-add per (channel, tap) over a zero-padded slab in cache,
and a weight gradient's correlation (a large kernel, few outputs) as a dot
product per output. That is what wins for layers with few input channels
(a network's first layer, a depthwise layer's gradients), where a matrix
product is mostly packing.
"""

from __future__ import annotations

import math

import numpy as np

from .._windows import pad
from . import _direct_jit, portable


def supports(spec):
    return True, "any arguments"


def run(x, w, spec):
    if not spec.numpy:  # another array-API library: the same formula out of place
        return portable.direct(x, w, spec)
    compiled = _direct_jit.plan(spec)
    if compiled is not None:
        return _direct_jit.run(compiled, x, w)
    xp = pad(x, spec.pairs, spec.padding_mode, lhs_dilation=spec.lhs_dilation)
    B, C = xp.shape[:2]
    g = spec.groups
    Cg, O = C // g, spec.out_channels
    Og = O // g
    S_out = spec.out_spatial
    P = math.prod(S_out)
    xg = xp.reshape(B, g, Cg, *xp.shape[2:])
    wt = w.reshape(g, Og, Cg, spec.taps)
    if Cg == 1:
        # Depthwise: each output channel sees one input channel, so a tap is a
        # broadcast multiply, cheaper than a matrix product of width one.
        out = np.zeros((B, g, Og, *S_out), dtype=spec.dtype)
        expand = (slice(None), slice(None)) + (None,) * len(S_out)
        for t, tap in enumerate(np.ndindex(*spec.kernel_size)):
            sl = xg[(slice(None), slice(None), slice(None), *spec.tap_slices(tap))]
            out += wt[:, :, 0, t][expand] * sl
        return out.reshape(B, O, *S_out)
    # One GEMM per tap over all batch items: (g, Og, Cg) @ (g, Cg, B*P).
    acc = np.zeros((g, Og, B * P), dtype=spec.dtype)
    col = np.empty((g, Cg, B, *S_out), dtype=spec.dtype)
    for t, tap in enumerate(np.ndindex(*spec.kernel_size)):
        sl = xg[(slice(None), slice(None), slice(None), *spec.tap_slices(tap))]
        np.copyto(col, np.moveaxis(sl, 0, 2))
        acc += np.matmul(wt[..., t], col.reshape(g, Cg, B * P))
    out = acc.reshape(g, Og, B, *S_out)
    return np.ascontiguousarray(np.moveaxis(out.reshape(O, B, *S_out), 0, 1))


def run_bias(x, w, spec, bias):
    """``run`` plus ``bias``: the compiled kernel adds it as it writes the output."""
    compiled = _direct_jit.plan(spec) if spec.numpy else None
    if compiled is not None:
        return _direct_jit.run(compiled, x, w, bias)
    return add_bias(run(x, w, spec), bias)


def estimate(spec):
    """Estimated seconds (see :mod:`ndconv.algorithms.cost`)."""
    from .cost import RATES as r, gemm_eff

    compiled = _direct_jit.plan(spec)
    if compiled is not None:
        t = _direct_jit.seconds(compiled)
        if spec.in_channels == spec.groups and not compiled.dot:
            t *= 1 + 1e-9  # depthwise runs the same kernel: let that record name the pick
        return t
    B, O, g = spec.batch, spec.out_channels, spec.groups
    Cg = spec.in_channels // g
    P = math.prod(spec.out_spatial)
    it = spec.dtype.itemsize
    if Cg == 1:
        # Two passes over whole (out-of-cache) arrays per tap.
        per_tap = 3 * B * O * P * it / r["copy"]
    else:
        per_tap = (
            2 * B * spec.in_channels * P * it / r["copy"]
            + 2 * B * O * P * Cg / (r["gemm"] * gemm_eff(Cg, O // g))
            + 3 * B * O * P * it / r["copy"]
        )
    if not spec.numpy:  # the portable twin's calls: per tap or per output position
        return spec.taps * per_tap + portable.calls(spec, per_tap=4, fixed=6)
    return spec.taps * (per_tap + r["step"])


def reason(spec):
    compiled = _direct_jit.plan(spec)
    if compiled is not None:
        if compiled.dot:
            return f"{spec.taps} taps, few outputs: one compiled dot product per output"
        return (f"{spec.in_channels // spec.groups} input channels per group x {spec.taps} taps: "
                "compiled multiply-adds over cache-sized slabs")
    if not spec.numpy:
        return f"{spec.taps} taps: one {spec.library} matmul per tap over strided slices"
    return f"{spec.taps} taps: one product per tap over shifted slices, no im2col copy"


def workspace_bytes(spec):
    """Padded input, output and one more output-sized product per tap; with
    several channels per group the accumulator and the gathered tap."""
    P = spec.batch * math.prod(spec.out_spatial) * spec.dtype.itemsize
    held = padded_and_output_bytes(spec) + P * spec.out_channels
    if spec.in_channels // spec.groups > 1:  # and the product before it is added
        held += P * (spec.in_channels + spec.out_channels)
    return held


from .record import ARRAY_API, Algorithm, add_bias, padded_and_output_bytes  # noqa: E402

ALGORITHM = Algorithm(
    name="direct", supports=supports, run=run, estimate=estimate, reason=reason,
    workspace_bytes=workspace_bytes, run_bias=run_bias, arrays=("numpy", ARRAY_API),
)

"""Algorithms that compute one general cross-correlation (:class:`CorrSpec`).

Each module declares ``supports(spec) -> (bool, reason)`` and ``run(x, w, spec)``.
:func:`run` dispatches to the chosen one; ``method='auto'`` asks
:func:`ndconv.algorithms.choose.choose` which.
"""

from __future__ import annotations

from . import depthwise, direct, fft, gemm, implicit, winograd
from .spec import CorrSpec

ALGORITHMS = {
    "direct": direct, "gemm": gemm, "fft": fft, "winograd": winograd,
    "depthwise": depthwise, "implicit": implicit,
}


def run(x, w, spec, method="auto"):
    """Compute the correlation described by ``spec`` with ``method``."""
    from .choose import choose

    if method == "auto":
        method = choose(spec)[0]
    algo = ALGORITHMS.get(method)
    if algo is None:
        raise ValueError(
            f"`method` (={method!r}) must be 'auto' or one of {tuple(ALGORITHMS)}"
        )
    ok, why = algo.supports(spec)
    if not ok:
        raise ValueError(f"`method`={method!r} cannot compute this correlation: {why}")
    return algo.run(x, w, spec)


__all__ = ["ALGORITHMS", "CorrSpec", "run"]

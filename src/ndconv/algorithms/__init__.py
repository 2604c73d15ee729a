"""Algorithms that compute one general cross-correlation (:class:`CorrSpec`).

Each algorithm is one :class:`~ndconv.algorithms.record.Algorithm` record at
the end of its own module (what it supports, how it runs, its cost estimate,
its error and NaN behaviour, its memory); :data:`ALGORITHMS` registers them.
:func:`run` dispatches to the chosen one; ``method='auto'`` asks
:func:`ndconv.algorithms.choose.choose` which. Nothing here names a method.
"""

from __future__ import annotations

import math

import numpy as np

from .. import _memory
from . import depthwise, direct, fft, gemm, implicit, jax, scatter, torch, winograd
from .record import ARRAY_API, Algorithm, register
from .spec import CorrSpec

#: ``{name: Algorithm}``, in the order the README's method table lists them.
ALGORITHMS = register(
    direct.ALGORITHM, gemm.ALGORITHM, fft.ALGORITHM, winograd.ALGORITHM,
    depthwise.ALGORITHM, implicit.ALGORITHM, scatter.ALGORITHM,
    torch.ALGORITHM, jax.ALGORITHM,
)


def methods_for(library="numpy"):
    """Names of the algorithms that compute on ``library``'s arrays, in table order.

    ``'numpy'``: every CPU algorithm; another library (``'torch'``, ``'jax'``,
    ``'cupy'``, ...): the portable ones and that library's native one.
    """
    return [name for name, algo in ALGORITHMS.items()
            if library in algo.arrays or (library != "numpy" and ARRAY_API in algo.arrays)]


#: Below this many bytes of input and output, skip the check against the
#: available memory (reading it costs more than a small convolution); a limit
#: the user set is always checked.
GUARD_BYTES = 256 * 2**20


def check_memory(spec, x=None):
    """Refuse, before allocating, a correlation whose arrays cannot fit.

    Counts the padded input and the output (the least any method holds at
    once); a valid but enormous padding or input dilation is caught here
    rather than by the operating system. Arrays on an accelerator (``x`` of
    a non-NumPy spec) are compared with the device's memory, never the host's.
    """
    nbytes = spec.dtype.itemsize * (
        spec.batch * spec.in_channels * math.prod(spec.padded_spatial)
        + spec.batch * spec.out_channels * math.prod(spec.out_spatial)
    )
    if nbytes > GUARD_BYTES or _memory.has_explicit_limit():
        free = _memory.HOST if spec.numpy or x is None else _memory.device_free_memory(
            spec.library, x)
        _memory.check(nbytes, f"a correlation of padded input {spec.padded_spatial} "
                              f"and output {spec.out_shape}", free)


def _finite(x, w):
    """No NaN or Inf in ``x`` or ``w``, without a temporary array as large as x.

    A sum is NaN or Inf whenever a term is; a finite sum that overflows only
    sends the call to a slower method, never to a wrong answer.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(np.sum(x)) and np.isfinite(np.sum(w)))


def run(x, w, spec, method="auto"):
    """Compute the correlation described by ``spec`` with ``method``."""
    from .choose import choose

    check_memory(spec, x)
    if method == "auto":
        method = choose(spec)[0]
        if ALGORITHMS[method].mixes_nonfinite(spec) and not _finite(x, w):
            # FFT and Winograd mix a whole block of inputs into every output of
            # the block (and Inf - Inf = NaN): one NaN or Inf would spoil the
            # block. PyTorch keeps them where the window sees them; so do these.
            from .choose import candidates

            est = {k: v for k, v in candidates(spec)[0].items()
                   if not ALGORITHMS[k].mixes_nonfinite(spec)}
            method = min(est, key=est.get)
    algo = ALGORITHMS.get(method)
    if algo is None:
        raise ValueError(
            f"`method` (={method!r}) must be 'auto' or one of {tuple(ALGORITHMS)}"
        )
    ok, why = algo.accepts(spec)
    if not ok:
        raise ValueError(f"`method`={method!r} cannot compute this correlation: {why}")
    # NaN, Inf and overflow are values here, as in PyTorch: no RuntimeWarning.
    with np.errstate(invalid="ignore", over="ignore"):
        return algo.run(x, w, spec)


__all__ = ["ALGORITHMS", "Algorithm", "CorrSpec", "check_memory", "methods_for", "run"]

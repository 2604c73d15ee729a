"""The direct and GEMM methods written once against the Python array API standard.

They run on the arrays of any library that follows the standard (PyTorch,
JAX, CuPy, dask, ``array_api_strict``) through the namespace ``spec.xp``, with
nothing but slicing, ``matmul``, ``reshape``, ``stack``/``concat`` and the
padding of :func:`ndconv.core._windows.pad_portable`. Every operation is out of
place and differentiable, so ``torch.autograd`` and ``jax.grad`` see through
a whole ``ndconv.conv``. The NumPy arrays keep the tuned modules
(:mod:`.direct`, :mod:`.gemm`), which write into buffers they own.
"""

from __future__ import annotations

import math

import numpy as np

from .._windows import pad_portable

#: Upper bound on one im2col buffer of :func:`gemm`, in bytes (as :mod:`.gemm`).
TILE_BYTES = 32 * 2**20


def calls(spec, per_tap, fixed):
    """Seconds of the library calls the portable code makes beyond NumPy's tuned
    code (each a Python-level step of :data:`~ndconv.algorithms.cost.RATES`);
    0 for NumPy arrays, which the tuned code computes. The direct method loops
    over the taps or the output positions, whichever are fewer."""
    if spec.numpy:
        return 0.0
    from .cost import RATES

    return (per_tap * min(spec.taps, math.prod(spec.out_spatial)) + fixed) * RATES["step"]


def _padded(x, spec):
    return pad_portable(
        spec.xp, x, spec.pairs, spec.padding_mode, lhs_dilation=spec.lhs_dilation
    )


def _tap_columns(xg, spec, tap):
    """The padded input that kernel tap ``tap`` multiplies, (B, g, Cg, P)."""
    B, g, Cg = xg.shape[:3]
    sl = xg[(slice(None), slice(None), slice(None), *spec.tap_slices(tap))]
    return spec.xp.reshape(sl, (B, g, Cg, math.prod(spec.out_spatial)))


def direct(x, w, spec):
    """The lecture's sum over taps: one batched ``matmul`` per kernel tap, or,
    with fewer outputs than taps (a weight gradient, whose kernel is the
    output gradient), one per output position over its whole window."""
    xp = spec.xp
    g, O = spec.groups, spec.out_channels
    Cg, Og = spec.in_channels // g, O // g
    xpad = _padded(x, spec)
    B = xpad.shape[0]
    xg = xp.reshape(xpad, (B, g, Cg, *xpad.shape[2:]))
    if math.prod(spec.out_spatial) < spec.taps:
        return _direct_by_outputs(xp, xg, w, spec)
    wt = xp.reshape(w, (g, Og, Cg, spec.taps))
    acc = None
    for t, tap in enumerate(np.ndindex(*spec.kernel_size)):
        cols = _tap_columns(xg, spec, tap)
        if Cg == 1:
            # One input channel per group: a broadcast multiply, not a
            # matrix product of width one.
            term = xp.expand_dims(wt[:, :, 0, t], axis=-1) * cols
        else:
            term = xp.matmul(wt[:, :, :, t], cols)  # (g, Og, Cg) @ (B, g, Cg, P)
        acc = term if acc is None else acc + term
    return xp.reshape(acc, (B, O, *spec.out_spatial))


def _direct_by_outputs(xp, xg, w, spec):
    """Each output position's window (B, g, Cg * taps) times the kernel."""
    B, g, Cg = xg.shape[:3]
    O = spec.out_channels
    wmat = xp.reshape(w, (g, O // g, Cg * spec.taps))
    cols = []
    for pos in np.ndindex(*spec.out_spatial):
        window = xg[(slice(None), slice(None), slice(None), *(
            slice(p * s, p * s + d * (k - 1) + 1, d)
            for p, s, d, k in zip(pos, spec.stride, spec.dilation, spec.kernel_size)))]
        win = xp.reshape(window, (B, g, Cg * spec.taps, 1))
        cols.append(xp.matmul(wmat, win))  # (g, Og, Cg*K) @ (B, g, Cg*K, 1)
    out = cols[0] if len(cols) == 1 else xp.concat(cols, axis=-1)
    return xp.reshape(out, (B, O, *spec.out_spatial))


def gemm(x, w, spec):
    """im2col: the taps' columns stacked, one ``matmul`` per tile of the batch."""
    xp = spec.xp
    g, O = spec.groups, spec.out_channels
    Cg, Og = spec.in_channels // g, O // g
    P = math.prod(spec.out_spatial)
    xpad = _padded(x, spec)
    B = xpad.shape[0]
    # Columns in (Cg, taps) order, which is the weight's own flat order.
    wmat = xp.reshape(w, (g, Og, Cg * spec.taps))
    per_item = spec.in_channels * spec.taps * P * spec.dtype.itemsize
    step = max(1, TILE_BYTES // max(per_item, 1))
    outs = []
    for b0 in range(0, B, step):
        blk = xpad[b0:min(B, b0 + step), ...]
        xg = xp.reshape(blk, (blk.shape[0], g, Cg, *blk.shape[2:]))
        taps = [_tap_columns(xg, spec, tap) for tap in np.ndindex(*spec.kernel_size)]
        cols = xp.reshape(xp.stack(taps, axis=3), (blk.shape[0], g, Cg * spec.taps, P))
        outs.append(xp.matmul(wmat, cols))  # (g, Og, K*Cg) @ (b, g, K*Cg, P)
    out = outs[0] if len(outs) == 1 else xp.concat(outs, axis=0)
    return xp.reshape(out, (B, O, *spec.out_spatial))

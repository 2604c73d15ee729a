"""GEMM method: im2col in a channels-last layout, in tiles of bounded size.

The padded input is copied once into ``(B, *S, C)`` order, so each im2col row
``(*K, C)`` is made of contiguous runs of ``C`` values; the columns of a tile of
output positions are gathered into one buffer and multiplied with the kernel
reshaped to ``(K*C, O)`` by BLAS. The buffer never exceeds :data:`TILE_BYTES`
(plus one output row), so memory stays bounded whatever the input size.

Small correlations (a layer of a small network) take one gather instead:
the flat index of every column entry in the input, padding and input
dilation included, is computed once per spec and kept (:func:`_gather_index`),
so a call is one ``take`` and one matmul, not the dozen NumPy calls of
padding, strided views and tiles, which cost more than the arithmetic there.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .._windows import pad, source_index, windows
from . import portable

#: Upper bound on the im2col buffer, in bytes.
TILE_BYTES = 32 * 2**20

#: Largest gather index (entries: channels x taps x output positions) kept
#: per spec, and largest column buffer (bytes) gathered in one ``take``:
#: above ~200 kB of columns the padded copy and strided view gather faster
#: than ``take``'s scattered reads (measured on the digits CNN's layers and
#: their gradients, batch 1-64, 1 thread).
GATHER_ENTRIES = 2**16
GATHER_BYTES = 192 * 2**10


def supports(spec):
    return True, "any arguments"


def _tiles(batch, rows, row_bytes):
    """Blocks ``(b0, b1, i0, i1)`` of (batch, first output dim) under TILE_BYTES."""
    per_tile = max(1, TILE_BYTES // max(row_bytes, 1))
    if per_tile >= rows:
        nb = max(1, per_tile // rows)
        for b0 in range(0, batch, nb):
            yield b0, min(batch, b0 + nb), 0, rows
    else:
        for b0 in range(batch):
            for i0 in range(0, rows, per_tile):
                yield b0, b0 + 1, i0, min(rows, i0 + per_tile)


def _gathers(spec):
    """Whether ``spec`` is small enough for the one-gather path."""
    entries = spec.in_channels * spec.taps * math.prod(spec.out_spatial)
    # (positions in int64: a huge padding or stride, valid where its step is
    # never taken, stays on the strided path)
    return (entries <= GATHER_ENTRIES
            and spec.batch * entries * spec.dtype.itemsize <= GATHER_BYTES
            and max(spec.padded_spatial) < 2**31 and max(spec.in_spatial) < 2**31)


def _axis_index(n, k, s, d, lo, r, o, mode):
    """Per dim: the input cell that output ``o`` reads at tap ``t``, shape (o, k); -1: a zero."""
    # A step taken only once is never used (a huge one must not overflow), as in windows().
    s, d = (s if o > 1 else 0), (d if k > 1 else 0)
    u = np.arange(o)[:, None] * s + np.arange(k)[None, :] * d - lo  # in the dilated input
    if r > 1:  # input dilation (zero padding only): the inserted zeros read -1
        real = (u % r == 0) & (u >= 0) & (u <= (n - 1) * r)
        return np.where(real, u // r, -1)
    index, inside = source_index(u, n, mode)
    return np.where(inside, index, -1)


@functools.lru_cache(maxsize=64)
def _gather_index(spec):
    """Flat index of every im2col entry, shape ``(g, P, Cg*taps)`` (columns in
    the kernel's own order, so that it multiplies without a copy), into one
    batch item's ``x`` raveled with one zero appended (what padding reads),
    and the output's shape; None where ``spec`` is not small enough
    (:func:`_gathers`)."""
    if not _gathers(spec):
        return None
    g, C, S = spec.groups, spec.in_channels, spec.in_spatial
    S_out = spec.out_spatial
    n = spec.ndim
    flat = np.zeros((1,) * (2 * n), dtype=np.intp)
    zero = np.zeros((1,) * (2 * n), dtype=bool)
    step = 1
    for i in reversed(range(n)):
        lo = spec.pairs[i][0]
        ax = _axis_index(S[i], spec.kernel_size[i], spec.stride[i], spec.dilation[i], lo,
                         spec.lhs_dilation[i], S_out[i], spec.padding_mode)
        # axes: (*K, *S_out), so the column order is (tap, position) as the kernel's
        shape = [1] * (2 * n)
        shape[i], shape[n + i] = ax.shape[1], ax.shape[0]
        ax = ax.T.reshape(shape)
        flat = flat + np.maximum(ax, 0) * step
        zero = zero | (ax < 0)
        step *= S[i]
    flat = np.where(zero, C * step, flat).reshape(1, spec.taps, -1)
    index = np.arange(C).reshape(C, 1, 1) * step + flat  # (C, taps, P)
    index[:, zero.reshape(spec.taps, -1)] = C * step  # the appended zero
    P = index.shape[-1]
    index = index.reshape(g, C // g, spec.taps, P).transpose(0, 3, 1, 2)
    index = np.ascontiguousarray(index).reshape(g, P, (C // g) * spec.taps)
    index.setflags(write=False)
    return index, (spec.batch, spec.out_channels, *S_out)


def _kernel_matrix(w, spec):
    """The kernel as ``(g, taps*Cg, Og)``, rows in the columns' order ``(tap, channel)``."""
    g = spec.groups
    Og, Cg = spec.out_channels // g, spec.in_channels // g
    # (g, taps, Cg, Og); the reshape copies it C-contiguous
    return w.reshape(g, Og, Cg, spec.taps).transpose(0, 3, 2, 1).reshape(g, spec.taps * Cg, Og)


def _run_gathered(x, w, spec, index, out_shape):
    B, g = spec.batch, spec.groups
    size = x[0].size if B else 0
    src = np.empty((B, size + 1), dtype=spec.dtype)
    src[:, :size] = x.reshape(B, size)
    src[:, size] = 0
    cols = src.take(index, axis=1)  # (B, g, P, Cg*taps)
    O = spec.out_channels
    wmat = w.reshape(g, O // g, -1).transpose(0, 2, 1)  # (g, Cg*taps, Og), a view
    # Output positions as the rows of the product, as in the tile path (one
    # product for the whole batch when g == 1): every position is computed
    # alike, which keeps a circular convolution exactly translation-equivariant
    # (as columns, BLAS's edge kernels round the last positions differently).
    if g == 1:
        res = (cols.reshape(-1, cols.shape[-1]) @ wmat[0]).reshape(B, 1, -1, O)
    else:
        res = np.matmul(cols, wmat)  # (B, g, P, Og)
    return res.transpose(0, 1, 3, 2).reshape(out_shape)


def run(x, w, spec):
    if not spec.numpy:  # another array-API library: stacked taps, one matmul
        return portable.gemm(x, w, spec)
    gather = _gather_index(spec)
    if gather is not None:
        return _run_gathered(x, w, spec, *gather)
    N = spec.ndim
    g = spec.groups
    B, C, O = spec.batch, spec.in_channels, spec.out_channels
    Cg, Og = C // g, O // g
    K = spec.kernel_size
    Kp = spec.taps
    S_out = spec.out_spatial
    xl = pad(
        x, spec.pairs, spec.padding_mode, lhs_dilation=spec.lhs_dilation,
        channels_last=True,
    )
    # (B, *S_out, C, *K) -> (B, *S_out, *K, C): rows of contiguous channel runs.
    win = np.moveaxis(windows(xl, K, spec.stride, spec.dilation, axis=-2), N + 1, -1)
    # Kernel as (g, K*Cg, Og), matching the row order (*K, Cg) of the columns.
    wmat = _kernel_matrix(w, spec)
    out = np.empty((B, O, *S_out), dtype=spec.dtype)
    rest = math.prod(S_out[1:])
    row_bytes = rest * Kp * C * spec.dtype.itemsize
    for b0, b1, i0, i1 in _tiles(B, S_out[0], row_bytes):
        blk = win[b0:b1, i0:i1]  # (nb, ni, *S_rest, *K, C)
        nb, ni = b1 - b0, i1 - i0
        M = nb * ni * rest
        if g == 1:
            cols = blk.reshape(M, Kp * C)  # the im2col copy
            res = cols @ wmat[0]  # (M, O)
            res = res.reshape(nb, ni, *S_out[1:], O)
        else:
            blk = blk.reshape(nb, ni, *S_out[1:], *K, g, Cg)
            cols = np.moveaxis(blk, -2, 0).reshape(g, M, Kp * Cg)
            res = np.matmul(cols, wmat)  # (g, M, Og)
            res = np.moveaxis(res, 0, -2).reshape(nb, ni, *S_out[1:], O)
        out[b0:b1, :, i0:i1] = np.moveaxis(res, -1, 1)
    return out


def estimate(spec):
    """Estimated seconds (see :mod:`ndconv.algorithms.cost`)."""
    from .cost import RATES as r, gemm_eff

    B, O, g = spec.batch, spec.out_channels, spec.groups
    Cg = spec.in_channels // g
    P = math.prod(spec.out_spatial)
    it = spec.dtype.itemsize
    cols = B * P * spec.taps * spec.in_channels * it
    k = spec.taps * Cg
    return (
        2 * cols / r["copy"]
        + 2 * spec.macs / (r["gemm"] * gemm_eff(k, O // g))
        + 2 * B * O * P * it / r["copy"]
        + (cols // (32 * 2**20) + 1) * r["step"]
        + portable.calls(spec, per_tap=2, fixed=8)
    )


def reason(spec):
    cg = spec.in_channels // spec.groups
    if not spec.numpy:
        return f"{spec.taps} taps x {cg} channels per group: stacked taps, one {spec.library} matmul"
    return f"{spec.taps} taps x {cg} channels per group: im2col + BLAS GEMM"


def workspace_bytes(spec):
    """Channels-last padded copy and output, plus two tiles' columns and products
    (the next tile's are gathered before the last one's are freed)."""
    it = spec.dtype.itemsize
    rest = math.prod(spec.out_spatial[1:])
    row = rest * spec.taps * spec.in_channels * it
    tile = min(row * spec.out_spatial[0] * spec.batch, max(TILE_BYTES, row))  # >= one row
    products = tile // max(spec.taps * spec.in_channels // spec.groups, 1) * spec.out_channels * 2
    return padded_and_output_bytes(spec) + 2 * (tile + products)


from .record import ARRAY_API, Algorithm, padded_and_output_bytes  # noqa: E402

ALGORITHM = Algorithm(
    name="gemm", supports=supports, run=run, estimate=estimate, reason=reason,
    workspace_bytes=workspace_bytes, arrays=("numpy", ARRAY_API),
)

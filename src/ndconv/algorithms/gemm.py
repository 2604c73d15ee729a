"""GEMM method: im2col in a channels-last layout, in tiles of bounded size.

The padded input is copied once into ``(B, *S, C)`` order, so each im2col row
``(*K, C)`` is made of contiguous runs of ``C`` values; the columns of a tile of
output positions are gathered into one buffer and multiplied with the kernel
reshaped to ``(K*C, O)`` by BLAS. The buffer never exceeds :data:`TILE_BYTES`
(plus one output row), so memory stays bounded whatever the input size.
"""

from __future__ import annotations

import math

import numpy as np

from .._windows import pad, windows

#: Upper bound on the im2col buffer, in bytes.
TILE_BYTES = 32 * 2**20


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


def run(x, w, spec):
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
    wmat = np.moveaxis(w.reshape(g, Og, Cg, Kp), 1, -1)  # (g, Cg, Kp, Og)
    wmat = np.ascontiguousarray(np.swapaxes(wmat, 1, 2)).reshape(g, Kp * Cg, Og)
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

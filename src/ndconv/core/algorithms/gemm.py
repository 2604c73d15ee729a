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
from . import portable

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
    if not spec.numpy:  # another array-API library: stacked taps, one matmul
        return portable.gemm(x, w, spec)
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

"""Compiled im2col (numba), used by ``gemm.py`` when numba is installed.

The NumPy path of ``gemm.py`` gathers the columns of a tile of output
positions with one strided NumPy copy into a channels-last buffer of up to
32 MiB (out of cache), multiplies it and transposes the product into the
``(B, O, *S_out)`` result. Here the columns of a cache-sized tile of output
positions of one batch item are packed channel-major, ``(C * taps, n)``: row
``c * taps + t`` holds input channel ``c`` at tap ``t`` for the ``n``
positions, so ``w.reshape(O, C * taps) @ cols`` is the tile of the output in
its final layout (written in place, no transpose), and the buffer is reread
by BLAS from L2 cache.

N-d like everything else: the padded input of one batch item is flattened
to ``(C, L)``; an output position and a kernel tap are each a constant
offset into it, so one loop serves every number of dims. Positions are
visited in runs along the last output dim, whose inputs are contiguous (a
stride along the last dim is first split into planes, ``gemm._split_last``).

The kernel releases the GIL and is sequential: ``gemm.run`` runs tiles on
its own threads, each tile's product on single-threaded BLAS.
``pack_panels`` packs the same columns into the panels of the compiled
product of ``_gemm_kernel`` instead (blocks of ``NR`` positions, each row
of a block contiguous).
"""

from __future__ import annotations

from numba import njit


@njit(nogil=True, inline="always")
def line_start(q, out_shape, pos_step):
    """Flat input offset of output line ``q`` (the index over all output dims
    but the last, C order), one step along dim ``i`` moving ``pos_step[i]``."""
    base = 0
    for i in range(out_shape.shape[0] - 2, -1, -1):
        base += (q % out_shape[i]) * pos_step[i]
        q //= out_shape[i]
    return base


@njit(nogil=True, cache=True)
def pack(xf, cols, p0, out_shape, pos_step, tap_off):
    # xf: (C, L) padded input of one batch item, flattened; cols: (C*T, n),
    # filled for the n output positions p0, p0+1, ... (C order over
    # out_shape); pos_step[i]: flat input offset of one output step along
    # dim i (stride * grid stride), 1 along the last (gemm._split_last makes
    # a strided last dim contiguous); tap_off[t]: flat offset of tap t.
    C = xf.shape[0]
    T = tap_off.shape[0]
    n = cols.shape[1]
    N = out_shape.shape[0]
    W = out_shape[N - 1]
    j = 0
    p = p0
    while j < n:
        q = p // W
        jl = p - q * W
        base = jl + line_start(q, out_shape, pos_step)
        run = min(W - jl, n - j)
        for c in range(C):
            for t in range(T):
                src = base + tap_off[t]
                row = c * T + t
                # 1-D slices: the copy vectorises (7x faster than indexing)
                dst = cols[row, j:j + run]
                line = xf[c, src:src + run]
                for k in range(run):
                    dst[k] = line[k]
        j += run
        p += run


@njit(nogil=True, cache=True)
def pack_panels(xf, bp, p0, n, out_shape, pos_step, tap_off):
    # As pack, into the panels of _gemm_kernel.product: bp (g, panels, Cg*T, R),
    # column j of group gi's columns at bp[gi, j // R, :, j % R], row
    # c * T + t (c within the group); columns n.. of the last panel are zeroed.
    G = bp.shape[0]
    R = bp.shape[3]
    C = xf.shape[0]
    Cg = C // G
    T = tap_off.shape[0]
    N = out_shape.shape[0]
    W = out_shape[N - 1]
    j = 0
    p = p0
    while j < n:
        q = p // W
        jl = p - q * W
        base = jl + line_start(q, out_shape, pos_step)
        jb = j // R
        jj = j - jb * R
        run = min(W - jl, n - j, R - jj)
        for c in range(C):
            gi = c // Cg
            cl = c - gi * Cg
            for t in range(T):
                src = base + tap_off[t]
                dst = bp[gi, jb, cl * T + t, jj:jj + run]
                line = xf[c, src:src + run]
                for k in range(run):
                    dst[k] = line[k]
        j += run
        p += run
    jb = n // R
    jj = n - jb * R
    if jj:
        for gi in range(G):
            for row in range(bp.shape[2]):
                for k in range(jj, R):
                    bp[gi, jb, row, k] = 0

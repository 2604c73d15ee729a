"""Compiled Winograd transforms (numba), used by ``winograd.py`` when numba is installed.

The NumPy transforms in ``winograd.py`` make one pass over the whole chunk per
nonzero coefficient of ``B^T`` and ``A^T`` (about 60 passes in 2-D), with
temporaries; they took 60-75% of a layer's time. Here each tile is
transformed while it sits in L1 cache: its ``a^N`` rows of channels are
gathered once, the 1-D transform is applied along each of the N axes in turn
(a tensor product, so one loop nest serves every N), and the result is
written once. Channels are innermost everywhere, so the inner loops run over
contiguous channel vectors and vectorise. The output transform writes the
``m^N`` outputs of each tile straight into the ``(B, O, *S_out)`` result,
dropping the positions of edge tiles that fall outside it.

The kernels release the GIL and are sequential: ``winograd.run`` runs chunks
of tiles on its own threads, each chunk's products on single-threaded BLAS.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(nogil=True, cache=True, inline="always")
def lines(src, dst, dims, axis, kind, nch):
    # dst = the 1-D transform `kind` applied along `axis` of src; both are
    # (prod(dims), nch) in C order over dims, dst with dims[axis] replaced
    # by the transform's output count. Written out per transform (not as
    # a matrix loop) so that each line is 6 loads and 6 (or 4, 2) stores
    # of contiguous channel vectors with the coefficients as constants:
    # kind 0: B^T of F(4, 3); 1: A^T of F(4, 3); 2: B^T of F(2, 3); 3: A^T of F(2, 3);
    # 4: A of F(4, 3) (4 values to 6); 5: A of F(2, 3) (2 to 4): the matrices
    # of winograd._MATRICES (tests compare both paths). A (the transpose of
    # A^T) takes an output gradient's tile into the transformed domain, for
    # the weight gradient (winograd_dual).
    n = dims.shape[0]
    inner = 1
    for i in range(axis + 1, n):
        inner *= dims[i]
    outer = 1
    for i in range(axis):
        outer *= dims[i]
    a = dims[axis]
    r = (6, 4, 4, 2, 6, 4)[kind]
    for o in range(outer):
        for q in range(inner):
            s0 = o * a * inner + q
            d0 = o * r * inner + q
            if kind == 0:
                for ch in range(nch):
                    x0 = src[s0, ch]
                    x1 = src[s0 + inner, ch]
                    x2 = src[s0 + 2 * inner, ch]
                    x3 = src[s0 + 3 * inner, ch]
                    x4 = src[s0 + 4 * inner, ch]
                    x5 = src[s0 + 5 * inner, ch]
                    dst[d0, ch] = x0 + 1.5 * x1 - 2.0 * x2 - 1.5 * x3 + x4
                    dst[d0 + inner, ch] = x4 - x1 - 2.5 * x2 - 0.5 * x3
                    dst[d0 + 2 * inner, ch] = x1 + 0.5 * x2 - 2.5 * x3 + x4
                    dst[d0 + 3 * inner, ch] = x4 - x2 + 0.5 * (x3 - x1)
                    dst[d0 + 4 * inner, ch] = x4 - x2 + 2.0 * (x1 - x3)
                    dst[d0 + 5 * inner, ch] = x1 + 1.5 * x2 - 2.0 * x3 - 1.5 * x4 + x5
            elif kind == 1:
                for ch in range(nch):
                    x0 = src[s0, ch]
                    x1 = src[s0 + inner, ch]
                    x2 = src[s0 + 2 * inner, ch]
                    x3 = src[s0 + 3 * inner, ch]
                    x4 = src[s0 + 4 * inner, ch]
                    x5 = src[s0 + 5 * inner, ch]
                    p12 = x1 + x2
                    m12 = x1 - x2
                    dst[d0, ch] = x0 + p12 + x3 + x4
                    dst[d0 + inner, ch] = m12 + 2.0 * x3 - 0.5 * x4
                    dst[d0 + 2 * inner, ch] = p12 + 4.0 * x3 + 0.25 * x4
                    dst[d0 + 3 * inner, ch] = m12 + 8.0 * x3 - 0.125 * x4 + x5
            elif kind == 2:
                for ch in range(nch):
                    x0 = src[s0, ch]
                    x1 = src[s0 + inner, ch]
                    x2 = src[s0 + 2 * inner, ch]
                    x3 = src[s0 + 3 * inner, ch]
                    dst[d0, ch] = x0 - x2
                    dst[d0 + inner, ch] = x1 + x2
                    dst[d0 + 2 * inner, ch] = x2 - x1
                    dst[d0 + 3 * inner, ch] = x1 - x3
            elif kind == 3:
                for ch in range(nch):
                    x0 = src[s0, ch]
                    x1 = src[s0 + inner, ch]
                    x2 = src[s0 + 2 * inner, ch]
                    x3 = src[s0 + 3 * inner, ch]
                    dst[d0, ch] = x0 + x1 + x2
                    dst[d0 + inner, ch] = x1 - x2 - x3
            elif kind == 4:
                for ch in range(nch):
                    x0 = src[s0, ch]
                    x1 = src[s0 + inner, ch]
                    x2 = src[s0 + 2 * inner, ch]
                    x3 = src[s0 + 3 * inner, ch]
                    e = x0 + x2
                    dst[d0, ch] = x0
                    dst[d0 + inner, ch] = e + x1 + x3
                    dst[d0 + 2 * inner, ch] = e - x1 - x3
                    dst[d0 + 3 * inner, ch] = x0 + 2.0 * x1 + 4.0 * x2 + 8.0 * x3
                    dst[d0 + 4 * inner, ch] = x0 - 0.5 * x1 + 0.25 * x2 - 0.125 * x3
                    dst[d0 + 5 * inner, ch] = x3
            else:
                for ch in range(nch):
                    x0 = src[s0, ch]
                    x1 = src[s0 + inner, ch]
                    dst[d0, ch] = x0
                    dst[d0 + inner, ch] = x0 + x1
                    dst[d0 + 2 * inner, ch] = x0 - x1
                    dst[d0 + 3 * inner, ch] = -x1


@njit(nogil=True, cache=True)
def input_transform(xl, v, tile_base, pos_off, m, ndim):
    # xl: padded input, channels last, flattened to (rows, C); v: (a^N, P, C);
    # tile_base[p]: row of tile p's first element; pos_off[k]: row offset of
    # the tile's k-th element (any order; the caller's is U's).
    a = m + 2
    kind = 0 if m == 4 else 2
    A = pos_off.shape[0]
    C = xl.shape[1]
    P = tile_base.shape[0]
    buf0 = np.empty((A, C), xl.dtype)
    buf1 = np.empty((A, C), xl.dtype)
    dims = np.full(ndim, a, np.int64)
    for p in range(P):
        base = tile_base[p]
        for k in range(A):
            row = base + pos_off[k]
            for ch in range(C):
                buf0[k, ch] = xl[row, ch]
        src, dst = buf0, buf1
        for axis in range(ndim):
            lines(src, dst, dims, axis, kind, C)
            src, dst = dst, src
        for k in range(A):
            for ch in range(C):
                v[k, p, ch] = src[k, ch]


@njit(nogil=True, cache=True)
def expand_transform(g, dm, tile_base, pos_off, m, ndim):
    # The adjoint of output_transform's A^T: g, an output gradient padded to
    # whole tiles, channels last, flattened to (rows, O); dm: (a^N, P, O).
    # tile_base[p]: row of tile p's first element; pos_off[q]: row offset of
    # the tile's q-th element, C order over (q_{N-1}, ..., q_0) as in U.
    a = m + 2
    kind = 4 if m == 4 else 5
    Q = pos_off.shape[0]
    A = dm.shape[0]
    O = g.shape[1]
    P = tile_base.shape[0]
    buf0 = np.empty((A, O), g.dtype)
    buf1 = np.empty((A, O), g.dtype)
    dims = np.empty(ndim, np.int64)
    for p in range(P):
        base = tile_base[p]
        for q in range(Q):
            row = base + pos_off[q]
            for o in range(O):
                buf0[q, o] = g[row, o]
        for i in range(ndim):
            dims[i] = m
        src, dst = buf0, buf1
        for axis in range(ndim):
            lines(src, dst, dims, axis, kind, O)
            dims[axis] = a
            src, dst = dst, src
        for k in range(A):
            for o in range(O):
                dm[k, p, o] = src[k, o]


@njit(nogil=True, cache=True)
def output_transform(mm, out, tile_b, tile_origin, s_out, m, ndim):
    # mm: (a^N, P, O) products, a^N in C order over (k_{N-1}, ..., k_0);
    # out: (B, O, prod(S_out)); tile_origin[p]:
    # first output coordinate of tile p per dim. Positions past S_out
    # (edge tiles) are dropped.
    a = m + 2
    kind = 1 if m == 4 else 3
    A, P, O = mm.shape
    M = 1
    for i in range(ndim):
        M *= m
    buf0 = np.empty((A, O), mm.dtype)
    buf1 = np.empty((A, O), mm.dtype)
    dims = np.full(ndim, a, np.int64)
    strides = np.empty(ndim, np.int64)
    st = 1
    for i in range(ndim - 1, -1, -1):
        strides[i] = st
        st *= s_out[i]
    idx = np.empty(ndim, np.int64)
    for p in range(P):
        for k in range(A):
            for o in range(O):
                buf0[k, o] = mm[k, p, o]
        src, dst = buf0, buf1
        for i in range(ndim):
            dims[i] = a
        for axis in range(ndim):
            lines(src, dst, dims, axis, kind, O)
            dims[axis] = m
            src, dst = dst, src
        b = tile_b[p]
        for q in range(M):
            r = q
            flat = 0
            inside = True
            for i in range(ndim):  # the first spatial dim varies fastest (U's layout)
                idx[i] = r % m
                r //= m
                c = tile_origin[p, i] + idx[i]
                if c >= s_out[i]:
                    inside = False
                flat += c * strides[i]
            if not inside:
                continue
            for o in range(O):
                out[b, o, flat] = src[q, o]

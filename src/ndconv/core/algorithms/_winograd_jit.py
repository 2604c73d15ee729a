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

:func:`gather_transform` reads tiles straight from an array of any C-ordered
layout (zero outside it), for the weight gradient (``winograd_dual``), where
``x`` and ``grad_out`` are read transposed; :func:`kernel_transform` computes
``U`` in float64 sums, block by block of (channel, output) pairs.

The kernels release the GIL and are sequential: ``winograd.run`` runs chunks
of tiles on its own threads, each chunk's products on single-threaded BLAS.
"""

from __future__ import annotations

import numpy as np
from numba import njit

U64 = np.uint64  # unsigned loop bounds: numba checks signed indices for wraparound,
# which keeps LLVM from vectorising the loops


@njit(nogil=True, cache=True, inline="always")
def _around(dims, axis):
    # (outer, inner): the sizes of the dims before and after `axis`.
    inner = 1
    for i in range(axis + 1, dims.shape[0]):
        inner *= dims[i]
    outer = 1
    for i in range(axis):
        outer *= dims[i]
    return outer, inner


@njit(nogil=True, cache=True, inline="always")
def lines(src, dst, dims, axis, kind, nch):
    # dst = the 1-D transform `kind` applied along `axis` of src; both are
    # (prod(dims), nch) in C order over dims, dst with dims[axis] replaced
    # by the transform's output count. Written out per transform (not as
    # a matrix loop) so that each line is 6 loads and 6 (or 4, 2) stores
    # of contiguous channel vectors with the coefficients as constants:
    # kind 0: B^T of F(4, 3); 1: A^T of F(4, 3); 2: B^T of F(2, 3); 3: A^T of F(2, 3),
    # the matrices of winograd._MATRICES (tests compare both paths).
    outer, inner = _around(dims, axis)
    a = dims[axis]
    r = (6, 4, 4, 2)[kind]
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


@njit(nogil=True, cache=True, inline="always")
def expand_lines(src, dst, dims, axis, kind, nch):
    # As lines, for A (the transpose of A^T: m values to m + 2), which takes
    # an output gradient's tile into the transformed domain for the weight
    # gradient (winograd_dual): kind 4: A of F(4, 3); 5: A of F(2, 3). (Kept
    # apart from lines: one function with all six kinds vectorised 3-5x worse.)
    outer, inner = _around(dims, axis)
    a = dims[axis]
    r = 6 if kind == 4 else 4
    for o in range(outer):
        for q in range(inner):
            s0 = o * a * inner + q
            d0 = o * r * inner + q
            if kind == 4:
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


@njit(nogil=True, cache=True, inline="always")
def _row_tile(xl, base, pos_off, buf0, buf1, dims, kind, ndim):
    # The transformed tile whose first element is row `base` of xl (rows,
    # C): its rows gathered, then `kind` along each axis; returns the buffer
    # holding the result (a^N, C).
    C = U64(xl.shape[1])
    for k in range(U64(pos_off.shape[0])):
        row, into = xl[base + pos_off[k]], buf0[k]
        for ch in range(C):
            into[ch] = row[ch]
    src, dst = buf0, buf1
    for axis in range(ndim):
        lines(src, dst, dims, axis, kind, C)
        src, dst = dst, src
    return src


@njit(nogil=True, cache=True)
def input_transform(xl, vp, tile_base, pos_off, m, ndim):
    # xl: padded input, channels last, flattened to (rows, C); tile_base[p]:
    # row of tile p's first element; pos_off[k]: row offset of the tile's
    # k-th element (any order; the caller's is U's). vp: (a^N, ceil(P/MR), C,
    # MR), tile p at vp[:, p // MR, :, p % MR]: the left panels of a compiled
    # product, or (with MR = 1) the rows (a^N, P, C) of BLAS's.
    a = m + 2
    kind = 0 if m == 4 else 2
    A = pos_off.shape[0]
    C = xl.shape[1]
    MR = vp.shape[3]
    buf0 = np.empty((A, C), xl.dtype)
    buf1 = np.empty((A, C), xl.dtype)
    dims = np.full(ndim, a, np.int64)
    for p in range(tile_base.shape[0]):
        src = _row_tile(xl, tile_base[p], pos_off, buf0, buf1, dims, kind, ndim)
        pb, pr = U64(p // MR), U64(p % MR)
        for k in range(U64(A)):
            row = src[k]
            for ch in range(U64(C)):  # (unsigned: signed 4-D indexing per value cost 1.5x)
                vp[k, pb, ch, pr] = row[ch]


@njit(nogil=True, cache=True)
def output_transform(mm, out, tile_b, tile_origin, s_out, m, ndim, bias):
    # mm: (a^N, P, O) products, a^N in C order over (k_{N-1}, ..., k_0);
    # out: (B, O, prod(S_out)); tile_origin[p]:
    # first output coordinate of tile p per dim. Positions past S_out
    # (edge tiles) are dropped. bias: (O,) added as each value is written, or
    # empty for none (a branch, not + 0: -0.0 stays -0.0).
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
        for k in range(U64(A)):
            row, dst = mm[k, p], buf0[k]
            for o in range(U64(O)):
                dst[o] = row[o]
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
            row = src[q]
            if bias.shape[0]:
                for o in range(U64(O)):
                    out[b, o, flat] = row[o] + bias[o]
            else:
                for o in range(U64(O)):
                    out[b, o, flat] = row[o]


#: Values per dim each kind reads and writes (the matrices' shapes).
SIZES = ((6, 6), (6, 4), (4, 4), (4, 2), (4, 6), (2, 4))


@njit(nogil=True, cache=True)
def _tile_offsets(tile_org, p, n, lim, sp, off, ok):
    # Element offset (and whether it lies inside the array) of every element
    # of tile p (n per dim, first at tile_org[p]), C order over
    # (k_{N-1}, ..., k_0): the first spatial dim fastest, the layout of U.
    ndim = sp.shape[0]
    for k in range(off.shape[0]):
        r = k
        o = 0
        inside = True
        for d in range(ndim):
            i = tile_org[p, d] + r % n
            r //= n
            if i < 0 or i >= lim[d]:
                inside = False
            o += i * sp[d]
        off[k] = o
        ok[k] = inside


@njit(nogil=True, cache=True, inline="always")
def _gathered_tile(src, sb, sc, sp, lim, tile_b, tile_org, p, kind, C, buf0, buf1, off, ok,
                   dims):
    # Tile p of gather_transform, transformed: returns the buffer holding it
    # (n_out^N, C). Gathered one tile element at a time over all channels
    # (one strided run, no test per value: 1.7x faster than one channel's
    # window at a time with the test inside).
    ndim = sp.shape[0]
    n_in, n_out = SIZES[kind]
    _tile_offsets(tile_org, p, n_in, lim, sp, off, ok)
    base = tile_b[p] * sb
    usc = U64(sc)
    for k in range(off.shape[0]):
        row = buf0[k]
        if ok[k]:
            run = src[base + off[k]:]
            for c in range(U64(C)):
                row[c] = run[c * usc]
        else:
            for c in range(U64(C)):
                row[c] = 0
    for d in range(ndim):
        dims[d] = n_in
    s, t = buf0, buf1
    for axis in range(ndim):
        if kind >= 4:
            expand_lines(s, t, dims, axis, kind, C)
        else:
            lines(s, t, dims, axis, kind, C)
        dims[axis] = n_out
        s, t = t, s
    return s


@njit(nogil=True, cache=True)
def gather_transform(src, sb, sc, sp, lim, tile_b, tile_org, kind, v, C):
    # v[:, ., p, .] = the 1-D transform `kind` along every dim of tile p, read
    # straight from the array (no padded copy, no change of layout): src is
    # its memory, element (b, c, i_0, ..) at b*sb + c*sc + sum_d i_d*sp[d];
    # lim[d]: its size along spatial dim d; tile p starts at (tile_b[p],
    # tile_org[p]) and elements outside [0, lim) (padding) read as zero.
    # v: (n_out^N, ceil(C/W), P, W), channel c of tile p at
    # v[:, c // W, p, c % W]: panels of a compiled product over the tiles, or
    # (W = C) the rows (n_out^N, P, C) of BLAS's (any strides). Indexed
    # unsigned: signed, v's 4-D indexing per value took a third of the time
    # with 6-wide panels.
    ndim = sp.shape[0]
    A_in = SIZES[kind][0] ** ndim
    A_out, nb, P, W = v.shape
    buf0 = np.empty((max(A_in, A_out), C), v.dtype)
    buf1 = np.empty((max(A_in, A_out), C), v.dtype)
    off = np.empty(A_in, np.int64)
    ok = np.empty(A_in, np.bool_)
    dims = np.empty(ndim, np.int64)
    uW = U64(W)
    full = U64(C // W)  # whole panels; the last one may hold fewer channels
    for p in range(U64(P)):
        s = _gathered_tile(src, sb, sc, sp, lim, tile_b, tile_org, p, kind, C, buf0, buf1,
                           off, ok, dims)
        for k in range(U64(A_out)):
            row = s[k]
            for b in range(full):
                for j in range(uW):
                    v[k, b, p, j] = row[b * uW + j]
            if full < U64(nb):
                for j in range(U64(C) - full * uW):
                    v[k, full, p, j] = row[full * uW + j]


#: Outputs (a row of ``U`` per position) summed per block of
#: :func:`kernel_transform`: its float64 sums (32 KiB) stay in L1 cache.
KERNEL_BLOCK = 4096


@njit(nogil=True, cache=True)
def kernel_transform(wt, M, U):
    # U[k, o // R, r, o % R] = sum_t M[k, t] * wt[t, r, o]: the kernel
    # transform, accumulated in float64 and rounded once. wt: (T, g*Cg, Og),
    # the kernel with its taps first (each sum then runs over long contiguous
    # blocks of (channel, output) pairs: summed per channel over the outputs
    # only, the loops were short and their overhead took half the time, 256
    # channels 1.9 -> 1.1 ms); M: (A, T) float64; U: (A, ceil(Og/R), g*Cg, R),
    # the right panels of the compiled product, or (A, 1, g*Cg, Og) for BLAS
    # (columns past Og are left as they are: the caller zeroes them). With
    # M = M^T it is the weight gradient's G^T (winograd_dual: wt = dU).
    A, nb, _, R = U.shape
    T, rows, Og = wt.shape
    w2 = wt.reshape(T, rows * Og)
    per = max(1, KERNEL_BLOCK // Og)  # rows per block
    acc = np.empty(per * Og, np.float64)
    for q0 in range(0, rows, per):
        q1 = min(rows, q0 + per)
        L = U64((q1 - q0) * Og)
        for k in range(U64(A)):
            for i in range(L):
                acc[i] = 0.0
            for t in range(U64(T)):
                coef = M[k, t]
                if coef != 0.0:
                    src = w2[t, q0 * Og:]
                    for i in range(L):
                        acc[i] += coef * src[i]
            for q in range(q0, q1):
                a = acc[(q - q0) * Og:]
                for b in range(nb):
                    dst = U[k, b, q]
                    for j in range(U64(min(R, Og - b * R))):
                        dst[j] = a[U64(b * R) + j]

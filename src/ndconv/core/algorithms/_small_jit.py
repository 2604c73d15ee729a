"""Compiled gathered correlation (numba): the layers of a small network, in one call.

A small correlation (a conv layer of the digits CNN at batch 1: 9 thousand
to 74 thousand multiply-adds) costs more in NumPy calls than in arithmetic:
the gathered path of ``gemm.py`` copies the input next to a zero, gathers
the columns with ``take``, multiplies, transposes the product into the
output layout and adds the bias, five passes and their Python around a
microsecond of work. Here one compiled call reads the same per-spec flat
index (``gemm._gather_index``: the input cell of every (position, column),
padding and input dilation folded in, the zero past the end) and writes
``out[b, o, p] = sum_j w[o, j] * x[b, index[p, j]]``, then the bias, in
the output's final layout.

Every output position sums its columns in the same order (as the gathered
product's rows do), so a circular convolution stays exactly
translation-equivariant. A padded zero is multiplied like any value (not
skipped), so an infinite weight gives NaN at the border as in the NumPy
paths and PyTorch.
"""

from __future__ import annotations

import numpy as np

from ._jit import FAST_MATH as _FAST
from ._jit import build_once

_KERNELS: dict = {}


def _build():
    from numba import njit

    U = np.uint64  # unsigned indices: signed ones are checked for wraparound,
    # which keeps LLVM from vectorising the loop over output channels

    @njit(fastmath=_FAST, cache=True, nogil=True)
    def gathered(x, index, w, bias, has_bias, zero, out):
        # x: (B, L) batch items raveled; index: (g, P, J) flat index into an
        # item, L reading zero[0]; w: (O, J), rows gi*Og.. of group gi;
        # bias: (O,); out: (B, O, P). Flat views, unsigned offsets.
        B, L = x.shape
        g, P, J = index.shape
        O = w.shape[0]
        Og = U(O // g)
        xf, idx, wf, of = x.ravel(), index.ravel(), w.ravel(), out.ravel()
        wt = np.empty(g * J * Og, w.dtype)  # (g, J, Og): output channels innermost
        for gi in range(U(g)):
            for o in range(Og):
                for j in range(U(J)):
                    wt[(gi * U(J) + j) * Og + o] = wf[(gi * Og + o) * U(J) + j]
        # Four positions at a time: each row of weights loaded feeds four
        # products (one position at a time, the loads bound the loop: 9.4 us
        # against 5.8 for the digits CNN's 16->32 layer at batch 1). A block
        # past the last position repeats it (same sums, written once).
        acc = np.empty((4, Og), w.dtype)
        pos = np.empty(4, np.uint64)
        z = zero[0]
        for b in range(U(B)):
            xb = b * U(L)
            for gi in range(U(g)):
                for p0 in range(U(0), U(P), U(4)):
                    for q in range(4):
                        pos[q] = (gi * U(P) + min(p0 + U(q), U(P) - U(1))) * U(J)
                    acc[:] = 0
                    for j in range(U(J)):
                        i0, i1 = U(idx[pos[0] + j]), U(idx[pos[1] + j])
                        i2, i3 = U(idx[pos[2] + j]), U(idx[pos[3] + j])
                        v0 = xf[xb + i0] if i0 < U(L) else z
                        v1 = xf[xb + i1] if i1 < U(L) else z
                        v2 = xf[xb + i2] if i2 < U(L) else z
                        v3 = xf[xb + i3] if i3 < U(L) else z
                        wb = (gi * U(J) + j) * Og
                        for o in range(Og):
                            wv = wt[wb + o]
                            acc[0, o] += wv * v0
                            acc[1, o] += wv * v1
                            acc[2, o] += wv * v2
                            acc[3, o] += wv * v3
                    for q in range(min(U(4), U(P) - p0)):
                        ob = (b * U(O) + gi * Og) * U(P) + p0 + U(q)
                        for o in range(Og):
                            r = acc[q, o]
                            if has_bias:
                                r += bias[gi * Og + o]
                            of[ob + o * U(P)] = r
        return out

    @njit(cache=True, nogil=True)
    def gather(x, index, zero, cols):
        # The columns of gemm's gathered product: cols (B, g, P, J) = x (B, L)
        # at index (g, P, J), zero[0] where the index is L (a padded zero).
        B, L = x.shape
        n = U(index.size)
        xf, idx, cf = x.ravel(), index.ravel(), cols.ravel()
        z = zero[0]
        for b in range(U(B)):
            xb = b * U(L)
            cb = b * n
            for e in range(n):
                i = U(idx[e])
                cf[cb + e] = xf[xb + i] if i < U(L) else z
        return cols

    @njit(fastmath=_FAST, cache=True, nogil=True)
    def positions_last(res, bias, has_bias, out):
        # The gathered product (B, g, P, Og) into the output's layout
        # (B, g, Og, P), plus bias (g, Og): one pass (NumPy's transposing
        # np.add took 18 us at the digits CNN's 16->32 layer, batch 64).
        B, g, P, Og = res.shape
        for b in range(B):
            for gi in range(g):
                for o in range(Og):
                    if has_bias:
                        bv = bias[gi, o]
                        for p in range(P):
                            out[b, gi, o, p] = res[b, gi, p, o] + bv
                    else:  # (a copy: -0.0 stays -0.0)
                        for p in range(P):
                            out[b, gi, o, p] = res[b, gi, p, o]
        return out

    return gathered, gather, positions_last


def kernel():
    """The compiled gathered correlation, or None without numba."""
    ks = build_once(_KERNELS, _build)
    return None if ks is None else ks[0]


def gather_kernel():
    """The compiled gather of a gathered product's columns, or None without numba."""
    ks = build_once(_KERNELS, _build)
    return None if ks is None else ks[1]


def positions_last_kernel():
    """The compiled copy of a gathered product into the output's layout, or None."""
    ks = build_once(_KERNELS, _build)
    return None if ks is None else ks[2]

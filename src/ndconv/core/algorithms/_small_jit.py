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
        acc = np.empty(Og, w.dtype)
        z = zero[0]
        for b in range(U(B)):
            xb = b * U(L)
            for gi in range(U(g)):
                for p in range(U(P)):
                    for o in range(Og):
                        acc[o] = 0
                    ib = (gi * U(P) + p) * U(J)
                    for j in range(U(J)):
                        i = U(idx[ib + j])
                        v = xf[xb + i] if i < U(L) else z
                        wb = (gi * U(J) + j) * Og
                        for o in range(Og):
                            acc[o] += wt[wb + o] * v
                    ob = (b * U(O) + gi * Og) * U(P) + p
                    for o in range(Og):
                        r = acc[o]
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

    return gathered, gather


def kernel():
    """The compiled gathered correlation, or None without numba."""
    from ._jit import build_once

    ks = build_once(_KERNELS, _build)
    return None if ks is None else ks[0]


def gather_kernel():
    """The compiled gather of a gathered product's columns, or None without numba."""
    from ._jit import build_once

    ks = build_once(_KERNELS, _build)
    return None if ks is None else ks[1]

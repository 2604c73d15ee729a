"""Compiled depthwise correlation along whole output rows (numba): long rows.

For one input channel per group (a single-channel image, a depthwise layer)
with stride 1 along the last dim, an output row is ``sum_t w_t * x_row(t)``
shifted by the tap's column: every tap reads a contiguous stretch of one
input row. Here each output row is computed straight from the input rows,
nine taps per pass over the row (a 3x3 kernel in one pass), and written to
the output once; zero padding is the taps that miss the input (whole rows
skipped, the few edge columns summed one by one), so nothing is copied: the
slab kernel of :mod:`._direct_jit` copies the input into a padded buffer and
its accumulator out again, two more passes, which for a 3x3 filter of a
12 MP image cost more than the nine multiply-adds (measured 1 thread, AVX2,
load 4.5: that kernel 1.28x OpenCV's ``filter2D``, this one 0.82x).

Rows shorter than :data:`MIN_ROW` keep the slab kernel, which runs the
vector units over many short rows at once.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .. import _pages
from ._jit import FAST_MATH as _FAST
from ._jit import build_once

#: Shortest output row (elements) this kernel takes.
MIN_ROW = 256

#: Output rows per work unit at least (a unit's setup is one row's taps).
_UNIT_ROWS = 8

_KERNELS: dict = {}


#: Unsigned loop bounds: signed ones keep LLVM from vectorising.
U = np.uint64


def _build():
    # The helpers become module globals, not variables of this function: a
    # kernel that closes over other compiled functions is never found in
    # numba's cache (their pickled dispatchers differ in every process), so
    # it would be compiled again in every process (20 s under load).
    global row_sum, edge
    from numba import njit, prange

    @njit(fastmath=_FAST, cache=True, nogil=True, inline="always")
    def row_sum(x, o, offs, ws, k0, k1, j0, n, first):
        """o[j0:j0+n] (= or +=) sum over k in k0..k1-1 (at most 9) of
        ws[k] * x[offs[k] + j0 : ... + n]."""
        m = k1 - k0
        ro = o[j0:j0 + n]
        if m == 9:
            s0 = x[offs[k0] + j0:offs[k0] + j0 + n]
            s1 = x[offs[k0 + 1] + j0:offs[k0 + 1] + j0 + n]
            s2 = x[offs[k0 + 2] + j0:offs[k0 + 2] + j0 + n]
            s3 = x[offs[k0 + 3] + j0:offs[k0 + 3] + j0 + n]
            s4 = x[offs[k0 + 4] + j0:offs[k0 + 4] + j0 + n]
            s5 = x[offs[k0 + 5] + j0:offs[k0 + 5] + j0 + n]
            s6 = x[offs[k0 + 6] + j0:offs[k0 + 6] + j0 + n]
            s7 = x[offs[k0 + 7] + j0:offs[k0 + 7] + j0 + n]
            s8 = x[offs[k0 + 8] + j0:offs[k0 + 8] + j0 + n]
            w0, w1, w2 = ws[k0], ws[k0 + 1], ws[k0 + 2]
            w3, w4, w5 = ws[k0 + 3], ws[k0 + 4], ws[k0 + 5]
            w6, w7, w8 = ws[k0 + 6], ws[k0 + 7], ws[k0 + 8]
            if first:
                for i in range(U(n)):
                    ro[i] = (w0 * s0[i] + w1 * s1[i] + w2 * s2[i] + w3 * s3[i] + w4 * s4[i]
                             + w5 * s5[i] + w6 * s6[i] + w7 * s7[i] + w8 * s8[i])
            else:
                for i in range(U(n)):
                    ro[i] += (w0 * s0[i] + w1 * s1[i] + w2 * s2[i] + w3 * s3[i] + w4 * s4[i]
                              + w5 * s5[i] + w6 * s6[i] + w7 * s7[i] + w8 * s8[i])
        elif m == 3:
            s0 = x[offs[k0] + j0:offs[k0] + j0 + n]
            s1 = x[offs[k0 + 1] + j0:offs[k0 + 1] + j0 + n]
            s2 = x[offs[k0 + 2] + j0:offs[k0 + 2] + j0 + n]
            w0, w1, w2 = ws[k0], ws[k0 + 1], ws[k0 + 2]
            if first:
                for i in range(U(n)):
                    ro[i] = w0 * s0[i] + w1 * s1[i] + w2 * s2[i]
            else:
                for i in range(U(n)):
                    ro[i] += w0 * s0[i] + w1 * s1[i] + w2 * s2[i]
        else:  # one tap
            s0 = x[offs[k0] + j0:offs[k0] + j0 + n]
            w0 = ws[k0]
            if first:
                for i in range(U(n)):
                    ro[i] = w0 * s0[i]
            else:
                for i in range(U(n)):
                    ro[i] += w0 * s0[i]

    @njit(fastmath=_FAST, cache=True, nogil=True, inline="always")
    def edge(x, offs, cols, ws, nv, j, n_in, zero):
        """Output column j from the taps that read inside the input there."""
        s = zero
        for k in range(nv):
            c = j + cols[k]
            if 0 <= c < n_in:
                s += ws[k] * x[offs[k] + j]
        return s

    @njit(parallel=True, fastmath=_FAST, cache=True, nogil=True)
    def rows(xf, wt, tapidx, out, in_shape, in_pitch, out_lead, stride, dilation, lo,
             plane_group, zero, nunits):
        # xf: (planes, prod(S_in)) flat; wt: (groups, Og, T); tapidx: (T, N)
        # the kernel index of each tap per dim; out: (planes, Og, Q, W), Q
        # rows of W outputs (out_lead: the leading output dims, Q their
        # product); in_pitch: the flat stride of each input dim. The last
        # dim's stride is 1. Units: runs of rows, shared among the threads.
        planes, Og, Q, W = out.shape
        T, N = tapidx.shape
        last = N - 1
        n_in = in_shape[last]
        total = planes * Q
        for u in prange(nunits):
            i0 = u * total // nunits
            i1 = (u + 1) * total // nunits
            coord = np.empty(max(last, 1), np.int64)
            offs = np.empty(T, np.int64)  # each valid tap's flat start (column 0 of out)
            cols = np.empty(T, np.int64)  # its column shift
            keep = np.empty(T, np.int64)  # its tap number
            ws = np.empty(T, wt.dtype)
            for idx in range(i0, i1):
                p = idx // Q
                q = idx - p * Q
                r = q
                for i in range(last - 1, -1, -1):
                    coord[i] = r % out_lead[i]
                    r //= out_lead[i]
                # the taps whose input row exists; the interior columns j0..j1-1
                # where every one of them reads inside the input
                nv = 0
                j0, j1 = 0, W
                for t in range(T):
                    base = 0
                    inside = True
                    for i in range(last):
                        c = coord[i] * stride[i] + tapidx[t, i] * dilation[i] - lo[i]
                        if c < 0 or c >= in_shape[i]:
                            inside = False
                            break
                        base += c * in_pitch[i]
                    if not inside:
                        continue
                    shift = tapidx[t, last] * dilation[last] - lo[last]
                    offs[nv] = base + shift
                    cols[nv] = shift
                    keep[nv] = t
                    nv += 1
                    j0 = max(j0, -shift)
                    j1 = min(j1, n_in - shift)
                if j1 <= j0:  # no column where every tap reads the input
                    j0 = j1 = W
                x = xf[p]
                g = plane_group[p]
                for o in range(Og):
                    row = out[p, o, q]
                    if nv == 0:
                        row[:] = 0
                        continue
                    for k in range(nv):
                        ws[k] = wt[g, o, keep[k]]
                    k = 0
                    while k < nv:
                        step = 9 if nv - k >= 9 else (3 if nv - k >= 3 else 1)
                        row_sum(x, row, offs, ws, k, k + step, j0, j1 - j0, k == 0)
                        k += step
                    # the edge columns: each tap where it reads the input
                    for j in range(j0):
                        row[j] = edge(x, offs, cols, ws, nv, j, n_in, zero)
                    for j in range(max(j0, j1), W):
                        row[j] = edge(x, offs, cols, ws, nv, j, n_in, zero)
        return out

    return rows


def kernel():
    """The compiled kernel, or None without numba."""
    return build_once(_KERNELS, _build)


def eligible(spec) -> bool:
    """Whether :func:`run` takes ``spec``: one input channel per group, float32 or
    float64 on NumPy, stride 1 along the last dim, no input dilation, zero
    padding, and output rows of at least :data:`MIN_ROW` elements."""
    return (spec.numpy and spec.in_channels == spec.groups
            and spec.dtype in (np.dtype(np.float32), np.dtype(np.float64))
            and spec.stride[-1] == 1 and all(r == 1 for r in spec.lhs_dilation)
            and spec.padding_mode == "zeros" and spec.out_spatial[-1] >= MIN_ROW
            and all(lo >= 0 and hi >= 0 for lo, hi in spec.pairs)
            and _KERNELS.get("k", True) is not None)


@functools.lru_cache(maxsize=256)
def _args(spec):
    """The kernel's integer arguments for ``spec`` (threads aside)."""
    i64 = lambda v: np.array(v, dtype=np.int64)  # noqa: E731
    S_in, S_out = spec.in_spatial, spec.out_spatial
    N = spec.ndim
    pitch = i64([math.prod(S_in[i + 1:]) for i in range(N)])
    tapidx = np.array(list(np.ndindex(*spec.kernel_size)), dtype=np.int64).reshape(-1, N)
    return (tapidx, i64(S_in), pitch, i64(S_out[:-1]), i64(spec.stride), i64(spec.dilation),
            i64([lo for lo, _ in spec.pairs]))


def run(x, w, spec, threads):
    """The correlation ``spec`` (see :func:`eligible`) of ``x`` with ``w`` on
    ``threads`` of numba's threads; None without numba."""
    rows = kernel()
    if rows is None:
        return None
    from ._jit import set_threads

    g = spec.groups
    B, O = spec.batch, spec.out_channels
    Og = O // g
    S_out = spec.out_spatial
    xf = np.ascontiguousarray(x, dtype=spec.dtype).reshape(B * g, -1)
    wt = np.ascontiguousarray(w, dtype=spec.dtype).reshape(g, Og, spec.taps)
    # (on whole huge pages: a fresh 12 MP output faulted 477 times, not 24)
    out = _pages.empty((B * g, Og, math.prod(S_out[:-1]), S_out[-1]), spec.dtype)
    total = B * g * math.prod(S_out[:-1])
    # Units of rows: a few per thread (balance under load), never tiny.
    nunits = max(1, min(total // _UNIT_ROWS, 4 * threads))
    set_threads(threads if nunits > 1 else 1)
    tapidx, *rest = _args(spec)
    rows(xf, wt, tapidx, out, *rest, np.arange(B * g) % g, spec.dtype.type(0), nunits)
    return out.reshape(B, O, *S_out)

"""The compiled bodies of :mod:`._direct_jit` (imported only where numba is).

At module level, not built inside a function: numba's on-disk cache keys a
function by its bytecode *and the pickled contents of its closure*, and a
captured dispatcher (the inlined helpers below) pickles with an id of its
process, so kernels built as closures missed the cache in every new process
(the first direct layer of every process compiled again: 14-22 s). The
helpers here are globals, which the key leaves out.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._jit import FAST_MATH as _FAST


# fast-math without its no-NaN/no-Inf assumptions: NaN and Inf stay values.
inline = njit(fastmath=_FAST, cache=True, nogil=True, inline="always")
U = np.uint64  # unsigned indices: numba checks signed ones for wraparound,
# which keeps LLVM from vectorising the loops (measured 13x slower)


@inline
def prod(a, i0, i1):
    """a[i0] * ... * a[i1 - 1]."""
    p = 1
    for i in range(i0, i1):
        p *= a[i]
    return p


@inline
def fill(x, xbase, cg, cstride, buf, boff, r0, nrows_in, lo, in_shape, in_pitch, ext, lb,
         zero):
    """cg planes of x (flat, the first at xbase, cstride apart) into buf
    (flat, from boff, lb apart), zero-padded: buffer coordinate e_i holds
    input coordinate e_i - lo_i (+ r0 in dim 0), for nrows_in rows of dim 0."""
    N = in_shape.shape[0]
    last = N - 1
    E = ext[last]
    inner = prod(ext, 1, last)
    rows = nrows_in * inner
    a = max(0, lo[last])  # first buffer column with an input
    z = max(a, min(E, lo[last] + in_shape[last]))  # one past the last
    e = np.zeros(max(last, 1), np.int64)  # buffer coordinates of row r (odometer)
    for r in range(rows):
        src = 0
        inside = True
        for i in range(last):
            ci = e[i] - lo[i] + (r0 if i == 0 else 0)
            if ci < 0 or ci >= in_shape[i]:
                inside = False
            src += ci * in_pitch[i]
        i = last - 1
        while i >= 0:  # next row: no division per row
            e[i] += 1
            if e[i] < (nrows_in if i == 0 else ext[i]):
                break
            e[i] = 0
            i -= 1
        for c in range(cg):
            d = U(boff + c * lb + r * E)
            if not inside:
                for j in range(U(E)):
                    buf[d + j] = zero
                continue
            for j in range(U(a)):
                buf[d + j] = zero
            sx = U(xbase + c * cstride + src - lo[last])
            for j in range(U(a), U(z)):
                buf[d + j] = x[sx + j]
            for j in range(U(z), U(E)):
                buf[d + j] = zero


@inline
def accumulate(buf, lb, w, wbase, cg, T, offs, acc, L):
    """acc[:L] = sum over channels c and taps t of w[wbase + c*T + t] * buf[c*lb + off_t + i]."""
    n = U(L)
    first = True
    for c in range(cg):
        cb = c * lb
        wc0 = wbase + c * T
        t = 0
        while t < T:
            if t + 2 < T:  # three taps per pass over the accumulator
                wa, wb, wc = w[wc0 + t], w[wc0 + t + 1], w[wc0 + t + 2]
                oa, ob, oc = U(cb + offs[t]), U(cb + offs[t + 1]), U(cb + offs[t + 2])
                if first:
                    for i in range(n):
                        acc[i] = wa * buf[oa + i] + wb * buf[ob + i] + wc * buf[oc + i]
                else:
                    for i in range(n):
                        acc[i] += wa * buf[oa + i] + wb * buf[ob + i] + wc * buf[oc + i]
                t += 3
            else:
                wa = w[wc0 + t]
                oa = U(cb + offs[t])
                if first:
                    for i in range(n):
                        acc[i] = wa * buf[oa + i]
                else:
                    for i in range(n):
                        acc[i] += wa * buf[oa + i]
                t += 1
            first = False


@inline
def copy_out(acc, aoff, out, obase, r0, nr, out_shape, pitch, bv):
    """Output rows r0..r0+nr of one plane (flat at obase) from the
    accumulator (from aoff) at the buffer's pitch, plus bv."""
    N = out_shape.shape[0]
    last = N - 1
    Wl = out_shape[last]
    inner = prod(out_shape, 1, last)
    base = obase + r0 * inner * Wl
    for r in range(nr * inner):
        rem = r
        src = 0
        for i in range(last - 1, 0, -1):
            e = rem % out_shape[i]
            rem //= out_shape[i]
            src += e * pitch[i]
        src += rem * pitch[0]
        s = U(aoff + src)
        d = U(base + r * Wl)
        for j in range(U(Wl)):
            out[d + j] = acc[s + j] + bv


def forward(x, w, out, B, C, O, in_shape, in_pitch, out_shape, lo, ext, pitch, offs,
            span0, tail, slab, nb, groups, bias, zero, nchunks):
    # x: (B, C, prod(S_in)), w: (O, Cg, T), out: (B, O, prod(S_out)), all
    # flat. ext/pitch: the buffer's extents (ext[0] unused) and flat
    # strides; span0: extra input rows of a slab; tail: wide index of
    # the last output of a slab row; bias: (O,), zeros for none. A unit
    # is a slab of `slab` output rows of one item, or (nb > 1, small
    # planes) nb whole items stacked in the buffer: one loop then
    # covers them all (the rows between them are computed and dropped).
    cg = C // groups
    og = O // groups
    T = offs.shape[0]
    S = 1
    P = 1
    for i in range(in_shape.shape[0]):
        S *= in_shape[i]
        P *= out_shape[i]
    per = (out_shape[0] + slab - 1) // slab
    stacks = (B + nb - 1) // nb
    units = groups * stacks * per
    rows_in = slab + span0  # buffer rows of one item
    lb = nb * rows_in * pitch[0]
    for ch in prange(nchunks):
        u0 = ch * units // nchunks
        u1 = (ch + 1) * units // nchunks
        buf = np.empty(cg * lb, x.dtype)
        acc = np.empty(((nb - 1) * rows_in + slab - 1) * pitch[0] + tail + 1, x.dtype)
        for u in range(u0, u1):
            s = u % per
            rest = u // per
            bi = rest % stacks
            grp = rest // stacks
            b0 = bi * nb
            nbk = min(nb, B - b0)
            r0 = s * slab
            nr = min(out_shape[0], r0 + slab) - r0
            for k in range(nbk):
                fill(x, ((b0 + k) * C + grp * cg) * S, cg, S, buf, k * rows_in * pitch[0],
                     r0, nr + span0, lo, in_shape, in_pitch, ext, lb, zero)
            L = ((nbk - 1) * rows_in + nr - 1) * pitch[0] + tail + 1
            for oo in range(og):
                o = grp * og + oo
                accumulate(buf, lb, w, o * cg * T, cg, T, offs, acc, L)
                for k in range(nbk):
                    copy_out(acc, k * rows_in * pitch[0], out, ((b0 + k) * O + o) * P,
                             r0, nr, out_shape, pitch, bias[o])
    return out


def weights(x, k, out, Bn, C, O, in_shape, in_pitch, k_shape, lo, ext, pitch, poffs,
            groups, zero, nchunks):
    # The correlation out[n, o, p] = sum_c sum_t k[o, c, t] * xpad[n, c, p + t]
    # with many taps t and few positions p (poffs: their flat offsets in
    # the buffer), as one dot product per kernel row: the buffer's
    # padding columns never meet the kernel, so a NaN or Inf reaches only
    # the outputs whose window holds it. x: (Bn, C, prod(S_in)),
    # k: (O, Cg, prod(K)) flat; out: (nchunks, Bn, O, P), a partial sum
    # per chunk.
    cg = C // groups
    og = O // groups
    P = poffs.shape[0]
    units = Bn * C  # (item, channel): one input plane each
    N = in_shape.shape[0]
    last = N - 1
    Wk = k_shape[last]
    krows = 1
    S = 1
    for i in range(N):
        S *= in_shape[i]
    for i in range(last):
        krows *= k_shape[i]
    rowoff = np.empty(krows, np.int64)  # each kernel row's offset in the buffer
    for r in range(krows):
        rem = r
        dst = 0
        for i in range(last - 1, -1, -1):
            e = rem % k_shape[i]
            rem //= k_shape[i]
            dst += e * pitch[i]
        rowoff[r] = dst
    nk = U(Wk)
    lb = ext[0] * pitch[0]
    for ch in prange(nchunks):
        u0 = ch * units // nchunks
        u1 = (ch + 1) * units // nchunks
        buf = np.empty(lb, x.dtype)
        res = out[ch]
        res[:] = 0
        for u in range(u0, u1):
            n = u // C
            c = u - n * C
            grp = c // cg
            fill(x, u * S, 1, S, buf, 0, 0, ext[0], lo, in_shape, in_pitch, ext, lb, zero)
            for oo in range(og):
                o = grp * og + oo
                kb = (o * cg + c - grp * cg) * krows * Wk
                for p in range(P):
                    s = zero
                    for r in range(krows):
                        q = U(poffs[p] + rowoff[r])
                        kr = U(kb + r * Wk)
                        for j in range(nk):
                            s += k[kr + j] * buf[q + j]
                    res[n, o, p] += s
    return out


"""The fused path of :func:`ndconv.images.filter_image`: compiled (numba) passes
from the image's own dtype straight to the output's.

The bands of :mod:`ndconv.images.filter` convert each band to float, hand it
to :func:`ndconv.conv`, then round, clip and transpose it back to channels
last: four passes over memory around the correlation, which for a 3x3 kernel
cost far more than the correlation itself. Here one compiled pass per band
reads the image's rows as the kernel reaches them (converted once each, into
a ring of the kernel's span of padded rows: every boundary mode by the same
index arithmetic as the bands), sums the kernel's taps and writes rounded,
clipped pixels into the channels-last output:

- ``'direct'``: a 2-D kernel of at most :data:`FUSED_TAPS` nonzero taps,
  only those taps (OpenCV's ``filter2D`` skips zeros too);
- ``'separable'``: a larger rank-1 kernel ``outer(u, v)`` (box, Gaussian), a
  column pass then a row pass over strips of columns.

Everything else (colour-mixing kernels, large kernels of higher rank, which
go to the FFT, ``value_range='rescale'``, sums that could overflow, no numba)
takes the bands.
"""

from __future__ import annotations

import numpy as np

from ..core._windows import source_index
from ..core.algorithms._jit import build_once

#: Nonzero taps up to which one compiled pass beats the bands through
#: ``conv`` (a band converts the image to float, ``conv`` correlates it, and
#: rounding, clipping and the transposition back to channels-last are three
#: more passes; measured on 12 MP RGB uint8, 1 thread: 3x3 0.15 s -> 0.025 s).
FUSED_TAPS = 49

#: Largest ``k_h + k_w`` of a rank-1 kernel that the fused path computes as
#: a column pass and a row pass (beyond, the bands' FFT).
SEPARABLE_TAPS = 128

#: Output elements per chunk of a row: the accumulator stays in L1 for all taps.
_CHUNK = 1024

#: Output bytes per band (at least 8 kernel spans of rows): the fused path
#: holds no float band, so its bands are short, and a caller that writes each
#: finished band (the CLI) overlaps writing with computing the next.
BAND_BYTES = 4 << 20

#: The compiled kernels (see ``core.algorithms._jit.build_once``).
_KERNELS: dict = {}


def compiled():
    """``(direct, separable)`` compiled kernels, or None without numba."""
    return build_once(_KERNELS, _build_fused)


def _build_fused():
    # The helpers become module globals, not variables of this function: a
    # kernel that closes over other compiled functions is never found in
    # numba's cache (their pickled dispatchers differ in every process), and
    # each ``ndconv filter`` compiled its kernel again (10 s of CPU under load).
    global load_row, store
    from numba import njit, prange

    @njit(fastmath=True, nogil=True, cache=True)
    def load_row(img, C, row, cidx, q0, q1, p0, p1, dst):
        # Padded columns p0..p1-1 of the padded row that copies input row
        # ``row`` (-1: a row of zeros), in the work dtype, into dst. cidx: the
        # input column of each padded column (-1: zero); q0..q1-1 copy the
        # input's columns in order (the interior, copied without a gather).
        if row < 0:
            dst[:(p1 - p0) * C] = 0
            return
        src = img[row]
        a, b = max(p0, q0), min(p1, q1)
        if b <= a:
            a = b = p1  # no interior: every column is border
        else:
            inner = dst[(a - p0) * C:(b - p0) * C]
            part = src[cidx[a] * C:(cidx[a] + b - a) * C]
            for m in range((b - a) * C):
                inner[m] = part[m]
        for q in range(p0, a):  # the borders: gathered
            c = cidx[q]
            for ch in range(C):
                dst[(q - p0) * C + ch] = 0 if c < 0 else src[c * C + ch]
        for q in range(b, p1):
            c = cidx[q]
            for ch in range(C):
                dst[(q - p0) * C + ch] = 0 if c < 0 else src[c * C + ch]

    @njit(fastmath=True, nogil=True, cache=True)
    def store(ac, dst, lo, hi, take_abs, rounding):
        # The sums as pixels: |y| for 'abs', rounded (half to even, as
        # np.rint) for integer outputs, clipped to [lo, hi].
        n = ac.shape[0]
        if take_abs:
            for m in range(n):
                ac[m] = abs(ac[m])
        if rounding:
            for m in range(n):
                dst[m] = min(max(np.rint(ac[m]), lo), hi)
        else:
            for m in range(n):
                dst[m] = min(max(ac[m], lo), hi)

    @njit(parallel=True, fastmath=True, cache=True, nogil=True)
    def fused(img, C, ridx, cidx, q0, q1, ta, tb, tw, span, sh, sw, r0, r1, block, lo, hi,
              take_abs, rounding, out):
        # img: (H, W*C) channels-last rows; out: (H_out, W_out*C). ridx / cidx:
        # the input row / column each padded row / column copies, -1 for a
        # zero of the padding; padded columns q0..q1-1 copy columns
        # q - q0 + cidx[q0] in order (the interior, copied without a gather).
        # The kernel's nonzero taps only (OpenCV's filter2D skips zeros too):
        # tap t reads padded row r*sh + ta[t], at offset tb[t] in it, times
        # tw[t]. Each block of output rows keeps the kernel's span of padded
        # rows, converted to the work dtype once each, in a ring.
        T = tw.shape[0]
        Wp = cidx.shape[0]
        M = out.shape[1]
        nblocks = (r1 - r0 + block - 1) // block
        for bi in prange(nblocks):
            b0 = r0 + bi * block
            b1 = min(r1, b0 + block)
            ring = np.empty((span, Wp * C), dtype=tw.dtype)
            held = np.full(span, -1, np.int64)
            acc = np.empty(_CHUNK, dtype=tw.dtype)
            for r in range(b0, b1):
                for t in range(T):
                    pr = r * sh + ta[t]
                    s = pr % span
                    if held[s] == pr:
                        continue
                    held[s] = pr
                    load_row(img, C, ridx[pr], cidx, q0, q1, 0, Wp, ring[s])
                orow = out[r - r0]
                for m0 in range(0, M, _CHUNK):
                    n = min(_CHUNK, M - m0)
                    # Slices, not offset indexing: LLVM vectorises these loops.
                    ac = acc[:n]
                    if sw == 1:
                        t = 0
                        if T % 3 != 0:  # the first one or two taps set the chunk
                            sa = ring[(r * sh + ta[0]) % span][m0 + tb[0]:m0 + tb[0] + n]
                            wa = tw[0]
                            if T % 3 == 1:
                                for m in range(n):
                                    ac[m] = wa * sa[m]
                            else:
                                sb = ring[(r * sh + ta[1]) % span][m0 + tb[1]:m0 + tb[1] + n]
                                wb = tw[1]
                                for m in range(n):
                                    ac[m] = wa * sa[m] + wb * sb[m]
                            t = T % 3
                        else:
                            ac[:] = 0
                        while t < T:  # three taps per pass over the chunk
                            sa = ring[(r * sh + ta[t]) % span][m0 + tb[t]:m0 + tb[t] + n]
                            sb = ring[(r * sh + ta[t + 1]) % span][m0 + tb[t + 1]:m0 + tb[t + 1] + n]
                            sc = ring[(r * sh + ta[t + 2]) % span][m0 + tb[t + 2]:m0 + tb[t + 2] + n]
                            wa, wb, wc = tw[t], tw[t + 1], tw[t + 2]
                            for m in range(n):
                                ac[m] += wa * sa[m] + wb * sb[m] + wc * sc[m]
                            t += 3
                    else:
                        ac[:] = 0
                        for t in range(T):
                            buf = ring[(r * sh + ta[t]) % span]
                            wv = tw[t]
                            for m in range(n):
                                j = (m0 + m) // C
                                ch = (m0 + m) - j * C
                                ac[m] += wv * buf[j * sw * C + tb[t] + ch]
                    store(ac, orow[m0:m0 + n], lo, hi, take_abs, rounding)
        return out

    @njit(parallel=True, fastmath=True, cache=True, nogil=True)
    def fused_separable(img, C, ridx, cidx, q0, q1, u, du, v, dv, span, sh, sw, r0, r1,
                        block, J, lo, hi, take_abs, rounding, out):
        # A rank-1 kernel outer(u, v): per output row, the column pass (taps
        # u at padded-row offsets du) into a row, then the row pass (taps v at
        # padded-column offsets dv). The work is cut into blocks of rows times
        # strips of J output columns, so that a strip's ring of ``span``
        # padded rows stays in L2.
        kh, kw = u.shape[0], v.shape[0]
        W_out = out.shape[1] // C
        nstrips = (W_out + J - 1) // J
        nblocks = (r1 - r0 + block - 1) // block
        for task in prange(nblocks * nstrips):
            bi = task // nstrips
            j0 = (task - bi * nstrips) * J
            j1 = min(W_out, j0 + J)
            b0 = r0 + bi * block
            b1 = min(r1, b0 + block)
            p0, p1 = j0 * sw, (j1 - 1) * sw + dv[kw - 1] + 1
            width = (p1 - p0) * C
            n = (j1 - j0) * C
            ring = np.empty((span, width), dtype=u.dtype)
            held = np.full(span, -1, np.int64)
            col = np.empty(width, dtype=u.dtype)
            ac = np.empty(n, dtype=u.dtype)
            for r in range(b0, b1):
                for a in range(kh):
                    pr = r * sh + du[a]
                    s = pr % span
                    if held[s] != pr:
                        held[s] = pr
                        load_row(img, C, ridx[pr], cidx, q0, q1, p0, p1, ring[s])
                # the column pass, three taps per pass over the row
                sa = ring[(r * sh + du[0]) % span]
                wa = u[0]
                for m in range(width):
                    col[m] = wa * sa[m]
                a = 1
                while a < kh:
                    sa = ring[(r * sh + du[a]) % span]
                    wa = u[a]
                    if a + 2 < kh:
                        sb = ring[(r * sh + du[a + 1]) % span]
                        sc = ring[(r * sh + du[a + 2]) % span]
                        wb, wc = u[a + 1], u[a + 2]
                        for m in range(width):
                            col[m] += wa * sa[m] + wb * sb[m] + wc * sc[m]
                        a += 3
                    else:
                        for m in range(width):
                            col[m] += wa * sa[m]
                        a += 1
                # the row pass
                if sw == 1:
                    sa = col[dv[0] * C:dv[0] * C + n]
                    wa = v[0]
                    for m in range(n):
                        ac[m] = wa * sa[m]
                    b = 1
                    while b < kw:
                        sa = col[dv[b] * C:dv[b] * C + n]
                        wa = v[b]
                        if b + 2 < kw:
                            sb = col[dv[b + 1] * C:dv[b + 1] * C + n]
                            sc = col[dv[b + 2] * C:dv[b + 2] * C + n]
                            wb, wc = v[b + 1], v[b + 2]
                            for m in range(n):
                                ac[m] += wa * sa[m] + wb * sb[m] + wc * sc[m]
                            b += 3
                        else:
                            for m in range(n):
                                ac[m] += wa * sa[m]
                            b += 1
                else:
                    ac[:] = 0
                    for b in range(kw):
                        wv = v[b]
                        for m in range(n):
                            j = m // C
                            ch = m - j * C
                            ac[m] += wv * col[(j * sw + dv[b]) * C + ch]
                store(ac, out[r - r0, j0 * C:j1 * C], lo, hi, take_abs, rounding)
        return out

    return fused, fused_separable


def plan(kernel, value_range, dtype, largest, image_dtype):
    """How :func:`run` computes the 2-D ``kernel`` on every channel:
    ``('direct', None)`` for few nonzero taps, ``('separable', (u, v))`` for a
    larger rank-1 kernel ``outer(u, v)``, None when the bands do (a large
    kernel of higher rank goes to ``conv``'s FFT; ``'rescale'`` needs a second
    pass; numba is not installed; a float16 image; or the sums could overflow ``dtype`` for
    inputs up to ``largest`` in magnitude: the bands check every value).

    The fused path never checks its sums: ``sum|w| * largest`` bounds them
    (and the column pass's, whose factor carries the kernel's scale while
    the row factor's largest tap is 1).
    """
    if value_range not in ("clip", "abs") or dtype.kind != "f" or compiled() is None:
        return None
    if np.dtype(image_dtype) == np.float16:
        return None  # numba has no float16 arrays
    with np.errstate(over="ignore", invalid="ignore"):
        bound = np.abs(kernel).sum() * largest
    if not bound < np.finfo(dtype).max / 2:
        return None
    if np.count_nonzero(kernel) <= FUSED_TAPS:
        return "direct", None
    if sum(kernel.shape) > SEPARABLE_TAPS:
        return None
    from types import SimpleNamespace

    from ..core.algorithms.separable import factors

    us = factors(kernel[None, None], SimpleNamespace(kernel_size=kernel.shape, dtype=dtype))
    return None if us is None else ("separable", (us[0][0], us[1][0]))


def run(image, k, how, pairs, stride, dilation, mode, rows_per_tile, dtype, lo, hi,
        value_range, out, done, wait=None):
    """The 2-D kernel ``k`` on every channel alike, in one compiled pass per band:
    the image's rows are converted to ``dtype`` as the kernel reaches them, and
    the sums are rounded and clipped into ``out`` (channels last) directly.
    ``wait(r0, r1)`` is called before each band of output rows (its input
    rows are then there), ``done(r0, r1)`` after it."""
    from ..core.algorithms._jit import set_threads
    from ..core.algorithms.threads import get_num_threads

    H, W = image.shape[:2]
    C = 1 if image.ndim == 2 else image.shape[2]
    img = np.ascontiguousarray(image).reshape(H, W * C)
    kh = k.shape[0]
    (lo_h, _), (lo_w, hi_w) = pairs
    H_out, W_out = out.shape[:2]
    rows = np.arange((H_out - 1) * stride[0] + dilation[0] * (kh - 1) + 1) - lo_h
    ridx, rin = source_index(rows, H, mode)
    ridx = np.where(rin, ridx, -1).astype(np.int64)
    cidx, cin = source_index(np.arange(-lo_w, W + hi_w), W, mode)
    cidx = np.where(cin, cidx, -1).astype(np.int64)
    # The interior: padded columns that copy the input's columns in order.
    q0, q1 = max(lo_w, 0), min(lo_w + W, cidx.size)
    q0, q1 = (q0, q1) if q1 > q0 else (0, 0)
    direct, separable = compiled()
    threads = get_num_threads()
    set_threads(threads)
    flat = out.reshape(H_out, W_out * out.shape[2])
    span = dilation[0] * (kh - 1) + 1
    lo, hi = dtype.type(lo), dtype.type(hi)
    rounding, take_abs = out.dtype.kind in "ui", value_range == "abs"
    if how[0] == "direct":
        a, b = np.nonzero(k)
        if a.size == 0:  # an all-zero kernel: one zero tap
            a, b = np.zeros(1, np.intp), np.zeros(1, np.intp)
        ta = (a * dilation[0]).astype(np.int64)
        tb = (b * dilation[1] * C).astype(np.int64)
        tw = k[a, b].astype(dtype)
    else:
        u, v = (f.astype(dtype) for f in how[1])
        du = np.arange(u.size, dtype=np.int64) * dilation[0]
        dv = np.arange(v.size, dtype=np.int64) * dilation[1]
        # Strips of about _CHUNK outputs; blocks of rows several spans tall
        # (each block refills its ring of span rows).
        J = max(16, _CHUNK // C)
    step = min(rows_per_tile, max(8 * span // stride[0], BAND_BYTES // max(1, flat[0].nbytes)))
    for r0 in range(0, H_out, max(1, step)):
        r1 = min(H_out, r0 + step)
        if wait is not None:
            wait(r0, r1)
        if how[0] == "direct":
            block = max(16, -(-(r1 - r0) // (4 * threads)))
            direct(img, C, ridx, cidx, q0, q1, ta, tb, tw, span, stride[0], stride[1],
                   r0, r1, block, lo, hi, take_abs, rounding, flat[r0:r1])
        else:
            block = max(4 * span // stride[0], 16, -(-(r1 - r0) // (2 * threads)))
            separable(img, C, ridx, cidx, q0, q1, u, du, v, dv, span, stride[0], stride[1],
                      r0, r1, block, J, lo, hi, take_abs, rounding, flat[r0:r1])
        done(r0, r1)
    return out

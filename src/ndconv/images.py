"""Filter real photos with :func:`ndconv.conv`, in tiles of rows.

An image is an array ``(H, W)`` (grayscale) or ``(H, W, C)`` (colour), of an
int dtype (uint8, uint16, int32, ...) or float. :func:`filter_image` correlates it with a 2-D kernel
applied to every channel alone (``groups=C``), or with a colour-mixing kernel
``(C_out, C_in, k_h, k_w)`` that combines channels (``groups=1``), with any
padding, boundary mode, stride and dilation of :func:`ndconv.conv`.

The output is computed one band of rows at a time: each band reads its input
rows plus a halo of ``dilation*(k_h-1)`` rows, builds the padded border itself
(by index arithmetic, for every boundary mode), and hands a float band to
:func:`ndconv.conv` with ``padding=0``. So the float working memory is bounded
by ``max_tile_bytes`` whatever the image size; the input and the output images
themselves are held in memory in their own dtype.

Value range
-----------
The correlation of a uint8 photo with ``sharpen`` or ``edge`` leaves 0..255, so
``value_range`` says what happens:

* ``'clip'`` (default): round and clip to the input's range, the dtype's
  ``0..max`` for integer images, the input's own ``[min, max]`` for float ones.
* ``'abs'``: the absolute value, then clipped (edge magnitudes).
* ``'rescale'``: map the output's ``[min, max]`` linearly onto that range
  (a second pass over the tiles finds min and max first).

Reading and writing files (Pillow, and tifffile for TIFF where installed,
imported only when called) is here too: :func:`read_image`,
:func:`write_image` and :func:`verify_written`, which change nothing silently
(depth, alpha, orientation, pages: see the comment above :func:`read_image`).
"""

from __future__ import annotations

import numpy as np

from . import _args, _memory
from ._windows import source_index
from .functional import conv

__all__ = ["filter_image", "read_image", "write_image", "output_format", "VALUE_RANGES"]

VALUE_RANGES = ("clip", "abs", "rescale")

# Formats Pillow writes, by file suffix.
_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}


# --------------------------------------------------------------------------
# validation


def _check_image(image):
    if not isinstance(image, np.ndarray):
        raise TypeError(f"`image` must be an ndarray, got {type(image).__name__}")
    if image.ndim not in (2, 3):
        raise ValueError(
            f"`image` must have shape (H, W) or (H, W, C), got shape {image.shape}"
        )
    if image.dtype.kind not in "uif" or image.dtype.itemsize > 8:
        raise TypeError(
            f"`image` must be of an int (uint8, uint16, int32, ...) or float dtype, "
            f"got dtype {image.dtype}"
        )
    _args.check_no_empty(image, "image")
    if image.dtype.kind == "f" and not np.isfinite(image).all():
        raise ValueError("`image` contains NaN or infinity")


def _weight(kernel, channels):
    """Return (weight (C_out, C_in/groups, kh, kw) float64, groups)."""
    k = np.asarray(kernel)
    if k.dtype.kind not in "iuf":
        raise TypeError(f"`kernel` must be a real numeric array, got dtype {k.dtype}")
    k = k.astype(np.float64)
    _args.check_no_empty(k, "kernel")
    if not np.isfinite(k).all():
        raise ValueError("`kernel` contains NaN or infinity")
    if k.ndim == 2:
        # The same kernel on every channel alone: a depthwise convolution.
        return np.broadcast_to(k, (channels, 1) + k.shape).copy(), channels
    if k.ndim == 4:
        if k.shape[1] != channels:
            raise ValueError(
                f"colour-mixing `kernel` of shape {k.shape} is (C_out, C_in, k_h, "
                f"k_w) with C_in = {k.shape[1]}, but the image has {channels} "
                "channel(s)"
            )
        return k, 1
    raise ValueError(
        f"`kernel` must be 2-D (k_h, k_w), applied to each channel, or 4-D "
        f"(C_out, C_in, k_h, k_w), mixing channels; got shape {k.shape}"
    )


# --------------------------------------------------------------------------
# computing (arguments already validated)


def _tiles(chw, w, groups, pairs, stride, dilation, mode, rows_per_tile, dtype):
    """Yield ``(r0, r1, band)``: output rows r0..r1-1 as (C_out, r1-r0, W_out)."""
    C, H, W = chw.shape
    kh, kw = w.shape[2:]
    (lo_h, hi_h), (lo_w, hi_w) = pairs
    sh, sw = stride
    dh, dw = dilation
    H_out, W_out = _args.output_size((H, W), (kh, kw), stride, pairs, dilation)
    cols = np.arange(-lo_w, W + hi_w)
    cidx, cin = source_index(cols, W, mode)
    wt = w.astype(dtype)
    for r0 in range(0, H_out, rows_per_tile):
        r1 = min(H_out, r0 + rows_per_tile)
        # Padded rows this band reads: its own plus the halo of the kernel.
        p0, p1 = r0 * sh - lo_h, (r1 - 1) * sh + dh * (kh - 1) + 1 - lo_h
        a, b = max(p0, 0), min(p1, H)
        if mode == "zeros" and a < b:
            # Zero padding is conv's own (no padded copy: the compiled
            # kernels skip the taps outside the input); the band is one
            # pass that converts and makes channels contiguous.
            band = np.ascontiguousarray(chw[:, a:b], dtype=dtype)
            out = conv(band, wt, stride=(sh, sw), padding=((a - p0, p1 - b), (lo_w, hi_w)),
                       dilation=(dh, dw), groups=groups)
        else:
            ridx, rin = source_index(np.arange(p0, p1), H, mode)
            band = chw[:, ridx][:, :, cidx].astype(dtype)
            if not (rin.all() and cin.all()):
                band *= (rin[:, None] & cin[None, :])
            out = conv(band, wt, stride=(sh, sw), dilation=(dh, dw), groups=groups)
        yield r0, r1, out


# --------------------------------------------------------------------------
# the fused path: small kernels, from the image's own dtype to the output's

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

_FUSED = None


def _fused_kernel():
    """The compiled kernel of :func:`_filter_fused`, or None without numba."""
    global _FUSED
    if _FUSED is None:
        try:
            import numba
        except ImportError:
            _FUSED = False
        else:
            _FUSED = _build_fused(numba)
    return _FUSED or None


def _build_fused(numba):
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
        if b > a:
            inner = dst[(a - p0) * C:(b - p0) * C]
            part = src[cidx[a] * C:(cidx[a] + b - a) * C]
            for m in range((b - a) * C):
                inner[m] = part[m]
        for q in range(p0, p1):
            if a <= q < b:
                continue
            c = cidx[q]
            for ch in range(C):
                dst[(q - p0) * C + ch] = 0 if c < 0 else src[c * C + ch]

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
                    dst = orow[m0:m0 + n]
                    if take_abs:
                        for m in range(n):
                            ac[m] = abs(ac[m])
                    if rounding:
                        for m in range(n):
                            dst[m] = min(max(np.rint(ac[m]), lo), hi)
                    else:
                        for m in range(n):
                            dst[m] = min(max(ac[m], lo), hi)
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
                dst = out[r - r0, j0 * C:j1 * C]
                if take_abs:
                    for m in range(n):
                        ac[m] = abs(ac[m])
                if rounding:
                    for m in range(n):
                        dst[m] = min(max(np.rint(ac[m]), lo), hi)
                else:
                    for m in range(n):
                        dst[m] = min(max(ac[m], lo), hi)
        return out

    return fused, fused_separable


def _fused_plan(kernel, value_range, dtype, largest):
    """How :func:`_filter_fused` computes the 2-D ``kernel`` on every channel:
    ``('direct', None)`` for few nonzero taps, ``('separable', (u, v))`` for a
    larger rank-1 kernel ``outer(u, v)``, None when the bands do (a large
    kernel of higher rank goes to ``conv``'s FFT; ``'rescale'`` needs a second
    pass; numba is not installed; or the sums could overflow ``dtype`` for
    inputs up to ``largest`` in magnitude: the bands check every value).

    The fused path never checks its sums: ``sum|w| * largest`` bounds them
    (and the column pass's, whose factor carries the kernel's scale while
    the row factor's largest tap is 1).
    """
    if value_range not in ("clip", "abs") or dtype.kind != "f" or _fused_kernel() is None:
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        bound = np.abs(kernel).sum() * largest
    if not bound < np.finfo(dtype).max / 2:
        return None
    if np.count_nonzero(kernel) <= FUSED_TAPS:
        return "direct", None
    if sum(kernel.shape) > SEPARABLE_TAPS:
        return None
    from types import SimpleNamespace

    from .algorithms.separable import factors

    us = factors(kernel[None, None], SimpleNamespace(kernel_size=kernel.shape, dtype=dtype))
    return None if us is None else ("separable", (us[0][0], us[1][0]))


def _filter_fused(image, k, plan, pairs, stride, dilation, mode, rows_per_tile, dtype, lo,
                  hi, value_range, out, progress):
    """The 2-D kernel ``k`` on every channel alike, in one compiled pass per band:
    the image's rows are converted to ``dtype`` as the kernel reaches them, and
    the sums are rounded and clipped into ``out`` (channels last) directly."""
    from .algorithms._jit import set_threads
    from .algorithms.threads import get_num_threads

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
    direct, separable = _fused_kernel()
    threads = get_num_threads()
    set_threads(threads)
    flat = out.reshape(H_out, W_out * out.shape[2])
    span = dilation[0] * (kh - 1) + 1
    lo, hi = dtype.type(lo), dtype.type(hi)
    rounding, take_abs = out.dtype.kind in "ui", value_range == "abs"
    if plan[0] == "direct":
        a, b = np.nonzero(k)
        if a.size == 0:  # an all-zero kernel: one zero tap
            a, b = np.zeros(1, np.intp), np.zeros(1, np.intp)
        ta = (a * dilation[0]).astype(np.int64)
        tb = (b * dilation[1] * C).astype(np.int64)
        tw = k[a, b].astype(dtype)
    else:
        u, v = (f.astype(dtype) for f in plan[1])
        du = np.arange(u.size, dtype=np.int64) * dilation[0]
        dv = np.arange(v.size, dtype=np.int64) * dilation[1]
        # Strips of about _CHUNK outputs; blocks of rows several spans tall
        # (each block refills its ring of span rows).
        J = max(16, _CHUNK // C)
    for r0 in range(0, H_out, rows_per_tile):
        r1 = min(H_out, r0 + rows_per_tile)
        if plan[0] == "direct":
            block = max(16, -(-(r1 - r0) // (4 * threads)))
            direct(img, C, ridx, cidx, q0, q1, ta, tb, tw, span, stride[0], stride[1],
                   r0, r1, block, lo, hi, take_abs, rounding, flat[r0:r1])
        else:
            block = max(4 * span // stride[0], 16, -(-(r1 - r0) // (2 * threads)))
            separable(img, C, ridx, cidx, q0, q1, u, du, v, dv, span, stride[0], stride[1],
                      r0, r1, block, J, lo, hi, take_abs, rounding, flat[r0:r1])
        if progress is not None:
            progress(r1 - r0)
    return out


def _limits(image):
    if image.dtype.kind in "ui":
        info = np.iinfo(image.dtype)
        return float(info.min), float(info.max)
    return float(image.min()), float(image.max())


def _work_dtype(image_dtype, weight, largest):
    """The float dtype of the computation: float32 unless that could overflow.

    float64 for float64 images and ints wider than 16 bits (float32 would
    round their values), and whenever ``sum|w| * largest`` (a bound on every
    output) exceeds float32's range; ``largest`` is the largest input
    magnitude (None: unknown, then only the kernel itself must fit).
    """
    image_dtype = np.dtype(image_dtype)
    if image_dtype == np.float64 or image_dtype.kind in "ui" and image_dtype.itemsize > 2:
        return np.dtype(np.float64)
    w = np.abs(np.asarray(weight, dtype=np.float64))
    with np.errstate(over="ignore", invalid="ignore"):
        bound = w.sum(axis=tuple(range(1, w.ndim))).max() * (1.0 if largest is None else largest)
        fits = w.max() < np.finfo(np.float32).max / 2 and bound < np.finfo(np.float32).max / 2
    return np.dtype(np.float32 if fits else np.float64)


def check_finite_band(band, r0, r1):
    """Raise ValueError if a filtered band overflowed (never cast inf/NaN to pixels)."""
    if not np.isfinite(band).all():
        raise ValueError(
            f"the filtered image overflows (values beyond float64's range, or "
            f"inf - inf) in output rows {r0}..{r1 - 1}: the kernel's values are too "
            "large for this image; scale the kernel down"
        )


def filter_image(image, kernel, *, padding="same", padding_mode="zeros", stride=1,
                 dilation=1, value_range="clip", max_tile_bytes=64 << 20,
                 rows_per_tile=None, progress=None, alpha=False):
    """Correlate an image with a kernel, tile by tile, and bring it back to range.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C)
        uint8, uint16 or float.
    kernel : array_like, shape (k_h, k_w) or (C_out, C, k_h, k_w)
        2-D: applied to each channel alone. 4-D: mixes the ``C`` channels into
        ``C_out`` (e.g. 3 -> 3 for a colour transform).
    padding : {'same', 'valid', 'full'}, int, or per-dim ints / (lo, hi) pairs
        As :func:`ndconv.conv`; ``'same'`` keeps the input's size.
    padding_mode : {'zeros', 'reflect', 'replicate', 'circular'}
    stride, dilation : int or pair of ints, positive
    value_range : {'clip', 'abs', 'rescale'}
        See the module docstring.
    max_tile_bytes : int
        Budget for one band's float working memory; sets the rows per band.
    rows_per_tile : int, optional
        Output rows per band, overriding ``max_tile_bytes``.
    progress : callable, optional
        Called with the number of output rows finished after each band.
    alpha : bool
        The image's last channel is alpha (RGBA, or gray plus alpha): with a
        2-D kernel it is not filtered but kept, taken at each window's
        centre tap (the same padding, boundary mode, stride and dilation), so
        with ``'same'`` padding it comes back unchanged. A 4-D kernel mixes
        every channel, alpha too, as given.

    Returns
    -------
    ndarray, shape (H_out, W_out) or (H_out, W_out, C_out)
        The input's dtype for int images (uint8, uint16, int32, ...;
        rounded and clipped to the dtype's range), float32 for float16/float32
        input, float64 for float64, with
        ``H_out = floor((H + lo + hi - dilation*(k_h-1) - 1) / stride) + 1``
        and the same for ``W_out``.

    Raises
    ------
    ValueError
        Also when the result overflows (a kernel like ``[[1e308, -1e308]]``):
        no NaN or infinity is ever clipped into pixels silently.
    MemoryLimitError
        When a band or the output image would exceed the memory guard.
    """
    _check_image(image)
    if alpha and image.ndim == 3 and image.shape[2] >= 2 and np.ndim(kernel) == 2:
        return _keep_alpha(image, kernel, padding=padding, padding_mode=padding_mode,
                           stride=stride, dilation=dilation, value_range=value_range,
                           max_tile_bytes=max_tile_bytes, rows_per_tile=rows_per_tile,
                           progress=progress)
    gray = image.ndim == 2
    chw = image[None] if gray else np.moveaxis(image, -1, 0)
    C, H, W = chw.shape
    w, groups = _weight(kernel, C)
    kh, kw = w.shape[2:]
    stride = _args.ntuple(stride, 2, "stride", minimum=1)
    dilation = _args.ntuple(dilation, 2, "dilation", minimum=1)
    pairs = _args.padding_pairs(padding, (kh, kw), dilation, stride)
    mode = _args.check_padding_mode(padding_mode)
    _args.check_mode_fits((H, W), pairs, mode)
    H_out, W_out = _args.output_size((H, W), (kh, kw), stride, pairs, dilation)
    if value_range not in VALUE_RANGES:
        raise ValueError(f"`value_range` (={value_range!r}) must be one of {VALUE_RANGES}")
    lo, hi = _limits(image)
    dtype = _work_dtype(image.dtype, w, max(abs(lo), abs(hi)))
    if rows_per_tile is None:
        # Per output row: the band's input rows (stride of them) and the
        # output row. The algorithms bound their own workspace (the GEMM's
        # im2col runs in fixed-size tiles, FFT in blocks), so the band is
        # not shrunk for them: a thin band would repeat the kernel's halo of
        # dilation*(kh-1) rows for every few output rows and send a large
        # kernel to the direct method instead of the FFT (box:31 on 12 MP
        # took 33 s in 1-row bands, 2 s in 600-row bands).
        W_pad = W + pairs[1][0] + pairs[1][1]
        per_row = np.dtype(dtype).itemsize * W_pad * (C * stride[0] + w.shape[0])
        rows_per_tile = int(max(1, min(H_out, max_tile_bytes // max(per_row, 1))))
    else:
        rows_per_tile = _args.positive_int(rows_per_tile, "rows_per_tile")
    # A band also holds the kernel's halo of dilation*(kh-1) rows, which the
    # budget above does not bound: a huge dilation with 'same' padding would
    # otherwise allocate hundreds of GB in _tiles.
    band_rows = (min(rows_per_tile, H_out) - 1) * stride[0] + dilation[0] * (kh - 1) + 1
    W_pad = W + pairs[1][0] + pairs[1][1]
    _memory.check(np.dtype(dtype).itemsize * C * band_rows * W_pad,
                  f"a band of {band_rows} padded rows x {W_pad} columns x {C} channels")
    C_out = w.shape[0]
    out_dtype = image.dtype if image.dtype.kind in "ui" else dtype
    _memory.check(np.dtype(out_dtype).itemsize * C_out * H_out * W_out,
                  f"the output image ({H_out}x{W_out} pixels x {C_out} channels, {out_dtype})")
    # Channels last, as images are stored: each band is written transposed
    # once, and the result needs no copy to be saved.
    out = np.empty((H_out, W_out, C_out), dtype=out_dtype)
    plan = (_fused_plan(w[0, 0], value_range, dtype, max(abs(lo), abs(hi)))
            if np.ndim(kernel) == 2 else None)
    if plan is not None:
        _filter_fused(image, w[0, 0], plan, pairs, stride, dilation, mode, rows_per_tile,
                      dtype, lo, hi, value_range, out, progress)
        return out[..., 0] if gray else out

    def tiles():
        # Overflow is checked per band below (one clear error), not warned about.
        with np.errstate(over="ignore", invalid="ignore"):
            for r0, r1, band in _tiles(chw, w, groups, pairs, stride, dilation, mode,
                                       rows_per_tile, dtype):
                check_finite_band(band, r0, r1)
                yield r0, r1, band

    scale = offset = None
    if value_range == "rescale":
        ymin, ymax = np.inf, -np.inf
        for _, _, band in tiles():
            ymin, ymax = min(ymin, band.min()), max(ymax, band.max())
        span = ymax - ymin
        scale = (hi - lo) / span if span > 0 else 0.0
        offset = ymin
    for r0, r1, band in tiles():
        if value_range == "rescale":
            band = (band - offset) * scale + lo
        elif value_range == "abs":
            np.abs(band, out=band)
        if out_dtype.kind in "ui":
            np.rint(band, out=band)
        np.clip(band, lo, hi, out=band)
        out[r0:r1] = np.moveaxis(band, 0, -1)
        if progress is not None:
            progress(r1 - r0)
    # A gray image stays 2-D unless the kernel makes several channels of it.
    return out[..., 0] if gray and C_out == 1 else out


def centre_delta(shape):
    """A kernel of ``shape`` that is 1 at the centre tap, 0 elsewhere.

    The centre is ``(k-1)//2`` as ``'same'`` padding centres a kernel, so
    correlating alpha with it samples alpha exactly where each window is
    centred, under any padding, boundary mode, stride and dilation.
    """
    delta = np.zeros(shape)
    delta[(shape[0] - 1) // 2, (shape[1] - 1) // 2] = 1
    return delta


def _keep_alpha(image, kernel, **kwargs):
    """Filter the colour channels; carry alpha along unfiltered (see ``alpha``)."""
    delta = centre_delta(np.shape(kernel))
    colour = filter_image(image[:, :, :-1], kernel, **kwargs)
    kwargs.update(value_range="clip", progress=None)
    a = filter_image(image[:, :, -1], delta, **kwargs)
    if colour.ndim == 2:
        colour = colour[:, :, None]
    return np.concatenate([colour, a[:, :, None].astype(colour.dtype)], axis=2)


# --------------------------------------------------------------------------
# files (Pillow; tifffile for TIFF where installed)

# What each reader keeps, so that no image is changed silently:
# * every page of a multi-page TIFF (or frame of an animation) would need
#   filtering: such a file is refused, not cut to its first page;
# * 16-bit colour stays 16-bit: TIFF is read with tifffile (Pillow reads
#   16-bit RGB as 8-bit), a 16-bit colour PNG with OpenCV where installed
#   (refused otherwise), and both are written back 16-bit;
# * the EXIF / TIFF orientation is applied, as viewers do, so the output
#   (written without orientation) displays as the input did;
# * int32 stays int32; RGBA is read as RGBA (the CLI keeps alpha unfiltered).
# Pixels: Pillow's decompression-bomb warning is silenced and its limit
# (2 * Image.MAX_IMAGE_PIXELS, 179 MP) kept; below it, the memory guard
# decides, from the header, before anything is decoded.

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _pillow():
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - depends on the install
        raise ImportError(
            "reading and writing images needs Pillow: pip install 'ndconv[cli]'"
        ) from None
    return Image


def _tifffile():
    try:
        import tifffile
    except ImportError:
        return None
    return tifffile


class tiff_log:
    """Collect what tifffile logs while reading (it logs a damaged header, such
    as strip counts that do not match the size it claims, instead of raising);
    ``with tiff_log() as problems:`` then ``problems`` holds the messages and
    nothing reaches stderr."""

    def __enter__(self):
        import logging

        self.records = []
        records = self.records

        class _Collect(logging.Handler):
            def emit(self, record):
                records.append(record.getMessage())

        self.log = logging.getLogger("tifffile")
        self.handler = _Collect()
        self.propagate = self.log.propagate
        self.log.addHandler(self.handler)
        self.log.propagate = False
        return records

    def __exit__(self, *exc):
        self.log.removeHandler(self.handler)
        self.log.propagate = self.propagate
        return False


def _orient(a, orientation):
    """Apply an EXIF / TIFF orientation (1..8) to ``(H, W[, C])``, as viewers do."""
    flip_lr = lambda x: x[:, ::-1]  # noqa: E731
    ops = {
        2: flip_lr,
        3: lambda x: x[::-1, ::-1],
        4: lambda x: x[::-1],
        5: lambda x: x.swapaxes(0, 1),
        6: lambda x: np.rot90(x, -1),
        7: lambda x: x.swapaxes(0, 1)[::-1, ::-1],
        8: lambda x: np.rot90(x, 1),
    }
    op = ops.get(orientation)
    return a if op is None else np.ascontiguousarray(op(a))


def _guard(path, shape, dtype):
    nbytes = int(np.prod(shape, dtype=np.float64)) * np.dtype(dtype).itemsize
    _memory.check(nbytes, f"input image {path!r} ({'x'.join(map(str, shape))} {np.dtype(dtype)})")


def read_image(path):
    """Read a PNG, JPEG or TIFF file into an array, changing nothing silently.

    Returns
    -------
    ndarray
        ``(H, W)`` for grayscale, ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA
        for colour (palette images become RGB/RGBA, CMYK and other colour
        spaces RGB), in the file's depth: uint8, uint16 (also 16-bit colour),
        int32 or float32/float64. The EXIF (or TIFF) orientation is applied.

    Raises
    ------
    ValueError
        When the file is empty, not an image, truncated or corrupt, has
        several pages, is not a regular file (a FIFO, a device, a folder), or
        is a 16-bit colour PNG without OpenCV to read it.
    MemoryLimitError
        When its pixels (from the header) exceed the memory guard.
    FileNotFoundError
        When it does not exist.
    """
    import os

    from . import _files

    path = os.fspath(path)
    with _files.open_regular(path, "input image") as f:
        head = f.read(32)
        if not head:
            raise ValueError(f"input image {path!r} is empty (0 bytes)")
        f.seek(0)
        tifffile = _tifffile()
        if head[:4] in _TIFF_MAGIC and tifffile is not None:
            arr = _read_tiff(f, path, tifffile)
            if arr is not None:
                return arr
            f.seek(0)  # palette, CMYK, min-is-white...: Pillow converts them
        if head[:8] == _PNG_MAGIC and head[12:16] == b"IHDR" and head[24] == 16 \
                and head[25] in (2, 6):
            return _read_png16(path, head)
        return _read_pillow(f, path)


def _read_pillow(f, path):
    import warnings

    Image = _pillow()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(f) as im:
                frames = getattr(im, "n_frames", 1)
                if frames > 1:
                    raise _Refused(
                        f"input image {path!r} has {frames} pages (frames); ndconv filters "
                        "one image: split it into one file per page first"
                    )
                if im.format == "TIFF" and im.mode in ("RGB", "RGBA") \
                        and max(im.tag_v2.get(258, (8,))) > 8:
                    raise _Refused(
                        f"input image {path!r} is a TIFF with more than 8 bits per colour "
                        "sample, which Pillow would read as 8-bit: install tifffile "
                        "(pip install 'ndconv[dask]')"
                    )
                bands = len(im.getbands())
                depth = (np.uint16 if im.mode.startswith("I;16")
                         else np.float32 if im.mode in ("I", "F") else np.uint8)
                _guard(path, (im.size[1], im.size[0], bands), depth)
                im.load()  # decode now: a truncated file fails here, not later
                orientation = im.getexif().get(0x0112, 1)
                arr = _to_array(im)
    except _Refused as exc:
        raise ValueError(str(exc)) from None
    except Image.DecompressionBombError as exc:
        raise ValueError(f"input image {path!r} is too large for Pillow: {exc}") from None
    except Image.UnidentifiedImageError:
        raise ValueError(
            f"input image {path!r} is not an image Pillow can read (PNG, JPEG, TIFF)"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError, struct_error()) as exc:
        # Pillow reports truncated or corrupt data as OSError / SyntaxError.
        raise ValueError(f"input image {path!r} is truncated or corrupt: {exc}") from None
    return _orient(arr, orientation)


class _Refused(Exception):
    """A readable file ndconv refuses (kept apart from Pillow's own errors)."""


def struct_error():
    import struct

    return struct.error


def _read_tiff(f, path, tifffile):
    """A one-page gray or RGB(A) TIFF in its own depth; None for other
    photometric interpretations (left to Pillow, which converts them)."""
    import warnings

    try:
        with warnings.catch_warnings(), tiff_log() as problems:
            warnings.simplefilter("ignore")
            with tifffile.TiffFile(f) as tf:
                pages = len(tf.pages)
                if pages > 1:
                    raise _Refused(
                        f"input image {path!r} has {pages} pages; ndconv filters one "
                        "image: split it into one file per page first"
                    )
                page = tf.pages[0]
                if int(page.photometric) not in (1, 2):  # MINISBLACK, RGB
                    return None
                shape, dtype = page.shape, page.dtype
                planar = page.planarconfig == 2 and len(shape) == 3
                tag = page.tags.get(274)  # Orientation
                orientation = int(tag.value) if tag is not None else 1
                if len(shape) not in (2, 3) or dtype is None:
                    raise _Refused(f"input image {path!r} has shape {shape}, not (H, W) or (H, W, C)")
                _guard(path, shape, dtype)
                if problems:
                    raise _Refused(f"input image {path!r} is a damaged TIFF: {problems[0]}")
                arr = page.asarray()
    except _Refused as exc:
        raise ValueError(str(exc)) from None
    except Exception as exc:  # tifffile raises many types for damaged files
        if isinstance(exc, MemoryError):
            raise
        raise ValueError(f"input image {path!r} is truncated or corrupt: {exc}") from None
    if planar:
        arr = np.moveaxis(arr, 0, -1)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    if arr.dtype.kind not in "uif" or arr.dtype.itemsize > 8:
        raise ValueError(f"input image {path!r} has samples of dtype {arr.dtype}, not int or float")
    if arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    return _orient(arr, orientation)


def _read_png16(path, head):
    """A 16-bit RGB/RGBA PNG (Pillow would read it as 8-bit): through OpenCV."""
    import struct

    w, h = struct.unpack(">II", head[16:24])
    channels = 3 if head[25] == 2 else 4
    try:
        import cv2
    except ImportError:
        raise ValueError(
            f"input image {path!r} is a 16-bit colour PNG, which Pillow reads as 8-bit "
            "only: install opencv-python-headless, or convert it to TIFF"
        ) from None
    _guard(path, (h, w, channels), np.uint16)
    arr = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if arr is None or arr.dtype != np.uint16 or arr.shape[:2] != (h, w):
        raise ValueError(f"input image {path!r} is truncated or corrupt")
    # OpenCV holds BGR(A).
    return np.ascontiguousarray(arr[..., [2, 1, 0]] if channels == 3 else arr[..., [2, 1, 0, 3]])


def _to_array(im):
    mode = im.mode
    if mode in ("1", "L", "P", "LA", "PA", "RGB", "RGBA"):
        if mode == "1":
            im = im.convert("L")
        elif mode in ("P", "PA"):
            im = im.convert("RGBA" if "transparency" in im.info or mode == "PA" else "RGB")
        elif mode == "LA":
            im = im.convert("RGBA")
        return np.asarray(im)
    if mode.startswith("I;16"):
        return np.asarray(im).astype(np.uint16)
    if mode == "I":
        return np.asarray(im).astype(np.int32)
    if mode == "F":
        return np.asarray(im).astype(np.float32)
    return np.asarray(im.convert("RGB"))  # CMYK, YCbCr, LAB, HSV


def output_format(path, dtype, channels):
    """Return the format name for ``path``, or raise ValueError if it
    cannot hold an image of ``dtype`` with ``channels`` channels."""
    import os

    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in _FORMATS:
        raise ValueError(
            f"output {os.fspath(path)!r} must end in one of {', '.join(sorted(_FORMATS))}"
        )
    fmt = _FORMATS[ext]
    dtype = np.dtype(dtype)
    if channels not in (1, 3, 4):
        raise ValueError(
            f"the output has {channels} channels; images hold 1 (gray), 3 (RGB) or "
            "4 (RGBA)"
        )
    pillow_tiff = dtype == np.uint8 or (channels == 1 and dtype in (np.uint16, np.int32, np.float32, np.float64))
    ok = {
        "JPEG": dtype == np.uint8 and channels in (1, 3),
        "PNG": dtype in (np.uint8, np.uint16),
        "TIFF": pillow_tiff or _tifffile() is not None,
    }[fmt]
    if not ok:
        # Advice that works: TIFF takes any image (several channels of another
        # dtype through tifffile), PNG and TIFF any uint8/uint16 one.
        advice = ("install tifffile (pip install 'ndconv[dask]')" if fmt == "TIFF"
                  else "a .png or .tif output" if dtype in (np.uint8, np.uint16)
                  else "a .tif output")
        raise ValueError(f"{fmt} cannot store a {channels}-channel {dtype} image; use {advice}")
    return fmt


def write_image(array, fileobj, fmt):
    """Write ``array`` (as returned by :func:`filter_image`) to an open binary file.

    uint8 / uint16 / int32 / float images keep their dtype (16-bit colour as
    16-bit PNG or TIFF). The file object must raise on a failed write (the
    CLI's :class:`ndconv._files.CheckedFile` does).
    """
    a = np.ascontiguousarray(array)
    colour = a.ndim == 3
    if a.dtype.kind == "f":
        a = a.astype(np.float32)  # Pillow's mode 'F'; float32 TIFF
    if fmt == "PNG" and a.dtype == np.uint16 and colour:
        return _write_png16(a, fileobj)
    tifffile = _tifffile()
    if fmt == "TIFF" and tifffile is not None:
        # Rows in pieces of about 1 MiB: given the whole array, tifffile
        # copies it into one bytes object first (the file object has no
        # fileno for numpy's tofile), 36 MB at 12 MP (55 ms -> 17 ms; the
        # same bytes).
        rows = max(1, (1 << 20) // max(1, a[0].nbytes))
        pieces = (a[r:r + rows] for r in range(0, a.shape[0], rows))
        tifffile.imwrite(fileobj, pieces, shape=a.shape, dtype=a.dtype,
                         photometric="rgb" if colour else "minisblack",
                         extrasamples=("unassalpha",) if colour and a.shape[2] == 4 else None,
                         planarconfig="contig" if colour else None)
        return None
    Image = _pillow()
    im = Image.fromarray(a)  # uint8 -> L/RGB/RGBA, uint16 -> I;16, int32 -> I, float32 -> F
    kwargs = {"quality": 95} if fmt == "JPEG" else {}
    im.save(fileobj, format=fmt, **kwargs)
    return None


def _write_png16(a, f):
    """A 16-bit RGB/RGBA PNG (Pillow writes colour as 8-bit only): rows unfiltered, zlib."""
    import struct
    import zlib

    h, w, c = a.shape
    rows = np.zeros((h, 1 + w * c * 2), dtype=np.uint8)  # filter byte 0 (None) per row
    rows[:, 1:] = a.astype(">u2").reshape(h, w * c).view(np.uint8)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    f.write(_PNG_MAGIC)
    f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2 if c == 3 else 6, 0, 0, 0)))
    f.write(chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)))
    f.write(chunk(b"IEND", b""))


def verify_written(path, fmt, array):
    """Re-open the header of a just-written image: its format, size and depth.

    Raises ValueError when it is not what :func:`write_image` was given (a
    file that a failing disk or encoder left damaged).
    """
    import warnings

    a = np.asarray(array)
    h, w = a.shape[:2]
    tifffile = _tifffile()
    try:
        if fmt == "TIFF" and tifffile is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with tifffile.TiffFile(path) as tf:
                    page = tf.pages[0]
                    ok = page.shape[:2] == (h, w) and (
                        page.dtype == a.dtype or a.dtype.kind == "f" and page.dtype.kind == "f")
        else:
            Image = _pillow()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(path) as im:
                    ok = im.format == fmt and im.size == (w, h)
                with Image.open(path) as im:
                    im.verify()  # PNG: every chunk's CRC; others: the structure
    except Exception as exc:
        raise ValueError(f"the image written to {path!r} does not read back: {exc}") from None
    if not ok:
        raise ValueError(f"the image written to {path!r} does not read back as written")

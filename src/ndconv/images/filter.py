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
themselves are held in memory in their own dtype. A 2-D kernel of few nonzero
taps, or a rank-1 one (box, Gaussian), takes a compiled pass instead that
goes from the image's dtype to the output's directly, same bands, same
results (:mod:`ndconv.images._fused`, with numba installed).

Value range
-----------
The correlation of a uint8 photo with ``sharpen`` or ``edge`` leaves 0..255, so
``value_range`` says what happens:

* ``'clip'`` (default): round and clip to the input's range, the dtype's
  ``0..max`` for integer images, the input's own ``[min, max]`` for float ones.
* ``'abs'``: the absolute value, then clipped (edge magnitudes).
* ``'rescale'``: map the output's ``[min, max]`` linearly onto that range
  (a second pass over the tiles finds min and max first).

Reading and writing image files is :mod:`ndconv.images.files`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core import _args, _memory, _pages
from ..core._windows import source_index
from ..core.functional import conv
from . import _fused

if TYPE_CHECKING:
    from ..core._typing import ArrayLike, DTypeLike, IntOrTuple, NDArray, Padding, Pairs, Shape

__all__ = ["filter_image", "check_finite_band", "centre_delta", "VALUE_RANGES"]

VALUE_RANGES = ("clip", "abs", "rescale")

# --------------------------------------------------------------------------
# validation


def _check_image(image: object) -> None:
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


def _weight(kernel: ArrayLike, channels: int) -> tuple[NDArray[np.float64], int]:
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


def _tiles(chw: NDArray[Any], w: NDArray[Any], groups: int, pairs: Pairs, stride: Shape,
           dilation: Shape, mode: str, rows_per_tile: int, dtype: np.dtype[Any],
           wait: Callable[[int, int], object]) -> Iterator[tuple[int, int, NDArray[Any]]]:
    """Yield ``(r0, r1, band)``: output rows r0..r1-1 as (C_out, r1-r0, W_out),
    each after ``wait(r0, r1)`` (its input rows are there)."""
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
        wait(r0, r1)
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


def _limits(image: NDArray[Any]) -> tuple[float, float]:
    if image.dtype.kind in "ui":
        info = np.iinfo(image.dtype)
        return float(info.min), float(info.max)
    return float(image.min()), float(image.max())


def _work_dtype(image_dtype: DTypeLike, weight: ArrayLike, largest: float | None) -> np.dtype[Any]:
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


def check_finite_band(band: NDArray[Any], r0: int, r1: int) -> None:
    """Raise ValueError if a filtered band overflowed (never cast inf/NaN to pixels)."""
    if not np.isfinite(band).all():
        raise ValueError(
            f"the filtered image overflows (values beyond float64's range, or "
            f"inf - inf) in output rows {r0}..{r1 - 1}: the kernel's values are too "
            "large for this image; scale the kernel down"
        )


def filter_image(image: NDArray[Any], kernel: ArrayLike, *, padding: Padding = "same",
                 padding_mode: str = "zeros", stride: IntOrTuple = 1,
                 dilation: IntOrTuple = 1, value_range: str = "clip",
                 max_tile_bytes: int = 64 << 20, rows_per_tile: int | None = None,
                 progress: Callable[[int], object] | None = None,
                 alpha: bool = False,
                 on_band: Callable[[NDArray[Any], int, int], object] | None = None,
                 input_ready: Callable[[int], object] | None = None,
                 ) -> NDArray[Any]:
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
    on_band : callable, optional
        Called as ``on_band(out, r0, r1)`` once output rows ``r0..r1-1`` of
        ``out`` (``(H_out, W_out, C_out)``, channels last; the array returned,
        before a gray image's channel axis is dropped) are final, in order,
        so that a caller can write them while the next are computed (the
        ``ndconv filter`` CLI does). With ``alpha`` it is called once, at the end.
    input_ready : callable, optional
        Called as ``input_ready(n)`` before rows ``0..n-1`` of ``image`` are
        read, to return once they hold their values: ``image`` may be
        filled while it is filtered (:func:`ndconv.images.read_image_rows`
        and the ``ndconv filter`` CLI). Called with ``H`` first (all rows)
        where the whole image is needed before the first band: float images
        (checked for NaN, their range measured), ``alpha``, boundary modes
        other than ``'zeros'``.

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
    if input_ready is not None and (
            not isinstance(image, np.ndarray) or image.dtype.kind not in "ui" or alpha
            or padding_mode != "zeros" or image.ndim not in (2, 3)):
        input_ready(np.shape(image)[0] if np.ndim(image) else 0)
        input_ready = None
    _check_image(image)
    if alpha and image.ndim == 3 and image.shape[2] >= 2 and np.ndim(kernel) == 2:
        both = _keep_alpha(image, kernel, padding=padding, padding_mode=padding_mode,
                           stride=stride, dilation=dilation, value_range=value_range,
                           max_tile_bytes=max_tile_bytes, rows_per_tile=rows_per_tile,
                           progress=progress)
        if on_band is not None:  # colour and alpha are joined at the end
            on_band(both, 0, both.shape[0])
        return both
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
    # once, and the result needs no copy to be saved (on whole huge pages).
    out = _pages.empty((H_out, W_out, C_out), out_dtype)

    def done(r0: int, r1: int) -> None:
        if progress is not None:
            progress(r1 - r0)
        if on_band is not None:
            on_band(out, r0, r1)

    def wait(r0: int, r1: int) -> None:  # the input rows output rows r0..r1-1 read
        if input_ready is not None:
            input_ready(min(H, (r1 - 1) * stride[0] + dilation[0] * (kh - 1) + 1 - pairs[0][0]))

    how = (_fused.plan(w[0, 0], value_range, dtype, max(abs(lo), abs(hi)), image.dtype)
           if np.ndim(kernel) == 2 else None)
    if how is not None:
        _fused.run(image, w[0, 0], how, pairs, stride, dilation, mode, rows_per_tile, dtype,
                   lo, hi, value_range, out, done, wait)
        return out[..., 0] if gray else out

    def tiles() -> Iterator[tuple[int, int, NDArray[Any]]]:
        # Overflow is checked per band below (one clear error), not warned about.
        with np.errstate(over="ignore", invalid="ignore"):
            for r0, r1, band in _tiles(chw, w, groups, pairs, stride, dilation, mode,
                                       rows_per_tile, dtype, wait):
                check_finite_band(band, r0, r1)
                yield r0, r1, band

    scale: Any  # floats once 'rescale' has measured the output (None otherwise)
    offset: Any
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
        done(r0, r1)
    # A gray image stays 2-D unless the kernel makes several channels of it.
    return out[..., 0] if gray and C_out == 1 else out


def centre_delta(shape: Shape) -> NDArray[np.float64]:
    """A kernel of ``shape`` that is 1 at the centre tap, 0 elsewhere.

    The centre is ``(k-1)//2`` as ``'same'`` padding centres a kernel, so
    correlating alpha with it samples alpha exactly where each window is
    centred, under any padding, boundary mode, stride and dilation.
    """
    delta = np.zeros(shape)
    delta[(shape[0] - 1) // 2, (shape[1] - 1) // 2] = 1
    return delta


def _keep_alpha(image: NDArray[Any], kernel: ArrayLike, **kwargs: Any) -> NDArray[Any]:
    """Filter the colour channels; carry alpha along unfiltered (see ``alpha``)."""
    delta = centre_delta(np.shape(kernel))
    colour = filter_image(image[:, :, :-1], kernel, **kwargs)
    kwargs.update(value_range="clip", progress=None)
    a = filter_image(image[:, :, -1], delta, **kwargs)
    if colour.ndim == 2:
        colour = colour[:, :, None]
    return np.concatenate([colour, a[:, :, None].astype(colour.dtype)], axis=2)

"""Filter real photos with :func:`ndconv.conv`, in tiles of rows.

An image is an array ``(H, W)`` (grayscale) or ``(H, W, C)`` (colour), of dtype
uint8, uint16 or float. :func:`filter_image` correlates it with a 2-D kernel
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

Reading and writing files (Pillow, imported only when called) is here too:
:func:`read_image` and :func:`write_image`.
"""

from __future__ import annotations

import numpy as np

from . import _args, _memory
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
    if image.dtype.kind not in "uf" or image.dtype.itemsize > 8:
        raise TypeError(
            f"`image` must be uint8, uint16 or float, got dtype {image.dtype}"
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


def _source_index(p, n, mode):
    """Map padded positions ``p`` (input coordinates, may be < 0 or >= n) to
    input indices; return (indices, inside) where ``inside`` is False for
    zero-padded positions. The rules are ``torch.nn.functional.pad``'s."""
    inside = (p >= 0) & (p < n)
    if mode == "zeros" or mode == "replicate":
        idx = np.clip(p, 0, n - 1)
    elif mode == "circular":
        idx = np.mod(p, n)
    else:  # reflect: mirror about the edge samples, which are not repeated
        period = 2 * (n - 1)
        q = np.mod(p, period) if period else np.zeros_like(p)
        idx = np.where(q < n, q, period - q)
    if mode != "zeros":
        inside = np.ones_like(inside)
    return idx, inside


def _tiles(chw, w, groups, pairs, stride, dilation, mode, rows_per_tile, dtype):
    """Yield ``(r0, r1, band)``: output rows r0..r1-1 as (C_out, r1-r0, W_out)."""
    C, H, W = chw.shape
    kh, kw = w.shape[2:]
    (lo_h, hi_h), (lo_w, hi_w) = pairs
    sh, sw = stride
    dh, dw = dilation
    H_out, W_out = _args.output_size((H, W), (kh, kw), stride, pairs, dilation)
    cols = np.arange(-lo_w, W + hi_w)
    cidx, cin = _source_index(cols, W, mode)
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
            ridx, rin = _source_index(np.arange(p0, p1), H, mode)
            band = chw[:, ridx][:, :, cidx].astype(dtype)
            if not (rin.all() and cin.all()):
                band *= (rin[:, None] & cin[None, :])
            out = conv(band, wt, stride=(sh, sw), dilation=(dh, dw), groups=groups)
        yield r0, r1, out


def _limits(image):
    if image.dtype.kind == "u":
        return 0.0, float(np.iinfo(image.dtype).max)
    return float(image.min()), float(image.max())


def filter_image(image, kernel, *, padding="same", padding_mode="zeros", stride=1,
                 dilation=1, value_range="clip", max_tile_bytes=64 << 20,
                 rows_per_tile=None, progress=None):
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

    Returns
    -------
    ndarray, shape (H_out, W_out) or (H_out, W_out, C_out)
        The input's dtype (float32 for float16/float32 input, float64 for
        float64), with
        ``H_out = floor((H + lo + hi - dilation*(k_h-1) - 1) / stride) + 1``
        and the same for ``W_out``.
    """
    _check_image(image)
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
    dtype = np.dtype(np.float64 if image.dtype == np.float64 else np.float32)
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
    lo, hi = _limits(image)
    out_dtype = image.dtype if image.dtype.kind == "u" else dtype
    # Channels last, as images are stored: each band is written transposed
    # once, and the result needs no copy to be saved.
    out = np.empty((H_out, W_out, C_out), dtype=out_dtype)

    def tiles():
        return _tiles(chw, w, groups, pairs, stride, dilation, mode, rows_per_tile, dtype)

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
        if out_dtype.kind == "u":
            np.rint(band, out=band)
        np.clip(band, lo, hi, out=band)
        out[r0:r1] = np.moveaxis(band, 0, -1)
        if progress is not None:
            progress(r1 - r0)
    # A gray image stays 2-D unless the kernel makes several channels of it.
    return out[..., 0] if gray and C_out == 1 else out


# --------------------------------------------------------------------------
# files (Pillow)


def _pillow():
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - depends on the install
        raise ImportError(
            "reading and writing images needs Pillow: pip install 'ndconv[cli]'"
        ) from None
    return Image


def read_image(path):
    """Read a PNG, JPEG or TIFF file into an array.

    Returns
    -------
    ndarray
        ``(H, W)`` uint8/uint16/float32 for grayscale, ``(H, W, 3)`` or
        ``(H, W, 4)`` uint8 for colour (palette images become RGB/RGBA, CMYK
        and other colour spaces RGB).

    Raises
    ------
    ValueError
        When the file is empty, not an image, truncated or corrupt, or so large
        that Pillow suspects a decompression bomb.
    FileNotFoundError
        When it does not exist.
    """
    import os

    Image = _pillow()
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"input image {path!r} does not exist")
    if os.path.isdir(path):
        raise ValueError(f"input image {path!r} is a folder, not a file")
    if os.path.getsize(path) == 0:
        raise ValueError(f"input image {path!r} is empty (0 bytes)")
    try:
        with Image.open(path) as im:
            im.load()  # decode now: a truncated file fails here, not later
            arr = _to_array(im)
    except Image.DecompressionBombError as exc:
        raise ValueError(f"input image {path!r} is too large for Pillow: {exc}") from None
    except Image.UnidentifiedImageError:
        raise ValueError(
            f"input image {path!r} is not an image Pillow can read (PNG, JPEG, TIFF)"
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        # Pillow reports truncated or corrupt data as OSError / SyntaxError.
        raise ValueError(f"input image {path!r} is truncated or corrupt: {exc}") from None
    return arr


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
    if mode in ("I", "F"):
        return np.asarray(im).astype(np.float32)
    return np.asarray(im.convert("RGB"))  # CMYK, YCbCr, LAB, HSV


def output_format(path, dtype, channels):
    """Return Pillow's format name for ``path``, or raise ValueError if it
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
    ok = {
        "JPEG": dtype == np.uint8 and channels in (1, 3),
        "PNG": (dtype == np.uint8) or (dtype == np.uint16 and channels == 1),
        "TIFF": dtype == np.uint8 or channels == 1,
    }[fmt]
    if not ok:
        # Advice that works: TIFF takes any one-channel image, PNG and TIFF any
        # uint8 one; no format here (Pillow) takes several channels of another dtype.
        advice = ("a .tif output" if channels == 1
                  else "a .png or .tif output" if dtype == np.uint8 else "uint8 input")
        raise ValueError(f"{fmt} cannot store a {channels}-channel {dtype} image; use {advice}")
    return fmt


def write_image(array, fileobj, fmt):
    """Write ``array`` (as returned by :func:`filter_image`) to an open binary file."""
    Image = _pillow()
    a = np.ascontiguousarray(array)
    if a.dtype.kind == "f":
        a = a.astype(np.float32)  # Pillow's mode 'F'
    im = Image.fromarray(a)  # uint8 -> L/RGB/RGBA, uint16 -> I;16, float32 -> F
    kwargs = {"quality": 95} if fmt == "JPEG" else {}
    im.save(fileobj, format=fmt, **kwargs)

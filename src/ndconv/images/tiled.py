"""Filter an image file bigger than memory, chunk by chunk: TIFF or Zarr in, TIFF or Zarr out.

:func:`filter_tiled` is :func:`ndconv.images.filter_image` for files: the same
kernels (2-D on each channel, or 4-D ``(C_out, C_in, k_h, k_w)`` mixing
channels), padding, boundary modes, stride, dilation and value-range rules,
but the image is never held in memory. It is read lazily through dask (a
TIFF via tifffile, memory-mapped when uncompressed, otherwise as a Zarr view
of its tiles or strips; a Zarr array directly), filtered by
:func:`ndconv.dask.conv` (blocks with halos), and written one band of rows at
a time: a tiled TIFF (tifffile, tiles streamed in order) or a Zarr array
(:func:`ndconv.dask.store_by_slabs`). The output is written under a temporary
name in the output's folder and renamed into place only when complete, so a
failed run leaves no partial output and an old one intact.

Memory stays bounded by the block size (``block``), times the threads, plus
one band of output rows for a TIFF. A TIFF stored as one compressed strip
cannot be read in parts; it is read whole (say so by rewriting it tiled).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core import _args
from ..io import _files

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from ..core._typing import ArrayLike, DTypeLike, IntOrTuple, NDArray, Padding, Shape

    _Lazy = Any  # a dask.array.Array (dask's annotations are partial)

__all__ = ["filter_tiled", "open_image"]

_TIFF = (".tif", ".tiff")
_ZARR = (".zarr",)


def _kind(path: str | os.PathLike[str], what: str) -> str:
    ext = os.path.splitext(os.fspath(path).rstrip("/\\"))[1].lower()
    if ext in _TIFF:
        return "tiff"
    if ext in _ZARR:
        return "zarr"
    raise ValueError(
        f"{what} {os.fspath(path)!r} must end in .tif, .tiff or .zarr for tiled filtering"
    )


def open_image(path: str | os.PathLike[str], block: int | None = None) -> _Lazy:
    """Open a TIFF or Zarr image as a lazy dask array, without reading it.

    Parameters
    ----------
    path : str or path-like
        ``.tif``/``.tiff`` (first series) or ``.zarr`` (an array, not a group).
    block : int, optional
        Rechunk to ``block`` x ``block`` pixels (channels whole).

    Returns
    -------
    dask.array.Array, shape (H, W) or (H, W, C)
    """
    import dask.array as da

    from ..io._files import check_regular
    from .files import tiff_log

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"input image {path!r} does not exist")
    if _kind(path, "input image") == "tiff":
        check_regular(path, "input image")  # never open a FIFO or a device
        with tiff_log() as problems:
            return _open_tiff(path, block, problems)
    import zarr

    try:
        x = da.from_zarr(zarr.open_array(path, mode="r"))
    except Exception as exc:  # zarr raises several types for a bad store
        raise ValueError(f"input image {path!r} is not a readable Zarr array: {exc}") from None
    return _checked(x, path, block)


def _open_tiff(path: str, block: int | None, problems: list[str]) -> _Lazy:
    import dask.array as da
    import tifffile
    import zarr

    try:
        with tifffile.TiffFile(path) as tf:
            axes = tf.series[0].axes
    except (tifffile.TiffFileError, OSError, ValueError, IndexError, KeyError) as exc:
        raise ValueError(f"input image {path!r} is not a readable TIFF: {exc}") from None
    if problems:  # tifffile logs a header that does not match the data
        raise ValueError(f"input image {path!r} is a damaged TIFF: {problems[0]}")
    # Samples (or ImageJ channels) first, 'SYX': a planar image, read as
    # (H, W, C) like Pillow does; another leading axis is a stack of pages.
    planar = len(axes) == 3 and axes[0] in "SC" and axes[1:] == "YX"
    if len(axes) == 3 and not planar and axes[2] != "S":
        raise ValueError(
            f"input image {path!r} is a stack of pages (tifffile axes {axes!r}), "
            "not one image (H, W) or (H, W, C)"
        )
    try:  # uncompressed and contiguous: the OS pages in what is read
        arr = tifffile.memmap(path, mode="r")
        chunks = (block or 1024,) * 2 + (-1,) * (arr.ndim - 2)
        x = da.from_array(arr, chunks=chunks[::-1] if planar else chunks)
    except ValueError:  # compressed or tiled: read tile by tile
        try:
            store = tifffile.imread(path, aszarr=True)
            x = da.from_zarr(zarr.open_array(store, mode="r"))
        except (tifffile.TiffFileError, OSError, ValueError, KeyError) as exc:
            raise ValueError(f"input image {path!r} is not a readable TIFF: {exc}") from None
    if problems:
        raise ValueError(f"input image {path!r} is a damaged TIFF: {problems[0]}")
    if planar:
        x = x.transpose(1, 2, 0)
    return _checked(x, path, block)


def _checked(x: _Lazy, path: str, block: int | None) -> _Lazy:
    if x.ndim not in (2, 3):
        raise ValueError(
            f"input image {path!r} must have shape (H, W) or (H, W, C), got {x.shape}"
        )
    if block:
        x = x.rechunk((block, block) + (-1,) * (x.ndim - 2))
    return x


def _same_path(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _postprocess(y: NDArray[Any], value_range: str, lo: float, hi: float,
                 scale: Any, offset: Any,  # floats for 'rescale', None otherwise
                 out_dtype: DTypeLike,
                 keep_alpha: bool = False) -> NDArray[Any]:
    from .filter import check_finite_band

    check_finite_band(y, 0, y.shape[1])  # rows of this block; one clear error
    y = y.copy()
    colour = y[:-1] if keep_alpha else y  # alpha (last) is only rounded and clipped
    if value_range == "rescale":
        colour[...] = (colour - offset) * scale + lo
    elif value_range == "abs":
        np.abs(colour, out=colour)
    if np.dtype(out_dtype).kind == "u":
        np.rint(y, out=y)
    np.clip(y, lo, hi, out=y)
    return y.astype(out_dtype, copy=False)


def _write_tiff(y: _Lazy, path: str, tile: tuple[int, int], compression: str | None,
                compute: Callable[[_Lazy], NDArray[Any]]) -> None:
    import tifffile

    H, W = y.shape[:2]
    bands = np.cumsum((0,) + y.chunks[0])

    def tiles() -> Iterator[NDArray[Any]]:
        for r0, r1 in zip(bands[:-1], bands[1:]):
            band = compute(y[r0:r1])
            for t0 in range(0, r1 - r0, tile[0]):
                for c0 in range(0, W, tile[1]):
                    yield band[t0 : t0 + tile[0], c0 : c0 + tile[1]]

    rgb = y.ndim == 3 and y.shape[2] in (3, 4)
    tifffile.imwrite(
        path, tiles(), shape=y.shape, dtype=y.dtype, tile=tile,
        photometric="rgb" if rgb else "minisblack",
        extrasamples=("unassalpha",) if rgb and y.shape[2] == 4 else None,
        # The last axis holds the samples of a pixel, whatever their number
        # (without this, tifffile reads (H, W, 2) as H images of W x 2).
        planarconfig="contig" if y.ndim == 3 else None,
        compression=compression, bigtiff=y.nbytes > 2**31,
    )


def filter_tiled(
    in_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    kernel: ArrayLike,
    *,
    padding: Padding = "same",
    padding_mode: str = "zeros",
    stride: IntOrTuple = 1,
    dilation: IntOrTuple = 1,
    value_range: str = "clip",
    overwrite: bool = False,
    block: int = 1024,
    tile: int = 256,
    compression: str | None = None,
    scheduler: Any = "threads",
    alpha: bool = False,
) -> Shape:
    """Filter a TIFF or Zarr image into a tiled TIFF or Zarr, never holding it whole.

    Parameters
    ----------
    in_path, out_path : str or path-like
        ``.tif``/``.tiff`` or ``.zarr``; the image is ``(H, W)`` or ``(H, W, C)``,
        uint8, uint16 or float.
    kernel : array_like, shape (k_h, k_w) or (C_out, C_in, k_h, k_w)
        As :func:`ndconv.images.filter_image`.
    padding, padding_mode, stride, dilation
        As :func:`ndconv.conv` (``'same'`` keeps the size).
    value_range : {'clip', 'abs', 'rescale'}
        As :func:`ndconv.images.filter_image`: uint images are rounded and
        clipped to their dtype's range, float images to the input's own
        ``[min, max]`` (an extra read pass); ``'rescale'`` computes the output
        twice (once for its min and max).
    overwrite : bool
        Replace an existing output (only once the new one is complete).
    block : int
        Output block edge in rows and columns; each task works on about
        ``block**2 * (C_in + C_out)`` floats plus the halo.
    tile : int
        TIFF tile edge (a multiple of 16).
    compression : str, optional
        TIFF compression, e.g. ``'zlib'``; ``None`` stores raw tiles.
    scheduler : str or distributed.Client
        Dask scheduler for each band (``'threads'``, ``'sync'``) or a client.
    alpha : bool
        The last channel of a 2- or 4-channel image is alpha: with a 2-D
        kernel it is kept, not filtered, as in
        :func:`ndconv.images.filter_image`.

    Returns
    -------
    tuple
        The output's shape.

    Raises
    ------
    FileNotFoundError, FileExistsError, ValueError, TypeError
        Before any work: a missing input or output folder, an existing output
        without ``overwrite``, the output being the input, bad arguments.
    """
    from .. import dask as ndask
    from .filter import VALUE_RANGES, _weight, _work_dtype, centre_delta

    in_path, out_path = os.fspath(in_path), os.fspath(out_path)
    out_kind = _kind(out_path, "output")
    block = _args.positive_int(block, "block")
    tile = _args.positive_int(tile, "tile")
    if tile % 16:
        raise ValueError(f"`tile` (={tile}) must be a multiple of 16 (TIFF's rule)")
    if value_range not in VALUE_RANGES:
        raise ValueError(f"`value_range` (={value_range!r}) must be one of {VALUE_RANGES}")
    if os.path.exists(in_path) and os.path.lexists(out_path) and _same_path(in_path, out_path):
        raise ValueError(f"output {out_path!r} is the input; refusing to overwrite it")
    folder = os.path.dirname(os.path.abspath(out_path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"the folder of output {out_path!r} does not exist: {folder!r}")
    if os.path.lexists(out_path) and not overwrite:
        raise FileExistsError(f"output {out_path!r} already exists (overwrite=True, or --force, replaces it)")

    img = open_image(in_path)
    if img.dtype.kind not in "uf" or img.dtype.itemsize > 8:
        raise TypeError(f"input image must be uint8, uint16 or float, got dtype {img.dtype}")
    _args.check_no_empty(img, "image")
    gray = img.ndim == 2
    chw = img[None] if gray else img.transpose(2, 0, 1)
    C, H, W = chw.shape
    w, groups = _weight(kernel, C)
    keep_alpha = bool(alpha) and C in (2, 4) and np.ndim(kernel) == 2
    if keep_alpha:  # each channel has its own kernel (groups=C): alpha gets the delta
        w[-1, 0] = centre_delta(w.shape[2:])
    stride = _args.ntuple(stride, 2, "stride", minimum=1)
    dilation = _args.ntuple(dilation, 2, "dilation", minimum=1)
    largest = float(np.iinfo(img.dtype).max) if img.dtype.kind == "u" else None
    dtype = _work_dtype(img.dtype, w, largest)
    out_dtype = img.dtype if img.dtype.kind == "u" else dtype
    # Input chunks of block*stride give output blocks of exactly `block` rows
    # and columns (ndconv.dask divides the input chunks by the stride), and a
    # TIFF band of whole tiles.
    rows = -(-block // tile) * tile if out_kind == "tiff" else block
    chw = chw.rechunk((-1, rows * stride[0], block * stride[1])).astype(dtype)
    # (Any: dask's own annotations reject map_blocks with a function below)
    y: _Lazy = ndask.conv(chw, w.astype(dtype), None, stride, padding, dilation, groups,
                          padding_mode)  # validates padding, mode and sizes, lazily

    def compute(a: _Lazy) -> Any:
        if hasattr(scheduler, "compute"):  # a distributed.Client
            return scheduler.compute(a).result()
        return a.compute(scheduler=scheduler)

    if img.dtype.kind == "u":
        lo, hi = 0.0, float(np.iinfo(img.dtype).max)
    else:
        import dask.array as da

        finite, lo, hi = compute(da.stack([da.isfinite(img).all(), img.min(), img.max()]))
        if not finite:
            raise ValueError(f"input image {in_path!r} contains NaN or infinity")
        lo, hi = float(lo), float(hi)
    scale = offset = None
    if value_range == "rescale":
        import dask.array as da

        colour = y[:-1] if keep_alpha else y
        ymin, ymax = (float(v) for v in compute(da.stack([colour.min(), colour.max()])))
        span = ymax - ymin
        scale = (hi - lo) / span if span > 0 else 0.0
        offset = ymin
    y = y.map_blocks(_postprocess, value_range, lo, hi, scale, offset, out_dtype,
                     keep_alpha, dtype=out_dtype)
    y = y[0] if y.shape[0] == 1 else y.transpose(1, 2, 0)
    # Regular blocks: Zarr chunks written by one task each, TIFF bands of whole tiles.
    y = y.rechunk((rows, block) + y.shape[2:])
    def verify(tmp: str) -> None:  # re-open what was written: its shape and dtype
        if out_kind == "zarr":
            import zarr

            z = zarr.open_array(tmp, mode="r")
            got = (tuple(z.shape), np.dtype(z.dtype))
        else:
            import tifffile

            with tifffile.TiffFile(tmp) as tf:
                got = (tuple(tf.series[0].shape), np.dtype(tf.series[0].dtype))
        if got != (tuple(y.shape), np.dtype(y.dtype)):
            raise OSError(f"the output written to {tmp!r} reads back as {got}, not "
                          f"{(y.shape, y.dtype)}")

    # Written under a temporary name, synced, verified, and published without
    # replacing an output that appeared meanwhile (unless overwrite).
    with np.errstate(over="ignore", invalid="ignore"), \
            _files.atomic_dir(out_path, overwrite=overwrite, verify=verify) as tmp:
        if out_kind == "zarr":
            import zarr

            z = zarr.create_array(store=tmp, shape=y.shape, dtype=y.dtype,
                                  chunks=(rows, block) + y.shape[2:])
            ndask.store_by_slabs(y, z, scheduler=scheduler)  # a band of rows at a time
        else:
            _write_tiff(y, tmp, (tile, tile), compression, compute)
    return y.shape

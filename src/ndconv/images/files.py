"""Read and write image files, changing nothing silently.

Pillow reads and writes PNG and JPEG, tifffile TIFF where installed (both
imported only when called): :func:`read_image`, :func:`output_format`,
:func:`write_image` and :func:`verify_written` (which reads a written file
back). What each reader keeps (depth, alpha, orientation, pages) is listed in
the comment above :func:`read_image`. Filtering is :mod:`ndconv.images.filter`.
"""

from __future__ import annotations

import itertools
from typing import IO, TYPE_CHECKING, Any, Literal

import numpy as np

from ..core import _memory, _pages

if TYPE_CHECKING:
    import io
    import os
    from collections.abc import Callable, Iterator

    from ..core._typing import ArrayLike, DTypeLike, NDArray

__all__ = ["read_image", "read_image_rows", "write_image", "output_format", "verify_written",
           "tiff_log", "TiffBands", "ImageRows"]

# Formats Pillow writes, by file suffix.
_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}

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
_NATIVE = "<" if __import__("sys").byteorder == "little" else ">"


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - depends on the install
        raise ImportError(
            "reading and writing images needs Pillow: pip install 'ndconv[cli]'"
        ) from None
    return Image


def _tifffile() -> Any:
    try:
        import tifffile
    except ImportError:
        return None
    return tifffile


def tifffile_installed() -> bool:
    """Whether TIFF is read and written with tifffile (else Pillow)."""
    return _tifffile() is not None


class tiff_log:
    """Collect what tifffile logs while reading (it logs a damaged header, such
    as strip counts that do not match the size it claims, instead of raising);
    ``with tiff_log() as problems:`` then ``problems`` holds the messages and
    nothing reaches stderr."""

    def __enter__(self) -> list[str]:
        import logging

        self.records: list[str] = []
        records = self.records

        class _Collect(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                records.append(record.getMessage())

        self.log = logging.getLogger("tifffile")
        self.handler = _Collect()
        self.propagate = self.log.propagate
        self.log.addHandler(self.handler)
        self.log.propagate = False
        return records

    def __exit__(self, *exc: object) -> Literal[False]:
        self.log.removeHandler(self.handler)
        self.log.propagate = self.propagate
        return False


def _orient(a: NDArray[Any], orientation: int) -> NDArray[Any]:
    """Apply an EXIF / TIFF orientation (1..8) to ``(H, W[, C])``, as viewers do."""
    flip_lr: Callable[[NDArray[Any]], NDArray[Any]] = lambda x: x[:, ::-1]  # noqa: E731
    ops: dict[int, Callable[[NDArray[Any]], NDArray[Any]]] = {
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


def _guard(path: str, shape: tuple[int, ...], dtype: DTypeLike) -> None:
    nbytes = int(np.prod(shape, dtype=np.float64)) * np.dtype(dtype).itemsize
    _memory.check(nbytes, f"input image {path!r} ({'x'.join(map(str, shape))} {np.dtype(dtype)})")


def read_image(path: str | os.PathLike[str]) -> NDArray[Any]:
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

    from ..io import _files

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


class ImageRows:
    """An image whose rows are still being read: ``array`` fills from the top.

    :meth:`wait` ``(n)`` returns once rows ``0..n-1`` are in ``array`` (and
    raises what the reading raised: a truncated file); :meth:`close` stops
    the reading (a failed run) and waits for it. See :func:`read_image_rows`.
    """

    #: Bytes per read: big enough for few system calls, small enough that
    #: the first band starts early.
    CHUNK = 2 << 20

    def __init__(self, f: IO[bytes] | None, path: str, offset: int, array: NDArray[Any]) -> None:
        import threading

        self.array = array
        self.path = path
        self._rows = 0 if f is not None else array.shape[0]
        self._error: BaseException | None = None
        self._stop = False
        self._done = f is None
        self._cond = threading.Condition()
        self._thread = None
        if f is not None:
            self._thread = threading.Thread(target=self._read, args=(f, offset),
                                            name="ndconv-image-rows", daemon=True)
            self._thread.start()

    def _read(self, f: Any, offset: int) -> None:
        try:
            flat = self.array.reshape(-1).view(np.uint8)
            total, row = flat.size, self.array[0].nbytes
            raw = getattr(f, "raw", f)  # unbuffered: straight into the array
            raw.seek(offset)
            pos = 0
            while pos < total and not self._stop:
                n = raw.readinto(flat.data[pos:pos + self.CHUNK])
                if not n:
                    raise ValueError(f"input image {self.path!r} is truncated or corrupt: "
                                     f"its pixels end after {pos} of {total} bytes")
                pos += n
                with self._cond:
                    self._rows = pos // row
                    self._cond.notify_all()
        except BaseException as exc:  # noqa: BLE001 - raised by wait()
            self._error = exc
        finally:
            f.close()
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def wait(self, n: int) -> None:
        """Return once rows ``0..n-1`` are read; raise the reader's error if
        they never will be."""
        n = min(n, self.array.shape[0])
        with self._cond:
            while self._rows < n and not self._done:
                self._cond.wait()
        if self._rows >= n:
            return
        if self._error is not None:
            raise self._error
        raise ValueError(f"input image {self.path!r}: reading was stopped")  # by close()

    def close(self) -> None:
        """Stop reading (if not done) and wait for the thread."""
        self._stop = True
        if self._thread is not None:
            self._thread.join()


def read_image_rows(path: str | os.PathLike[str]) -> ImageRows:
    """:func:`read_image`, but an uncompressed one-page integer TIFF is read in
    a thread, rows in order, so that a caller filters the first rows while
    the next are read (the ``ndconv filter`` CLI: ``filter_image(...,
    input_ready=rows.wait)``). The array holds exactly what
    :func:`read_image` returns; other files are read whole before this
    returns (:meth:`ImageRows.wait` then never waits). The header is checked
    as :func:`read_image` checks it, before this returns.
    """
    import os

    from ..io import _files

    path = os.fspath(path)
    tifffile = _tifffile()
    if tifffile is not None:
        f = _files.open_regular(path, "input image")
        try:
            head = f.read(32)
            f.seek(0)
            layout = _tiff_rows_layout(f, path, tifffile) if head[:4] in _TIFF_MAGIC else None
        except BaseException:
            f.close()
            raise
        if layout is not None:
            offset, shape, dtype = layout
            _guard(path, shape, dtype)
            # (on whole huge pages, as filter_image's output: fewer faults)
            return ImageRows(f, path, offset, _pages.empty(shape, dtype))  # f: the thread's now
        f.close()
    return ImageRows(None, path, 0, read_image(path))


def _tiff_rows_layout(f: IO[bytes], path: str, tifffile: Any,
                      ) -> tuple[int, tuple[int, ...], np.dtype[Any]] | None:
    """``(offset, shape, dtype)`` of a TIFF whose pixels :func:`read_image`
    would return as the file's bytes unchanged, stored in one piece; None
    for any other file (compressed, tiled, several pages, big-endian,
    float, oriented, planar, damaged...), which :func:`read_image` reads."""
    import warnings

    try:
        with warnings.catch_warnings(), tiff_log() as problems:
            warnings.simplefilter("ignore")
            with tifffile.TiffFile(f) as tf:
                if len(tf.pages) != 1:
                    return None
                page = tf.pages[0]
                shape, dtype = tuple(page.shape), page.dtype
                tag = page.tags.get(274)  # Orientation
                ok = (not problems and int(page.photometric) in (1, 2)
                      and dtype is not None and dtype.kind in "ui"
                      # the file's byte order is the machine's (page.dtype says native)
                      and (dtype.itemsize == 1 or tf.byteorder == _NATIVE)
                      and dtype != np.bool_
                      and (len(shape) == 2 or len(shape) == 3 and shape[2] > 1
                           and page.planarconfig == 1)
                      and (tag is None or int(tag.value) == 1)
                      and int(page.fillorder) == 1 and 322 not in page.tags  # no tiles
                      and page.is_contiguous)
                if not ok:
                    return None
                return int(page.dataoffsets[0]), shape, np.dtype(dtype)
    except Exception:  # noqa: BLE001 - read_image reports what is wrong
        return None
    finally:
        f.seek(0)


def _read_pillow(f: IO[bytes], path: str) -> NDArray[Any]:
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


def struct_error() -> type[Exception]:
    import struct

    return struct.error


def _read_tiff(f: IO[bytes], path: str, tifffile: Any) -> NDArray[Any] | None:
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


def _read_png16(path: str, head: bytes) -> NDArray[Any]:
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


def _to_array(im: Any) -> NDArray[Any]:
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


def output_format(path: str | os.PathLike[str], dtype: DTypeLike, channels: int) -> str:
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


def write_image(array: ArrayLike, fileobj: IO[bytes] | io.RawIOBase, fmt: str) -> None:
    """Write ``array`` (as returned by :func:`filter_image`) to an open binary file.

    uint8 / uint16 / int32 / float images keep their dtype (16-bit colour as
    16-bit PNG or TIFF; float16/32/64 TIFF through tifffile). Without tifffile,
    Pillow holds floats as float32 only: a float64 image is rounded to float32,
    and one with values beyond float32's range is refused (ValueError) rather
    than written as inf. The file object must raise on a failed write (the
    CLI's :class:`ndconv.io._files.CheckedFile` does).
    """
    a = np.ascontiguousarray(array)
    colour = a.ndim == 3
    if fmt == "PNG" and a.dtype == np.uint16 and colour:
        return _write_png16(a, fileobj)
    if fmt == "TIFF" and _tifffile() is not None:
        _write_tiff(fileobj, a.shape, a.dtype, _pieces(a))
        return None
    if a.dtype.kind == "f":
        a = _as_float32(a)  # Pillow's mode 'F'
    Image = _pillow()
    im = Image.fromarray(a)  # uint8 -> L/RGB/RGBA, uint16 -> I;16, int32 -> I, float32 -> F
    kwargs = {"quality": 95} if fmt == "JPEG" else {}
    im.save(fileobj, format=fmt, **kwargs)
    return None


def _pieces(a: NDArray[Any]) -> Iterator[NDArray[Any]]:
    """Rows of ``a`` in pieces of about 1 MiB: given a whole array, tifffile
    copies it into one bytes object first (the file object has no fileno for
    numpy's tofile), 36 MB at 12 MP (55 ms -> 17 ms; the same bytes)."""
    rows = max(1, (1 << 20) // max(1, a[0].nbytes))
    return (a[r:r + rows] for r in range(0, a.shape[0], rows))


def _write_tiff(fileobj: IO[bytes] | io.RawIOBase, shape: tuple[int, ...], dtype: Any,
                pieces: Iterator[NDArray[Any]]) -> None:
    """An uncompressed TIFF of ``shape`` whose rows ``pieces`` yields in order."""
    colour = len(shape) == 3
    _tifffile().imwrite(fileobj, pieces, shape=shape, dtype=dtype,
                        photometric="rgb" if colour else "minisblack",
                        extrasamples=("unassalpha",) if colour and shape[2] == 4 else None,
                        planarconfig="contig" if colour else None)


def _as_float32(a: NDArray[Any]) -> NDArray[np.float32]:
    """``a`` as float32, or ValueError if a finite value would become inf."""
    big, limit = float(np.abs(a[np.isfinite(a)]).max(initial=0.0)), float(np.finfo(np.float32).max)
    if big > limit:
        raise ValueError(
            f"the image holds values up to {big:.6g}, beyond float32's range "
            f"({limit:.6g}), and Pillow writes float images as float32 "
            "only; install tifffile (pip install 'ndconv[dask]') for a float64 TIFF"
        )
    return a.astype(np.float32)


class TiffBands:
    """Write an image as an uncompressed TIFF while it is being computed.

    :meth:`band` (the ``on_band`` of :func:`ndconv.images.filter_image`)
    hands over each band of finished rows; a thread writes them to
    ``fileobj``, the same bytes :func:`write_image` writes, and starts the
    disk's writeback after each band (:meth:`CheckedFile.start_writeback`),
    so that writing and most of the final ``fsync`` overlap the computing
    of the next bands. :meth:`close` waits for the last band and raises what
    the thread raised; :meth:`abort` stops the thread (the caller's atomic
    write then removes the temporary file). A channel axis of size 1 is
    dropped, as the CLI drops it.
    """

    def __init__(self, fileobj: Any) -> None:
        import queue
        import threading

        self.fileobj = fileobj
        self.error: BaseException | None = None
        self._next = 0  # the first row not yet handed over
        self._queue: queue.Queue[tuple[NDArray[Any], int, int] | None | BaseException] = \
            queue.Queue()
        self._thread = threading.Thread(target=self._write, name="ndconv-tiff-bands",
                                        daemon=True)
        self._thread.start()

    def band(self, out: NDArray[Any], r0: int, r1: int) -> None:
        """Rows ``r0..r1-1`` of ``out`` are final (bands come in order)."""
        if self.error is not None:  # a failed write stops the computing too
            raise self.error
        if r0 != self._next:
            raise ValueError(f"bands out of order: rows {r0}..{r1 - 1} after {self._next}")
        self._next = r1
        self._queue.put((out, r0, r1))

    def close(self) -> None:
        """Wait until every band is written; raise the writer's error, if any."""
        self._queue.put(None)
        self._thread.join()
        if self.error is not None:
            raise self.error

    def abort(self) -> None:
        """Stop writing (the file is left incomplete, for its owner to remove)."""
        self._queue.put(_Aborted())
        self._thread.join()

    def _bands(self) -> Iterator[tuple[NDArray[Any], int, int]]:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def _write(self) -> None:
        writeback = getattr(self.fileobj, "start_writeback", None)
        try:
            bands = self._bands()
            first = next(bands, None)
            if first is None:
                return  # closed before any band: the caller writes nothing either
            out = first[0]
            image = out[..., 0] if out.ndim == 3 and out.shape[2] == 1 else out
            if first[1] != 0:
                raise ValueError(f"the first band starts at row {first[1]}, not 0")

            def pieces() -> Iterator[NDArray[Any]]:
                for _, r0, r1 in itertools.chain([first], bands):
                    yield from _pieces(image[r0:r1])
                    if writeback is not None:
                        writeback()
                if self._next != image.shape[0]:
                    raise ValueError(f"rows {self._next}.. were never handed over")

            _write_tiff(self.fileobj, image.shape, image.dtype, pieces())
        except BaseException as exc:  # noqa: BLE001 - handed to close()
            self.error = exc


class _Aborted(Exception):
    """The computing failed: the band writer stops."""


def _write_png16(a: NDArray[Any], f: IO[bytes] | io.RawIOBase) -> None:
    """A 16-bit RGB/RGBA PNG (Pillow writes colour as 8-bit only): rows unfiltered, zlib."""
    import struct
    import zlib

    h, w, c = a.shape
    rows = np.zeros((h, 1 + w * c * 2), dtype=np.uint8)  # filter byte 0 (None) per row
    rows[:, 1:] = a.astype(">u2").reshape(h, w * c).view(np.uint8)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    f.write(_PNG_MAGIC)
    f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2 if c == 3 else 6, 0, 0, 0)))
    f.write(chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)))
    f.write(chunk(b"IEND", b""))


def verify_written(path: str | os.PathLike[str], fmt: str, array: ArrayLike) -> None:
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
                    ok = page.shape[:2] == (h, w) and page.dtype == a.dtype
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

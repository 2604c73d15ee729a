"""What the explorer works on: bundled photos, uploads, the ECG and the MRI volume.

Everything here comes from data shipped inside installed packages, so the
explorer works offline: scikit-image's photos, PyWavelets' ECG
(``pywt.data.ecg()``) and nibabel's test volume ``anatomical.nii``. A missing
package raises :class:`Missing`, which the server answers with 503 and the
``pip install`` line that brings it.

Uploads are PNG or JPEG files, checked for size before they are decoded and
reduced to at most :data:`MAX_SIDE` pixels on the long side (the explorer is
for looking, and a 12-megapixel photo would make every click slow). They are
kept in memory, the last :data:`MAX_UPLOADS` of them.
"""

from __future__ import annotations

import collections
import hashlib
import io
import os
import threading
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..core._typing import NDArray

#: Bundled photos offered by name (scikit-image's data, no download needed).
PHOTOS = {
    "chelsea": "Chelsea the cat (scikit-image)",
    "coffee": "a cup of coffee (scikit-image)",
    "camera": "the cameraman, grey (scikit-image)",
    "astronaut": "Eileen Collins (scikit-image)",
    "coins": "Greek coins, grey (scikit-image)",
    "rocket": "a rocket launch (scikit-image)",
}

MAX_UPLOAD_BYTES = 8 << 20  #: an upload's body (the encoded file)
MAX_UPLOAD_PIXELS = 40_000_000  #: width x height from the file's header, before decoding
MAX_SIDE = 1024  #: uploads are reduced to this many pixels on the long side
MAX_UPLOADS = 8  #: uploads kept in memory (least recently used go first)


class Missing(Exception):
    """An optional package that holds the data is not installed."""


class TooLarge(ValueError):
    """An upload over one of the stated size limits (the server answers 413)."""


def _require(module: str) -> Any:
    import importlib

    from ..core._extras import missing_message

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise Missing(missing_message(exc) or str(exc)) from None


def grey(image: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """An ``(H, W, 3)`` uint8 photo as ``(H, W)`` luma (Pillow's ITU-R 601-2 'L')."""
    if image.ndim == 2:
        return image
    from PIL import Image

    return np.asarray(Image.fromarray(np.ascontiguousarray(image[..., :3])).convert("L"))


def png_bytes(image: NDArray[np.uint8]) -> bytes:
    """Encode a uint8 ``(H, W)`` or ``(H, W, 3)`` array as PNG."""
    from ..images import write_image

    buf = io.BytesIO()
    write_image(image, buf, "PNG")
    return buf.getvalue()


def ecg() -> NDArray[np.float64]:
    """PyWavelets' bundled ECG: 1024 samples at 360 Hz, as float64."""
    pywt = _require("pywt")
    return np.asarray(pywt.data.ecg(), dtype=np.float64)


def mri() -> NDArray[np.float64]:
    """nibabel's bundled anatomical volume ``anatomical.nii``, shape (33, 41, 25)."""
    nibabel = _require("nibabel")
    path = os.path.join(os.path.dirname(nibabel.__file__), "tests", "data", "anatomical.nii")
    if not os.path.exists(path):
        raise Missing(f"nibabel's bundled anatomical.nii is missing ({path})")
    return np.asarray(nibabel.load(path).get_fdata(), dtype=np.float64)


def decode_upload(data: bytes) -> NDArray[np.uint8]:
    """PNG or JPEG bytes -> uint8 ``(H, W)`` or ``(H, W, 3)``, long side <= MAX_SIDE.

    Raises
    ------
    TooLarge
        Over :data:`MAX_UPLOAD_BYTES` or :data:`MAX_UPLOAD_PIXELS` (checked from
        the header, before the pixels are decoded).
    ValueError
        Not a PNG or JPEG, or truncated.
    """
    from PIL import Image, ImageOps

    if len(data) > MAX_UPLOAD_BYTES:
        raise TooLarge(f"the upload has {len(data):,} bytes; at most "
                       f"{MAX_UPLOAD_BYTES:,} are accepted")
    if not data:
        raise ValueError("the upload is empty: send the bytes of a PNG or JPEG file")
    try:
        im: Image.Image = Image.open(io.BytesIO(data))
    except Exception:  # Pillow raises several kinds for non-images
        raise ValueError("the upload is not an image Pillow can read; send a PNG or JPEG") from None
    with im:
        if im.format not in ("PNG", "JPEG"):
            raise ValueError(f"the upload is a {im.format} image; send a PNG or JPEG")
        w, h = im.size
        if w * h > MAX_UPLOAD_PIXELS:
            raise TooLarge(f"the upload is {w}x{h} = {w * h:,} pixels; at most "
                           f"{MAX_UPLOAD_PIXELS:,} are accepted")
        try:
            # JPEG decodes at a reduced scale directly; then an exact thumbnail.
            im.draft("RGB", (MAX_SIDE, MAX_SIDE))
            im.load()
            # A phone photo stores its rotation in EXIF: shown upright, as viewers do.
            im = ImageOps.exif_transpose(im)
            if im.mode.startswith("I"):
                # 16-bit grey (I;16, or I from older Pillow): convert("L") clips
                # every value over 255 to white; scale 0..65535 to 0..255 instead.
                wide = np.asarray(im, dtype=np.float64)
                im = Image.fromarray(np.clip(np.rint(wide / 257), 0, 255).astype(np.uint8))
            mode = "L" if im.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB"
            im = im.convert(mode)
            im.thumbnail((MAX_SIDE, MAX_SIDE))
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise ValueError(f"the upload is truncated or corrupt: {exc}") from None
        return np.asarray(im)


class Store:
    """The images the explorer can filter: bundled photos by name, uploads by id.

    Thread-safe; uploads are kept in a bounded least-recently-used table.
    """

    def __init__(self, max_uploads: int = MAX_UPLOADS) -> None:
        self._lock = threading.Lock()
        self._photos: dict[str, NDArray[np.uint8]] = {}
        self._uploads: collections.OrderedDict[str, NDArray[np.uint8]] = collections.OrderedDict()
        self._max = max_uploads

    def photos(self) -> list[dict[str, str]]:
        """``[{"id", "title"}, ...]`` for the bundled photos."""
        return [{"id": name, "title": title} for name, title in PHOTOS.items()]

    def add_upload(self, data: bytes) -> tuple[str, NDArray[np.uint8]]:
        """Decode and keep an upload; return its id (``upload-`` + 16 hex digits)."""
        image = decode_upload(data)
        key = "upload-" + hashlib.sha256(data).hexdigest()[:16]
        with self._lock:
            self._uploads[key] = image
            self._uploads.move_to_end(key)
            while len(self._uploads) > self._max:
                self._uploads.popitem(last=False)
        return key, image

    def get(self, image_id: str, as_grey: bool = False) -> NDArray[np.uint8]:
        """The uint8 image for ``image_id``; KeyError naming it if unknown."""
        if not isinstance(image_id, str):
            raise TypeError(f"`image` must be a photo name or an upload id (a str), "
                            f"got {type(image_id).__name__}")
        with self._lock:
            if image_id in self._uploads:
                self._uploads.move_to_end(image_id)
                image = self._uploads[image_id]
            else:
                image = None
        if image is None:
            if image_id not in PHOTOS:
                raise KeyError(
                    f"`image` (={image_id!r}) must be one of {', '.join(PHOTOS)} or the "
                    "id of an upload (uploads are kept only while the server runs; the "
                    f"last {self._max} of them)")
            image = self._photo(image_id)
        return grey(image) if as_grey else image

    def _photo(self, name: str) -> NDArray[np.uint8]:
        with self._lock:
            if name in self._photos:
                return self._photos[name]
        skdata = _require("skimage.data")
        image = np.asarray(getattr(skdata, name)())
        with self._lock:
            self._photos[name] = image
        return image

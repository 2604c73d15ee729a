"""The explorer's JSON API: requests in, ndconv's results out, nothing printed.

Every endpoint is a function of the decoded request that returns a JSON-able
dict or raises :class:`ApiError` with the HTTP status and a one-line message
naming the field and the rule. ndconv's own ``ValueError`` / ``TypeError``
messages (from :mod:`ndconv.core._args`, :mod:`ndconv.kernels`, ...) are passed on as
they are, so the API refuses exactly what :func:`ndconv.conv` refuses.

Limits, each checked before the work it bounds:

=========================  ===================================================
request body (JSON)        :data:`MAX_BODY` bytes (413)
``x``                      :data:`MAX_X` elements, :data:`MAX_DIMS` dims (413)
``kernel``                 :data:`MAX_KERNEL` elements (413)
output                     :data:`MAX_OUTPUT` elements (400, naming the fields)
padded input               :data:`MAX_PADDED` elements (400)
work                       :data:`MAX_WORK` multiply-adds (400)
=========================  ===================================================

Uploads have their own limits (:mod:`ndconv.explore.samples`).
"""

from __future__ import annotations

import base64
import json
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np

from ..lecture.explain import Explainer
from . import samples

if TYPE_CHECKING:
    from ..core._typing import NDArray

#: A decoded JSON request, or a JSON-able answer.
Json = dict[str, Any]

MAX_BODY = 1 << 20  #: bytes of a JSON request body
MAX_X = 1 << 17  #: elements of ``x`` (131,072: the ECG, the MRI volume, a 362x362 grid)
MAX_KERNEL = 1 << 12  #: elements of a kernel (4,096: 64x64, 16x16x16)
MAX_DIMS = 6
MAX_OUTPUT = 1 << 20  #: elements of an output (per channel for images)
MAX_PADDED = 1 << 22  #: elements of the padded input (per channel)
MAX_WORK = 1 << 29  #: output elements x kernel taps x channels

CONV_FIELDS: dict[str, Any] = {"x": None, "kernel": None, "stride": 1, "padding": 0, "dilation": 1,
               "padding_mode": "zeros", "bias": 0.0}
IMAGE_FIELDS: dict[str, Any] = {"image": None, "kernel": None, "stride": 1, "padding": "same",
                "dilation": 1, "padding_mode": "zeros", "range": "clip", "grey": False}


class ApiError(Exception):
    """A refused request: ``status`` (4xx) and a one-line ``message``."""

    #: Longest message sent back: a message quoting a 100,000-entry list stays short.
    MAX_LENGTH = 500

    status: int
    message: str

    def __init__(self, status: int, message: object) -> None:
        super().__init__(message)
        self.status = status
        line = re.sub(r"\s*\n\s*", " ", str(message)).strip()
        if len(line) > self.MAX_LENGTH:
            line = line[:self.MAX_LENGTH - 20] + " ... (cut short)"
        self.message = line


def parse_json(body: bytes) -> Json:
    """Bytes -> a dict; ApiError(400) for anything that is not a JSON object.

    NaN and Infinity (which Python's json accepts) are refused: they are not JSON.
    """
    def no_constants(name: str) -> NoReturn:
        raise ValueError(f"{name} is not a number JSON allows; send finite numbers")

    try:
        value = json.loads(body.decode("utf-8"), parse_constant=no_constants)
    except UnicodeDecodeError:
        raise ApiError(400, "the body must be JSON in UTF-8") from None
    except RecursionError:
        raise ApiError(400, "the body is nested too deeply to be a request") from None
    except ValueError as exc:  # JSONDecodeError, our NaN refusal, a 5000-digit int
        raise ApiError(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ApiError(400, f"the body must be a JSON object {{...}}, got {_kind(value)}")
    return value


def _kind(v: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null", int: "a number", float: "a number"}.get(type(v), type(v).__name__)


def _fields(body: Mapping[str, Any], spec: Mapping[str, Any]) -> Json:
    """The request's fields with defaults; ApiError(400) for missing or unknown ones."""
    unknown = sorted(set(body) - set(spec))
    if unknown:
        raise ApiError(400, f"unknown field {unknown[0]!r}; the fields are {', '.join(spec)}")
    missing = [k for k, v in spec.items() if v is None and k not in body]
    if missing:
        raise ApiError(400, f"missing field {missing[0]!r}")
    return {k: body.get(k, v) for k, v in spec.items()}


def to_array(value: Any, name: str, max_elements: int) -> NDArray[np.float64]:
    """A rectangular nested list of numbers -> float64 ndarray.

    Booleans, strings and null are refused (NumPy would turn ``true`` into 1).
    The shape is found level by level, so an oversized array is refused before
    its numbers are converted.
    """
    if not isinstance(value, list):
        raise ApiError(400, f"`{name}` must be a nested list of numbers, got {_kind(value)}")
    shape: list[int] = []
    level = [value]
    while isinstance(level[0], list):
        n = len(level[0])
        for item in level:
            if not isinstance(item, list) or len(item) != n:
                raise ApiError(400, f"`{name}` must be a rectangular nested list: the lists "
                                    f"at depth {len(shape)} differ in length or nesting")
        if n == 0:
            raise ApiError(400, f"`{name}` has an empty dimension (depth {len(shape)})")
        shape.append(n)
        if len(shape) > MAX_DIMS:
            raise ApiError(400, f"`{name}` has more than {MAX_DIMS} dims")
        if math.prod(shape) > max_elements:
            raise ApiError(413, f"`{name}` has more than {max_elements:,} elements "
                                f"(shape starts {tuple(shape)}); at most {max_elements:,} "
                                "are accepted")
        level = [v for item in level for v in item]
    for v in level:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ApiError(400, f"`{name}` must hold numbers only, found {_kind(v)} ({v!r:.40})")
    try:
        arr = np.array(level, dtype=np.float64).reshape(shape)
    except OverflowError:
        raise ApiError(400, f"`{name}` holds an integer too large for float64") from None
    if not np.isfinite(arr).all():
        raise ApiError(400, f"`{name}` holds a number too large for float64 (inf)")
    return arr


def _check_cost(ex: Explainer, channels: int = 1, what: str = "the output") -> None:
    """Refuse a padding, stride or dilation whose result or work is too large."""
    padded = math.prod(s + lo + hi for s, (lo, hi) in zip(ex.x.shape, ex.pairs))
    out = math.prod(ex.out_shape)
    if padded > MAX_PADDED:
        raise ApiError(400, f"`padding` {ex.pairs} makes the padded input {padded:,} elements; "
                            f"at most {MAX_PADDED:,} are accepted")
    if out > MAX_OUTPUT:
        raise ApiError(400, f"{what} would have shape {ex.out_shape} = {out:,} elements "
                            f"(from `padding`, `stride`, `dilation`); at most {MAX_OUTPUT:,} "
                            "are accepted")
    work = out * ex.k.size * channels
    if work > MAX_WORK:
        raise ApiError(400, f"{what} would take {work:,} multiply-adds ({out:,} elements x "
                            f"{ex.k.size} taps x {channels} channel(s)); at most "
                            f"{MAX_WORK:,}: use a smaller kernel or image")


def _explainer(x: NDArray[Any], kernel: NDArray[Any], f: Mapping[str, Any]) -> Explainer:
    """ndconv's validation of stride / padding / dilation / mode, as a 400."""
    try:
        return Explainer(x, kernel, stride=f["stride"], padding=f["padding"],
                         dilation=f["dilation"], padding_mode=f["padding_mode"],
                         bias=f.get("bias", 0.0))
    except (ValueError, TypeError) as exc:
        raise ApiError(400, str(exc)) from None


def _finite(y: NDArray[Any], what: str = "the output") -> NDArray[Any]:
    if not np.isfinite(y).all():
        raise ApiError(400, f"{what} overflows float64 (inf or NaN): the numbers are too large")
    return y


def _conv_explainer(body: Mapping[str, Any]) -> Explainer:
    f = _fields(body, CONV_FIELDS)
    x = to_array(f["x"], "x", MAX_X)
    k = to_array(f["kernel"], "kernel", MAX_KERNEL)
    ex = _explainer(x, k, f)
    _check_cost(ex)
    return ex


# --------------------------------------------------------------------------
# the endpoints


def conv(body: Mapping[str, Any]) -> Json:
    """``POST /api/conv``: ``{"x", "kernel", "stride", "padding", "dilation",
    "padding_mode", "bias"}`` -> ``{"y", "shape"}``.

    ``y = ndconv.conv(x[None, None], kernel[None, None], ...)[0, 0]``: the
    single-channel cross-correlation, in as many dims as ``x`` has.
    """
    ex = _conv_explainer(body)
    y = _finite(ex.output())
    return {"y": y.tolist(), "shape": list(y.shape), "padding": [list(p) for p in ex.pairs]}


def explain(body: Mapping[str, Any]) -> Json:
    """``POST /api/explain``: the conv fields plus ``"index"`` -> the sum behind ``y[index]``.

    Answers ``{"line", "where", "value", "terms": [{"source", "tap", "x", "k"}],
    "shape"}``; ``source`` is the input index a product reads, null for a zero pad.
    """
    index = body.get("index")
    ex = _conv_explainer({k: v for k, v in body.items() if k != "index"})
    if index is None:
        raise ApiError(400, "missing field 'index'")
    return _explained(ex, index)


def _explained(ex: Explainer, index: Any) -> Json:
    try:
        idx = ex.check_index(index)
    except (ValueError, TypeError) as exc:
        raise ApiError(400, str(exc)) from None
    value, terms = ex.total(idx)
    _finite(np.array([value]), "the sum")
    return {
        "index": list(idx), "line": ex.line(idx), "where": ex.where(idx), "value": value,
        "terms": [{"source": None if t.source is None else list(t.source), "tap": list(t.tap),
                   "x": t.x, "k": t.k} for t in terms],
        "shape": list(ex.out_shape),
    }


def kernel_bank() -> Json:
    """``GET /api/kernels``: the bank of :mod:`ndconv.kernels` with each default kernel."""
    from ..images import kernels

    return {"kernels": [
        {"name": name, "description": description, "takes_arg": kernels._BANK[name][1],
         "kernel": kernels.get(name).tolist()}
        for name, description in kernels.describe()]}


class Images:
    """The image endpoints, over a :class:`samples.Store`, with a small result cache."""

    store: samples.Store

    def __init__(self, store: samples.Store | None = None, cache_size: int = 4) -> None:
        self.store = store or samples.Store()
        self._cache: OrderedDict[str, NDArray[Any]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def _image(self, image_id: str, as_grey: object) -> NDArray[np.uint8]:
        if not isinstance(as_grey, bool):
            raise ApiError(400, f"`grey` must be true or false, got {_kind(as_grey)}")
        try:
            return self.store.get(image_id, as_grey)
        except KeyError as exc:
            raise ApiError(404, exc.args[0]) from None
        except TypeError as exc:
            raise ApiError(400, str(exc)) from None

    def photos(self) -> Json:
        """``GET /api/photos``."""
        return {"photos": self.store.photos()}

    def png(self, image_id: str, as_grey: bool = False) -> bytes:
        """``GET /api/image/ID``: the image as PNG bytes."""
        return samples.png_bytes(self._image(image_id, as_grey))

    def upload(self, data: bytes) -> Json:
        """``POST /api/upload`` (the file's bytes) -> ``{"id", "width", "height", "channels"}``."""
        try:
            key, image = self.store.add_upload(data)
        except samples.TooLarge as exc:
            raise ApiError(413, str(exc)) from None
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        return {"id": key, "height": image.shape[0], "width": image.shape[1],
                "channels": 1 if image.ndim == 2 else image.shape[2]}

    def _prepare(
        self, body: Mapping[str, Any], extra: Collection[str] = ()
    ) -> tuple[Json, NDArray[np.uint8], NDArray[np.float64], list[NDArray[np.uint8]], Explainer]:
        spec = dict(IMAGE_FIELDS, **{k: None for k in extra})
        f = _fields(body, spec)
        image = self._image(f["image"], f["grey"])
        kernel = _kernel(f["kernel"])
        channels = [image] if image.ndim == 2 else [image[..., c] for c in range(image.shape[2])]
        ex = _explainer(channels[0], kernel, f)
        _check_cost(ex, len(channels), "the filtered image")
        from ..images import VALUE_RANGES

        if f["range"] not in VALUE_RANGES:
            raise ApiError(400, f"`range` (={f['range']!r}) must be one of {VALUE_RANGES}")
        return f, image, kernel, channels, ex

    def _filtered(
        self, f: Mapping[str, Any], image: NDArray[np.uint8], kernel: NDArray[Any], ex: Explainer
    ) -> NDArray[Any]:
        from ..images import filter_image

        key = json.dumps([f["image"], f["grey"], kernel.tolist(), ex.stride, ex.pairs,
                          ex.dilation, ex.mode, f["range"]])
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        out = filter_image(image, kernel, padding=ex.pairs, padding_mode=ex.mode,
                           stride=ex.stride, dilation=ex.dilation, value_range=f["range"])
        with self._lock:
            self._cache[key] = out
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return out

    def filter(self, body: Mapping[str, Any]) -> Json:
        """``POST /api/filter``: ``{"image", "kernel", "stride", "padding", "dilation",
        "padding_mode", "range", "grey"}`` -> ``{"png", "shape", ...}``.

        The image goes through :func:`ndconv.images.filter_image`, as in
        ``ndconv filter`` (same padding default ``same``, same output ranges).
        ``kernel`` is a bank name (``"gaussian:2"``) or a 2-D nested list.
        """
        f, image, kernel, channels, ex = self._prepare(body)
        out = self._filtered(f, image, kernel, ex)
        png = base64.b64encode(samples.png_bytes(out)).decode("ascii")
        return {"png": "data:image/png;base64," + png, "shape": list(out.shape[:2]),
                "input_shape": list(image.shape[:2]), "channels": len(channels),
                "kernel": kernel.tolist(), "padding": [list(p) for p in ex.pairs],
                "stride": list(ex.stride), "dilation": list(ex.dilation)}

    def pixel(self, body: Mapping[str, Any]) -> Json:
        """``POST /api/pixel``: the filter fields plus ``"index": [i, j]`` -> the sum
        behind that output pixel in each channel, and the value shown after the
        output range was applied."""
        index = body.get("index")
        f, image, kernel, channels, ex = self._prepare(
            {k: v for k, v in body.items() if k != "index"})
        if index is None:
            raise ApiError(400, "missing field 'index'")
        out = self._filtered(f, image, kernel, ex)
        names = ["grey"] if len(channels) == 1 else ["R", "G", "B", "A"][:len(channels)]
        shown = out.reshape(out.shape[:2] + (-1,))  # (H_out, W_out, C)
        first = _explained(ex, index)
        per_channel = []
        for c, (name, ch) in enumerate(zip(names, channels)):
            r = first if c == 0 else _explained(_explainer(ch, kernel, f), index)
            per_channel.append({"channel": name, "line": r["line"], "value": r["value"],
                                "shown": int(shown[tuple(r["index"])][c])})
        return {"index": first["index"], "channels": per_channel, "where": first["where"],
                "sources": [t["source"] for t in first["terms"]], "range": f["range"],
                "shape": first["shape"]}


def _kernel(spec: Any) -> NDArray[np.float64]:
    from ..images import kernels

    if isinstance(spec, str):
        try:
            return kernels.get(spec)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
    k = to_array(spec, "kernel", MAX_KERNEL)
    if k.ndim != 2:
        raise ApiError(400, f"`kernel` for an image must be 2-D (k_h, k_w), got shape {k.shape}")
    return k


def warm_up() -> None:
    """Run the image code paths once, at the size of a bundled photo.

    The first call of a compiled kernel (numba, with the ``jit`` extra) imports
    and loads it, which takes seconds; done when the server starts, the user's
    first click does not wait. (Small inputs take other methods, so the size matters.)
    """
    from ..images import filter_image

    photo = np.zeros((300, 451, 3), np.uint8)
    for mode in ("zeros", "reflect"):
        filter_image(photo, np.ones((3, 3)), padding_mode=mode)
        Explainer(photo[..., 0], np.ones((3, 3)), padding="same", padding_mode=mode).output()


def signal() -> Json:
    """``GET /api/signal``: PyWavelets' ECG."""
    x = samples.ecg()
    return {"x": x.tolist(), "sampling_hz": 360, "source": "pywt.data.ecg()"}


def volume() -> Json:
    """``GET /api/volume``: nibabel's anatomical.nii."""
    v = samples.mri()
    return {"x": v.tolist(), "shape": list(v.shape),
            "source": "nibabel/tests/data/anatomical.nii"}

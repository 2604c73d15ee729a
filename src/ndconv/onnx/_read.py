"""Reading an ONNX file safely: every check before any large allocation.

Order: the bytes parse as a ModelProto; every tensor's declared size is
compared with the data it holds (inline or in its external file, which must
exist inside the model's folder) and the total with ndconv's memory guard;
only then is external data read and the graph checked by ``onnx.checker``
with shape inference (``full_check``). Failures are ``ValueError`` naming the
model and the tensor or check.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core import _memory

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ..core._typing import NDArray

# The onnx module and its protobuf messages are typed Any here: onnx's own
# annotations differ between its releases.


def require_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ImportError("ndconv.onnx needs the onnx package: pip install 'ndconv[onnx]'") from None
    return onnx


class ModelTooLargeError(_memory.MemoryLimitError, ValueError):
    """The model's tensors would need more memory than the limit (a ValueError and a MemoryError)."""


def _itemsize(onnx: Any, data_type: int) -> int | None:
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(data_type)).itemsize
    except (KeyError, TypeError, ValueError):
        return None


def _stored_bytes(onnx: Any, t: Any, itemsize: int) -> int:
    """Bytes of data the tensor holds inline (typed fields hold one element per entry)."""
    if t.HasField("raw_data"):
        return len(t.raw_data)
    for field in ("float_data", "int32_data", "int64_data", "double_data", "uint64_data"):
        n = len(getattr(t, field))
        if n:
            return n * itemsize
    return 0


def _external_info(t: Any) -> dict[str, str]:
    return {e.key: e.value for e in t.external_data}


def _all_tensors(onnx: Any, graph: Any) -> Iterator[tuple[Any, str]]:
    """Initializers and tensor attributes of the graph (nested graphs included)."""
    for t in graph.initializer:
        yield t, f"initializer {t.name!r}"
    for i, node in enumerate(graph.node):
        for a in node.attribute:
            if a.type == onnx.AttributeProto.TENSOR:
                yield a.t, f"attribute {a.name!r} of node {node.name or i!r} ({node.op_type})"
            elif a.type == onnx.AttributeProto.GRAPH:
                yield from _all_tensors(onnx, a.g)


def check_tensors(onnx: Any, model: Any, base_dir: str | None, where: str) -> int:
    """Refuse inconsistent, missing or too large tensors before reading any data."""
    total = 0
    for t, what in _all_tensors(onnx, model.graph):
        if any(d < 0 for d in t.dims):
            raise ValueError(f"{where}: {what} declares negative dims {list(t.dims)}")
        itemsize = _itemsize(onnx, t.data_type)
        if itemsize is None:
            raise ValueError(f"{where}: {what} has an unknown data type {t.data_type}")
        declared = math.prod(t.dims) * itemsize
        if t.data_location == onnx.TensorProto.EXTERNAL:
            info = _external_info(t)
            loc = info.get("location", "")
            if base_dir is None:
                raise ValueError(f"{where}: {what} keeps its data in an external file "
                                 f"{loc!r}; load the model from its path, not from bytes")
            path = os.path.realpath(os.path.join(base_dir, loc))
            if not loc or os.path.isabs(loc) or not path.startswith(os.path.realpath(base_dir) + os.sep):
                raise ValueError(f"{where}: {what} names external data {loc!r} outside the "
                                 "model's folder")
            if not os.path.isfile(path):
                raise ValueError(f"{where}: {what} keeps its data in {loc!r}, which is missing "
                                 f"(looked in {base_dir!r})")
            offset = int(info.get("offset", 0) or 0)
            length = int(info.get("length", declared) or declared)
            size = os.path.getsize(path)
            if length != declared or offset + length > size:
                raise ValueError(
                    f"{where}: {what} declares {list(t.dims)} ({declared:,} bytes) but its "
                    f"external file {loc!r} holds {max(0, size - offset):,} bytes from offset "
                    f"{offset}")
        elif t.data_type != onnx.TensorProto.STRING:
            stored = _stored_bytes(onnx, t, itemsize)
            if stored != declared:
                raise ValueError(
                    f"{where}: {what} declares shape {list(t.dims)} ({declared:,} bytes) but "
                    f"holds {stored:,} bytes of data (a corrupt or truncated file)")
        total += declared
    limit, source = _memory.get_memory_limit()
    if limit is not None and total > limit:
        raise ModelTooLargeError(f"{where}: the model's tensors", total, limit, source)
    return total


def read_model(path_or_bytes: str | os.PathLike[str] | bytes | bytearray | memoryview,
               ) -> tuple[Any, str]:
    """Parse and check an ONNX model; return ``(ModelProto, name for messages)``."""
    onnx = require_onnx()
    from google.protobuf.message import DecodeError

    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        data, base_dir, where = bytes(path_or_bytes), None, "ONNX model (bytes)"
    elif isinstance(path_or_bytes, (str, os.PathLike)):
        path = os.fspath(path_or_bytes)
        where = f"ONNX model {path!r}"
        if os.path.isdir(path):
            raise ValueError(f"{where} is a folder, not a file")
        size = os.path.getsize(path)  # OSError (missing file) propagates as is
        # protobuf needs the whole message in memory: guard it like a tensor
        _memory.check(size, f"reading {where}")
        with open(path, "rb") as f:
            data = f.read()
        base_dir = os.path.dirname(os.path.abspath(path))
    else:
        raise TypeError(f"`path_or_bytes` must be a path or bytes, got {type(path_or_bytes).__name__}")
    if not data:
        raise ValueError(f"{where} is empty")
    try:
        model = onnx.ModelProto.FromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise ValueError(f"{where} is not an ONNX model (it does not parse as a "
                         f"ModelProto: {exc})") from None
    if not model.HasField("graph") or not model.ir_version:
        raise ValueError(f"{where} is not an ONNX model (no graph or IR version: not ONNX, "
                         "or truncated)")
    check_tensors(onnx, model, base_dir, where)
    if base_dir is not None:
        from onnx.external_data_helper import load_external_data_for_model

        if any(t.data_location == onnx.TensorProto.EXTERNAL for t, _ in _all_tensors(onnx, model.graph)):
            load_external_data_for_model(model, base_dir)
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # ValidationError, InferenceError, and C++ errors
        msg = str(exc).strip().splitlines()
        raise ValueError(f"{where} does not pass onnx.checker (with shape inference): "
                         f"{msg[0] if msg else type(exc).__name__}") from None
    return model, where


def to_array(onnx: Any, tensor: Any) -> NDArray[Any]:
    """A TensorProto as an ndarray (data already checked and loaded)."""
    from onnx import numpy_helper

    return numpy_helper.to_array(tensor)


def attribute_value(onnx: Any, attr: Any) -> Any:
    """An AttributeProto as a plain Python value (str for strings, ndarray for tensors)."""
    A = onnx.AttributeProto
    if attr.type == A.GRAPH or attr.type == A.GRAPHS:
        raise ValueError(f"attribute {attr.name!r} holds a subgraph, which is not supported")
    if attr.type == A.SPARSE_TENSOR or attr.type == A.SPARSE_TENSORS:
        raise ValueError(f"attribute {attr.name!r} holds a sparse tensor, which is not supported")
    v = onnx.helper.get_attribute_value(attr)
    if attr.type == A.TENSOR:
        return to_array(onnx, v)
    if attr.type == A.TENSORS:
        return [to_array(onnx, t) for t in v]
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, list) and v and isinstance(v[0], bytes):
        return [s.decode("utf-8", "replace") for s in v]
    return v

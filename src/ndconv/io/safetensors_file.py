"""safetensors files read and written with NumPy alone (the documented format).

A file is an 8-byte little-endian header length ``N``, ``N`` bytes of JSON
``{name: {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]},
"__metadata__": {str: str}}`` and the raw little-endian, C-ordered tensors,
with offsets relative to the byte after the header. Reading checks the header
as the reference implementation does (size, JSON, known dtypes, each
tensor's byte count equal to its shape times its item size, the tensors
covering the data without gaps or overlaps) before allocating anything for a
tensor. Writing orders the tensors and pads the header as the ``safetensors``
package does, so the bytes are the same as its ``save_file``.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING, Any, Literal, overload

import numpy as np

from ..core import _memory
from ._files import atomic_write, open_regular

if TYPE_CHECKING:
    from ..core._typing import ArrayLike, NDArray, Shape

    _Entries = list[tuple[str, np.dtype[Any], Shape, int, int]]

__all__ = ["load_safetensors", "save_safetensors"]

# safetensors dtype -> NumPy dtype name ("ml:" names need ml_dtypes).
_CODES = {
    "BOOL": "bool", "U8": "uint8", "I8": "int8", "U16": "uint16", "I16": "int16",
    "U32": "uint32", "I32": "int32", "U64": "uint64", "I64": "int64", "F16": "float16",
    "F32": "float32", "F64": "float64", "C64": "complex64", "BF16": "ml:bfloat16",
    "F8_E4M3": "ml:float8_e4m3fn", "F8_E5M2": "ml:float8_e5m2",
}
_NAMES = {v.removeprefix("ml:"): k for k, v in _CODES.items()}
# The safetensors package lays tensors out by this dtype order (its Rust enum),
# descending, then by name.
_ORDER = ["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16", "I32", "U32",
          "F32", "C64", "F64", "I64", "U64"]
# The reference implementation refuses larger headers (a forged size cannot allocate).
_MAX_HEADER = 100_000_000


def _dtype(code: str, where: str) -> np.dtype[Any]:
    from .torch_file import _ml_dtype

    if code not in _CODES:
        raise ValueError(f"{where}: unknown dtype {code!r} (known: {sorted(_CODES)})")
    name = _CODES[code]
    return _ml_dtype(name[3:]) if name.startswith("ml:") else np.dtype(name)


def _header(f: IO[bytes], size: int, where: str) -> tuple[dict[str, Any], int]:
    head = f.read(8)
    if len(head) != 8:
        raise ValueError(f"{where} is not a safetensors file (shorter than 8 bytes)")
    (n,) = struct.unpack("<Q", head)
    if n > _MAX_HEADER or n > size - 8:
        raise ValueError(
            f"{where}: header length {n} exceeds the file ({size} bytes) or the 100 MB limit"
        )
    raw = f.read(n)
    if not raw.startswith(b"{"):
        raise ValueError(f"{where} is not a safetensors file (the header is not a JSON object)")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        # RecursionError: a 100 MB header may nest lists 10^7 deep
        raise ValueError(f"{where}: damaged safetensors header: {exc}") from None
    if not isinstance(header, dict):
        raise ValueError(f"{where}: the safetensors header is not a JSON object")
    return header, 8 + n


def _entries(header: dict[str, Any], data_size: int,
             where: str) -> tuple[_Entries, dict[str, str] | None]:
    """Validated ``(name, dtype, shape, begin, end)``, in file order."""
    meta = header.pop("__metadata__", None)
    if meta is not None and not (isinstance(meta, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in meta.items())):
        raise ValueError(f"{where}: __metadata__ must map str to str")
    out: _Entries = []
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise ValueError(f"{where}: tensor {name!r} needs exactly dtype, shape, data_offsets")
        dt = _dtype(info["dtype"], where)
        shape, offs = info["shape"], info["data_offsets"]
        if not (isinstance(shape, list) and all(type(s) is int and s >= 0 for s in shape)):
            raise ValueError(f"{where}: tensor {name!r} has shape {shape!r}")
        if not (isinstance(offs, list) and len(offs) == 2
                and all(type(o) is int for o in offs) and 0 <= offs[0] <= offs[1]):
            raise ValueError(f"{where}: tensor {name!r} has data_offsets {offs!r}")
        if offs[1] - offs[0] != math.prod(shape) * dt.itemsize:
            raise ValueError(
                f"{where}: tensor {name!r} of shape {tuple(shape)} and dtype {info['dtype']} "
                f"needs {math.prod(shape) * dt.itemsize} bytes, its offsets {offs} give "
                f"{offs[1] - offs[0]}"
            )
        out.append((name, dt, tuple(shape), offs[0], offs[1]))
    out.sort(key=lambda e: (e[3], e[4]))
    pos = 0
    for name, _, _, begin, end in out:
        if begin != pos:
            raise ValueError(f"{where}: tensor {name!r} starts at byte {begin}, expected {pos} "
                             "(tensors must cover the data without gaps or overlaps)")
        pos = end
    if pos != data_size:
        raise ValueError(f"{where}: the tensors cover {pos} bytes of data, the file holds "
                         f"{data_size} (truncated or padded)")
    return out, meta


@overload
def load_safetensors(path: str | os.PathLike[str], *,
                     metadata: Literal[False] = False) -> dict[str, NDArray[Any]]: ...
@overload
def load_safetensors(path: str | os.PathLike[str], *, metadata: Literal[True],
                     ) -> tuple[dict[str, NDArray[Any]], dict[str, str] | None]: ...
@overload
def load_safetensors(path: str | os.PathLike[str], *, metadata: bool) -> (
        dict[str, NDArray[Any]] | tuple[dict[str, NDArray[Any]], dict[str, str] | None]): ...


def load_safetensors(path: str | os.PathLike[str], *, metadata: bool = False) -> (
        dict[str, NDArray[Any]] | tuple[dict[str, NDArray[Any]], dict[str, str] | None]):
    """Read a ``.safetensors`` file into a dict of NumPy arrays.

    Parameters
    ----------
    path : str or os.PathLike
    metadata : bool
        Also return the ``__metadata__`` dict (or ``None``).

    Returns
    -------
    dict of str -> ndarray, in the file's order (or ``(dict, metadata)``).

    Raises
    ------
    ValueError
        A header longer than the file, not JSON, an unknown dtype, a tensor
        whose byte range does not match its shape, gaps, overlaps or a
        truncated file; checked before any tensor is read.
    """
    path = os.fspath(path)
    where = repr(path)
    with open_regular(path, "safetensors file") as f:  # a FIFO would block
        size = os.fstat(f.fileno()).st_size
        header, start = _header(f, size, where)
        entries, meta = _entries(header, size - start, where)
        _memory.guard(size - start, f"the tensors of {where}")
        arrays: dict[str, NDArray[Any]] = {}
        for name, dt, shape, begin, end in entries:
            f.seek(start + begin)
            raw = bytearray(f.read(end - begin))
            arr = np.frombuffer(raw, dtype=dt.newbyteorder("<") if dt.itemsize > 1
                                and dt.kind in "iufc" else dt)
            arrays[name] = arr.astype(dt, copy=False).reshape(shape)
    return (arrays, meta) if metadata else arrays


def save_safetensors(tensors: Mapping[str, ArrayLike], path: str | os.PathLike[str], *,
                     metadata: Mapping[str, str] | None = None) -> None:
    """Write a dict of arrays as a ``.safetensors`` file, atomically.

    Parameters
    ----------
    tensors : dict of str -> array_like
        A state dict (``model.state_dict()``); non-contiguous arrays are
        written C-ordered.
    path : str or os.PathLike
    metadata : dict of str -> str, optional
        Stored as ``__metadata__``.

    Notes
    -----
    Tensors are laid out by the ``safetensors`` package's dtype order, then name, and the header
    is padded with spaces to a multiple of 8 bytes, as the ``safetensors``
    package does.
    """
    if not isinstance(tensors, dict):
        raise TypeError(f"`tensors` must be a dict of arrays, got {type(tensors).__name__}")
    if metadata is not None and not (isinstance(metadata, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())):
        raise TypeError("`metadata` must be a dict of str to str")
    items: list[tuple[str, str, NDArray[Any]]] = []
    for name, a in tensors.items():
        if not isinstance(name, str) or name == "__metadata__":
            raise ValueError(f"tensor name {name!r} must be a str other than '__metadata__'")
        arr = np.asarray(a)
        code = _NAMES.get(arr.dtype.name)
        if code is None:
            raise TypeError(f"tensor {name!r} has dtype {arr.dtype}, which safetensors cannot "
                            f"store (supported: {sorted(_NAMES)})")
        items.append((name, code, arr))
    items.sort(key=lambda t: (-_ORDER.index(t[1]), t[0]))
    header: dict[str, Any] = {}
    pos = 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, code, arr in items:
        header[name] = {"dtype": code, "shape": list(arr.shape),
                        "data_offsets": [pos, pos + arr.nbytes]}
        pos += arr.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    with atomic_write(os.fspath(path)) as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for _, _, arr in items:
            little = arr.dtype.newbyteorder("<") if arr.dtype.kind in "iufc" else arr.dtype
            f.write(np.ascontiguousarray(arr, dtype=little).tobytes())

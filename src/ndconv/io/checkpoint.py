"""Checkpoints: ``save`` / ``load`` nested state dicts as ``.npz``, never with pickle.

A checkpoint is a plain NumPy ``.npz`` archive: every array is stored under its
dotted path (``"model.0.weight"``, ``"optimizer.state.0.exp_avg"``), and one
extra entry, ``__ndconv__``, holds a JSON description of the nesting and the
scalar values, because dotted names alone are ambiguous (PyTorch's state-dict
keys contain dots themselves). Loading uses ``np.load(allow_pickle=False)``, so
a checkpoint can never run code. Writing goes to a temporary file in the
target's folder (:func:`ndconv.io._files.atomic_write`: every write checked,
synced, the manifest read back) that replaces the target only once complete,
so an interrupted or failed save never leaves a truncated checkpoint.

Loading reads only what the file declares and the memory guard allows: the
zip directory's uncompressed sizes and every ``.npy`` header (shape, dtype)
are checked, against the guard and against ``like=``, before any array is
decompressed; a damaged file of any kind raises ``ValueError`` naming it.
"""

from __future__ import annotations

import errno
import json
import os
import zipfile
import zlib
from collections.abc import Callable, Mapping
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from ..core import _memory
from ._files import atomic_write, open_regular

if TYPE_CHECKING:
    from ..core._typing import NDArray, Shape

    _Node = dict[str, Any]  # one node of the JSON manifest

__all__ = ["save", "load"]

_MANIFEST = "__ndconv__"
_FORMAT = "ndconv-checkpoint"
_MAX_DEPTH = 100  # nesting of the manifest (a state dict is a few levels deep)
_MAX_MANIFEST = 64 << 20  # bytes of JSON


def _flatten(obj: Any, key: str, arrays: dict[str, NDArray[Any]], where: str) -> _Node:
    """Describe ``obj`` as JSON, moving its arrays into ``arrays`` under dotted keys."""
    if hasattr(obj, "state_dict") and callable(obj.state_dict) and not isinstance(obj, Mapping):
        obj = obj.state_dict()
    if isinstance(obj, Mapping):
        items: list[list[Any]] = []
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(
                    f"checkpoint keys must be str; {where or 'the top level'} has key {k!r} "
                    f"of type {type(k).__name__}"
                )
            sub = f"{key}.{k}" if key else k
            items.append([k, _flatten(v, sub, arrays, sub)])
        return {"t": "dict", "items": items}
    if isinstance(obj, (list, tuple)):
        elems = [_flatten(v, f"{key}.{i}" if key else str(i), arrays, f"{where}[{i}]")
                 for i, v in enumerate(obj)]
        return {"t": type(obj).__name__, "items": elems}
    if obj is None:
        return {"t": "none"}
    if isinstance(obj, (bool, np.bool_)):
        return {"t": "bool", "v": bool(obj)}
    if isinstance(obj, (int, np.integer)):
        return {"t": "int", "v": int(obj)}
    if isinstance(obj, (float, np.floating)):
        return {"t": "float", "v": repr(float(obj))}  # repr keeps nan/inf and every digit
    if isinstance(obj, str):
        return {"t": "str", "v": obj}
    arr = np.asarray(obj) if not isinstance(obj, np.ndarray) else obj
    if arr.dtype.kind not in "biufcU":
        raise TypeError(
            f"checkpoint entry {where!r} is a {type(obj).__name__} of dtype {arr.dtype}; "
            "only numeric, bool and str arrays are stored (no pickle)"
        )
    name = key or "_"
    if name in arrays or name == _MANIFEST:
        raise ValueError(f"checkpoint key {name!r} occurs twice after flattening with dots")
    arrays[name] = arr
    return {"t": "array", "k": name}


def save(
    obj: object, path: str | os.PathLike[str], *, compress: bool = False, overwrite: bool = True,
) -> None:
    """Write ``obj`` to ``path`` as an ``.npz`` checkpoint, atomically.

    Parameters
    ----------
    obj : dict, Module or Optimizer
        Nested dicts (str keys), lists and tuples of arrays, numbers, bools, str
        and None, such as ``{"model": model.state_dict(), "optimizer":
        opt.state_dict(), "epoch": 3}``. An object with ``state_dict()`` is
        saved as its state dict.
    path : str or os.PathLike
        Written exactly as given (no suffix is added).
    compress : bool
        Deflate the arrays (smaller, slower).
    overwrite : bool
        Replace an existing ``path`` (the default, as ``numpy.save``). When
        False, a ``path`` that exists when the checkpoint is complete (even one
        created meanwhile) is left alone: ``FileExistsError``.

    Raises
    ------
    TypeError
        For a value that cannot be stored without pickle, naming its key.
    OSError
        When the disk is full or a write fails: the old file is intact and no
        temporary file is left.
    """
    path = os.fspath(path)
    arrays: dict[str, NDArray[Any]] = {}
    tree = _flatten(obj, "", arrays, "")
    manifest = json.dumps({"format": _FORMAT, "version": 1, "tree": tree})
    names = [_MANIFEST + ".npy"] + [k + ".npy" for k in arrays]

    def verify(tmp: str) -> None:  # read back the directory and the manifest
        with zipfile.ZipFile(tmp) as zf:
            ok = zf.namelist() == names and str(
                _read_entry(zf, zf.getinfo(names[0]), tmp)) == manifest
        if not ok:
            raise OSError(f"the checkpoint written to {tmp!r} does not read back as written")

    with atomic_write(path, overwrite=overwrite, verify=verify) as f:
        mode = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        # Written entry by entry (as numpy.savez does) so that any key,
        # even "file", is allowed.
        with zipfile.ZipFile(f, "w", compression=mode, allowZip64=True) as zf:
            for name, arr in [(_MANIFEST, np.array(manifest)), *arrays.items()]:
                with zf.open(name + ".npy", "w", force_zip64=True) as fh:
                    np.lib.format.write_array(fh, np.asanyarray(arr), allow_pickle=False)


class _Entry:
    """An array of the file, known from its ``.npy`` header, not read yet."""

    __slots__ = ("info", "shape", "dtype", "fortran", "offset", "nbytes")

    def __init__(self, info: zipfile.ZipInfo, shape: Shape, dtype: np.dtype[Any], fortran: bool,
                 offset: int, nbytes: int) -> None:
        self.info, self.shape, self.dtype = info, shape, dtype
        self.fortran, self.offset, self.nbytes = fortran, offset, nbytes


def read_npy_header(fh: IO[bytes], where: str) -> tuple[Shape, np.dtype[Any], bool, int]:
    """Read a ``.npy`` header from ``fh``: ``(shape, dtype, fortran_order, nbytes)``.

    Every malformed header (bad magic, a dict that does not parse, negative
    or non-int dimensions, object dtypes) raises ValueError naming ``where``;
    nothing beyond the header is read.
    """
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(fh)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except Exception as exc:  # ValueError, SyntaxError, tokenize.TokenError, EOFError...
        if isinstance(exc, OSError) and exc.errno is not None:
            raise  # real I/O
        raise ValueError(f"{where} has a malformed .npy header: {exc}") from None
    if dtype.hasobject:
        raise ValueError(f"{where} contains pickled objects, which ndconv refuses to load")
    if any(not isinstance(d, int) or d < 0 for d in shape):
        raise ValueError(f"{where} has a malformed .npy header: shape {shape}")
    n = 1
    for d in shape:
        n *= d
    return shape, dtype, fortran, n * dtype.itemsize


def _damaged(path: str, what: str, exc: BaseException) -> ValueError:
    return ValueError(f"{path!r} is a damaged checkpoint: {what}: {type(exc).__name__}: {exc}")


# What decompression and zipfile raise for damaged data (not I/O).
_DATA_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError,
                RuntimeError, ValueError, KeyError, IndexError, TypeError,
                OverflowError, MemoryError)


def _data_error(exc: BaseException) -> bool:
    if isinstance(exc, _memory.MemoryLimitError):
        return False
    if isinstance(exc, OSError):
        # bz2/lzma report bad data as errno-less OSError; a damaged offset
        # makes zipfile seek to a negative position (EINVAL).
        return exc.errno in (None, errno.EINVAL)
    return isinstance(exc, _DATA_ERRORS) or type(exc).__name__ == "LZMAError"


def _read_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: str) -> NDArray[Any]:
    """Read one small entry (the manifest) fully, as an array."""
    with zf.open(info) as fh:
        shape, dtype, fortran, nbytes = read_npy_header(fh, f"{path!r} entry {info.filename!r}")
        return _read_data(fh, shape, dtype, fortran, nbytes, path, info.filename)


def _read_data(fh: IO[bytes], shape: Shape, dtype: np.dtype[Any], fortran: bool, nbytes: int,
               path: str, name: str) -> NDArray[Any]:
    arr = np.empty(shape, dtype=dtype, order="F" if fortran else "C")
    if nbytes:
        # (NumPy's stubs declare ndarray a buffer from Python 3.12 on)
        view = memoryview(arr.T if fortran else arr).cast("B")  # type: ignore[arg-type]
        got = 0
        while got < nbytes:
            n = fh.readinto(view[got:])  # type: ignore[attr-defined]  # zipfile's ZipExtFile
            if not n:
                raise ValueError(f"{path!r} is a damaged checkpoint: entry {name!r} is truncated")
            got += n
    return arr


def _rebuild(node: object, arrays: Mapping[str, object], depth: int = 0) -> Any:
    """The object the manifest describes; ValueError for any malformed node."""
    if depth > _MAX_DEPTH:
        raise ValueError(f"nested deeper than {_MAX_DEPTH} levels")
    if not isinstance(node, dict) or not isinstance(node.get("t"), str):
        raise ValueError(f"a node must be an object with a type 't', got {type(node).__name__}")
    t = node["t"]
    if t == "dict":
        items = node.get("items")
        if not isinstance(items, list) or not all(
                isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) for p in items):
            raise ValueError("a dict node must hold 'items', a list of [str, node] pairs")
        return {k: _rebuild(v, arrays, depth + 1) for k, v in items}
    if t in ("list", "tuple"):
        if not isinstance(node.get("items"), list):
            raise ValueError(f"a {t} node must hold 'items', a list")
        items = [_rebuild(v, arrays, depth + 1) for v in node["items"]]
        return items if t == "list" else tuple(items)
    if t == "array":
        if not isinstance(node.get("k"), str) or node["k"] not in arrays:
            raise ValueError(f"array {node.get('k')!r} is missing")
        return arrays[node["k"]]
    if t == "none":
        return None
    kinds = {"bool": (bool, bool), "int": (int, int), "float": (str, float), "str": (str, str)}
    if t not in kinds:
        raise ValueError(f"unknown node type {t!r}")
    stored, make = kinds[t]
    v = node.get("v")
    if not isinstance(v, stored) or (t == "int" and isinstance(v, bool)):
        raise ValueError(f"a {t} node holds {type(v).__name__} {v!r}")
    return make(v)


def _materialize(obj: Any, read: Callable[[_Entry], NDArray[Any]]) -> Any:
    """Replace every :class:`_Entry` in ``obj`` by its array, read now."""
    if isinstance(obj, _Entry):
        return read(obj)
    if isinstance(obj, dict):
        return {k: _materialize(v, read) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_materialize(v, read) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_materialize(v, read) for v in obj)
    return obj


def load(path: str | os.PathLike[str], like: object = None) -> Any:
    """Read a checkpoint written by :func:`save` (or any ``.npz`` of arrays).

    Parameters
    ----------
    path : str or os.PathLike
        A regular file (a FIFO, a device such as ``/dev/zero`` or a folder is
        refused without reading it).
    like : dict, optional
        The expected structure, for example ``{"model": model.state_dict(),
        "optimizer": None}``. Every array must then be present with the same
        shape and dtype; a ``None`` value accepts whatever the file holds.
        Checked from the headers, before any array is decompressed.

    Returns
    -------
    The saved object (nested dicts of arrays and scalars). A plain ``.npz``
    without ndconv's manifest (``np.savez(path, **torch_state_dict_as_numpy)``)
    loads as a flat dict of its arrays.

    Raises
    ------
    KeyError
        A key of ``like`` missing from the file (or extra in it), named with
        its dotted path.
    ValueError
        A shape mismatch, naming the key and both shapes; a file that is not a
        checkpoint, or a damaged one (a malformed manifest or ``.npy`` header,
        a damaged compressed stream, sizes that do not match), naming the
        file and what is wrong; a path that is not a regular file.
    TypeError
        A dtype mismatch, naming the key and both dtypes.
    MemoryLimitError
        When the sizes the file declares exceed the memory guard
        (:func:`ndconv.plan.memory_limit`): nothing is decompressed.
    OSError
        For I/O errors (``FileNotFoundError`` for a missing file).
    """
    path = os.fspath(path)
    with open_regular(path, "checkpoint") as f:
        if f.read(6) == b"\x93NUMPY":
            raise ValueError(f"{path!r} holds a single .npy array, not an .npz checkpoint")
        f.seek(0)
        try:
            zf = zipfile.ZipFile(f)
        except Exception as exc:
            if not _data_error(exc):
                raise
            raise ValueError(
                f"{path!r} is not a readable .npz checkpoint (not a zip archive): {exc}"
            ) from None
        with zf:
            return _load_zip(zf, path, like)


def _load_zip(zf: zipfile.ZipFile, path: str, like: object) -> Any:
    infos = zf.infolist()
    declared = sum(i.file_size for i in infos)
    # The zip directory's sizes bound what decompression may produce (zipfile
    # stops at them), so this refuses a zip bomb before inflating anything.
    _memory.check(declared, f"checkpoint {path!r} ({len(infos)} entries, uncompressed)")
    entries: dict[str, _Entry] = {}
    for info in infos:
        key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
        where = f"{path!r} entry {info.filename!r}"
        try:
            with zf.open(info) as fh:
                shape, dtype, fortran, nbytes = read_npy_header(fh, where)
                offset = fh.tell()
        except Exception as exc:
            if not _data_error(exc):
                raise
            if isinstance(exc, ValueError) and str(exc).startswith(where):
                if "pickled" in str(exc):
                    raise ValueError(
                        f"{path!r} contains pickled objects, which ndconv refuses to load"
                    ) from None
                raise ValueError(f"{path!r} is a damaged checkpoint: {exc}") from None
            raise _damaged(path, f"entry {info.filename!r}", exc) from None
        if offset + nbytes != info.file_size:
            raise ValueError(
                f"{path!r} is a damaged checkpoint: entry {info.filename!r} declares "
                f"shape {shape} {dtype} ({nbytes:,} bytes) but holds "
                f"{info.file_size - offset:,} bytes of data"
            )
        entries[key] = _Entry(info, shape, dtype, fortran, offset, nbytes)

    def read(entry: _Entry) -> NDArray[Any]:
        try:
            with zf.open(entry.info) as fh:
                fh.read(entry.offset)
                return _read_data(fh, entry.shape, entry.dtype, entry.fortran,
                                  entry.nbytes, path, entry.info.filename)
        except Exception as exc:
            if not _data_error(exc) or str(exc).startswith(repr(path)):
                raise
            raise _damaged(path, f"entry {entry.info.filename!r}", exc) from None

    manifest = entries.pop(_MANIFEST, None)
    obj: Any
    if manifest is None:
        obj = entries
    else:
        if manifest.shape != () or manifest.dtype.kind != "U" \
                or manifest.info.file_size > _MAX_MANIFEST:
            raise ValueError(
                f"{path!r} has a damaged ndconv manifest: not a JSON string "
                f"(shape {manifest.shape}, dtype {manifest.dtype})"
            )
        try:
            meta = json.loads(str(read(manifest)))
            if not isinstance(meta, dict):
                raise ValueError(f"the manifest is a JSON {type(meta).__name__}, not an object")
            if meta.get("format") != _FORMAT:
                raise ValueError(f"unknown format {meta.get('format')!r}")
            obj = _rebuild(meta.get("tree"), entries)
        except (ValueError, RecursionError) as exc:
            if str(exc).startswith(repr(path)):
                raise
            raise ValueError(f"{path!r} has a damaged ndconv manifest: {exc}") from None
    if like is not None:
        _compare(like, obj, "")  # from the headers: nothing decompressed yet
    return _materialize(obj, read)


def _compare(expected: Any, got: Any, where: str) -> None:
    """Check ``got`` against the structure, shapes and dtypes of ``expected``."""
    if hasattr(expected, "state_dict") and not isinstance(expected, Mapping):
        expected = expected.state_dict()
    if isinstance(expected, Mapping):
        if not isinstance(got, Mapping):
            raise TypeError(
                f"checkpoint entry {where!r} is a {type(got).__name__}, expected a dict"
            )
        missing = [k for k in expected if k not in got]
        extra = [k for k in got if k not in expected]
        if missing or extra:
            name = lambda k: f"{where}.{k}" if where else k  # noqa: E731
            raise KeyError(
                f"checkpoint does not match: missing keys {[name(k) for k in missing]}, "
                f"unexpected keys {[name(k) for k in extra]}"
            )
        for k in expected:
            _compare(expected[k], got[k], f"{where}.{k}" if where else k)
    elif isinstance(expected, np.ndarray):
        if not isinstance(got, (np.ndarray, _Entry)):
            raise TypeError(
                f"checkpoint entry {where!r} is a {type(got).__name__}, expected an array"
            )
        if got.shape != expected.shape:
            raise ValueError(
                f"checkpoint entry {where!r} has shape {got.shape}, expected {expected.shape}"
            )
        if got.dtype != expected.dtype:
            raise TypeError(
                f"checkpoint entry {where!r} has dtype {got.dtype}, expected {expected.dtype}"
            )

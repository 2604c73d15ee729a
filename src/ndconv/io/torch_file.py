"""Read PyTorch checkpoints (``torch.save``) into NumPy arrays without importing torch.

A ``.pt`` / ``.pth`` file is a pickle whose tensors point, through pickle's
"persistent ids", at raw storages kept beside it: in the zip format (PyTorch
>= 1.6) as ``<archive>/data/<key>`` records next to ``<archive>/data.pkl``;
in the legacy format as little-endian blocks after the pickle. A pickle can
name any importable callable and have it called, so it is read here by a
restricted unpickler, as PyTorch's own ``weights_only`` loader
(``torch/_weights_only_unpickler.py``) does: ``find_class`` hands out only
stand-ins written here for the tensor-rebuild functions, the storage and
dtype names, ``OrderedDict`` and a few plain constructors. Any other global
(``os.system``, ``builtins.eval``, a model's class) is refused with a
``ValueError`` naming it, before anything is called; no code from the file
is executed.

The arrays come back as PyTorch has them: several tensors saved from one
storage are views of one NumPy buffer (``np.shares_memory``), with the saved
offset and strides, after checking that every view lies inside its storage.
"""

from __future__ import annotations

import _compat_pickle
import io
import lzma
import os
import pickle
import struct
import sys
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..core import _memory
from ._files import open_regular

if TYPE_CHECKING:
    from ..core._typing import NDArray

    _LoadStorage = Callable[[tuple[Any, ...]], "_Storage | None"]

__all__ = ["load_torch"]

# The legacy format starts with these two pickled ints (torch/serialization.py).
_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_PROTOCOL_VERSION = 1001


def _ml_dtype(name: str) -> np.dtype[Any]:
    try:
        import ml_dtypes
    except ImportError:
        raise ValueError(
            f"the checkpoint holds {name} tensors, which NumPy has no dtype for; "
            "install ml_dtypes (pip install 'ndconv[half]') to read them"
        ) from None
    return np.dtype(getattr(ml_dtypes, name))


# torch dtype name -> NumPy dtype (a str: resolved on use, so ml_dtypes is optional).
_DTYPES = {
    "float64": "float64", "float32": "float32", "float16": "float16",
    "bfloat16": "ml:bfloat16", "complex128": "complex128", "complex64": "complex64",
    "int64": "int64", "int32": "int32", "int16": "int16", "int8": "int8",
    "uint8": "uint8", "uint16": "uint16", "uint32": "uint32", "uint64": "uint64",
    "bool": "bool", "float8_e4m3fn": "ml:float8_e4m3fn", "float8_e5m2": "ml:float8_e5m2",
    "float8_e4m3fnuz": "ml:float8_e4m3fnuz", "float8_e5m2fnuz": "ml:float8_e5m2fnuz",
}
# The legacy typed-storage classes (torch.FloatStorage, ...) -> torch dtype name.
_STORAGES = {
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "ComplexDoubleStorage": "complex128",
    "ComplexFloatStorage": "complex64", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8",
    "BoolStorage": "bool", "UntypedStorage": "uint8",
}


def _np_dtype(name: str) -> np.dtype[Any]:
    code = _DTYPES[name]
    return _ml_dtype(code[3:]) if code.startswith("ml:") else np.dtype(code)


class _StorageType:
    """Stand-in for ``torch.FloatStorage`` etc.; ``untyped`` for ``torch.UntypedStorage``."""

    __slots__ = ("dtype", "untyped")

    def __init__(self, name: str) -> None:
        self.dtype = _STORAGES[name]
        self.untyped = name == "UntypedStorage"


class _Storage:
    """A loaded storage: a 1-D NumPy array of its dtype (uint8 for untyped storages)."""

    __slots__ = ("array",)

    def __init__(self, array: NDArray[Any] | None) -> None:
        self.array = array


class _TensorType:
    """Stand-in for ``torch.Tensor`` / ``torch.nn.Parameter`` in ``_rebuild_from_type_v2``."""

    __slots__ = ()


def _view(storage: object, offset: Any, size: Any, stride: Any, dtype: np.dtype[Any] | None = None,
          what: str = "tensor") -> NDArray[Any] | None:
    """The saved tensor as a view of its storage, after checking it lies inside it."""
    if not isinstance(storage, _Storage):
        raise ValueError(f"{what}: the storage argument is a {type(storage).__name__}")
    base = storage.array
    if base is None:
        return None  # the legacy format's first pass: storages not read yet
    if dtype is not None:  # _rebuild_tensor_v3: an untyped (byte) storage read as `dtype`
        if base.dtype != np.uint8 or base.size % dtype.itemsize:
            raise ValueError(f"{what}: storage of {base.size} bytes is not a whole number "
                             f"of {dtype} elements")
        base = base.view(dtype)
    ints = (offset, *size, *stride) if isinstance(size, tuple) and isinstance(stride, tuple) else None
    if ints is None or len(size) != len(stride) or not all(
            type(v) is int and v >= 0 for v in ints):
        raise ValueError(
            f"{what}: offset {offset!r}, size {size!r} and stride {stride!r} must be "
            "non-negative ints with one stride per dim"
        )
    n = int(np.prod(size, dtype=object)) if size else 1
    if n:
        last = offset + sum((s - 1) * st for s, st in zip(size, stride))
        if last >= base.size:
            raise ValueError(
                f"{what}: a view of size {size}, stride {stride} at offset {offset} reaches "
                f"element {last} of a storage of {base.size} elements"
            )
        start = base[offset:]
    else:
        start = base[:0]
        stride = (0,) * len(size)
    item = base.dtype.itemsize
    strides = tuple(st * item for st in stride)
    if base.dtype.type.__module__.startswith("ml_dtypes"):
        # as_strided cannot name ml_dtypes' types (bfloat16, float8) in its array
        # interface: stride an unsigned view of the same size, then view it back.
        raw = as_strided(start.view(f"u{item}"), shape=size, strides=strides)
        return raw.view(base.dtype)
    return as_strided(start, shape=size, strides=strides)


def _rebuild_tensor_v2(storage: object, storage_offset: Any, size: Any, stride: Any,
                       requires_grad: object = False, backward_hooks: object = None,
                       metadata: object = None) -> NDArray[Any] | None:
    return _view(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage: object, storage_offset: Any, size: Any, stride: Any,
                       requires_grad: object, backward_hooks: object, dtype: object,
                       metadata: object = None) -> NDArray[Any] | None:
    # Only find_class makes NumPy dtypes here (NumPy's own globals are refused).
    if not isinstance(dtype, np.dtype):
        raise ValueError(f"_rebuild_tensor_v3: dtype argument is a {type(dtype).__name__}")
    return _view(storage, storage_offset, size, stride, dtype)


def _rebuild_parameter(data: object, requires_grad: object, backward_hooks: object,
                       state: object = None) -> object:
    if not isinstance(data, np.ndarray) and data is not None:
        raise ValueError(f"_rebuild_parameter: data is a {type(data).__name__}, not a tensor")
    return data


def _rebuild_from_type_v2(func: object, new_type: object, args: object, state: object) -> object:
    # A tensor subclass or a tensor with Python attributes: only the data is kept.
    if not isinstance(func, _Safe) or func.fn not in _REBUILD or not isinstance(
            new_type, _TensorType) or not isinstance(args, tuple):
        raise ValueError("_rebuild_from_type_v2 with a function or type other than a tensor's")
    return func(*args)


def _encode(text: object, encoding: object = "latin1") -> bytes:
    """``_codecs.encode``, as protocol 2 pickles ``bytes``; only latin-1."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise ValueError(f"_codecs.encode is allowed only for str with latin1, got {encoding!r}")
    return text.encode("latin1")


def _bytearray(*args: object) -> bytearray:
    """``bytearray(bytes)`` / ``bytearray(str, 'latin-1')``, as pickles write them.

    ``bytearray(n)`` would zero ``n`` bytes that a 20-byte pickle can ask
    for (gigabytes), so an int argument is refused.
    """
    if not args:
        return bytearray()
    if isinstance(args[0], str) and len(args) == 2:
        return bytearray(_encode(*args))
    if len(args) == 1 and isinstance(args[0], (bytes, bytearray)):
        return bytearray(args[0])
    raise ValueError("builtins.bytearray is allowed only on bytes or a latin-1 str, "
                     f"not on {type(args[0]).__name__}")


def _size(*args: Any) -> tuple[Any, ...]:
    """``torch.Size(...)`` becomes a tuple of ints."""
    (shape,) = args or ((),)
    return tuple(shape)


class _Safe:
    """A stand-in callable that a pickle cannot alter.

    Pickle's BUILD opcode sets attributes on whatever object is on its stack;
    on a plain function it could change ``__defaults__`` for every later
    load. An instance without ``__dict__`` or writable slots refuses that.
    """

    __slots__ = ()
    fn: Callable[..., object] | None = None

    def __call__(self, *args: Any) -> object:
        return type(self).fn(*args)  # type: ignore[misc]  # set by _safe on every subclass


def _safe(fn: Callable[..., object]) -> type[_Safe]:
    return type(f"_Safe_{fn.__name__}", (_Safe,), {"__slots__": (), "fn": staticmethod(fn)})


def _device(kind: object, index: object = None) -> str:
    """``torch.device(...)`` becomes its string (``'cuda:0'``); the arrays are on the CPU anyway."""
    if not isinstance(kind, str) or not (index is None or type(index) is int):
        raise ValueError(f"torch.device({kind!r}, {index!r}) is not a device")
    return kind if index is None else f"{kind}:{index}"


_REBUILD = (_rebuild_tensor_v2, _rebuild_tensor_v3, _rebuild_parameter)
# Classes are made once; find_class returns a fresh instance per use.
_FUNCTIONS: dict[tuple[str, str], Callable[[], object]] = {
    ("torch._utils", "_rebuild_tensor"): _safe(_rebuild_tensor_v2),  # PyTorch <= 0.3
    ("torch._utils", "_rebuild_tensor_v2"): _safe(_rebuild_tensor_v2),
    ("torch._utils", "_rebuild_tensor_v3"): _safe(_rebuild_tensor_v3),
    ("torch._utils", "_rebuild_parameter"): _safe(_rebuild_parameter),
    ("torch._utils", "_rebuild_parameter_with_state"): _safe(_rebuild_parameter),
    ("torch._tensor", "_rebuild_from_type_v2"): _safe(_rebuild_from_type_v2),
    ("torch", "Tensor"): _TensorType,
    ("torch.nn.parameter", "Parameter"): _TensorType,
    ("torch", "Size"): _safe(_size),
    ("torch", "device"): _safe(_device),
    ("_codecs", "encode"): _safe(_encode),
    ("builtins", "bytearray"): _safe(_bytearray),
}
# Built-in types: immutable, so BUILD cannot change them.
_TYPES: dict[tuple[str, str], type] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "complex"): complex,
}


class _Unpickler(pickle._Unpickler):
    """``find_class`` limited to the stand-ins above; storages through ``persistent_load``.

    The pure-Python unpickler, as PyTorch's ``weights_only`` loader uses: the
    C one grows its memo to twice the largest PUT index and fills it, so a
    ``LONG_BINPUT 2**30`` in a 20-byte pickle would take 16 GiB. This one's
    memo is a dict; its one eager allocation (``BYTEARRAY8``) is bounded below.
    """

    dispatch = dict(pickle._Unpickler.dispatch)
    read: Callable[[int], bytes]  # set by pickle._Unpickler.load (annotations only)
    append: Callable[[object], None]

    def __init__(self, file: IO[bytes], where: str, load_storage: _LoadStorage) -> None:
        super().__init__(file, encoding="utf-8")
        self._where = where
        self._load_storage = load_storage
        self._file = file

    def _load_bytearray8(self) -> None:
        # pickle._Unpickler zero-fills the declared length before reading it.
        (n,) = struct.unpack("<Q", self.read(8))
        data = self.read(n)
        if len(data) != n:
            raise pickle.UnpicklingError("BYTEARRAY8 longer than the pickle")
        self.append(bytearray(data))

    # (typeshed types the table's entries as taking the C Unpickler)
    dispatch[pickle.BYTEARRAY8[0]] = _load_bytearray8  # type: ignore[assignment]

    def find_class(self, module: str, name: str) -> object:
        # Python 2 names in protocol 2 pickles (__builtin__.set), mapped as pickle does.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        else:
            module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) in _FUNCTIONS:
            return _FUNCTIONS[(module, name)]()
        if (module, name) in _TYPES:
            return _TYPES[(module, name)]
        if module == "torch" and name in _STORAGES:
            return _StorageType(name)
        if module == "torch.storage" and name == "UntypedStorage":
            return _StorageType(name)
        if module == "torch" and name in _DTYPES:
            # torch.float32 etc.: the NumPy dtype, also where a checkpoint keeps
            # one as a value ({"dtype": torch.float16} -> dtype('float16')).
            return _np_dtype(name)
        raise ValueError(
            f"{self._where}: the pickle asks for the global {module}.{name}, which load_torch "
            "refuses (only tensors, OrderedDict and plain containers are read; nothing from "
            "the file is executed). A whole pickled model cannot be read without its code: "
            "save model.state_dict() instead"
        )

    def persistent_load(self, pid: object) -> _Storage | None:
        if not isinstance(pid, tuple) or not pid or pid[0] not in ("storage", b"storage"):
            raise ValueError(f"{self._where}: unknown persistent id {str(pid)[:80]!r}")
        return self._load_storage(pid[1:])


def _storage_dtype(storage_type: object, where: str) -> np.dtype[Any]:
    if not isinstance(storage_type, _StorageType):
        raise ValueError(f"{where}: storage type is a {type(storage_type).__name__}")
    return _np_dtype(storage_type.dtype)


def _key(v: object, where: str) -> str:
    if isinstance(v, bytes):
        v = v.decode("ascii")
    if not isinstance(v, (str, int)) or isinstance(v, bool):
        raise ValueError(f"{where}: storage key {v!r} is not a str")
    return str(v)


def _read_record(zf: zipfile.ZipFile, name: str, where: str, size: int) -> bytearray:
    """A record's bytes (a writable bytearray, read once, without a second copy).

    A compressed record that would expand enormously is refused first.
    """
    info = zf.getinfo(name)
    # The sizes come from the central directory, which the file writes: a
    # 400-byte file can declare a 12 GB record. Checked before the buffer is
    # allocated (bytearray zero-fills it): the stored bytes must lie inside
    # the archive, a stored record cannot expand, and a compressed one must
    # fit the memory guard.
    if (info.header_offset + info.compress_size > size
            or (info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size)):
        raise ValueError(f"{where}: record {name!r} declares {info.file_size} bytes "
                         f"({info.compress_size} stored), more than the archive's "
                         f"{size} bytes hold")
    # torch.save stores records uncompressed; a re-zipped file may deflate them,
    # but a 1000-fold expansion is a zip bomb, not a checkpoint.
    if info.compress_type != zipfile.ZIP_STORED and info.file_size > 1000 * info.compress_size + 2**20:
        raise ValueError(f"{where}: record {name!r} expands from {info.compress_size} to "
                         f"{info.file_size} bytes; refused")
    _memory.guard(info.file_size, f"record {name!r} of {where}")
    buf = bytearray(info.file_size)
    try:
        with zf.open(info) as fh:
            got = fh.readinto(buf)  # type: ignore[attr-defined]  # zipfile's ZipExtFile
    except (zlib.error, lzma.LZMAError, NotImplementedError, RuntimeError) as exc:
        # a damaged deflate stream, an unknown compression method, an encrypted entry
        raise ValueError(f"{where}: record {name!r} cannot be read: {exc}") from None
    if got != info.file_size:
        raise ValueError(f"{where} is truncated: record {name!r} has {got} of "
                         f"{info.file_size} bytes")
    return buf


def _load_zip(zf: zipfile.ZipFile, where: str, size: int) -> Any:
    names = zf.namelist()
    # Two entries of one name are read differently by zipfile (the last) and
    # by PyTorch (the first), and PyTorch takes the archive folder from the
    # first entry and refuses entries outside it: both rules kept here, so
    # that what is read is what torch.load reads.
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ValueError(f"{where}: the zip archive has two entries named {dup!r}")
    prefix = names[0].split("/", 1)[0] + "/" if names and "/" in names[0] else None
    if prefix is None or any(not n.startswith(prefix) for n in names):
        raise ValueError(f"{where}: a torch.save archive keeps every entry in one folder")
    pkls = [prefix + "data.pkl"] if prefix + "data.pkl" in names else []
    if not pkls:
        if any(n.endswith("constants.pkl") for n in names):
            raise ValueError(f"{where} is a TorchScript archive (torch.jit.save), not a "
                             "torch.save checkpoint")
        raise ValueError(f"{where} is a zip archive without a data.pkl: not a torch.save file")
    big = False
    if prefix + "byteorder" in names:
        order: bytes | bytearray = _read_record(zf, prefix + "byteorder", where, size)
        order = bytes(order)
        if order not in (b"little", b"big"):
            raise ValueError(f"{where}: unknown byte order {order[:20]!r}")
        big = order == b"big"
    storages: dict[str, _Storage] = {}

    def load_storage(data: tuple[Any, ...]) -> _Storage:
        if len(data) != 4:
            raise ValueError(f"{where}: storage id of {len(data)} fields, expected 4")
        storage_type, key, _location, numel = data
        dtype = _storage_dtype(storage_type, where)
        key = _key(key, where)
        if key in storages:
            return storages[key]
        record = f"{prefix}data/{key}"
        try:
            info = zf.getinfo(record)
        except KeyError:
            raise ValueError(f"{where}: storage record {record!r} is missing") from None
        if type(numel) is not int or numel < 0 or info.file_size != numel * dtype.itemsize:
            raise ValueError(
                f"{where}: storage {key!r} declares {numel!r} elements of {dtype} but its "
                f"record holds {info.file_size} bytes"
            )
        arr = np.frombuffer(_read_record(zf, record, where, size), dtype=dtype)
        storages[key] = _Storage(_native(arr, big))
        return storages[key]

    try:
        data = _read_record(zf, pkls[0], where, size)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ValueError(f"{where}: damaged zip archive: {exc}") from None
    return _unpickle(io.BytesIO(bytes(data)), where, load_storage)


def _native(arr: NDArray[Any], big: bool) -> NDArray[Any]:
    """The array in native byte order (PyTorch writes the saving machine's order)."""
    if arr.dtype.itemsize > 1 and big != (sys.byteorder == "big"):
        return arr.byteswap().view(arr.dtype)
    return arr


def _no_stand_ins(obj: Any, where: str) -> Any:
    """``obj``, unless a storage or storage type stands in it as a value.

    They are the unpickler's stand-ins for torch's classes, meant only as
    arguments of a tensor's rebuild; one left as a value (a damaged or odd
    pickle, where torch would return its own storage object) is refused rather
    than handed out as an object of this module.
    """
    stack, seen = [obj], set()
    while stack:
        item = stack.pop()
        if isinstance(item, (_StorageType, _Storage)):
            raise ValueError(f"{where}: a torch storage stands where a value should be "
                             f"(damaged or not a state dict)")
        if isinstance(item, (dict, list, tuple, set, frozenset)) and id(item) not in seen:
            seen.add(id(item))
            stack.extend(item.values() if isinstance(item, dict) else item)
            if isinstance(item, dict):
                stack.extend(item.keys())
    return obj


def _unpickle(f: IO[bytes], where: str, load_storage: _LoadStorage) -> Any:
    try:
        return _no_stand_ins(_Unpickler(f, where, load_storage).load(), where)
    except ValueError:
        raise
    except _memory.MemoryLimitError:
        raise
    except (pickle.UnpicklingError, EOFError, TypeError, AttributeError, IndexError,
            KeyError, struct.error, UnicodeDecodeError, OverflowError, MemoryError) as exc:
        raise ValueError(f"{where}: damaged pickle ({type(exc).__name__}: {exc})") from None


def _load_legacy(f: IO[bytes], where: str) -> Any:
    """The pre-1.6 format: magic, protocol, sys_info, the pickle, storage keys, raw storages.

    The storages' data follows the pickle that uses them, so the pickle is read
    twice: once to learn the storages and reach their data, once to build
    the arrays on the loaded storages.
    """
    def header() -> Any:
        return _unpickle(f, where, lambda data: None)

    if header() != _MAGIC_NUMBER:
        raise ValueError(f"{where} is not a PyTorch checkpoint (bad magic number)")
    if header() != _PROTOCOL_VERSION:
        raise ValueError(f"{where}: unknown legacy protocol version")
    sys_info = header()
    big = isinstance(sys_info, dict) and sys_info.get("little_endian") is False
    roots: dict[str, tuple[np.dtype[Any], int, _Storage]] = {}  # key -> (dtype, numel, storage)
    views: dict[str, _Storage] = {}  # view key -> a slice of a root storage (torch < 1.0)

    def load_storage(data: tuple[Any, ...]) -> _Storage:
        if len(data) != 5:
            raise ValueError(f"{where}: storage id of {len(data)} fields, expected 5")
        storage_type, key, _location, numel, view = data
        dtype = _storage_dtype(storage_type, where)
        key = _key(key, where)
        if type(numel) is not int or numel < 0:
            raise ValueError(f"{where}: storage {key!r} has size {numel!r}")
        root = roots.setdefault(key, (dtype, numel, _Storage(None)))[2]
        if view is None:
            return root
        if not (isinstance(view, tuple) and len(view) == 3):
            raise ValueError(f"{where}: damaged storage view {str(view)[:60]}")
        vkey, off, vsize = view
        vkey = _key(vkey, where)
        if root.array is not None and vkey not in views:
            if not (type(off) is int and type(vsize) is int and 0 <= off
                    and off + vsize <= root.array.size):
                raise ValueError(f"{where}: a storage view lies outside its storage")
            views[vkey] = _Storage(root.array[off:off + vsize])
        return views.get(vkey, _Storage(None))

    start = f.tell()
    _unpickle(f, where, load_storage)  # first pass: the storages, not the arrays
    keys = _unpickle(f, where, lambda data: None)
    if not isinstance(keys, list):
        raise ValueError(f"{where}: damaged storage list")
    size = os.fstat(f.fileno()).st_size
    for key in keys:
        key = _key(key, where)
        if key not in roots:
            raise ValueError(f"{where}: storage {key!r} is listed but not used")
        dtype, numel, st = roots[key]
        head = f.read(8)
        if len(head) != 8:
            raise ValueError(f"{where} is truncated (storage {key!r})")
        (n,) = struct.unpack("<q", head)
        nbytes = n * dtype.itemsize
        # Checked before reading, so a forged size cannot allocate.
        if n != numel or f.tell() + nbytes > size:
            raise ValueError(
                f"{where}: storage {key!r} declares {n} elements (the pickle says {numel}) "
                f"and the file has {size - f.tell()} bytes left"
            )
        st.array = _native(np.frombuffer(bytearray(f.read(nbytes)), dtype=dtype), big)
    missing = [k for k, (_, _, st) in roots.items() if st.array is None]
    if missing:
        raise ValueError(f"{where}: storages {missing} have no data")
    f.seek(start)
    return _unpickle(f, where, load_storage)


def load_torch(path: str | os.PathLike[str]) -> Any:
    """Read a file written by ``torch.save`` into NumPy arrays, without PyTorch.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.pt`` / ``.pth`` file in the zip format (PyTorch >= 1.6, the
        default) or the legacy format (``_use_new_zipfile_serialization=False``).

    Returns
    -------
    The saved object with every tensor (and ``nn.Parameter``) as an ndarray of
    its dtype (``bfloat16`` and ``float8_*`` as ml_dtypes' types), dicts,
    ``OrderedDict`` (a state dict), lists, tuples, numbers and strings as
    saved; a ``torch.Size`` becomes a tuple, a ``torch.device`` its string and
    a dtype kept as a value (``torch.float16``) the NumPy dtype
    (``dtype('float16')``). Tensors that shared a storage share memory, with
    PyTorch's offsets and strides.

    Raises
    ------
    ValueError
        A global other than the tensor-rebuild functions, storage and dtype
        names, ``OrderedDict`` and plain constructors (naming it; nothing is
        executed); a view outside its storage; a record of the wrong size; a
        truncated, damaged or foreign file.

    Examples
    --------
    >>> state = ndconv.io.load_torch("resnet18.pth")   # doctest: +SKIP
    >>> model.load_state_dict(state)                    # doctest: +SKIP
    """
    path = os.fspath(path)
    where = repr(path)
    with open_regular(path, "checkpoint") as f:  # a FIFO would block, /dev/zero never end
        head = f.read(4)
        f.seek(0)
        if head[:2] == b"PK":
            try:
                zf = zipfile.ZipFile(f)
            # NotImplementedError: an entry needing a later zip version than zipfile's
            except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
                raise ValueError(f"{where}: damaged zip archive: {exc}") from None
            with zf:
                try:
                    return _load_zip(zf, where, os.fstat(f.fileno()).st_size)
                except (zipfile.BadZipFile, OSError, EOFError) as exc:
                    raise ValueError(f"{where}: damaged zip archive: {exc}") from None
        if head[:1] != b"\x80":
            raise ValueError(f"{where} is not a PyTorch checkpoint (neither a zip archive nor "
                             "a pickle)")
        return _load_legacy(f, where)

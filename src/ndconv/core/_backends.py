"""The seam between ndconv and array libraries: one backend per call.

Each public function of :mod:`ndconv.functional` and :mod:`ndconv.pooling`
resolves the library of its array arguments once, ``be = resolve(x=x,
weight=weight, ...)`` (as SciPy's ``xp = array_namespace(x, w)``), and then
validates and computes through ``be``:

- NumPy arrays (and Python sequences) get :data:`NUMPY`, whose operations are
  NumPy's own: every tuned algorithm, nothing in between.
- Arrays of any other library that follows the Python array API standard
  (PyTorch, JAX, CuPy, ``array_api_strict``) get an :class:`ArrayAPIBackend`
  over its ``array_api_compat`` namespace, which :class:`~ndconv.algorithms.CorrSpec`
  carries to the algorithms: the portable direct and GEMM methods, and the
  library's native convolution where it has one.
- A library may plug in a backend of its own: :data:`PLUGINS` names the
  module that defines it (``ndconv.dask``: lazy and chunked), loaded the first
  time such an array is seen, so the core never imports it.

``array-api-compat`` is an optional extra (``pip install 'ndconv[array]'``),
imported only when a non-NumPy array arrives.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np

from . import _args, _dtypes
from .algorithms import run as _run
from .algorithms.record import add_bias as _add_bias

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._typing import AnyArray, DTypeLike, Scalar
    from .algorithms.spec import CorrSpec

    #: An axis argument: one axis, several, or all (None).
    Axes = int | tuple[int, ...] | None

__all__ = ["ArrayAPIBackend", "Backend", "NUMPY", "PLUGINS", "library_of", "resolve"]

#: Library (top-level module of the array's type) -> module defining ``BACKEND``.
PLUGINS: dict[str, str] = {"dask": "ndconv.dask"}

#: Top-level module of an array type -> the library's usual name.
_ALIASES: dict[str, str] = {"jaxlib": "jax"}

#: Dtype names that have a NumPy counterpart, for :meth:`ArrayAPIBackend.numpy_dtype`.
_DTYPE_NAMES = (
    "float32", "float64", "float16", "int8", "int16", "int32", "int64", "uint8",
    "uint16", "uint32", "uint64", "complex64", "complex128", "bool",
)


#: Libraries whose arrays are recognised without an ``__array_namespace__``.
_KNOWN = ("torch", "cupy", "dask", "jax", "jaxlib", "array_api_strict")


def library_of(a: object) -> str | None:
    """The library of an array: ``'numpy'``, another library's name, or None.

    None for everything that is not an array of a library (Python scalars and
    sequences, objects NumPy converts with ``np.asarray``): the NumPy path
    takes it and its validation names what is wrong.
    """
    if isinstance(a, np.ndarray):
        return "numpy"
    root = type(a).__module__.partition(".")[0]
    if root in _KNOWN or (root not in ("builtins", "numpy")
                          and hasattr(a, "__array_namespace__")):
        return _ALIASES.get(root, root)
    return None


class Backend:
    """How ndconv validates and computes on one library's arrays (here: NumPy).

    Subclasses override what differs; the functional code calls only these
    methods and attributes, never a library by name.

    Attributes
    ----------
    name : str
        The library, as error messages name it.
    xp : module
        The namespace of the call's arrays, for the portable code (padding,
        pooling) outside the algorithms.
    spec_xp : module
        The namespace :class:`~ndconv.algorithms.CorrSpec` carries to the
        algorithms: what they receive (dask: NumPy blocks).
    numpy : bool
        True for NumPy arrays, where the tuned (in-place, BLAS, SciPy,
        numba, ``as_strided``) code runs.
    """

    name: str = "numpy"
    xp: Any = np
    spec_xp: Any = np
    numpy: bool = True

    def require(self, what: str) -> None:
        """Raise ``TypeError`` if the public function ``what`` cannot take these arrays."""

    def array(
        self,
        a: Any,
        name: str,
        *,
        floating: bool = True,
        dtypes: Sequence[np.dtype[Any]] | None = None,
        kernel: bool = False,
    ) -> AnyArray:
        """Validate an array argument: dtype rules and messages as :func:`_args.check_array`.

        ``kernel=True`` marks the small operands (weight, kernel, bias), which
        a lazy backend wants in memory.
        """
        return _args.check_array(a, name, floating=floating, dtypes=dtypes)

    def numpy_dtype(self, dtype: Any) -> np.dtype[Any]:
        """The NumPy dtype of an array's dtype (what the cost model reads)."""
        return np.dtype(dtype)

    def dtype(self, np_dtype: DTypeLike) -> Any:
        """The library's dtype for a NumPy dtype."""
        return np.dtype(np_dtype)

    # -- the few operations the functional code needs, NumPy's own here

    def flip(self, a: AnyArray, axes: Axes = None) -> AnyArray:
        return np.flip(a, axis=axes)

    def reshape(self, a: AnyArray, shape: Sequence[int]) -> AnyArray:
        return np.reshape(a, shape)

    def permute(self, a: AnyArray, axes: Sequence[int]) -> AnyArray:
        return np.transpose(a, axes)

    def contiguous(self, a: AnyArray) -> AnyArray:
        return np.ascontiguousarray(a)

    def sum(self, a: AnyArray, axes: Sequence[int]) -> AnyArray:
        return np.sum(a, axis=axes)

    def astype(self, a: AnyArray, np_dtype: DTypeLike) -> AnyArray:
        return a.astype(np_dtype, copy=False)

    def conj(self, a: AnyArray) -> AnyArray:
        return _dtypes.conj(a)

    def sum_to(self, a: AnyArray, axes: tuple[int, ...], np_dtype: DTypeLike) -> AnyArray:
        """``a.sum(axes)`` accumulated in the compute dtype, in ``np_dtype``."""
        return _dtypes.sum_to(a, axes, np_dtype)

    def to_compute(
        self, spec: CorrSpec, *arrays: AnyArray
    ) -> tuple[CorrSpec, tuple[AnyArray, ...], np.dtype[Any]]:
        """``(spec, arrays, dtype)`` in the compute dtype (float32 for halves)."""
        return _dtypes.to_compute(spec, *arrays)

    def batched(self, a: AnyArray) -> AnyArray:
        """``a`` with a batch dim of one in front."""
        return a[None]

    # -- computing

    def correlate(
        self, x: AnyArray, w: AnyArray, spec: CorrSpec, method: str,
        bias: AnyArray | None = None,
    ) -> AnyArray:
        """``spec``'s correlation of ``x`` with ``w`` by ``method``, plus ``bias`` per channel
        (NumPy: by the method itself where it can, e.g. as each block is written)."""
        if spec.numpy:
            return _run(x, w, spec, method, bias)
        return self.add_bias(_run(x, w, spec, method), bias)

    def add_bias(self, out: AnyArray, bias: AnyArray | None) -> AnyArray:
        """``out`` (B, C, *S) plus ``bias`` (C,) per channel (None: nothing)."""
        return _add_bias(out, bias)

    def add_scalar(self, out: AnyArray, bias: Scalar, np_dtype: DTypeLike) -> AnyArray:
        """``out + bias`` for a scalar, with NumPy's dtype rules for ``np_dtype``."""
        return _dtypes.add_scalar_bias(out, bias, np_dtype)


#: The backend of NumPy arrays (and of Python scalars and sequences).
NUMPY = Backend()


class ArrayAPIBackend(Backend):
    """Arrays of a library that follows the array API standard, through ``xp``.

    Parameters
    ----------
    xp : module
        The library's array-API namespace (``array_api_compat.array_namespace``).
    name : str
        The library's name, for messages.
    device : object
        Where the call's arrays live; arrays made from Python sequences go there.
    """

    numpy = False

    def __init__(self, xp: Any, name: str, device: Any = None) -> None:
        self.xp = self.spec_xp = xp
        self.name = name
        self.device = device

    def array(
        self,
        a: Any,
        name: str,
        *,
        floating: bool = True,
        dtypes: Sequence[np.dtype[Any]] | None = None,
        kernel: bool = False,
    ) -> AnyArray:
        if library_of(a) is None:
            # A Python sequence: NumPy's rules (a list of ints is float for
            # conv), then onto this library's device.
            arr = _args.check_array(a, name, floating=floating, dtypes=dtypes)
            return self.xp.asarray(arr, device=self.device)
        # The NumPy path's dtype rules and messages, read from an empty array
        # of the counterpart dtype: nothing of `a` is copied or computed.
        _args.check_array(np.empty(0, self.numpy_dtype(a.dtype, name)), name,
                          floating=floating, dtypes=dtypes)
        return a

    def numpy_dtype(self, dtype: Any, name: str = "x") -> np.dtype[Any]:
        if isinstance(dtype, np.dtype):  # JAX and dask use NumPy's dtypes
            return dtype
        for n in _DTYPE_NAMES:
            if dtype == getattr(self.xp, n, None):
                return np.dtype(n)
        if dtype == getattr(self.xp, "bfloat16", None) and (bf := _dtypes.bfloat16()) is not None:
            return bf
        raise TypeError(f"`{name}` has dtype {dtype}, which ndconv does not compute in")

    def dtype(self, np_dtype: DTypeLike) -> Any:
        np_dtype = np.dtype(np_dtype)
        name = "bfloat16" if np_dtype == _dtypes.bfloat16() else np_dtype.name
        return getattr(self.xp, name)

    def flip(self, a: AnyArray, axes: Axes = None) -> AnyArray:
        return self.xp.flip(a, axis=axes)

    def reshape(self, a: AnyArray, shape: Sequence[int]) -> AnyArray:
        return self.xp.reshape(a, tuple(shape))

    def permute(self, a: AnyArray, axes: Sequence[int]) -> AnyArray:
        return self.xp.permute_dims(a, tuple(axes))

    def contiguous(self, a: AnyArray) -> AnyArray:
        return a  # layout is the library's business

    def sum(self, a: AnyArray, axes: Sequence[int]) -> AnyArray:
        return self.xp.sum(a, axis=tuple(axes))

    def astype(self, a: AnyArray, np_dtype: DTypeLike) -> AnyArray:
        target = self.dtype(np_dtype)
        return a if a.dtype == target else self.xp.astype(a, target)

    def conj(self, a: AnyArray) -> AnyArray:
        return self.xp.conj(a) if self.numpy_dtype(a.dtype).kind == "c" else a

    def sum_to(self, a: AnyArray, axes: tuple[int, ...], dtype: DTypeLike) -> AnyArray:
        np_dtype = self.numpy_dtype(dtype)  # NumPy's or the library's dtype
        cdt = self.dtype(_dtypes.compute_dtype(np_dtype))
        return self.astype(self.xp.sum(a, axis=tuple(axes), dtype=cdt), np_dtype)

    def to_compute(
        self, spec: CorrSpec, *arrays: AnyArray
    ) -> tuple[CorrSpec, tuple[AnyArray, ...], np.dtype[Any]]:
        dtype = spec.dtype
        cdt = _dtypes.compute_dtype(dtype)
        if cdt == dtype:
            return spec, arrays, dtype
        cast = tuple(None if a is None else self.astype(a, cdt) for a in arrays)
        return dataclasses.replace(spec, dtype=cdt), cast, dtype

    def batched(self, a: AnyArray) -> AnyArray:
        return self.xp.expand_dims(a, axis=0)

    def add_bias(self, out: AnyArray, bias: AnyArray | None) -> AnyArray:
        if bias is None:
            return out
        return out + self.xp.reshape(bias, (-1,) + (1,) * (out.ndim - 2))

    def add_scalar(self, out: AnyArray, bias: Scalar, np_dtype: DTypeLike) -> AnyArray:
        # NumPy's rule for the result dtype (an int correlation plus 0.0 is
        # float64), so that every library returns the NumPy path's values.
        target = np.result_type(np.empty(0, np_dtype), bias)
        out = self.astype(out, target)
        return self.astype(out + bias, target) if bias != 0 else out


def _namespace(name: str, a: object) -> tuple[Any, Any]:
    try:
        import array_api_compat
    except ImportError:
        raise ImportError(
            f"ndconv computes on {name} arrays through array-api-compat: "
            "pip install 'ndconv[array]'"
        ) from None
    try:
        xp = array_api_compat.array_namespace(a)
    except TypeError:
        raise TypeError(
            f"ndconv computes on NumPy arrays and on arrays of libraries that follow "
            f"the Python array API standard; got {type(a).__module__}.{type(a).__name__}"
        ) from None
    return xp, array_api_compat.device(a)


def resolve(**arrays: object) -> Backend:
    """The backend for one call's array arguments, given by name.

    NumPy arrays, Python scalars and sequences and ``None`` resolve to
    :data:`NUMPY` without importing anything. Arrays of two libraries in one
    call raise ``TypeError`` naming both (a backend of :data:`PLUGINS` may
    accept NumPy operands: dask's kernel and bias live in memory).
    """
    first: tuple[str, str, Any] | None = None  # (argument, library, array): first non-NumPy
    numpy_arg: str | None = None  # the first NumPy argument
    for arg, a in arrays.items():
        lib = library_of(a)
        if lib is None:
            continue
        if lib == "numpy":
            numpy_arg = numpy_arg or arg
        elif first is None:
            first = (arg, lib, a)
        elif lib != first[1]:
            _mixed(first[0], first[1], arg, lib)
    if first is None:
        return NUMPY
    arg, lib, a = first
    if lib in PLUGINS:
        backend = importlib.import_module(PLUGINS[lib]).BACKEND
    else:
        xp, device = _namespace(lib, a)
        backend = ArrayAPIBackend(xp, lib, device)
    if numpy_arg is not None and not getattr(backend, "accepts_numpy", False):
        _mixed(arg, lib, numpy_arg, "numpy")
    return backend


def _mixed(a_arg: str, a_lib: str, b_arg: str, b_lib: str) -> NoReturn:
    raise TypeError(
        f"`{a_arg}` is a {a_lib} array and `{b_arg}` a {b_lib} array: one call takes "
        f"the arrays of one library; convert one of them"
    )

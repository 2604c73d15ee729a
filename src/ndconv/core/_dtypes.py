"""The dtypes ndconv accepts, how each is computed, and the result's dtype.

One home for these facts (the README's dtype table says the same):

========================  ==========================  =============================
input dtype               computed in                 result
========================  ==========================  =============================
float32, float64          that dtype                  that dtype
float16, bfloat16         float32 (NumPy has no       the input's dtype (rounded
                          half-precision BLAS)        once, at the end)
complex64, complex128     that dtype (complex FFT)    that dtype
int8 ... int64, uint*     that integer dtype, exact   that dtype; wraps around
                          (correlate, convolve, conv) modulo 2**bits on overflow,
                                                      as NumPy integer arithmetic
========================  ==========================  =============================

``bfloat16`` is ``ml_dtypes.bfloat16`` (``pip install 'ndconv[half]'``); it is
accepted wherever float16 is when ml_dtypes is installed, and never imported
otherwise. Integer arithmetic is exact modulo ``2**bits`` whatever the order
of the sums, so computing in the integer dtype gives exactly the true result
whenever it fits in the dtype, and NumPy's wrapped value otherwise (which is
also what ``scipy.signal.correlate`` returns).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

if TYPE_CHECKING:
    from ._typing import DTypeLike, NDArray
    from .algorithms.spec import CorrSpec

    _Spec = TypeVar("_Spec", bound=CorrSpec)

FLOAT = (np.dtype(np.float32), np.dtype(np.float64))
COMPLEX = (np.dtype(np.complex64), np.dtype(np.complex128))
INTEGER = tuple(np.dtype(t) for t in (np.int8, np.int16, np.int32, np.int64,
                                      np.uint8, np.uint16, np.uint32, np.uint64))


@functools.lru_cache(maxsize=1)
def bfloat16() -> np.dtype[Any] | None:
    """``ml_dtypes.bfloat16`` as a NumPy dtype, or None without ml_dtypes."""
    if importlib.util.find_spec("ml_dtypes") is None:
        return None
    import ml_dtypes

    return np.dtype(ml_dtypes.bfloat16)


def half() -> tuple[np.dtype[Any], ...]:
    """The half-precision dtypes: float16, and bfloat16 when ml_dtypes is installed."""
    bf = bfloat16()
    return (np.dtype(np.float16),) + ((bf,) if bf is not None else ())


def real_floats() -> tuple[np.dtype[Any], ...]:
    """float16, bfloat16, float32, float64: what layers and pooling accept."""
    return half() + FLOAT


def conv_dtypes() -> tuple[np.dtype[Any], ...]:
    """What :func:`ndconv.conv` and its family accept."""
    return real_floats() + COMPLEX + INTEGER


def numeric() -> tuple[np.dtype[Any], ...]:
    """What :func:`ndconv.correlate` / :func:`ndconv.convolve` accept."""
    return conv_dtypes()


def is_half(dtype: DTypeLike) -> bool:
    return np.dtype(dtype) in half()


def compute_dtype(dtype: DTypeLike) -> np.dtype[Any]:
    """The dtype the arithmetic runs in: float32 for half precision, else ``dtype``."""
    dtype = np.dtype(dtype)
    return np.dtype(np.float32) if is_half(dtype) else dtype


def is_float(dtype: DTypeLike) -> bool:
    """Real floating point of any precision (bfloat16's NumPy kind is 'V')."""
    return np.dtype(dtype) in real_floats()


def names(dtypes: Sequence[np.dtype[Any]]) -> str:
    """``'float32 or float64'``-style list for error messages (integers grouped)."""
    parts = [str(d) for d in dtypes if d not in INTEGER]
    ints = [str(d) for d in dtypes if d in INTEGER]
    parts += ["an integer dtype"] if len(ints) == len(INTEGER) else ints
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]


def check_scalar_bias(bias: object) -> Any:
    """The scalar ``bias`` of ``correlate``: an int, float or complex (or a 0-d array)."""
    if isinstance(bias, np.ndarray) and bias.ndim == 0:
        return bias
    if isinstance(bias, numbers.Number) and not isinstance(bias, (bool, np.bool_)):
        return bias
    raise TypeError(f"`bias` (={bias!r}) must be a scalar (int, float or complex)")


def add_scalar_bias(out: NDArray[Any], bias: Any, dtype: DTypeLike) -> NDArray[Any]:
    """``out + bias`` with the dtype NumPy gives an array of ``dtype`` plus ``bias``.

    ``out`` holds the correlation in the compute dtype (float32 for half
    inputs, rounded to ``dtype`` only after the bias); the sum is made in
    place where the dtype stays. A Python int added to an integer result
    keeps its dtype (NEP 50); one that does not fit is refused by name rather
    than by NumPy's OverflowError.
    """
    final = np.result_type(np.empty(0, dtype), bias)
    try:
        if np.result_type(out, bias) == out.dtype:
            # Same dtype either way: add in place rather than copy the
            # (possibly image-sized) result; skip the pass for the default 0.
            if bias != 0:
                out += bias
        else:
            out = out + bias
        return out.astype(final, copy=False)
    except OverflowError:
        raise ValueError(
            f"`bias` (={bias!r}) does not fit in the result's dtype {out.dtype}; "
            "pass it as a wider array scalar, e.g. np.int64(bias), or cast the inputs"
        ) from None


def to_compute(
    spec: _Spec, *arrays: NDArray[Any] | None
) -> tuple[_Spec, tuple[NDArray[Any] | None, ...], np.dtype[Any]]:
    """``spec`` and ``arrays`` in the compute dtype, and the dtype to round back to.

    A public function calls this after validating, so that half-precision
    inputs are cast to float32 once, the bias is added before rounding, and
    the result is rounded once: ``out.astype(dtype)``. Other dtypes pass
    through unchanged (no copy). ``None`` entries stay None.
    """
    dtype = spec.dtype
    cdt = compute_dtype(dtype)
    if cdt == dtype:
        return spec, arrays, dtype
    cast = tuple(None if a is None else a.astype(cdt) for a in arrays)
    return dataclasses.replace(spec, dtype=cdt), cast, dtype


def conj(a: NDArray[Any]) -> NDArray[Any]:
    """``np.conj(a)``, without the copy that NumPy makes of a real array."""
    return np.conj(a) if a.dtype.kind == "c" else a


def sum_to(a: NDArray[Any], axis: int | tuple[int, ...] | None, dtype: DTypeLike) -> NDArray[Any]:
    """``a.sum(axis)`` accumulated in the compute dtype, returned in ``dtype``.

    NumPy sums float16 in float16, losing digits over long sums (a bias
    gradient adds every output); sum in float32 and round once.
    """
    return a.sum(axis=axis, dtype=compute_dtype(dtype)).astype(dtype, copy=False)

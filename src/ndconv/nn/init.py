"""PyTorch's default initialisation, drawn from a NumPy Generator."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core import _memory

if TYPE_CHECKING:
    from ..core._typing import DTypeLike, NDArray, Seed, Shape

#: Values drawn per chunk when initialising a parameter: the float64 draws
#: never exceed this many bytes, whatever the parameter's size.
_CHUNK = 2**16


def _uniform(shape: Shape, bound: float, rng: np.random.Generator,
             dtype: DTypeLike) -> NDArray[Any]:
    """``rng.uniform(-bound, bound, shape).astype(dtype)``, value for value, drawn
    in chunks into the result: no float64 temporary as large as a float32
    parameter (the Generator's stream is the same in pieces as at once)."""
    out = np.empty(shape, dtype=dtype)
    flat = out.reshape(-1)
    for i in range(0, flat.size, _CHUNK):
        j = min(flat.size, i + _CHUNK)
        flat[i:j] = rng.uniform(-bound, bound, size=j - i)
    return out


def check_parameters(what: str, shapes: Iterable[Shape], dtype: DTypeLike) -> None:
    """Refuse, before allocating, parameters of ``shapes`` that cannot fit.

    Raises :class:`ndconv.plan.MemoryLimitError` naming ``what`` and the bytes.
    """
    count = sum(math.prod(s) for s in shapes)
    _memory.check(count * np.dtype(dtype).itemsize,
                  f"{what} with {count:,} {np.dtype(dtype).name} parameters")


def fan_in(shape: Shape) -> int:
    """``shape[1] * prod(shape[2:])``, as ``torch.nn.init._calculate_fan_in_and_fan_out``."""
    return shape[1] * math.prod(shape[2:]) if len(shape) > 1 else shape[0]


def kaiming_uniform(shape: Shape, rng: np.random.Generator, dtype: DTypeLike,
                    a: float = math.sqrt(5)) -> NDArray[Any]:
    """``U(-bound, bound)`` with ``bound = gain * sqrt(3 / fan_in)``, ``gain = sqrt(2 / (1 + a^2))``.

    With PyTorch's default ``a = sqrt(5)`` the bound is ``1 / sqrt(fan_in)``.
    """
    if math.prod(shape) == 0:  # in_channels=0 (PyTorch allows it): nothing to draw
        return np.zeros(shape, dtype)
    gain = math.sqrt(2.0 / (1 + a * a))
    bound = gain * math.sqrt(3.0 / fan_in(shape))
    return _uniform(shape, bound, rng, dtype)


def bias_uniform(n: int, fan: int, rng: np.random.Generator,
                 dtype: DTypeLike) -> NDArray[Any]:
    """``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, PyTorch's default bias."""
    bound = 1.0 / math.sqrt(fan) if fan > 0 else 0.0
    return _uniform((n,), bound, rng, dtype)


def as_rng(rng: Seed) -> np.random.Generator:
    """A ``numpy.random.Generator`` from None, a seed, or a Generator."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (int, np.integer)):
        return np.random.default_rng(rng)
    raise TypeError(f"`rng` must be None, an int seed or a numpy Generator, got {type(rng).__name__}")


def as_dtype(dtype: DTypeLike, *, half: bool = False) -> np.dtype[Any]:
    """The layer's parameter dtype: float32 or float64, or (``half``) also
    float16 and bfloat16, which the convolution layers compute in float32."""
    from ..core._dtypes import FLOAT, names, real_floats

    allowed = real_floats() if half else FLOAT
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt not in allowed:
        raise TypeError(f"`dtype` (={dtype!r}) must be {names(allowed)}")
    return dt

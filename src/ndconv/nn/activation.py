"""Activations, each with its derivative next to it, as ``torch.nn``'s.

Element-wise: ReLU, LeakyReLU, PReLU (learnable slope), ELU, GELU, SiLU,
Hardswish, Hardsigmoid, Sigmoid, Tanh. Along one dim: Softmax, LogSoftmax.
At a kink the derivative is PyTorch's choice (ReLU 0 at 0, LeakyReLU the
slope at 0, Hardswish 0 at -3 and 1 at 3, Hardsigmoid 0 at -3 and 3).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core import _args
from . import _jit
from .init import as_dtype
from .module import Module, Parameter, PerThread

if TYPE_CHECKING:
    from ..core._typing import ArrayLike, DTypeLike, NDArray, Shape

__all__ = ["ReLU", "Sigmoid", "Tanh", "LeakyReLU", "PReLU", "ELU", "GELU", "SiLU",
           "Hardswish", "Hardsigmoid", "Softmax", "LogSoftmax"]


class _Activation(Module):
    """Keeps what the derivative needs and checks the gradient's shape."""

    def _saved(self, grad_out: ArrayLike) -> tuple[NDArray[Any], Any]:
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        g = np.asarray(grad_out)
        if g.shape != self._cache.shape:
            raise ValueError(
                f"{type(self).__name__}.backward expects grad_out of shape "
                f"{self._cache.shape}, got {g.shape}"
            )
        return g, self._cache

    def __init__(self) -> None:
        super().__init__()
        self._cache = None


class ReLU(_Activation):
    """``max(x, 0)``; the gradient passes where ``x > 0`` (zero at 0, as PyTorch)."""

    def forward(self, x: ArrayLike) -> NDArray[Any]:
        x = np.asarray(x)
        # The input, not a mask: forward (inference) does no more than the maximum.
        self._cache = x
        y = _jit.relu_forward(x)  # one compiled pass, where numba is installed
        if y is not None:
            return y
        return np.maximum(x, x.dtype.type(0))  # keeps NaN, as PyTorch

    def backward(self, grad_out: ArrayLike) -> NDArray[Any]:
        g, x = self._saved(grad_out)
        out = _jit.relu_backward(x, g)  # one compiled pass, where numba is installed
        if out is not None:
            return out
        # Zero where x <= 0, not where x > 0 fails: PyTorch's threshold_backward
        # passes the gradient at NaN.
        return np.where(x <= 0, g.dtype.type(0), g)


def _sigmoid(x: NDArray[Any]) -> NDArray[Any]:
    # exp of a non-positive number never overflows.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


class Sigmoid(_Activation):
    """``1 / (1 + exp(-x))``, computed without overflow; derivative ``y (1 - y)``."""

    def forward(self, x: ArrayLike) -> NDArray[Any]:
        y = _sigmoid(np.asarray(x))
        self._cache = y
        return y

    def backward(self, grad_out: ArrayLike) -> NDArray[Any]:
        g, y = self._saved(grad_out)
        return g * y * (1 - y)


class Tanh(_Activation):
    """``tanh(x)``; derivative ``1 - y^2``."""

    def forward(self, x: ArrayLike) -> NDArray[Any]:
        y = np.tanh(np.asarray(x))
        self._cache = y
        return y

    def backward(self, grad_out: ArrayLike) -> NDArray[Any]:
        g, y = self._saved(grad_out)
        return g * (1 - y * y)


def _number(value: float, name: str) -> float:
    if not _args.is_number(value):
        raise TypeError(f"`{name}` must be a real number, got {value!r}")
    return float(value)


class _Pointwise(_Activation):
    """An element-wise function of a float input: ``forward`` keeps ``x`` for ``backward``.

    Subclasses give ``_value(x, t)`` (``t`` the dtype's scalar type, so that
    constants keep float32 float32) and ``backward``.
    """

    inplace: bool

    if TYPE_CHECKING:
        def _value(self, x: NDArray[Any], t: Callable[[float], Any]) -> NDArray[Any]: ...

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        # Accepted for PyTorch compatibility; the result is always a new array.
        self.inplace = bool(inplace)

    def forward(self, x: ArrayLike) -> NDArray[Any]:
        x = _args.check_array(x, "x")
        self._cache = x
        return self._value(x, x.dtype.type)


class LeakyReLU(_Activation):
    """``x`` where ``x > 0``, else ``negative_slope * x``, as ``torch.nn.LeakyReLU``.

    Parameters
    ----------
    negative_slope : float
    inplace : bool
        Accepted for PyTorch compatibility; the result is always a new array.
    """

    negative_slope: float
    inplace: bool

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False) -> None:
        super().__init__()
        self.negative_slope = _number(negative_slope, "negative_slope")
        self.inplace = bool(inplace)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"

    def forward(self, x: ArrayLike) -> NDArray[Any]:
        x = _args.check_array(x, "x")
        self._cache = x > 0
        return np.where(self._cache, x, x * x.dtype.type(self.negative_slope))

    def backward(self, grad_out: ArrayLike) -> NDArray[Any]:
        g, pos = self._saved(grad_out)
        return np.where(pos, g, g * g.dtype.type(self.negative_slope))


class PReLU(_Activation):
    """LeakyReLU with a learnable slope per channel, as ``torch.nn.PReLU``.

    Parameters
    ----------
    num_parameters : int
        1 (one slope shared by all channels) or ``C``, the size of dim 1 of
        the input.
    init : float
        Initial slope.
    dtype : float32 or float64

    Notes
    -----
    ``weight`` has shape ``(num_parameters,)``; its gradient is the sum of
    ``grad * x`` where ``x <= 0`` over every other dim.
    """

    _w = PerThread()  # forward's weight view, per thread (see Module)

    # PyTorch's name: on this layer it hides Module.num_parameters(), as in torch.
    num_parameters: int  # type: ignore[assignment]
    init: float
    weight: Parameter

    def __init__(self, num_parameters: int = 1, init: float = 0.25,
                 dtype: DTypeLike = np.float32) -> None:
        super().__init__()
        self.num_parameters = _args.positive_int(num_parameters, "num_parameters")
        self.init = _number(init, "init")
        self.weight = Parameter(np.full(self.num_parameters, self.init,
                                        dtype=as_dtype(dtype)))

    def extra_repr(self) -> str:
        return f"num_parameters={self.num_parameters}"

    def _view(self, x: NDArray[Any]) -> Shape:
        if self.num_parameters == 1:
            return ()
        # As PyTorch: the channels are dim 1; an input with fewer dims has one channel.
        if x.ndim < 2 or x.shape[1] != self.num_parameters:
            raise ValueError(
                f"PReLU(num_parameters={self.num_parameters}) expects {self.num_parameters} "
                f"channels in dim 1 of the input; got shape {x.shape}"
            )
        return (1, -1) + (1,) * (x.ndim - 2)

    def forward(self, x: ArrayLike) -> NDArray[Any]:
        x = _args.check_array(x, "x")
        if x.dtype != self.weight.dtype:
            raise TypeError(
                f"PReLU input (dtype {x.dtype}) must have the weight's dtype "
                f"({self.weight.dtype}); cast it with .astype()"
            )
        view = self._view(x)
        w = self.weight.data.reshape(view) if view else self.weight.data[0]
        self._cache = x
        self._w = (w, view)
        return np.where(x > 0, x, w * x)

    def backward(self, grad_out: ArrayLike) -> NDArray[Any]:
        g, x = self._saved(grad_out)
        w, view = self._w
        neg = x <= 0
        gw = np.where(neg, g * x, 0)
        if view:
            ch = view.index(-1)
            gw = gw.sum(axis=tuple(i for i in range(x.ndim) if i != ch))
        else:
            gw = gw.sum().reshape(1)
        self.weight.accumulate(gw)
        return np.where(neg, w * g, g)


class ELU(_Pointwise):
    """``x`` where ``x > 0``, else ``alpha * (exp(x) - 1)``, as ``torch.nn.ELU``."""

    alpha: float

    def __init__(self, alpha: float = 1.0, inplace: bool = False) -> None:
        super().__init__(inplace)
        self.alpha = _number(alpha, "alpha")

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"

    def _value(self, x: NDArray[Any], t: Callable[[float], Any]) -> NDArray[Any]:
        return np.where(x > 0, x, t(self.alpha) * np.expm1(np.minimum(x, 0)))

    def backward(self, grad_out: ArrayLike) -> NDArray[Any]:
        g, x = self._saved(grad_out)
        # PyTorch's elu_backward takes the exp branch at x = 0 (slope alpha).
        return np.where(x > 0, g, g * g.dtype.type(self.alpha) * np.exp(np.minimum(x, 0)))


def _erf(x: NDArray[Any]) -> NDArray[Any]:
    """``erf`` element-wise: SciPy's when installed, otherwise ``math.erf`` per element."""
    try:
        from scipy.special import erf
    except ImportError:  # the core is NumPy alone
        return np.frompyfunc(math.erf, 1, 1)(x).astype(x.dtype)
    return erf(x)


class GELU(_Pointwise):
    """``x * Phi(x)`` (``Phi`` the normal CDF), as ``torch.nn.GELU``.

    Parameters
    ----------
    approximate : {'none', 'tanh'}
        ``'tanh'``: ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``.
    """

    approximate: str

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"`approximate` (={approximate!r}) must be 'none' or 'tanh'")
        self.approximate = approximate

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"

    def _value(self, x: NDArray[Any], t: Callable[[float], Any]) -> NDArray[Any]:
        if self.approximate == "tanh":
            return t(0.5) * x * (1 + np.tanh(t(math.sqrt(2 / math.pi)) * (x + t(0.044715) * x**3)))
        return t(0.5) * x * (1 + _erf(x * t(math.sqrt(0.5))))

    def backward(self, grad_out: ArrayLike) -> NDArray[Any]:
        g, x = self._saved(grad_out)
        t = x.dtype.type
        if self.approximate == "tanh":
            k = t(math.sqrt(2 / math.pi))
            th = np.tanh(k * (x + t(0.044715) * x**3))
            dinner = k * (1 + t(3 * 0.044715) * x * x)
            return g * (t(0.5) * (1 + th) + t(0.5) * x * (1 - th * th) * dinner)
        cdf = t(0.5) * (1 + _erf(x * t(math.sqrt(0.5))))
        pdf = np.exp(t(-0.5) * x * x) * t(1 / math.sqrt(2 * math.pi))
        return g * (cdf + x * pdf)


class SiLU(_Pointwise):
    """``x * sigmoid(x)`` (swish), as ``torch.nn.SiLU``."""

    def _value(self, x: NDArray[Any], t: Callable[[float], Any]) -> NDArray[Any]:
        return x * _sigmoid(x)

    def backward(self, grad_out: ArrayLike) -> NDArray[Any]:
        g, x = self._saved(grad_out)
        s = _sigmoid(x)
        return g * s * (1 + x * (1 - s))


class Hardswish(_Pointwise):
    """``x * clip(x + 3, 0, 6) / 6``, as ``torch.nn.Hardswish``."""

    def _value(self, x: NDArray[Any], t: Callable[[float], Any]) -> NDArray[Any]:
        return x * np.clip(x + t(3), t(0), t(6)) / t(6)

    def backward(self, grad_out: ArrayLike) -> NDArray[Any]:
        g, x = self._saved(grad_out)
        t = x.dtype.type
        mid = g * (x / t(3) + t(0.5))
        # PyTorch's choice at the kinks: 0 at -3, 1 at 3.
        return np.where(x <= -3, t(0), np.where(x < 3, mid, g))


class Hardsigmoid(_Pointwise):
    """``clip(x + 3, 0, 6) / 6``, as ``torch.nn.Hardsigmoid``."""

    def _value(self, x: NDArray[Any], t: Callable[[float], Any]) -> NDArray[Any]:
        return np.clip(x + t(3), t(0), t(6)) / t(6)

    def backward(self, grad_out: ArrayLike) -> NDArray[Any]:
        g, x = self._saved(grad_out)
        t = x.dtype.type
        # PyTorch multiplies by the float32 constant 1/6 in every dtype.
        return np.where((x > -3) & (x < 3), g * t(np.float32(1 / 6)), t(0))


def _softmax_dim(dim: int | None, ndim: int, name: str) -> int:
    """The dim as PyTorch resolves it; ``None`` is its legacy implicit choice."""
    if dim is None:
        # torch.nn.functional._get_softmax_dim (with its deprecation warning).
        return 0 if ndim in (0, 1, 3) else 1
    d = _args._as_int(dim, "dim")
    nd = max(ndim, 1)
    if not -nd <= d < nd:
        raise ValueError(f"{name}(dim={dim}) is out of range for an input with {ndim} dims")
    return d % nd


class _AlongDim(_Activation):
    """A normalisation along ``dim``: ``forward`` keeps its output for ``backward``."""

    _d = PerThread()  # forward's axis, per thread (see Module)

    dim: int | None

    if TYPE_CHECKING:
        def _value(self, shifted: NDArray[Any], d: int) -> NDArray[Any]: ...

    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        self.dim = None if dim is None else _args._as_int(dim, "dim")

    def extra_repr(self) -> str:
        return f"dim={self.dim}"

    def forward(self, x: ArrayLike) -> NDArray[Any]:
        x = _args.check_array(x, "x")
        d = _softmax_dim(self.dim, x.ndim, type(self).__name__)
        # Shifted by the max, so exp never overflows (an empty input has no max,
        # and an empty result, as PyTorch's).
        y = self._value(x - x.max(axis=d, keepdims=True), d) if x.size else x.copy()
        self._cache, self._d = y, d
        return y


class Softmax(_AlongDim):
    """``exp(x) / sum(exp(x))`` along ``dim``, as ``torch.nn.Softmax``; derivative ``y * (g - sum(g * y))``."""

    def _value(self, shifted: NDArray[Any], d: int) -> NDArray[Any]:
        e = np.exp(shifted)
        return e / e.sum(axis=d, keepdims=True)

    def backward(self, grad_out: ArrayLike) -> NDArray[Any]:
        g, y = self._saved(grad_out)
        return y * (g - (g * y).sum(axis=self._d, keepdims=True))


class LogSoftmax(_AlongDim):
    """``x - logsumexp(x)`` along ``dim``, as ``torch.nn.LogSoftmax``; derivative ``g - softmax * sum(g)``."""

    def _value(self, shifted: NDArray[Any], d: int) -> NDArray[Any]:
        return shifted - np.log(np.exp(shifted).sum(axis=d, keepdims=True))

    def backward(self, grad_out: ArrayLike) -> NDArray[Any]:
        g, y = self._saved(grad_out)
        return g - np.exp(y) * g.sum(axis=self._d, keepdims=True)

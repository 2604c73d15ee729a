"""Element-wise operators: activations and broadcasting arithmetic."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .base import Op, register, unbroadcast

if TYPE_CHECKING:
    from collections.abc import Callable

    from ...core._typing import NDArray


class _Unary(Op):
    """``y = f(x)``; subclasses define ``f(x)`` and ``df(x, y)`` (dy/dx)."""

    f: Callable[[NDArray[Any]], NDArray[Any]]  # (declared for the type checker)
    df: Callable[[NDArray[Any], NDArray[Any]], Any]

    def forward(self, x: NDArray[Any]) -> Any:
        y = self.f(x)
        self._x, self._y = x, y
        return y

    def backward(self, gy: NDArray[Any]) -> tuple[NDArray[Any] | None, ...]:
        return (gy * self.df(self._x, self._y).astype(gy.dtype, copy=False),)


def _c(x: NDArray[Any], v: Any) -> Any:
    """A scalar attribute in the dtype of ``x`` (float32 stays float32)."""
    return x.dtype.type(v)


@register("Relu")
class Relu(_Unary):
    def f(self, x: NDArray[Any]) -> NDArray[Any]:
        return np.maximum(x, _c(x, 0))

    def df(self, x: NDArray[Any], y: NDArray[Any]) -> Any:
        return x > 0


@register("LeakyRelu")
class LeakyRelu(_Unary):
    ATTRS = {"alpha": 0.01}

    def f(self, x: NDArray[Any]) -> NDArray[Any]:
        return np.where(x >= 0, x, x * _c(x, self.attrs["alpha"]))

    def df(self, x: NDArray[Any], y: NDArray[Any]) -> Any:
        return np.where(x > 0, _c(x, 1), _c(x, self.attrs["alpha"]))


@register("Elu")
class Elu(_Unary):
    ATTRS = {"alpha": 1.0}

    def f(self, x: NDArray[Any]) -> NDArray[Any]:
        a = _c(x, self.attrs["alpha"])
        return np.where(x > 0, x, a * np.expm1(np.minimum(x, 0)))

    def df(self, x: NDArray[Any], y: NDArray[Any]) -> Any:
        return np.where(x > 0, _c(x, 1), y + _c(x, self.attrs["alpha"]))


@register("Selu")
class Selu(_Unary):
    ATTRS = {"alpha": 1.67326319217681884765625, "gamma": 1.05070102214813232421875}

    def f(self, x: NDArray[Any]) -> NDArray[Any]:
        a, g = _c(x, self.attrs["alpha"]), _c(x, self.attrs["gamma"])
        return g * np.where(x > 0, x, a * np.expm1(np.minimum(x, 0)))

    def df(self, x: NDArray[Any], y: NDArray[Any]) -> Any:
        a, g = _c(x, self.attrs["alpha"]), _c(x, self.attrs["gamma"])
        return np.where(x > 0, g, y + g * a)


@register("Sigmoid")
class Sigmoid(_Unary):
    def f(self, x: NDArray[Any]) -> NDArray[Any]:
        # exp of a non-positive number only: no overflow warnings for large |x|.
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)

    def df(self, x: NDArray[Any], y: NDArray[Any]) -> Any:
        return y * (1 - y)


@register("Tanh")
class Tanh(_Unary):
    def f(self, x: NDArray[Any]) -> NDArray[Any]:
        return np.tanh(x)

    def df(self, x: NDArray[Any], y: NDArray[Any]) -> Any:
        return 1 - y * y


@register("HardSigmoid")
class HardSigmoid(_Unary):
    ATTRS = {"alpha": 0.2, "beta": 0.5}

    def f(self, x: NDArray[Any]) -> NDArray[Any]:
        a, b = _c(x, self.attrs["alpha"]), _c(x, self.attrs["beta"])
        return np.clip(a * x + b, _c(x, 0), _c(x, 1))

    def df(self, x: NDArray[Any], y: NDArray[Any]) -> Any:
        a, b = _c(x, self.attrs["alpha"]), _c(x, self.attrs["beta"])
        z = a * x + b
        return np.where((z > 0) & (z < 1), a, _c(x, 0))


@register("HardSwish")
class HardSwish(_Unary):
    # x * HardSigmoid(x) with alpha 1/6, beta 1/2 (torch.nn.Hardswish)
    def f(self, x: NDArray[Any]) -> NDArray[Any]:
        return x * np.clip(x / _c(x, 6) + _c(x, 0.5), _c(x, 0), _c(x, 1))

    def df(self, x: NDArray[Any], y: NDArray[Any]) -> Any:
        # torch's derivative: 0 below -3, 1 above 3, x/3 + 1/2 between (inclusive)
        return np.where(x < -3, _c(x, 0), np.where(x > 3, _c(x, 1), x / _c(x, 3) + _c(x, 0.5)))


@register("Softplus")
class Softplus(_Unary):
    def f(self, x: NDArray[Any]) -> NDArray[Any]:
        return np.logaddexp(_c(x, 0), x)

    def df(self, x: NDArray[Any], y: NDArray[Any]) -> Any:
        return Sigmoid.f(self, x)  # type: ignore[arg-type]  # (Sigmoid.f uses no state)


@register("Softsign")
class Softsign(_Unary):
    def f(self, x: NDArray[Any]) -> NDArray[Any]:
        return x / (1 + np.abs(x))

    def df(self, x: NDArray[Any], y: NDArray[Any]) -> Any:
        return 1 / (1 + np.abs(x)) ** 2


@register("Exp")
class Exp(_Unary):
    def f(self, x: NDArray[Any]) -> NDArray[Any]:
        return np.exp(x)

    def df(self, x: NDArray[Any], y: NDArray[Any]) -> Any:
        return y


@register("Log")
class Log(_Unary):
    def f(self, x: NDArray[Any]) -> NDArray[Any]:
        return np.log(x)

    def df(self, x: NDArray[Any], y: NDArray[Any]) -> Any:
        return 1 / x


@register("Sqrt")
class Sqrt(_Unary):
    def f(self, x: NDArray[Any]) -> NDArray[Any]:
        return np.sqrt(x)

    def df(self, x: NDArray[Any], y: NDArray[Any]) -> Any:
        return 0.5 / y


@register("Neg")
class Neg(_Unary):
    def f(self, x: NDArray[Any]) -> NDArray[Any]:
        return -x

    def df(self, x: NDArray[Any], y: NDArray[Any]) -> Any:
        return np.array(-1, x.dtype)


@register("Abs")
class Abs(_Unary):
    def f(self, x: NDArray[Any]) -> NDArray[Any]:
        return np.abs(x)

    def df(self, x: NDArray[Any], y: NDArray[Any]) -> Any:
        return np.sign(x)


@register("Erf")
class Erf(_Unary):
    def setup(self) -> None:
        try:
            import scipy.special  # noqa: F401
        except ImportError:
            raise ValueError("needs SciPy (the 'fast' extra) for erf") from None

    def f(self, x: NDArray[Any]) -> NDArray[Any]:
        from scipy.special import erf

        return erf(x).astype(x.dtype, copy=False)

    def df(self, x: NDArray[Any], y: NDArray[Any]) -> Any:
        return (2 / np.sqrt(np.pi)) * np.exp(-x * x)


@register("Identity")
class Identity(Op):
    GRAD_INPUTS = (0,)

    def forward(self, x: NDArray[Any]) -> Any:
        return x

    def backward(self, gy: NDArray[Any]) -> tuple[NDArray[Any] | None, ...]:
        return (gy,)


@register("Dropout")
class Dropout(Op):
    """Inference form: the identity (ONNX runtimes do the same outside training)."""

    ATTRS = {"ratio": 0.5, "is_test": 1, "seed": 0, "consumed_inputs": None}
    MAX_OUTPUTS = 2

    def setup(self) -> None:
        training = self.const(2)
        if len(self.node.inputs) > 2 and self.node.inputs[2] and (
                training is None or bool(np.asarray(training).reshape(-1)[0])):
            raise ValueError(
                "training_mode must be a constant False: ndconv runs Dropout in its "
                "inference form (the identity)")

    def forward(self, x: NDArray[Any], *rest: Any) -> Any:
        return x, np.ones(x.shape, dtype=bool)

    def backward(self, gy: NDArray[Any], gmask: Any = None) -> tuple[NDArray[Any] | None, ...]:
        return (gy,)


@register("Clip")
class Clip(Op):
    """``min(max(x, lo), hi)``: attributes before opset 11, optional inputs after."""

    ATTRS = {"min": None, "max": None}

    def setup(self) -> None:
        if self.opset >= 11 and (self.node.attrs.get("min") is not None
                                 or self.node.attrs.get("max") is not None):
            raise ValueError(f"attributes min/max are inputs since opset 11 (model: {self.opset})")

    def forward(self, x: NDArray[Any], lo: Any = None, hi: Any = None) -> Any:
        if self.opset < 11:
            lo, hi = self.attrs["min"], self.attrs["max"]
        lo = -np.inf if lo is None else np.asarray(lo).reshape(()).item()
        hi = np.inf if hi is None else np.asarray(hi).reshape(()).item()
        self._mask = (x >= lo) & (x <= hi)
        return np.clip(x, lo, hi).astype(x.dtype, copy=False)

    def backward(self, gy: NDArray[Any], *_: Any) -> tuple[NDArray[Any] | None, ...]:
        return (gy * self._mask, None, None)


@register("PRelu")
class PRelu(Op):
    GRAD_INPUTS = (0, 1)

    def forward(self, x: NDArray[Any], slope: NDArray[Any]) -> Any:
        self._orig = slope.shape
        if slope.ndim == 1 and x.ndim > 2 and slope.shape[0] == x.shape[1] != x.shape[-1]:
            # opset < 7 allowed a per-channel (C,) slope; align it with dim 1.
            slope = slope.reshape(-1, *([1] * (x.ndim - 2)))
        self._x, self._slope = x, slope
        return np.where(x >= 0, x, x * slope)

    def backward(self, gy: NDArray[Any]) -> tuple[NDArray[Any] | None, ...]:
        x, slope = self._x, self._slope
        neg = x < 0
        gx = np.where(neg, gy * slope, gy)
        gs = unbroadcast(np.where(neg, gy * x, 0).astype(gy.dtype), slope.shape)
        return gx, gs.reshape(self._orig)


class _Binary(Op):
    """Broadcasting ``y = f(a, b)``; ``broadcast``/``axis`` are opset < 7's legacy form."""

    f: Callable[[NDArray[Any], NDArray[Any]], NDArray[Any]]  # (declared for the type checker)
    df: Callable[[NDArray[Any], NDArray[Any], NDArray[Any]], Any]

    ATTRS = {"broadcast": 0, "axis": None, "consumed_inputs": None}
    GRAD_INPUTS = (0, 1)

    def forward(self, a: NDArray[Any], b: NDArray[Any]) -> Any:
        shape_b = b.shape
        if self.attrs["broadcast"] and self.attrs["axis"] is not None and b.ndim:
            ax = int(self.attrs["axis"]) % a.ndim
            b = b.reshape(b.shape + (1,) * (a.ndim - ax - b.ndim))
        self._a, self._b, self._shape_b = a, b, shape_b
        y = self.f(a, b)
        return y.astype(np.result_type(a, b), copy=False)

    def backward(self, gy: NDArray[Any]) -> tuple[NDArray[Any] | None, ...]:
        ga, gb = self.df(self._a, self._b, gy)
        ga = None if ga is None or self._a.dtype.kind != "f" else unbroadcast(ga, self._a.shape)
        gb = (None if gb is None or self._b.dtype.kind != "f"
              else unbroadcast(gb, self._b.shape).reshape(self._shape_b))
        return ga, gb


@register("Add")
class Add(_Binary):
    def f(self, a: NDArray[Any], b: NDArray[Any]) -> NDArray[Any]:
        return a + b

    def df(self, a: NDArray[Any], b: NDArray[Any], g: NDArray[Any]) -> Any:
        return g, g


@register("Sub")
class Sub(_Binary):
    def f(self, a: NDArray[Any], b: NDArray[Any]) -> NDArray[Any]:
        return a - b

    def df(self, a: NDArray[Any], b: NDArray[Any], g: NDArray[Any]) -> Any:
        return g, -g


@register("Mul")
class Mul(_Binary):
    def f(self, a: NDArray[Any], b: NDArray[Any]) -> NDArray[Any]:
        return a * b

    def df(self, a: NDArray[Any], b: NDArray[Any], g: NDArray[Any]) -> Any:
        return g * b, g * a


@register("Div")
class Div(_Binary):
    def f(self, a: NDArray[Any], b: NDArray[Any]) -> NDArray[Any]:
        if a.dtype.kind in "iu" and b.dtype.kind in "iu":
            return a // b  # ONNX integer division truncates; shapes are non-negative
        return a / b

    def df(self, a: NDArray[Any], b: NDArray[Any], g: NDArray[Any]) -> Any:
        ga = g / b
        return ga, -ga * a / b


@register("Pow")
class Pow(_Binary):
    ATTRS = {}

    def f(self, a: NDArray[Any], b: NDArray[Any]) -> NDArray[Any]:
        return np.power(a, b)

    def df(self, a: NDArray[Any], b: NDArray[Any], g: NDArray[Any]) -> Any:
        y = np.power(a, b)
        gb = g * y * np.log(np.where(a > 0, a, 1)) if b.dtype.kind == "f" else None
        return g * b * np.power(a, b - 1), gb

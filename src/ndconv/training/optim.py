"""Optimizers with PyTorch's update rules: SGD (momentum, Nesterov), Adam, AdamW.

Each reads ``p.grad`` of the parameters it was given, updates ``p.data`` in
place in :meth:`step`, and clears the gradients in :meth:`zero_grad`. The
state (moment buffers, step count) round-trips through ``state_dict()`` /
``load_state_dict()`` and :func:`ndconv.save`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from ..core import _args

if TYPE_CHECKING:
    from ..core._typing import NDArray
    from ..nn.module import Module, Parameter

__all__ = ["Optimizer", "SGD", "Adam", "AdamW"]


class Optimizer:
    """Base class: holds the parameters, per-parameter state and hyper-parameters.

    Parameters
    ----------
    params : iterable of Parameter, or a Module
        ``model.parameters()`` as in PyTorch (a Module is accepted too).
    """

    #: Names of the per-parameter state buffers, in state_dict order.
    _buffers: tuple[str, ...] = ()

    params: list[Parameter]
    hyper: dict[str, Any]
    state: list[dict[str, Any]]
    step_count: int

    def __init__(self, params: Iterable[Parameter] | Module, **hyper: Any) -> None:
        if hasattr(params, "parameters") and callable(params.parameters):
            params = params.parameters()
        if isinstance(params, np.ndarray) or not hasattr(params, "__iter__"):
            raise TypeError(
                f"`params` must be an iterable of Parameters (model.parameters()), got "
                f"{type(params).__name__}"
            )
        self.params = list(cast("Iterable[Parameter]", params))
        if not self.params:
            raise ValueError("`params` is empty: the optimizer has nothing to update")
        for i, p in enumerate(self.params):
            if not (hasattr(p, "data") and hasattr(p, "grad")):
                raise TypeError(f"`params` item {i} is a {type(p).__name__}, not a Parameter")
        self.hyper = dict(hyper)
        self.state = [{} for _ in self.params]
        self.step_count = 0

    def __getattr__(self, name: str) -> Any:
        # Hyper-parameters read and write as attributes: opt.lr = 1e-3.
        hyper = self.__dict__.get("hyper", {})
        if name in hyper:
            return hyper[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self.__dict__.get("hyper", {}):
            self.hyper[name] = value
        else:
            object.__setattr__(self, name, value)

    def zero_grad(self) -> None:
        """Clear the gradients (``set_to_none`` as in PyTorch's default)."""
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        """Update every parameter that has a gradient."""
        self.step_count += 1
        for p, st in zip(self.params, self.state):
            if p.grad is None:
                continue
            g = np.asarray(p.grad)
            if g.shape != p.data.shape:
                raise ValueError(
                    f"{type(self).__name__}: gradient shape {g.shape} does not match the "
                    f"parameter shape {p.data.shape}"
                )
            self._update(p, g.astype(p.data.dtype, copy=False), st)

    def _update(self, p: Parameter, g: NDArray[Any], st: dict[str, Any]) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """``{"step": int, "hyper": {...}, "state": {"0": {buffer: array}, ...}}``."""
        return {
            "step": self.step_count,
            "hyper": {k: v for k, v in self.hyper.items()},
            "state": {str(i): {k: v.copy() if isinstance(v, np.ndarray) else v
                               for k, v in st.items()}
                      for i, st in enumerate(self.state) if st},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> Optimizer:
        """Restore from :meth:`state_dict`.

        A buffer whose shape differs from its parameter's raises ValueError naming it.
        """
        if not isinstance(state, Mapping):
            raise TypeError(
                f"optimizer state dict must be a dict (from state_dict()), got "
                f"{type(state).__name__}"
            )
        for key in ("step", "hyper", "state"):
            if key not in state:
                raise KeyError(f"optimizer state dict has no key {key!r}")
        new: list[dict[str, Any]] = [{} for _ in self.params]
        for i, st in dict(state["state"]).items():
            try:
                j = int(i)
            except (TypeError, ValueError):
                raise KeyError(
                    f"optimizer state dict key 'state.{i}' must name a parameter index"
                ) from None
            if not isinstance(st, Mapping):
                raise TypeError(
                    f"optimizer state dict entry 'state.{i}' must be a dict of buffers, "
                    f"got {type(st).__name__}"
                )
            if not 0 <= j < len(self.params):
                raise KeyError(
                    f"optimizer state dict key 'state.{i}' names parameter {j}, but the "
                    f"optimizer has {len(self.params)} parameters"
                )
            for k, v in st.items():
                if isinstance(v, np.ndarray) and v.shape != self.params[j].data.shape:
                    raise ValueError(
                        f"optimizer state dict key 'state.{i}.{k}' has shape {v.shape}, "
                        f"parameter {j} has shape {self.params[j].data.shape}"
                    )
                new[j][k] = (np.array(v, dtype=self.params[j].data.dtype)
                             if isinstance(v, np.ndarray) else v)
        self.hyper.update(state["hyper"])
        self.state = new
        self.step_count = int(state["step"])
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyper.items())
        return f"{type(self).__name__}({len(self.params)} parameters, {args})"


def _nonneg(value: Any, name: str) -> float:
    if not _args.is_number(value) or not value >= 0 or not math.isfinite(value):
        raise ValueError(f"`{name}` (={value!r}) must be a finite number >= 0")
    return float(value)


def _betas(betas: Any) -> tuple[float, float]:
    try:
        b1, b2 = betas
    except (TypeError, ValueError):
        raise ValueError(f"`betas` (={betas!r}) must be a pair (beta1, beta2)") from None
    for i, b in enumerate((b1, b2)):
        if not _args.is_number(b) or not 0 <= b < 1:
            raise ValueError(f"`betas` (={betas!r}): beta{i + 1} must be in [0, 1)")
    return float(b1), float(b2)


class SGD(Optimizer):
    """Stochastic gradient descent, as ``torch.optim.SGD``.

    ``g = grad + weight_decay * p``; with momentum ``buf = momentum * buf +
    (1 - dampening) * g`` (``buf = g`` on the first step), then ``g = g +
    momentum * buf`` (Nesterov) or ``g = buf``; ``p -= lr * g``.

    Parameters
    ----------
    params : iterable of Parameter, or a Module
    lr : float
    momentum, dampening, weight_decay : float, default 0
    nesterov : bool
        Needs ``momentum > 0`` and ``dampening == 0``, as in PyTorch.
    """

    def __init__(
        self,
        params: Iterable[Parameter] | Module,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        lr, momentum = _nonneg(lr, "lr"), _nonneg(momentum, "momentum")
        dampening = _nonneg(dampening, "dampening")
        weight_decay = _nonneg(weight_decay, "weight_decay")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(
                f"`nesterov`=True needs `momentum` > 0 and `dampening` == 0 (got momentum="
                f"{momentum}, dampening={dampening})"
            )
        super().__init__(params, lr=lr, momentum=momentum, dampening=dampening,
                         weight_decay=weight_decay, nesterov=bool(nesterov))

    def _update(self, p: Parameter, g: NDArray[Any], st: dict[str, Any]) -> None:
        h = self.hyper
        if h["weight_decay"]:
            g = g + h["weight_decay"] * p.data
        if h["momentum"]:
            buf = st.get("momentum_buffer")
            if buf is None:
                buf = st["momentum_buffer"] = np.array(g, copy=True)
            else:
                buf *= h["momentum"]
                buf += (1 - h["dampening"]) * g
            g = g + h["momentum"] * buf if h["nesterov"] else buf
        p.data -= p.data.dtype.type(h["lr"]) * g


class Adam(Optimizer):
    """Adam, as ``torch.optim.Adam`` (``weight_decay`` is an L2 term added to the gradient).

    ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2``,
    ``p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``; with
    ``amsgrad`` the running maximum of ``v`` replaces ``v`` in the denominator.

    Parameters
    ----------
    params : iterable of Parameter, or a Module
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    weight_decay : float, default 0
    amsgrad : bool
    """

    _decoupled = False

    def __init__(
        self,
        params: Iterable[Parameter] | Module,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
    ) -> None:
        b1, b2 = _betas(betas)
        super().__init__(params, lr=_nonneg(lr, "lr"), beta1=b1, beta2=b2,
                         eps=_nonneg(eps, "eps"),
                         weight_decay=_nonneg(weight_decay, "weight_decay"),
                         amsgrad=bool(amsgrad))

    def _update(self, p: Parameter, g: NDArray[Any], st: dict[str, Any]) -> None:
        h = self.hyper
        lr, b1, b2, eps, wd = h["lr"], h["beta1"], h["beta2"], h["eps"], h["weight_decay"]
        if wd:
            if self._decoupled:
                p.data *= p.data.dtype.type(1 - lr * wd)
            else:
                g = g + wd * p.data
        if "exp_avg" not in st:
            st["step"] = 0
            st["exp_avg"] = np.zeros_like(p.data)
            st["exp_avg_sq"] = np.zeros_like(p.data)
            if h["amsgrad"]:
                st["max_exp_avg_sq"] = np.zeros_like(p.data)
        st["step"] += 1
        t = st["step"]
        m, v = st["exp_avg"], st["exp_avg_sq"]
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * g * g
        if h["amsgrad"]:
            np.maximum(st["max_exp_avg_sq"], v, out=st["max_exp_avg_sq"])
            v = st["max_exp_avg_sq"]
        bc1 = 1 - b1 ** t
        bc2 = 1 - b2 ** t
        denom = np.sqrt(v) / math.sqrt(bc2) + eps
        p.data -= (m / denom) * p.data.dtype.type(lr / bc1)


class AdamW(Adam):
    """AdamW, as ``torch.optim.AdamW``: decoupled weight decay ``p *= 1 - lr * weight_decay``.

    Parameters as :class:`Adam`; ``weight_decay`` defaults to 0.01 as in PyTorch.
    """

    _decoupled = True

    def __init__(
        self,
        params: Iterable[Parameter] | Module,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)

"""The fully connected layer ``y = x W^T + b``, as ``torch.nn.Linear``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..core import _args
from ..core.algorithms.threads import matmul
from .init import as_dtype, as_rng, bias_uniform, check_parameters, kaiming_uniform
from .module import Module, Parameter

if TYPE_CHECKING:
    from ..core._typing import ArrayLike, DTypeLike, NDArray, Seed

__all__ = ["Linear"]


class Linear(Module):
    """Fully connected layer: ``y = x @ weight.T + bias``.

    Parameters
    ----------
    in_features, out_features : int
    bias : bool
    dtype : float32 or float64
    rng : None, int or numpy.random.Generator
        Source of the initial weights (PyTorch's default initialisation,
        ``U(-1/sqrt(in_features), 1/sqrt(in_features))``).

    Notes
    -----
    Input ``(*, in_features)``, output ``(*, out_features)``; the weight has
    shape ``(out_features, in_features)`` as in PyTorch.
    """

    in_features: int
    out_features: int
    weight: Parameter
    bias: Parameter | None

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 dtype: DTypeLike = np.float32, rng: Seed = None) -> None:
        super().__init__()
        self.in_features = _args.positive_int(in_features, "in_features")
        self.out_features = _args.positive_int(out_features, "out_features")
        dt = as_dtype(dtype)
        rng = as_rng(rng)
        shape = (self.out_features, self.in_features)
        check_parameters(f"Linear({self.in_features}, {self.out_features})",
                         [shape] + ([(self.out_features,)] if bias else []), dt)
        self.weight = Parameter(kaiming_uniform(shape, rng, dt))
        self.bias = (Parameter(bias_uniform(self.out_features, self.in_features, rng, dt))
                     if bias else None)
        self._cache = None

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")

    def forward(self, x: ArrayLike) -> NDArray[Any]:
        x = np.asarray(x)
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"Linear expects input of shape (*, {self.in_features}) (in_features="
                f"{self.in_features}); got {x.shape}"
            )
        if x.dtype != self.weight.data.dtype:
            # As PyTorch (and the conv layers): no silent float64 computation.
            raise TypeError(
                f"Linear input (dtype {x.dtype}) must have the weight's dtype "
                f"({self.weight.data.dtype}); cast it with .astype()"
            )
        y = matmul(x, self.weight.data.T)
        if self.bias is not None:
            y += self.bias.data
        self._cache = x
        return y

    def backward(self, grad_out: ArrayLike) -> NDArray[Any]:
        g = self._backward_params(grad_out)
        return matmul(g, self.weight.data)

    def backward_params(self, grad_out: ArrayLike) -> None:
        """The weight and bias gradients only (no product for the input's)."""
        self._backward_params(grad_out)

    def _backward_params(self, grad_out: ArrayLike) -> NDArray[Any]:
        if self._cache is None:
            raise RuntimeError("Linear.backward called before forward")
        x = self._cache
        g = np.asarray(grad_out)
        if g.shape != x.shape[:-1] + (self.out_features,):
            raise ValueError(
                f"Linear.backward expects grad_out of shape {x.shape[:-1] + (self.out_features,)}, "
                f"got {g.shape}"
            )
        g2 = g.reshape(-1, self.out_features)
        self.weight.accumulate(matmul(g2.T, x.reshape(-1, self.in_features)))
        if self.bias is not None:
            self.bias.accumulate(g2.sum(axis=0))
        return g

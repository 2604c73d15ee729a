"""Element-wise activations: ReLU, Sigmoid, Tanh, each with its derivative."""

from __future__ import annotations

import numpy as np

from .module import Module

__all__ = ["ReLU", "Sigmoid", "Tanh"]


class _Activation(Module):
    """Keeps what the derivative needs and checks the gradient's shape."""

    def _saved(self, grad_out):
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        g = np.asarray(grad_out)
        if g.shape != self._cache.shape:
            raise ValueError(
                f"{type(self).__name__}.backward expects grad_out of shape "
                f"{self._cache.shape}, got {g.shape}"
            )
        return g, self._cache

    def __init__(self):
        super().__init__()
        self._cache = None


class ReLU(_Activation):
    """``max(x, 0)``; the gradient passes where ``x > 0`` (zero at 0, as PyTorch)."""

    def forward(self, x):
        x = np.asarray(x)
        self._cache = x > 0
        return np.maximum(x, x.dtype.type(0))  # keeps NaN, as PyTorch

    def backward(self, grad_out):
        g, mask = self._saved(grad_out)
        return np.where(mask, g, g.dtype.type(0))


class Sigmoid(_Activation):
    """``1 / (1 + exp(-x))``, computed without overflow; derivative ``y (1 - y)``."""

    def forward(self, x):
        x = np.asarray(x)
        # exp of a non-positive number never overflows.
        e = np.exp(-np.abs(x))
        y = np.where(x >= 0, 1 / (1 + e), e / (1 + e))
        self._cache = y
        return y

    def backward(self, grad_out):
        g, y = self._saved(grad_out)
        return g * y * (1 - y)


class Tanh(_Activation):
    """``tanh(x)``; derivative ``1 - y^2``."""

    def forward(self, x):
        y = np.tanh(np.asarray(x))
        self._cache = y
        return y

    def backward(self, grad_out):
        g, y = self._saved(grad_out)
        return g * (1 - y * y)

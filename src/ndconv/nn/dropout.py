"""Dropout: random zeroing in training mode, the identity in evaluation mode."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .init import as_rng
from .module import Module, PerThread

if TYPE_CHECKING:
    from ..core._typing import ArrayLike, NDArray, Seed

__all__ = ["Dropout"]


class Dropout(Module):
    """Zero each element with probability ``p`` and scale the rest by ``1/(1-p)``.

    As ``torch.nn.Dropout``: active after ``model.train()`` (the default),
    the identity after ``model.eval()``.

    Parameters
    ----------
    p : float in [0, 1)
    rng : None, int or numpy.random.Generator
        Source of the masks.
    """

    mask = PerThread()  # the last forward's mask, per thread (see Module)

    p: float
    rng: np.random.Generator

    def __init__(self, p: float = 0.5, rng: Seed = None) -> None:
        super().__init__()
        if not isinstance(p, (int, float, np.floating)) or isinstance(p, bool) or not 0 <= p < 1:
            raise ValueError(f"`p` (={p!r}) must be a probability in [0, 1)")
        self.p = float(p)
        self.rng = as_rng(rng)
        self.mask = None

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def forward(self, x: ArrayLike) -> NDArray[Any]:
        x = np.asarray(x)
        if not self.training or self.p == 0:
            self.mask = None
            return x
        keep = self.rng.random(x.shape) >= self.p
        # The mask already holds the scale, so backward is one multiply.
        self.mask = keep * x.dtype.type(1 / (1 - self.p))
        return x * self.mask

    def backward(self, grad_out: ArrayLike) -> NDArray[Any]:
        g = np.asarray(grad_out)
        return g if self.mask is None else g * self.mask

"""Flatten (the bridge from feature maps to a Linear layer) and Identity."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core import _args
from .module import Module, PerThread

if TYPE_CHECKING:
    from ..core._typing import ArrayLike, NDArray

__all__ = ["Flatten", "Identity"]


class Flatten(Module):
    """Merge dims ``start_dim..end_dim`` into one, as ``torch.nn.Flatten``.

    Parameters
    ----------
    start_dim, end_dim : int
        Defaults keep the batch dim: ``(B, C, H, W) -> (B, C*H*W)``.
    """

    _shape = PerThread()  # the input's shape, per thread (see Module)

    start_dim: int
    end_dim: int

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim = _args._as_int(start_dim, "start_dim")
        self.end_dim = _args._as_int(end_dim, "end_dim")
        self._shape = None

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"

    def forward(self, x: ArrayLike) -> NDArray[Any]:
        x = np.asarray(x)
        nd = max(x.ndim, 1)
        s, e = self.start_dim, self.end_dim
        if not (-nd <= s < nd and -nd <= e < nd) or s % nd > e % nd:
            raise ValueError(
                f"Flatten(start_dim={s}, end_dim={e}) needs start_dim <= end_dim within "
                f"the {x.ndim} dims of the input; got {x.shape}"
            )
        s, e = s % nd, e % nd
        self._shape = x.shape
        return x.reshape(x.shape[:s] + (math.prod(x.shape[s:e + 1]),) + x.shape[e + 1:])

    def backward(self, grad_out: ArrayLike) -> NDArray[Any]:
        if self._shape is None:
            raise RuntimeError("Flatten.backward called before forward")
        return np.asarray(grad_out).reshape(self._shape)


class Identity(Module):
    """Returns its input; as ``torch.nn.Identity`` it accepts and ignores any arguments.

    A placeholder where a network has no layer (a ResNet block's shortcut
    without downsampling, a classifier head removed for fine-tuning).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    # The argument itself, as torch's Identity (a list stays a list).
    def forward(self, x: Any) -> Any:
        return x

    def backward(self, grad_out: Any) -> Any:
        return grad_out

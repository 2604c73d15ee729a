"""Flatten (the bridge from feature maps to a Linear layer) and Identity."""

from __future__ import annotations

import math

import numpy as np

from ..core import _args
from .module import Module, PerThread

__all__ = ["Flatten", "Identity"]


class Flatten(Module):
    """Merge dims ``start_dim..end_dim`` into one, as ``torch.nn.Flatten``.

    Parameters
    ----------
    start_dim, end_dim : int
        Defaults keep the batch dim: ``(B, C, H, W) -> (B, C*H*W)``.
    """

    _shape = PerThread()  # the input's shape, per thread (see Module)

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim = _args._as_int(start_dim, "start_dim")
        self.end_dim = _args._as_int(end_dim, "end_dim")
        self._shape = None

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"

    def forward(self, x):
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

    def backward(self, grad_out):
        if self._shape is None:
            raise RuntimeError("Flatten.backward called before forward")
        return np.asarray(grad_out).reshape(self._shape)


class Identity(Module):
    """Returns its input; as ``torch.nn.Identity`` it accepts and ignores any arguments.

    A placeholder where a network has no layer (a ResNet block's shortcut
    without downsampling, a classifier head removed for fine-tuning).
    """

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        return x

    def backward(self, grad_out):
        return grad_out

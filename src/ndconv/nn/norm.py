"""Normalization layers: BatchNorm (N-d, running statistics as buffers), GroupNorm, LayerNorm.

All three standardise ``x`` over some axes, ``x_hat = (x - mean) / sqrt(var + eps)``
with the biased variance, and then apply a per-feature affine map
``y = weight * x_hat + bias``. They differ only in the axes: BatchNorm reduces
over the batch and the spatial dims (one statistic per channel), GroupNorm over
each group of channels and the spatial dims of one sample, LayerNorm over the
trailing ``normalized_shape`` dims of one sample. The one backward,
:func:`_standardize_backward`, is the derivative of the standardisation:

``dx = invstd * (g - mean(g) - x_hat * mean(g * x_hat))``, means over the
reduced axes and ``g = dL/dx_hat``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core import _args
from .init import as_dtype
from .module import Module, Parameter, fixed_ndim

if TYPE_CHECKING:
    from ..core._typing import ArrayLike, DTypeLike, NDArray, Shape
    from .module import without_ndim

__all__ = ["BatchNorm", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "GroupNorm", "LayerNorm"]


def _standardize(x: NDArray[Any], axes: tuple[int, ...], eps: float,
                 ) -> tuple[NDArray[Any], NDArray[Any], NDArray[Any], NDArray[Any]]:
    """``(x_hat, mean, biased var, invstd)`` over ``axes`` (kept as size-1 dims)."""
    mean = x.mean(axis=axes, keepdims=True)
    xc = x - mean
    var = (xc * xc).mean(axis=axes, keepdims=True)
    invstd = 1 / np.sqrt(var + x.dtype.type(eps))
    return xc * invstd, mean, var, invstd


def _standardize_backward(g: NDArray[Any], x_hat: NDArray[Any], invstd: NDArray[Any],
                          axes: tuple[int, ...]) -> NDArray[Any]:
    """Gradient with respect to ``x`` of ``x_hat = standardize(x)`` given ``g = dL/dx_hat``."""
    return invstd * (g - g.mean(axis=axes, keepdims=True)
                     - x_hat * (g * x_hat).mean(axis=axes, keepdims=True))


def _check_eps(eps: float) -> float:
    if not _args.is_number(eps) or not eps >= 0:
        raise ValueError(f"`eps` (={eps!r}) must be a non-negative number")
    return float(eps)


class _Affine(Module):
    """The optional ``weight`` (ones) and ``bias`` (zeros) of a normalization layer."""

    weight: Parameter | None
    bias: Parameter | None

    def _init_affine(self, shape: Shape, weight: bool, bias: bool, dtype: DTypeLike) -> None:
        dt = as_dtype(dtype)
        self.weight = Parameter(np.ones(shape, dt)) if weight else None
        self.bias = Parameter(np.zeros(shape, dt)) if bias else None
        self._cache = None

    def _check_dtype(self, x: NDArray[Any]) -> None:
        p = self.weight if self.weight is not None else self.bias
        ref = p.data if p is not None else getattr(self, "running_mean", None)
        if ref is not None and x.dtype != ref.dtype:
            raise TypeError(
                f"{type(self).__name__} input (dtype {x.dtype}) must have the layer's dtype "
                f"({ref.dtype}); cast it with .astype()"
            )

    def _affine(self, x_hat: NDArray[Any], view: Shape) -> NDArray[Any]:
        """``weight * x_hat + bias`` with the parameters reshaped to ``view``."""
        y = x_hat
        if self.weight is not None:
            y = y * self.weight.data.reshape(view)
        if self.bias is not None:
            y = y + self.bias.data.reshape(view)
        return y

    def _affine_backward(self, g: NDArray[Any], x_hat: NDArray[Any], view: Shape,
                         reduce_axes: tuple[int, ...]) -> NDArray[Any]:
        """Accumulate the parameter gradients; return ``dL/dx_hat``."""
        if self.weight is not None:
            self.weight.accumulate((g * x_hat).sum(axis=reduce_axes).reshape(self.weight.shape))
        if self.bias is not None:
            self.bias.accumulate(g.sum(axis=reduce_axes).reshape(self.bias.shape))
        return g * self.weight.data.reshape(view) if self.weight is not None else g

    def _saved(self, grad_out: ArrayLike) -> tuple[NDArray[Any], Any]:
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        g = np.asarray(grad_out)
        shape = self._cache[0].shape
        if g.shape != shape:
            raise ValueError(
                f"{type(self).__name__}.backward expects grad_out of shape {shape}, got {g.shape}"
            )
        return g, self._cache


class BatchNorm(_Affine):
    """N-d batch normalization, as ``torch.nn.BatchNormNd``.

    Parameters
    ----------
    num_spatial_dims : int
        1 accepts ``(B, C)`` and ``(B, C, L)``; 2 ``(B, C, H, W)``; 3 ``(B, C, D, H, W)``.
    num_features : int
        ``C``.
    eps : float
        Added to the variance.
    momentum : float or None
        Weight of the new batch in the running statistics,
        ``running = (1 - momentum) * running + momentum * batch``; ``None``
        gives the cumulative average (factor ``1 / num_batches_tracked``).
    affine : bool
        Learnable ``weight`` (ones) and ``bias`` (zeros) of shape ``(C,)``.
    track_running_stats : bool
        Keep the buffers ``running_mean`` (zeros), ``running_var`` (ones) and
        ``num_batches_tracked`` (int64 0). Without them, evaluation mode also
        uses the batch's statistics.
    dtype : float32 or float64

    Notes
    -----
    Training mode normalises with the batch's mean and biased variance over
    ``(B, *S)`` and updates the running variance with the unbiased one
    (``var * n / (n - 1)``, ``n = B * prod(S)``), as PyTorch. Evaluation mode
    normalises with the running statistics, so ``backward`` is then a
    per-channel scaling.
    """

    num_spatial_dims: int
    num_features: int
    eps: float
    momentum: float | None
    affine: bool
    track_running_stats: bool
    # Buffers (None without track_running_stats).
    running_mean: NDArray[Any] | None
    running_var: NDArray[Any] | None
    num_batches_tracked: NDArray[np.int64] | None

    def __init__(self, num_spatial_dims: int, num_features: int, eps: float = 1e-5,
                 momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, dtype: DTypeLike = np.float32) -> None:
        super().__init__()
        self.num_spatial_dims = _args.positive_int(num_spatial_dims, "num_spatial_dims")
        self.num_features = _args.positive_int(num_features, "num_features")
        self.eps = _check_eps(eps)
        if momentum is not None and (not _args.is_number(momentum) or not 0 <= momentum <= 1):
            raise ValueError(f"`momentum` (={momentum!r}) must be a number in [0, 1] or None")
        self.momentum = None if momentum is None else float(momentum)
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        dt = as_dtype(dtype)
        self._init_affine((self.num_features,), self.affine, self.affine, dt)
        if self.track_running_stats:
            self.register_buffer("running_mean", np.zeros(self.num_features, dt))
            self.register_buffer("running_var", np.ones(self.num_features, dt))
            self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean = np.zeros_like(self.running_mean)
            self.running_var = np.ones_like(self.running_var)
            self.num_batches_tracked = np.array(0, dtype=np.int64)

    def _complete_state(self, state: dict[str, ArrayLike], prefix: str) -> None:
        # State dicts from PyTorch < 0.4.1 (torchvision's original ResNet weights)
        # have no num_batches_tracked; PyTorch loads them with 0, so does ndconv.
        key = prefix + "num_batches_tracked"
        if self.track_running_stats and key not in state and prefix + "running_mean" in state:
            state[key] = np.array(0, dtype=np.int64)

    def _check_input(self, x: NDArray[Any]) -> None:
        n = self.num_spatial_dims
        allowed = (2, 3) if n == 1 else (n + 2,)
        if x.ndim not in allowed or x.shape[1] != self.num_features:
            shapes = "(B, C) or (B, C, L)" if n == 1 else f"(B, C, *S) with {n} spatial dims"
            raise ValueError(
                f"{type(self).__name__} expects input of shape {shapes} and C = "
                f"num_features (={self.num_features}); got {x.shape}"
            )

    def forward(self, x: ArrayLike) -> NDArray[Any]:
        x = _args.check_array(x, "x")
        self._check_input(x)
        self._check_dtype(x)
        axes = (0, *range(2, x.ndim))
        view = (1, -1) + (1,) * (x.ndim - 2)
        use_batch = self.training or self.running_mean is None
        if use_batch:
            count = x.size // x.shape[1]
            # PyTorch checks whenever it uses the batch's statistics, so also in
            # evaluation mode without running statistics; an empty batch is
            # allowed (an empty output, the running statistics unchanged).
            if count == 1:
                raise ValueError(
                    f"{type(self).__name__} {'in training mode' if self.training else 'without running statistics'} "
                    f"needs more than 1 value per channel; got input of shape {x.shape}"
                )
            if count == 0:
                if self.training and self.running_mean is not None:
                    # (The three buffers are None together: mypy cannot see it.)
                    self.num_batches_tracked = np.array(
                        self.num_batches_tracked + 1, dtype=np.int64)  # type: ignore[operator]
                x_hat = np.zeros_like(x)
                self._cache = (x_hat, None, False, axes, view)
                return self._affine(x_hat, view)
            x_hat, mean, var, invstd = _standardize(x, axes, self.eps)
            if self.training and self.running_mean is not None:
                self.num_batches_tracked = np.array(
                    self.num_batches_tracked + 1, dtype=np.int64)  # type: ignore[operator]
                f = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                     else self.momentum)
                f = x.dtype.type(f)
                unbiased = var.reshape(-1) * x.dtype.type(count / (count - 1))
                self.running_mean = (1 - f) * self.running_mean + f * mean.reshape(-1)
                self.running_var = (1 - f) * self.running_var + f * unbiased
        else:
            invstd = (1 / np.sqrt(self.running_var + x.dtype.type(self.eps))).reshape(view)
            x_hat = (x - self.running_mean.reshape(view)) * invstd  # type: ignore[union-attr]
        self._cache = (x_hat, invstd, use_batch, axes, view)
        return self._affine(x_hat, view)

    def backward(self, grad_out: ArrayLike) -> NDArray[Any]:
        g, (x_hat, invstd, use_batch, axes, view) = self._saved(grad_out)
        gh = self._affine_backward(g, x_hat, view, axes)
        if invstd is None:  # an empty batch
            return gh
        if use_batch:
            return _standardize_backward(gh, x_hat, invstd, axes)
        return gh * invstd


if TYPE_CHECKING:  # fixed_ndim's classes as a type checker reads them (see without_ndim)
    class _BatchNormFixed(BatchNorm):
        @without_ndim(BatchNorm.__init__)
        def __init__(self, *args: Any, **kwargs: Any) -> None: ...

    class BatchNorm1d(_BatchNormFixed): ...
    class BatchNorm2d(_BatchNormFixed): ...
    class BatchNorm3d(_BatchNormFixed): ...
else:
    BatchNorm1d, BatchNorm2d, BatchNorm3d = (fixed_ndim(BatchNorm, n) for n in (1, 2, 3))


class GroupNorm(_Affine):
    """Group normalization, as ``torch.nn.GroupNorm``.

    Parameters
    ----------
    num_groups : int
        Divides ``num_channels``; statistics per sample and group.
    num_channels : int
    eps : float
    affine : bool
        Per-channel ``weight`` (ones) and ``bias`` (zeros) of shape ``(C,)``.
    dtype : float32 or float64

    Notes
    -----
    Input ``(B, C, *)``; ``x`` is viewed as ``(B, G, C/G * prod(*))`` and
    standardised over the last axis. Training and evaluation modes agree.
    """

    num_groups: int
    num_channels: int
    eps: float
    affine: bool

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5,
                 affine: bool = True, dtype: DTypeLike = np.float32) -> None:
        super().__init__()
        self.num_groups = _args.positive_int(num_groups, "num_groups")
        self.num_channels = _args.positive_int(num_channels, "num_channels")
        if self.num_channels % self.num_groups:
            raise ValueError(
                f"`num_channels` (={num_channels}) must be divisible by `num_groups` "
                f"(={num_groups})"
            )
        self.eps = _check_eps(eps)
        self.affine = bool(affine)
        self._init_affine((self.num_channels,), self.affine, self.affine, dtype)

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"

    def forward(self, x: ArrayLike) -> NDArray[Any]:
        x = _args.check_array(x, "x")
        if x.ndim < 2 or x.shape[1] != self.num_channels:
            raise ValueError(
                f"GroupNorm expects input of shape (B, C, *) with C = num_channels "
                f"(={self.num_channels}); got {x.shape}"
            )
        self._check_dtype(x)
        # An explicit group size: with an empty batch, -1 would be ambiguous.
        xg = x.reshape(x.shape[0], self.num_groups, math.prod(x.shape[1:]) // self.num_groups)
        x_hat, _, _, invstd = _standardize(xg, (2,), self.eps)
        x_hat = x_hat.reshape(x.shape)
        view = (1, -1) + (1,) * (x.ndim - 2)
        self._cache = (x_hat, invstd, view)
        return self._affine(x_hat, view)

    def backward(self, grad_out: ArrayLike) -> NDArray[Any]:
        g, (x_hat, invstd, view) = self._saved(grad_out)
        axes = (0, *range(2, g.ndim))
        gh = self._affine_backward(g, x_hat, view, axes)
        shape = (g.shape[0], self.num_groups, math.prod(g.shape[1:]) // self.num_groups)
        dx = _standardize_backward(gh.reshape(shape), x_hat.reshape(shape), invstd, (2,))
        return dx.reshape(g.shape)


class LayerNorm(_Affine):
    """Layer normalization over the trailing dims, as ``torch.nn.LayerNorm``.

    Parameters
    ----------
    normalized_shape : int or tuple of int
        The trailing shape standardised per sample (``(C, H, W)``, or ``C`` for
        ``(B, L, C)``).
    eps : float
    elementwise_affine : bool
        Learnable ``weight`` (ones) of shape ``normalized_shape``.
    bias : bool
        Learnable ``bias`` (zeros), only with ``elementwise_affine``.
    dtype : float32 or float64
    """

    normalized_shape: Shape
    eps: float
    elementwise_affine: bool

    def __init__(self, normalized_shape: int | tuple[int, ...] | list[int], eps: float = 1e-5,
                 elementwise_affine: bool = True, bias: bool = True,
                 dtype: DTypeLike = np.float32) -> None:
        super().__init__()
        self.normalized_shape = _args.shape_tuple(normalized_shape, "normalized_shape")
        self.eps = _check_eps(eps)
        self.elementwise_affine = bool(elementwise_affine)
        self._init_affine(self.normalized_shape, self.elementwise_affine,
                          self.elementwise_affine and bool(bias), dtype)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")

    def forward(self, x: ArrayLike) -> NDArray[Any]:
        x = _args.check_array(x, "x")
        k = len(self.normalized_shape)
        if x.shape[x.ndim - k:] != self.normalized_shape or x.ndim < k:
            raise ValueError(
                f"LayerNorm expects input of shape (*, {', '.join(map(str, self.normalized_shape))})"
                f" (normalized_shape={self.normalized_shape}); got {x.shape}"
            )
        self._check_dtype(x)
        axes = tuple(range(x.ndim - k, x.ndim))
        x_hat, _, _, invstd = _standardize(x, axes, self.eps)
        self._cache = (x_hat, invstd, axes)
        return self._affine(x_hat, self.normalized_shape)

    def backward(self, grad_out: ArrayLike) -> NDArray[Any]:
        g, (x_hat, invstd, axes) = self._saved(grad_out)
        lead = tuple(range(g.ndim - len(axes)))
        gh = self._affine_backward(g, x_hat, self.normalized_shape, lead)
        return _standardize_backward(gh, x_hat, invstd, axes)


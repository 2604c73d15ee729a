"""Pooling layers: one N-d base, thin 1-D/2-D/3-D names (as PyTorch's ``_MaxPoolNd``)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core import _args, _memory
from ..core import pooling as P
from .module import Module, fixed_ndim
from .resample import apply_adjoint

if TYPE_CHECKING:
    from ..core._typing import ArrayLike, IntOrTuple, NDArray, Shape
    from .module import without_ndim

__all__ = [
    "MaxPool",
    "MaxPool1d",
    "MaxPool2d",
    "MaxPool3d",
    "AvgPool",
    "AvgPool1d",
    "AvgPool2d",
    "AvgPool3d",
    "AdaptiveAvgPool",
    "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d",
    "AdaptiveAvgPool3d",
]


class _PoolNd(Module):
    """Shared argument handling, input check and repr of the pooling layers."""

    kernel_size: Shape
    stride: Shape
    padding: Shape
    dilation: Shape
    ceil_mode: bool

    def __init__(self, num_spatial_dims: int, kernel_size: IntOrTuple, stride: IntOrTuple | None,
                 padding: IntOrTuple, dilation: IntOrTuple, ceil_mode: bool) -> None:
        super().__init__()
        n = _args.positive_int(num_spatial_dims, "num_spatial_dims")
        self.kernel_size = _args.ntuple(kernel_size, n, "kernel_size", minimum=1)
        self.stride = (self.kernel_size if stride is None
                       else _args.ntuple(stride, n, "stride", minimum=1))
        self.padding = _args.ntuple(padding, n, "padding", minimum=0)
        self.dilation = _args.ntuple(dilation, n, "dilation", minimum=1)
        self.ceil_mode = bool(ceil_mode)
        self._cache = None

    def _check_input(self, x: ArrayLike) -> NDArray[Any]:
        x = np.asarray(x)
        n = len(self.kernel_size)
        if x.ndim not in (n + 1, n + 2):
            raise ValueError(
                f"{type(self).__name__} expects input of shape (B, C, *S) or (C, *S) "
                f"with {n} spatial dims; got {x.shape}"
            )
        return x

    def extra_repr(self) -> str:
        s = f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
        if self.dilation != (1,) * len(self.dilation):
            s += f", dilation={self.dilation}"
        if self.ceil_mode:
            s += ", ceil_mode=True"
        return s


class MaxPool(_PoolNd):
    """N-d max pooling layer, as ``torch.nn.MaxPoolNd``.

    Parameters
    ----------
    num_spatial_dims : int
    kernel_size : int or tuple of int
    stride : int or tuple of int, optional
        Defaults to ``kernel_size``.
    padding : int or tuple of int
        Implicit ``-inf`` padding, at most half the dilated kernel.
    dilation : int or tuple of int
    ceil_mode : bool

    Notes
    -----
    ``S_out = floor((S + 2*padding - dilation*(k-1) - 1) / stride) + 1``.
    ``backward`` sends each output gradient to the element that won its window.
    """

    def __init__(self, num_spatial_dims: int, kernel_size: IntOrTuple,
                 stride: IntOrTuple | None = None, padding: IntOrTuple = 0,
                 dilation: IntOrTuple = 1, ceil_mode: bool = False) -> None:
        super().__init__(num_spatial_dims, kernel_size, stride, padding, dilation, ceil_mode)
        # Validates now, so a bad layer fails at construction, not first call.
        P._check_padding(self.kernel_size, self.padding, self.dilation, "max", padding)

    def forward(self, x: ArrayLike) -> NDArray[Any]:
        x = self._check_input(x)
        y = P.max_pool(x, self.kernel_size, self.stride, self.padding, self.dilation,
                       self.ceil_mode)
        self._cache = (x, y)
        return y

    def backward(self, grad_out: ArrayLike) -> NDArray[Any]:
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        x, y = self._cache
        return P.max_pool_backward(grad_out, x, self.kernel_size, self.stride, self.padding,
                                   self.dilation, self.ceil_mode, out=y)


class AvgPool(_PoolNd):
    """N-d average pooling layer, as ``torch.nn.AvgPoolNd``.

    Parameters
    ----------
    num_spatial_dims : int
    kernel_size, stride, padding, ceil_mode
        As :class:`MaxPool` (zero padding, at most half the kernel).
    count_include_pad : bool
        Count padded zeros in the divisor (PyTorch's default).
    divisor_override : int, optional

    Notes
    -----
    ``backward`` shares each output gradient evenly among its window.
    """

    count_include_pad: bool
    divisor_override: int | None

    def __init__(self, num_spatial_dims: int, kernel_size: IntOrTuple,
                 stride: IntOrTuple | None = None, padding: IntOrTuple = 0,
                 ceil_mode: bool = False, count_include_pad: bool = True,
                 divisor_override: int | None = None) -> None:
        super().__init__(num_spatial_dims, kernel_size, stride, padding, 1, ceil_mode)
        self.count_include_pad = bool(count_include_pad)
        self.divisor_override = P._check_divisor(divisor_override)
        P._check_padding(self.kernel_size, self.padding, self.dilation, "avg", padding)

    def extra_repr(self) -> str:
        s = f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
        if self.ceil_mode:
            s += ", ceil_mode=True"
        if not self.count_include_pad:
            s += ", count_include_pad=False"
        if self.divisor_override is not None:
            s += f", divisor_override={self.divisor_override}"
        return s

    def forward(self, x: ArrayLike) -> NDArray[Any]:
        x = self._check_input(x)
        y = P.avg_pool(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                       self.count_include_pad, self.divisor_override)
        self._cache = x
        return y

    def backward(self, grad_out: ArrayLike) -> NDArray[Any]:
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        return P.avg_pool_backward(grad_out, self._cache, self.kernel_size, self.stride,
                                   self.padding, self.ceil_mode, self.count_include_pad,
                                   self.divisor_override)


if TYPE_CHECKING:  # fixed_ndim's classes as a type checker reads them (see without_ndim)
    class _MaxPoolFixed(MaxPool):
        @without_ndim(MaxPool.__init__)
        def __init__(self, *args: Any, **kwargs: Any) -> None: ...

    class MaxPool1d(_MaxPoolFixed): ...
    class MaxPool2d(_MaxPoolFixed): ...
    class MaxPool3d(_MaxPoolFixed): ...

    class _AvgPoolFixed(AvgPool):
        @without_ndim(AvgPool.__init__)
        def __init__(self, *args: Any, **kwargs: Any) -> None: ...

    class AvgPool1d(_AvgPoolFixed): ...
    class AvgPool2d(_AvgPoolFixed): ...
    class AvgPool3d(_AvgPoolFixed): ...
else:
    MaxPool1d, MaxPool2d, MaxPool3d = (fixed_ndim(MaxPool, n) for n in (1, 2, 3))
    AvgPool1d, AvgPool2d, AvgPool3d = (fixed_ndim(AvgPool, n) for n in (1, 2, 3))


def adaptive_windows(n_in: int, n_out: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive-pool windows: ``[floor(o*S/O), ceil((o+1)*S/O))`` per output ``o``."""
    return [((o * n_in) // n_out, -(-((o + 1) * n_in) // n_out)) for o in range(n_out)]


class AdaptiveAvgPool(Module):
    """N-d adaptive average pooling to a fixed output size, as ``torch.nn.AdaptiveAvgPoolNd``.

    Parameters
    ----------
    num_spatial_dims : int
    output_size : int or tuple of (int or None)
        ``None`` keeps that dim's input size; ``1`` is global average pooling.

    Notes
    -----
    Output ``o`` along a dim of size ``S`` averages the input window
    ``[floor(o*S/O), ceil((o+1)*S/O))``; windows may overlap when ``O`` does
    not divide ``S``, and the backward sums the shares of every window.
    """

    #: An int (or None) for every dim, or a tuple as given.
    output_size: int | None | tuple[int | None, ...]

    def __init__(self, num_spatial_dims: int,
                 output_size: int | None | tuple[int | None, ...] | list[int | None]) -> None:
        super().__init__()
        n = _args.positive_int(num_spatial_dims, "num_spatial_dims")
        items = output_size if isinstance(output_size, (tuple, list)) else (output_size,) * n
        if len(items) != n:
            raise ValueError(
                f"`output_size` (={output_size!r}) must have one entry per spatial dim ({n})"
            )
        self.output_size = tuple(None if v is None else _args.positive_int(v, "output_size")
                                 for v in items)
        if not isinstance(output_size, (tuple, list)):
            self.output_size = self.output_size[0]
        self._n = n
        self._cache = None

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"

    def forward(self, x: ArrayLike) -> NDArray[Any]:
        x = _args.check_array(x, "x")
        n = self._n
        if x.ndim not in (n + 1, n + 2):
            raise ValueError(
                f"{type(self).__name__} expects input of shape (B, C, *S) or (C, *S) with "
                f"{n} spatial dims; got {x.shape}"
            )
        # An empty batch or channel dim gives an empty output, as PyTorch; an empty
        # spatial dim has no window to average.
        if 0 in x.shape[x.ndim - n:]:
            raise ValueError(f"`x` has an empty spatial dimension (shape {x.shape})")
        sizes = (self.output_size if isinstance(self.output_size, tuple)
                 else (self.output_size,) * n)
        spatial = x.shape[x.ndim - n:]
        outs = [s if o is None else o for s, o in zip(spatial, sizes)]
        lead = math.prod(x.shape[:x.ndim - n])
        _memory.guard((lead * math.prod(outs) + sum(o * s for o, s in zip(outs, spatial)))
                      * x.dtype.itemsize,
                      f"{type(self).__name__} of input {x.shape} to {tuple(outs)}")
        y, mats = x, []
        for k, (n_in, o) in enumerate(zip(x.shape[x.ndim - n:], sizes)):
            ax = x.ndim - n + k
            o = n_in if o is None else o
            wins = adaptive_windows(n_in, o)
            m = np.zeros((o, n_in), dtype=x.dtype)
            parts = []
            for i, (a, b) in enumerate(wins):
                # Sums of slices, not a matrix product, so inf and nan stay in their window.
                sl = [slice(None)] * y.ndim
                sl[ax] = slice(a, b)
                parts.append(y[tuple(sl)].sum(axis=ax, keepdims=True) / x.dtype.type(b - a))
                m[i, a:b] = 1 / (b - a)
            y = np.concatenate(parts, axis=ax)
            mats.append(m)
        self._cache = (x.shape, y.shape, mats)
        return y

    def backward(self, grad_out: ArrayLike) -> NDArray[Any]:
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        in_shape, out_shape, mats = self._cache
        g = np.asarray(grad_out)
        if g.shape != out_shape:
            raise ValueError(
                f"{type(self).__name__}.backward expects grad_out of shape {out_shape}, "
                f"got {g.shape}"
            )
        return apply_adjoint(g, mats)


if TYPE_CHECKING:
    class _AdaptiveAvgPoolFixed(AdaptiveAvgPool):
        @without_ndim(AdaptiveAvgPool.__init__)
        def __init__(self, *args: Any, **kwargs: Any) -> None: ...

    class AdaptiveAvgPool1d(_AdaptiveAvgPoolFixed): ...
    class AdaptiveAvgPool2d(_AdaptiveAvgPoolFixed): ...
    class AdaptiveAvgPool3d(_AdaptiveAvgPoolFixed): ...
else:
    AdaptiveAvgPool1d, AdaptiveAvgPool2d, AdaptiveAvgPool3d = (
        fixed_ndim(AdaptiveAvgPool, n) for n in (1, 2, 3))

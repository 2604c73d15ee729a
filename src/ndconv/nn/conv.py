"""Convolution layers: one N-d base, thin 1-D/2-D/3-D names (as PyTorch's ``_ConvNd``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..core import _args
from ..core import functional as F
from .init import as_dtype, as_rng, bias_uniform, check_parameters, fan_in, kaiming_uniform
from .module import Module, Parameter, fixed_ndim

if TYPE_CHECKING:
    from ..core._typing import ArrayLike, DTypeLike, IntOrTuple, NDArray, Padding, Seed, Shape
    from .module import without_ndim

__all__ = [
    "Conv",
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvTranspose",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "ConvTranspose3d",
]


class _ConvNd(Module):
    """Shared validation, parameters, initialisation and repr."""

    transposed = False

    in_channels: int
    out_channels: int
    groups: int
    kernel_size: Shape
    stride: Shape
    dilation: Shape
    padding_mode: str
    #: A tuple of ints per dim, or as given: a str or ``(lo, hi)`` pairs.
    padding: Padding
    output_padding: Shape  # transposed only
    weight: Parameter
    bias: Parameter | None

    def __init__(self, num_spatial_dims: int, in_channels: int, out_channels: int,
                 kernel_size: IntOrTuple, stride: IntOrTuple, padding: Padding,
                 dilation: IntOrTuple, groups: int, bias: bool, padding_mode: str,
                 output_padding: IntOrTuple, dtype: DTypeLike, rng: Seed) -> None:
        super().__init__()
        n = _args.positive_int(num_spatial_dims, "num_spatial_dims")
        # PyTorch allows no input channels for a convolution (an empty sum);
        # a transposed convolution with none fails in forward, so refuse it here.
        self.in_channels = (_args.positive_int(in_channels, "in_channels") if self.transposed
                            else _args.nonnegative_int(in_channels, "in_channels"))
        self.out_channels = _args.positive_int(out_channels, "out_channels")
        self.groups = _args.positive_int(groups, "groups")
        if in_channels % groups:
            raise ValueError(f"`in_channels` (={in_channels}) must be divisible by `groups` (={groups})")
        if out_channels % groups:
            raise ValueError(f"`out_channels` (={out_channels}) must be divisible by `groups` (={groups})")
        self.kernel_size = _args.ntuple(kernel_size, n, "kernel_size", minimum=1)
        self.stride = _args.ntuple(stride, n, "stride", minimum=1)
        self.dilation = _args.ntuple(dilation, n, "dilation", minimum=1)
        self.padding_mode = _args.check_padding_mode(padding_mode)
        if self.transposed:
            if padding_mode != "zeros":
                raise ValueError(
                    f"`padding_mode` (={padding_mode!r}) must be 'zeros' for "
                    f"{type(self).__name__}, as in PyTorch"
                )
            self.padding = _args.ntuple(padding, n, "padding", minimum=0)
            self.output_padding = _args.ntuple(output_padding, n, "output_padding", minimum=0)
        else:
            # Validates now, so a bad layer fails at construction, not first call.
            _args.padding_pairs(padding, self.kernel_size, self.dilation, self.stride)
            # Ints and per-dim ints become a tuple, as torch stores them; strings
            # and (lo, hi) pairs are kept as given.
            is_pairs = isinstance(padding, (tuple, list)) and any(
                isinstance(p, (tuple, list)) for p in padding)
            self.padding = (padding if isinstance(padding, str) or is_pairs
                            else _args.ntuple(padding, n, "padding"))
        dt = as_dtype(dtype, half=True)
        rng = as_rng(rng)
        if self.transposed:
            shape = (in_channels, out_channels // groups, *self.kernel_size)
        else:
            shape = (out_channels, in_channels // groups, *self.kernel_size)
        check_parameters(
            f"{type(self).__name__}({in_channels}, {out_channels}, "
            f"kernel_size={self.kernel_size})",
            [shape] + ([(out_channels,)] if bias else []), dt,
        )
        self.weight = Parameter(kaiming_uniform(shape, rng, dt))
        if bias:
            self.bias = Parameter(bias_uniform(out_channels, fan_in(shape), rng, dt))
        else:
            self.bias = None
        self._cache = None

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        n = len(self.kernel_size)
        if self.padding not in (0, (0,) * n, "valid"):
            s += f", padding={self.padding}"
        if self.transposed and any(self.output_padding):
            s += f", output_padding={self.output_padding}"
        if self.dilation != (1,) * n:
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode!r}"
        return s

    def _check_input(self, x: ArrayLike) -> NDArray[Any]:
        x = np.asarray(x)
        n = len(self.kernel_size)
        if x.ndim not in (n + 1, n + 2) or x.shape[-n - 1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__} expects input of shape (B, {self.in_channels}, "
                f"*S) or ({self.in_channels}, *S) with {n} spatial dims; got {x.shape}"
            )
        return x

    def _bias_data(self) -> NDArray[Any] | None:
        return None if self.bias is None else self.bias.data

    def _accumulate(self, gw: NDArray[Any], gb: NDArray[Any]) -> None:
        self.weight.accumulate(gw)
        if self.bias is not None:
            self.bias.accumulate(gb)


class Conv(_ConvNd):
    """N-d convolution layer: ``y = conv(x, weight) + bias``.

    Parameters
    ----------
    num_spatial_dims : int
    in_channels, out_channels : int
    kernel_size, stride, dilation : int or tuple of int
    padding : int, tuple, tuple of (lo, hi) pairs, or {'valid', 'same', 'full'}
    groups : int
    bias : bool
    padding_mode : {'zeros', 'reflect', 'replicate', 'circular'}
    dtype : float32, float64, float16 or bfloat16
        Half precision is stored as such and computed in float32.
    rng : None, int or numpy.random.Generator
        Source of the initial weights (PyTorch's default initialisation).

    Notes
    -----
    Input ``(B, C_in, *S)`` or ``(C_in, *S)``; output ``(B, C_out, *S_out)`` with
    ``S_out = floor((S + lo + hi - dilation*(K-1) - 1) / stride) + 1``. The weight
    has shape ``(C_out, C_in // groups, *K)`` as in PyTorch.
    """

    def __init__(self, num_spatial_dims: int, in_channels: int, out_channels: int,
                 kernel_size: IntOrTuple, stride: IntOrTuple = 1, padding: Padding = 0,
                 dilation: IntOrTuple = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", dtype: DTypeLike = np.float32,
                 rng: Seed = None) -> None:
        super().__init__(num_spatial_dims, in_channels, out_channels, kernel_size,
                         stride, padding, dilation, groups, bias, padding_mode, 0,
                         dtype, rng)

    def forward(self, x: ArrayLike) -> NDArray[Any]:
        x = self._check_input(x)
        y = F.conv(x, self.weight.data, self._bias_data(), self.stride, self.padding,
                   self.dilation, self.groups, self.padding_mode)
        self._cache = x
        return y

    def backward(self, grad_out: ArrayLike) -> NDArray[Any]:
        return self._backward(grad_out, True)

    def backward_params(self, grad_out: ArrayLike) -> None:
        """The weight and bias gradients only: the input gradient's correlation is skipped."""
        self._backward(grad_out, False)

    def _backward(self, grad_out: ArrayLike, input_grad: bool) -> NDArray[Any]:
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        x = self._cache
        gx, gw, gb = F.conv_backward(grad_out, x, self.weight.data, self.stride,
                                     self.padding, self.dilation, self.groups,
                                     self.padding_mode, input_grad=input_grad)
        self._accumulate(gw, gb)
        return gx


class ConvTranspose(_ConvNd):
    """N-d transposed convolution layer, as ``torch.nn.ConvTransposeNd``.

    The weight has shape ``(C_in, C_out // groups, *K)``. Output size
    ``S_out = (S - 1)*stride - 2*padding + dilation*(K-1) + output_padding + 1``.
    """

    transposed = True
    padding: Shape  # an int per dim, as PyTorch's

    def __init__(self, num_spatial_dims: int, in_channels: int, out_channels: int,
                 kernel_size: IntOrTuple, stride: IntOrTuple = 1, padding: IntOrTuple = 0,
                 output_padding: IntOrTuple = 0, groups: int = 1, bias: bool = True,
                 dilation: IntOrTuple = 1, padding_mode: str = "zeros",
                 dtype: DTypeLike = np.float32, rng: Seed = None) -> None:
        super().__init__(num_spatial_dims, in_channels, out_channels, kernel_size,
                         stride, padding, dilation, groups, bias, padding_mode,
                         output_padding, dtype, rng)

    def forward(self, x: ArrayLike) -> NDArray[Any]:
        x = self._check_input(x)
        y = F.conv_transpose(x, self.weight.data, self._bias_data(), self.stride,
                             self.padding, self.output_padding, self.groups,
                             self.dilation)
        self._cache = x
        return y

    def backward(self, grad_out: ArrayLike) -> NDArray[Any]:
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        gx, gw, gb = F.conv_transpose_backward(
            grad_out, self._cache, self.weight.data, self.stride, self.padding,
            self.output_padding, self.groups, self.dilation)
        self._accumulate(gw, gb)
        return gx


if TYPE_CHECKING:  # fixed_ndim's classes as a type checker reads them (see without_ndim)
    class _ConvFixed(Conv):
        @without_ndim(Conv.__init__)
        def __init__(self, *args: Any, **kwargs: Any) -> None: ...

    class Conv1d(_ConvFixed): ...
    class Conv2d(_ConvFixed): ...
    class Conv3d(_ConvFixed): ...

    class _ConvTransposeFixed(ConvTranspose):
        @without_ndim(ConvTranspose.__init__)
        def __init__(self, *args: Any, **kwargs: Any) -> None: ...

    class ConvTranspose1d(_ConvTransposeFixed): ...
    class ConvTranspose2d(_ConvTransposeFixed): ...
    class ConvTranspose3d(_ConvTransposeFixed): ...
else:
    Conv1d, Conv2d, Conv3d = (fixed_ndim(Conv, n) for n in (1, 2, 3))
    ConvTranspose1d, ConvTranspose2d, ConvTranspose3d = (
        fixed_ndim(ConvTranspose, n) for n in (1, 2, 3))

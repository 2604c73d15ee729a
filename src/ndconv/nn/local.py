"""The layers before convolution: fully connected on images, and locally connected.

:class:`FullyConnected` is the lecture's starting point, ``h[i, j] = sum_{k,l}
w[i, j, k, l] x[k, l]``: every output position has its own weight for every
input position. :class:`LocallyConnected` applies locality only: each output
position has its own small kernel (no translation invariance), as Keras'
``LocallyConnected2D`` and JAX's ``lax.conv_general_dilated_local``.
:class:`ndconv.nn.Conv` applies both principles.

Both constructors check the bytes their parameters need against the memory
limit (:func:`ndconv.plan.memory_limit`) before allocating anything, because a
fully connected layer on one photo easily needs more than the machine has.
"""

from __future__ import annotations

import math
import string
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core import _args, _memory
from ..core._windows import pad, tap_slices, windows
from .init import as_dtype, as_rng
from .module import Module, Parameter

if TYPE_CHECKING:
    from ..core._typing import ArrayLike, DTypeLike, IntOrTuple, NDArray, Padding, Pairs, Seed, Shape

__all__ = [
    "FullyConnected",
    "LocallyConnected",
    "LocallyConnected1d",
    "LocallyConnected2d",
    "LocallyConnected3d",
]


def _uniform(shape: Shape, bound: float, rng: np.random.Generator,
             dtype: np.dtype[Any]) -> NDArray[Any]:
    """``U(-bound, bound)`` generated in ``dtype`` in place (no float64 temporary)."""
    a = rng.random(shape, dtype=dtype)
    a *= 2 * bound
    a -= bound
    return a


def _check_dtype(x: ArrayLike, dtype: np.dtype[Any], layer: str) -> NDArray[Any]:
    x = _args.check_array(x, "x")
    if x.dtype != dtype:
        raise TypeError(
            f"`x` (dtype {x.dtype}) and the {layer} parameters (dtype {dtype}) must "
            "have the same dtype; cast one of them with .astype()"
        )
    _args.check_no_empty(x, "x")
    return x


class FullyConnected(Module):
    """Every output element connected to every input element, shapes kept.

    ``y[b, *i] = sum_k weight[*i, *k] x[b, *k] + bias[*i]``: the lecture's
    ``h[i, j] = sum_{k, l} w[i, j, k, l] x[k, l]`` with any number of axes
    (channels included) on either side.

    Parameters
    ----------
    in_shape : int or tuple of int
        Shape of one input, e.g. ``(C_in, H, W)``.
    out_shape : int or tuple of int
        Shape of one output, e.g. ``(C_out, H, W)`` or ``100``.
    bias : bool
        A bias of shape ``out_shape``.
    dtype : float32 or float64
    rng : None, int or numpy.random.Generator
        Weights and bias from ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, fan_in =
        ``prod(in_shape)``, PyTorch's default for ``nn.Linear``.

    Raises
    ------
    ndconv.plan.MemoryLimitError
        Before allocating, when the parameters exceed the memory limit.

    Notes
    -----
    Input ``(B, *in_shape)`` or ``in_shape``; output ``(B, *out_shape)`` or
    ``out_shape``. The weight has shape ``out_shape + in_shape``, so
    ``np.tensordot(weight, x, axes=x.ndim)`` is the unbatched output, and
    ``ndconv.derive.conv_to_dense`` builds the weight of a convolution.
    """

    in_shape: Shape
    out_shape: Shape
    weight: Parameter
    bias: Parameter | None

    def __init__(self, in_shape: int | tuple[int, ...] | list[int], out_shape: int | tuple[int, ...] | list[int],
                 bias: bool = True, dtype: DTypeLike = np.float32, rng: Seed = None) -> None:
        super().__init__()
        self.in_shape = _args.shape_tuple(in_shape, "in_shape")
        self.out_shape = _args.shape_tuple(out_shape, "out_shape")
        dt = as_dtype(dtype)
        rng = as_rng(rng)
        n_in, n_out = math.prod(self.in_shape), math.prod(self.out_shape)
        count = n_out * n_in + (n_out if bias else 0)
        _memory.check(
            count * dt.itemsize,
            f"FullyConnected(in_shape={self.in_shape}, out_shape={self.out_shape}) "
            f"with {count:,} {dt.name} parameters",
        )
        bound = 1.0 / math.sqrt(n_in)
        self.weight = Parameter(_uniform(self.out_shape + self.in_shape, bound, rng, dt))
        self.bias = Parameter(_uniform(self.out_shape, bound, rng, dt)) if bias else None
        self._cache = None

    def extra_repr(self) -> str:
        s = f"in_shape={self.in_shape}, out_shape={self.out_shape}"
        return s + (", bias=False" if self.bias is None else "")

    def _batched(self, x: ArrayLike) -> tuple[NDArray[Any], bool]:
        x = _check_dtype(x, self.weight.dtype, "FullyConnected")
        if x.shape == self.in_shape:
            return x[None], True
        if x.shape[1:] == self.in_shape:
            return x, False
        raise ValueError(
            f"FullyConnected expects input of shape (B, *{self.in_shape}) or "
            f"{self.in_shape}; got {x.shape}"
        )

    def forward(self, x: ArrayLike) -> NDArray[Any]:
        xb, unbatched = self._batched(x)
        B = xb.shape[0]
        w = self.weight.data.reshape(-1, math.prod(self.in_shape))
        y = (xb.reshape(B, -1) @ w.T).reshape(B, *self.out_shape)
        if self.bias is not None:
            y += self.bias.data
        self._cache = (xb, unbatched)
        return y[0] if unbatched else y

    def backward(self, grad_out: ArrayLike) -> NDArray[Any]:
        if self._cache is None:
            raise RuntimeError("FullyConnected.backward called before forward")
        xb, unbatched = self._cache
        g = _args.check_array(grad_out, "grad_out")
        expected = self.out_shape if unbatched else (xb.shape[0], *self.out_shape)
        if g.shape != expected:
            raise ValueError(f"`grad_out` must have the output's shape {expected}, got {g.shape}")
        B = xb.shape[0]
        g2 = g.reshape(B, -1).astype(self.weight.dtype, copy=False)
        w = self.weight.data.reshape(g2.shape[1], -1)
        self.weight.accumulate((g2.T @ xb.reshape(B, -1)).reshape(self.weight.shape))
        if self.bias is not None:
            self.bias.accumulate(g2.sum(axis=0).reshape(self.out_shape))
        gx = (g2 @ w).reshape(xb.shape)
        return gx[0] if unbatched else gx


class LocallyConnected(Module):
    """N-d locally connected layer: a convolution whose kernel differs per output position.

    ``y[b, o, p] = sum_{c, t} weight[o, p, c, t] xp[b, c, p*stride + t*dilation]
    + bias[o, p]`` where ``xp`` is ``x`` zero-padded: locality without
    translation invariance, as Keras' ``LocallyConnected2D`` (with a bias per
    position) and JAX's ``conv_general_dilated_local``.

    Parameters
    ----------
    num_spatial_dims : int
    in_channels, out_channels : int
    kernel_size : int or tuple of int
    input_size : int or tuple of int
        Spatial size ``S`` of the input; fixed, because there is one kernel per
        output position.
    stride, dilation : int or tuple of int
    padding : int, tuple, tuple of (lo, hi) pairs, or {'valid', 'same', 'full'}
        Zero padding, as in :func:`ndconv.conv`.
    bias : bool
        A bias per output channel and position, shape ``(C_out, *S_out)``.
    dtype : float32 or float64
    rng : None, int or numpy.random.Generator
        ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` with fan_in = ``C_in * prod(K)``,
        as a convolution with the same kernel.

    Notes
    -----
    Input ``(B, C_in, *S)`` or ``(C_in, *S)``; output ``(B, C_out, *S_out)`` with
    ``S_out = floor((S + lo + hi - dilation*(K-1) - 1) / stride) + 1``. The
    weight has shape ``(C_out, *S_out, C_in, *K)``: ``weight[:, p]`` is the
    kernel of output position ``p``; a weight equal at every ``p`` makes the layer
    a :class:`ndconv.nn.Conv`. (JAX fuses it as ``(C_out, C_in * prod(K), *S_out)``.)
    """

    in_channels: int
    out_channels: int
    kernel_size: Shape
    input_size: Shape
    stride: Shape
    dilation: Shape
    pairs: Pairs
    padding: Padding  # as given
    output_size: Shape
    weight: Parameter
    bias: Parameter | None

    def __init__(self, num_spatial_dims: int, in_channels: int, out_channels: int,
                 kernel_size: IntOrTuple, input_size: IntOrTuple, stride: IntOrTuple = 1,
                 padding: Padding = 0, dilation: IntOrTuple = 1, bias: bool = True,
                 dtype: DTypeLike = np.float32, rng: Seed = None) -> None:
        super().__init__()
        n = _args.positive_int(num_spatial_dims, "num_spatial_dims")
        self.in_channels = _args.positive_int(in_channels, "in_channels")
        self.out_channels = _args.positive_int(out_channels, "out_channels")
        self.kernel_size = _args.ntuple(kernel_size, n, "kernel_size", minimum=1)
        self.input_size = _args.ntuple(input_size, n, "input_size", minimum=1, broadcast=False)
        self.stride = _args.ntuple(stride, n, "stride", minimum=1)
        self.dilation = _args.ntuple(dilation, n, "dilation", minimum=1)
        self.pairs = _args.padding_pairs(padding, self.kernel_size, self.dilation, self.stride)
        self.padding = padding
        self.output_size = _args.output_size(
            self.input_size, self.kernel_size, self.stride, self.pairs, self.dilation)
        dt = as_dtype(dtype)
        rng = as_rng(rng)
        shape = (self.out_channels, *self.output_size, self.in_channels, *self.kernel_size)
        bshape = (self.out_channels, *self.output_size)
        count = math.prod(shape) + (math.prod(bshape) if bias else 0)
        _memory.check(
            count * dt.itemsize,
            f"{type(self).__name__} with weight {shape} ({count:,} {dt.name} parameters)",
        )
        bound = 1.0 / math.sqrt(self.in_channels * math.prod(self.kernel_size))
        self.weight = Parameter(_uniform(shape, bound, rng, dt))
        self.bias = Parameter(_uniform(bshape, bound, rng, dt)) if bias else None
        self._cache = None
        # einsum subscripts: b batch, o/c channels, then one letter per position
        # axis and per kernel axis.
        letters = iter(string.ascii_letters.replace("b", "").replace("o", "").replace("c", ""))
        P = "".join(next(letters) for _ in range(n))
        K = "".join(next(letters) for _ in range(n))
        self._sub_x, self._sub_w, self._sub_y = f"bc{P}{K}", f"o{P}c{K}", f"bo{P}"

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"input_size={self.input_size}, stride={self.stride}")
        n = len(self.kernel_size)
        if any(v for pair in self.pairs for v in pair):
            s += f", padding={self.padding}"
        if self.dilation != (1,) * n:
            s += f", dilation={self.dilation}"
        return s + (", bias=False" if self.bias is None else "")

    def _batched(self, x: ArrayLike) -> tuple[NDArray[Any], bool]:
        x = _check_dtype(x, self.weight.dtype, type(self).__name__)
        n = len(self.kernel_size)
        expected = (self.in_channels, *self.input_size)
        if x.shape == expected:
            return x[None], True
        if x.ndim == n + 2 and x.shape[1:] == expected:
            return x, False
        raise ValueError(
            f"{type(self).__name__} expects input of shape (B, *{expected}) or "
            f"{expected} (its kernels are tied to positions, so the size is fixed); "
            f"got {x.shape}"
        )

    def _windows(self, xb: NDArray[Any]) -> NDArray[Any]:
        """(B, C, *S_out, *K) view of every window of the zero-padded input."""
        return windows(pad(xb, self.pairs), self.kernel_size, self.stride, self.dilation,
                       axis=-1)

    def forward(self, x: ArrayLike) -> NDArray[Any]:
        xb, unbatched = self._batched(x)
        win = self._windows(xb)
        y = np.einsum(f"{self._sub_x},{self._sub_w}->{self._sub_y}", win,
                      self.weight.data, optimize=True)
        if self.bias is not None:
            y += self.bias.data
        self._cache = (xb, unbatched)
        return y[0] if unbatched else y

    def backward(self, grad_out: ArrayLike) -> NDArray[Any]:
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        xb, unbatched = self._cache
        g = _args.check_array(grad_out, "grad_out")
        expected = (self.out_channels, *self.output_size)
        if not unbatched:
            expected = (xb.shape[0], *expected)
        if g.shape != expected:
            raise ValueError(f"`grad_out` must have the output's shape {expected}, got {g.shape}")
        gy = (g[None] if unbatched else g).astype(self.weight.dtype, copy=False)
        win = self._windows(xb)
        self.weight.accumulate(np.einsum(
            f"{self._sub_y},{self._sub_x}->{self._sub_w}", gy, win, optimize=True))
        if self.bias is not None:
            self.bias.accumulate(gy.sum(axis=0))
        gwin = np.einsum(f"{self._sub_y},{self._sub_w}->{self._sub_x}", gy,
                         self.weight.data, optimize=True)
        # Adjoint of the window view: add each tap's gradient back where that
        # tap read the padded input (a loop over taps, as the direct method).
        lead = xb.shape[:2]
        padded = tuple(s + lo + hi for s, (lo, hi) in zip(self.input_size, self.pairs))
        gxp = np.zeros((*lead, *padded), dtype=gy.dtype)
        for tap in np.ndindex(*self.kernel_size):
            sl = tap_slices(tap, self.stride, self.dilation, self.output_size)
            # (Tuples built first: mypy reads `a[(x, *y)]` as Python 3.11 syntax.)
            dst, src = (slice(None), slice(None), *sl), (Ellipsis, *tap)
            gxp[dst] += gwin[src]
        crop = (slice(None), slice(None),
                *(slice(lo, lo + s) for s, (lo, _) in zip(self.input_size, self.pairs)))
        gx = np.ascontiguousarray(gxp[crop])
        return gx[0] if unbatched else gx


def _fixed(n: int) -> type[LocallyConnected]:
    def __init__(self: LocallyConnected, in_channels: int, out_channels: int,
                 kernel_size: IntOrTuple, input_size: IntOrTuple, stride: IntOrTuple = 1,
                 padding: Padding = 0, dilation: IntOrTuple = 1, bias: bool = True,
                 dtype: DTypeLike = np.float32, rng: Seed = None) -> None:
        LocallyConnected.__init__(self, n, in_channels, out_channels, kernel_size,
                                  input_size, stride, padding, dilation, bias, dtype, rng)

    name = f"LocallyConnected{n}d"
    doc = f"{n}-D :class:`LocallyConnected`: ``(in_channels, out_channels, kernel_size, input_size, ...)``."
    return type(name, (LocallyConnected,), {"__init__": __init__, "__doc__": doc,
                                            "__module__": __name__})


if TYPE_CHECKING:  # _fixed's classes as a type checker reads them (see module.without_ndim)
    from .module import without_ndim

    class _LocallyConnectedFixed(LocallyConnected):
        @without_ndim(LocallyConnected.__init__)
        def __init__(self, *args: Any, **kwargs: Any) -> None: ...

    class LocallyConnected1d(_LocallyConnectedFixed): ...
    class LocallyConnected2d(_LocallyConnectedFixed): ...
    class LocallyConnected3d(_LocallyConnectedFixed): ...
else:
    LocallyConnected1d, LocallyConnected2d, LocallyConnected3d = (_fixed(n) for n in (1, 2, 3))

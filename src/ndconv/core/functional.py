"""Convolution functions: the lecture's ``Y = X * K + b`` and its gradients.

Everything here validates its arguments and then reduces to one primitive, the
general correlation of :class:`ndconv.algorithms.CorrSpec` (JAX's
``conv_general_dilated``): the forward pass is that correlation, the gradient
with respect to the input is a correlation of the output gradient with the
flipped kernel (stride becomes input dilation), and the gradient with respect
to the kernel is a correlation of the input with the output gradient (stride
and dilation swap places). So every algorithm serves the backward pass too.

Each public function resolves the array library of its arguments once
(:func:`ndconv.core._backends.resolve`) and validates and computes through that
backend: NumPy arrays take the tuned NumPy algorithms, arrays of other
array-API libraries (PyTorch, JAX, CuPy, ...) the portable and native ones,
dask arrays a lazy chunked correlation; the result is an array of the
input's library. The type hints say so: each array function is overloaded,
a NumPy array in gives an ``NDArray`` (in its dtype where the result keeps
it), an array of another library (:class:`~ndconv.core._typing.ArrayAPIArray`)
its own type, a nested list an ``NDArray``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast, overload

import numpy as np

from . import _args, _dtypes
from ._backends import NUMPY, resolve
from ._windows import fold_padding, fold_padding_portable
from .algorithms import CorrSpec, Prepared, prepare, run_prepared

if TYPE_CHECKING:
    from typing import Protocol

    from ._backends import Backend
    from ._typing import (AnyArray, Array, ArrayLike, ArrayT, IntOrTuple, NDArray, Padding,
                          Scalar, ScalarT, Shape)

__all__ = [
    "conv",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_backward",
    "conv_transpose",
    "conv_transpose_backward",
    "conv_output_shape",
    "choose_method",
    "correlate",
    "convolve",
]


# --------------------------------------------------------------------------
# validation shared by the conv family


def _check_method(method: object) -> str:
    from .algorithms import ALGORITHMS

    if not isinstance(method, str) or (method != "auto" and method not in ALGORITHMS):
        raise ValueError(
            f"`method` (={method!r}) must be 'auto' or one of {tuple(ALGORITHMS)}"
        )
    return method


def _check_weight(
    be: Backend, weight: Array, name: str = "weight", *, transposed: bool = False
) -> AnyArray:
    w = be.array(weight, name, dtypes=_dtypes.conv_dtypes(), kernel=True)
    if w.ndim < 3:
        raise ValueError(
            f"`{name}` must have shape (C_out, C_in // groups, *kernel_size) with at "
            f"least one spatial dim, got shape {tuple(w.shape)}"
        )
    # PyTorch: no input channels is an empty sum (conv only); no output
    # channels or an empty kernel is refused.
    if transposed:
        _args.check_empty_dims(w.shape, name, (), "no dim of a transposed convolution's weight")
    else:
        _args.check_empty_dims(w.shape, name, (1,), "the input-channel dim (C_in // groups)")
    return w


def _check_input(be: Backend, x: Array, w: AnyArray, name: str = "x") -> tuple[AnyArray, bool]:
    """Validate ``x`` against ``w``; return the batched input and the unbatched flag."""
    a = be.array(x, name, dtypes=_dtypes.conv_dtypes())
    n = w.ndim - 2
    if a.ndim not in (n + 1, n + 2):
        raise ValueError(
            f"`{name}` must have shape (B, C, *S) or (C, *S) with {n} spatial dims "
            f"(the weight has {n}), so ndim {n + 2} or {n + 1}; got shape {tuple(a.shape)}"
        )
    if a.dtype != w.dtype:
        raise TypeError(
            f"`{name}` (dtype {a.dtype}) and `weight` (dtype {w.dtype}) must have the "
            "same dtype; cast one of them with .astype()"
        )
    unbatched = a.ndim == n + 1
    _args.check_empty_dims(tuple(a.shape), name, (0,) if unbatched else (0, 1),
                           "the batch and channel dims")
    return (be.batched(a) if unbatched else a), unbatched


def _check_bias(
    be: Backend, bias: Array | None, channels: int, dtype: Any
) -> AnyArray | None:
    if bias is None:
        return None
    b = be.array(bias, "bias", dtypes=_dtypes.conv_dtypes(), kernel=True)
    if tuple(b.shape) != (channels,):
        raise ValueError(
            f"`bias` must have shape ({channels},), one value per output channel; got "
            f"shape {tuple(b.shape)}"
        )
    if b.dtype != dtype:
        raise TypeError(f"`bias` (dtype {b.dtype}) must have the dtype of `x` ({dtype})")
    return b


def _check_groups(groups: int, in_channels: int, out_channels: int, weight_in: int) -> int:
    g = _args.positive_int(groups, "groups")
    if in_channels % g:
        raise ValueError(
            f"`in_channels` (={in_channels}) must be divisible by `groups` (={g})"
        )
    if out_channels % g:
        raise ValueError(
            f"`out_channels` (={out_channels}) must be divisible by `groups` (={g})"
        )
    if weight_in * g != in_channels:
        raise ValueError(
            f"`weight` has {weight_in} input channels per group, so with groups={g} "
            f"it expects {weight_in * g} input channels; `x` has {in_channels}"
        )
    return g


def _conv_spec(
    x: AnyArray,
    w: AnyArray,
    stride: IntOrTuple,
    padding: Padding,
    dilation: IntOrTuple,
    groups: int,
    padding_mode: str,
    be: Backend = NUMPY,
) -> CorrSpec:
    """Validate a forward convolution and describe it as a :class:`CorrSpec`."""
    n = w.ndim - 2
    B, C = x.shape[:2]
    O = w.shape[0]
    K = tuple(w.shape[2:])
    S = tuple(x.shape[2:])
    g = _check_groups(groups, C, O, w.shape[1])
    stride = _args.ntuple(stride, n, "stride", minimum=1)
    dilation = _args.ntuple(dilation, n, "dilation", minimum=1)
    pairs = _args.padding_pairs(padding, K, dilation, stride)
    padding_mode = _args.check_padding_mode(padding_mode)
    _args.check_padded_size(S, pairs)
    _args.check_mode_fits(S, pairs, padding_mode)
    _args.output_size(S, K, stride, pairs, dilation)
    return CorrSpec(
        batch=B, in_channels=C, out_channels=O, groups=g, in_spatial=S,
        kernel_size=K, stride=stride, dilation=dilation, pairs=pairs,
        lhs_dilation=(1,) * n, padding_mode=padding_mode,
        dtype=be.numpy_dtype(x.dtype), xp=be.spec_xp,
    )


# --------------------------------------------------------------------------
# the three computing cores (private: arguments already validated)


def _for_gradient(method: str, spec: CorrSpec, kernel: AnyArray) -> str:
    """``method``, or 'auto' where it cannot take this gradient's correlation.

    A gradient's correlation differs from the forward's (channels per group
    swap, stride becomes input dilation; the weight gradient's kernel is the
    output gradient), so a method chosen for the forward (depthwise with a
    channel multiplier, winograd; separable, whose kernel must be rank 1) may
    not take it; choosing the layer's method should not make its gradients
    fail, so 'auto' computes that one.
    """
    from .algorithms import ALGORITHMS

    if method == "auto":
        return method
    algo = ALGORITHMS[method]
    if not algo.accepts(spec)[0] or (algo.applies is not None and algo.applies(spec, kernel)):
        return "auto"
    return method


def _input_grad_spec(spec: CorrSpec, P: Shape) -> CorrSpec:
    """The correlation that gives the input gradient, for an output gradient of spatial size ``P``."""
    n = spec.ndim
    full = [d * (k - 1) for k, d in zip(spec.kernel_size, spec.dilation)]
    # The transposed correlation covers (P-1)*s + d*(k-1) + 1 padded positions;
    # padded positions beyond that (stride remainder) get zero gradient.
    # (Use gy's own size: a transposed conv's output_padding >= stride makes
    # it one less than spec.out_spatial.)
    extra = [
        sp - ((p - 1) * s + f + 1)
        for sp, p, s, f in zip(spec.padded_spatial, P, spec.stride, full)
    ]
    zeros = spec.padding_mode == "zeros"
    # With zero padding the padded border is cropped away by negative padding;
    # other modes need the gradient of the padded array, folded back below.
    tpairs = tuple(
        (f - (lo if zeros else 0), f + e - (hi if zeros else 0))
        for f, e, (lo, hi) in zip(full, extra, spec.pairs)
    )
    return CorrSpec(
        batch=spec.batch, in_channels=spec.out_channels, out_channels=spec.in_channels,
        groups=spec.groups, in_spatial=P, kernel_size=spec.kernel_size, stride=(1,) * n,
        dilation=spec.dilation, pairs=tpairs, lhs_dilation=spec.stride,
        padding_mode="zeros", dtype=spec.dtype, xp=spec.xp,
    )


def _input_grad(
    be: Backend, gy: AnyArray, w: AnyArray, spec: CorrSpec, method: str, gradient: bool = False,
    prepared: Prepared | None = None,
) -> AnyArray:
    """Gradient of ``sum(gy * corr(x, w))`` with respect to ``x`` (B, C, *S).

    ``gradient=True`` (a backward pass, not conv_transpose's forward) lets
    :func:`_for_gradient` replace a method that cannot take it. ``prepared``
    (a :class:`~ndconv.core.algorithms.Prepared` of :func:`_input_grad_spec`,
    for ``method='auto'``) skips building and deciding the correlation again.
    """
    n = spec.ndim
    g = spec.groups
    O, Cg = w.shape[:2]
    K = spec.kernel_size
    # Flipped kernel with input and output channels swapped inside each group.
    wt = be.flip(w, tuple(range(2, 2 + n)))
    wt = be.permute(be.reshape(wt, (g, O // g, Cg, *K)), (0, 2, 1, *range(3, 3 + n)))
    wt = be.contiguous(be.reshape(wt, (g * Cg, O // g, *K)))
    if prepared is not None:
        gx = run_prepared(prepared, gy, wt)
    else:
        tspec = _input_grad_spec(spec, tuple(gy.shape[2:]))
        if gradient:
            method = _for_gradient(method, tspec, wt)
        gx = be.correlate(gy, wt, tspec, method)
    if spec.padding_mode != "zeros":
        if be.numpy:
            gx = fold_padding(gx, spec.in_spatial, spec.pairs, spec.padding_mode)
        else:
            gx = fold_padding_portable(be.xp, gx, spec.in_spatial, spec.pairs,
                                       spec.padding_mode)
    return gx


def _weight_grad_spec(spec: CorrSpec, P: Shape) -> CorrSpec:
    """The correlation that gives the weight gradient (see :func:`_weight_grad`)."""
    g = spec.groups
    return CorrSpec(
        batch=spec.in_channels // g, in_channels=g * spec.batch,
        out_channels=spec.out_channels, groups=g, in_spatial=spec.in_spatial,
        kernel_size=P, stride=spec.dilation, dilation=spec.stride, pairs=spec.pairs,
        lhs_dilation=(1,) * spec.ndim, padding_mode=spec.padding_mode, dtype=spec.dtype,
        xp=spec.xp,
    )


def _weight_grad(
    be: Backend, gy: AnyArray, x: AnyArray, spec: CorrSpec, method: str,
    prepared: Prepared | None = None,
) -> AnyArray:
    """Gradient of ``sum(gy * corr(x, w))`` with respect to ``w`` (O, Cg, *K).

    ``prepared``: as for :func:`_input_grad`, of :func:`_weight_grad_spec`.
    """
    n = spec.ndim
    g = spec.groups
    B, C, O = spec.batch, spec.in_channels, spec.out_channels
    Cg, Og = C // g, O // g
    S, P = spec.in_spatial, tuple(gy.shape[2:])  # see _input_grad_spec for why not out_spatial
    sp = tuple(range(3, 3 + n))
    # Input channels become the batch, batch items become the channels.
    xt = be.reshape(be.permute(be.reshape(x, (B, g, Cg, *S)), (2, 1, 0, *sp)),
                    (Cg, g * B, *S))
    gt = be.reshape(be.permute(be.reshape(gy, (B, g, Og, *P)), (1, 2, 0, *sp)),
                    (O, B, *P))
    # The kernel here is the output gradient (many taps, B channels per
    # group), which per-tap-shaped methods (winograd: 3x3 only; depthwise:
    # 1 channel per group) cannot take. NumPy's stays a view: the dispatcher
    # copies it for the methods that need a C-contiguous kernel (Winograd's
    # reads it in place; the copy was 4 ms of a 64-channel backward).
    if not be.numpy:
        gt = be.contiguous(gt)
    if prepared is not None:
        r = run_prepared(prepared, xt, gt)
    else:
        wspec = _weight_grad_spec(spec, P)
        r = be.correlate(xt, gt, wspec, _for_gradient(method, wspec, gt))
    # With stride > dilation the correlation can reach past the kernel; crop.
    crop = (Ellipsis, *[slice(0, k) for k in spec.kernel_size])
    r = r[crop]
    return be.contiguous(be.permute(r, (1, 0, *range(2, 2 + n))))


# --------------------------------------------------------------------------
# prepared calls: a layer repeats the same shapes and arguments every step

#: ``{key: prepared call}`` of :func:`conv` and :func:`conv_backward`.
_PREPARED = _args.Memo()


def _plain_key(x: object, weight: object, bias: object, extra: object,
               *args: object) -> tuple[Any, ...] | None:
    """The memo key of a call on plain NumPy float32/float64 arrays, or None.

    Everything validation reads is in it (shapes, dtypes, ``extra`` (the
    other arrays' shapes and dtypes), the arguments as
    :func:`ndconv.core._args.exact_key` keeps them), so a call whose key was
    seen validated passes validation again and may skip it; values are not
    in it, and nothing computed from values is kept.
    """
    if type(x) is not np.ndarray or type(weight) is not np.ndarray:
        return None
    if bias is not None and type(bias) is not np.ndarray:
        return None
    if x.dtype not in _dtypes.FLOAT:
        return None
    rest = _args.exact_key(*args)
    if rest is None:
        return None
    return (x.shape, x.dtype, weight.shape, weight.dtype,
            None if bias is None else (bias.shape, bias.dtype), extra, rest)


# --------------------------------------------------------------------------
# public API


@overload
def conv(
    x: NDArray[ScalarT],
    weight: ArrayLike,
    bias: ArrayLike | None = None,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    *,
    method: str = "auto",
) -> NDArray[ScalarT]: ...

@overload
def conv(
    x: ArrayT,
    weight: ArrayT | ArrayLike,
    bias: ArrayT | ArrayLike | None = None,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    *,
    method: str = "auto",
) -> ArrayT: ...

@overload
def conv(
    x: ArrayLike,
    weight: ArrayLike,
    bias: ArrayLike | None = None,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    *,
    method: str = "auto",
) -> NDArray[Any]: ...


def conv(
    x: Array,
    weight: Array,
    bias: Array | None = None,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    *,
    method: str = "auto",
) -> AnyArray:
    """N-d convolution (cross-correlation) with bias, as ``torch.nn.functional.convNd``.

    The number of spatial dims ``N`` is ``weight.ndim - 2``.

    Parameters
    ----------
    x : ndarray, shape (B, C_in, *S) or (C_in, *S)
        float32, float64, float16 or bfloat16 (computed in float32, rounded
        once), complex64 or complex128 (no conjugation, as PyTorch), or an
        integer dtype (exact; wraps around on overflow as NumPy). ``B`` and
        ``C_in`` may be 0: an empty batch gives an empty output, no input
        channels an empty sum (the output is the bias).
    weight : ndarray, shape (C_out, C_in // groups, *K)
        Same dtype as ``x``.
    bias : ndarray, shape (C_out,), optional
    stride, dilation : int or tuple of N ints, positive
    padding : int, tuple of N ints, tuple of N (lo, hi) pairs, or {'valid', 'same', 'full'}
        ``'same'`` (stride 1 only) pads ``d*(k-1)`` in total per dim, the extra
        element at the end for even kernels, as PyTorch.
    groups : int
        Split channels into ``groups`` independent convolutions.
    padding_mode : {'zeros', 'reflect', 'replicate', 'circular'}
        How the padded border is filled, as ``torch.nn.Conv*d``.
    method : {'auto', 'direct', 'gemm', ...}
        Algorithm; ``'auto'`` asks :func:`ndconv.choose_method`.

    Returns
    -------
    ndarray, shape (B, C_out, *S_out) or (C_out, *S_out)
        ``S_out = floor((S + lo + hi - dilation*(K-1) - 1) / stride) + 1``.

    Notes
    -----
    ``x``, ``weight`` and ``bias`` may be arrays of any array-API library
    (PyTorch, JAX, CuPy, ``array_api_strict``; ``pip install 'ndconv[array]'``),
    all of one library: the result is an array of that library, on its
    device, and autograd / ``jax.grad`` differentiate through it; a dask
    ``x`` gives a lazy result (:mod:`ndconv.dask`). Mixing libraries is a
    ``TypeError``. So do the other functions of this module.

    Examples
    --------
    The lecture's worked example, one channel in and out:

    >>> import numpy as np, ndconv
    >>> x = np.arange(9.0).reshape(1, 3, 3)
    >>> k = np.array([[[[0.0, 1.0], [2.0, 3.0]]]])
    >>> ndconv.conv(x, k)
    array([[[19., 25.],
            [37., 43.]]])
    """
    key = _plain_key(x, weight, bias, "conv", stride, padding, dilation, groups,
                     padding_mode, method)
    hit = None if key is None else _PREPARED.get(key)
    if hit is not None:  # (the key says: plain float ndarrays)
        prepared, unbatched = hit
        xa = cast("NDArray[Any]", x)
        out = run_prepared(prepared, xa[None] if unbatched else xa, weight,
                           cast("NDArray[Any] | None", bias))
        return out[0, ...] if unbatched else out
    be = resolve(x=x, weight=weight, bias=bias)
    method = _check_method(method)
    w = _check_weight(be, weight)
    xb, unbatched = _check_input(be, x, w)
    spec = _conv_spec(xb, w, stride, padding, dilation, groups, padding_mode, be)
    b = _check_bias(be, bias, w.shape[0], w.dtype)
    # Half precision: compute and add the bias in float32, round once.
    spec, (xb, w, b), dtype = be.to_compute(spec, xb, w, b)
    if key is not None:
        _PREPARED.put(key, (prepare(spec, method), unbatched))
    out = be.astype(be.correlate(xb, w, spec, method, bias=b), dtype)
    return out[0, ...] if unbatched else out


if TYPE_CHECKING:

    class _ConvNd(Protocol):
        """The signature of :func:`conv1d`, :func:`conv2d`, :func:`conv3d`: :func:`conv`'s."""

        @overload
        def __call__(
            self,
            x: NDArray[ScalarT],
            weight: ArrayLike,
            bias: ArrayLike | None = None,
            stride: IntOrTuple = 1,
            padding: Padding = 0,
            dilation: IntOrTuple = 1,
            groups: int = 1,
            padding_mode: str = "zeros",
            *,
            method: str = "auto",
        ) -> NDArray[ScalarT]: ...

        @overload
        def __call__(
            self,
            x: ArrayT,
            weight: ArrayT | ArrayLike,
            bias: ArrayT | ArrayLike | None = None,
            stride: IntOrTuple = 1,
            padding: Padding = 0,
            dilation: IntOrTuple = 1,
            groups: int = 1,
            padding_mode: str = "zeros",
            *,
            method: str = "auto",
        ) -> ArrayT: ...

        @overload
        def __call__(
            self,
            x: ArrayLike,
            weight: ArrayLike,
            bias: ArrayLike | None = None,
            stride: IntOrTuple = 1,
            padding: Padding = 0,
            dilation: IntOrTuple = 1,
            groups: int = 1,
            padding_mode: str = "zeros",
            *,
            method: str = "auto",
        ) -> NDArray[Any]: ...


def _conv_n(n: int) -> _ConvNd:
    def fn(
        x: Array,
        weight: Array,
        bias: Array | None = None,
        stride: IntOrTuple = 1,
        padding: Padding = 0,
        dilation: IntOrTuple = 1,
        groups: int = 1,
        padding_mode: str = "zeros",
        *,
        method: str = "auto",
    ) -> AnyArray:
        w = _check_weight(resolve(x=x, weight=weight, bias=bias), weight)
        if w.ndim != n + 2:
            raise ValueError(
                f"conv{n}d needs a weight with {n} spatial dims, shape "
                f"(C_out, C_in // groups{', k' * n}); got shape {tuple(w.shape)}"
            )
        return conv(x, w, bias, stride, padding, dilation, groups, padding_mode,
                    method=method)

    fn.__name__ = fn.__qualname__ = f"conv{n}d"
    fn.__doc__ = f"{n}-D :func:`conv`; raises ValueError unless ``weight.ndim == {n + 2}``."
    return fn


conv1d: _ConvNd = _conv_n(1)
conv2d: _ConvNd = _conv_n(2)
conv3d: _ConvNd = _conv_n(3)


def conv_output_shape(
    input_shape: Sequence[int],
    weight_shape: Sequence[int],
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
) -> Shape:
    """Spatial output shape of :func:`conv` without computing anything.

    The same rules as :func:`conv`: one-element ``stride``, ``padding`` and
    ``dilation`` tuples apply to every dim, and only the batch and channel
    entries of ``input_shape`` may be 0.
    """
    k = tuple(weight_shape[2:])
    n = len(k)
    input_shape = tuple(input_shape)
    _args.check_empty_dims(input_shape, "input_shape", range(len(input_shape) - n),
                           "the batch and channel dims")
    _args.check_empty_dims(k, "kernel_size", (), "no entry")
    stride = _args.ntuple(stride, n, "stride", minimum=1)
    dilation = _args.ntuple(dilation, n, "dilation", minimum=1)
    pairs = _args.padding_pairs(padding, k, dilation, stride)
    return _args.output_size(tuple(input_shape[-n:]), k, stride, pairs, dilation)


def choose_method(
    x: Array,
    weight: Array,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    *,
    measure: bool = False,
) -> tuple[str, str]:
    """Which algorithm ``conv(x, weight, ..., method='auto')`` uses, and why.

    Parameters
    ----------
    x, weight, stride, padding, dilation, groups, padding_mode
        As given to :func:`conv`.
    measure : bool
        If True, time the plausible algorithms on ``x`` and ``weight`` (each
        twice, the faster run kept) and pick the fastest, as
        ``scipy.signal.choose_conv_method(measure=True)``; otherwise use the
        cost model of :mod:`ndconv.algorithms.choose`, leaving out, as
        ``method='auto'`` does, methods that would spread these arrays'
        NaN/Inf, break the direct formula's error bound on their dynamic
        range, or exceed the memory limit (one pass over ``x``, no convolution).

    Returns
    -------
    method : str
        A key of ``ndconv.algorithms.ALGORITHMS``, always one whose
        ``supports()`` accepts these arguments.
    reason : str
        The estimated (or measured) time of the winner and of the others,
        and why any algorithm was ruled out.

    Notes
    -----
    :func:`conv_backward` chooses separately for each gradient, which is a
    correlation of its own (the weight gradient's "kernel" is the output
    gradient, with many taps, so FFT or GEMM often wins there).

    Examples
    --------
    >>> import numpy as np, ndconv
    >>> x = np.zeros((1, 1, 512, 512), np.float32)
    >>> ndconv.choose_method(x, np.zeros((1, 1, 31, 31), np.float32))[0]
    'fft'
    """
    from .algorithms.choose import choose

    be = resolve(x=x, weight=weight)
    w = _check_weight(be, weight)
    xb, _ = _check_input(be, x, w)
    spec = _conv_spec(xb, w, stride, padding, dilation, groups, padding_mode, be)
    if not isinstance(measure, (bool, np.bool_)):
        raise TypeError(f"`measure` (={measure!r}) must be True or False")
    # What runs is the computation in the compute dtype (float32 for halves).
    cdt = spec.compute_dtype
    spec = dataclasses.replace(spec, dtype=cdt)
    return choose(spec, measure=bool(measure), x=be.astype(xb, cdt), w=be.astype(w, cdt))


@overload
def conv_backward(
    grad_out: ArrayLike,
    x: NDArray[ScalarT],
    weight: ArrayLike,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    *,
    method: str = "auto",
    input_grad: bool = True,
) -> tuple[NDArray[ScalarT], NDArray[ScalarT], NDArray[ScalarT]]: ...

@overload
def conv_backward(
    grad_out: ArrayT | ArrayLike,
    x: ArrayT,
    weight: ArrayT | ArrayLike,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    *,
    method: str = "auto",
    input_grad: bool = True,
) -> tuple[ArrayT, ArrayT, ArrayT]: ...

@overload
def conv_backward(
    grad_out: ArrayLike,
    x: ArrayLike,
    weight: ArrayLike,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    *,
    method: str = "auto",
    input_grad: bool = True,
) -> tuple[NDArray[Any], NDArray[Any], NDArray[Any]]: ...


def conv_backward(
    grad_out: Array,
    x: Array,
    weight: Array,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    *,
    method: str = "auto",
    input_grad: bool = True,
) -> tuple[AnyArray, AnyArray, AnyArray]:
    """Exact gradients of :func:`conv`.

    Parameters
    ----------
    grad_out : ndarray, shape of ``conv(x, weight, ...)``
        Gradient of the loss with respect to the convolution's output.
    x, weight, stride, padding, dilation, groups, padding_mode, method
        As given to :func:`conv`. ``method`` computes both gradients, except
        that a method which cannot take a gradient's correlation (the weight
        gradient's kernel is ``grad_out``: winograd needs 3x3, depthwise one
        channel per group; the input gradient of a depthwise conv with a
        channel multiplier has several channels per group) leaves that one to
        ``'auto'``.
    input_grad : bool
        False: skip ``grad_x`` (returned as None), as PyTorch does for an input
        that does not require a gradient (a network's first layer: its
        correlation is a third of the work).

    Returns
    -------
    grad_x : ndarray, shape of ``x``, or None with ``input_grad=False``
    grad_weight : ndarray, shape of ``weight``
    grad_bias : ndarray, shape (C_out,)

    Notes
    -----
    Complex inputs follow PyTorch's autograd (the conjugate Wirtinger
    derivative of a real loss): ``grad_x`` uses ``conj(weight)`` and
    ``grad_weight`` uses ``conj(x)``. ``grad_x`` is the correlation of ``grad_out`` (dilated by the stride) with the
    flipped kernel; ``grad_weight`` is the correlation of the padded input with
    ``grad_out`` as the kernel, stride and dilation swapped.
    """
    if input_grad is not True and input_grad is not False:
        raise TypeError(f"`input_grad` (={input_grad!r}) must be True or False")
    key = None
    if type(grad_out) is np.ndarray and method == "auto":
        key = _plain_key(x, weight, None, ("conv_backward", grad_out.shape, grad_out.dtype),
                         stride, padding, dilation, groups, padding_mode)
    hit = None if key is None else _PREPARED.get(key)
    if hit is not None:  # plain float ndarrays (the key says): no conjugates
        spec, unbatched, for_x, for_w = hit
        ga, xa = cast("NDArray[Any]", grad_out), cast("NDArray[Any]", x)
        gyb = ga[None] if unbatched else ga
        xb = xa[None] if unbatched else xa
        gb = NUMPY.sum_to(gyb, (0, *range(2, gyb.ndim)), gyb.dtype)
        if not input_grad:
            return None, _weight_grad(NUMPY, gyb, xb, spec, method, prepared=for_w), gb
        gw, gx = _both_grads(
            spec, lambda: _weight_grad(NUMPY, gyb, xb, spec, method, prepared=for_w),
            lambda: _input_grad(NUMPY, gyb, weight, spec, method, gradient=True,
                                prepared=for_x))
        return (gx[0, ...] if unbatched else gx), gw, gb
    be = resolve(grad_out=grad_out, x=x, weight=weight)
    method = _check_method(method)
    w = _check_weight(be, weight)
    xb, unbatched = _check_input(be, x, w)
    spec = _conv_spec(xb, w, stride, padding, dilation, groups, padding_mode, be)
    gy = be.array(grad_out, "grad_out", dtypes=_dtypes.conv_dtypes())
    expected = spec.out_shape[1:] if unbatched else spec.out_shape
    if tuple(gy.shape) != tuple(expected):
        raise ValueError(
            f"`grad_out` must have the output's shape {tuple(expected)}, got "
            f"{tuple(gy.shape)}"
        )
    if gy.dtype != w.dtype:
        raise TypeError(f"`grad_out` (dtype {gy.dtype}) must have dtype {w.dtype}")
    if method != "auto":
        from .algorithms import ALGORITHMS

        ok, why = ALGORITHMS[method].accepts(spec)
        if not ok:  # as conv(method=...) would: the layer's own method must fit
            raise ValueError(f"`method`={method!r} cannot compute this correlation: {why}")
    gyb = be.batched(gy) if unbatched else gy
    if key is not None:
        P = tuple(gyb.shape[2:])
        _PREPARED.put(key, (spec, unbatched, prepare(_input_grad_spec(spec, P)),
                            prepare(_weight_grad_spec(spec, P))))
    # Complex: PyTorch's convention, the gradient of a real loss is taken
    # with respect to the conjugate (Wirtinger), so each gradient multiplies
    # grad_out by the conjugate of the other operand.
    gb = be.sum_to(gyb, (0, *range(2, gyb.ndim)), gyb.dtype)
    xc = be.conj(xb)
    if not input_grad:
        return None, _weight_grad(be, gyb, xc, spec, method), gb
    wc = be.conj(w)
    gw, gx = _both_grads(spec, lambda: _weight_grad(be, gyb, xc, spec, method),
                         lambda: _input_grad(be, gyb, wc, spec, method, gradient=True))
    return (gx[0, ...] if unbatched else gx), gw, gb


#: Multiply-adds of a layer from which :func:`conv_backward` computes its two
#: gradients side by side (each a correlation of the layer's size).
BOTH_GRADS_MACS = 2**27


def _both_grads(spec: CorrSpec, weight: Callable[[], Any],
                inp: Callable[[], Any]) -> tuple[Any, Any]:
    """``(weight(), inp())``: the weight and input gradients of a backward
    pass, side by side (each on half of the threads) for NumPy arrays and a
    layer of :data:`BOTH_GRADS_MACS` or more; other libraries' one after the other.

    On 2 cores each gradient alone scales poorly (its survey of grad_out,
    the kernel copies and transforms are serial; a 128-channel 28x28 layer's
    backward: 24 ms on 2 threads against 29 on one), and the two are
    independent: side by side, one's serial parts overlap the other's work.
    Both hold their workspaces at once, so not under a memory limit set by
    the user (the guard checks each alone) nor for layers whose arrays are
    past the guard's size.
    """
    from . import _memory
    from .algorithms import GUARD_BYTES, padded_and_output_bytes
    from .algorithms.threads import side_by_side

    if (not spec.numpy or spec.macs < BOTH_GRADS_MACS
            or padded_and_output_bytes(spec) > GUARD_BYTES or _memory.has_explicit_limit()):
        return weight(), inp()
    return side_by_side(weight, inp)


def _transpose_spec(
    x: AnyArray,
    w: AnyArray,
    stride: IntOrTuple,
    padding: IntOrTuple,
    output_padding: IntOrTuple,
    groups: int,
    dilation: IntOrTuple,
    be: Backend = NUMPY,
) -> CorrSpec:
    """Validate a transposed convolution; return the spec of the conv it transposes."""
    n = w.ndim - 2
    B, C_in = x.shape[:2]
    K = tuple(w.shape[2:])
    g = _args.positive_int(groups, "groups")
    if w.shape[0] != C_in:
        raise ValueError(
            f"`weight` of a transposed convolution has shape (C_in, C_out // groups, "
            f"*K); its first dim ({w.shape[0]}) must equal the channels of `x` ({C_in})"
        )
    if C_in % g:
        raise ValueError(f"`in_channels` (={C_in}) must be divisible by `groups` (={g})")
    stride = _args.ntuple(stride, n, "stride", minimum=1)
    dilation = _args.ntuple(dilation, n, "dilation", minimum=1)
    if isinstance(padding, str):
        raise ValueError(
            f"`padding` (={padding!r}) of a transposed convolution must be an int or "
            "a tuple of ints"
        )
    pad = _args.ntuple(padding, n, "padding", minimum=0)
    opad = _args.ntuple(output_padding, n, "output_padding", minimum=0)
    for i, (op, s, d) in enumerate(zip(opad, stride, dilation)):
        if op >= s and op >= d:
            raise ValueError(
                f"`output_padding` (={output_padding!r}) must be smaller than either "
                f"`stride` or `dilation` in every dim; dim {i}: output_padding {op}, "
                f"stride {s}, dilation {d}"
            )
    out = _args.transposed_output_size(x.shape[2:], K, stride, pad, opad, dilation)
    # The transposed convolution is the input-gradient of this forward conv,
    # which maps (B, C_out, *out) to (B, C_in, *S).
    return CorrSpec(
        batch=B, in_channels=w.shape[1] * g, out_channels=C_in, groups=g,
        in_spatial=tuple(out), kernel_size=K, stride=stride, dilation=dilation,
        pairs=tuple((p, p) for p in pad), lhs_dilation=(1,) * n,
        padding_mode="zeros", dtype=be.numpy_dtype(x.dtype), xp=be.spec_xp,
    )


@overload
def conv_transpose(
    x: NDArray[ScalarT],
    weight: ArrayLike,
    bias: ArrayLike | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
    *,
    method: str = "auto",
) -> NDArray[ScalarT]: ...

@overload
def conv_transpose(
    x: ArrayT,
    weight: ArrayT | ArrayLike,
    bias: ArrayT | ArrayLike | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
    *,
    method: str = "auto",
) -> ArrayT: ...

@overload
def conv_transpose(
    x: ArrayLike,
    weight: ArrayLike,
    bias: ArrayLike | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
    *,
    method: str = "auto",
) -> NDArray[Any]: ...


def conv_transpose(
    x: Array,
    weight: Array,
    bias: Array | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
    *,
    method: str = "auto",
) -> AnyArray:
    """Transposed convolution, as ``torch.nn.functional.conv_transposeNd``.

    It is the gradient of :func:`conv` with respect to its input, used as a
    layer: each input element scatters a copy of the kernel into the output.

    Parameters
    ----------
    x : ndarray, shape (B, C_in, *S) or (C_in, *S)
    weight : ndarray, shape (C_in, C_out // groups, *K)
    bias : ndarray, shape (C_out,), optional
    stride, padding, output_padding, dilation : int or tuple of N ints
        ``output_padding`` must be smaller than ``stride`` or ``dilation``.
    groups : int
    method : str
        Algorithm of the underlying correlation.

    Returns
    -------
    ndarray, shape (B, C_out, *S_out)
        ``S_out = (S - 1)*stride - 2*padding + dilation*(K - 1) + output_padding + 1``.
    """
    be = resolve(x=x, weight=weight, bias=bias)
    method = _check_method(method)
    w = _check_weight(be, weight, transposed=True)
    xb, unbatched = _check_input(be, x, w)
    spec = _transpose_spec(xb, w, stride, padding, output_padding, groups, dilation, be)
    b = _check_bias(be, bias, spec.in_channels, w.dtype)
    spec, (xb, w, b), dtype = be.to_compute(spec, xb, w, b)  # as conv
    out = be.astype(be.add_bias(_input_grad(be, xb, w, spec, method), b), dtype)
    return out[0, ...] if unbatched else out


@overload
def conv_transpose_backward(
    grad_out: ArrayLike,
    x: NDArray[ScalarT],
    weight: ArrayLike,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
    *,
    method: str = "auto",
) -> tuple[NDArray[ScalarT], NDArray[ScalarT], NDArray[ScalarT]]: ...

@overload
def conv_transpose_backward(
    grad_out: ArrayT | ArrayLike,
    x: ArrayT,
    weight: ArrayT | ArrayLike,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
    *,
    method: str = "auto",
) -> tuple[ArrayT, ArrayT, ArrayT]: ...

@overload
def conv_transpose_backward(
    grad_out: ArrayLike,
    x: ArrayLike,
    weight: ArrayLike,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
    *,
    method: str = "auto",
) -> tuple[NDArray[Any], NDArray[Any], NDArray[Any]]: ...


def conv_transpose_backward(
    grad_out: Array,
    x: Array,
    weight: Array,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
    *,
    method: str = "auto",
) -> tuple[AnyArray, AnyArray, AnyArray]:
    """Exact gradients of :func:`conv_transpose`.

    Returns
    -------
    grad_x : ndarray, shape of ``x``
        A forward :func:`conv` of ``grad_out``.
    grad_weight : ndarray, shape of ``weight``
    grad_bias : ndarray, shape (C_out,)
    """
    be = resolve(grad_out=grad_out, x=x, weight=weight)
    method = _check_method(method)
    w = _check_weight(be, weight, transposed=True)
    xb, unbatched = _check_input(be, x, w)
    spec = _transpose_spec(xb, w, stride, padding, output_padding, groups, dilation, be)
    gy = be.array(grad_out, "grad_out", dtypes=_dtypes.conv_dtypes())
    expected = (spec.batch, spec.in_channels, *spec.in_spatial)
    if unbatched:
        expected = expected[1:]
    if tuple(gy.shape) != expected:
        raise ValueError(
            f"`grad_out` must have the output's shape {expected}, got {tuple(gy.shape)}"
        )
    if gy.dtype != w.dtype:
        raise TypeError(f"`grad_out` (dtype {gy.dtype}) must have dtype {w.dtype}")
    gyb = be.batched(gy) if unbatched else gy
    # Complex: conjugate the other operand, as in conv_backward.
    wc = be.conj(w)
    gx = be.correlate(gyb, wc, spec, _for_gradient(method, spec, wc))
    # output_padding >= stride (allowed when below dilation) can add a position.
    crop = (Ellipsis, *[slice(0, n) for n in xb.shape[2:]])
    gx = gx[crop]
    gw = _weight_grad(be, be.conj(xb), gyb, spec, method)
    gb = be.sum_to(gyb, (0, *range(2, gyb.ndim)), gyb.dtype)
    return (gx[0, ...] if unbatched else gx), gw, gb


# --------------------------------------------------------------------------
# plain arrays, as scipy.signal


_MODES = ("valid", "same", "full")


def _plain(
    x: Array, kernel: Array, bias: Scalar, mode: str, method: str, flip: bool
) -> AnyArray:
    be = resolve(x=x, kernel=kernel)
    method = _check_method(method)
    a = be.array(x, "x", floating=False)
    k = be.array(kernel, "kernel", floating=False, kernel=True)
    if a.ndim != k.ndim or a.ndim == 0:
        raise ValueError(
            f"`x` (ndim {a.ndim}) and `kernel` (ndim {k.ndim}) must have the same "
            "number of dims, at least 1"
        )
    if not isinstance(mode, str) or mode not in _MODES:
        raise ValueError(f"`mode` (={mode!r}) must be one of {_MODES}")
    _args.check_no_empty(a, "x")
    _args.check_no_empty(k, "kernel")
    _dtypes.check_scalar_bias(bias)
    # NumPy's promotion rule for every library, so that all return its values.
    dtype = np.result_type(be.numpy_dtype(a.dtype), be.numpy_dtype(k.dtype))
    if flip:  # convolution = correlation with the flipped kernel
        k = be.flip(k)
    else:  # SciPy's rule: correlate(x, k) = convolve(x, flip(conj(k)))
        k = be.conj(k)
    if mode == "valid":
        if all(m >= n for m, n in zip(k.shape, a.shape)) and k.shape != a.shape:
            # scipy's rule: 'valid' needs one array at least as large as the other
            # in every dim; when the kernel is larger the two swap roles
            # (convolution commutes; for correlation that is the flip).
            a, k = be.flip(k), be.flip(a)
        elif not all(n >= m for m, n in zip(k.shape, a.shape)):
            raise ValueError(
                f"mode='valid' needs `x` (shape {tuple(a.shape)}) or `kernel` (shape "
                f"{tuple(k.shape)}) to be at least as large as the other in every dim"
            )
        pairs = ((0, 0),) * a.ndim
    elif mode == "full":
        pairs = tuple((m - 1, m - 1) for m in k.shape)
    else:  # scipy centres 'same' on the full output
        pairs = tuple((m // 2, (m - 1) // 2) for m in k.shape)
    a = be.astype(a, dtype)
    k = be.astype(k, dtype)
    n = a.ndim
    spec = CorrSpec(
        batch=1, in_channels=1, out_channels=1, groups=1, in_spatial=tuple(a.shape),
        kernel_size=tuple(k.shape), stride=(1,) * n, dilation=(1,) * n, pairs=pairs,
        lhs_dilation=(1,) * n, padding_mode="zeros", dtype=dtype, xp=be.spec_xp,
    )
    spec, (a, k), _ = be.to_compute(spec, a, k)  # as conv
    one = (1, 1)
    out = be.correlate(be.reshape(a, one + tuple(a.shape)),
                       be.reshape(be.contiguous(k), one + tuple(k.shape)), spec, method)
    return be.add_scalar(out[0, 0, ...], bias, dtype)


@overload
def correlate(
    x: NDArray[Any],
    kernel: ArrayLike,
    bias: Scalar = 0,
    mode: str = "valid",
    *,
    method: str = "auto",
) -> NDArray[Any]: ...

@overload
def correlate(
    x: ArrayT,
    kernel: ArrayT | ArrayLike,
    bias: Scalar = 0,
    mode: str = "valid",
    *,
    method: str = "auto",
) -> ArrayT: ...

@overload
def correlate(
    x: ArrayLike,
    kernel: ArrayLike,
    bias: Scalar = 0,
    mode: str = "valid",
    *,
    method: str = "auto",
) -> NDArray[Any]: ...


def correlate(
    x: Array,
    kernel: Array,
    bias: Scalar = 0,
    mode: str = "valid",
    *,
    method: str = "auto",
) -> AnyArray:
    """Cross-correlate two N-d arrays and add a bias: the lecture's ``Y = X * K + b``.

    Equal to ``scipy.signal.correlate(x, kernel, mode) + bias``.

    Parameters
    ----------
    x : array_like, N-d
        Integer, float (float16, bfloat16, float32, float64) or complex.
    kernel : array_like, N-d
        Same number of dims as ``x``. Complex kernels are conjugated, as
        SciPy does: ``y[n] = sum_t x[n + t] * conj(kernel[t])``.
    bias : int, float or complex scalar
        Added to every output element.
    mode : {'valid', 'same', 'full'}
        ``'valid'``: only positions where the kernel fits, size ``S - K + 1``
        per dim (the lecture's ``(n_h - k_h + 1) x (n_w - k_w + 1)``); ``'same'``:
        the size of ``x``, centred as SciPy; ``'full'``: ``S + K - 1``.
    method : str
        Algorithm (``'auto'``, ``'direct'``, ``'gemm'``, ...).

    Returns
    -------
    ndarray
        dtype ``np.result_type(x, kernel)``, then NumPy's rule for ``+ bias``
        (a Python scalar does not widen it: an integer result stays integer
        with an int bias such as the default 0, and becomes float64 with a
        float bias). Integers are computed exactly in that dtype, wrapping
        around on overflow as NumPy's integer arithmetic (and SciPy) does;
        float16 and bfloat16 are computed in float32 and rounded once.

    Examples
    --------
    >>> import numpy as np, ndconv
    >>> ndconv.correlate(np.arange(9).reshape(3, 3), [[0, 1], [2, 3]])
    array([[19, 25],
           [37, 43]])
    """
    return _plain(x, kernel, bias, mode, method, flip=False)


@overload
def convolve(
    x: NDArray[Any],
    kernel: ArrayLike,
    bias: Scalar = 0,
    mode: str = "valid",
    *,
    method: str = "auto",
) -> NDArray[Any]: ...

@overload
def convolve(
    x: ArrayT,
    kernel: ArrayT | ArrayLike,
    bias: Scalar = 0,
    mode: str = "valid",
    *,
    method: str = "auto",
) -> ArrayT: ...

@overload
def convolve(
    x: ArrayLike,
    kernel: ArrayLike,
    bias: Scalar = 0,
    mode: str = "valid",
    *,
    method: str = "auto",
) -> NDArray[Any]: ...


def convolve(
    x: Array,
    kernel: Array,
    bias: Scalar = 0,
    mode: str = "valid",
    *,
    method: str = "auto",
) -> AnyArray:
    """Convolve two N-d arrays (flipped kernel) and add a bias.

    Equal to ``scipy.signal.convolve(x, kernel, mode) + bias``; see
    :func:`correlate` for the parameters.
    """
    return _plain(x, kernel, bias, mode, method, flip=True)

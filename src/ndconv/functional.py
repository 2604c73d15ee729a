"""Convolution functions: the lecture's ``Y = X * K + b`` and its gradients.

Everything here validates its arguments and then reduces to one primitive, the
general correlation of :class:`ndconv.algorithms.CorrSpec` (JAX's
``conv_general_dilated``): the forward pass is that correlation, the gradient
with respect to the input is a correlation of the output gradient with the
flipped kernel (stride becomes input dilation), and the gradient with respect
to the kernel is a correlation of the input with the output gradient (stride
and dilation swap places). So every algorithm serves the backward pass too.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from . import _args, _dtypes
from ._windows import fold_padding
from .algorithms import CorrSpec
from .algorithms import run as _run

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


def _check_method(method):
    from .algorithms import ALGORITHMS

    if not isinstance(method, str) or (method != "auto" and method not in ALGORITHMS):
        raise ValueError(
            f"`method` (={method!r}) must be 'auto' or one of {tuple(ALGORITHMS)}"
        )
    return method


def _check_weight(weight, name="weight", *, transposed=False):
    w = _args.check_array(weight, name, dtypes=_dtypes.conv_dtypes())
    if w.ndim < 3:
        raise ValueError(
            f"`{name}` must have shape (C_out, C_in // groups, *kernel_size) with at "
            f"least one spatial dim, got shape {w.shape}"
        )
    # PyTorch: no input channels is an empty sum (conv only); no output
    # channels or an empty kernel is refused.
    if transposed:
        _args.check_empty_dims(w.shape, name, (), "no dim of a transposed convolution's weight")
    else:
        _args.check_empty_dims(w.shape, name, (1,), "the input-channel dim (C_in // groups)")
    return w


def _check_input(x, w, name="x"):
    """Validate ``x`` against ``w``; return the batched input and the unbatched flag."""
    x = _args.check_array(x, name, dtypes=_dtypes.conv_dtypes())
    n = w.ndim - 2
    if x.ndim not in (n + 1, n + 2):
        raise ValueError(
            f"`{name}` must have shape (B, C, *S) or (C, *S) with {n} spatial dims "
            f"(the weight has {n}), so ndim {n + 2} or {n + 1}; got shape {x.shape}"
        )
    if x.dtype != w.dtype:
        raise TypeError(
            f"`{name}` (dtype {x.dtype}) and `weight` (dtype {w.dtype}) must have the "
            "same dtype; cast one of them with .astype()"
        )
    unbatched = x.ndim == n + 1
    _args.check_empty_dims(x.shape, name, (0,) if unbatched else (0, 1),
                           "the batch and channel dims")
    return (x[None] if unbatched else x), unbatched


def _check_bias(bias, channels, dtype):
    if bias is None:
        return None
    b = _args.check_array(bias, "bias", dtypes=_dtypes.conv_dtypes())
    if b.shape != (channels,):
        raise ValueError(
            f"`bias` must have shape ({channels},), one value per output channel; got "
            f"shape {b.shape}"
        )
    if b.dtype != dtype:
        raise TypeError(f"`bias` (dtype {b.dtype}) must have the dtype of `x` ({dtype})")
    return b


def _check_groups(groups, in_channels, out_channels, weight_in):
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


def _conv_spec(x, w, stride, padding, dilation, groups, padding_mode):
    """Validate a forward convolution and describe it as a :class:`CorrSpec`."""
    n = w.ndim - 2
    B, C = x.shape[:2]
    O = w.shape[0]
    K = w.shape[2:]
    g = _check_groups(groups, C, O, w.shape[1])
    stride = _args.ntuple(stride, n, "stride", minimum=1)
    dilation = _args.ntuple(dilation, n, "dilation", minimum=1)
    pairs = _args.padding_pairs(padding, K, dilation, stride)
    padding_mode = _args.check_padding_mode(padding_mode)
    _args.check_padded_size(x.shape[2:], pairs)
    _args.check_mode_fits(x.shape[2:], pairs, padding_mode)
    _args.output_size(x.shape[2:], K, stride, pairs, dilation)
    return CorrSpec(
        batch=B, in_channels=C, out_channels=O, groups=g, in_spatial=x.shape[2:],
        kernel_size=K, stride=stride, dilation=dilation, pairs=pairs,
        lhs_dilation=(1,) * n, padding_mode=padding_mode, dtype=x.dtype,
    )


def _is_dask(a):
    """True for a dask array, without importing dask (the core never does)."""
    return type(a).__module__.split(".")[0] == "dask"


def _add_bias(out, bias):
    if bias is not None:
        out += bias.reshape((-1,) + (1,) * (out.ndim - 2))
    return out


# --------------------------------------------------------------------------
# the three computing cores (private: arguments already validated)


def _forward(x, w, spec, method):
    return _run(x, w, spec, method)


def _for_gradient(method, spec):
    """``method``, or 'auto' where it cannot take this gradient's correlation.

    A gradient's correlation differs from the forward's (channels per group
    swap, stride becomes input dilation; the weight gradient's kernel is the
    output gradient), so a method chosen for the forward (depthwise with a
    channel multiplier, winograd) may not take it; choosing the layer's method
    should not make its gradients fail, so 'auto' computes that one.
    """
    from .algorithms import ALGORITHMS

    if method != "auto" and not ALGORITHMS[method].supports(spec)[0]:
        return "auto"
    return method


def _input_grad(gy, w, spec, method, gradient=False):
    """Gradient of ``sum(gy * corr(x, w))`` with respect to ``x`` (B, C, *S).

    ``gradient=True`` (a backward pass, not conv_transpose's forward) lets
    :func:`_for_gradient` replace a method that cannot take it.
    """
    n = spec.ndim
    g = spec.groups
    O, Cg = w.shape[:2]
    Og = O // g
    K = spec.kernel_size
    # Flipped kernel with input and output channels swapped inside each group.
    wt = np.flip(w, axis=tuple(range(2, 2 + n)))
    wt = np.swapaxes(wt.reshape(g, Og, Cg, *K), 1, 2).reshape(g * Cg, Og, *K)
    full = [d * (k - 1) for k, d in zip(K, spec.dilation)]
    # The transposed correlation covers (P-1)*s + d*(k-1) + 1 padded positions;
    # padded positions beyond that (stride remainder) get zero gradient.
    # (Use gy's own size: a transposed conv's output_padding >= stride makes
    # it one less than spec.out_spatial.)
    P = gy.shape[2:]
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
    tspec = CorrSpec(
        batch=spec.batch, in_channels=O, out_channels=spec.in_channels, groups=g,
        in_spatial=P, kernel_size=K, stride=(1,) * n,
        dilation=spec.dilation, pairs=tpairs, lhs_dilation=spec.stride,
        padding_mode="zeros", dtype=spec.dtype,
    )
    if gradient:
        method = _for_gradient(method, tspec)
    gx = _run(gy, np.ascontiguousarray(wt), tspec, method)
    if not zeros:
        gx = fold_padding(gx, spec.in_spatial, spec.pairs, spec.padding_mode)
    return gx


def _weight_grad(gy, x, spec, method):
    """Gradient of ``sum(gy * corr(x, w))`` with respect to ``w`` (O, Cg, *K)."""
    n = spec.ndim
    g = spec.groups
    B, C, O = spec.batch, spec.in_channels, spec.out_channels
    Cg, Og = C // g, O // g
    S, P = spec.in_spatial, gy.shape[2:]  # see _input_grad for why not out_spatial
    sp = tuple(range(3, 3 + n))
    # Input channels become the batch, batch items become the channels.
    xt = x.reshape(B, g, Cg, *S).transpose(2, 1, 0, *sp).reshape(Cg, g * B, *S)
    gt = gy.reshape(B, g, Og, *P).transpose(1, 2, 0, *sp).reshape(O, B, *P)
    wspec = CorrSpec(
        batch=Cg, in_channels=g * B, out_channels=O, groups=g, in_spatial=S,
        kernel_size=P, stride=spec.dilation, dilation=spec.stride, pairs=spec.pairs,
        lhs_dilation=(1,) * n, padding_mode=spec.padding_mode, dtype=spec.dtype,
    )
    # The kernel here is the output gradient (many taps, B channels per
    # group), which per-tap-shaped methods (winograd: 3x3 only; depthwise:
    # 1 channel per group) cannot take.
    method = _for_gradient(method, wspec)
    r = _run(xt, np.ascontiguousarray(gt), wspec, method)
    # With stride > dilation the correlation can reach past the kernel; crop.
    r = r[(Ellipsis, *[slice(0, k) for k in spec.kernel_size])]
    return np.ascontiguousarray(np.swapaxes(r, 0, 1))


# --------------------------------------------------------------------------
# public API


def conv(
    x,
    weight,
    bias=None,
    stride=1,
    padding=0,
    dilation=1,
    groups=1,
    padding_mode="zeros",
    *,
    method="auto",
):
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
    if _is_dask(x):  # lazy, chunked with halos: see ndconv.dask
        from . import dask as _dask

        return _dask.conv(x, weight, bias, stride, padding, dilation, groups,
                          padding_mode, method=method)
    method = _check_method(method)
    w = _check_weight(weight)
    xb, unbatched = _check_input(x, w)
    spec = _conv_spec(xb, w, stride, padding, dilation, groups, padding_mode)
    b = _check_bias(bias, w.shape[0], w.dtype)
    # Half precision: compute and add the bias in float32, round once.
    spec, (xb, w, b), dtype = _dtypes.to_compute(spec, xb, w, b)
    out = _add_bias(_forward(xb, w, spec, method), b).astype(dtype, copy=False)
    return out[0] if unbatched else out


def _conv_n(n):
    def fn(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
           padding_mode="zeros", *, method="auto"):
        w = _check_weight(weight)
        if w.ndim != n + 2:
            raise ValueError(
                f"conv{n}d needs a weight with {n} spatial dims, shape "
                f"(C_out, C_in // groups{', k' * n}); got shape {w.shape}"
            )
        return conv(x, w, bias, stride, padding, dilation, groups, padding_mode,
                    method=method)

    fn.__name__ = fn.__qualname__ = f"conv{n}d"
    fn.__doc__ = f"{n}-D :func:`conv`; raises ValueError unless ``weight.ndim == {n + 2}``."
    return fn


conv1d = _conv_n(1)
conv2d = _conv_n(2)
conv3d = _conv_n(3)


def conv_output_shape(input_shape, weight_shape, stride=1, padding=0, dilation=1):
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
    x,
    weight,
    stride=1,
    padding=0,
    dilation=1,
    groups=1,
    padding_mode="zeros",
    *,
    measure=False,
):
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

    w = _check_weight(weight)
    xb, _ = _check_input(x, w)
    spec = _conv_spec(xb, w, stride, padding, dilation, groups, padding_mode)
    if not isinstance(measure, (bool, np.bool_)):
        raise TypeError(f"`measure` (={measure!r}) must be True or False")
    # What runs is the computation in the compute dtype (float32 for halves).
    cdt = spec.compute_dtype
    spec = dataclasses.replace(spec, dtype=cdt)
    return choose(spec, measure=bool(measure), x=xb.astype(cdt, copy=False),
                  w=w.astype(cdt, copy=False))


def conv_backward(
    grad_out,
    x,
    weight,
    stride=1,
    padding=0,
    dilation=1,
    groups=1,
    padding_mode="zeros",
    *,
    method="auto",
):
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

    Returns
    -------
    grad_x : ndarray, shape of ``x``
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
    method = _check_method(method)
    w = _check_weight(weight)
    xb, unbatched = _check_input(x, w)
    spec = _conv_spec(xb, w, stride, padding, dilation, groups, padding_mode)
    gy = _args.check_array(grad_out, "grad_out", dtypes=_dtypes.conv_dtypes())
    expected = spec.out_shape[1:] if unbatched else spec.out_shape
    if gy.shape != tuple(expected):
        raise ValueError(
            f"`grad_out` must have the output's shape {tuple(expected)}, got {gy.shape}"
        )
    if gy.dtype != w.dtype:
        raise TypeError(f"`grad_out` (dtype {gy.dtype}) must have dtype {w.dtype}")
    if method != "auto":
        from .algorithms import ALGORITHMS

        ok, why = ALGORITHMS[method].supports(spec)
        if not ok:  # as conv(method=...) would: the layer's own method must fit
            raise ValueError(f"`method`={method!r} cannot compute this correlation: {why}")
    gyb = gy[None] if unbatched else gy
    # Complex: PyTorch's convention, the gradient of a real loss is taken
    # with respect to the conjugate (Wirtinger), so each gradient multiplies
    # grad_out by the conjugate of the other operand.
    gx = _input_grad(gyb, _dtypes.conj(w), spec, method, gradient=True)
    gw = _weight_grad(gyb, _dtypes.conj(xb), spec, method)
    gb = _dtypes.sum_to(gyb, (0, *range(2, gyb.ndim)), gyb.dtype)
    return (gx[0] if unbatched else gx), gw, gb


def _transpose_spec(x, w, stride, padding, output_padding, groups, dilation):
    """Validate a transposed convolution; return the spec of the conv it transposes."""
    n = w.ndim - 2
    B, C_in = x.shape[:2]
    K = w.shape[2:]
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
    out = []
    for i, (n_in, k, s, p, op, d) in enumerate(zip(x.shape[2:], K, stride, pad, opad, dilation)):
        size = (n_in - 1) * s - 2 * p + d * (k - 1) + op + 1
        if size < 1:
            raise ValueError(
                f"transposed convolution output size is not positive in spatial dim "
                f"{i}: (S-1)*s - 2*p + d*(k-1) + output_padding + 1 = "
                f"({n_in}-1)*{s} - 2*{p} + {d}*({k}-1) + {op} + 1 = {size}"
            )
        out.append(size)
    # The transposed convolution is the input-gradient of this forward conv,
    # which maps (B, C_out, *out) to (B, C_in, *S).
    return CorrSpec(
        batch=B, in_channels=w.shape[1] * g, out_channels=C_in, groups=g,
        in_spatial=tuple(out), kernel_size=K, stride=stride, dilation=dilation,
        pairs=tuple((p, p) for p in pad), lhs_dilation=(1,) * n,
        padding_mode="zeros", dtype=x.dtype,
    )


def conv_transpose(
    x,
    weight,
    bias=None,
    stride=1,
    padding=0,
    output_padding=0,
    groups=1,
    dilation=1,
    *,
    method="auto",
):
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
    method = _check_method(method)
    w = _check_weight(weight, transposed=True)
    xb, unbatched = _check_input(x, w)
    spec = _transpose_spec(xb, w, stride, padding, output_padding, groups, dilation)
    b = _check_bias(bias, spec.in_channels, w.dtype)
    spec, (xb, w, b), dtype = _dtypes.to_compute(spec, xb, w, b)  # as conv
    out = _add_bias(_input_grad(xb, w, spec, method), b).astype(dtype, copy=False)
    return out[0] if unbatched else out


def conv_transpose_backward(
    grad_out,
    x,
    weight,
    stride=1,
    padding=0,
    output_padding=0,
    groups=1,
    dilation=1,
    *,
    method="auto",
):
    """Exact gradients of :func:`conv_transpose`.

    Returns
    -------
    grad_x : ndarray, shape of ``x``
        A forward :func:`conv` of ``grad_out``.
    grad_weight : ndarray, shape of ``weight``
    grad_bias : ndarray, shape (C_out,)
    """
    method = _check_method(method)
    w = _check_weight(weight, transposed=True)
    xb, unbatched = _check_input(x, w)
    spec = _transpose_spec(xb, w, stride, padding, output_padding, groups, dilation)
    gy = _args.check_array(grad_out, "grad_out", dtypes=_dtypes.conv_dtypes())
    expected = (spec.batch, spec.in_channels, *spec.in_spatial)
    if unbatched:
        expected = expected[1:]
    if gy.shape != expected:
        raise ValueError(f"`grad_out` must have the output's shape {expected}, got {gy.shape}")
    if gy.dtype != w.dtype:
        raise TypeError(f"`grad_out` (dtype {gy.dtype}) must have dtype {w.dtype}")
    gyb = gy[None] if unbatched else gy
    # Complex: conjugate the other operand, as in conv_backward.
    gx = _forward(gyb, _dtypes.conj(w), spec, _for_gradient(method, spec))
    # output_padding >= stride (allowed when below dilation) can add a position.
    gx = gx[(Ellipsis, *[slice(0, n) for n in xb.shape[2:]])]
    gw = _weight_grad(_dtypes.conj(xb), gyb, spec, method)
    gb = _dtypes.sum_to(gyb, (0, *range(2, gyb.ndim)), gyb.dtype)
    return (gx[0] if unbatched else gx), gw, gb


# --------------------------------------------------------------------------
# plain arrays, as scipy.signal


_MODES = ("valid", "same", "full")


def _plain(x, kernel, bias, mode, method, flip):
    method = _check_method(method)
    a = _args.check_array(x, "x", floating=False)
    k = _args.check_array(kernel, "kernel", floating=False)
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
    dtype = np.result_type(a, k)
    if flip:  # convolution = correlation with the flipped kernel
        k = np.flip(k)
    else:  # SciPy's rule: correlate(x, k) = convolve(x, flip(conj(k)))
        k = _dtypes.conj(k)
    if mode == "valid":
        if all(m >= n for m, n in zip(k.shape, a.shape)) and k.shape != a.shape:
            # scipy's rule: 'valid' needs one array at least as large as the other
            # in every dim; when the kernel is larger the two swap roles
            # (convolution commutes; for correlation that is the flip).
            a, k = np.flip(k), np.flip(a)
        elif not all(n >= m for m, n in zip(k.shape, a.shape)):
            raise ValueError(
                f"mode='valid' needs `x` (shape {a.shape}) or `kernel` (shape "
                f"{k.shape}) to be at least as large as the other in every dim"
            )
        pairs = ((0, 0),) * a.ndim
    elif mode == "full":
        pairs = tuple((m - 1, m - 1) for m in k.shape)
    else:  # scipy centres 'same' on the full output
        pairs = tuple((m // 2, (m - 1) // 2) for m in k.shape)
    a = a.astype(dtype, copy=False)
    k = k.astype(dtype, copy=False)
    n = a.ndim
    spec = CorrSpec(
        batch=1, in_channels=1, out_channels=1, groups=1, in_spatial=a.shape,
        kernel_size=k.shape, stride=(1,) * n, dilation=(1,) * n, pairs=pairs,
        lhs_dilation=(1,) * n, padding_mode="zeros", dtype=dtype,
    )
    spec, (a, k), _ = _dtypes.to_compute(spec, a, k)  # as conv
    out = _forward(a[None, None], np.ascontiguousarray(k)[None, None], spec, method)[0, 0]
    return _dtypes.add_scalar_bias(out, bias, dtype)


def correlate(x, kernel, bias=0, mode="valid", *, method="auto"):
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
    if _is_dask(x):
        from . import dask as _dask

        return _dask.correlate(x, kernel, bias, mode, method=method)
    return _plain(x, kernel, bias, mode, method, flip=False)


def convolve(x, kernel, bias=0, mode="valid", *, method="auto"):
    """Convolve two N-d arrays (flipped kernel) and add a bias.

    Equal to ``scipy.signal.convolve(x, kernel, mode) + bias``; see
    :func:`correlate` for the parameters.
    """
    if _is_dask(x):
        from . import dask as _dask

        return _dask.convolve(x, kernel, bias, mode, method=method)
    return _plain(x, kernel, bias, mode, method, flip=True)

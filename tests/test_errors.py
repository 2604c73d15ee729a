"""Bad input: a ValueError or TypeError naming the argument, its value and the
rule, before any computation. And a fuzz test: random (mostly invalid)
arguments never raise anything else, and whatever is accepted is right."""

from __future__ import annotations

import operator

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from reference import conv_ref

import ndconv

X = np.ones((1, 3, 5, 5))
W = np.ones((4, 3, 3, 3))
WT = np.ones((3, 2, 3, 3))  # conv_transpose: (C_in, C_out // groups, *K)


def conv(**kw):
    args = dict(x=X, weight=W)
    args.update(kw)
    return ndconv.conv(**args)


# (call, exception, pattern): every pattern names the argument and the value.
CONV_ERRORS = {
    "x ndim too small": (lambda: conv(x=np.ones((5, 5))), ValueError,
                         r"`x` must have shape \(B, C, \*S\) or \(C, \*S\) with 2 spatial dims.*got shape \(5, 5\)"),
    "x ndim too large": (lambda: conv(x=np.ones((1, 1, 3, 5, 5))), ValueError,
                         r"`x` must have shape .*ndim 4 or 3; got shape \(1, 1, 3, 5, 5\)"),
    "weight ndim": (lambda: conv(weight=np.ones((3, 3))), ValueError,
                    r"`weight` must have shape \(C_out, C_in // groups, \*kernel_size\).*\(3, 3\)"),
    "channel mismatch": (lambda: conv(x=np.ones((1, 2, 5, 5))), ValueError,
                         r"`weight` has 3 input channels per group.*`x` has 2"),
    "channels not divisible by groups": (
        lambda: conv(weight=np.ones((4, 1, 3, 3)), groups=2), ValueError,
        r"`in_channels` \(=3\) must be divisible by `groups` \(=2\)"),
    "out channels not divisible by groups": (
        lambda: conv(x=np.ones((1, 4, 5, 5)), weight=np.ones((3, 2, 3, 3)), groups=2), ValueError,
        r"`out_channels` \(=3\) must be divisible by `groups` \(=2\)"),
    "groups mismatch": (lambda: conv(x=np.ones((1, 6, 5, 5)), weight=np.ones((4, 3, 3, 3)), groups=1),
                        ValueError, r"with groups=1 it expects 3 input channels; `x` has 6"),
    "kernel larger than input": (
        lambda: conv(x=np.ones((1, 3, 2, 5))), ValueError,
        r"kernel \(dilated size 3\) is larger than the padded input \(size 2\) in spatial dim 0: "
        r"output size = floor\(\(S \+ lo \+ hi - d\*\(k-1\) - 1\)/s\) \+ 1"),
    "dilated kernel larger than padded input": (
        lambda: conv(dilation=(1, 3), padding=((1, 1), (0, 1))), ValueError,
        r"dilated size 7.*padded input \(size 6\).*dim 1.*floor\(\(5 \+ 0 \+ 1 - 3\*\(3-1\) - 1\)/1\) \+ 1"),
    "stride 0": (lambda: conv(stride=0), ValueError, r"`stride` \(=0\) must be positive"),
    "stride negative": (lambda: conv(stride=(1, -1)), ValueError,
                        r"`stride` \(=\(1, -1\)\) must be positive"),
    "dilation 0": (lambda: conv(dilation=0), ValueError, r"`dilation` \(=0\) must be positive"),
    "groups 0": (lambda: conv(groups=0), ValueError, r"`groups` \(=0\) must be a positive int"),
    "groups negative": (lambda: conv(groups=-3), ValueError, r"`groups` \(=-3\) must be a positive"),
    "groups float": (lambda: conv(groups=1.0), TypeError, r"`groups` must be an int.*1\.0"),
    "negative padding": (lambda: conv(padding=-1), ValueError,
                         r"`padding` \(=-1\) must be non-negative"),
    "negative padding pair": (lambda: conv(padding=((0, -1), (0, 0))), ValueError,
                              r"`padding` \(=\(\(0, -1\), \(0, 0\)\)\) must be non-negative"),
    "stride wrong length": (lambda: conv(stride=(1, 1, 1)), ValueError,
                            r"`stride` \(=\(1, 1, 1\)\) must have one entry per spatial dimension \(2\), got 3"),
    "dilation wrong length": (lambda: conv(dilation=[2, 2, 2]), ValueError,
                              r"`dilation` \(=\(2, 2, 2\)\) must have one entry per spatial dimension \(2\), got 3 \(or a single entry for all\)"),
    "padding wrong length": (lambda: conv(padding=(1, 1, 1)), ValueError,
                             r"`padding` \(=\(1, 1, 1\)\) must have one entry per spatial dimension"),
    "padding pairs wrong count": (lambda: conv(padding=((1, 1),)), ValueError,
                                  r"`padding` .* must hold one \(lo, hi\) pair per spatial dimension \(2\)"),
    "padding pair of three": (lambda: conv(padding=((1, 1, 1), (1, 1))), ValueError,
                              r"`padding` .*one \(lo, hi\) pair per spatial dimension"),
    "padding float": (lambda: conv(padding=1.5), TypeError, r"`padding` must be an int.*1\.5"),
    "stride bool": (lambda: conv(stride=True), TypeError, r"`stride` must be an int.*True"),
    "unknown padding string": (lambda: conv(padding="sam"), ValueError,
                               r"`padding` \(='sam'\) must be an int, a tuple, or one of \('valid', 'same', 'full'\)"),
    "unknown padding mode": (lambda: conv(padding_mode="wrap"), ValueError,
                             r"`padding_mode` \(='wrap'\) must be one of \('zeros', 'reflect', 'replicate', 'circular'\)"),
    "same with stride": (lambda: conv(padding="same", stride=2), ValueError,
                         r"`padding`='same' is not supported with `stride` \(=\(2, 2\)\)"),
    "reflect padding equal to input": (
        lambda: conv(padding=5, padding_mode="reflect"), ValueError,
        r"`padding_mode`='reflect' needs padding < input size.*dim 0 has size 5 and padding \(5, 5\)"),
    "reflect padding larger than input": (
        lambda: conv(padding=((0, 0), (0, 9)), padding_mode="reflect"), ValueError,
        r"'reflect'.*dim 1 has size 5 and padding \(0, 9\)"),
    "circular padding wraps more than once": (
        lambda: conv(padding=6, padding_mode="circular"), ValueError,
        r"'circular' needs padding <= input size.*size 5 and padding \(6, 6\)"),
    "dtype mismatch": (lambda: conv(x=X.astype(np.float32)), TypeError,
                       r"`x` \(dtype float32\) and `weight` \(dtype float64\) must have the same dtype"),
    "object array": (lambda: conv(x=X.astype(object)), TypeError,
                     r"`x` must be float16, bfloat16, float32, float64, complex64, complex128 or an integer dtype, got dtype object"),
    "str array": (lambda: conv(x=np.full((1, 3, 5, 5), "a")), TypeError,
                  r"`x` must be float16, .* or an integer dtype, got dtype <U1"),
    "str": (lambda: conv(x="abc"), TypeError, r"`x` must be a numeric array, got str"),
    "None": (lambda: conv(weight=None), TypeError, r"`weight` must be a numeric array, got NoneType"),
    "ragged list": (lambda: conv(x=[[1, 2], [3]]), TypeError, r"`x` must be a numeric array"),
    "complex weight, float x": (lambda: conv(weight=W.astype(complex)), TypeError,
                                r"`x` \(dtype float64\) and `weight` \(dtype complex128\) must have the same dtype"),
    "bool": (lambda: conv(x=X.astype(bool)), TypeError, r"`x` must be float16, .*, got dtype bool"),
    "empty spatial": (lambda: conv(x=np.ones((1, 3, 0, 5))), ValueError,
                      r"`x` \(shape \(1, 3, 0, 5\)\) is empty in dim 2: only the batch and channel dims may have size 0"),
    "empty weight": (lambda: conv(weight=np.ones((0, 3, 3, 3))), ValueError,
                     r"`weight` \(shape \(0, 3, 3, 3\)\) is empty in dim 0: only the input-channel dim"),
    "empty kernel": (lambda: conv(weight=np.ones((4, 3, 0, 3))), ValueError,
                     r"`weight` \(shape \(4, 3, 0, 3\)\) is empty in dim 2"),
    "bias wrong length": (lambda: conv(bias=np.ones(3)), ValueError,
                          r"`bias` must have shape \(4,\), one value per output channel; got shape \(3,\)"),
    "bias 2-d": (lambda: conv(bias=np.ones((4, 1))), ValueError,
                 r"`bias` must have shape \(4,\).*got shape \(4, 1\)"),
    "bias scalar": (lambda: conv(bias=1.0), ValueError, r"`bias` must have shape \(4,\).*got shape \(\)"),
    "bias dtype": (lambda: conv(bias=np.ones(4, np.float32)), TypeError,
                   r"`bias` \(dtype float32\) must have the dtype of `x` \(float64\)"),
    "unknown method": (lambda: conv(method="foo"), ValueError,
                       r"`method` \(='foo'\) must be 'auto' or one of \('direct'"),
    "conv1d with a 2-d weight": (lambda: ndconv.conv1d(X, W), ValueError,
                                 r"conv1d needs a weight with 1 spatial dims.*got shape \(4, 3, 3, 3\)"),
    "conv3d with a 2-d weight": (lambda: ndconv.conv3d(X, W), ValueError,
                                 r"conv3d needs a weight with 3 spatial dims"),
}


@pytest.mark.parametrize("name", list(CONV_ERRORS))
def test_conv_bad_input(name):
    call, exc, pattern = CONV_ERRORS[name]
    with pytest.raises(exc, match=pattern):
        call()


TRANSPOSE_ERRORS = {
    "output_padding not below stride or dilation": (
        dict(output_padding=1), ValueError,
        r"`output_padding` \(=1\) must be smaller than either `stride` or `dilation`.*stride 1, dilation 1"),
    "output_padding equal to stride": (
        dict(stride=2, output_padding=(0, 2)), ValueError,
        r"`output_padding` \(=\(0, 2\)\).*dim 1: output_padding 2, stride 2, dilation 1"),
    "negative output_padding": (dict(stride=2, output_padding=-1), ValueError,
                                r"`output_padding` \(=-1\) must be >= 0"),
    "output_padding wrong length": (dict(stride=2, output_padding=(1, 1, 1)), ValueError,
                                    r"`output_padding` \(=\(1, 1, 1\)\) must have one entry per spatial dimension"),
    "padding string": (dict(padding="same"), ValueError,
                       r"`padding` \(='same'\) of a transposed convolution must be an int"),
    "negative padding": (dict(padding=(-1, 0)), ValueError, r"`padding` \(=\(-1, 0\)\) must be >= 0"),
    "channel mismatch": (dict(weight=np.ones((4, 2, 3, 3))), ValueError,
                         r"first dim \(4\) must equal the channels of `x` \(3\)"),
    "groups": (dict(groups=2), ValueError, r"`in_channels` \(=3\) must be divisible by `groups` \(=2\)"),
    "output size not positive": (
        dict(x=np.ones((1, 3, 1, 1)), weight=np.ones((3, 2, 1, 1)), padding=1), ValueError,
        r"output size is not positive in spatial dim 0: \(S-1\)\*s - 2\*p \+ d\*\(k-1\) \+ "
        r"output_padding \+ 1 = \(1-1\)\*1 - 2\*1 \+ 1\*\(1-1\) \+ 0 \+ 1 = -1"),
    "bias shape": (dict(bias=np.ones(3)), ValueError, r"`bias` must have shape \(2,\)"),
    "stride 0": (dict(stride=0), ValueError, r"`stride` \(=0\) must be positive"),
    "dtype mismatch": (dict(weight=WT.astype(np.float32)), TypeError, r"must have the same dtype"),
}


@pytest.mark.parametrize("name", list(TRANSPOSE_ERRORS))
def test_conv_transpose_bad_input(name):
    kw, exc, pattern = TRANSPOSE_ERRORS[name]
    args = dict(x=X, weight=WT)
    args.update(kw)
    with pytest.raises(exc, match=pattern):
        ndconv.conv_transpose(**args)


def test_backward_bad_grad_out():
    with pytest.raises(ValueError, match=r"`grad_out` must have the output's shape \(1, 4, 3, 3\), got \(1, 4, 2, 2\)"):
        ndconv.conv_backward(np.ones((1, 4, 2, 2)), X, W)
    with pytest.raises(TypeError, match=r"`grad_out` \(dtype float32\) must have dtype float64"):
        ndconv.conv_backward(np.ones((1, 4, 3, 3), np.float32), X, W)
    with pytest.raises(ValueError, match=r"`grad_out` must have the output's shape \(1, 2, 7, 7\)"):
        ndconv.conv_transpose_backward(np.ones((1, 2, 6, 6)), X, WT)
    with pytest.raises(ValueError, match=r"`padding_mode` \(='foo'\)"):
        ndconv.conv_backward(np.ones((1, 4, 3, 3)), X, W, padding_mode="foo")


PLAIN_ERRORS = {
    "ndim mismatch": ((np.ones((3, 3)), np.ones(3)), {}, ValueError,
                      r"`x` \(ndim 2\) and `kernel` \(ndim 1\) must have the same number of dims"),
    "0-d": ((np.float64(1), np.float64(1)), {}, ValueError, r"`x` \(ndim 0\).*at least 1"),
    "mode": ((np.ones((3, 3)), np.ones((2, 2))), dict(mode="foo"), ValueError,
             r"`mode` \(='foo'\) must be one of \('valid', 'same', 'full'\)"),
    "valid with neither larger": ((np.ones((3, 5)), np.ones((4, 2))), {}, ValueError,
                                  r"mode='valid' needs `x` \(shape \(3, 5\)\) or `kernel` \(shape \(4, 2\)\)"),
    "array bias": ((np.ones((3, 3)), np.ones((2, 2))), dict(bias=np.ones(2)), TypeError,
                   r"`bias` \(=array\(\[1\., 1\.\]\)\) must be a scalar \(int, float or complex\)"),
    "str bias": ((np.ones((3, 3)), np.ones((2, 2))), dict(bias="1"), TypeError,
                 r"`bias` \(='1'\) must be a scalar"),
    "empty x": ((np.ones((0, 3)), np.ones((1, 1))), {}, ValueError,
                r"`x` has an empty dimension \(shape \(0, 3\)\)"),
    "empty kernel": ((np.ones((3, 3)), np.ones((1, 0))), {}, ValueError, r"`kernel` has an empty dimension"),
    "object": ((np.ones((3, 3), dtype=object), np.ones((1, 1))), {}, TypeError,
               r"`x` must be float16, bfloat16, float32, float64, complex64, complex128 or an integer dtype, got dtype object"),
    "complex256": ((np.ones((3, 3)), np.ones((1, 1), np.clongdouble)), {}, TypeError,
                   r"`kernel` must be float16, .*, got dtype complex256"),
    "bool": ((np.ones((3, 3), bool), np.ones((1, 1))), {}, TypeError, r"`x` must be float16, .*bool"),
    "str": (("abc", "a"), {}, TypeError, r"`x` must be a numeric array, got str"),
    "str array": ((np.array(["a", "b"]), np.ones(1)), {}, TypeError, r"`x` must be float16, .*<U1"),
    "method": ((np.ones(3), np.ones(2)), dict(method=3), ValueError, r"`method` \(=3\)"),
}


@pytest.mark.parametrize("fn", [ndconv.correlate, ndconv.convolve])
@pytest.mark.parametrize("name", list(PLAIN_ERRORS))
def test_correlate_bad_input(fn, name):
    args, kw, exc, pattern = PLAIN_ERRORS[name]
    with pytest.raises(exc, match=pattern):
        fn(*args, **kw)


def test_conv_output_shape_checks_too():
    with pytest.raises(ValueError, match=r"larger than the padded input"):
        ndconv.conv_output_shape((1, 1, 2, 2), (1, 1, 3, 3))
    with pytest.raises(ValueError, match=r"`stride` \(=0\) must be positive"):
        ndconv.conv_output_shape((1, 1, 4, 4), (1, 1, 3, 3), stride=0)


def test_huge_kernel_fails_before_allocating():
    # A kernel whose dilated span is astronomically large: the size check must
    # fire before anything the size of the (virtual) padded input is made.
    w = np.ones((1, 1, 2, 2))
    with pytest.raises(ValueError, match=r"dilated size 1000000000000000001"):
        ndconv.conv(np.ones((1, 1, 4, 4)), w, dilation=10**18)


# --------------------------------------------------------------------------
# NaN and Inf are values, not errors


@pytest.mark.filterwarnings("error")  # and not warnings either: torch is silent
@pytest.mark.parametrize("method", ["auto", *ndconv.algorithms.methods_for("numpy")])
def test_nan_inf_are_not_errors_or_warnings(method):
    x = np.ones((1, 2, 5, 5))
    x[0, 0, 2, 2], x[0, 1, 0, 0] = np.nan, np.inf
    w = np.zeros((2, 1, 3, 3))  # inf * 0 = nan, silently
    try:
        out = ndconv.conv(x, w, padding=1, groups=2, method=method)
    except ValueError as exc:
        if method == "auto" or "cannot compute this correlation" not in str(exc):
            raise
        return
    assert np.isnan(out[0, 0, 1:4, 1:4]).all() and np.isnan(out[0, 1, :2, :2]).all()
    gx, gw, gb = ndconv.conv_backward(np.ones_like(out), x, w, padding=1, groups=2, method=method)
    assert np.isnan(gw).any()
    big = np.full((1, 1, 3, 3), 3e38, np.float32)  # float32 overflow: inf, silently
    assert np.isinf(ndconv.conv(big, np.ones((1, 1, 2, 2), np.float32))).all()


@pytest.mark.filterwarnings("error")
def test_nan_inf_are_not_errors():
    x = np.full((1, 1, 4, 4), np.nan)
    assert np.isnan(ndconv.conv(x, np.ones((1, 1, 2, 2)))).all()
    assert np.isnan(ndconv.correlate(np.array([np.inf, 1.0]), np.array([0.0]))[0])
    y = ndconv.correlate(np.array([np.inf, 1.0, 2.0]), np.array([1.0]), mode="same")
    assert y[0] == np.inf and y[1] == 1.0 and y[2] == 2.0


# --------------------------------------------------------------------------
# fuzz: random arguments, mostly invalid


def _is_int(v):
    if isinstance(v, (bool, np.bool_)):
        return False
    try:
        operator.index(v)
        return True
    except TypeError:
        return False


def _tuple(v, n):
    """``v`` as n ints, or None when it is not a valid int-or-n-tuple."""
    if isinstance(v, (tuple, list)):
        if len(v) == 1 and _is_int(v[0]):  # one element for every dim, as F.conv2d
            return (v[0],) * n
        return tuple(v) if len(v) == n and all(_is_int(i) for i in v) else None
    return (v,) * n if _is_int(v) else None


EMPTY = "empty"


def _expected_pairs(x, w, b, stride, padding, dilation, groups, mode):
    """The rules of the issue, written out independently of ndconv.

    Returns (batched x, pairs, stride, dilation, unbatched) for a valid call,
    or None when the call must be refused.
    """
    if not all(isinstance(a, np.ndarray) for a in (x, w)):
        return None
    if w.dtype not in (np.float32, np.float64) or x.dtype != w.dtype or w.ndim < 3:
        return None
    n = w.ndim - 2
    if x.ndim not in (n + 1, n + 2):
        return None
    if x.size == 0 or w.size == 0:
        # Empty arrays follow PyTorch's own rules (some valid, some not),
        # tested case by case in test_shapes.py; not judged here.
        return EMPTY
    unbatched = x.ndim == n + 1
    xb = x[None] if unbatched else x
    C, O = xb.shape[1], w.shape[0]
    if not _is_int(groups) or groups < 1 or C % groups or O % groups or w.shape[1] * groups != C:
        return None
    if b is not None and (not isinstance(b, np.ndarray) or b.shape != (O,) or b.dtype != w.dtype):
        return None
    s, d = _tuple(stride, n), _tuple(dilation, n)
    if s is None or d is None or min(s) < 1 or min(d) < 1:
        return None
    span = [dd * (k - 1) for k, dd in zip(w.shape[2:], d)]
    if isinstance(padding, str):
        if padding == "valid":
            pairs = ((0, 0),) * n
        elif padding == "full":
            pairs = tuple((t, t) for t in span)
        elif padding == "same" and max(s) == 1:
            pairs = tuple((t // 2, t - t // 2) for t in span)
        else:
            return None
    elif isinstance(padding, tuple) and padding and all(isinstance(p, tuple) for p in padding):
        if len(padding) != n or any(len(p) != 2 or not all(_is_int(v) for v in p) for p in padding):
            return None
        pairs = padding
    else:
        p = _tuple(padding, n)
        if p is None:
            return None
        pairs = tuple((v, v) for v in p)
    if min(min(p) for p in pairs) < 0:
        return None
    if mode not in ("zeros", "reflect", "replicate", "circular"):
        return None
    for size, (lo, hi), t in zip(xb.shape[2:], pairs, span):
        if mode == "reflect" and max(lo, hi) >= size:
            return None
        if mode == "circular" and max(lo, hi) > size:
            return None
        if size + lo + hi - t < 1:
            return None
    return xb, pairs, s, d, unbatched


small_int = st.integers(-1, 3)
odd_values = st.sampled_from([1.0, True, "2", None, -1, 0, (), (1, 1, 1, 1)])
paddings = st.one_of(
    small_int, st.tuples(small_int), st.tuples(small_int, small_int),
    st.sampled_from(["valid", "same", "full", "Same", ""]),
    st.tuples(st.tuples(small_int, small_int), st.tuples(small_int, small_int)),
    st.tuples(st.tuples(small_int, small_int)),
    st.tuples(st.tuples(small_int, small_int, small_int), st.tuples(small_int, small_int)),
    odd_values,
)


@st.composite
def fuzz_args(draw):
    """A valid call with each argument, now and then, replaced by a random one."""
    def bad():
        return draw(st.integers(0, 6)) == 0

    n = draw(st.integers(1, 3))
    g, cg, og = draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
    k = tuple(draw(st.integers(1, 3)) for _ in range(n))
    lead = draw(st.sampled_from([(), (1,), (2,)]))
    xshape = (*lead, g * cg, *(draw(st.integers(1, 5)) for _ in range(n)))
    wshape = (g * og, cg, *k)
    if bad():
        xshape = tuple(draw(st.lists(st.integers(0, 4), min_size=1, max_size=5)))
    if bad():
        wshape = tuple(draw(st.lists(st.integers(0, 3), min_size=1, max_size=5)))
    wd = np.float64 if draw(st.booleans()) else np.float32
    xd = draw(st.sampled_from([np.float32, np.int64, object, np.complex128])) if bad() else wd
    r = np.random.default_rng(draw(st.integers(0, 100)))
    x = r.standard_normal(xshape).astype(xd)
    w = r.standard_normal(wshape).astype(wd)
    b = r.standard_normal(wshape[0] if wshape else 1).astype(wd) if draw(st.booleans()) else None
    if bad():
        b = draw(st.sampled_from([np.ones(7, wd), np.ones((1, 1), wd), np.ones(1, np.int64), 1.0]))

    def int_or_tuple(lo, hi):
        if bad():
            return draw(st.one_of(odd_values, st.tuples(small_int, small_int)))
        return draw(st.one_of(st.integers(lo, hi), st.tuples(*[st.integers(lo, hi)] * n)))

    return dict(
        x=x, weight=w, bias=b, stride=int_or_tuple(1, 3),
        padding=draw(paddings) if bad() else draw(st.one_of(
            st.integers(0, 2), st.sampled_from(["valid", "same", "full"]),
            st.tuples(*[st.tuples(st.integers(0, 2), st.integers(0, 2))] * n))),
        dilation=int_or_tuple(1, 2),
        groups=draw(st.sampled_from([0, -1, 1.0, 3])) if bad() else g,
        padding_mode=draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"]))
        if not bad() else "wrap",
    )


@settings(max_examples=max(100, settings.default.max_examples))
@given(args=fuzz_args())
def test_fuzz_never_crashes_and_accepted_calls_are_right(args):
    expected = _expected_pairs(args["x"], args["weight"], args["bias"], args["stride"],
                               args["padding"], args["dilation"], args["groups"],
                               args["padding_mode"])
    if expected is EMPTY:
        try:  # either answer may be right; neither may be a crash
            ndconv.conv(**args)
        except (ValueError, TypeError) as exc:
            assert str(exc), "an error must say what is wrong"
        return
    try:
        out = ndconv.conv(**args)
    except (ValueError, TypeError) as exc:
        assert str(exc), "an error must say what is wrong"
        assert expected is None, f"a valid call was refused: {exc}"
        event(f"refused: {type(exc).__name__}")
        return
    event("accepted")
    assert expected is not None, "an invalid call was accepted"
    xb, pairs, s, d, unbatched = expected
    ref = conv_ref(xb.astype(np.float64), args["weight"].astype(np.float64),
                   None if args["bias"] is None else args["bias"].astype(np.float64),
                   s, pairs, d, args["groups"], args["padding_mode"])
    if unbatched:
        ref = ref[0]
    assert out.shape == ref.shape and out.dtype == args["weight"].dtype
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * (np.abs(ref).max() + 1))


def test_numpy_integers_and_0d_arrays_are_ints():
    ref = ndconv.conv(X, W, stride=2, padding=1, groups=1)
    for kw in (dict(stride=np.int64(2), padding=np.int32(1), groups=np.int64(1)),
               dict(stride=np.array(2), padding=np.array(1)),
               dict(stride=np.array([2, 2]), padding=[np.int8(1), 1])):
        np.testing.assert_array_equal(ndconv.conv(X, W, **kw), ref)
    with pytest.raises(TypeError, match=r"`stride` must be an int or a tuple of ints, got array\(2\.\)"):
        ndconv.conv(X, W, stride=np.array(2.0))


@st.composite
def transpose_fuzz_args(draw):
    """Small ints, often out of range: torch is the oracle for what is valid."""
    n = draw(st.integers(1, 2))
    g = draw(st.integers(1, 2))
    cin, cout_g = g * draw(st.integers(1, 2)), draw(st.integers(1, 2))
    xshape = (draw(st.integers(1, 2)), cin, *(draw(st.integers(1, 4)) for _ in range(n)))
    wshape = (cin, cout_g, *(draw(st.integers(1, 3)) for _ in range(n)))
    if draw(st.integers(0, 5)) == 0:
        wshape = (cin + 1, *wshape[1:])

    def ints(lo, hi, bad_lo, bad_hi):
        if draw(st.integers(0, 5)) == 0:  # now and then out of range or wrong length
            return draw(st.one_of(st.integers(bad_lo, bad_hi),
                                  st.tuples(*[st.integers(bad_lo, bad_hi)] * (n + 1))))
        return draw(st.one_of(st.integers(lo, hi), st.tuples(*[st.integers(lo, hi)] * n)))

    return dict(x_shape=xshape, w_shape=wshape, stride=ints(1, 3, -1, 3),
                padding=ints(0, 2, -2, 4), output_padding=ints(0, 1, -1, 3),
                groups=draw(st.sampled_from([g, g, g, g, 0, 3])), dilation=ints(1, 2, -1, 2))


def _torch_refuses(fn, *args):
    try:
        return False, fn(*args)
    except (RuntimeError, ValueError, TypeError, IndexError):
        return True, None


@settings(max_examples=max(100, settings.default.max_examples))
@given(args=transpose_fuzz_args())
def test_fuzz_conv_transpose_refuses_exactly_what_torch_refuses(args):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    r = np.random.default_rng(0)
    x, w = r.standard_normal(args["x_shape"]), r.standard_normal(args["w_shape"])
    n = len(args["x_shape"]) - 2
    kw = {k: args[k] for k in ("stride", "padding", "output_padding", "groups", "dilation")}
    # torch takes a tuple of the right length or an int; a wrong-length tuple
    # it may broadcast or index oddly, so those count as refused by the rules.
    wrong_len = any(isinstance(v, tuple) and len(v) != n for v in kw.values())
    refused, ref = _torch_refuses(getattr(F, f"conv_transpose{n}d"), torch.tensor(x),
                                  torch.tensor(w), None, *kw.values())
    refused = refused or wrong_len or (ref is not None and min(ref.shape) == 0)
    try:
        out = ndconv.conv_transpose(x, w, **kw)
    except (ValueError, TypeError) as exc:
        assert refused, f"ndconv refused what torch computes: {exc}"
        event("refused")
        return
    assert not refused, "ndconv accepted what torch refuses"
    event("accepted")
    np.testing.assert_allclose(out, ref.numpy(), rtol=1e-10, atol=1e-10)


@given(x=st.one_of(st.lists(st.integers(-3, 3), max_size=4),
                   st.lists(st.lists(st.floats(-2, 2), min_size=1, max_size=3), max_size=3),
                   st.sampled_from([None, "ab", 3, [[]], [[1, 2], [3]], np.ones((2, 0))])),
       k=st.one_of(st.lists(st.integers(-3, 3), max_size=3), st.sampled_from([[[1.0]], [1], None])),
       mode=st.sampled_from(["valid", "same", "full", "x"]))
def test_fuzz_correlate_raises_only_value_or_type_errors(x, k, mode):
    for fn, ref_fn in ((ndconv.correlate, signal_correlate), (ndconv.convolve, signal_convolve)):
        try:
            out = fn(x, k, mode=mode)
        except (ValueError, TypeError) as exc:
            assert str(exc)
            continue
        np.testing.assert_allclose(out, ref_fn(np.asarray(x, float), np.asarray(k, float),
                                               mode=mode), atol=1e-12)


def signal_correlate(a, b, mode):
    from scipy import signal

    return signal.correlate(a, b, mode=mode, method="direct")


def signal_convolve(a, b, mode):
    from scipy import signal

    return signal.convolve(a, b, mode=mode, method="direct")


def test_huge_valid_padding_is_refused_before_allocating():
    """A valid call whose arrays cannot fit raises MemoryError naming the bytes,
    without attempting the allocation (tracemalloc stays small)."""
    import tracemalloc

    from ndconv import plan

    x = np.ones((1, 1, 4, 4), np.float32)
    w = np.ones((1, 1, 3, 3), np.float32)
    tracemalloc.start()
    try:
        with pytest.raises(MemoryError, match=r"would need 320,009,600,080 bytes"):
            ndconv.conv(x, w, padding=10**5)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20
    # An explicit limit applies to small calls too; within it the call runs.
    with plan.memory_limit("1MB"):
        with pytest.raises(plan.MemoryLimitError, match="memory limit of 1,000,000 bytes"):
            ndconv.conv(np.ones((1, 1, 1000, 1000), np.float32), w)
        assert ndconv.conv(x, w).shape == (1, 1, 2, 2)

"""``correlate``/``convolve`` against SciPy, N >= 4 against the NumPy reference,
the reference itself against PyTorch, identities, NaN/Inf and dtypes."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close, torch_conv, torch_conv_transpose
from hypothesis import assume, given
from hypothesis import strategies as st
from reference import conv_ref

import ndconv
from ndconv.algorithms import methods_for

METHODS = ["auto", *methods_for("numpy")]

signal = pytest.importorskip("scipy.signal")


def _call(fn, *args, method="auto", **kw):
    """Call ``fn``; a restricted method may decline (then the test is skipped)."""
    try:
        return fn(*args, method=method, **kw)
    except ValueError as exc:
        if method == "auto" or "cannot compute this correlation" not in str(exc):
            raise
        pytest.skip(f"{method} declines: {exc}")


# --------------------------------------------------------------------------
# correlate / convolve == scipy.signal.correlate / convolve + bias

INT_DTYPES = [np.int32, np.int64]
FLOAT_DTYPES = [np.float32, np.float64]


@st.composite
def plain_cases(draw):
    n = draw(st.integers(1, 3))
    xs = tuple(draw(st.integers(1, 5)) for _ in range(n))
    ks = tuple(draw(st.integers(1, 4)) for _ in range(n))
    mode = draw(st.sampled_from(["valid", "same", "full"]))
    if mode == "valid":
        # scipy's rule: one array at least as large as the other in every dim.
        assume(all(a >= b for a, b in zip(xs, ks)) or all(b >= a for a, b in zip(xs, ks)))
    dx = draw(st.sampled_from(INT_DTYPES + FLOAT_DTYPES))
    dk = draw(st.sampled_from(INT_DTYPES + FLOAT_DTYPES))
    bias = draw(st.sampled_from([0.0, 1.5, -3]))
    return xs, ks, mode, dx, dk, bias, draw(st.integers(0, 2**32 - 1))


def _rand(r, shape, dtype):
    if np.dtype(dtype).kind == "i":
        return r.integers(-5, 6, size=shape).astype(dtype)
    return r.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("flip", [False, True], ids=["correlate", "convolve"])
@pytest.mark.parametrize("method", METHODS)
@given(case=plain_cases())
def test_plain_matches_scipy(case, method, flip):
    xs, ks, mode, dx, dk, bias, seed = case
    r = np.random.default_rng(seed)
    x, k = _rand(r, xs, dx), _rand(r, ks, dk)
    ours_fn = ndconv.convolve if flip else ndconv.correlate
    ref_fn = signal.convolve if flip else signal.correlate
    try:
        out = ours_fn(x, k, bias, mode, method=method)
    except ValueError as exc:
        if method == "auto" or "cannot compute this correlation" not in str(exc):
            raise
        return
    dtype = np.result_type(x, k)
    # The reference in float64 (exact for these small integers).
    ref = ref_fn(x.astype(np.float64), k.astype(np.float64), mode=mode, method="direct")
    mag = ref_fn(np.abs(x).astype(np.float64), np.abs(k).astype(np.float64), mode=mode,
                 method="direct")
    if dtype.kind == "i":
        # Integer arrays give exact integer sums; the default bias 0.0 then
        # makes them float64 by NumPy's rules.
        assert out.shape == ref.shape
        np.testing.assert_array_equal(out, ref + bias)
        assert out.dtype == np.result_type(dtype, bias)
    else:
        ref = ref + bias
        # One product term's size too: an all-padding output is exactly bias.
        term = float(np.max(np.abs(x))) * float(np.max(np.abs(k))) + abs(bias)
        assert_close(out, ref, np.result_type(dtype, np.asarray(bias, dtype)),
                     "plain", magnitude=np.maximum(mag + abs(bias), term))


@pytest.mark.parametrize("flip", [False, True], ids=["correlate", "convolve"])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_valid_with_larger_kernel_swaps_like_scipy(n, flip):
    r = np.random.default_rng(n)
    x = r.standard_normal((2,) * n)
    k = r.standard_normal((4,) * n)
    ours = (ndconv.convolve if flip else ndconv.correlate)(x, k)
    ref = (signal.convolve if flip else signal.correlate)(x, k, mode="valid", method="direct")
    assert ours.shape == (3,) * n
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)


def test_valid_needs_one_array_larger_in_every_dim():
    x, k = np.ones((3, 5)), np.ones((4, 2))
    with pytest.raises(ValueError):  # scipy refuses it too
        signal.correlate(x, k, mode="valid")
    with pytest.raises(ValueError, match=r"mode='valid' needs `x` \(shape \(3, 5\)\) or `kernel`"):
        ndconv.correlate(x, k)
    with pytest.raises(ValueError, match="mode='valid'"):
        ndconv.convolve(x, k, mode="valid")


def test_result_dtypes():
    f32 = np.ones((4, 4), np.float32)
    assert ndconv.correlate(f32, f32[:2, :2]).dtype == np.float32
    assert ndconv.correlate(f32, np.ones((2, 2))).dtype == np.float64
    i = np.ones((4, 4), np.int64)
    assert ndconv.correlate(i, i[:2, :2], bias=0).dtype == np.int64
    np.testing.assert_array_equal(ndconv.correlate(i, i[:2, :2], bias=2), np.full((3, 3), 6))
    assert ndconv.conv(f32[None, None], f32[None, None, :2, :2]).dtype == np.float32


# --------------------------------------------------------------------------
# N >= 4 through the same code, against the NumPy reference


@st.composite
def nd_cases(draw, n=4):
    groups = draw(st.integers(1, 2))
    cg, og = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    k = tuple(draw(st.integers(1, 2)) for _ in range(n))
    s = tuple(draw(st.integers(1, 2)) for _ in range(n))
    d = tuple(draw(st.integers(1, 2)) for _ in range(n))
    pairs = tuple((draw(st.integers(0, 1)), draw(st.integers(0, 1))) for _ in range(n))
    mode = draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"]))
    sizes = tuple(max(dd * (kk - 1) + 1 - lo - hi, lo + 1, hi + 1, 1) + draw(st.integers(0, 1))
                  for kk, dd, (lo, hi) in zip(k, d, pairs))
    return dict(x_shape=(draw(st.integers(1, 2)), groups * cg, *sizes),
                w_shape=(groups * og, cg, *k), stride=s, dilation=d, pairs=pairs,
                groups=groups, padding_mode=mode, seed=draw(st.integers(0, 2**32 - 1)))


@pytest.mark.parametrize("method", METHODS)
@given(case=nd_cases())
def test_conv_4d_matches_reference(case, method):
    r = np.random.default_rng(case["seed"])
    x = r.standard_normal(case["x_shape"])
    w = r.standard_normal(case["w_shape"])
    b = r.standard_normal(case["w_shape"][0])
    try:
        out = ndconv.conv(x, w, b, case["stride"], case["pairs"], case["dilation"],
                          case["groups"], case["padding_mode"], method=method)
    except ValueError as exc:
        if method == "auto" or "cannot compute this correlation" not in str(exc):
            raise
        return
    ref = conv_ref(x, w, b, case["stride"], case["pairs"], case["dilation"], case["groups"],
                   case["padding_mode"])
    mag = conv_ref(np.abs(x), np.abs(w), np.abs(b), case["stride"], case["pairs"],
                   case["dilation"], case["groups"], case["padding_mode"])
    assert_close(out, ref, np.float64, "conv 4-d", magnitude=mag)


def test_conv_5d_matches_reference():
    r = np.random.default_rng(5)
    x = r.standard_normal((1, 2, 3, 2, 3, 2, 3))
    w = r.standard_normal((2, 2, 2, 1, 2, 2, 1))
    out = ndconv.conv(x, w, padding=1, stride=(1, 2, 1, 1, 2))
    ref = conv_ref(x, w, None, (1, 2, 1, 1, 2), 1)
    assert_close(out, ref, np.float64, "conv 5-d")


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_conv_transpose_is_the_adjoint_of_conv(n):
    """<conv_transpose(y, w), x> == <y, conv(x, w)> for the same arguments."""
    r = np.random.default_rng(n)
    stride, pad, dil = (2,) * n, (1,) * n, (1,) * n
    x = r.standard_normal((2, 4, *(5,) * n))
    w = r.standard_normal((6, 2, *(3,) * n))  # conv: 4 -> 6 channels, groups 2
    y = ndconv.conv(x, w, None, stride, pad, dil, groups=2)
    gy = r.standard_normal(y.shape)
    xt = ndconv.conv_transpose(gy, w, None, stride, pad, output_padding=0, groups=2,
                               dilation=dil)
    assert xt.shape == x.shape
    np.testing.assert_allclose(np.vdot(xt, x), np.vdot(gy, y), rtol=1e-12)


# --------------------------------------------------------------------------
# the reference itself, against PyTorch (so that the N >= 4 check means something)


@pytest.mark.parametrize(
    "n, stride, pairs, dilation, groups, mode",
    [
        (1, 2, ((1, 2),), 2, 1, "reflect"),
        (2, (1, 2), ((0, 1), (2, 1)), (2, 1), 2, "circular"),
        (2, 1, ((1, 1), (1, 1)), 1, 1, "replicate"),
        (3, (2, 1, 1), ((1, 0), (0, 1), (1, 1)), (1, 2, 1), 2, "zeros"),
    ],
)
def test_reference_matches_torch(n, stride, pairs, dilation, groups, mode):
    pytest.importorskip("torch")
    r = np.random.default_rng(0)
    x = r.standard_normal((2, 4, *(5,) * n))
    w = r.standard_normal((4, 4 // groups, *(2,) * n))
    b = r.standard_normal(4)
    s = (stride,) * n if isinstance(stride, int) else stride
    d = (dilation,) * n if isinstance(dilation, int) else dilation
    ref = torch_conv(x, w, b, s, pairs, d, groups, mode)
    np.testing.assert_allclose(conv_ref(x, w, b, s, pairs, d, groups, mode), ref,
                               rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------
# identities


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("n", [1, 2, 3])
def test_groups_equal_concatenated_halves(n, method):
    r = np.random.default_rng(n)
    x = r.standard_normal((2, 4, *(5,) * n))
    w = r.standard_normal((6, 2, *(3,) * n))
    b = r.standard_normal(6)
    whole = _call(ndconv.conv, x, w, b, padding=1, groups=2, method=method)
    halves = np.concatenate(
        [ndconv.conv(x[:, :2], w[:3], b[:3], padding=1),
         ndconv.conv(x[:, 2:], w[3:], b[3:], padding=1)], axis=1)
    np.testing.assert_allclose(whole, halves, rtol=1e-10, atol=1e-10)
    # and for the gradients: each group's gradient only sees its own half
    gy = r.standard_normal(whole.shape)
    gx, gw, gb = _call(ndconv.conv_backward, gy, x, w, padding=1, groups=2, method=method)
    parts = [ndconv.conv_backward(gy[:, :3], x[:, :2], w[:3], padding=1),
             ndconv.conv_backward(gy[:, 3:], x[:, 2:], w[3:], padding=1)]
    np.testing.assert_allclose(gx, np.concatenate([parts[0][0], parts[1][0]], 1), atol=1e-10)
    np.testing.assert_allclose(gw, np.concatenate([parts[0][1], parts[1][1]], 0), atol=1e-10)
    np.testing.assert_allclose(gb, np.concatenate([parts[0][2], parts[1][2]]), atol=1e-10)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("n", [1, 2, 3])
def test_circular_padding_commutes_with_roll(n, method):
    r = np.random.default_rng(n)
    x = r.standard_normal((1, 2, *(6,) * n))
    w = r.standard_normal((3, 2, *(3,) * n))
    axes = tuple(range(2, 2 + n))
    shift = tuple(range(1, n + 1))
    conv = lambda a: _call(ndconv.conv, a, w, padding="same", padding_mode="circular",  # noqa: E731
                           method=method)
    np.testing.assert_allclose(conv(np.roll(x, shift, axes)), np.roll(conv(x), shift, axes),
                               rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_convolve_is_correlate_with_flipped_kernel(n):
    r = np.random.default_rng(n)
    x, k = r.standard_normal((5,) * n), r.standard_normal((3,) * n)
    for mode in ("valid", "same", "full"):
        np.testing.assert_allclose(ndconv.convolve(x, k, mode=mode),
                                   ndconv.correlate(x, np.flip(k), mode=mode), atol=1e-12)


def test_unbatched_equals_batched():
    r = np.random.default_rng(0)
    x, w, b = r.standard_normal((3, 6, 5)), r.standard_normal((4, 3, 2, 2)), r.standard_normal(4)
    np.testing.assert_array_equal(ndconv.conv(x, w, b, padding=1), ndconv.conv(x[None], w, b, padding=1)[0])
    gy = r.standard_normal((4, 7, 6))
    for a, bb in zip(ndconv.conv_backward(gy, x, w, padding=1),
                     ndconv.conv_backward(gy[None], x[None], w, padding=1)):
        np.testing.assert_array_equal(a, bb[0] if a.ndim == 3 else bb)


# --------------------------------------------------------------------------
# NaN and Inf propagate as in PyTorch (no error)


@pytest.mark.parametrize("method", ["auto", "direct", "gemm"])
def test_nan_and_inf_propagate_like_torch(method):
    pytest.importorskip("torch")
    x = np.arange(2 * 7 * 7, dtype=np.float64).reshape(1, 2, 7, 7) / 10
    x[0, 0, 1, 1] = np.nan
    x[0, 1, 5, 4] = np.inf
    w = np.ones((2, 2, 3, 3))
    w[1, 1, 0, 0] = -1.0  # inf * -1 in the second output channel
    out = ndconv.conv(x, w, padding=1, method=method)
    ref = torch_conv(x, w, None, (1, 1), 1, (1, 1), 1, "zeros")
    np.testing.assert_array_equal(np.isnan(out), np.isnan(ref))
    np.testing.assert_array_equal(np.isposinf(out), np.isposinf(ref))
    np.testing.assert_array_equal(np.isneginf(out), np.isneginf(ref))
    fin = np.isfinite(ref)
    np.testing.assert_allclose(out[fin], ref[fin], rtol=1e-12)


@pytest.mark.parametrize(
    "xs, ws",
    [((1, 1, 64, 64), (1, 1, 15, 15)),  # large kernel: 'auto' would pick FFT
     ((1, 64, 28, 28), (64, 64, 3, 3)),  # 3x3, many channels: Winograd
     ((1, 4, 9, 9), (4, 4, 3, 3))],
)
def test_auto_keeps_nan_and_inf_local_like_torch(xs, ws):
    """FFT and Winograd mix a whole block of inputs into every output of the
    block (and Inf - Inf = NaN), so one NaN would spoil a block; 'auto' must
    give PyTorch's answer: non-finite values only where the window sees them."""
    pytest.importorskip("torch")
    r = np.random.default_rng(0)
    x, w = r.standard_normal(xs).astype(np.float32), r.standard_normal(ws).astype(np.float32)
    x[0, 0, 4, 4], x[0, -1, 1, 6] = np.nan, np.inf
    out = ndconv.conv(x, w, padding=1)
    ref = torch_conv(x, w, None, (1, 1), 1, (1, 1), 1, "zeros")
    np.testing.assert_array_equal(np.isnan(out), np.isnan(ref))
    np.testing.assert_array_equal(np.isinf(out), np.isinf(ref))
    gx, _, _ = ndconv.conv_backward(np.where(np.isfinite(out), 1.0, np.nan).astype(np.float32),
                                    np.nan_to_num(x), w, padding=1)
    assert np.isnan(gx).sum() < gx.size / 2  # the NaNs of grad_out stay local too


def test_auto_weight_gradient_keeps_nan_and_inf_local_like_torch():
    """The weight gradient's correlation (kernel = grad_out, many taps) is one
    where 'auto' prefers FFT and then the implicit GEMM's loop over outputs,
    which lays the kernel on the grid with zeros (0 * Inf = NaN): neither may
    spread a NaN or Inf of x to weight taps whose windows never see it."""
    torch = pytest.importorskip("torch")
    r = np.random.default_rng(0)
    x, w = r.standard_normal((1, 2, 64, 64)), r.standard_normal((2, 2, 15, 15))
    x[0, 0, 3, 3], x[0, 1, 55, 50] = np.inf, np.nan
    gy = r.standard_normal((1, 2, 50, 50))
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    torch.nn.functional.conv2d(xt, wt).backward(torch.tensor(gy))
    _, gw, _ = ndconv.conv_backward(gy, x, w)
    ref = wt.grad.numpy()
    np.testing.assert_array_equal(np.isnan(gw), np.isnan(ref))
    np.testing.assert_array_equal(np.isinf(gw), np.isinf(ref))
    fin = np.isfinite(ref)
    np.testing.assert_allclose(gw[fin], ref[fin], rtol=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_nan_never_raises_and_reaches_every_output_torch_marks(method):
    x = np.ones((1, 1, 8, 8))
    x[0, 0, 4, 4] = np.nan
    out = _call(ndconv.conv, x, np.ones((1, 1, 3, 3)), padding=1, method=method)
    assert np.isnan(out[0, 0, 3:6, 3:6]).all()


@pytest.mark.parametrize("method", METHODS)
def test_huge_stride_or_dilation_taken_once_computes(method):
    # A stride that yields one output (or a dilation of a 1-tap kernel) is
    # never stepped; 2**62 must not overflow the strides of a window view.
    pytest.importorskip("torch")
    r = np.random.default_rng(0)
    x, w = r.standard_normal((1, 2, 5, 5)), r.standard_normal((2, 2, 3, 3))
    out = _call(ndconv.conv, x, w, stride=(2**62, 1), method=method)
    ref = torch_conv(x, w, None, (3, 1), 0, (1, 1), 1, "zeros")  # also one output row
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-12)
    out = _call(ndconv.conv, x, w[:, :, :1, :], dilation=(10**30, 1), method=method)
    ref = torch_conv(x, w[:, :, :1, :], None, (1, 1), 0, (1, 1), 1, "zeros")
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-12)


def test_transpose_matches_torch_simple():
    """A plain hand-checkable case: stride 2 scatters copies of the kernel."""
    x = np.array([[[1.0, 2.0]]])
    w = np.array([[[1.0, 10.0, 100.0]]])
    out = ndconv.conv_transpose(x, w, stride=2)
    np.testing.assert_array_equal(out, [[[1.0, 10.0, 102.0, 20.0, 200.0]]])
    pytest.importorskip("torch")
    np.testing.assert_array_equal(out, torch_conv_transpose(x, w, None, 2, 0, 0, 1, 1))


# --------------------------------------------------------------------------
# memory layouts: views, negative strides, Fortran order, broadcasts


def _layouts():
    r = np.random.default_rng(0)
    base, wb = r.standard_normal((2, 6, 9, 10)), r.standard_normal((4, 6, 3, 3))
    return {
        "strided": (base[:, ::2, ::2, 1:], wb[:, ::2]),
        "negative": (base[:, :3, ::-1, ::-1], np.flip(wb[:, :3], (2, 3))),
        "fortran": (np.asfortranarray(base[:, :3]), np.asfortranarray(wb[:, :3])),
        "transposed": (base[:, :3].transpose(0, 1, 3, 2), wb[:, :3].transpose(0, 1, 3, 2)),
        "broadcast": (np.broadcast_to(base[:1, :3], (2, 3, 9, 10)),
                      np.broadcast_to(wb[:1, :3], (4, 3, 3, 3))),
    }


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("layout", list(_layouts()))
def test_any_memory_layout_gives_the_same_result(layout, method):
    x, w = _layouts()[layout]
    xc, wc = np.ascontiguousarray(x), np.ascontiguousarray(w)
    keep = x.copy(), w.copy()
    out = _call(ndconv.conv, x, w, padding=1, stride=(1, 2), method=method)
    assert_close(out, conv_ref(xc, wc, None, (1, 2), 1), np.float64, layout)
    gy = np.random.default_rng(1).standard_normal(out.shape)
    got = _call(ndconv.conv_backward, gy, x, w, padding=1, stride=(1, 2), method=method)
    want = ndconv.conv_backward(gy, xc, wc, padding=1, stride=(1, 2), method="direct")
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)
    # inputs are never written to
    np.testing.assert_array_equal(x, keep[0])
    np.testing.assert_array_equal(w, keep[1])

"""Dtypes peers accept: complex, exact integers, float16 and bfloat16.

References: SciPy for ``correlate`` / ``convolve`` (cases ported from
``scipy/signal/tests/test_signaltools.py``: ``TestCorrelateComplex``,
``TestConvolve.test_complex``, ``test_input_swapping``, the integer cases),
PyTorch for ``conv`` and its gradients (complex autograd follows the
conjugate-Wirtinger convention), the einsum reference for exact integers.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import scipy.signal as ss
import torch
import torch.nn.functional as TF
from conftest import BFLOAT16, TOL, assert_close, torch_conv, torch_conv_transpose
from reference import conv_ref

import ndconv
from ndconv import nn, pooling
from ndconv.algorithms import ALGORITHMS, methods_for
from ndconv.functional import _conv_spec

METHODS = methods_for("numpy")
HALF = [np.dtype(np.float16)] + ([BFLOAT16] if BFLOAT16 is not None else [])


def _supports(method, x, w, **kw):
    spec = _conv_spec(x, w, kw.get("stride", 1), kw.get("padding", 0),
                      kw.get("dilation", 1), kw.get("groups", 1), "zeros")
    algo = ALGORITHMS[method]
    # a method that depends on the kernel's values (separable) must apply too
    return algo.supports(spec)[0] and (algo.applies is None or algo.applies(spec, w) is None)


def _crandn(rng, shape, dtype=np.complex128):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)


# --------------------------------------------------------------------------
# complex correlate / convolve: SciPy's rule (correlate conjugates the kernel)


def _setup_rank(rng, shape_a, shape_b, dt):
    a = _crandn(rng, shape_a, dt)
    b = _crandn(rng, shape_b, dt)
    return a, b


def _by_parts(a, b, mode):
    """SciPy's own expected value in TestCorrelateComplex: real correlations only."""
    c = ss.correlate
    real = c(a.real, b.real, mode=mode) + c(a.imag, b.imag, mode=mode)
    imag = -c(a.real, b.imag, mode=mode) + c(a.imag, b.real, mode=mode)
    return real + 1j * imag


@pytest.mark.parametrize("dt", [np.complex64, np.complex128])
@pytest.mark.parametrize("mode", ["valid", "same", "full"])
@pytest.mark.parametrize("shapes", [((10,), (8,)), ((10, 7), (4, 3)), ((5, 6, 4), (2, 3, 3))],
                         ids=["rank1", "rank2", "rank3"])
def test_correlate_complex_as_scipy(dt, mode, shapes):
    rng = np.random.default_rng(9)
    a, b = _setup_rank(rng, *shapes, dt)
    expected = _by_parts(a.astype(np.complex128), b.astype(np.complex128), mode)
    y = ndconv.correlate(a, b, mode=mode)
    assert_close(y, expected, dtype=dt, magnitude=ss.correlate(np.abs(a), np.abs(b), mode=mode))
    np.testing.assert_allclose(y, ss.correlate(a, b, mode=mode), rtol=10 * TOL[np.dtype(dt)],
                               atol=10 * TOL[np.dtype(dt)] * np.abs(expected).max())


@pytest.mark.parametrize("dt", [np.complex64, np.complex128])
def test_correlate_complex_swap(dt):
    # TestCorrelateComplex.test_swap_full / test_swap_same: the kernel is larger
    d = np.array([0.0, 1 + 1j, 2 + 2j], dtype=dt)
    k = np.array([1 + 3j, 2 + 4j, 3 + 5j, 4 + 6j], dtype=dt)
    np.testing.assert_allclose(ndconv.correlate(d, k, mode="full"),
                               [0, 10 - 2j, 28 - 6j, 22 - 6j, 16 - 6j, 8 - 4j], atol=1e-5)
    np.testing.assert_allclose(ndconv.correlate(d, k, mode="same"),
                               [10 - 2j, 28 - 6j, 22 - 6j], atol=1e-5)
    np.testing.assert_allclose(ndconv.correlate(d, k), ss.correlate(d, k, mode="valid"), atol=1e-5)
    np.testing.assert_allclose(ndconv.correlate(k, d), ss.correlate(k, d, mode="valid"), atol=1e-5)


def test_convolve_complex_as_scipy():
    # TestConvolve.test_complex: no conjugation in a convolution
    x = np.array([1 + 1j, 2 + 1j, 3 + 1j])
    y = np.array([1 + 1j, 2 + 1j])
    np.testing.assert_allclose(ndconv.convolve(x, y, mode="full"), [2j, 2 + 6j, 5 + 8j, 5 + 5j],
                               atol=1e-12)
    # test_input_swapping (complex, 3-D): the larger array becomes the kernel
    small = np.arange(8).reshape(2, 2, 2)
    big = 1j * np.arange(27).reshape(3, 3, 3) + np.arange(27)[::-1].reshape(3, 3, 3)
    for mode in ("full", "same", "valid"):
        for a, b in ((small, big), (big, small)):
            np.testing.assert_allclose(ndconv.convolve(a, b, mode=mode),
                                       ss.convolve(a, b, mode=mode), atol=1e-9)
            np.testing.assert_allclose(ndconv.correlate(a, b, mode=mode),
                                       ss.correlate(a, b, mode=mode), atol=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_correlate_complex_every_method(method):
    rng = np.random.default_rng(4)
    a, k = _crandn(rng, (20, 17)), _crandn(rng, (3, 3))
    if method != "auto" and ALGORITHMS[method].applies is not None:
        k = np.outer(_crandn(rng, (3,)), _crandn(rng, (3,)))  # separable: rank 1
    ref = ss.correlate(a, k, mode="same")
    y = ndconv.correlate(a, k, mode="same", method=method)
    assert y.dtype == np.complex128
    assert_close(y, ref, magnitude=ss.correlate(np.abs(a), np.abs(k), mode="same"))


# --------------------------------------------------------------------------
# complex conv: PyTorch's rule (no conjugation) and Wirtinger gradients


COMPLEX_CASES = [
    ((2, 3, 9), (4, 3, 3), dict(stride=2, padding=1)),
    ((2, 4, 8, 7), (6, 2, 3, 3), dict(groups=2, padding=1)),
    ((1, 3, 8, 8), (3, 1, 3, 3), dict(groups=3, dilation=2)),
    ((2, 2, 12, 12), (2, 2, 3, 3), dict()),  # winograd's shape
    ((1, 2, 5, 5, 5), (2, 2, 2, 2, 2), dict(padding=1)),
]


@pytest.mark.parametrize("dt", [np.complex64, np.complex128])
@pytest.mark.parametrize("xs, ws, kw", COMPLEX_CASES)
def test_conv_complex_matches_torch(dt, xs, ws, kw):
    rng = np.random.default_rng(5)
    x, w, b = _crandn(rng, xs, dt), _crandn(rng, ws, dt), _crandn(rng, ws[:1], dt)
    ref = torch_conv(x, w, b, kw.get("stride", 1), kw.get("padding", 0),
                     kw.get("dilation", 1), kw.get("groups", 1), "zeros")
    mag = torch_conv(np.abs(x), np.abs(w), np.abs(b), kw.get("stride", 1), kw.get("padding", 0),
                     kw.get("dilation", 1), kw.get("groups", 1), "zeros")
    tried = 0
    for method in ["auto", *METHODS]:
        if method != "auto" and not _supports(method, x, w, **kw):
            continue
        tried += 1
        assert_close(ndconv.conv(x, w, b, method=method, **kw), ref, dtype=dt,
                     what=method, magnitude=mag)
    assert tried >= 4


@pytest.mark.parametrize("xs, ws, kw", COMPLEX_CASES)
def test_conv_backward_complex_is_torch_autograd(xs, ws, kw):
    rng = np.random.default_rng(6)
    x, w = _crandn(rng, xs), _crandn(rng, ws)
    b = _crandn(rng, ws[:1])
    y = ndconv.conv(x, w, b, **kw)
    gy = _crandn(rng, y.shape)
    args = (kw.get("stride", 1), kw.get("padding", 0), kw.get("dilation", 1), kw.get("groups", 1))
    _, rgx, rgw, rgb = torch_conv(x, w, b, *args, "zeros", gy=gy)
    gx, gw, gb = ndconv.conv_backward(gy, x, w, **kw)
    for name, got, ref in (("grad_x", gx, rgx), ("grad_w", gw, rgw), ("grad_b", gb, rgb)):
        assert_close(got, ref, what=name, magnitude=np.abs(ref).max() + 1)


def test_conv_transpose_complex_matches_torch():
    rng = np.random.default_rng(7)
    x, w, b = _crandn(rng, (2, 4, 5, 6)), _crandn(rng, (4, 3, 3, 3)), _crandn(rng, (6,))
    kw = dict(stride=2, padding=1, output_padding=1, groups=2, dilation=1)
    y = ndconv.conv_transpose(x, w, b, **kw)
    gy = _crandn(rng, y.shape)
    ry, rgx, rgw, rgb = torch_conv_transpose(x, w, b, 2, 1, 1, 2, 1, gy=gy)
    assert_close(y, ry, magnitude=np.abs(ry).max() + 1)
    gx, gw, gb = ndconv.conv_transpose_backward(gy, x, w, **kw)
    for name, got, ref in (("grad_x", gx, rgx), ("grad_w", gw, rgw), ("grad_b", gb, rgb)):
        assert_close(got, ref, what=name, magnitude=np.abs(ref).max() + 1)


def test_complex_gradient_by_finite_differences():
    """Independent of torch: for a real loss L = Re(sum(conj(c) * y)), the
    gradient PyTorch reports is dL/dRe(x) + i dL/dIm(x)."""
    rng = np.random.default_rng(8)
    x, w = _crandn(rng, (1, 2, 5, 5)), _crandn(rng, (2, 2, 3, 3))
    c = _crandn(rng, (1, 2, 3, 3))

    def loss(xx):
        return float(np.real(np.sum(np.conj(c) * ndconv.conv(xx, w))))

    gx, _, _ = ndconv.conv_backward(c, x, w)
    h = 1e-6
    for idx in [(0, 0, 0, 0), (0, 1, 2, 3), (0, 0, 4, 4)]:
        e = np.zeros_like(x)
        e[idx] = 1
        d_re = (loss(x + h * e) - loss(x - h * e)) / (2 * h)
        d_im = (loss(x + 1j * h * e) - loss(x - 1j * h * e)) / (2 * h)
        assert abs(gx[idx] - (d_re + 1j * d_im)) < 1e-6


def test_complex_auto_never_picks_an_unsupporting_method():
    rng = np.random.default_rng(9)
    x, w = _crandn(rng, (1, 1, 200, 200)), _crandn(rng, (1, 1, 25, 25))
    method, _ = ndconv.choose_method(x, w)
    assert ALGORITHMS[method].supports(_conv_spec(x, w, 1, 0, 1, 1, "zeros"))[0]
    y = ndconv.conv(x, w)[0, 0]
    # PyTorch's conv multiplies without conjugating: SciPy's convolve with the flipped kernel
    flipped = w[0, 0, ::-1, ::-1]
    assert_close(y, ss.convolve(x[0, 0], flipped, "valid"),
                 magnitude=ss.convolve(np.abs(x[0, 0]), np.abs(flipped), "valid"))
    assert not np.allclose(y, ss.correlate(x[0, 0], w[0, 0], "valid"))  # which conjugates


# --------------------------------------------------------------------------
# integers: exact, in the integer dtype (scipy.signal.correlate's rule)


INT_DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16]


@pytest.mark.parametrize("dt", INT_DTYPES)
@pytest.mark.parametrize("mode", ["valid", "same", "full"])
@pytest.mark.parametrize("fn", ["correlate", "convolve"])
def test_integer_correlate_is_scipy_exactly(dt, mode, fn):
    rng = np.random.default_rng(10)
    hi = min(np.iinfo(dt).max, 1000)
    lo = max(np.iinfo(dt).min, -1000)
    a = rng.integers(lo, hi, (9, 8), endpoint=True).astype(dt)
    k = rng.integers(lo, hi, (3, 4), endpoint=True).astype(dt)
    ref = getattr(ss, fn)(a, k, mode=mode)
    y = getattr(ndconv, fn)(a, k, mode=mode)
    assert y.dtype == ref.dtype == np.dtype(dt)  # the default bias keeps the dtype
    np.testing.assert_array_equal(y, ref)  # wraps around exactly as SciPy where it overflows


def test_integer_mixed_dtypes_and_every_int_method():
    rng = np.random.default_rng(11)
    a = rng.integers(-100, 100, (30, 31)).astype(np.int16)
    k = rng.integers(0, 200, (5, 5)).astype(np.uint8)
    ref = ss.correlate(a, k, mode="same")
    assert ref.dtype == np.int16
    for method in ["auto", *METHODS]:
        spec = ndconv.algorithms.CorrSpec(1, 1, 1, 1, a.shape, k.shape, (1, 1), (1, 1),
                                          ((2, 2), (2, 2)), (1, 1), "zeros", np.dtype(np.int16))
        if method != "auto" and not ALGORITHMS[method].supports(spec)[0]:
            # the transform methods round (and separable's factors are
            # fractions): they must say so, and refuse
            assert method in ("fft", "winograd", "implicit", "separable")
            with pytest.raises(ValueError, match=f"`method`='{method}' cannot compute"):
                ndconv.correlate(a, k, mode="same", method=method)
            continue
        y = ndconv.correlate(a, k, mode="same", method=method)
        assert y.dtype == np.int16
        np.testing.assert_array_equal(y, ref)


def test_integer_overflow_wraps_as_numpy_and_scipy():
    a = np.array([100, 100], np.int8)
    k = np.array([1, 1], np.int8)
    y = ndconv.correlate(a, k, mode="full")
    assert y.dtype == np.int8
    np.testing.assert_array_equal(y, [100, -56, 100])
    np.testing.assert_array_equal(ss.correlate(a, k, mode="full"), [100, -56, 100])


def test_integer_bias_rule():
    a, k = np.arange(9).reshape(3, 3), np.array([[0, 1], [2, 3]])
    assert ndconv.correlate(a, k).dtype == np.int64  # default bias 0: stays integer
    y = ndconv.correlate(a, k, bias=2)
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, [[21, 27], [39, 45]])
    assert ndconv.correlate(a, k, bias=0.5).dtype == np.float64  # NumPy: int + float
    assert ndconv.correlate(a.astype(np.int8), k.astype(np.int8), bias=1).dtype == np.int8
    with pytest.raises(ValueError, match=r"`bias` \(=1000\) does not fit in the result's dtype int8"):
        ndconv.correlate(a.astype(np.int8), k.astype(np.int8), bias=1000)
    # a complex bias promotes, as NumPy
    assert ndconv.correlate(a.astype(float), k.astype(float), bias=1j).dtype == np.complex128


def test_integer_conv_is_exact_beyond_float64():
    # Values near 2**50: float64 (53 bits) cannot hold these sums exactly.
    rng = np.random.default_rng(12)
    x = rng.integers(2**49, 2**50, (2, 3, 6, 6), dtype=np.int64)
    w = rng.integers(-7, 8, (4, 3, 3, 3), dtype=np.int64)
    b = rng.integers(-2**40, 2**40, 4, dtype=np.int64)
    ref = conv_ref(x, w, b, stride=1, pairs=1)  # einsum in int64: exact
    y = ndconv.conv(x, w, b, padding=1)
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, ref)
    assert not np.array_equal(
        ndconv.conv(x.astype(float), w.astype(float), b.astype(float), padding=1).astype(np.int64), ref)
    # the gradients are correlations too, exact in the integer dtype
    gy = rng.integers(-5, 6, y.shape, dtype=np.int64)
    gx, gw, gb = ndconv.conv_backward(gy, x, w, padding=1)
    _, rgx, rgw, rgb = torch_conv(x, w, b, 1, 1, 1, 1, "zeros", gy=gy)
    np.testing.assert_array_equal(gx, rgx.astype(np.int64))  # small: exact in float64 too
    np.testing.assert_array_equal(gb, rgb.astype(np.int64))
    assert gw.dtype == np.int64


# --------------------------------------------------------------------------
# float16 and bfloat16: stored as such, computed in float32


def _half(rng, shape, dt):
    return rng.standard_normal(shape).astype(dt)


@pytest.mark.parametrize("dt", HALF, ids=str)
def test_half_conv_and_gradients(dt):
    rng = np.random.default_rng(13)
    x, w, b = _half(rng, (2, 3, 9, 9), dt), _half(rng, (4, 3, 3, 3), dt), _half(rng, (4,), dt)
    y = ndconv.conv(x, w, b, padding=1)
    assert y.dtype == dt
    ref = torch_conv(x, w, b, 1, 1, 1, 1, "zeros")
    assert_close(y, ref, magnitude=torch_conv(np.abs(x.astype(float)), np.abs(w.astype(float)),
                                              np.abs(b.astype(float)), 1, 1, 1, 1, "zeros"))
    # computed in float32 and rounded once: the float32 result, rounded
    y32 = ndconv.conv(x.astype(np.float32), w.astype(np.float32), b.astype(np.float32),
                      padding=1, method="direct")
    np.testing.assert_array_equal(ndconv.conv(x, w, b, padding=1, method="direct").astype(np.float32),
                                  y32.astype(dt).astype(np.float32))
    gy = _half(rng, y.shape, dt)
    _, rgx, rgw, rgb = torch_conv(x, w, b, 1, 1, 1, 1, "zeros", gy=gy)
    gx, gw, gb = ndconv.conv_backward(gy, x, w, padding=1)
    for name, got, r in (("grad_x", gx, rgx), ("grad_w", gw, rgw), ("grad_b", gb, rgb)):
        assert got.dtype == dt
        assert_close(got, r, what=name, magnitude=np.abs(r).max() + np.abs(gy.astype(float)).sum() / 50)


@pytest.mark.parametrize("dt", HALF, ids=str)
def test_half_conv_transpose_and_correlate(dt):
    rng = np.random.default_rng(14)
    x, w = _half(rng, (1, 2, 5, 5), dt), _half(rng, (2, 3, 3, 3), dt)
    y = ndconv.conv_transpose(x, w, stride=2)
    assert y.dtype == dt
    assert_close(y, torch_conv_transpose(x, w, None, 2, 0, 0, 1, 1), magnitude=3.0)
    a, k = _half(rng, (40, 40), dt), _half(rng, (7, 7), dt)
    for method in ["auto", "fft", "direct", "depthwise"]:
        c = ndconv.correlate(a, k, bias=0.5, mode="same", method=method)
        assert c.dtype == dt
        ref = ss.correlate(a.astype(np.float64), k.astype(np.float64), mode="same") + 0.5
        assert_close(c, ref, what=method,
                     magnitude=ss.correlate(np.abs(a.astype(float)), np.abs(k.astype(float)), "same"))


@pytest.mark.parametrize("dt", HALF, ids=str)
def test_half_layers_and_pooling_match_torch(dt):
    m = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, dtype=dt, rng=0), nn.ReLU(),
                      nn.MaxPool2d(2), nn.AvgPool2d(2))
    t = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3, padding=1), torch.nn.ReLU(),
                            torch.nn.MaxPool2d(2), torch.nn.AvgPool2d(2)).double()
    t.load_state_dict({k: torch.tensor(v.astype(np.float64)) for k, v in m.state_dict().items()})
    x = np.random.default_rng(15).standard_normal((2, 2, 8, 8)).astype(dt)
    xt = torch.tensor(x.astype(np.float64), requires_grad=True)
    y, yt = m(x), t(xt)
    assert y.dtype == dt and m[0].weight.dtype == dt
    assert_close(y, yt.detach().numpy(), magnitude=np.abs(yt.detach().numpy()).max() + 1)
    gy = np.ones_like(y)
    yt.backward(torch.ones_like(yt))
    gx = m.backward(gy)
    assert gx.dtype == dt and m[0].weight.grad.dtype == dt
    assert_close(gx, xt.grad.numpy(), magnitude=np.abs(xt.grad.numpy()).max() + 1)
    assert_close(m[0].weight.grad, t[0].weight.grad.numpy(),
                 magnitude=np.abs(t[0].weight.grad.numpy()).max() + 1)


@pytest.mark.parametrize("dt", HALF, ids=str)
def test_half_avg_pool_sums_in_float32(dt):
    # 4096 ones and one large value: a float16 running sum would stall at 2048.
    x = np.ones((1, 1, 64, 64), dt)
    y = pooling.avg_pool(x, (64, 64))
    assert y.dtype == dt and float(y[0, 0, 0, 0]) == 1.0
    ref = TF.avg_pool2d(torch.tensor(x.astype(np.float64)), 64).numpy()
    assert_close(y, ref)


def test_half_is_computed_at_float32_speed():
    """The issue: NumPy's float16 matmul has no BLAS (4.4 s against 32 ms)."""
    rng = np.random.default_rng(16)
    x = rng.standard_normal((1, 64, 48, 48)).astype(np.float16)
    w = rng.standard_normal((64, 64, 3, 3)).astype(np.float16)
    x32, w32 = x.astype(np.float32), w.astype(np.float32)

    def best(f):
        ts = []
        for _ in range(3):
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
        return min(ts)

    t16 = best(lambda: ndconv.conv(x, w, padding=1, method="gemm"))
    t32 = best(lambda: ndconv.conv(x32, w32, padding=1, method="gemm"))
    # A float16 GEMM would be ~100x slower; the casts cost about one copy each.
    assert t16 < 5 * t32 + 0.05, (t16, t32)


def test_dask_takes_the_same_dtypes():
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(17)
    a, k = _crandn(rng, (30, 30)), _crandn(rng, (5, 5))
    y = ndconv.correlate(da.from_array(a, chunks=10), k, mode="same").compute()
    assert_close(y, ss.correlate(a, k, mode="same"),
                 magnitude=ss.correlate(np.abs(a), np.abs(k), mode="same"))
    ai, ki = rng.integers(-50, 50, (30, 30)), rng.integers(-3, 3, (3, 3))
    yi = ndconv.correlate(da.from_array(ai, chunks=10), ki, mode="full").compute()
    assert yi.dtype == np.int64
    np.testing.assert_array_equal(yi, ss.correlate(ai, ki, mode="full"))
    for dt in HALF:
        x, w, b = _half(rng, (1, 2, 30, 30), dt), _half(rng, (3, 2, 3, 3), dt), _half(rng, (3,), dt)
        yd = ndconv.conv(da.from_array(x, chunks=(1, 2, 10, 10)), w, b, padding=1).compute()
        assert yd.dtype == dt
        assert_close(yd, torch_conv(x, w, b, 1, 1, 1, 1, "zeros"), magnitude=8.0)

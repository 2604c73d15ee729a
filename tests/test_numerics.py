"""Numerics under attack (issue 14, items 13-16), against torch in float64.

- 13: ``method='auto'`` keeps every output within the direct formula's error
  bound ``n * eps * sum |x||w|`` over that output's own window.
- 14: no NaN/Inf where the exact result is finite (transforms that would
  overflow are scaled by powers of two).
- 15: explicit FFT/Winograd/implicit (loop over outputs) spread a NaN over
  their block, as the README documents; ``'auto'`` and the other methods keep
  NaN/Inf exactly where torch has them.
- 16: a NaN in ``grad_out`` of ``max_pool_backward`` reaches only the winner.
"""

from __future__ import annotations

import numpy as np
import pytest

import ndconv
import ndconv.pooling
from ndconv import functional as F

torch = pytest.importorskip("torch")

_TORCH_CONV = {1: "conv1d", 2: "conv2d", 3: "conv3d"}


def _torch64(x, w, padding):
    f = getattr(torch.nn.functional, _TORCH_CONV[w.ndim - 2])
    t = lambda a: torch.from_numpy(np.asarray(a, np.float64))  # noqa: E731
    return f(t(x), t(w), padding=padding).numpy()


def _bound_ratio(y, x, w, padding):
    """Worst ``|y - exact| / (n * eps * sum|x||w|)`` over all outputs (<= 1: within)."""
    exact = _torch64(x, w, padding)
    own = _torch64(np.abs(x.astype(np.float64)), np.abs(w.astype(np.float64)), padding)
    n = w[0].size
    eps = np.finfo(y.dtype).eps
    err = np.abs(y.astype(np.float64) - exact)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(err > 0, err / (n * eps * own), 0.0)
    return float(ratio.max())


def test_issue_example_spike_keeps_every_output_within_the_direct_bound():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 1, 512, 512)).astype(np.float32)
    x[0, 0, 10, 10] = 1e12
    w = rng.standard_normal((1, 1, 31, 31)).astype(np.float32)
    method, reason = ndconv.choose_method(x, w, padding=15)
    assert method != "fft" and "fft left out: the input's dynamic range" in reason
    y = ndconv.conv(x, w, padding=15)
    exact = _torch64(x, w, 15)
    assert abs(y[0, 0, 19, 117] - exact[0, 0, 19, 117]) < 1e-3  # was -296814 vs 13.33
    assert _bound_ratio(y, x, w, 15) <= 1.0
    # The same arrays without the spike still go to FFT.
    x[0, 0, 10, 10] = 0.5
    assert ndconv.choose_method(x, w, padding=15)[0] == "fft"


def _largest_accepted_spike(x, w, padding, method, at):
    """The largest spike (on a grid of 10**0.25 steps) for which auto keeps ``method``."""
    accepted = None
    for e in np.arange(0, 14, 0.25):
        x[at] = 10.0**e
        if ndconv.choose_method(x, w, padding=padding)[0] != method:
            break
        accepted = 10.0**e
    assert accepted is not None, "the method was not chosen even without a spike"
    return accepted


@pytest.mark.parametrize(
    "method, x_shape, w_shape, padding, dtype",
    [
        ("fft", (1, 1, 256, 256), (1, 1, 31, 31), 15, np.float32),
        # (a 301-tap kernel on 8192 samples is the compiled direct sum's now)
        ("fft", (1, 1, 16384), (1, 1, 1001), 500, np.float32),
        ("fft", (1, 1, 256, 256), (1, 1, 31, 31), 15, np.float64),
        ("winograd", (8, 128, 28, 28), (128, 128, 3, 3), 1, np.float32),
    ],
)
def test_auto_stays_within_the_direct_bound_up_to_its_threshold(
        method, x_shape, w_shape, padding, dtype):
    """At the largest spike auto still hands to FFT/Winograd, and just past it,
    every output is within the direct formula's bound (torch float64): the
    declared error growth is on the safe side."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    at = (0, 0) + tuple(s // 3 for s in x_shape[2:])
    spike = _largest_accepted_spike(x, w, padding, method, at)
    x[at] = spike
    y = ndconv.conv(x, w, padding=padding)
    assert ndconv.choose_method(x, w, padding=padding)[0] == method
    assert _bound_ratio(y, x, w, padding) <= 1.0, spike
    x[at] = spike * 10
    y = ndconv.conv(x, w, padding=padding)
    assert _bound_ratio(y, x, w, padding) <= 1.0


def test_explicit_fft_on_the_spike_breaks_the_bound_as_the_readme_says():
    """Why auto leaves it: the forced method's error follows the block's largest value."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 1, 256, 256)).astype(np.float32)
    x[0, 0, 100, 100] = 1e10
    w = rng.standard_normal((1, 1, 31, 31)).astype(np.float32)
    assert _bound_ratio(ndconv.conv(x, w, padding=15, method="fft"), x, w, 15) > 10


# -------------------------------------------------------------------- item 14


@pytest.mark.parametrize("k, channels", [(3, 64), (15, 4)])
@pytest.mark.parametrize("method", ["auto", "fft", "winograd"])
def test_huge_float64_values_give_finite_results_where_the_exact_ones_are(k, channels, method):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, channels, 32, 32)) * 2.5e305
    w = rng.standard_normal((channels, channels, k, k))
    if method == "winograd" and k != 3:
        pytest.skip("winograd takes 3x3 kernels only")
    exact = _torch64(x, w, k // 2)
    assert np.isfinite(exact).all()
    y = ndconv.conv(x, w, padding=k // 2, method=method)
    assert np.isfinite(y).all()
    assert np.max(np.abs(y - exact)) <= 1e-12 * np.max(np.abs(exact))


@pytest.mark.parametrize("method", ["auto", "fft", "winograd", "direct"])
def test_float32_near_its_maximum_with_a_box_filter_is_exact_not_nan(method):
    x = np.full((1, 1, 64, 64), 3e37, np.float32)
    w = np.full((1, 1, 3, 3), 1 / 9, np.float32)
    y = ndconv.conv(x, w, method=method)
    exact = _torch64(x, w, 0)
    assert not np.isnan(y).any()
    np.testing.assert_allclose(y, exact, rtol=1e-5)


def test_an_overflowing_exact_result_is_still_inf():
    """Scaling keeps overflow where the direct sum overflows (no silent clipping)."""
    x = np.full((1, 1, 16, 16), 1e308)
    w = np.full((1, 1, 3, 3), 1.0)
    for method in ("direct", "fft", "winograd"):
        assert np.isposinf(ndconv.conv(x, w, method=method)).all(), method


# -------------------------------------------------------------------- item 15


def _nan_case():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 1, 48, 48))
    x[0, 0, 20, 20] = np.nan
    x[0, 0, 30, 5] = np.inf
    w = rng.standard_normal((1, 1, 3, 3))
    return x, w


def test_nonfinite_stays_where_torch_has_it_for_auto_and_the_windowed_methods():
    x, w = _nan_case()
    exact = _torch64(x, w, 1)
    for method in ("auto", "direct", "gemm", "depthwise", "implicit", "scatter"):
        y = ndconv.conv(x, w, padding=1, method=method)
        np.testing.assert_array_equal(np.isnan(y), np.isnan(exact), err_msg=method)
        np.testing.assert_array_equal(np.isinf(y), np.isinf(exact), err_msg=method)
    assert np.isnan(exact).sum() == 9 and np.isinf(exact).sum() == 9  # 9 windows each


@pytest.mark.parametrize("method", ["fft", "winograd"])
def test_explicit_block_methods_spread_nan_over_their_block_as_documented(method):
    x, w = _nan_case()
    y = ndconv.conv(x, w, padding=1, method=method)
    exact = _torch64(x, w, 1)
    nan = ~np.isfinite(y)
    assert nan[~np.isfinite(exact)].all()  # never fewer than torch
    assert nan.sum() > (~np.isfinite(exact)).sum()  # the documented spread
    np.testing.assert_allclose(y[~nan], exact[~nan], rtol=1e-9, atol=1e-9)


def test_implicit_loop_over_outputs_spreads_nan_as_documented():
    """The weight gradient's correlation (few outputs): the kernel laid on the
    grid with zeros, 0 * NaN = NaN in every output."""
    from ndconv.algorithms import CorrSpec, implicit, run

    x, _ = _nan_case()
    g = np.ones((1, 1, 46, 46))
    spec = CorrSpec(batch=1, in_channels=1, out_channels=1, groups=1, in_spatial=(48, 48),
                    kernel_size=(46, 46), stride=(1, 1), dilation=(1, 1),
                    pairs=((0, 0), (0, 0)), lhs_dilation=(1, 1), padding_mode="zeros",
                    dtype=np.dtype(np.float64))
    assert implicit.mode(spec) == "outputs"
    assert np.isnan(run(x, g, spec, "implicit")).all()
    exact = _torch64(x, g, 0)
    np.testing.assert_array_equal(np.isnan(run(x, g, spec, "auto")), np.isnan(exact))


# -------------------------------------------------------------------- item 16


@pytest.mark.parametrize("kernel, stride", [((2, 2), (2, 2)), ((3, 3), (1, 1))])
def test_max_pool_backward_nan_gradient_reaches_only_the_winner(kernel, stride):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 2, 8, 8))
    gy = rng.standard_normal(ndconv.pooling.max_pool(x, kernel, stride).shape)
    gy[0, 0, 1, 1] = np.nan
    gy[0, 1, 2, 0] = np.inf
    gx = ndconv.pooling.max_pool_backward(gy, x, kernel, stride)
    xt = torch.from_numpy(x).requires_grad_()
    torch.nn.functional.max_pool2d(xt, kernel, stride).backward(torch.from_numpy(gy))
    ref = xt.grad.numpy()
    np.testing.assert_array_equal(np.isnan(gx), np.isnan(ref))
    np.testing.assert_array_equal(np.isinf(gx), np.isinf(ref))
    finite = np.isfinite(ref)
    np.testing.assert_allclose(gx[finite], ref[finite], rtol=1e-12)

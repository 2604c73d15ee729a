"""The memory guard covers pooling, layer construction, measuring, and what each
method really holds (issue 14, item 9)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import ndconv
import ndconv.pooling as P
from ndconv import nn, plan
from ndconv.algorithms import ALGORITHMS

HUGE = (1, 1, 100000, 100000)


def _huge():
    """A 40 GB float32 input that takes no memory (every element is one zero)."""
    return np.broadcast_to(np.float32(0), HUGE)


@pytest.mark.parametrize("call", [
    lambda x: P.max_pool(x, (2, 2)),
    lambda x: P.avg_pool(x, (2, 2)),
    lambda x: P.max_pool_backward(np.broadcast_to(np.float32(1), (1, 1, 50000, 50000)), x, (2, 2)),
    lambda x: P.avg_pool_backward(np.broadcast_to(np.float32(1), (1, 1, 50000, 50000)), x, (2, 2)),
])
def test_pooling_a_huge_input_is_refused_before_allocating(call):
    with plan.memory_limit("1GB"), pytest.raises(plan.MemoryLimitError, match="pool"):
        call(_huge())


def test_pooling_within_the_limit_still_runs():
    x = np.random.default_rng(0).standard_normal((1, 2, 64, 64)).astype(np.float32)
    with plan.memory_limit("10MB"):
        assert P.max_pool(x, (2, 2)).shape == (1, 2, 32, 32)
        assert P.avg_pool_backward(np.ones((1, 2, 32, 32), np.float32), x, (2, 2)).shape == x.shape


@pytest.mark.parametrize("build", [
    lambda: nn.Conv2d(16384, 16384, 3),
    lambda: nn.Linear(100000, 100000),
    lambda: nn.ConvTranspose2d(65536, 65536, 3),
])
def test_building_a_layer_that_cannot_fit_is_refused(build):
    with plan.memory_limit("1GB"), pytest.raises(plan.MemoryLimitError, match="parameters"):
        build()


def test_layer_parameters_are_drawn_without_a_float64_temporary():
    """A float32 weight of 9.4 MB peaks at about its own size (was 3x: float64 + cast)."""
    tracemalloc.start()
    try:
        layer = nn.Conv2d(512, 512, 3)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1.3 * layer.weight.data.nbytes


def test_chunked_initialisation_draws_the_same_values(monkeypatch):
    """PyTorch's U(-1/sqrt(fan_in), +) from the Generator, value for value, in pieces."""
    from ndconv.nn import init

    monkeypatch.setattr(init, "_CHUNK", 7)
    got = init.kaiming_uniform((5, 3, 2, 2), np.random.default_rng(9), np.float32)
    bound = 1 / np.sqrt(12)
    want = np.random.default_rng(9).uniform(-bound, bound, (5, 3, 2, 2)).astype(np.float32)
    np.testing.assert_array_equal(got, want)


def test_choose_method_measure_on_a_huge_input_is_refused():
    w = np.zeros((1, 1, 3, 3), np.float32)
    with plan.memory_limit("1GB"), pytest.raises(plan.MemoryLimitError):
        ndconv.choose_method(_huge(), w, measure=True)


def test_spec_level_measure_refuses_random_arrays_that_cannot_fit():
    from ndconv import functional as F
    from ndconv.algorithms import choose

    spec = F._conv_spec(_huge(), np.zeros((1, 1, 3, 3), np.float32), 1, 1, 1, 1, "zeros")
    with plan.memory_limit("1GB"), pytest.raises(plan.MemoryLimitError):
        choose.choose(spec, measure=True)


def _peak(fn):
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


#: What tracemalloc counts beyond the arrays (Python objects, small buffers).
_SLACK = 2**20


def _specs():
    from ndconv import functional as F

    for xs, ws, padding, groups in [
        ((2, 16, 64, 64), (16, 16, 9, 9), 4, 1),
        ((2, 16, 64, 64), (16, 16, 3, 3), 1, 1),
        ((2, 16, 64, 64), (16, 1, 5, 5), 2, 16),
        ((1, 1, 128, 128), (1, 1, 15, 15), 7, 1),
        ((2, 8, 16, 16, 16), (8, 8, 3, 3, 3), 1, 1),
    ]:
        x, w = np.ones(xs, np.float32), np.ones(ws, np.float32)
        for stride in (1, 2) if xs[1] <= 8 else (1,):  # (implicit is slow on the others)
            yield F._conv_spec(x, w, stride, padding, 1, groups, "zeros")


@pytest.mark.parametrize("method", list(ALGORITHMS))
def test_each_method_holds_no_more_than_its_record_declares(method):
    """The guard counts ``workspace_bytes``: it must cover the traced peak."""
    from ndconv.algorithms import run

    algo = ALGORITHMS[method]
    for spec in _specs():
        if not algo.supports(spec)[0]:
            continue
        x = np.ones((spec.batch, spec.in_channels, *spec.in_spatial), np.float32)
        w = np.ones((spec.out_channels, spec.in_channels // spec.groups, *spec.kernel_size),
                    np.float32)
        run(x, w, spec, method)  # compile / plan once, outside the trace
        peak = _peak(lambda: run(x, w, spec, method))
        declared = algo.workspace_bytes(spec)
        assert peak <= 1.02 * declared + _SLACK, (spec, peak, declared)


@pytest.mark.parametrize("method", ["auto", "fft", "gemm"])
def test_backward_under_a_limit_stays_within_it_or_is_refused(method):
    """FFT's backward used to peak at twice a limit it had been given."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 16, 32, 32)).astype(np.float32)
    w = rng.standard_normal((16, 16, 9, 9)).astype(np.float32)
    gy = np.ones(ndconv.conv(x, w, padding=4).shape, np.float32)
    limit = 2 * 10**6  # the gradients themselves take 0.3 MB
    for m in {method, "implicit", "direct"}:  # imports, outside the trace
        ndconv.conv_backward(gy, x, w, padding=4, method=m)
    with plan.memory_limit(limit):
        try:
            # Once untraced under the limit too: the method it leads to may
            # compile a kernel on its first call (numba's compiler allocated
            # 12 MB of Python objects for the survey's pass over a strided view).
            ndconv.conv_backward(gy, x, w, padding=4, method=method)
            peak = _peak(lambda: ndconv.conv_backward(gy, x, w, padding=4, method=method))
        except plan.MemoryLimitError:
            assert method != "auto"  # auto finds a method that fits
            return
    assert peak <= limit + _SLACK, (method, peak)


def test_auto_picks_a_method_that_fits_rather_than_refusing():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 32, 48, 48)).astype(np.float32)
    w = rng.standard_normal((32, 32, 9, 9)).astype(np.float32)
    spec_method = ndconv.choose_method(x, w, padding=4)[0]
    with plan.memory_limit("12MB"):
        method, reason = ndconv.choose_method(x, w, padding=4)
        y = ndconv.conv(x, w, padding=4)
    assert method != spec_method and f"{spec_method} left out" in reason
    np.testing.assert_allclose(y, ndconv.conv(x, w, padding=4, method="direct"),
                               rtol=1e-4, atol=1e-3)

"""The survey's statistics (``method='auto'``'s read of the arrays), compiled
pass and NumPy slabs alike, against a brute-force reading of their definition."""

import itertools
import math

import numpy as np
import pytest

from ndconv.core.algorithms import survey
from ndconv.core.algorithms.spec import CorrSpec


def _spec(xs, ks, dilation=None):
    n = len(ks)
    return CorrSpec(xs[0], xs[1], 1, 1, tuple(xs[2:]), tuple(ks), (1,) * n,
                    tuple(dilation or (1,) * n), ((0, 0),) * n, (1,) * n, "zeros",
                    np.dtype(np.float32))


def _brute(x, block):
    """max |x| and the smallest mean |x| over channels and blocks, one block at a time."""
    a = np.abs(x.astype(np.float64))
    S = x.shape[2:]
    smallest = math.inf
    for b in range(x.shape[0]):
        for start in itertools.product(*[range(0, n, k) for n, k in zip(S, block)]):
            idx = tuple(slice(s, s + k) for s, k in zip(start, block))
            smallest = min(smallest, a[(b, slice(None)) + idx].mean())
    return a.max(), smallest


def _stats(x, spec, compiled):
    w = np.ones((1, x.shape[1]) + spec.kernel_size, np.float32)
    keep = survey._COMPILED
    if not compiled:
        survey._COMPILED = False
    try:
        return survey.Survey(x, w, spec)._x_stats
    finally:
        survey._COMPILED = keep


CASES = [((1, 1, 1000), (31,)), ((3, 2, 1001), (64,)), ((2, 1, 5), (9,)), ((2, 3, 17, 23), (5, 4)), ((1, 1, 61, 83), (15, 15)),
         ((3, 2, 9, 10, 11), (3, 4, 5)), ((1, 4, 7), (1,)), ((2, 1, 5, 6, 7, 8), (2, 3, 2, 3))]


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xs,ks", CASES)
def test_stats_match_definition(xs, ks, dtype, compiled):
    rng = np.random.default_rng(len(xs) * 7 + ks[0])
    # values spread over orders of magnitude, so the smallest block stands out
    x = (rng.standard_normal(xs) * np.exp(2 * rng.standard_normal(xs))).astype(dtype)
    spec = _spec(xs, ks)
    top, least = _stats(x, spec, compiled)
    want_top, want_least = _brute(x, survey.block_shape(spec))
    assert top == want_top
    assert least == pytest.approx(want_least, rel=1e-9)


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("shape,where,ks", [((2, 3, 40, 50), (1, 2, 39, 17), (7, 7)),
                                            ((2, 3, 900), (1, 2, 899), (64,))])
def test_nonfinite_is_seen(bad, compiled, shape, where, ks):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    x[where] = bad
    top, _ = _stats(x, _spec(x.shape, ks), compiled)
    assert math.isnan(top) if np.isnan(bad) else top == math.inf


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("shape,ks", [((1, 8, 40, 40), (5, 5)), ((1, 8, 300), (9,))])
def test_huge_finite_values_are_finite(compiled, shape, ks):
    # float32 values near the top of the range: sums must not overflow into 'not finite'
    x = np.full(shape, 3e38, np.float32)
    top, least = _stats(x, _spec(x.shape, ks), compiled)
    assert top == np.float32(3e38) and least == pytest.approx(float(np.float32(3e38)))


@pytest.mark.parametrize("compiled", [True, False])
def test_zero_block_gives_infinite_range(compiled):
    x = np.ones((1, 1, 50, 50), np.float32)
    x[0, 0, 20:30, 20:30] = 0
    spec = _spec(x.shape, (5, 5))
    w = np.ones((1, 1, 5, 5), np.float32)
    keep = survey._COMPILED
    if not compiled:
        survey._COMPILED = False
    try:
        assert survey.Survey(x, w, spec).dynamic_range == math.inf
    finally:
        survey._COMPILED = keep


def test_strided_input_gives_the_same_stats_compiled_or_in_slabs():
    x = np.random.default_rng(3).standard_normal((1, 1, 40, 60)).astype(np.float32)[..., ::2]
    spec = _spec(x.shape, (5, 5))
    assert _stats(x, spec, True) == _stats(x, spec, False)


@pytest.mark.parametrize("xs,ks", [((5, 3, 17, 23), (5, 4)), ((4, 3, 9, 10, 11), (3, 4, 5)),
                                   ((6, 2, 300), (9,))])
def test_swapped_batch_and_channels_view_takes_the_compiled_pass(xs, ks):
    # The weight gradient surveys x with its batch and channel axes swapped:
    # a view, whose planes are still contiguous. The compiled pass reads it
    # in place (the slabs took 5 ms of a 256-channel backward), with the
    # definition's statistics.
    rng = np.random.default_rng(11)
    x = (rng.standard_normal(xs) * np.exp(2 * rng.standard_normal(xs))).astype(np.float32)
    xt = x.swapaxes(0, 1)
    assert not xt.flags.c_contiguous
    spec = _spec(xt.shape, ks)
    assert survey._fast_x_stats(xt, survey.block_shape(spec)) is not None
    top, least = _stats(xt, spec, True)
    want_top, want_least = _brute(np.ascontiguousarray(xt), survey.block_shape(spec))
    assert top == want_top
    assert least == pytest.approx(want_least, rel=1e-9)


@pytest.mark.parametrize("xs,ks,planes", [
    ((2, 128, 28, 28), (3, 3), True),   # a layer's short rows: the channels summed as runs
    ((3, 5, 9, 10, 11), (3, 4, 5), True),
    ((4, 64, 500), (9,), True),         # a 1-D layer's short blocks
    ((1, 3, 50, 90), (7, 7), False),    # rows of 64 or more: stats' own loops
    ((2, 3, 2000), (129,), False),
])
def test_contiguous_planes_take_the_run_pass_with_the_same_stats(xs, ks, planes, monkeypatch):
    stats, plane_stats = survey._compiled()
    called = []

    def counted(*args):
        called.append(True)
        return plane_stats(*args)

    monkeypatch.setattr(survey, "_COMPILED", (stats, counted))
    rng = np.random.default_rng(5)
    x = (rng.standard_normal(xs) * np.exp(2 * rng.standard_normal(xs))).astype(np.float32)
    x[0, 1, 2] *= 1e-6  # one quiet row: the smallest block is there
    spec = _spec(xs, ks)
    top, least = survey._fast_x_stats(x, survey.block_shape(spec))
    assert bool(called) == planes
    want_top, want_least = _brute(x, survey.block_shape(spec))
    assert top == want_top
    assert least == pytest.approx(want_least, rel=1e-9)
    x[-1, -1, -1] = np.nan  # and a NaN in the last plane is seen
    assert math.isnan(survey._fast_x_stats(x, survey.block_shape(spec))[0])


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_abs_is_numpys_largest_magnitude(dtype, compiled, monkeypatch):
    if not compiled:
        monkeypatch.setattr(survey, "_COMPILED", False)
    rng = np.random.default_rng(8)
    a = rng.standard_normal((6, 5, 7)).astype(dtype)
    a[2, 3, 4] = -40.0  # the largest magnitude is negative
    for arr in (a, np.asfortranarray(a), a[:, ::2], a.swapaxes(0, 2), np.array([-0.0], dtype)):
        assert survey.max_abs(arr) == np.abs(arr).max()
    for bad in (np.inf, -np.inf, np.nan):
        b = a.copy()
        b[5, 4, 6] = bad
        got = survey.max_abs(b)
        assert math.isnan(got) if np.isnan(bad) else got == math.inf
    # and the survey's finite-ness reads it for the kernel
    spec = _spec((1, 5, 9, 9), (3, 3))
    x = np.ones((1, 5, 9, 9), dtype)
    w = np.ones((1, 5, 3, 3), dtype)
    assert survey.Survey(x, w, spec).finite
    w[0, 4, 2, 2] = np.nan
    assert not survey.Survey(x, w, spec).finite

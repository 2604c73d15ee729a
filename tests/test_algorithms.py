"""Each algorithm against the reference on the general correlation it computes.

The specs here exercise what ``ndconv.conv`` never produces directly but the
gradients do: input dilation (``lhs_dilation``, the input-gradient of a
strided convolution) and negative padding (cropping, in transposed
convolutions). Every algorithm in ``ALGORITHMS`` is checked on every spec its
``supports()`` accepts, against ``tests/reference.py`` in float64.

Tolerances (max abs error relative to ``max(|x| * |w|)``, the correlation of
the absolute values, the classic scale of rounding error):

- direct, gemm, depthwise: ``16 * eps``;
- winograd: ``64 * eps`` (F(4,3)'s transform coefficients up to 8 magnify rounding);
- fft: ``4 * eps * log2(L)`` with ``L`` the points per transform block
  (rounding spreads over every output of a block).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from reference import conv_ref

import ndconv
from ndconv import functional as F
from ndconv.algorithms import ALGORITHMS, CorrSpec, methods_for
from ndconv.algorithms import choose as choose_mod
from ndconv.algorithms import fft as fft_mod

torch = pytest.importorskip("torch")


def spec_ref(x, w, spec):
    """The correlation of ``spec`` in float64 from ``conv_ref``: dilate, crop, pad."""
    x = x.astype(np.float64)
    n = spec.ndim
    r = spec.lhs_dilation
    shape = [(s - 1) * ri + 1 for s, ri in zip(x.shape[2:], r)]
    xd = np.zeros(x.shape[:2] + tuple(shape))
    xd[(Ellipsis, *[slice(None, None, ri) for ri in r])] = x
    crop = tuple(slice(max(0, -lo), sz - max(0, -hi)) for (lo, hi), sz in zip(spec.pairs, shape))
    xd = xd[(Ellipsis, *crop)]
    pairs = tuple((max(0, lo), max(0, hi)) for lo, hi in spec.pairs)
    return conv_ref(xd, w.astype(np.float64), None, spec.stride, pairs, spec.dilation,
                    spec.groups, spec.padding_mode)


def tolerance(method, spec, dtype):
    eps = np.finfo(dtype).eps
    if method == "fft":
        span = [d * (k - 1) + 1 for k, d in zip(spec.kernel_size, spec.dilation)]
        L = math.prod(
            fft_mod.block_length(n, k, s)[0]
            for n, k, s in zip(spec.padded_spatial, span, spec.stride)
        )
        return 4 * eps * max(math.log2(L), 1)
    if method == "winograd":
        return 64 * eps
    return 16 * eps


@st.composite
def specs(draw):
    """Random general correlations, with input dilation, cropping and padding modes."""
    n = draw(st.integers(1, 3))
    g = draw(st.integers(1, 3))
    cg = draw(st.sampled_from([1, 1, 2, 3]))
    og = draw(st.integers(1, 2))
    k = tuple(draw(st.sampled_from([1, 2, 3, 3, 4])) for _ in range(n))
    s = tuple(draw(st.integers(1, 2)) for _ in range(n))
    d = tuple(draw(st.integers(1, 2)) for _ in range(n))
    mode = draw(st.sampled_from(["zeros", "zeros", "reflect", "replicate", "circular"]))
    r = (1,) * n if mode != "zeros" else tuple(draw(st.integers(1, 2)) for _ in range(n))
    size = tuple(draw(st.integers(3, 9 if n < 3 else 5)) for _ in range(n))
    lo = 0 if mode != "zeros" else -1
    pairs = tuple((draw(st.integers(lo, 2)), draw(st.integers(lo, 2))) for _ in range(n))
    if mode == "reflect":
        pairs = tuple((min(a, sz - 1), min(b, sz - 1)) for (a, b), sz in zip(pairs, size))
    spec = CorrSpec(
        batch=draw(st.integers(1, 2)), in_channels=g * cg, out_channels=g * og, groups=g,
        in_spatial=size, kernel_size=k, stride=s, dilation=d, pairs=pairs,
        lhs_dilation=r, padding_mode=mode, dtype=np.dtype(draw(st.sampled_from(["float32", "float64"]))),
    )
    if any(p < dd * (kk - 1) + 1 for p, kk, dd in zip(spec.padded_spatial, k, d)):
        return draw(specs())  # the kernel must fit
    return spec


def _arrays(spec, seed=0, rank1=False):
    """Random ``x`` and ``w``; with ``rank1`` each kernel is an outer product of
    random 1-D kernels (what a method whose record ``applies`` to such needs)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((spec.batch, spec.in_channels, *spec.in_spatial)).astype(spec.dtype)
    shape = (spec.out_channels, spec.in_channels // spec.groups, *spec.kernel_size)
    if rank1:
        w = np.ones(shape)
        for i, k in enumerate(spec.kernel_size):
            f = rng.standard_normal(shape[:2] + (k,))
            w = w * np.expand_dims(f, tuple(2 + j for j in range(spec.ndim) if j != i))
        return x, w.astype(spec.dtype)
    return x, rng.standard_normal(shape).astype(spec.dtype)


@pytest.mark.parametrize("method", list(ALGORITHMS))
@given(spec=specs())
def test_algorithm_matches_reference(method, spec):
    algo = ALGORITHMS[method]
    ok, why = algo.supports(spec)
    assert isinstance(why, str) and why
    x, w = _arrays(spec, rank1=algo.applies is not None)
    ref = spec_ref(x, w, spec)
    scale = np.max(spec_ref(np.abs(x), np.abs(w), spec))
    if not ok:
        with pytest.raises(ValueError, match="cannot compute this correlation"):
            ndconv.algorithms.run(x, w, spec, method)
        return
    out = ndconv.algorithms.run(x, w, spec, method)
    assert out.shape == spec.out_shape and out.dtype == spec.dtype
    err = np.max(np.abs(out - ref))
    assert err <= tolerance(method, spec, spec.dtype) * max(scale, 1.0), (method, err, scale)


@pytest.mark.parametrize(
    "method, spec_kw, expect",
    [
        ("winograd", dict(kernel_size=(5, 5)), "not 3 in every dim"),
        ("winograd", dict(stride=(2, 1)), "stride"),
        ("winograd", dict(dilation=(1, 2)), "dilation"),
        ("depthwise", dict(groups=1), "input channels per group"),
        ("fft", dict(dtype=np.dtype(np.int64)), "not floating point"),
    ],
)
def test_supports_declines_with_reason(method, spec_kw, expect):
    base = dict(
        batch=1, in_channels=4, out_channels=4, groups=4, in_spatial=(8, 8),
        kernel_size=(3, 3), stride=(1, 1), dilation=(1, 1), pairs=((1, 1), (1, 1)),
        lhs_dilation=(1, 1), padding_mode="zeros", dtype=np.dtype(np.float32),
    )
    ok, why = ALGORITHMS[method].supports(CorrSpec(**{**base, **spec_kw}))
    assert not ok and expect in why


@given(spec=specs())
def test_auto_never_picks_an_unsupported_method(spec):
    method, reason = choose_mod.choose(spec)
    assert ALGORITHMS[method].supports(spec)[0]
    assert reason.startswith("estimated")


def test_chooser_on_the_gradient_specs_picks_no_per_tap_method():
    """The weight gradient's kernel is the output gradient: thousands of taps."""
    x = np.zeros((4, 8, 40, 40), np.float32)
    w = np.zeros((8, 8, 3, 3), np.float32)
    spec = F._conv_spec(x, w, 1, 1, 1, 1, "zeros")
    wspec = CorrSpec(
        batch=8, in_channels=4, out_channels=8, groups=1, in_spatial=(40, 40),
        kernel_size=(40, 40), stride=(1, 1), dilation=(1, 1), pairs=spec.pairs,
        lhs_dilation=(1, 1), padding_mode="zeros", dtype=np.dtype(np.float32),
    )
    method = choose_mod.choose(wspec)[0]
    assert method in ("fft", "gemm", "implicit")
    if method == "implicit":  # one GEMM per output, not per tap
        from ndconv.algorithms.implicit import mode

        assert mode(wspec) == "outputs"


@pytest.mark.parametrize(
    "x_shape, w_shape, kw, expect",
    [
        ((1, 1, 512, 512), (1, 1, 31, 31), dict(padding=15), "fft"),
        ((8, 128, 28, 28), (128, 128, 3, 3), dict(padding=1), "winograd"),
        ((1, 3, 64, 64), (16, 3, 7, 7), dict(stride=2, padding=3), "gemm"),
        ((2, 16, 32, 32), (16, 1, 3, 3), dict(padding=1, groups=16), "depthwise"),
    ],
)
def test_choose_method_public_picks_and_explains(x_shape, w_shape, kw, expect):
    # A random kernel: an all-zero one is rank 1, and the separable method
    # would (rightly) take the 31x31 case.
    x = np.zeros(x_shape, np.float32)
    w = np.random.default_rng(0).standard_normal(w_shape).astype(np.float32)
    method, reason = ndconv.choose_method(x, w, **kw)
    assert method == expect, reason
    assert reason.startswith("estimated ") and " ms" in reason
    for other in ALGORITHMS:
        if other != method:
            assert other in reason  # every other method is estimated or ruled out


def test_choose_method_names_the_ruled_out():
    x, w = np.zeros((1, 2, 16, 16), np.float32), np.zeros((2, 2, 5, 5), np.float32)
    _, reason = ndconv.choose_method(x, w)
    assert "winograd ruled out: kernel (5, 5) is not 3 in every dim" in reason
    assert "depthwise ruled out" in reason


def test_choose_method_measure_times_and_returns_a_supported_method():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 20, 20)).astype(np.float32)
    w = rng.standard_normal((4, 4, 3, 3)).astype(np.float32)
    method, reason = ndconv.choose_method(x, w, padding=1, measure=True)
    assert reason.startswith("measured ") and "fastest of" in reason
    spec = F._conv_spec(x, w, 1, 1, 1, 1, "zeros")
    assert ALGORITHMS[method].supports(spec)[0]
    # the spec-level chooser makes its own random arrays when given none
    assert choose_mod.choose(spec, measure=True)[1].startswith("measured ")


def test_choose_method_validates():
    x, w = np.zeros((1, 2, 8, 8), np.float32), np.zeros((2, 2, 3, 3), np.float32)
    with pytest.raises(TypeError, match="`measure`"):
        ndconv.choose_method(x, w, measure="yes")
    with pytest.raises(ValueError, match="groups"):
        ndconv.choose_method(x, w, groups=3)


@pytest.mark.parametrize("method", methods_for("numpy"))
def test_each_method_conv_and_backward_match_torch(method):
    """A realistic layer (float32), forward and both gradients vs torch autograd."""
    rng = np.random.default_rng(2)
    groups = 6 if method in ("depthwise", "separable") else 2
    x = rng.standard_normal((2, 6, 13, 11)).astype(np.float32)
    w = rng.standard_normal((6, 6 // groups, 3, 3)).astype(np.float32)
    if ALGORITHMS[method].applies is not None:  # separable: rank-1 kernels
        w = (w[..., :1] * w[..., :1, :]).astype(np.float32)
    y = ndconv.conv(x, w, padding=1, groups=groups, method=method)
    xt = torch.tensor(x.astype(np.float64), requires_grad=True)
    wt = torch.tensor(w.astype(np.float64), requires_grad=True)
    yt = torch.nn.functional.conv2d(xt, wt, padding=1, groups=groups)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    yt.backward(torch.from_numpy(gy.astype(np.float64)))
    np.testing.assert_allclose(y, yt.detach().numpy(), atol=1e-4)
    # depthwise cannot take the weight gradient (its kernel is the 13x11
    # output gradient): conv_backward hands that one to 'auto'; winograd takes
    # it in its transposed form (a 3x3 output)
    gx, gw, _ = ndconv.conv_backward(gy, x, w, padding=1, groups=groups, method=method)
    np.testing.assert_allclose(gx, xt.grad.numpy(), atol=2e-4)
    np.testing.assert_allclose(gw, wt.grad.numpy(), atol=2e-3)


def test_depthwise_with_channel_multiplier_backward_matches_torch():
    # groups == in_channels with 2 outputs per group: the forward is depthwise,
    # its input gradient (2 channels per group) is not; conv_backward must not
    # fail for the method that computed the forward.
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 7, 6))
    w = rng.standard_normal((8, 1, 3, 3))
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    yt = torch.nn.functional.conv2d(xt, wt, padding=1, groups=4)
    gy = rng.standard_normal(yt.shape)
    yt.backward(torch.from_numpy(gy))
    y = ndconv.conv(x, w, padding=1, groups=4, method="depthwise")
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    gx, gw, _ = ndconv.conv_backward(gy, x, w, padding=1, groups=4, method="depthwise")
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gw, wt.grad.numpy(), rtol=1e-10, atol=1e-12)
    # The transposed convolution of such a weight: the same, the other way round.
    wt2 = torch.tensor(w.reshape(4, 2, 3, 3), requires_grad=True)
    xt2 = torch.tensor(x, requires_grad=True)
    yt2 = torch.nn.functional.conv_transpose2d(xt2, wt2, padding=1, groups=4)
    gy2 = rng.standard_normal(yt2.shape)
    yt2.backward(torch.from_numpy(gy2))
    y2 = ndconv.conv_transpose(x, wt2.detach().numpy(), padding=1, groups=4, method="depthwise")
    np.testing.assert_allclose(y2, yt2.detach().numpy(), rtol=1e-10, atol=1e-12)
    gx2, gw2, _ = ndconv.conv_transpose_backward(gy2, x, wt2.detach().numpy(), padding=1,
                                                 groups=4, method="depthwise")
    np.testing.assert_allclose(gx2, xt2.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gw2, wt2.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_fft_long_signal_blocks_match_scipy():
    """1-D overlap-save over many blocks (the 2048-tap case, scaled down)."""
    scipy_signal = pytest.importorskip("scipy.signal")
    rng = np.random.default_rng(3)
    x = rng.standard_normal(20000)
    k = rng.standard_normal(257)
    L, T = fft_mod.block_length(20000, 257)
    assert L < 20000 and T == L - 256  # really blocked
    out = ndconv.correlate(x, k, mode="same", method="fft")
    np.testing.assert_allclose(out, scipy_signal.correlate(x, k, mode="same", method="direct"),
                               atol=1e-9)


def test_fft_float32_tolerance_is_met_on_a_large_kernel_image():
    """The stated bound, 4*eps*log2(L) * max(|x| * |w|), on a 31x31 kernel."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 1, 200, 180)).astype(np.float32)
    w = rng.standard_normal((1, 1, 31, 31)).astype(np.float32)
    spec = F._conv_spec(x, w, 1, 15, 1, 1, "zeros")
    out = ndconv.conv(x, w, padding=15, method="fft")
    ref = spec_ref(x, w, spec)
    scale = np.max(spec_ref(np.abs(x), np.abs(w), spec))
    assert np.max(np.abs(out - ref)) <= tolerance("fft", spec, np.float32) * scale


@pytest.mark.parametrize("jit", [False, True], ids=["numpy", "numba"])
def test_depthwise_numpy_and_numba_paths_agree_with_reference(jit, monkeypatch):
    """Both depthwise paths (NumPy chunks; the optional numba kernel), strided N-d."""
    from ndconv.algorithms import _jit

    if jit:
        pytest.importorskip("numba")
    else:
        monkeypatch.setitem(_jit._KERNELS, "k", None)  # as if numba were absent
    for n, s, d in [(1, (2,), (1,)), (2, (1, 2), (2, 1)), (3, (1, 1, 2), (1, 2, 1))]:
        spec = CorrSpec(
            batch=2, in_channels=3, out_channels=6, groups=3, in_spatial=(9, 8, 7)[:n],
            kernel_size=(3, 2, 3)[:n], stride=s, dilation=d, pairs=((1, 2), (0, 1), (2, 0))[:n],
            lhs_dilation=(1,) * n, padding_mode="zeros", dtype=np.dtype(np.float32),
        )
        x, w = _arrays(spec, seed=n)
        out = ndconv.algorithms.run(x, w, spec, "depthwise")
        np.testing.assert_allclose(out, spec_ref(x, w, spec), atol=1e-5)


def test_winograd_matrices_compute_a_3_tap_correlation():
    """A^T [(G g) * (B^T d)] == correlate(d, g, 'valid') for F(2,3) and F(4,3)."""
    from ndconv.algorithms.winograd import _MATRICES

    rng = np.random.default_rng(5)
    for m, (BT, G, AT) in _MATRICES.items():
        d, g = rng.standard_normal(m + 2), rng.standard_normal(3)
        y = np.asarray(AT) @ ((np.asarray(G) @ g) * (np.asarray(BT) @ d))
        np.testing.assert_allclose(y, np.correlate(d, g, "valid"), atol=1e-12)


def test_set_num_threads_round_trip_and_validation():
    before = ndconv.get_num_threads()
    try:
        ndconv.set_num_threads(1)
        assert ndconv.get_num_threads() == 1
        x = np.ones((1, 1, 64, 64), np.float32)
        w = np.ones((1, 1, 3, 3), np.float32)
        assert ndconv.conv(x, w, method="fft")[0, 0, 0, 0] == pytest.approx(9.0)
    finally:
        ndconv.set_num_threads(None)
    assert ndconv.get_num_threads() == before
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="`n`"):
            ndconv.set_num_threads(bad)


def test_unknown_method_is_named():
    x, w = np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 3, 3))
    with pytest.raises(ValueError, match="'winograd'"):
        ndconv.conv(x, w, method="nope")


def test_backward_refuses_a_method_that_cannot_compute_the_forward():
    """conv_backward(method=X) falls back to 'auto' only for a gradient X cannot
    take; a method that cannot compute the convolution itself is refused, as by conv."""
    x = np.ones((1, 2, 6, 6))
    w = np.ones((2, 2, 5, 5))
    gy = np.ones((1, 2, 2, 2))
    with pytest.raises(ValueError, match="`method`='winograd' cannot compute"):
        ndconv.conv(x, w, method="winograd")
    with pytest.raises(ValueError, match="`method`='winograd' cannot compute"):
        ndconv.conv_backward(gy, x, w, method="winograd")


def test_set_num_threads_takes_numpy_ints():
    try:
        assert ndconv.set_num_threads(np.int64(1)) in (True, False)
        assert ndconv.get_num_threads() == 1
        assert type(ndconv.get_num_threads()) is int
        with pytest.raises(ValueError, match="must be a positive int"):
            ndconv.set_num_threads(np.int64(0))
    finally:
        ndconv.set_num_threads(None)

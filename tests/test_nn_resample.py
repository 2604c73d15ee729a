"""Upsample, the padding layers, AdaptiveAvgPool and Identity against torch.nn."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from torch_layers import check_layer

from ndconv import nn

torch = pytest.importorskip("torch")

DTYPES = [np.float64, np.float32]


def _x(shape, dtype, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


UPSAMPLE = [
    ((1, 2, 5), dict(scale_factor=2, mode="nearest")),
    ((1, 2, 5), dict(scale_factor=1.7, mode="nearest")),
    ((2, 2, 4, 3), dict(size=(7, 5), mode="nearest")),
    ((1, 1, 3, 4, 2), dict(scale_factor=(2, 1.5, 3), mode="nearest")),
    ((1, 2, 5), dict(scale_factor=2.5, mode="linear")),
    ((1, 2, 5), dict(size=9, mode="linear", align_corners=True)),
    ((2, 2, 4, 3), dict(scale_factor=2, mode="bilinear")),
    ((2, 2, 4, 3), dict(scale_factor=(1.5, 2.25), mode="bilinear", align_corners=False)),
    ((2, 2, 4, 3), dict(size=(6, 7), mode="bilinear", align_corners=True)),
    ((2, 2, 7, 6), dict(size=(3, 4), mode="bilinear")),  # downsampling
    ((1, 2, 3, 4, 2), dict(scale_factor=2, mode="trilinear")),
    ((1, 2, 3, 4, 2), dict(size=(5, 5, 5), mode="trilinear", align_corners=True)),
    ((2, 2, 4, 3), dict(scale_factor=1.5, mode="bilinear", recompute_scale_factor=True)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, kw", UPSAMPLE, ids=[str(k) for _, k in UPSAMPLE])
def test_upsample_matches_torch(shape, kw, dtype):
    check_layer(nn.Upsample(**kw), torch.nn.Upsample(**kw), _x(shape, dtype), what="Upsample")


def test_upsample_linear_is_nd_and_bilinear_checks_dims():
    x = _x((1, 1, 3, 4), np.float64)
    ref = torch.nn.Upsample(scale_factor=2, mode="bilinear")(torch.tensor(x)).numpy()
    np.testing.assert_allclose(nn.Upsample(scale_factor=2, mode="linear")(x), ref, rtol=1e-12)
    with pytest.raises(ValueError, match="2 spatial dims"):
        nn.Upsample(scale_factor=2, mode="bilinear")(_x((1, 1, 4), np.float64))


@pytest.mark.parametrize("kw, match", [
    (dict(), "exactly one"), (dict(size=3, scale_factor=2), "exactly one"),
    (dict(scale_factor=2, mode="bicubic"), "mode"),
    (dict(scale_factor=2, align_corners=True), "align_corners"),
    (dict(scale_factor=-1), "scale_factor"),
])
def test_upsample_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        nn.Upsample(**kw)


PADS = [("ZeroPad", 1, (1, 2)), ("ZeroPad", 2, (1, 0, 2, 3)), ("ZeroPad", 2, (-1, 2, 1, -1)),
        ("ZeroPad", 3, 1), ("ReflectionPad", 1, (2, 3)), ("ReflectionPad", 2, (1, 2, 3, 1)),
        ("ReflectionPad", 3, (1, 1, 2, 0, 1, 2)), ("ReplicationPad", 1, (3, 1)),
        ("ReplicationPad", 2, (2, 0, 5, 1)), ("ReplicationPad", 3, 2)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, n, padding", PADS, ids=[f"{a}{b}d-{c}" for a, b, c in PADS])
@pytest.mark.parametrize("batched", [True, False])
def test_padding_layers_match_torch(name, n, padding, dtype, batched):
    shape = (2, 3, 4, 5, 4)[:n + 2] if batched else (3, 4, 5, 4)[:n + 1]
    cls = f"{name}{n}d"
    m, tm = getattr(nn, cls)(padding), getattr(torch.nn, cls)(padding)
    assert m.padding == tm.padding
    check_layer(m, tm, _x(shape, dtype), what=cls)


def test_constant_pad_matches_torch():
    check_layer(nn.ConstantPad2d((1, 2, 0, 1), 3.5), torch.nn.ConstantPad2d((1, 2, 0, 1), 3.5),
                _x((1, 2, 3, 3), np.float64), what="ConstantPad2d")


def test_reflection_pad_too_large_is_refused_as_torch():
    with pytest.raises(ValueError, match="reflect"):
        nn.ReflectionPad1d(4)(_x((1, 1, 4), np.float64))
    with pytest.raises(ValueError, match="4 ints"):
        nn.ZeroPad2d((1, 2, 3))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, shape, out", [
    (1, (2, 3, 7), 1), (1, (2, 3, 7), 3), (2, (2, 3, 5, 7), 1), (2, (2, 3, 5, 7), (3, 4)),
    (2, (3, 5, 7), (None, 2)), (2, (1, 2, 4, 4), (8, 5)), (3, (1, 2, 5, 4, 6), (2, 3, 4)),
    (3, (1, 2, 5, 4, 6), 1)])
def test_adaptive_avg_pool_matches_torch(n, shape, out, dtype):
    cls = f"AdaptiveAvgPool{n}d"
    check_layer(getattr(nn, cls)(out), getattr(torch.nn, cls)(out), _x(shape, dtype), what=cls)


def test_adaptive_avg_pool_keeps_inf_in_its_window():
    x = np.zeros((1, 1, 4))
    x[0, 0, 0] = np.inf
    np.testing.assert_array_equal(nn.AdaptiveAvgPool1d(2)(x), [[[np.inf, 0.0]]])


def test_identity_ignores_arguments():
    m = nn.Identity(54, unused="x")
    x = _x((2, 3), np.float64)
    assert m(x) is x and m.backward(x) is x


@given(n=st.integers(1, 3), data=st.data(), mode=st.sampled_from(["nearest", "linear"]),
       align=st.booleans(), by_size=st.booleans())
def test_upsample_random_sizes_match_torch(n, data, mode, align, by_size):
    spatial = tuple(data.draw(st.lists(st.integers(1, 6), min_size=n, max_size=n)))
    tmode = {"nearest": "nearest", "linear": ("linear", "bilinear", "trilinear")[n - 1]}[mode]
    kw = {"mode": tmode}
    if mode == "linear":
        kw["align_corners"] = align
    if by_size:
        kw["size"] = tuple(data.draw(st.lists(st.integers(1, 9), min_size=n, max_size=n)))
    else:
        kw["scale_factor"] = tuple(data.draw(st.lists(
            st.sampled_from([0.5, 0.75, 1.0, 1.3, 2.0, 2.5, 3.0]), min_size=n, max_size=n)))
        if any(int(s * f) < 1 for s, f in zip(spatial, kw["scale_factor"])):
            with pytest.raises(ValueError, match="empty output"):
                nn.Upsample(**kw)(_x((1, 2, *spatial), np.float64))
            return
    x = _x((1, 2, *spatial), np.float64)
    if mode == "nearest" and not by_size and n != 2 and any(
            int(s * f) in (s, 2 * s) and f not in (1.0, 2.0)
            for s, f in zip(spatial, kw["scale_factor"])):
        _check_nearest_where_torch_backward_disagrees(kw, x)
        return
    check_layer(nn.Upsample(**kw), torch.nn.Upsample(**kw), x, what=f"Upsample {kw}")


def _check_nearest_where_torch_backward_disagrees(kw, x):
    """Torch's 1-D / 3-D nearest backward takes a shortcut (output size S or 2S) that
    their CPU forward does not, so there its gradient is not the forward's adjoint. Check
    the forward against torch and the backward as the adjoint of torch's forward:
    ``<U x, g> = <x, U^T g>`` for the linear map ``U``, with ``x`` the unit vectors.
    """
    m = nn.Upsample(**kw)
    ref = torch.nn.Upsample(**kw)(torch.tensor(x)).numpy()
    np.testing.assert_array_equal(m(x), ref)
    g = _x(ref.shape, np.float64, seed=5)
    gx = m.backward(g)
    for i in range(x.size):
        e = np.zeros(x.size)
        e[i] = 1
        ue = torch.nn.Upsample(**kw)(torch.tensor(e.reshape(x.shape))).numpy()
        assert abs((ue * g).sum() - gx.reshape(-1)[i]) < 1e-12


def test_nearest_gradient_is_the_adjoint_where_torch_shortcuts():
    """2 pixels at scale 1.3 (1-D): torch's forward picks pixel 0 twice, so pixel 0 gets both."""
    m = nn.Upsample(scale_factor=1.3)
    x = np.array([[[1.0, 2.0]]])
    np.testing.assert_array_equal(m(x), torch.nn.Upsample(scale_factor=1.3)(torch.tensor(x)))
    np.testing.assert_array_equal(m.backward(np.array([[[1.0, 10.0]]])), [[[11.0, 0.0]]])


@given(n=st.integers(1, 3), data=st.data())
def test_adaptive_avg_pool_random_sizes_match_torch(n, data):
    spatial = tuple(data.draw(st.lists(st.integers(1, 9), min_size=n, max_size=n)))
    out = tuple(data.draw(st.lists(st.integers(1, 10), min_size=n, max_size=n)))
    cls = f"AdaptiveAvgPool{n}d"
    check_layer(getattr(nn, cls)(out), getattr(torch.nn, cls)(out),
                _x((2, 1, *spatial), np.float64), what=f"{cls}({out}) on {spatial}")


@given(n=st.integers(1, 3), data=st.data(),
       name=st.sampled_from(["ZeroPad", "ReflectionPad", "ReplicationPad"]))
def test_padding_random_amounts_match_torch(n, data, name):
    spatial = tuple(data.draw(st.lists(st.integers(1, 5), min_size=n, max_size=n)))
    lo = -1 if name == "ZeroPad" else 0
    pad = data.draw(st.lists(st.integers(lo, 4), min_size=2 * n, max_size=2 * n))
    cls = f"{name}{n}d"
    x = _x((1, 2, *spatial), np.float64)
    try:
        ref = getattr(torch.nn, cls)(tuple(pad))(torch.tensor(x))
    except RuntimeError:  # torch refuses (reflection too large, an empty result)
        with pytest.raises(ValueError):
            getattr(nn, cls)(tuple(pad))(x)
        return
    if ref.numel() == 0:
        return
    check_layer(getattr(nn, cls)(tuple(pad)), getattr(torch.nn, cls)(tuple(pad)), x,
                what=f"{cls}({pad}) on {spatial}")

"""The compiled direct kernel (``_direct_jit``) and the compiled max-pool gradient,
against PyTorch: forward, input and weight gradients, over shapes, paddings
(asymmetric, non-zero modes), dilations, groups, channel multipliers, 1-D to
3-D, float32 and float64; and the NumPy paths with numba switched off."""

from __future__ import annotations

import numpy as np
import pytest

import ndconv
from ndconv.core import pooling
from ndconv.core.algorithms import _direct_jit

torch = pytest.importorskip("torch")
pytest.importorskip("numba")
tF = torch.nn.functional

# (x shape, weight shape, groups, padding pairs, dilation, padding_mode[, stride])
CASES = [
    ((2, 3, 9, 11), (4, 3, 3, 3), 1, ((1, 1), (1, 1)), (1, 1), "zeros"),
    ((3, 1, 28, 28), (6, 1, 5, 5), 1, ((2, 2), (2, 2)), (1, 1), "zeros"),  # LeNet's first layer
    ((1, 1, 8, 8), (16, 1, 3, 3), 1, ((1, 1), (1, 1)), (1, 1), "zeros"),  # batch 1, small plane
    ((5, 1, 8, 8), (16, 1, 3, 3), 1, ((1, 1), (1, 1)), (1, 1), "zeros"),  # stacked planes
    ((2, 8, 10, 9), (8, 1, 3, 3), 8, ((1, 1), (1, 1)), (1, 1), "zeros"),  # depthwise
    ((2, 4, 7, 9), (8, 1, 3, 2), 4, ((2, 0), (0, 3)), (2, 1), "zeros"),  # multiplier 2
    ((2, 4, 9, 8), (4, 2, 3, 3), 2, ((1, 1), (2, 2)), (1, 2), "reflect"),
    ((1, 2, 7, 6), (3, 2, 2, 3), 1, ((1, 0), (2, 1)), (1, 1), "circular"),
    ((2, 3, 6, 5), (3, 1, 3, 3), 3, ((2, 2), (1, 1)), (1, 1), "replicate"),
    ((3, 6, 17), (4, 3, 3), 2, ((1, 2),), (2,), "zeros"),  # 1-D
    ((2, 2, 5, 6, 7), (4, 1, 3, 3, 2), 2, ((1, 1), (0, 1), (2, 0)), (1, 1, 2), "zeros"),  # 3-D
    ((1, 1, 37, 300), (2, 1, 7, 7), 1, ((3, 3), (3, 3)), (1, 1), "zeros"),  # several slabs
    ((2, 3, 11, 10), (4, 3, 3, 3), 1, ((1, 1), (1, 1)), (1, 1), "zeros", (2, 1)),  # strided
    ((2, 4, 9, 9), (4, 1, 3, 3), 4, ((1, 0), (1, 1)), (1, 2), "zeros", 2),
]


def _torch_conv(x, w, groups, pairs, dilation, mode, stride):
    n = w.ndim - 2
    flat = [p for lo_hi in reversed(pairs) for p in lo_hi]  # torch: last dim first
    tmode = {"zeros": "constant"}.get(mode, mode)
    xp = tF.pad(x, flat, mode=tmode) if any(flat) else x
    conv = {1: tF.conv1d, 2: tF.conv2d, 3: tF.conv3d}[n]
    return conv(xp, w, None, stride, 0, dilation, groups)


def _ours_and_torch(xs, ws, g, pairs, dil, mode, dtype, method, stride=1):
    rng = np.random.default_rng(len(xs) + ws[0])
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    y = ndconv.conv(x, w, b, stride, pairs, dil, g, mode, method=method)
    gy = rng.standard_normal(y.shape).astype(dtype)
    gx, gw, gb = ndconv.conv_backward(gy, x, w, stride, pairs, dil, g, mode, method=method)
    xt, wt, bt = (torch.from_numpy(a).requires_grad_(True) for a in (x, w, b))
    yt = _torch_conv(xt, wt, g, pairs, dil, mode, stride) + bt.reshape(-1, *(1,) * (len(xs) - 2))
    yt.backward(torch.from_numpy(gy))
    return (y, gx, gw, gb), tuple(t.detach().numpy() for t in (yt, xt.grad, wt.grad, bt.grad))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("method", ["direct", "auto"])
@pytest.mark.parametrize("case", CASES)
def test_compiled_direct_matches_torch(case, dtype, method):
    ours, ref = _ours_and_torch(*case[:6], dtype, method, *case[6:])
    tol = 2e-4 if dtype == np.float32 else 1e-10
    for name, a, r in zip(("y", "grad_x", "grad_weight", "grad_bias"), ours, ref):
        assert a.shape == r.shape, name
        scale = max(1.0, float(np.abs(r).max()))
        np.testing.assert_allclose(a, r, atol=tol * scale, rtol=0, err_msg=name)


@pytest.mark.parametrize("case", [c for c in CASES if c[1][1] == 1])
def test_depthwise_method_takes_the_compiled_kernel(case):
    ours, ref = _ours_and_torch(*case[:6], np.float32, "depthwise", *case[6:])
    for a, r in zip(ours, ref):
        np.testing.assert_allclose(a, r, atol=2e-4 * max(1.0, float(np.abs(r).max())))


def test_plan_shapes_and_applicability():
    from ndconv.core import functional as F

    x = np.zeros((8, 4, 20, 20), np.float32)
    w = np.zeros((4, 1, 3, 3), np.float32)
    spec = F._conv_spec(x, w, 1, 1, 1, 4, "zeros")
    fwd = _direct_jit.plan(spec)
    assert fwd is not None and not fwd.dot  # few taps, many outputs
    wspec = F._weight_grad_spec(spec, spec.out_spatial)
    assert _direct_jit.plan(wspec).dot  # the output gradient as a 20x20 kernel
    strided = F._conv_spec(x, w, 2, 1, 1, 4, "zeros")
    assert _direct_jit.plan(strided).dot  # stride 2: only the dot shape takes it
    assert _direct_jit.plan(F._conv_spec(x, w, 2, 1, 2, 4, "zeros")) is None  # and dilation 2
    assert _direct_jit.plan(F._conv_spec(x.astype(np.complex64), w.astype(np.complex64),
                                         1, 1, 1, 4, "zeros")) is None


def test_numpy_paths_without_numba(monkeypatch):
    """With the compiled kernels switched off, direct and depthwise are NumPy's."""
    from ndconv.core.algorithms import _jit

    monkeypatch.setitem(_direct_jit._KERNELS, "k", None)
    monkeypatch.setitem(_jit._KERNELS, "k", None)
    from ndconv.core import _pool_jit

    monkeypatch.setitem(_pool_jit._KERNELS, "k", None)
    for case in CASES[:6] + CASES[-2:]:
        for method in ("direct", "auto"):
            ours, ref = _ours_and_torch(*case[:6], np.float64, method, *case[6:])
            for a, r in zip(ours, ref):
                np.testing.assert_allclose(a, r, atol=1e-10 * max(1.0, float(np.abs(r).max())))


def test_conv_backward_input_grad_false_skips_grad_x():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 1, 8, 8)).astype(np.float32)
    w = rng.standard_normal((4, 1, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)
    full = ndconv.conv_backward(gy, x, w, padding=1)
    for _ in range(2):  # the first call validates, the second takes the prepared path
        gx, gw, gb = ndconv.conv_backward(gy, x, w, padding=1, input_grad=False)
        assert gx is None
        np.testing.assert_array_equal(gw, full[1])
        np.testing.assert_array_equal(gb, full[2])
    with pytest.raises(TypeError, match="input_grad"):
        ndconv.conv_backward(gy, x, w, padding=1, input_grad=1)


def test_backward_params_accumulates_what_backward_does():
    from ndconv.training.models import digits_cnn

    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 1, 8, 8)).astype(np.float32)
    a, b = digits_cnn(rng=1), digits_cnn(rng=1)
    g = rng.standard_normal((4, 10)).astype(np.float32)
    a(x)
    b(x)
    assert a.backward(g).shape == x.shape
    assert b.backward_params(g) is None
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_allclose(pa.grad, pb.grad, rtol=1e-6, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("special", ["none", "nan", "ninf", "ties"])
@pytest.mark.parametrize("nd, k, s, p, d, ceil", [
    (2, 2, 2, 0, 1, False), (2, 3, 1, 1, 1, False), (2, 3, 2, 1, 2, True),
    (1, 3, 2, 1, 1, True), (3, 2, 1, 1, 1, False), (2, (2, 3), (1, 2), (1, 0), (1, 2), False)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_max_pool_and_gradient_match_torch(nd, k, s, p, d, ceil, special, dtype):
    rng = np.random.default_rng(nd)
    x = rng.standard_normal((2, 3) + (7, 9, 5)[:nd]).astype(dtype)
    if special == "nan":
        x.reshape(-1)[rng.integers(0, x.size, 6)] = np.nan
    elif special == "ninf":
        x[..., :3] = -np.inf
    elif special == "ties":
        x = np.round(x).astype(dtype)
    y = pooling.max_pool(x, k, s, p, d, ceil, ndim=nd)
    gy = rng.standard_normal(y.shape).astype(dtype)
    xt = torch.from_numpy(x).requires_grad_(True)
    pool = {1: tF.max_pool1d, 2: tF.max_pool2d, 3: tF.max_pool3d}[nd]
    yt = pool(xt, k, s, p, d, ceil)
    yt.backward(torch.from_numpy(gy))
    for _ in range(2):  # validated call, then the prepared one
        np.testing.assert_array_equal(pooling.max_pool(x, k, s, p, d, ceil, ndim=nd),
                                      yt.detach().numpy())
        gx = pooling.max_pool_backward(gy, x, k, s, p, d, ceil, ndim=nd, out=y)
        np.testing.assert_allclose(gx, xt.grad.numpy(), atol=1e-6)
        gx = pooling.max_pool_backward(gy, x, k, s, p, d, ceil, ndim=nd)  # y recomputed
        np.testing.assert_allclose(gx, xt.grad.numpy(), atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_relu_gradient_matches_torch_and_numpy(dtype, monkeypatch):
    from ndconv import nn
    from ndconv.nn import _jit

    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 4, 5, 6)).astype(dtype)
    x.reshape(-1)[:5] = [np.nan, 0.0, -0.0, np.inf, -np.inf]
    g = rng.standard_normal(x.shape).astype(dtype)
    g.reshape(-1)[[1, 6]] = np.nan  # a NaN gradient where x <= 0 becomes 0, as in torch
    xt = torch.from_numpy(x).requires_grad_(True)
    torch.relu(xt).backward(torch.from_numpy(g))
    layer = nn.ReLU()
    layer(x)
    compiled = layer.backward(g)
    np.testing.assert_array_equal(compiled, xt.grad.numpy())
    monkeypatch.setitem(_jit._KERNELS, "k", None)  # as without numba
    np.testing.assert_array_equal(layer.backward(g), compiled)
    layer(x[..., ::2])  # a non-contiguous input takes NumPy's path too
    np.testing.assert_array_equal(layer.backward(g[..., ::2]), xt.grad.numpy()[..., ::2])

"""nn.FullyConnected and nn.LocallyConnected: forward and backward against references."""

from __future__ import annotations

import itertools
import tracemalloc

import numpy as np
import pytest

from ndconv import derive as D
from ndconv import nn, plan
from reference import numeric_grad


def _lc_loops(x, w, b, stride, pairs, dilation):
    """y[b, o, p] = bias[o, p] + sum_{c, t} w[o, p, c, t] xp[b, c, p*s + t*d], by loops."""
    n = len(stride)
    xp = np.pad(x, [(0, 0), (0, 0), *pairs])
    O, S_out, C, K = w.shape[0], w.shape[1 : n + 1], w.shape[n + 1], w.shape[n + 2 :]
    y = np.zeros((x.shape[0], O, *S_out))
    for p in itertools.product(*map(range, S_out)):
        for t in itertools.product(*map(range, K)):
            q = tuple(pi * s + ti * d for pi, ti, s, d in zip(p, t, stride, dilation))
            # (B, C) @ (C, O)
            y[(slice(None), slice(None), *p)] += xp[(slice(None), slice(None), *q)] @ w[(slice(None), *p, slice(None), *t)].T
    if b is not None:
        y += b
    return y


def _torch_lc2d(x, w, b, stride, padding, dilation, gy=None):
    """Locally connected 2-D in PyTorch: unfold (im2col) + einsum, with autograd."""
    import torch
    import torch.nn.functional as F

    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    O, Ho, Wo, C, kh, kw = w.shape
    cols = F.unfold(xt, (kh, kw), dilation=dilation, padding=padding, stride=stride)
    y = torch.einsum("bkp,opk->bop", cols, wt.reshape(O, Ho * Wo, C * kh * kw))
    y = y.reshape(x.shape[0], O, Ho, Wo) + torch.tensor(b)
    if gy is None:
        return y.detach().numpy()
    y.backward(torch.tensor(gy))
    return y.detach().numpy(), xt.grad.numpy(), wt.grad.numpy()


LC_CASES = [
    # (n, C, O, K, S, stride, padding, dilation)
    (1, 2, 3, 3, (9,), 1, 0, 1),
    (1, 1, 2, 2, (8,), 2, 1, 2),
    (2, 2, 3, 3, (6, 5), 1, 1, 1),
    (2, 3, 2, (2, 3), (7, 6), (2, 1), ((1, 0), (2, 1)), (1, 2)),
    (3, 2, 2, (2, 2, 3), (4, 5, 5), (1, 2, 1), 1, (1, 1, 2)),
]


def _pairs(padding, n):
    if isinstance(padding, int):
        return ((padding, padding),) * n
    return padding


@pytest.mark.parametrize("case", LC_CASES)
def test_locally_connected_forward_matches_loops(rng, case):
    n, C, O, K, S, stride, padding, dilation = case
    lc = nn.LocallyConnected(n, C, O, K, S, stride, padding, dilation, dtype=np.float64, rng=0)
    x = rng.standard_normal((2, C, *S))
    st = (stride,) * n if isinstance(stride, int) else stride
    dl = (dilation,) * n if isinstance(dilation, int) else dilation
    ref = _lc_loops(x, lc.weight.data, lc.bias.data, st, _pairs(padding, n), dl)
    np.testing.assert_allclose(lc(x), ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(lc(x[0]), ref[0], rtol=1e-12, atol=1e-12)  # unbatched
    # The dense form of the same weight gives the same map.
    W = D.local_to_dense(lc.weight.data, (C, *S), stride, padding, dilation)
    np.testing.assert_allclose(np.tensordot(W, x[1], axes=n + 1) + lc.bias.data, ref[1],
                               rtol=1e-12, atol=1e-12)


def test_locally_connected_2d_matches_torch_unfold_forward_and_backward(rng):
    lc = nn.LocallyConnected2d(3, 4, 3, (7, 6), stride=2, padding=1, dilation=1,
                               dtype=np.float64, rng=0)
    x = rng.standard_normal((2, 3, 7, 6))
    y = lc(x)
    gy = rng.standard_normal(y.shape)
    ref, gx_ref, gw_ref = _torch_lc2d(x, lc.weight.data, lc.bias.data, 2, 1, 1, gy)
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)
    gx = lc.backward(gy)
    np.testing.assert_allclose(gx, gx_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(lc.weight.grad, gw_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(lc.bias.grad, gy.sum(axis=0), rtol=1e-12, atol=1e-12)


def test_locally_connected_2d_dilation_matches_torch(rng):
    lc = nn.LocallyConnected2d(2, 2, (2, 3), (8, 7), stride=(1, 2), padding=(2, 1),
                               dilation=(2, 1), dtype=np.float64, rng=3)
    x = rng.standard_normal((1, 2, 8, 7))
    ref = _torch_lc2d(x, lc.weight.data, lc.bias.data, (1, 2), (2, 1), (2, 1))
    np.testing.assert_allclose(lc(x), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", [LC_CASES[1], LC_CASES[4]])
def test_locally_connected_backward_matches_finite_differences(rng, case):
    n, C, O, K, S, stride, padding, dilation = case
    lc = nn.LocallyConnected(n, C, O, K, S, stride, padding, dilation, dtype=np.float64, rng=1)
    x = rng.standard_normal((2, C, *S))
    gy = rng.standard_normal(lc(x).shape)
    gx = lc.backward(gy)

    def loss():
        return float(np.sum(lc(x) * gy))

    np.testing.assert_allclose(gx, numeric_grad(loss, x), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(lc.weight.grad, numeric_grad(loss, lc.weight.data),
                               rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(lc.bias.grad, numeric_grad(loss, lc.bias.data),
                               rtol=1e-6, atol=1e-8)


def test_locally_connected_with_one_kernel_everywhere_is_the_conv(rng):
    import torch

    conv = nn.Conv2d(3, 4, 3, stride=(1, 2), padding=1, dtype=np.float64, rng=0)
    lc = nn.LocallyConnected2d(3, 4, 3, (6, 7), stride=(1, 2), padding=1, dtype=np.float64)
    S_out = lc.output_size
    lc.weight.data = np.ascontiguousarray(np.broadcast_to(
        conv.weight.data[:, None, None], lc.weight.shape))
    lc.bias.data = np.broadcast_to(conv.bias.data[:, None, None], (4, *S_out)).copy()
    x = rng.standard_normal((2, 3, 6, 7))
    ref = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(conv.weight.data),
                                     torch.tensor(conv.bias.data), (1, 2), 1).numpy()
    np.testing.assert_allclose(lc(x), ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(conv(x), ref, rtol=1e-12, atol=1e-12)
    # Its weight gradient summed over positions is the conv's weight gradient.
    gy = rng.standard_normal(ref.shape)
    np.testing.assert_allclose(lc.backward(gy), conv.backward(gy), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(lc.weight.grad.sum(axis=(1, 2)), conv.weight.grad,
                               rtol=1e-12, atol=1e-12)


def test_locally_connected_float32(rng):
    lc = nn.LocallyConnected1d(2, 3, 3, 10, padding="same", rng=0)
    x = rng.standard_normal((4, 2, 10)).astype(np.float32)
    y = lc(x)
    assert y.dtype == np.float32 and y.shape == (4, 3, 10)
    ref = _lc_loops(x.astype(np.float64), lc.weight.data.astype(np.float64),
                    lc.bias.data.astype(np.float64), (1,), ((1, 1),), (1,))
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
    assert lc.backward(np.ones_like(y)).dtype == np.float32


# --------------------------------------------------------------------------
# FullyConnected


def test_fully_connected_matches_torch_linear_forward_and_backward(rng):
    import torch

    fc = nn.FullyConnected((2, 4, 3), (5, 2), dtype=np.float64, rng=0)
    assert fc.weight.shape == (5, 2, 2, 4, 3) and fc.bias.shape == (5, 2)
    x = rng.standard_normal((3, 2, 4, 3))
    y = fc(x)
    xt = torch.tensor(x.reshape(3, -1), requires_grad=True)
    wt = torch.tensor(fc.weight.data.reshape(10, 24), requires_grad=True)
    bt = torch.tensor(fc.bias.data.reshape(10), requires_grad=True)
    yt = torch.nn.functional.linear(xt, wt, bt)
    np.testing.assert_allclose(y.reshape(3, 10), yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    gy = rng.standard_normal(y.shape)
    gx = fc.backward(gy)
    yt.backward(torch.tensor(gy.reshape(3, 10)))
    np.testing.assert_allclose(gx.reshape(3, -1), xt.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fc.weight.grad.reshape(10, 24), wt.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fc.bias.grad.reshape(10), bt.grad.numpy(), rtol=1e-12, atol=1e-12)
    # The lecture's formula, unbatched: h = tensordot(w, x).
    np.testing.assert_allclose(fc(x[1]), np.tensordot(fc.weight.data, x[1], axes=3) + fc.bias.data,
                               rtol=1e-12, atol=1e-12)


def test_fully_connected_backward_matches_finite_differences(rng):
    fc = nn.FullyConnected(4, (2, 3), dtype=np.float64, rng=2)
    x = rng.standard_normal((2, 4))
    gy = rng.standard_normal((2, 2, 3))
    fc(x)
    gx = fc.backward(gy)

    def loss():
        return float(np.sum(fc(x) * gy))

    np.testing.assert_allclose(gx, numeric_grad(loss, x), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(fc.weight.grad, numeric_grad(loss, fc.weight.data), rtol=1e-6, atol=1e-8)


def test_fully_connected_learns(rng):
    """A few gradient steps on a least-squares target reduce the loss (it is a real layer)."""
    fc = nn.FullyConnected((1, 3, 3), (2,), dtype=np.float64, rng=0)
    x = rng.standard_normal((16, 1, 3, 3))
    target = rng.standard_normal((16, 2))
    losses = []
    for _ in range(50):
        fc.zero_grad()
        y = fc(x)
        losses.append(float(np.mean((y - target) ** 2)))
        fc.backward(2 * (y - target) / y.size)
        for p in fc.parameters():
            p.data -= 0.5 * p.grad
    assert losses[-1] < 0.5 * losses[0]
    assert set(fc.state_dict()) == {"weight", "bias"}


# --------------------------------------------------------------------------
# errors and the memory guard


@pytest.mark.parametrize("call, exc, match", [
    (lambda: nn.FullyConnected((2, 3), 4)(np.ones((2, 4), np.float32)), ValueError, r"\(B, \*\(2, 3\)\)"),
    (lambda: nn.FullyConnected((2, 3), 4)(np.ones((2, 3))), TypeError, "dtype"),
    (lambda: nn.FullyConnected((2, 0), 4), ValueError, "in_shape"),
    (lambda: nn.FullyConnected("ab", 4), TypeError, "in_shape"),
    (lambda: nn.FullyConnected(3, 4).backward(np.ones((1, 4))), RuntimeError, "before forward"),
    (lambda: nn.LocallyConnected2d(1, 1, 5, (3, 3)), ValueError, "larger than the padded input"),
    (lambda: nn.LocallyConnected2d(1, 1, 3, (5, 5))(np.ones((1, 1, 6, 5), np.float32)), ValueError, "fixed"),
    (lambda: nn.LocallyConnected2d(1, 1, 3, (5, 5), stride=0), ValueError, "stride"),
    (lambda: nn.LocallyConnected2d(1, 1, 3, (5, 5), padding="bad"), ValueError, "padding"),
    (lambda: nn.LocallyConnected1d(1, 1, 3, 5).backward(np.ones((1, 1, 3))), RuntimeError, "before forward"),
])
def test_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_backward_checks_grad_shape(rng):
    lc = nn.LocallyConnected1d(1, 2, 3, 6, dtype=np.float64)
    lc(rng.standard_normal((2, 1, 6)))
    with pytest.raises(ValueError, match=r"\(2, 2, 4\)"):
        lc.backward(np.ones((2, 2, 5)))


def test_guard_raises_before_allocating_the_lectures_layer():
    tracemalloc.start()
    try:
        with plan.memory_limit("1 GB"):
            with pytest.raises(plan.MemoryLimitError) as exc:
                nn.FullyConnected((3, 3000, 4000), 100)
            with pytest.raises(MemoryError, match="LocallyConnected2d"):
                nn.LocallyConnected2d(3, 100, 3, (3000, 4000), padding=1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    msg = str(exc.value)
    assert "14,400,000,400 bytes" in msg and "14.4 GB" in msg
    assert exc.value.nbytes == (3 * 3000 * 4000 * 100 + 100) * 4
    assert peak < 1_000_000
    # Below the limit the layer is built.
    with plan.memory_limit(10_000):
        assert nn.FullyConnected(10, 20).weight.shape == (20, 10)
        with pytest.raises(plan.MemoryLimitError):
            nn.FullyConnected(100, 100, dtype=np.float64)

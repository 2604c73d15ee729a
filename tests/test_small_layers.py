"""The fast paths of a small network's layers (the digits CNN at batch 1-64)
against PyTorch, with and without numba, and never stale.

- the compiled gathered correlation of ``gemm`` (``_small_jit``: one call,
  bias fused) for correlations of at most ``gemm.SMALL_MACS`` multiply-adds;
- the max-pool memo's compiled plan (``_pool_jit.ForwardPlan``);
- ReLU's compiled forward (``nn._jit.relu_forward``);
- ``_memory.has_explicit_limit`` reading the environment as it is now.

Expected values come from PyTorch (float64 where exactness matters) and, for
the compiled paths, from the NumPy paths they replace with numba hidden.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import ndconv
from ndconv import nn, plan
from ndconv.core import _memory, _pool_jit
from ndconv.core import functional as F
from ndconv.core import pooling as P
from ndconv.core.algorithms import _small_jit, gemm
from ndconv.nn import _jit as nn_jit

torch = pytest.importorskip("torch")
pytest.importorskip("numba")

CASES = [  # (x shape, weight shape, conv kwargs): each small enough for the compiled kernel
    ((1, 1, 8, 8), (16, 1, 3, 3), dict(padding=1)),  # the digits CNN's first conv
    ((1, 16, 4, 4), (32, 16, 3, 3), dict(padding=1)),  # and its second
    ((3, 4, 7, 6), (6, 2, 3, 2), dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2)),
    ((2, 3, 9), (4, 3, 3), dict(padding=2, padding_mode="reflect")),
    ((2, 2, 5, 6), (2, 2, 2, 3), dict(padding="same", padding_mode="circular")),
    ((1, 2, 4, 4, 5), (3, 2, 2, 2, 3), dict(padding=1, padding_mode="replicate", stride=2)),
    ((4, 6), (2, 4, 1), {}),  # unbatched 1-D
    ((1, 8, 5, 5), (8, 1, 3, 3), dict(padding=1, groups=8)),  # depthwise
]


def _torch_conv(x, w, b, kw):
    n = w.ndim - 2
    conv = getattr(torch.nn, f"Conv{n}d")(
        w.shape[1] * kw.get("groups", 1), w.shape[0], w.shape[2:], bias=b is not None,
        **{k: v for k, v in kw.items()}).to(torch.float64 if x.dtype == np.float64
                                            else torch.float32)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(w))
        if b is not None:
            conv.bias.copy_(torch.from_numpy(b))
        return conv(torch.from_numpy(x)).numpy()


def _compiled_runs(x, w, kw):
    spec = F._conv_spec(x if x.ndim == w.ndim else x[None], w, kw.get("stride", 1),
                        kw.get("padding", 0), kw.get("dilation", 1), kw.get("groups", 1),
                        kw.get("padding_mode", "zeros"))
    return gemm._small(spec) is not None


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("xs, ws, kw", CASES)
def test_compiled_gathered_conv_against_torch_and_numpy(xs, ws, kw, dtype, monkeypatch):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    assert _compiled_runs(x, w, kw)
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == np.float64 else dict(rtol=2e-5, atol=2e-5)
    for bias in (b, None):
        ref = _torch_conv(x, w, bias, kw)
        for _ in range(2):  # the second call runs from the memo
            y = F.conv(x, w, bias, **kw, method="gemm")
            assert y.dtype == dtype
            np.testing.assert_allclose(y, ref, **tol)
        with monkeypatch.context() as m:  # the NumPy gathered path it replaces
            m.setitem(_small_jit._KERNELS, "k", None)
            assert not _compiled_runs(x, w, kw)
            np.testing.assert_allclose(F.conv(x, w, bias, **kw, method="gemm"), y,
                                       rtol=1e-12 if dtype == np.float64 else 1e-5,
                                       atol=1e-12 if dtype == np.float64 else 1e-5)


def test_compiled_gathered_conv_nonfinite_as_numpy():
    # An infinite weight times a padded zero is NaN at the border (0 * inf), as
    # the NumPy paths and PyTorch compute it; a NaN input stays in its windows.
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 2, 6, 6))
    w = rng.standard_normal((3, 2, 3, 3))
    w[1, 0, 0, 0] = np.inf
    x[0, 1, 3, 3] = np.nan
    y = F.conv(x, w, None, padding=1, method="gemm")
    ref = _torch_conv(x, w, None, dict(padding=1))
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    np.testing.assert_array_equal(np.isinf(y), np.isinf(ref))
    finite = np.isfinite(ref)
    np.testing.assert_allclose(y[finite], ref[finite], rtol=1e-12, atol=1e-12)


def test_compiled_gathered_conv_non_contiguous_inputs():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 4, 6, 10))[..., ::2]  # a strided view
    w = np.asfortranarray(rng.standard_normal((5, 4, 3, 3)))
    b = rng.standard_normal(10)[::2]
    np.testing.assert_allclose(F.conv(x, w, b, padding=1),
                               _torch_conv(np.ascontiguousarray(x), np.ascontiguousarray(w),
                                           np.ascontiguousarray(b), dict(padding=1)),
                               rtol=1e-12, atol=1e-12)


def test_only_small_correlations_take_the_compiled_kernel():
    x = np.zeros((64, 16, 4, 4), np.float32)  # the second conv at batch 64: BLAS
    w = np.zeros((32, 16, 3, 3), np.float32)
    assert not _compiled_runs(x, w, dict(padding=1))
    assert _compiled_runs(x[:1], w, dict(padding=1))
    assert not _compiled_runs(x[:1].astype(np.complex128), w.astype(np.complex128),
                              dict(padding=1))


@pytest.mark.parametrize("xs, ws, kw", [
    ((64, 16, 4, 4), (32, 16, 3, 3), dict(padding=1)),  # the second conv at batch 64
    ((64, 8, 6, 6), (12, 4, 3, 3), dict(padding=1, groups=2, padding_mode="circular")),
])
def test_compiled_gather_columns_against_torch_and_take(xs, ws, kw, monkeypatch):
    # Too large for the one-call kernel, gathered by the compiled gather for
    # BLAS (the bias added in the transposing copy); with numba hidden, take.
    rng = np.random.default_rng(8)
    x, w, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])
    spec = F._conv_spec(x, w, 1, kw["padding"], 1, kw.get("groups", 1),
                        kw.get("padding_mode", "zeros"))
    assert gemm._small(spec) is None and gemm._gather_index(spec) is not None
    columns = spec.batch * spec.in_channels * spec.taps * int(np.prod(spec.out_spatial))
    assert columns * 8 > gemm.GATHER_BYTES  # more than take's bound
    for bias in (b, None):
        ref = _torch_conv(x, w, bias, kw)
        for _ in range(2):
            np.testing.assert_allclose(F.conv(x, w, bias, **kw, method="gemm"), ref,
                                       rtol=1e-12, atol=1e-12)
        with monkeypatch.context() as m:
            m.setitem(_small_jit._KERNELS, "k", None)
            np.testing.assert_allclose(F.conv(x, w, bias, **kw, method="gemm"), ref,
                                       rtol=1e-12, atol=1e-12)
    gy = rng.standard_normal(ref.shape)
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    tconv = torch.nn.Conv2d(xs[1], ws[0], 3, bias=False, **kw).double()
    with torch.no_grad():
        tconv.weight.copy_(wt)
    yt = torch.nn.functional.conv2d(
        torch.nn.functional.pad(xt, (1, 1, 1, 1), mode=kw.get("padding_mode", "zeros")
                                .replace("zeros", "constant")), wt, groups=kw.get("groups", 1))
    yt.backward(torch.tensor(gy))
    gx, gw, _ = F.conv_backward(gy, x, w, **kw)
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(gw, wt.grad.numpy(), rtol=1e-10, atol=1e-10)


# -- a layer's answers follow its parameters, dtype and input shape ------------

def test_conv_layer_never_stale():
    rng = np.random.default_rng(4)
    layer = nn.Conv2d(3, 8, 3, padding=1, rng=0)
    tlayer = torch.nn.Conv2d(3, 8, 3, padding=1)

    def check(x):
        tlayer.to(torch.float64 if x.dtype == np.float64 else torch.float32)
        with torch.no_grad():
            tlayer.weight.copy_(torch.from_numpy(layer.weight.data))
            tlayer.bias.copy_(torch.from_numpy(layer.bias.data))
            ref = tlayer(torch.from_numpy(x)).numpy()
        tol = 1e-12 if x.dtype == np.float64 else 2e-5
        np.testing.assert_allclose(layer(x), ref, rtol=tol, atol=tol)

    x = rng.standard_normal((1, 3, 5, 5)).astype(np.float32)
    check(x)
    check(x)
    layer.weight.data *= -2  # in place
    check(x)
    layer.bias.data[3] = 10.0  # in place
    check(x)
    layer.weight.data = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)  # replaced
    check(x)
    check(rng.standard_normal((2, 3, 4, 6)).astype(np.float32))  # another shape
    check(rng.standard_normal((3, 5, 5)).astype(np.float32))  # unbatched
    for p in layer.parameters():  # another dtype
        p.data = p.data.astype(np.float64)
    check(x.astype(np.float64))
    layer.padding = (0, 2)  # another argument
    tlayer.padding = (0, 2)
    check(x.astype(np.float64))


def test_digits_cnn_batch_one_against_torch_after_updates():
    from ndconv.bench.cases import torch_digits_cnn
    from ndconv.training.models import digits_cnn

    rng = np.random.default_rng(5)
    model = digits_cnn(rng=0).eval()
    for step in range(3):
        tmodel = torch_digits_cnn(torch, model).eval()
        for batch in (1, 64, 1):
            x = rng.standard_normal((batch, 1, 8, 8)).astype(np.float32)
            with torch.no_grad():
                ref = tmodel(torch.from_numpy(x)).numpy()
            np.testing.assert_allclose(model(x), ref, rtol=1e-4, atol=1e-5)
        for p in model.parameters():
            p.data += np.float32(0.1) * rng.standard_normal(p.data.shape).astype(np.float32)


# -- max pooling's compiled plan ------------------------------------------------

@pytest.mark.parametrize("shape, kw", [
    ((1, 16, 8, 8), dict(kernel_size=(2, 2))),
    ((64, 32, 4, 4), dict(kernel_size=(2, 2))),
    ((2, 3, 7, 8), dict(kernel_size=(3, 3), stride=(2, 2), padding=(1, 1))),
    ((3, 9), dict(kernel_size=(2,), ceil_mode=True)),
])
def test_max_pool_plan_against_torch_with_and_without_numba(shape, kw, monkeypatch):
    rng = np.random.default_rng(6)
    n = len(kw["kernel_size"])
    tfn = getattr(torch.nn.functional, f"max_pool{n}d")
    for dtype in (np.float64, np.float32):
        x = rng.standard_normal(shape).astype(dtype)
        x.flat[::11] = np.nan
        ref = tfn(torch.from_numpy(x), **{**kw, "stride": kw.get("stride") or kw["kernel_size"]})
        for _ in range(2):  # the second call runs from the memo's plan
            np.testing.assert_array_equal(P.max_pool(x, **kw), ref.numpy())
        with monkeypatch.context() as m:
            m.setitem(_pool_jit._KERNELS, "k", None)  # the plan steps aside
            np.testing.assert_array_equal(P.max_pool(x, **kw), ref.numpy())
        x2 = rng.standard_normal(shape).astype(dtype)  # new values, same memo entry
        ref2 = tfn(torch.from_numpy(x2), **{**kw, "stride": kw.get("stride") or kw["kernel_size"]})
        np.testing.assert_array_equal(P.max_pool(x2, **kw), ref2.numpy())
        xs = np.repeat(x2, 2, axis=-1)[..., ::2]  # non-contiguous, same shape
        np.testing.assert_array_equal(P.max_pool(xs, **kw), ref2.numpy())


def test_max_pool_plan_honours_a_memory_limit_set_later():
    x = np.zeros((1, 16, 8, 8), np.float32)
    P.max_pool(x, (2, 2))
    P.max_pool(x, (2, 2))
    with plan.memory_limit(64), pytest.raises(plan.MemoryLimitError):
        P.max_pool(x, (2, 2))


# -- ReLU's compiled forward ------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_forward_against_torch_with_and_without_numba(dtype, monkeypatch):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4, 16, 16, 16)).astype(dtype)  # large enough to compile
    x.reshape(-1)[:6] = [np.nan, 0.0, -0.0, np.inf, -np.inf, -1e-30]
    ref = torch.relu(torch.from_numpy(x)).numpy()
    assert nn_jit.relu_forward(x) is not None
    assert nn_jit.relu_forward(x[:1, :1]) is None  # a small one: NumPy's call is faster
    layer = nn.ReLU()
    y = layer(x)
    assert y.dtype == dtype and y.shape == x.shape
    np.testing.assert_array_equal(y, ref)
    assert not np.signbit(y).any()  # -0.0 becomes 0.0, as np.maximum(x, 0)
    with monkeypatch.context() as m:
        m.setitem(nn_jit._FORWARD, "k", None)
        np.testing.assert_array_equal(layer(x), y)
    np.testing.assert_array_equal(layer(x[..., ::2]), ref[..., ::2])  # NumPy's path
    x[0, 0, 0, 0] = 5.0  # the input is never remembered
    assert layer(x)[0, 0, 0, 0] == 5.0


# -- the memory limit from the environment, as it is now -------------------------

def test_explicit_limit_follows_the_environment(monkeypatch):
    monkeypatch.delenv("NDCONV_MEMORY_LIMIT", raising=False)
    assert not _memory.has_explicit_limit()
    monkeypatch.setenv("NDCONV_MEMORY_LIMIT", "1kB")
    assert _memory.has_explicit_limit()
    x = np.zeros((1, 1, 64, 64), np.float32)
    with pytest.raises(plan.MemoryLimitError, match="NDCONV_MEMORY_LIMIT"):
        ndconv.conv(x, np.zeros((4, 1, 3, 3), np.float32), padding=1)
    monkeypatch.setenv("NDCONV_MEMORY_LIMIT", "")
    assert not _memory.has_explicit_limit()
    monkeypatch.delenv("NDCONV_MEMORY_LIMIT")
    assert not _memory.has_explicit_limit()
    assert "NDCONV_MEMORY_LIMIT" not in os.environ

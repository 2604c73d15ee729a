"""Attacks on the new ``ndconv.nn`` layers: extreme values, empty and size-1 batches,
mode switching, state dicts of the wrong shape or dtype, and Graph misuse.

Every expected value comes from PyTorch (float64 where the comparison is
exact); every refusal must be a clear ``ValueError`` / ``TypeError`` /
``MemoryLimitError`` before any large allocation.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from ndconv import nn

torch = pytest.importorskip("torch")

EXTREMES = [0.0, -0.0, 1e308, -1e308, np.inf, -np.inf, np.nan, 5e-324, 1e-310, -1e-310,
            1.0, -1.0, 3.0, -3.0, 20.0, -20.0, 710.0, -710.0, 1e154, -1e154]


def _same(a, b, rtol=1e-12):
    """Equal with NaN == NaN and infinities exact; finite values within rtol."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape
    assert np.array_equal(np.isnan(a), np.isnan(b)), (a, b)
    fin = np.isfinite(a) & np.isfinite(b)
    assert np.array_equal(a[~fin & ~np.isnan(a)], b[~fin & ~np.isnan(b)]), (a, b)
    np.testing.assert_allclose(a[fin], b[fin], rtol=rtol, atol=1e-300)


def _grads(module, tmodule, x, g):
    with np.errstate(all="ignore"):
        y = module(x)
        gx = module.backward(g)
    tx = torch.tensor(x, requires_grad=True)
    ty = tmodule(tx)
    ty.backward(torch.tensor(g))
    return y, gx, ty.detach().numpy(), tx.grad.numpy()


# ------------------------------------------------------------ activations

@pytest.mark.parametrize("name", ["ReLU", "Sigmoid", "Tanh", "LeakyReLU", "ELU", "SiLU",
                                  "Hardsigmoid", "GELU"])
def test_activations_at_the_extremes_equal_torch_float64(name):
    x = np.array(EXTREMES, np.float64).reshape(1, -1)
    g = np.linspace(-2, 2, x.size).reshape(x.shape)
    y, gx, yt, gt = _grads(getattr(nn, name)(), getattr(torch.nn, name)(), x, g)
    _same(y, yt)
    _same(gx, gt)


def test_relu_passes_the_gradient_at_nan_as_torch():
    # torch's threshold_backward: grad where not (x <= 0); ndconv gave 0 at NaN
    for dt in (np.float32, np.float64):
        x = np.array([np.nan, -1.0, 0.0, 2.0], dt)
        _, gx, _, gt = _grads(nn.ReLU(), torch.nn.ReLU(), x, np.ones_like(x))
        np.testing.assert_array_equal(gx, gt)
        assert gx[0] == 1


@pytest.mark.parametrize("cls", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("shape, dim", [((5, 0), 1), ((0, 5), 1), ((3, 0, 2), 1), ((0,), 0)])
def test_softmax_of_empty_inputs_is_empty_as_torch(cls, shape, dim):
    x = np.ones(shape)
    m = getattr(nn, cls)(dim)
    y = m(x)
    assert y.shape == tuple(getattr(torch.nn, cls)(dim)(torch.ones(shape)).shape)
    assert m.backward(np.ones(shape)).shape == shape


@pytest.mark.parametrize("cls", ["Softmax", "LogSoftmax"])
def test_softmax_rows_with_infinities_equal_torch(cls):
    rows = [[np.inf, 1.0], [-np.inf, 1.0], [-np.inf, -np.inf], [1e308, -1e308], [np.nan, 0.0],
            [710.0, -710.0], [5e-324, 0.0]]
    x = np.array(rows)
    g = np.tile([[1.0, -2.0]], (len(rows), 1))
    y, gx, yt, gt = _grads(getattr(nn, cls)(1), getattr(torch.nn, cls)(1), x, g)
    _same(y, yt)
    _same(gx, gt)


# ------------------------------------------------------------ normalization

@pytest.mark.parametrize("shape", [(1, 3), (1, 3, 1), (1, 3, 1, 1)])
@pytest.mark.parametrize("track", [True, False])
@pytest.mark.parametrize("train", [True, False])
def test_batchnorm_one_value_per_channel_as_torch(shape, track, train):
    # torch checks whenever the batch's statistics are used: also in eval mode
    # without running statistics, where ndconv returned zeros
    ndim = len(shape) - 2 or 1
    m = getattr(nn, f"BatchNorm{ndim}d")(3, track_running_stats=track).train(train)
    t = getattr(torch.nn, f"BatchNorm{ndim}d")(3, track_running_stats=track).train(train)
    x = np.full(shape, 2.0, np.float32)
    try:
        want = t(torch.tensor(x)).detach().numpy()
    except ValueError:
        with pytest.raises(ValueError, match="more than 1 value per channel"):
            m(x)
        return
    np.testing.assert_array_equal(m(x), want)


def test_batchnorm_empty_batch_as_torch():
    x = np.zeros((0, 3, 4), np.float32)
    m, t = nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3)
    y, yt = m(x), t(torch.tensor(x))
    assert y.shape == tuple(yt.shape) == (0, 3, 4)
    np.testing.assert_array_equal(m.running_mean, t.running_mean.numpy())
    np.testing.assert_array_equal(m.running_var, t.running_var.numpy())
    assert int(m.num_batches_tracked) == int(t.num_batches_tracked) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "mean of empty slice"
        assert m.backward(np.zeros_like(x)).shape == (0, 3, 4)
    np.testing.assert_array_equal(m.weight.grad, np.zeros(3, np.float32))


@pytest.mark.parametrize("make", ["group", "layer"])
def test_group_and_layer_norm_empty_batch_as_torch(make):
    x = np.zeros((0, 4, 5), np.float32)
    m = nn.GroupNorm(2, 4) if make == "group" else nn.LayerNorm(5)
    t = torch.nn.GroupNorm(2, 4) if make == "group" else torch.nn.LayerNorm(5)
    assert m(x).shape == tuple(t(torch.tensor(x)).shape)
    assert m.backward(x).shape == x.shape


@pytest.mark.parametrize("values", [[1e38, -1e38, 0, 1], [np.inf, 1, 2, 3], [np.nan, 1, 2, 3],
                                    [3e38, 3e38, 3e38, 3e38], [-0.0, 0.0, -0.0, 0.0]])
def test_batchnorm_extreme_batches_and_running_stats_as_torch(values):
    x = np.array(values, np.float32).reshape(4, 1)
    m, t = nn.BatchNorm1d(1), torch.nn.BatchNorm1d(1)
    with np.errstate(all="ignore"):
        y = m(x)
    _same(y, t(torch.tensor(x)).detach().numpy(), rtol=1e-6)
    _same(m.running_mean, t.running_mean.numpy(), rtol=1e-6)
    _same(m.running_var, t.running_var.numpy(), rtol=1e-6)


def test_batchnorm_train_eval_switching_equals_torch():
    rng = np.random.default_rng(0)
    m, t = nn.BatchNorm2d(3, dtype=np.float64), torch.nn.BatchNorm2d(3).double()
    for step in range(6):
        x = rng.normal(step, 1 + step, (4, 3, 2, 2))
        train = step % 3 != 2
        m.train(train), t.train(train)
        np.testing.assert_allclose(m(x), t(torch.tensor(x)).detach().numpy(), rtol=1e-12,
                                   atol=1e-12)
    np.testing.assert_allclose(m.running_var, t.running_var.numpy(), rtol=1e-12)
    assert int(m.num_batches_tracked) == int(t.num_batches_tracked) == 4


@pytest.mark.parametrize("key, value, error", [
    ("running_mean", np.zeros(4), ValueError),
    ("running_mean", np.float32(0), ValueError),
    ("num_batches_tracked", np.array([2]), ValueError),
    ("weight", np.ones(3, complex), TypeError),
    ("weight", np.array(["a", "b", "c"]), TypeError),
    ("weight", np.array([1, None, 2], dtype=object), TypeError),
    ("weight", np.array([True, False, True]), TypeError),
])
def test_batchnorm_state_dict_of_the_wrong_shape_or_dtype(key, value, error):
    m = nn.BatchNorm2d(3)
    before = {k: np.array(v) for k, v in m.state_dict().items()}
    state = {k: v.numpy() for k, v in torch.nn.BatchNorm2d(3).state_dict().items()}
    state[key] = value
    with pytest.raises(error, match=key):
        m.load_state_dict(state)
    for k, v in m.state_dict().items():  # nothing was changed
        np.testing.assert_array_equal(v, before[k])


# ------------------------------------------------------------ resampling, pooling, padding

def test_adaptive_avg_pool_empty_batch_as_torch():
    x = np.ones((0, 3, 4, 4))
    m = nn.AdaptiveAvgPool2d(1)
    assert m(x).shape == tuple(torch.nn.AdaptiveAvgPool2d(1)(torch.tensor(x)).shape)
    assert m.backward(np.ones((0, 3, 1, 1))).shape == x.shape
    with pytest.raises(ValueError, match="empty spatial"):
        m(np.ones((1, 3, 0, 4)))


@pytest.mark.parametrize("case", [
    "nn.Upsample(size=10**12)(np.ones((1, 1, 2), np.float32))",
    "nn.Upsample(scale_factor=10**6, mode='bilinear')(np.ones((1, 1, 2, 2)))",
    "nn.AdaptiveAvgPool1d(10**11)(np.ones((1, 1, 3)))",  # built 10^11 windows in a list
    "nn.ZeroPad2d(10**6)(np.ones((1, 1, 3, 3)))",
    "nn.ConstantPad1d((0, 10**12), 1.0)(np.ones((1, 1, 3)))",
])
def test_huge_outputs_are_refused_before_allocating(case):
    # In a child with 3 GB of address space: without the guard these took the
    # machine's memory (the adaptive pool was killed by the OOM killer).
    code = ("import resource; resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))\n"
            "import numpy as np\nfrom ndconv import nn\nfrom ndconv.plan import memory_limit\n"
            "try:\n    with memory_limit('1GB'):\n        " + case + "\n"
            "except BaseException as e:\n    print(type(e).__name__, e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    assert out.stdout.startswith("MemoryLimitError") and "nothing was allocated" in out.stdout, \
        out.stdout + out.stderr[-500:]


def test_upsample_scale_that_overflows_is_a_value_error():
    with pytest.raises(ValueError, match="scale_factor"):
        nn.Upsample(scale_factor=1e308)(np.ones((1, 1, 2)))


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_upsample_extremes_equal_torch(mode):
    x = np.array([[EXTREMES]], np.float64)
    kw = {} if mode == "nearest" else {"align_corners": False}
    y, gx, yt, gt = _grads(nn.Upsample(scale_factor=2, mode=mode, **kw),
                           torch.nn.Upsample(scale_factor=2, mode=mode, **kw), x,
                           np.ones((1, 1, 2 * x.shape[-1])))
    _same(y, yt)
    _same(gx, gt)


# ------------------------------------------------------------ Graph misuse

def test_graph_cannot_contain_itself():
    g = nn.Graph()
    x = g.input()
    with pytest.raises(ValueError, match="layer of itself"):
        g.layer("me", g, x)
    inner, outer = nn.Graph(), nn.Graph()
    a = inner.input()
    h = inner.layer("r", nn.ReLU(), a)
    b = outer.input()
    outer.layer("inner", inner, b)
    with pytest.raises(ValueError, match="layer of itself"):
        inner.layer("outer", outer, h)  # inner -> outer -> inner
    assert len(list(inner.modules())) == 2 and list(inner.state_dict()) == []


@pytest.mark.parametrize("name", ["eval", "train", "state_dict", "parameters", "forward",
                                  "backward", "zero_grad", "modules", "add", "inputs"])
def test_layer_names_that_would_hide_a_method_are_refused(name):
    g = nn.Graph()
    x = g.input()
    with pytest.raises(ValueError, match="clashes"):
        g.layer(name, nn.ReLU(), x)
    g.output(g.layer("relu", nn.ReLU(), x))
    assert g.eval() is g and list(g.state_dict()) == []


def test_graph_misuse_gives_clear_errors():
    g = nn.Graph()
    x = g.input()
    with pytest.raises(TypeError, match="Value of this Graph"):
        g.layer("r", nn.ReLU(), nn.Graph().input())
    with pytest.raises(TypeError, match="Value of this Graph"):
        g.layer("r", nn.ReLU(), "x")
    with pytest.raises(RuntimeError, match="declare the outputs"):
        g(np.ones(2))
    unused = g.input()  # an input no node uses
    g.output(g.layer("r", nn.ReLU(), x))
    with pytest.raises(RuntimeError, match="before forward"):
        g.backward(np.ones(2))
    with pytest.raises(ValueError, match="takes 2 input"):
        g(np.ones(2))
    g(np.array([-1.0, 2.0]), np.ones((3, 4), np.float32))
    gx, gu = g.backward(np.ones(2))
    np.testing.assert_array_equal(gx, [0, 1])
    assert gu.shape == (3, 4) and gu.dtype == np.float32 and not gu.any()
    with pytest.raises(ValueError, match="grad_out of shape"):
        g.backward(np.ones(3))
    with pytest.raises(RuntimeError, match="complete"):
        g.layer("late", nn.ReLU(), x)
    assert unused.index == 1


def test_output_used_twice_and_input_as_output_equal_torch():
    g = nn.Graph()
    x = g.input()
    h = g.layer("bn", nn.BatchNorm1d(2, dtype=np.float64), x)
    g.output(h, h, x)
    xv = np.random.default_rng(1).normal(size=(5, 2))
    g(xv)
    g1, g2, g3 = (np.random.default_rng(k).normal(size=(5, 2)) for k in (2, 3, 4))
    gx = g.backward(g1, g2, g3)
    tb = torch.nn.BatchNorm1d(2).double()
    tx = torch.tensor(xv, requires_grad=True)
    th = tb(tx)
    (th * torch.tensor(g1) + th * torch.tensor(g2) + tx * torch.tensor(g3)).sum().backward()
    np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(g.bn.weight.grad, tb.weight.grad.numpy(), rtol=1e-12)

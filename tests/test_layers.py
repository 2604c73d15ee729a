"""Layers (Linear, activations, Flatten, Dropout, N-d pooling) against PyTorch.

Forward values and ``backward`` gradients are compared with torch autograd in
float64; the whole-network test puts every layer type in one Sequential.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import ndconv
from ndconv import nn

torch.set_num_threads(1)
TF = torch.nn.functional


def _t(a, grad=False):
    return torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=grad)


def _check_layer(layer, tlayer, x, rng):
    """Forward, input gradient and parameter gradients of ``layer`` equal torch's."""
    xt = _t(x, grad=True)
    yt = tlayer(xt)
    y = layer(x)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(y.shape)
    yt.backward(_t(g))
    gx = layer.backward(g)
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-12, atol=1e-12)
    tparams = dict(tlayer.named_parameters())
    for name, p in layer.named_parameters():
        np.testing.assert_allclose(p.grad, tparams[name].grad.numpy(), rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------
# Linear


@pytest.mark.parametrize("shape", [(5, 4), (2, 3, 4), (4,)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch(shape, bias):
    rng = np.random.default_rng(0)
    lin = nn.Linear(4, 3, bias=bias, dtype=np.float64, rng=1)
    t = torch.nn.Linear(4, 3, bias=bias, dtype=torch.float64)
    t.load_state_dict({k: torch.tensor(v) for k, v in lin.state_dict().items()})
    _check_layer(lin, t, rng.standard_normal(shape), rng)


def test_linear_init_dtype_rng():
    a = nn.Linear(50, 20, rng=3)
    b = nn.Linear(50, 20, rng=3)
    c = nn.Linear(50, 20, rng=4)
    assert a.weight.dtype == np.float32 and a.bias.dtype == np.float32
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    assert not np.array_equal(a.weight.data, c.weight.data)
    # PyTorch's default: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias.
    bound = 1 / np.sqrt(50)
    assert np.abs(a.weight.data).max() <= bound and np.abs(a.weight.data).max() > 0.9 * bound
    assert nn.Linear(2, 2, dtype=np.float64).weight.dtype == np.float64
    with pytest.raises(TypeError, match="dtype"):
        nn.Linear(2, 2, dtype=np.int32)
    with pytest.raises(TypeError, match="rng"):
        nn.Linear(2, 2, rng="seed")
    with pytest.raises(ValueError, match="in_features"):
        nn.Linear(0, 2)
    assert [k for k, _ in a.named_parameters()] == ["weight", "bias"]


def test_linear_shape_error_names_sizes():
    with pytest.raises(ValueError, match=r"in_features=4.*\(2, 5\)"):
        nn.Linear(4, 3)(np.ones((2, 5)))


# --------------------------------------------------------------------------
# activations, Flatten, Dropout


@pytest.mark.parametrize("name", ["ReLU", "Sigmoid", "Tanh"])
def test_activations_match_torch(name):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4, 5)) * 3
    x[0, 0, 0] = 0.0  # ReLU's derivative at 0 is 0 in PyTorch
    _check_layer(getattr(nn, name)(), getattr(torch.nn, name)(), x, rng)


def test_sigmoid_is_stable_for_large_inputs():
    x = np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0])
    with np.errstate(over="raise", invalid="raise"):
        y = nn.Sigmoid()(x)
    np.testing.assert_allclose(y, torch.sigmoid(_t(x)).numpy(), rtol=1e-12, atol=0)


def test_relu_keeps_nan_like_torch():
    y = nn.ReLU()(np.array([np.nan, -1.0, 2.0]))
    assert np.isnan(y[0]) and y[1] == 0 and y[2] == 2


@pytest.mark.parametrize("start,end", [(1, -1), (0, -1), (1, 2), (2, 3), (-2, -1)])
def test_flatten_matches_torch(start, end):
    rng = np.random.default_rng(2)
    _check_layer(nn.Flatten(start, end), torch.nn.Flatten(start, end),
                 rng.standard_normal((2, 3, 4, 5)), rng)


def test_flatten_bad_dims():
    with pytest.raises(ValueError, match="start_dim"):
        nn.Flatten(3, 1)(np.ones((2, 3, 4, 5)))


def test_dropout_train_and_eval():
    x = np.ones((200, 100))
    d = nn.Dropout(0.25, rng=0)
    y = d(x)
    zeros = np.mean(y == 0)
    assert 0.23 < zeros < 0.27
    np.testing.assert_allclose(y[y != 0], 1 / 0.75)
    g = d.backward(np.full_like(x, 2.0))
    np.testing.assert_array_equal(g, 2.0 * y)  # same mask, same scale
    model = nn.Sequential(d)
    model.eval()
    np.testing.assert_array_equal(model(x), x)
    np.testing.assert_array_equal(model.backward(x), x)
    model.train()
    assert np.any(model(x) == 0)
    # Same seed, same masks.
    np.testing.assert_array_equal(nn.Dropout(0.5, rng=7)(x), nn.Dropout(0.5, rng=7)(x))
    for bad in (1.0, -0.1, "0.5", True):
        with pytest.raises(ValueError, match="`p`"):
            nn.Dropout(bad)


# --------------------------------------------------------------------------
# pooling


def test_pooling_lecture_numbers():
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    np.testing.assert_array_equal(nn.MaxPool2d(2, stride=1)(x)[0, 0], [[4, 5], [7, 8]])
    np.testing.assert_array_equal(nn.AvgPool2d(2, stride=1)(x)[0, 0], [[2, 3], [5, 6]])
    np.testing.assert_array_equal(ndconv.max_pool(x[0], (2, 2), 1)[0], [[4, 5], [7, 8]])


_POOL_CASES = list(itertools.product(
    [1, 2, 3],                 # spatial dims
    [2, 3],                    # kernel
    [None, 1, 2],              # stride
    [0, 1],                    # padding
    [False, True],             # ceil_mode
))


@pytest.mark.parametrize("n,k,s,p,ceil", _POOL_CASES)
def test_maxpool_matches_torch(n, k, s, p, ceil):
    rng = np.random.default_rng(n * 100 + k * 10 + p)
    x = rng.standard_normal((2, 3, *[7, 6, 5][:n]))
    tl = getattr(torch.nn, f"MaxPool{n}d")(k, s, p, ceil_mode=ceil)
    _check_layer(getattr(nn, f"MaxPool{n}d")(k, s, p, ceil_mode=ceil), tl, x, rng)


@pytest.mark.parametrize("n,k,s,p,ceil", _POOL_CASES)
@pytest.mark.parametrize("cip", [True, False])
def test_avgpool_matches_torch(n, k, s, p, ceil, cip):
    rng = np.random.default_rng(n * 100 + k * 10 + p)
    x = rng.standard_normal((2, 3, *[7, 6, 5][:n]))
    tl = getattr(torch.nn, f"AvgPool{n}d")(k, s, p, ceil_mode=ceil, count_include_pad=cip)
    _check_layer(getattr(nn, f"AvgPool{n}d")(k, s, p, ceil_mode=ceil, count_include_pad=cip),
                 tl, x, rng)


def test_maxpool_dilation_ties_and_unbatched():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 9, 8))
    _check_layer(nn.MaxPool2d((3, 2), stride=(2, 1), padding=1, dilation=(2, 3)),
                 torch.nn.MaxPool2d((3, 2), stride=(2, 1), padding=1, dilation=(2, 3)), x, rng)
    # Ties: the gradient goes to the first maximum, as in PyTorch.
    _check_layer(nn.MaxPool2d(2, stride=1), torch.nn.MaxPool2d(2, stride=1),
                 np.ones((1, 1, 4, 4)), rng)


@pytest.mark.parametrize("kind", ["Max", "Avg"])
def test_pool_tiles_shifted_by_padding(kind):
    # k = s = 3, padding 1 on a 6x6 input: two windows per dim that tile 6
    # cells but start at -1, so the last cell is in no window.
    rng = np.random.default_rng(7)
    _check_layer(getattr(nn, f"{kind}Pool2d")(3, padding=1),
                 getattr(torch.nn, f"{kind}Pool2d")(3, padding=1),
                 rng.standard_normal((2, 2, 6, 6)), rng)


def test_maxpool_nan_like_torch():
    # NaN wins its window and takes the gradient (the last NaN, as PyTorch).
    rng = np.random.default_rng(8)
    x = rng.standard_normal((1, 2, 6, 6))
    x[0, 0, 0, 0] = x[0, 0, 1, 1] = x[0, 1, 3, 2] = np.nan
    xt = _t(x, grad=True)
    yt = torch.nn.functional.max_pool2d(xt, 3, 2, 1)
    g = rng.standard_normal(yt.shape)
    yt.backward(_t(g))
    layer = nn.MaxPool2d(3, 2, 1)
    np.testing.assert_array_equal(layer(x), yt.detach().numpy())  # NaN where torch has NaN
    np.testing.assert_allclose(layer.backward(g), xt.grad.numpy(), rtol=1e-12)


def test_maxpool_all_minus_inf_window_sends_gradient_to_input_like_torch():
    # A window whose input cells are all -inf ties with the -inf padding: the
    # gradient goes to its first input cell (as PyTorch), never to the padding.
    rng = np.random.default_rng(9)
    x = rng.standard_normal((1, 2, 5, 5))
    x[0, 0, :2, :2] = x[0, 1, 3:, :] = -np.inf
    xt = _t(x, grad=True)
    yt = torch.nn.functional.max_pool2d(xt, 3, 1, 1, ceil_mode=True)
    g = rng.standard_normal(yt.shape)
    yt.backward(_t(g))
    layer = nn.MaxPool2d(3, 1, 1, ceil_mode=True)
    np.testing.assert_array_equal(layer(x), yt.detach().numpy())
    np.testing.assert_allclose(layer.backward(g), xt.grad.numpy(), rtol=1e-12)


def test_avgpool_divisor_override():
    rng = np.random.default_rng(6)
    _check_layer(nn.AvgPool2d(3, 2, 1, divisor_override=4),
                 torch.nn.AvgPool2d(3, 2, 1, divisor_override=4),
                 rng.standard_normal((2, 2, 7, 7)), rng)


def test_pool_errors():
    with pytest.raises(ValueError, match="at most half"):
        nn.MaxPool2d(2, padding=2)
    with pytest.raises(ValueError, match="at most half"):
        nn.AvgPool1d(3, padding=2)
    with pytest.raises(ValueError, match=r"larger than the padded input.*must be >= 1"):
        nn.MaxPool2d(5)(np.ones((1, 1, 3, 3)))
    # An input shape without spatial dims is refused, not answered with ().
    with pytest.raises(ValueError, match=r"`input_shape` \(=\(5, 5\)\)"):
        ndconv.pooling.pool_output_shape((5, 5), 2)
    with pytest.raises(ValueError, match="`input_shape`"):
        ndconv.pooling.pool_output_shape((5,), (2, 2))
    assert ndconv.pooling.pool_output_shape((1, 1, 5, 4), 2) == (2, 2)
    with pytest.raises(ValueError, match="kernel_size"):
        nn.MaxPool2d(0)
    with pytest.raises(ValueError, match="one entry per spatial"):
        nn.AvgPool3d((2, 2))
    with pytest.raises(ValueError, match=r"MaxPool2d expects input.*\(4, 4\)"):
        nn.MaxPool2d(2)(np.ones((4, 4)))
    with pytest.raises(TypeError, match="float32 or float64"):
        ndconv.max_pool(np.ones((1, 4, 4), dtype=np.int64), (2, 2))


@given(
    n=st.integers(1, 3), k=st.integers(1, 4), s=st.integers(1, 3), p=st.integers(0, 2),
    size=st.integers(1, 6), ceil=st.booleans(), kind=st.sampled_from(["Max", "Avg"]),
)
def test_pool_random_arguments_agree_with_torch(n, k, s, p, size, ceil, kind):
    """Random arguments: the same error class as torch or the same numbers."""
    x = np.random.default_rng(size).standard_normal((1, 2, *[size] * n))
    xt = _t(x, grad=True)
    try:
        tl = getattr(torch.nn, f"{kind}Pool{n}d")(k, s, p, ceil_mode=ceil)
        yt = tl(xt)
        want = yt.detach().numpy()
    except RuntimeError:
        want = None
    try:
        layer = getattr(nn, f"{kind}Pool{n}d")(k, s, p, ceil_mode=ceil)
        got = layer(x)
    except ValueError:
        layer = got = None
    if want is None and got is not None and kind == "Avg" and n == 3 and size < k:
        # torch's avg_pool3d alone refuses an input smaller than the kernel
        # even when padding makes it fit; AvgPool1d/2d (and ndconv) accept it.
        return
    if want is None or got is None:
        assert want is None and got is None
    else:
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
        g = np.cos(np.arange(got.size)).reshape(got.shape)
        yt.backward(_t(g))
        layer(x)
        np.testing.assert_allclose(layer.backward(g), xt.grad.numpy(), rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------
# a whole network


class _TorchMask(torch.nn.Module):
    """Dropout with a given mask, so torch can replay ndconv's random draw."""

    def __init__(self, mask):
        super().__init__()
        self.mask = torch.tensor(mask)

    def forward(self, x):
        return x * self.mask


def test_whole_network_gradients_equal_torch_autograd():
    rng = np.random.default_rng(0)
    f64 = np.float64
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, dtype=f64, rng=1),       # 0
        nn.ReLU(),                                              # 1
        nn.MaxPool2d(2),                                        # 2  -> 4x4x4
        nn.ConvTranspose2d(4, 3, 2, stride=2, dtype=f64, rng=2),  # 3  -> 3x8x8
        nn.Tanh(),                                              # 4
        nn.AvgPool2d(3, stride=2, padding=1),                   # 5  -> 3x4x4
        nn.Flatten(),                                           # 6  -> 48
        nn.Dropout(0.3, rng=3),                                 # 7
        nn.Linear(48, 16, dtype=f64, rng=4),                    # 8
        nn.Sigmoid(),                                           # 9
        nn.Linear(16, 5, dtype=f64, rng=5),                     # 10
    )
    x = rng.standard_normal((3, 2, 8, 8))
    y = rng.integers(0, 5, size=3)
    loss_fn = ndconv.losses.CrossEntropyLoss()
    loss = loss_fn(model(x), y)
    gin = model.backward(loss_fn.backward())

    t = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.ConvTranspose2d(4, 3, 2, stride=2), torch.nn.Tanh(),
        torch.nn.AvgPool2d(3, stride=2, padding=1), torch.nn.Flatten(),
        _TorchMask(model[7].mask), torch.nn.Linear(48, 16), torch.nn.Sigmoid(),
        torch.nn.Linear(16, 5),
    ).double()
    t.load_state_dict({k: torch.tensor(v) for k, v in model.state_dict().items()})
    xt = _t(x, grad=True)
    tl = torch.nn.functional.cross_entropy(t(xt), torch.tensor(y))
    tl.backward()
    assert loss == pytest.approx(tl.item(), rel=1e-12)
    np.testing.assert_allclose(gin, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    tparams = dict(t.named_parameters())
    names = [k for k, _ in model.named_parameters()]
    assert names == [k for k in tparams]  # PyTorch's names, "0.weight" ...
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, tparams[name].grad.numpy(), rtol=1e-10, atol=1e-12)


def test_shape_error_between_layers_names_layer_and_shapes():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(100, 10))
    with pytest.raises(ValueError, match=r"layer 2 \(Linear\).*\(2, 144\).*in_features=100"):
        model(np.ones((2, 1, 8, 8), dtype=np.float32))


def test_tied_weight_is_one_parameter_and_one_sgd_step_as_torch():
    # A weight shared by two layers is one parameter, as torch's parameters():
    # the optimizer must not update it twice per step.
    a, b = nn.Linear(3, 3, dtype=np.float64, rng=0), nn.Linear(3, 3, dtype=np.float64, rng=1)
    b.weight = a.weight
    model = nn.Sequential(a, b)
    ta, tb = torch.nn.Linear(3, 3).double(), torch.nn.Linear(3, 3).double()
    tmodel = torch.nn.Sequential(ta, tb)
    with torch.no_grad():
        ta.weight.copy_(_t(a.weight.data))
        ta.bias.copy_(_t(a.bias.data))
        tb.bias.copy_(_t(b.bias.data))
    tb.weight = ta.weight
    assert len(model.parameters()) == len(list(tmodel.parameters())) == 3
    x = np.random.default_rng(0).standard_normal((4, 3))
    opt = ndconv.optim.SGD(model.parameters(), lr=0.1)
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.1)
    model.backward(np.ones((4, 3)) / 12 * 2 * model(x))
    opt.step()
    tmodel(_t(x)).square().mean().backward()
    topt.step()
    np.testing.assert_allclose(a.weight.data, ta.weight.detach().numpy(), rtol=1e-12)


def test_assigning_an_array_to_a_parameter_raises_like_torch():
    # Replacing a registered Parameter by a plain array would drop it from
    # state_dict() and the optimizer; PyTorch refuses, naming the parameter.
    layer = nn.Linear(3, 2, dtype=np.float64, rng=0)
    with pytest.raises(TypeError, match=r"'weight'.*Parameter or None"):
        layer.weight = np.zeros((2, 3))
    assert list(layer.state_dict()) == ["weight", "bias"]
    layer.weight = nn.Parameter(np.zeros((2, 3)))  # a Parameter is fine
    layer.bias = None  # and so is None, as torch
    assert list(layer.state_dict()) == ["weight"]


def test_sequential_append_takes_modules_only():
    model = nn.Sequential(nn.Linear(2, 2, rng=0))
    model.append(nn.ReLU())
    assert len(model) == 2 and [k for k, _ in model.named_children()] == ["0", "1"]
    # A non-Module (say, a plain function) would be silently skipped by forward.
    with pytest.raises(TypeError, match="Sequential item 2 must be a Module, got function"):
        model.append(lambda x: np.tanh(x))
    assert len(model) == 2


def test_linear_refuses_an_input_of_another_dtype():
    """As torch.nn.Linear (and the conv layers): no silent float64 computation."""
    layer = nn.Linear(3, 2)  # float32 by default
    with pytest.raises(TypeError, match=r"Linear input \(dtype float64\) must have the weight's dtype \(float32\)"):
        layer(np.ones((1, 3)))
    assert layer(np.ones((1, 3), np.float32)).dtype == np.float32

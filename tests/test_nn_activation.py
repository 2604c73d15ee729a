"""The activations against torch.nn: forward and backward, float64 and float32, kinks included."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close
from torch_layers import check_layer

from ndconv import nn

torch = pytest.importorskip("torch")

DTYPES = [np.float64, np.float32]


def _x(shape, dtype, seed=0):
    x = np.random.default_rng(seed).standard_normal(shape) * 3
    # The kinks, where the derivative is a convention: PyTorch's is required.
    x.flat[:6] = [0.0, -3.0, 3.0, -1e-300, 40.0, -40.0]
    return x.astype(dtype)


CASES = [
    ("ReLU", {}), ("LeakyReLU", {}), ("LeakyReLU", {"negative_slope": 0.2}),
    ("ELU", {}), ("ELU", {"alpha": 0.5}), ("GELU", {}), ("GELU", {"approximate": "tanh"}),
    ("SiLU", {}), ("Hardswish", {}), ("Hardsigmoid", {}), ("Sigmoid", {}), ("Tanh", {}),
    ("Softmax", {"dim": 1}), ("Softmax", {"dim": -1}), ("LogSoftmax", {"dim": 1}),
    ("LogSoftmax", {"dim": 0}),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, kw", CASES, ids=[f"{n}-{k}" for n, k in CASES])
def test_activation_matches_torch(name, kw, dtype):
    check_layer(getattr(nn, name)(**kw), getattr(torch.nn, name)(**kw),
                _x((2, 3, 4, 5), dtype), what=name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("num, shape", [(1, (2, 3, 4)), (3, (2, 3, 4)), (3, (4, 3)), (1, (4,))])
def test_prelu_matches_torch(num, shape, dtype):
    tm = torch.nn.PReLU(num, init=0.1)
    with torch.no_grad():
        tm.weight.copy_(torch.linspace(-0.5, 0.7, num))
    m = nn.PReLU(num, init=0.1, dtype=dtype)
    assert list(m.state_dict()) == ["weight"] and m.weight.shape == (num,)
    check_layer(m, tm, _x(shape, dtype), what="PReLU")


def test_softmax_implicit_dim_as_torch():
    x = _x((2, 3, 4), np.float64)
    with pytest.warns(UserWarning):
        ref = torch.nn.Softmax()(torch.tensor(x)).numpy()
    np.testing.assert_allclose(nn.Softmax()(x), ref, rtol=1e-12)


def test_softmax_no_overflow():
    y = nn.Softmax(dim=-1)(np.array([[1000.0, 1000.0, -1000.0]]))
    np.testing.assert_allclose(y, [[0.5, 0.5, 0.0]])


@pytest.mark.parametrize("make, match", [
    (lambda: nn.GELU("exact"), "approximate"),
    (lambda: nn.Softmax(dim=3)(np.ones((2, 2))), "out of range"),
    (lambda: nn.PReLU(3)(np.ones((2, 4, 5), np.float32)), "num_parameters=3"),
])
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_backward_before_forward_and_wrong_grad_shape():
    with pytest.raises(RuntimeError, match="before forward"):
        nn.SiLU().backward(np.ones(3))
    m = nn.ELU()
    m(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        m.backward(np.ones((3, 2)))


def test_gelu_without_scipy_uses_math_erf(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "scipy.special", None)  # import fails
    x = np.linspace(-4, 4, 41)
    ref = torch.nn.GELU()(torch.tensor(x)).numpy()
    assert_close(nn.GELU()(x), ref, np.float64)


ATTRS = [
    ("BatchNorm2d", (4,), dict(eps=1e-3, momentum=None, affine=False),
     ["num_features", "eps", "momentum", "affine", "track_running_stats"]),
    ("GroupNorm", (2, 4), dict(eps=1e-4), ["num_groups", "num_channels", "eps", "affine"]),
    ("LayerNorm", ((3, 4),), dict(elementwise_affine=False),
     ["normalized_shape", "eps", "elementwise_affine"]),
    ("LeakyReLU", (0.2,), {}, ["negative_slope", "inplace"]),
    ("PReLU", (3, 0.1), {}, ["num_parameters", "init"]),
    ("ELU", (0.5,), {}, ["alpha", "inplace"]),
    ("GELU", ("tanh",), {}, ["approximate"]),
    ("Hardswish", (), {}, ["inplace"]),
    ("Softmax", (1,), {}, ["dim"]),
    ("LogSoftmax", (-1,), {}, ["dim"]),
    ("Upsample", (), dict(scale_factor=(2, 3), mode="bilinear", align_corners=True),
     ["size", "scale_factor", "mode", "align_corners", "recompute_scale_factor"]),
    ("Upsample", (7,), {}, ["size", "scale_factor", "mode", "align_corners"]),
    ("ZeroPad2d", ((1, 2, 3, 4),), {}, ["padding"]),
    ("ConstantPad1d", (2, 1.5), {}, ["padding", "value"]),
    ("ReflectionPad3d", (1,), {}, ["padding"]),
    ("AdaptiveAvgPool2d", ((3, None),), {}, ["output_size"]),
    ("AdaptiveAvgPool1d", (1,), {}, ["output_size"]),
]


@pytest.mark.parametrize("name, args, kw, attrs", ATTRS, ids=[a[0] for a in ATTRS])
def test_attributes_as_torch(name, args, kw, attrs):
    """An exporter reads the same attribute names and values as from the torch module."""
    m, tm = getattr(nn, name)(*args, **kw), getattr(torch.nn, name)(*args, **kw)
    for a in attrs:
        assert getattr(m, a) == getattr(tm, a), a
    assert list(m.state_dict()) == list(tm.state_dict())

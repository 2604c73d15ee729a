"""``ndconv.nn`` convolution layers against ``torch.nn``: state dicts, outputs,
gradients (accumulated, reset), PyTorch's default initialisation, repr, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ndconv import nn

torch = pytest.importorskip("torch")

# (our class, torch class, constructor kwargs, input shape)
LAYERS = [
    (nn.Conv1d, torch.nn.Conv1d, dict(in_channels=4, out_channels=6, kernel_size=3, stride=2,
                                       padding=1, groups=2, padding_mode="reflect"), (2, 4, 9)),
    (nn.Conv2d, torch.nn.Conv2d, dict(in_channels=3, out_channels=4, kernel_size=(3, 2),
                                       padding="same", dilation=(1, 2), padding_mode="circular"),
     (2, 3, 6, 7)),
    (nn.Conv2d, torch.nn.Conv2d, dict(in_channels=2, out_channels=2, kernel_size=3, stride=(2, 1),
                                       padding=(1, 0), bias=False, padding_mode="replicate"),
     (2, 5, 6)),  # unbatched
    (nn.Conv3d, torch.nn.Conv3d, dict(in_channels=2, out_channels=4, kernel_size=2, stride=1,
                                       padding="valid", groups=2), (1, 2, 4, 3, 5)),
    (nn.ConvTranspose1d, torch.nn.ConvTranspose1d,
     dict(in_channels=4, out_channels=2, kernel_size=3, stride=2, padding=1, output_padding=1,
          groups=2), (2, 4, 5)),
    (nn.ConvTranspose2d, torch.nn.ConvTranspose2d,
     dict(in_channels=3, out_channels=2, kernel_size=(2, 3), stride=(2, 1), dilation=(1, 2),
          bias=False), (1, 3, 3, 4)),
    (nn.ConvTranspose3d, torch.nn.ConvTranspose3d,
     dict(in_channels=2, out_channels=3, kernel_size=2, stride=2, padding=(0, 1, 0)),
     (2, 3, 3, 2)),  # unbatched
]
IDS = [f"{c.__name__}-{i}" for i, (c, *_rest) in enumerate(LAYERS)]


def _pair(ours_cls, torch_cls, kwargs, dtype=np.float64):
    torch.manual_seed(0)
    ref = torch_cls(**kwargs).double()
    ours = ours_cls(**kwargs, dtype=dtype, rng=1)
    ours.load_state_dict({k: v.detach().numpy() for k, v in ref.state_dict().items()})
    return ours, ref


@pytest.mark.parametrize("ours_cls, torch_cls, kwargs, xs", LAYERS, ids=IDS)
def test_state_dict_keys_and_shapes_equal_torch(ours_cls, torch_cls, kwargs, xs):
    ours, ref = ours_cls(**kwargs), torch_cls(**kwargs)
    mine = ours.state_dict()
    theirs = ref.state_dict()
    assert list(mine) == list(theirs)
    for k in theirs:
        assert mine[k].shape == tuple(theirs[k].shape), k
        assert mine[k].dtype == np.float32  # torch's default dtype too
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in ref.named_parameters()]
    assert ours.num_parameters() == sum(p.numel() for p in ref.parameters())


@pytest.mark.parametrize("ours_cls, torch_cls, kwargs, xs", LAYERS, ids=IDS)
def test_loaded_layer_matches_torch_forward_and_backward(ours_cls, torch_cls, kwargs, xs):
    ours, ref = _pair(ours_cls, torch_cls, kwargs)
    r = np.random.default_rng(2)
    x = r.standard_normal(xs)
    xt = torch.tensor(x, requires_grad=True)
    yt = ref(xt)
    y = ours(x)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    gy = r.standard_normal(y.shape)
    yt.backward(torch.tensor(gy))
    gx = ours.backward(gy)
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    for name, p in ref.named_parameters():
        np.testing.assert_allclose(dict(ours.named_parameters())[name].grad, p.grad.numpy(),
                                   rtol=1e-10, atol=1e-12, err_msg=name)
    # A second backward (same forward) accumulates, as torch's .grad does.
    ours.backward(gy)
    yt2 = ref(xt)
    yt2.backward(torch.tensor(gy))
    for name, p in ref.named_parameters():
        np.testing.assert_allclose(dict(ours.named_parameters())[name].grad, p.grad.numpy(),
                                   rtol=1e-10, atol=1e-12, err_msg=name)
    ours.zero_grad()
    assert all(p.grad is None for p in ours.parameters())
    ours.backward(gy)  # after zero_grad: one backward's worth again
    ref.zero_grad()
    ref(xt).backward(torch.tensor(gy))
    for name, p in ref.named_parameters():
        np.testing.assert_allclose(dict(ours.named_parameters())[name].grad, p.grad.numpy(),
                                   rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("ours_cls, torch_cls, kwargs, xs", LAYERS[:2] + LAYERS[4:5],
                         ids=IDS[:2] + IDS[4:5])
def test_float32_layer_loads_torch_float32_state(ours_cls, torch_cls, kwargs, xs):
    torch.manual_seed(0)
    ref = torch_cls(**kwargs)
    ours = ours_cls(**kwargs)  # float32 by default, like torch
    ours.load_state_dict({k: v.numpy() for k, v in ref.state_dict().items()})
    x = np.random.default_rng(3).standard_normal(xs).astype(np.float32)
    y = ours(x)
    yt = ref(torch.tensor(x)).detach().numpy()
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, yt, rtol=1e-5, atol=1e-5 * np.abs(yt).max())


def test_sequential_of_convs_backward_equals_torch():
    torch.manual_seed(0)
    ref = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, padding=1, padding_mode="reflect"),
        torch.nn.Conv2d(4, 4, 3, stride=2, groups=2),
        torch.nn.ConvTranspose2d(4, 3, 2, stride=2, output_padding=1),
        torch.nn.Conv2d(3, 1, 1, bias=False),
    ).double()
    ours = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, padding_mode="reflect", dtype=np.float64),
        nn.Conv2d(4, 4, 3, stride=2, groups=2, dtype=np.float64),
        nn.ConvTranspose2d(4, 3, 2, stride=2, output_padding=1, dtype=np.float64),
        nn.Conv2d(3, 1, 1, bias=False, dtype=np.float64),
    )
    state = {k: v.detach().numpy() for k, v in ref.state_dict().items()}
    assert list(ours.state_dict()) == list(state)
    ours.load_state_dict(state)
    r = np.random.default_rng(4)
    x = r.standard_normal((2, 2, 9, 9))
    xt = torch.tensor(x, requires_grad=True)
    yt = ref(xt)
    y = ours(x)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    gy = r.standard_normal(y.shape)
    yt.backward(torch.tensor(gy))
    np.testing.assert_allclose(ours.backward(gy), xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    ours_params = dict(ours.named_parameters())
    for name, p in ref.named_parameters():
        np.testing.assert_allclose(ours_params[name].grad, p.grad.numpy(), rtol=1e-10,
                                   atol=1e-12, err_msg=name)


# --------------------------------------------------------------------------
# PyTorch's default initialisation


@pytest.mark.parametrize(
    "cls, args, fan_in",
    [
        (nn.Conv1d, (3, 400, 5), 15),
        (nn.Conv2d, (4, 64, (3, 2), 1, 0, 1, 2), 2 * 6),  # groups=2: C_in // groups
        (nn.Conv3d, (2, 40, 2), 16),
        # transposed weight (C_in, C_out // groups, *K): PyTorch's fan_in is
        # computed from that shape, i.e. (C_out // groups) * prod(K)
        (nn.ConvTranspose2d, (50, 6, 3), 54),
    ],
)
def test_default_init_is_pytorch_kaiming_uniform(cls, args, fan_in):
    layer = cls(*args, rng=0)
    w = layer.weight.data.astype(np.float64).ravel()
    b = layer.bias.data.astype(np.float64)
    bound = 1 / math.sqrt(fan_in)
    assert layer.weight.data.dtype == np.float32
    assert np.abs(w).max() <= bound * (1 + 1e-6)
    assert np.abs(b).max() <= bound * (1 + 1e-6)
    # Uniform on [-bound, bound]: the extremes come close, the spread matches.
    assert w.min() < -0.95 * bound and w.max() > 0.95 * bound
    assert abs(w.mean()) < 0.1 * bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.05 * bound
    # Kolmogorov-Smirnov distance to U(-bound, bound), many samples.
    u = np.sort((w + bound) / (2 * bound))
    cdf = np.arange(1, u.size + 1) / u.size
    ks = max(np.max(cdf - u), np.max(u - (cdf - 1 / u.size)))
    assert ks < 1.95 / math.sqrt(u.size)  # the 0.1% critical value is 1.95/sqrt(n)


def test_default_init_matches_torch_statistics():
    # The bound PyTorch itself uses: compare max|w| over many weights.
    torch.manual_seed(0)
    t = torch.nn.Conv2d(16, 32, 5).weight.detach().numpy()
    o = nn.Conv2d(16, 32, 5, rng=0).weight.data
    np.testing.assert_allclose(np.abs(o).max(), np.abs(t).max(), rtol=1e-2)
    np.testing.assert_allclose(o.std(), t.std(), rtol=5e-2)


def test_rng_makes_init_reproducible():
    a = nn.Conv2d(3, 4, 3, rng=7).weight.data
    b = nn.Conv2d(3, 4, 3, rng=np.random.default_rng(7)).weight.data
    c = nn.Conv2d(3, 4, 3, rng=8).weight.data
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_dtype_float64():
    layer = nn.Conv1d(2, 3, 2, dtype=np.float64)
    assert layer.weight.data.dtype == np.float64 and layer.bias.data.dtype == np.float64
    assert layer(np.ones((1, 2, 4))).dtype == np.float64


# --------------------------------------------------------------------------
# repr and errors


def test_repr_is_readable_like_torch():
    assert repr(nn.Conv2d(1, 6, 5)) == "Conv2d(1, 6, kernel_size=(5, 5), stride=(1, 1))"
    assert repr(nn.Conv2d(16, 33, (3, 5), stride=(2, 1), padding=(4, 2), dilation=(3, 1),
                          groups=1, bias=False, padding_mode="circular")) == (
        "Conv2d(16, 33, kernel_size=(3, 5), stride=(2, 1), padding=(4, 2), dilation=(3, 1), "
        "bias=False, padding_mode='circular')")
    for args, kw in [((4, 4, 3), dict(padding="same", groups=2)),
                     ((4, 4, 3), dict(padding=1, dilation=2)),
                     ((2, 2, (2, 3)), dict(padding=[1, 0], stride=2)),
                     ((4, 2, 3), dict(padding=1, output_padding=0, groups=2))]:
        cls = "ConvTranspose1d" if "output_padding" in kw else f"Conv{len(np.atleast_1d(args[2])) }d"
        ours, ref = getattr(nn, cls)(*args, **kw), getattr(torch.nn, cls)(*args, **kw)
        assert repr(ours) == repr(ref)
        assert ours.padding == ref.padding  # ints become tuples, as in torch
    text = repr(nn.ConvTranspose3d(2, 3, 2, stride=2, output_padding=1))
    assert text.startswith("ConvTranspose3d(2, 3, kernel_size=(2, 2, 2), stride=(2, 2, 2)")
    assert "output_padding=(1, 1, 1)" in text
    seq = repr(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 1, 1)))
    assert seq == ("Sequential(\n  (0): Conv2d(1, 2, kernel_size=(3, 3), stride=(1, 1))\n"
                   "  (1): Conv2d(2, 1, kernel_size=(1, 1), stride=(1, 1))\n)")


@pytest.mark.parametrize(
    "make, exc, pattern",
    [
        (lambda: nn.Conv2d(3, 4, 3, groups=2), ValueError,
         r"`in_channels` \(=3\) must be divisible by `groups` \(=2\)"),
        (lambda: nn.Conv2d(4, 3, 3, groups=2), ValueError,
         r"`out_channels` \(=3\) must be divisible by `groups` \(=2\)"),
        (lambda: nn.Conv2d(-1, 4, 3), ValueError, r"`in_channels` \(=-1\) must be a non-negative int"),
        (lambda: nn.ConvTranspose2d(0, 4, 3), ValueError, r"`in_channels` \(=0\) must be a positive int"),
        (lambda: nn.Conv2d(3, -1, 3), ValueError, r"`out_channels` \(=-1\) must be a positive"),
        (lambda: nn.Conv2d(3, 4, 0), ValueError, r"`kernel_size` \(=0\) must be positive"),
        (lambda: nn.Conv2d(3, 4, (3, 3, 3)), ValueError,
         r"`kernel_size` \(=\(3, 3, 3\)\) must have one entry per spatial dimension \(2\)"),
        (lambda: nn.Conv2d(3, 4, 3, stride=0), ValueError, r"`stride` \(=0\) must be positive"),
        (lambda: nn.Conv2d(3, 4, 3, dilation=(1, 0)), ValueError, r"`dilation` \(=\(1, 0\)\)"),
        (lambda: nn.Conv2d(3, 4, 3, groups=0), ValueError, r"`groups` \(=0\) must be a positive"),
        (lambda: nn.Conv2d(3, 4, 3, padding=-1), ValueError, r"`padding` \(=-1\) must be non-negative"),
        (lambda: nn.Conv2d(3, 4, 3, padding="foo"), ValueError, r"`padding` \(='foo'\)"),
        (lambda: nn.Conv2d(3, 4, 3, padding="same", stride=2), ValueError,
         r"`padding`='same' is not supported with `stride`"),
        (lambda: nn.Conv2d(3, 4, 3, padding_mode="foo"), ValueError, r"`padding_mode` \(='foo'\)"),
        (lambda: nn.Conv2d(3, 4, 3, dtype=np.int32), TypeError, r"`dtype` .* must be float16, bfloat16, float32 or float64"),
        (lambda: nn.Conv2d(3, 4, 3, rng="x"), TypeError, r"`rng` must be None, an int seed"),
        (lambda: nn.Conv2d(3.0, 4, 3), TypeError, r"`in_channels` must be an int"),
        (lambda: nn.ConvTranspose2d(3, 4, 3, padding_mode="reflect"), ValueError,
         r"`padding_mode` \(='reflect'\) must be 'zeros' for ConvTranspose2d"),
        (lambda: nn.ConvTranspose2d(3, 4, 3, padding="same"), TypeError,
         r"`padding` must be an int or a tuple of ints, got 'same'"),
        (lambda: nn.ConvTranspose2d(3, 4, 3, output_padding=-1), ValueError,
         r"`output_padding` \(=-1\) must be >= 0"),
    ],
)
def test_constructor_errors(make, exc, pattern):
    with pytest.raises(exc, match=pattern):
        make()


def test_forward_errors():
    layer = nn.Conv2d(3, 4, 3)
    with pytest.raises(ValueError, match=r"Conv2d expects input of shape \(B, 3, \*S\) or \(3, \*S\).*got \(1, 2, 5, 5\)"):
        layer(np.ones((1, 2, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"Conv2d expects input.*got \(5, 5\)"):
        layer(np.ones((5, 5), np.float32))
    with pytest.raises(TypeError, match=r"`x` \(dtype float64\) and `weight` \(dtype float32\)"):
        layer(np.ones((1, 3, 5, 5)))
    with pytest.raises(ValueError, match=r"larger than the padded input"):
        layer(np.ones((1, 3, 2, 2), np.float32))
    with pytest.raises(RuntimeError, match=r"backward called before forward"):
        nn.Conv2d(3, 4, 3).backward(np.ones((1, 4, 3, 3), np.float32))
    with pytest.raises(ValueError, match=r"`grad_out` must have the output's shape \(1, 4, 3, 3\)"):
        layer(np.ones((1, 3, 5, 5), np.float32))
        layer.backward(np.ones((1, 4, 2, 2), np.float32))
    with pytest.raises(ValueError, match=r"`output_padding` \(=\(1, 1\)\) must be smaller"):
        nn.ConvTranspose2d(3, 4, 3, output_padding=1)(np.ones((1, 3, 4, 4), np.float32))


def test_load_state_dict_errors():
    layer = nn.Conv2d(3, 4, 3)
    with pytest.raises(KeyError, match=r"missing keys \['bias'\]"):
        layer.load_state_dict({"weight": np.zeros((4, 3, 3, 3))})
    with pytest.raises(KeyError, match=r"unexpected keys \['extra'\]"):
        layer.load_state_dict({**layer.state_dict(), "extra": np.zeros(1)})
    with pytest.raises(ValueError, match=r"key 'weight' has shape \(4, 3, 3\), the parameter has shape \(4, 3, 3, 3\)"):
        layer.load_state_dict({"weight": np.zeros((4, 3, 3)), "bias": np.zeros(4)})
    # state_dict returns copies: changing them does not change the layer
    sd = layer.state_dict()
    sd["weight"][...] = 7.0
    assert not (layer.weight.data == 7.0).any()


def test_nd_base_class_in_4d():
    """The one N-d class serves N = 4 too (torch has no Conv4d: the reference is NumPy)."""
    from reference import conv_ref  # tests/ is on the path (conftest.py)

    layer = nn.Conv(4, 2, 4, kernel_size=(2, 1, 2, 2), stride=(1, 2, 1, 1), padding=1,
                    padding_mode="circular", dtype=np.float64, rng=0)
    assert layer.weight.data.shape == (4, 2, 2, 1, 2, 2)
    x = np.random.default_rng(0).standard_normal((2, 2, 3, 4, 3, 3))
    y = layer(x)
    ref = conv_ref(x, layer.weight.data, layer.bias.data, (1, 2, 1, 1), 1, 1, 1, "circular")
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)
    # backward: <grad_x, dx> equals the change of <gy, y> (linear in x)
    gy = np.random.default_rng(1).standard_normal(y.shape)
    gx = layer.backward(gy)
    dx = np.random.default_rng(2).standard_normal(x.shape)
    np.testing.assert_allclose(np.vdot(gx, dx), np.vdot(gy, layer(x + dx) - y), rtol=1e-10)
    np.testing.assert_allclose(layer.bias.grad, gy.sum(axis=(0, 2, 3, 4, 5)), rtol=1e-12)


def test_fixed_ndim_layers_keep_their_real_signatures():
    # help(), inspect and tab completion show the torch-style arguments, not (*args, **kwargs).
    import inspect

    import ndconv.nn as nn

    conv = list(inspect.signature(nn.Conv2d).parameters)
    assert conv[:4] == ["in_channels", "out_channels", "kernel_size", "stride"]
    assert "num_spatial_dims" not in conv
    tconv = list(inspect.signature(nn.ConvTranspose1d).parameters)
    assert tconv[:6] == ["in_channels", "out_channels", "kernel_size", "stride", "padding",
                         "output_padding"]
    assert list(inspect.signature(nn.MaxPool3d).parameters)[0] == "kernel_size"
    # the signature is the one the constructor really binds
    layer = nn.Conv3d(**{"in_channels": 2, "out_channels": 4, "kernel_size": 3})
    assert layer.weight.data.shape == (4, 2, 3, 3, 3)

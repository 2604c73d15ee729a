"""Shapes peers accept: empty batches and channels, one-element argument tuples.

Ported from PyTorch's own tests (``test/nn/test_convolution.py``:
``test_conv_empty_channel``, ``test_group_conv_empty``, the ``*_zero_batch``
cases of ``test_nn.py``) and compared with torch (and JAX where torch's answer
is a quirk, see ``test_in_channels_zero_is_an_empty_sum``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import ndconv
from ndconv import nn, plan, pooling


def _t(a, grad=False):
    return torch.tensor(np.asarray(a, np.float64), requires_grad=grad)


# --------------------------------------------------------------------------
# empty batch: empty outputs, empty input gradients, zero weight gradients


ZERO_BATCH = [
    # (x shape, weight shape, kwargs)
    ((0, 3, 7), (4, 3, 3), dict(stride=2)),
    ((0, 3, 6, 6), (4, 3, 3, 3), dict(padding=1, dilation=2)),
    ((0, 4, 5, 5), (4, 1, 3, 3), dict(groups=4, stride=2, padding=1)),  # depthwise
    ((0, 4, 5, 5), (6, 2, 2, 2), dict(groups=2)),
    ((0, 2, 4, 4, 4), (3, 2, 3, 3, 3), dict(padding="same")),
]


@pytest.mark.parametrize("xs, ws, kw", ZERO_BATCH)
def test_conv_zero_batch_matches_torch(xs, ws, kw):
    rng = np.random.default_rng(0)
    x = np.zeros(xs)
    w = rng.standard_normal(ws)
    b = rng.standard_normal(ws[0])
    n = len(ws) - 2
    xt, wt, bt = _t(x, True), _t(w, True), _t(b, True)
    yt = getattr(TF, f"conv{n}d")(xt, wt, bt, **kw)
    y = ndconv.conv(x, w, b, **kw)
    assert y.shape == tuple(yt.shape) and y.dtype == x.dtype
    gy = np.zeros(y.shape)
    yt.backward(torch.tensor(gy))
    gx, gw, gb = ndconv.conv_backward(gy, x, w, **kw)
    assert gx.shape == tuple(xt.grad.shape)
    np.testing.assert_array_equal(gw, wt.grad.numpy())  # zeros, shape of w
    np.testing.assert_array_equal(gb, bt.grad.numpy())


@pytest.mark.parametrize("method", list(ndconv.algorithms.ALGORITHMS))
def test_every_method_takes_an_empty_batch(method):
    x, w = np.zeros((0, 1, 6, 6)), np.ones((1, 1, 3, 3))
    ok, _ = ndconv.algorithms.ALGORITHMS[method].supports(
        ndconv.functional._conv_spec(x, w, 1, 0, 1, 1, "zeros"))
    if not ok:
        pytest.skip(f"{method} does not take this convolution at all")
    assert ndconv.conv(x, w, method=method).shape == (0, 1, 4, 4)


def test_conv_transpose_zero_batch_matches_torch():
    rng = np.random.default_rng(1)
    x = np.zeros((0, 4, 3, 3))
    w = rng.standard_normal((4, 3, 3, 3))  # groups=2: (C_in, C_out // 2, k, k)
    b = rng.standard_normal(6)
    kw = dict(stride=2, padding=1, output_padding=1, groups=2)
    xt, wt, bt = _t(x, True), _t(w, True), _t(b, True)
    yt = TF.conv_transpose2d(xt, wt, bt, **kw)
    y = ndconv.conv_transpose(x, w, b, **kw)
    assert y.shape == tuple(yt.shape) == (0, 6, 6, 6)
    yt.backward(torch.zeros(yt.shape, dtype=torch.float64))
    gx, gw, gb = ndconv.conv_transpose_backward(np.zeros(y.shape), x, w, **kw)
    assert gx.shape == tuple(xt.grad.shape)
    np.testing.assert_array_equal(gw, wt.grad.numpy())
    np.testing.assert_array_equal(gb, bt.grad.numpy())


def test_group_conv_empty():
    # PyTorch's test_group_conv_empty: a depthwise layer on an empty batch.
    m = nn.Conv2d(4, 4, stride=2, kernel_size=3, padding=1, groups=4, rng=0)
    t = torch.nn.Conv2d(4, 4, stride=2, kernel_size=3, padding=1, groups=4)
    t.load_state_dict({k: torch.tensor(v) for k, v in m.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((0, 4, 4, 4)).astype(np.float32)
    y = m(x)
    xt = torch.tensor(x, requires_grad=True)
    yt = t(xt)
    assert y.shape == tuple(yt.shape)
    # _test_module_empty_input: backward of ones gives zero gradients
    yt.backward(torch.ones_like(yt))
    gx = m.backward(np.ones_like(y))
    assert gx.shape == tuple(xt.grad.shape)
    np.testing.assert_array_equal(m.weight.grad, t.weight.grad.numpy())
    np.testing.assert_array_equal(m.bias.grad, t.bias.grad.numpy())


@pytest.mark.parametrize("layer", [
    lambda: nn.ConvTranspose2d(3, 2, 3, stride=2, rng=0),
    lambda: nn.Conv3d(2, 3, 2, padding=1, rng=0),
    lambda: nn.Conv1d(3, 6, 3, groups=3, padding_mode="circular", padding=1, rng=0),
])
def test_layers_zero_batch(layer):
    m = layer()
    n = len(m.kernel_size)
    x = np.zeros((0, m.in_channels) + (5,) * n, np.float32)
    y = m(x)
    assert y.shape[0] == 0 and y.shape[1] == m.out_channels
    gx = m.backward(np.zeros_like(y))
    assert gx.shape == x.shape
    assert not m.weight.grad.any() and not m.bias.grad.any()


# --------------------------------------------------------------------------
# in_channels = 0


def test_in_channels_zero_is_an_empty_sum():
    """``test_conv_empty_channel``: a layer with no input channels runs.

    PyTorch returns a ``(B, 0, *S_out)`` output there (its test passes
    ``check_size=False``); the sum over no channels is 0, so ndconv returns
    the bias on ``(B, C_out, *S_out)``, as JAX's ``conv_general_dilated``.
    """
    import jax

    m = nn.Conv1d(0, 8, 2, stride=2, rng=0)
    x = np.random.default_rng(0).standard_normal((2, 0, 15)).astype(np.float32)
    y = m(x)
    ref = jax.lax.conv_general_dilated(x, m.weight.data, (2,), "VALID")
    assert y.shape == ref.shape == (2, 8, 7)
    np.testing.assert_array_equal(y, np.asarray(ref) + m.bias.data[None, :, None])
    gy = np.ones_like(y)
    gx = m.backward(gy)
    assert gx.shape == x.shape and m.weight.grad.shape == (8, 0, 2)
    np.testing.assert_array_equal(m.bias.grad, gy.sum(axis=(0, 2)))
    # the plan and the shape helper agree with what ran
    assert plan.layer_rows(m, (0, 15))[0].out_shape == y.shape[1:]
    assert ndconv.conv_output_shape(x.shape, m.weight.shape, stride=2) == y.shape[2:]
    # torch refuses an empty spatial dim; so does ndconv, naming it
    with pytest.raises(RuntimeError):
        TF.conv1d(torch.randn(2, 1, 0), torch.randn(8, 1, 2))
    with pytest.raises(ValueError, match=r"`x` \(shape \(2, 1, 0\)\) is empty in dim 2"):
        nn.Conv1d(1, 8, 2)(np.zeros((2, 1, 0), np.float32))


def test_in_channels_zero_grouped_and_unbatched():
    w = np.ones((4, 0, 3, 3))
    assert ndconv.conv(np.zeros((2, 0, 5, 5)), w, groups=2).shape == (2, 4, 3, 3)
    y = ndconv.conv(np.zeros((0, 5, 5)), w, np.arange(4.0))
    np.testing.assert_array_equal(y, np.broadcast_to(np.arange(4.0)[:, None, None], (4, 3, 3)))
    gx, gw, gb = ndconv.conv_backward(np.ones((4, 3, 3)), np.zeros((0, 5, 5)), w)
    assert gx.shape == (0, 5, 5) and gw.shape == (4, 0, 3, 3)
    np.testing.assert_array_equal(gb, np.full(4, 9.0))


# --------------------------------------------------------------------------
# what torch refuses, ndconv refuses with a ValueError naming the array


REFUSED = [
    ("spatial 0", lambda: TF.conv2d(torch.randn(2, 1, 0, 5), torch.randn(4, 1, 1, 1), padding=1),
     lambda: ndconv.conv(np.zeros((2, 1, 0, 5)), np.ones((4, 1, 1, 1)), padding=1),
     r"`x` \(shape \(2, 1, 0, 5\)\) is empty in dim 2"),
    ("no output channels", lambda: TF.conv2d(torch.randn(2, 3, 5, 5), torch.randn(0, 3, 3, 3)),
     lambda: ndconv.conv(np.zeros((2, 3, 5, 5)), np.ones((0, 3, 3, 3))),
     r"`weight` \(shape \(0, 3, 3, 3\)\) is empty in dim 0"),
    ("empty kernel", lambda: TF.conv2d(torch.randn(2, 3, 5, 5), torch.randn(4, 3, 0, 3)),
     lambda: ndconv.conv(np.zeros((2, 3, 5, 5)), np.ones((4, 3, 0, 3))),
     r"`weight` \(shape \(4, 3, 0, 3\)\) is empty in dim 2"),
    ("transposed, no input channels",
     lambda: TF.conv_transpose2d(torch.randn(2, 0, 5, 5), torch.randn(0, 4, 3, 3)),
     lambda: ndconv.conv_transpose(np.zeros((2, 0, 5, 5)), np.ones((0, 4, 3, 3))),
     r"`weight` \(shape \(0, 4, 3, 3\)\) is empty in dim 0"),
    ("transposed, no output channels",
     lambda: TF.conv_transpose2d(torch.randn(2, 3, 5, 5), torch.randn(3, 0, 3, 3)),
     lambda: ndconv.conv_transpose(np.zeros((2, 3, 5, 5)), np.ones((3, 0, 3, 3))),
     r"`weight` \(shape \(3, 0, 3, 3\)\) is empty in dim 1"),
    ("pool, no channels", lambda: TF.max_pool2d(torch.randn(2, 0, 4, 4), 2),
     lambda: pooling.max_pool(np.zeros((2, 0, 4, 4)), (2, 2)),
     r"`x` \(shape \(2, 0, 4, 4\)\) is empty in dim 1: only the batch dim"),
    ("avg pool, unbatched empty", lambda: TF.avg_pool2d(torch.randn(0, 4, 4), 2),
     lambda: pooling.avg_pool(np.zeros((0, 4, 4)), (2, 2)),
     r"`x` \(shape \(0, 4, 4\)\) is empty in dim 0"),
]


@pytest.mark.parametrize("name, torch_call, call, pattern", REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_where_torch_refuses(name, torch_call, call, pattern):
    with pytest.raises(RuntimeError):
        torch_call()
    with pytest.raises(ValueError, match=pattern):
        call()


# --------------------------------------------------------------------------
# pooling on an empty batch


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pooling_zero_batch_matches_torch(kind):
    x = np.zeros((0, 3, 6, 6))
    kw = dict(stride=2, padding=1)
    xt = _t(x, True)
    yt = getattr(TF, f"{kind}_pool2d")(xt, 3, **kw)
    y = getattr(pooling, f"{kind}_pool")(x, (3, 3), **kw)
    assert y.shape == tuple(yt.shape)
    yt.backward(torch.zeros_like(yt))
    gx = getattr(pooling, f"{kind}_pool_backward")(np.zeros(y.shape), x, (3, 3), **kw)
    assert gx.shape == tuple(xt.grad.shape)
    m = (nn.MaxPool2d if kind == "max" else nn.AvgPool2d)(3, **kw)
    assert m.backward(np.zeros_like(m(x))).shape == x.shape


# --------------------------------------------------------------------------
# one-element tuples broadcast (F.conv2d's expand_param_if_needed)


@pytest.mark.parametrize("kw", [
    dict(stride=(2,)), dict(padding=(1,)), dict(dilation=(2,)),
    dict(stride=[2], padding=[1], dilation=[2]),
])
def test_one_element_tuples_broadcast_as_torch(kw):
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((2, 3, 9, 8)), rng.standard_normal((4, 3, 3, 3))
    ref = TF.conv2d(_t(x), _t(w), **{k: tuple(v) for k, v in kw.items()}).numpy()
    y = ndconv.conv(x, w, **kw)
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)
    assert ndconv.conv_output_shape(x.shape, w.shape, **kw) == y.shape[2:]
    row = plan.conv(x.shape[1:], 4, 3, **kw)
    assert tuple(row.out_shape[1:]) == y.shape[2:]


def test_one_element_tuples_in_transpose_pooling_and_layers():
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((1, 2, 5, 6)), rng.standard_normal((2, 3, 3, 3))
    ref = TF.conv_transpose2d(_t(x), _t(w), stride=(2,), padding=(1,), output_padding=(1,)).numpy()
    y = ndconv.conv_transpose(x, w, stride=(2,), padding=(1,), output_padding=(1,))
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)
    ref = TF.max_pool2d(_t(x), (2,), stride=(2,)).numpy()
    np.testing.assert_array_equal(pooling.max_pool(x, (2,), stride=(2,), ndim=2), ref)
    m = nn.Conv2d(2, 3, 3, stride=(2,), padding=(1,), dilation=(1,), rng=0)
    assert m.stride == (2, 2) and m.padding == (1, 1)
    assert m(x.astype(np.float32)).shape == (1, 3, 3, 3)


def test_wrong_length_tuple_still_refused():
    with pytest.raises(ValueError, match=r"`stride` \(=\(1, 2\)\) must have one entry per "
                                         r"spatial dimension \(3\), got 2 \(or a single entry"):
        ndconv.conv(np.ones((1, 1, 4, 4, 4)), np.ones((1, 1, 2, 2, 2)), stride=(1, 2))


# --------------------------------------------------------------------------
# absurd padding is refused by name, before any size is used


@pytest.mark.parametrize("call", [
    lambda p: ndconv.conv(np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3)), padding=p),
    lambda p: ndconv.conv_backward(np.ones((1, 1, 2, 2)), np.ones((1, 1, 4, 4)),
                                   np.ones((1, 1, 3, 3)), padding=p),
    lambda p: nn.Conv2d(1, 1, 3, padding=p)(np.ones((1, 1, 4, 4), np.float32)),
    lambda p: ndconv.choose_method(np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3)), padding=p),
    lambda p: ndconv.conv(np.ones((1, 1, 4)), np.ones((1, 1, 3)), padding=((0, p),)),
])
def test_huge_padding_names_padding(call):
    with pytest.raises(ValueError, match=r"`padding` .* is too large: the padded input would "
                                         r"have spatial shape"):
        call(2**62)


def test_huge_padding_in_the_formulas_is_hypothetical():
    # plan and conv_output_shape answer for sizes no array holds (the lecture's
    # petabyte layers); they agree with the formula, and conv refuses to compute.
    p = 2**62
    assert ndconv.conv_output_shape((1, 1, 4, 4), (1, 1, 3, 3), padding=p) == (2 * p + 2,) * 2
    assert plan.conv((1, 4, 4), 1, 3, padding=p).out_shape == (1, 2 * p + 2, 2 * p + 2)


def test_conv_output_shape_with_empty_batch_and_channels():
    assert ndconv.conv_output_shape((0, 3, 5, 5), (4, 3, 3, 3)) == (3, 3)
    assert ndconv.conv_output_shape((2, 0, 5, 5), (4, 0, 3, 3), stride=(2,)) == (2, 2)
    with pytest.raises(ValueError, match=r"`input_shape` \(shape \(2, 3, 0, 5\)\) is empty in dim 2"):
        ndconv.conv_output_shape((2, 3, 0, 5), (4, 3, 3, 3))

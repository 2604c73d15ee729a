"""Calls that repeat (a layer's every step) skip validation and the chooser: the
remembered part is never stale and never changes an answer or an error.

What is remembered is keyed by shapes, dtypes and arguments only (never by
values): ``ndconv.functional``'s and ``ndconv.pooling``'s memos, the
``Prepared`` decision of ``ndconv.algorithms`` and the gemm method's gather
index. Every result here is compared with PyTorch, or with the direct formula
of ``tests/reference.py``, after the memo was filled by an earlier call.
"""

from __future__ import annotations

import numpy as np
import pytest

import ndconv
from ndconv.core import functional as F
from ndconv import nn, plan
from ndconv.core import pooling as P
from ndconv.core.algorithms import gemm
from ndconv.losses import CrossEntropyLoss
from ndconv.models import digits_cnn
from ndconv.optim import SGD, Adam

from reference import conv_ref
from test_concurrency import _run_threads

torch = pytest.importorskip("torch")


def _torch_twin(model):
    t = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1, bias=model[0].bias is not None), torch.nn.ReLU(),
        torch.nn.MaxPool2d(2), torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(128, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10),
    ).double()
    t.load_state_dict({k: torch.tensor(v) for k, v in model.state_dict().items()})
    return t


def _check_same(model, tmodel, x):
    np.testing.assert_allclose(model(x), tmodel(torch.tensor(x)).detach().numpy(),
                               rtol=1e-10, atol=1e-12)


# -- the remembered decisions are never stale ---------------------------------

def test_training_steps_match_torch_step_by_step():
    # In-place optimizer updates between calls of the same shapes: every
    # step's loss and every parameter after it as torch's (Adam, float64).
    rng = np.random.default_rng(0)
    model = digits_cnn(rng=0, dtype=np.float64)
    tmodel = _torch_twin(model)
    opt, topt = Adam(model.parameters(), lr=1e-2), torch.optim.Adam(tmodel.parameters(), lr=1e-2)
    loss, tloss = CrossEntropyLoss(), torch.nn.CrossEntropyLoss()
    for step in range(6):
        bs = 5 if step != 3 else 2  # a different batch size in between
        x = rng.standard_normal((bs, 1, 8, 8))
        y = rng.integers(0, 10, bs)
        v = loss(model(x), y)
        opt.zero_grad()
        model.backward(loss.backward())
        opt.step()
        topt.zero_grad()
        tv = tloss(tmodel(torch.tensor(x)), torch.tensor(y))
        tv.backward()
        topt.step()
        assert v == pytest.approx(tv.item(), rel=1e-10)
    for (k, a), (tk, b) in zip(model.state_dict().items(), tmodel.state_dict().items()):
        assert k == tk
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-8, atol=1e-10)


def test_load_state_dict_and_assignments_take_effect():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 1, 8, 8))
    model = digits_cnn(rng=0, dtype=np.float64).eval()
    tmodel = _torch_twin(model)
    _check_same(model, tmodel, x)  # fills the memos
    other = digits_cnn(rng=7, dtype=np.float64)
    model.load_state_dict(other.state_dict())
    _check_same(model, _torch_twin(other), x)
    # A new Parameter, new .data, in-place edits of .data: each seen at once.
    conv = model[0]
    conv.weight = nn.Parameter(rng.standard_normal((16, 1, 3, 3)))
    _check_same(model, _torch_twin(model), x)
    conv.weight.data = rng.standard_normal((16, 1, 3, 3))
    conv.bias.data[:] = 5.0
    model[3].weight.data *= -1
    _check_same(model, _torch_twin(model), x)
    conv.bias = None
    _check_same(model, _torch_twin(model), x)


def test_dtype_change_is_seen_and_refused_as_before():
    rng = np.random.default_rng(2)
    layer = nn.Conv2d(2, 3, 3, padding=1)
    x32 = rng.standard_normal((2, 2, 5, 5)).astype(np.float32)
    layer(x32)
    layer.weight.data = layer.weight.data.astype(np.float64)
    layer.bias.data = layer.bias.data.astype(np.float64)
    with pytest.raises(TypeError, match="same dtype"):
        layer(x32)  # float32 input, float64 weight: refused, memo or not
    x64 = x32.astype(np.float64)
    ref = torch.nn.functional.conv2d(torch.tensor(x64), torch.tensor(layer.weight.data),
                                     torch.tensor(layer.bias.data), padding=1).numpy()
    for _ in range(2):
        y = layer(x64)
        assert y.dtype == np.float64
        np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)


def test_layer_arguments_changed_after_construction_are_used():
    rng = np.random.default_rng(3)
    layer = nn.Conv2d(2, 2, 3, dtype=np.float64)
    x = rng.standard_normal((1, 2, 7, 7))
    layer(x)
    layer.stride, layer.padding = (2, 2), (1, 1)
    ref = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(layer.weight.data),
                                     torch.tensor(layer.bias.data), stride=2, padding=1)
    np.testing.assert_allclose(layer(x), ref.numpy(), rtol=1e-12)


# -- the same errors, memo or not ---------------------------------------------

def _conv_args():
    rng = np.random.default_rng(4)
    return (rng.standard_normal((2, 4, 6, 6)).astype(np.float32),
            rng.standard_normal((4, 2, 3, 3)).astype(np.float32),
            np.zeros(4, np.float32))


@pytest.mark.parametrize("bad, exc, match", [
    (dict(dilation=True), TypeError, "dilation"),
    (dict(groups=2.0), TypeError, "groups"),
    (dict(groups=np.float64(2)), TypeError, "groups"),
    (dict(stride=(True, 1)), TypeError, "stride"),
    (dict(padding=1.0), TypeError, "padding"),
    (dict(groups=4), ValueError, "groups"),
    (dict(padding_mode="mirror"), ValueError, "padding_mode"),
    (dict(method="fastest"), ValueError, "method"),
])
def test_errors_after_a_good_call_of_the_same_shapes(bad, exc, match):
    x, w, b = _conv_args()
    # (each bad value equals a good one, as Python compares: True == 1, 2.0 == 2)
    good = dict(stride=(1, 1), padding=1, dilation=1, groups=2, padding_mode="zeros",
                method="auto")
    F.conv(x, w, b, **{k: v for k, v in good.items() if k != "method"}, method="auto")
    F.conv(x, w, b, **{k: v for k, v in good.items() if k != "method"}, method="auto")
    args = {**good, **bad}
    method = args.pop("method")
    with pytest.raises(exc, match=match):
        F.conv(x, w, b, **args, method=method)


def test_array_errors_after_a_good_call():
    x, w, b = _conv_args()
    for _ in range(2):
        F.conv(x, w, b, padding=1, groups=2)
    with pytest.raises(TypeError, match="bias"):
        F.conv(x, w, b.astype(np.float64), padding=1, groups=2)
    with pytest.raises(ValueError, match="bias"):
        F.conv(x, w, np.zeros(3, np.float32), padding=1, groups=2)
    gy = np.ones((2, 4, 6, 6), np.float32)
    for _ in range(2):
        F.conv_backward(gy, x, w, padding=1, groups=2)
    with pytest.raises(ValueError, match="grad_out"):
        F.conv_backward(gy[:, :, :5], x, w, padding=1, groups=2)
    with pytest.raises(TypeError, match="grad_out"):
        F.conv_backward(gy.astype(np.float64), x, w, padding=1, groups=2)


def test_memory_limit_set_after_the_memo_is_checked():
    x, w, b = _conv_args()
    for _ in range(2):
        F.conv(x, w, b, padding=1, groups=2)
        P.max_pool(x, (2, 2))
    with plan.memory_limit("100B"):
        with pytest.raises(plan.MemoryLimitError):
            F.conv(x, w, b, padding=1, groups=2)
        with pytest.raises(plan.MemoryLimitError):
            P.max_pool(x, (2, 2))


# -- what depends on values is decided per call ---------------------------------

def test_nan_in_a_later_call_stays_in_its_windows():
    # A 41x41 kernel on 128x128: 'auto' picks FFT on finite arrays; with a NaN
    # it must not (FFT spreads it everywhere), call after call. (21x21 on
    # 64x64 is the compiled direct sum's now.)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 1, 128, 128))
    w = rng.standard_normal((1, 1, 41, 41))
    assert F.choose_method(x, w)[0] == "fft"
    for _ in range(2):
        np.testing.assert_allclose(F.conv(x, w), conv_ref(x, w), rtol=1e-9, atol=1e-9)
    x[0, 0, 3, 3] = np.nan
    y = F.conv(x, w)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(conv_ref(x, w)))
    assert np.isnan(y).sum() < y.size


# -- the gather path of gemm (small layers) against torch and the tile path -------

CASES = [  # (x shape, weight shape, conv kwargs)
    ((1, 1, 8, 8), (16, 1, 3, 3), dict(padding=1)),
    ((3, 4, 7, 6), (6, 2, 3, 2), dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2)),
    ((2, 3, 9), (4, 3, 3), dict(padding=2, padding_mode="reflect")),
    ((2, 2, 5, 6), (2, 2, 2, 3), dict(padding="same", padding_mode="circular")),
    ((1, 2, 4, 4, 5), (3, 2, 2, 2, 3), dict(padding=1, padding_mode="replicate", stride=2)),
    ((4, 6), (2, 4, 1), {}),  # unbatched 1-D
]


@pytest.mark.parametrize("xs, ws, kw", CASES)
def test_gemm_gather_against_torch_forward_and_backward(xs, ws, kw):
    rng = np.random.default_rng(6)
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    b = rng.standard_normal(ws[0])
    n = len(ws) - 2
    tfn = getattr(torch.nn.functional, f"conv{n}d")
    mode = kw.get("padding_mode", "zeros")
    tkw = {k: v for k, v in kw.items() if k != "padding_mode"}
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    if mode != "zeros":
        pad = tkw.pop("padding")
        if pad == "same":
            pairs = [((k - 1) // 2, k - 1 - (k - 1) // 2) for k in ws[2:]]
        else:
            pairs = [(pad, pad)] * n
        flat = [v for lo_hi in reversed(pairs) for v in lo_hi]
        tm = {"reflect": "reflect", "circular": "circular", "replicate": "replicate"}[mode]
        xin = xt if xt.ndim == n + 2 else xt[None]
        yt = tfn(torch.nn.functional.pad(xin, flat, mode=tm), wt, torch.tensor(b), **tkw)
        yt = yt if xt.ndim == n + 2 else yt[0]
    else:
        yt = tfn(xt, wt, torch.tensor(b), **tkw)
    gy = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(gy))
    for method in ("auto", "gemm"):
        for _ in range(2):  # the second call runs from the memo
            y = F.conv(x, w, b, **kw, method=method)
            np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-10)
    for _ in range(2):
        gx, gw, _ = F.conv_backward(gy, x, w, **kw)
        np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(gw, wt.grad.numpy(), rtol=1e-9, atol=1e-10)


def test_gemm_gather_equals_tile_path_on_random_specs(monkeypatch):
    from ndconv.core.algorithms.spec import CorrSpec

    rng = np.random.default_rng(7)
    tested = 0
    for _ in range(120):
        n = int(rng.integers(1, 4))
        mode = str(rng.choice(["zeros", "reflect", "replicate", "circular"]))
        S = tuple(int(v) for v in rng.integers(3, 7, n))
        K = tuple(int(v) for v in rng.integers(1, 4, n))
        lo_min = -1 if mode == "zeros" else 0
        pairs = tuple((int(rng.integers(lo_min, 3)), int(rng.integers(lo_min, 3))) for _ in S)
        if mode == "reflect":
            pairs = tuple((min(a, s - 1), min(c, s - 1)) for (a, c), s in zip(pairs, S))
        lhs = tuple(int(v) for v in rng.integers(1, 3, n)) if mode == "zeros" else (1,) * n
        g = int(rng.choice([1, 2]))
        spec = CorrSpec(batch=int(rng.integers(1, 3)), in_channels=2 * g, out_channels=g,
                        groups=g, in_spatial=S, kernel_size=K,
                        stride=tuple(int(v) for v in rng.integers(1, 3, n)),
                        dilation=tuple(int(v) for v in rng.integers(1, 3, n)), pairs=pairs,
                        lhs_dilation=lhs, padding_mode=mode, dtype=np.dtype(np.float64))
        try:
            if min(spec.padded_spatial) < 1 or min(spec.out_spatial) < 1:
                continue
        except ValueError:  # the kernel is larger than the padded input
            continue
        x = rng.standard_normal((spec.batch, spec.in_channels, *S))
        w = rng.standard_normal((spec.out_channels, 2, *K))
        assert gemm._gather_index(spec) is not None
        got = gemm.run(x, w, spec)
        with monkeypatch.context() as m:
            m.setattr(gemm, "GATHER_ENTRIES", -1)
            gemm._gather_index.cache_clear()
            want = gemm.run(x, w, spec)
        gemm._gather_index.cache_clear()
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
        tested += 1
    assert tested > 60


# -- max pooling from the memo ---------------------------------------------------

@pytest.mark.parametrize("shape, kw", [
    ((2, 3, 8, 8), dict(kernel_size=2)),  # windows tile the input
    ((2, 3, 7, 8), dict(kernel_size=3, stride=2, padding=1)),
    ((3, 9), dict(kernel_size=2, ceil_mode=True)),  # unbatched 1-D
    ((1, 2, 4, 4, 4), dict(kernel_size=2, dilation=1)),
])
def test_max_pool_from_the_memo_against_torch(shape, kw):
    rng = np.random.default_rng(8)
    n = len(shape) - (1 if len(shape) == 2 else 2)
    tfn = getattr(torch.nn.functional, f"max_pool{n}d")
    for case in range(3):
        x = rng.standard_normal(shape)
        if case == 1:
            x = np.maximum(x, 0)  # ties: the first maximum wins
        if case == 2:
            x.flat[::7] = np.nan  # NaN windows: the last NaN wins
        k = kw["kernel_size"]
        args = dict(kernel_size=(k,) * n, stride=kw.get("stride"), padding=kw.get("padding", 0),
                    dilation=kw.get("dilation", 1), ceil_mode=kw.get("ceil_mode", False))
        xt = torch.tensor(x, requires_grad=True)
        yt = tfn(xt, **{**args, "stride": args["stride"] or args["kernel_size"]})
        gy = rng.standard_normal(tuple(yt.shape))
        yt.backward(torch.tensor(gy))
        for _ in range(2):
            y = P.max_pool(x, **args)
            np.testing.assert_array_equal(y, yt.detach().numpy())
            for out in (None, y):
                gx = P.max_pool_backward(gy, x, **args, out=out)
                # (overlapping windows add shares in another order than torch)
                np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-14, atol=0)


def test_max_pool_errors_after_a_good_call():
    x = np.zeros((2, 3, 8, 8), np.float32)
    for _ in range(2):
        y = P.max_pool(x, (2, 2))
        P.max_pool_backward(np.ones_like(y), x, (2, 2), out=y)
    with pytest.raises(ValueError, match="grad_out"):
        P.max_pool_backward(np.ones((2, 3, 4, 3), np.float32), x, (2, 2))
    with pytest.raises(ValueError, match="out"):
        P.max_pool_backward(np.ones_like(y), x, (2, 2), out=y[:, :, :3])
    with pytest.raises(TypeError, match="kernel_size"):
        P.max_pool(x, (2, True))


# -- ReLU keeps its input: the gradient as PyTorch's ------------------------------

def test_relu_gradient_at_zero_nan_and_negative_zero():
    x = np.array([-1.0, -0.0, 0.0, 2.0, np.nan, np.inf, -np.inf])
    relu = nn.ReLU()
    y = relu(x)
    g = relu.backward(np.arange(1.0, 8.0))
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.relu(xt)
    yt.backward(torch.arange(1.0, 8.0, dtype=torch.float64))
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_array_equal(g, xt.grad.numpy())


# -- threads share the memos ------------------------------------------------------

def test_threads_with_different_shapes_share_one_layer():
    rng = np.random.default_rng(9)
    model = digits_cnn(rng=0, dtype=np.float64)
    tmodel = _torch_twin(model)
    inputs = [rng.standard_normal((b, 1, 8, 8)) for b in (1, 2, 3, 5)]
    wants = [tmodel(torch.tensor(x)).detach().numpy() for x in inputs]

    def work(i):
        for _ in range(20):
            np.testing.assert_allclose(model(inputs[i]), wants[i], rtol=1e-10, atol=1e-12)

    _run_threads(work, len(inputs))  # raises the first thread's failure here


def test_sgd_step_between_forward_calls_changes_the_output():
    # The plainest staleness case: same input, weights changed in place.
    rng = np.random.default_rng(10)
    layer = nn.Conv2d(1, 2, 3, dtype=np.float64)
    x = rng.standard_normal((1, 1, 5, 5))
    y0 = layer(x)
    layer.backward(np.ones_like(y0))
    SGD(layer.parameters(), lr=0.5).step()
    ref = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(layer.weight.data),
                                     torch.tensor(layer.bias.data)).numpy()
    y1 = layer(x)
    np.testing.assert_allclose(y1, ref, rtol=1e-12)
    assert not np.allclose(y0, y1)

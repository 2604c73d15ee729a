"""Losses and optimizers against PyTorch: values, gradients, parameters after k steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ndconv import nn, optim
from ndconv.losses import CrossEntropyLoss, MSELoss

torch.set_num_threads(1)


def _t(a, grad=False):
    return torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=grad)


# --------------------------------------------------------------------------
# losses


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_mse_matches_torch(reduction):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((4, 3, 2)), rng.standard_normal((4, 3, 2))
    loss = MSELoss(reduction)
    xt = _t(x, grad=True)
    lt = torch.nn.MSELoss(reduction=reduction)(xt, _t(y))
    lt.backward()
    assert loss(x, y) == pytest.approx(lt.item(), rel=1e-12)
    np.testing.assert_allclose(loss.backward(), xt.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(loss.backward(0.5), 0.5 * xt.grad.numpy(), rtol=1e-12)


def test_mse_errors():
    with pytest.raises(ValueError, match=r"target.*\(4,\).*input.*\(4, 1\)"):
        MSELoss()(np.ones((4, 1)), np.ones(4))
    with pytest.raises(ValueError, match="reduction"):
        MSELoss("none")
    with pytest.raises(RuntimeError, match="before"):
        MSELoss().backward()


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("shape", [(5, 4), (3, 4, 2, 2)])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_matches_torch(reduction, shape, smoothing):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape) * 3
    y = rng.integers(0, shape[1], size=shape[:1] + shape[2:])
    loss = CrossEntropyLoss(reduction, label_smoothing=smoothing)
    xt = _t(x, grad=True)
    lt = torch.nn.CrossEntropyLoss(reduction=reduction, label_smoothing=smoothing)(
        xt, torch.tensor(y))
    lt.backward()
    assert loss(x, y) == pytest.approx(lt.item(), rel=1e-12)
    np.testing.assert_allclose(loss.backward(), xt.grad.numpy(), rtol=1e-10, atol=1e-15)


def test_cross_entropy_probability_targets_match_torch():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((6, 3))
    q = rng.dirichlet(np.ones(3), size=6)
    xt = _t(x, grad=True)
    lt = torch.nn.functional.cross_entropy(xt, _t(q))
    lt.backward()
    loss = CrossEntropyLoss()
    assert loss(x, q) == pytest.approx(lt.item(), rel=1e-12)
    np.testing.assert_allclose(loss.backward(), xt.grad.numpy(), rtol=1e-10, atol=1e-15)


def test_cross_entropy_is_stable_for_huge_logits():
    x = np.array([[1e4, 0.0, -1e4], [-1e4, 1e4, 1e4]])
    y = np.array([1, 2])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        value = CrossEntropyLoss()(x, y)
    want = torch.nn.functional.cross_entropy(_t(x), torch.tensor(y)).item()
    assert np.isfinite(value) and value == pytest.approx(want, rel=1e-12)
    # float32 logits: still finite
    assert np.isfinite(CrossEntropyLoss()(x.astype(np.float32), y))


def test_cross_entropy_masked_logit_is_finite_as_torch():
    # A class masked with -inf logits (not the target) has probability 0; the
    # loss stays finite, as PyTorch's nll of the target's log-probability.
    x = np.array([[-np.inf, 0.0, 1.0], [0.5, -np.inf, -1.0]])
    y = np.array([1, 0])
    xt = _t(x, grad=True)
    lt = torch.nn.functional.cross_entropy(xt, torch.tensor(y))
    lt.backward()
    loss = CrossEntropyLoss()
    assert loss(x, y) == pytest.approx(lt.item(), rel=1e-12)
    np.testing.assert_allclose(loss.backward(), xt.grad.numpy(), rtol=1e-10, atol=1e-15)


def test_cross_entropy_errors():
    ce = CrossEntropyLoss()
    with pytest.raises(ValueError, match=r"label 3, outside \[0, 3\)"):
        ce(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match=r"label -1"):
        ce(np.zeros((2, 3)), np.array([0, -1]))
    with pytest.raises(ValueError, match=r"shape \(2,\).*got shape \(3,\)"):
        ce(np.zeros((2, 3)), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="logits of shape"):
        ce(np.zeros(3), np.array([0]))
    with pytest.raises(TypeError, match="int array"):
        ce(np.zeros((2, 3)), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="label_smoothing"):
        CrossEntropyLoss(label_smoothing=1.0)


# --------------------------------------------------------------------------
# optimizers


_CONFIGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, weight_decay=0.01, nesterov=True)),
    ("SGD", dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.1)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.02, weight_decay=0.1, amsgrad=True)),
]


def _run_both(name, kwargs, steps, dtype=np.float64):
    """k steps on a quadratic-ish loss; return (ndconv params, torch params)."""
    rng = np.random.default_rng(3)
    start = [rng.standard_normal((3, 4)), rng.standard_normal(5)]
    ours = [nn.Parameter(a.astype(dtype)) for a in start]
    theirs = [torch.tensor(a.astype(dtype), requires_grad=True) for a in start]
    opt = getattr(optim, name)(ours, **kwargs)
    topt = getattr(torch.optim, name)(theirs, **kwargs)
    for _ in range(steps):
        opt.zero_grad()
        topt.zero_grad()
        # The gradient depends on the parameters, so a difference would grow.
        for p, tp in zip(ours, theirs):
            p.grad = np.sin(p.data) + p.data ** 3
            tp.grad = torch.sin(tp.detach()) + tp.detach() ** 3
        opt.step()
        topt.step()
    return ours, theirs


@pytest.mark.parametrize("name,kwargs", _CONFIGS)
def test_optimizer_matches_torch_after_k_steps(name, kwargs):
    ours, theirs = _run_both(name, kwargs, steps=7)
    for p, tp in zip(ours, theirs):
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_optimizer_float32_keeps_dtype():
    ours, theirs = _run_both("Adam", dict(lr=0.01), steps=5, dtype=np.float32)
    for p, tp in zip(ours, theirs):
        assert p.data.dtype == np.float32
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,kwargs", [_CONFIGS[2], _CONFIGS[6]])
def test_optimizer_state_dict_resumes_exactly(name, kwargs):
    full, _ = _run_both(name, kwargs, steps=6)
    # 3 steps, save the state, restore it into a new optimizer, 3 more steps.
    rng = np.random.default_rng(3)
    params = [nn.Parameter(rng.standard_normal((3, 4))), nn.Parameter(rng.standard_normal(5))]
    opt = getattr(optim, name)(params, **kwargs)

    def steps(o, k):
        for _ in range(k):
            o.zero_grad()
            for p in params:
                p.grad = np.sin(p.data) + p.data ** 3
            o.step()

    steps(opt, 3)
    state = opt.state_dict()
    opt2 = getattr(optim, name)(params, lr=123.0)
    opt2.load_state_dict(state)
    assert opt2.lr == kwargs["lr"]
    steps(opt2, 3)
    for p, q in zip(params, full):
        np.testing.assert_array_equal(p.data, q.data)


def test_optimizer_reads_grads_and_zero_grad():
    p = nn.Parameter(np.ones(3))
    opt = optim.SGD([p], lr=0.5)
    opt.step()  # no gradient yet: nothing moves
    np.testing.assert_array_equal(p.data, np.ones(3))
    p.grad = np.full(3, 2.0)
    opt.step()
    np.testing.assert_array_equal(p.data, np.zeros(3))
    opt.zero_grad()
    assert p.grad is None
    opt.lr = 0.1  # hyper-parameters are attributes, as param_groups[0]["lr"]
    assert opt.hyper["lr"] == 0.1
    # A Module is accepted in place of model.parameters().
    lin = nn.Linear(2, 2)
    assert len(optim.Adam(lin).params) == 2


def test_optimizer_errors():
    p = [nn.Parameter(np.ones(2))]
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD(p, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="`lr`"):
        optim.SGD(p, lr=-1)
    with pytest.raises(ValueError, match="betas"):
        optim.Adam(p, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="empty"):
        optim.Adam([])
    with pytest.raises(TypeError, match="Parameter"):
        optim.Adam([np.ones(2)])
    with pytest.raises(ValueError, match=r"state\.0\.momentum_buffer.*\(3,\)"):
        optim.SGD(p, lr=0.1, momentum=0.9).load_state_dict(
            {"step": 1, "hyper": {}, "state": {"0": {"momentum_buffer": np.ones(3)}}})
    # A malformed state dict is a clear error naming the key, never an AttributeError.
    with pytest.raises(TypeError, match=r"'state\.0' must be a dict"):
        optim.SGD(p, lr=0.1).load_state_dict({"step": 1, "hyper": {}, "state": {"0": 5}})
    with pytest.raises(KeyError, match=r"'state\.x'"):
        optim.SGD(p, lr=0.1).load_state_dict({"step": 1, "hyper": {}, "state": {"x": {}}})
    with pytest.raises(TypeError, match="must be a dict"):
        optim.SGD(p, lr=0.1).load_state_dict(None)

"""Test helper: one ndconv layer against its torch.nn twin (forward, backward, parameter grads).

The torch twin runs in float64 on the same numbers (also for a float32 ndconv
layer), so the comparison measures ndconv's rounding alone (``assert_close``).
"""

from __future__ import annotations

import numpy as np
from conftest import assert_close


def copy_torch_state(m, tm):
    """Load the torch module's state dict (parameters and buffers) into ``m``."""
    m.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})


def check_layer(m, tm, x, *, seed=0, what="", copy_state=True, grad=True):
    """Run ``m`` (ndconv) and ``tm`` (torch, float64) on ``x``; compare everything.

    Returns ``(y, grad_in)`` of ndconv. Compares the output, the input gradient
    for a random output gradient, every parameter gradient by state-dict name,
    and every buffer after the forward (running statistics).
    """
    import torch

    tm = tm.double()
    if copy_state:
        copy_torch_state(m, tm)
    x = np.asarray(x)
    dt = x.dtype
    xt = torch.tensor(x.astype(np.float64), requires_grad=True)
    yt = tm(xt)
    y = m(x)
    assert_close(y, yt.detach().numpy(), dt, what=f"{what} forward")
    for name, b in tm.named_buffers():
        mine = dict(m.named_buffers())[name]
        if b.dtype.is_floating_point:
            assert_close(mine, b.numpy(), dt, what=f"{what} buffer {name}")
        else:
            np.testing.assert_array_equal(mine, b.numpy(), err_msg=f"{what} buffer {name}")
    if not grad:
        return y, None
    g = np.random.default_rng(1000 + seed).standard_normal(y.shape).astype(dt)
    yt.backward(torch.tensor(g.astype(np.float64)))
    m.zero_grad()
    gx = m.backward(g)
    assert_close(gx, xt.grad.numpy(), dt, what=f"{what} grad input")
    mine = dict(m.named_parameters())
    for name, p in tm.named_parameters():
        assert_close(mine[name].grad, p.grad.numpy(), dt, what=f"{what} grad {name}")
    return y, gx


def assert_state_close(sd, tsd, dtype):
    """Same keys in the same order; floats within ``assert_close``, integers exact."""
    assert list(sd) == list(tsd)
    for k, v in tsd.items():
        v = v.detach().numpy()
        if v.dtype.kind == "f":
            assert_close(sd[k], v, dtype, what=k)
        else:
            np.testing.assert_array_equal(sd[k], v, err_msg=k)


def train_both(net, tnet, input_shape, classes, steps, **sgd):
    """The same SGD steps (cross-entropy, random batches) in ndconv and torch; float64.

    Copies torch's initial state into ``net`` first, then checks that every
    weight and buffer agrees afterwards. Returns the random generator, so a
    test can draw more inputs.
    """
    import torch

    import ndconv

    copy_torch_state(net, tnet)
    topt = torch.optim.SGD(tnet.parameters(), **sgd)
    opt = ndconv.optim.SGD(net.parameters(), **sgd)
    loss_fn = ndconv.losses.CrossEntropyLoss()
    r = np.random.default_rng(0)
    for _ in range(steps):
        x, y = r.standard_normal(input_shape), r.integers(0, classes, input_shape[0])
        opt.zero_grad()
        loss_fn(net(x), y)
        net.backward(loss_fn.backward())
        opt.step()
        topt.zero_grad()
        torch.nn.functional.cross_entropy(tnet(torch.tensor(x)), torch.tensor(y)).backward()
        topt.step()
    assert_state_close(net.state_dict(), tnet.state_dict(), np.float64)
    return r

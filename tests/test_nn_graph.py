"""Graph (non-chain networks): a ResNet block against torch autograd, Concat, several inputs/outputs."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close
from torch_layers import assert_state_close, copy_torch_state, train_both

import ndconv
from ndconv import nn

torch = pytest.importorskip("torch")


class TorchBasicBlock(torch.nn.Module):
    """torchvision's ResNet BasicBlock (same attribute names, ReLU used twice)."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(cout)
        self.relu = torch.nn.ReLU()
        self.conv2 = torch.nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = torch.nn.Sequential(
                torch.nn.Conv2d(cin, cout, 1, stride, bias=False), torch.nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


def basic_block(cin, cout, stride=1, dtype=np.float64):
    g, relu = nn.Graph(), nn.ReLU()
    x = g.input()
    h = g.layer("conv1", nn.Conv2d(cin, cout, 3, stride, 1, bias=False, dtype=dtype), x)
    h = g.layer("relu", relu, g.layer("bn1", nn.BatchNorm2d(cout, dtype=dtype), h))
    h = g.layer("conv2", nn.Conv2d(cout, cout, 3, 1, 1, bias=False, dtype=dtype), h)
    h = g.layer("bn2", nn.BatchNorm2d(cout, dtype=dtype), h)
    if stride != 1 or cin != cout:
        x = g.layer("downsample", nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False, dtype=dtype),
            nn.BatchNorm2d(cout, dtype=dtype)), x)
    return g.output(g.layer("relu", relu, g.add(h, x)))


def _net(dtype=np.float64):
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, dtype=dtype), basic_block(4, 4, dtype=dtype),
                         basic_block(4, 6, 2, dtype=dtype), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(6, 3, dtype=dtype))


def _tnet():
    return torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), TorchBasicBlock(4, 4),
                               TorchBasicBlock(4, 6, 2), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), torch.nn.Linear(6, 3)).double()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("stride, cout", [(1, 4), (2, 6)])
def test_resnet_block_forward_backward_equal_torch_autograd(dtype, stride, cout):
    torch.manual_seed(0)
    tb = TorchBasicBlock(4, cout, stride).double()
    b = basic_block(4, cout, stride, dtype=dtype)
    assert list(b.state_dict()) == list(tb.state_dict())
    copy_torch_state(b, tb)
    x = np.random.default_rng(0).standard_normal((2, 4, 6, 6)).astype(dtype)
    gy = None
    for mode in (True, False):
        b.train(mode)
        tb.train(mode)
        xt = torch.tensor(x.astype(np.float64), requires_grad=True)
        yt = tb(xt)
        y = b(x)
        assert_close(y, yt.detach().numpy(), dtype, what="forward")
        gy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
        yt.backward(torch.tensor(gy.astype(np.float64)))
        b.zero_grad()
        assert_close(b.backward(gy), xt.grad.numpy(), dtype, what="grad input")
        mine = dict(b.named_parameters())
        for k, p in tb.named_parameters():
            assert_close(mine[k].grad, p.grad.numpy(), dtype, what=f"grad {k}")
        tb.zero_grad()
    assert_state_close(b.state_dict(), tb.state_dict(), dtype)  # running statistics


def test_resnet_net_trains_like_torch():
    tnet, net = _tnet(), _net()
    r = train_both(net, tnet, (4, 2, 8, 8), 3, 5, lr=0.05, momentum=0.9, weight_decay=1e-3)
    net.eval()
    tnet.eval()
    x = r.standard_normal((3, 2, 8, 8))
    assert_close(net(x), tnet(torch.tensor(x)).detach().numpy(), np.float64, what="eval")


def test_concat_several_inputs_and_outputs_equal_torch():
    """Two inputs, a value used three times, a concat, two outputs (one without a gradient)."""
    g = nn.Graph()
    a, b = g.input(), g.input()
    ca = g.layer("ca", nn.Conv1d(2, 3, 3, padding=1, dtype=np.float64, rng=0), a)
    cb = g.layer("cb", nn.Conv1d(1, 2, 3, padding=1, dtype=np.float64, rng=1), b)
    cat = g.cat([ca, cb, ca], dim=1)
    mix = g.layer("mix", nn.Conv1d(8, 2, 1, dtype=np.float64, rng=2), cat)
    out1 = g.add(mix, a)
    out2 = g.layer("tanh", nn.Tanh(), ca)
    g.output(out1, out2)
    tw = {k: torch.tensor(v, requires_grad=True) for k, v in g.state_dict().items()}
    r = np.random.default_rng(3)
    xa, xb = r.standard_normal((2, 2, 5)), r.standard_normal((2, 1, 5))
    ta, tb = (torch.tensor(v, requires_grad=True) for v in (xa, xb))
    F = torch.nn.functional
    tca = F.conv1d(ta, tw["ca.weight"], tw["ca.bias"], padding=1)
    tcb = F.conv1d(tb, tw["cb.weight"], tw["cb.bias"], padding=1)
    tmix = F.conv1d(torch.cat([tca, tcb, tca], 1), tw["mix.weight"], tw["mix.bias"])
    t1, t2 = tmix + ta, torch.tanh(tca)
    y1, y2 = g(xa, xb)
    assert_close(y1, t1.detach().numpy(), np.float64)
    assert_close(y2, t2.detach().numpy(), np.float64)
    g1, g2 = r.standard_normal(y1.shape), r.standard_normal(y2.shape)
    (t1 * torch.tensor(g1)).sum().add((t2 * torch.tensor(g2)).sum()).backward(retain_graph=True)
    ga, gb = g.backward(g1, g2)
    assert_close(ga, ta.grad.numpy(), np.float64, what="grad a")
    assert_close(gb, tb.grad.numpy(), np.float64, what="grad b")
    mine = dict(g.named_parameters())
    for k, t in tw.items():
        assert_close(mine[k].grad, t.grad.numpy(), np.float64, what=k)
    # Without a gradient for the second output, only the first one's flows.
    g.zero_grad()
    ta.grad = None
    for t in tw.values():
        t.grad = None
    (t1 * torch.tensor(g1)).sum().backward()
    ga_only, _ = g.backward(g1, None)
    assert_close(ga_only, ta.grad.numpy(), np.float64, what="grad a (one output)")


def test_tied_weights_add_their_gradients():
    g, conv = nn.Graph(), nn.Conv1d(2, 2, 3, padding=1, dtype=np.float64, rng=0)
    x = g.input()
    g.output(g.layer("conv", conv, g.layer("conv", conv, x)))
    w = torch.tensor(conv.weight.data, requires_grad=True)
    bias = torch.tensor(conv.bias.data, requires_grad=True)
    xv = np.random.default_rng(0).standard_normal((1, 2, 6))
    xt = torch.tensor(xv, requires_grad=True)
    F = torch.nn.functional
    yt = F.conv1d(F.conv1d(xt, w, bias, padding=1), w, bias, padding=1)
    y = g(xv)
    assert_close(y, yt.detach().numpy(), np.float64)
    yt.sum().backward()
    assert_close(g.backward(np.ones_like(y)), xt.grad.numpy(), np.float64)
    assert_close(conv.weight.grad, w.grad.numpy(), np.float64)
    assert list(g.state_dict()) == ["conv.weight", "conv.bias"]


def test_add_broadcasts_and_unbroadcasts():
    g = nn.Graph()
    a, b = g.input(), g.input()
    g.output(g.add(a, b))
    y = g(np.ones((2, 3, 4)), np.ones((3, 1)))
    assert y.shape == (2, 3, 4)
    ga, gb = g.backward(np.ones((2, 3, 4)))
    assert ga.shape == (2, 3, 4) and gb.shape == (3, 1) and (gb == 8).all()


def test_graph_errors():
    g = nn.Graph()
    x = g.input()
    with pytest.raises(ValueError, match="identifier"):
        g.layer("a.b", nn.ReLU(), x)
    g.layer("r", nn.ReLU(), x)
    with pytest.raises(ValueError, match="already used"):
        g.layer("r", nn.ReLU(), x)
    with pytest.raises(TypeError, match="Value of this Graph"):
        g.layer("s", nn.ReLU(), nn.Graph().input())
    with pytest.raises(RuntimeError, match="output"):
        g(np.ones(3))
    g.output(x)
    with pytest.raises(ValueError, match="takes 1 input"):
        g(np.ones(3), np.ones(3))
    h = nn.Graph()
    u, v = h.input(), h.input()
    h.output(h.cat([u, v], dim=1))
    with pytest.raises(ValueError, match=r"layer cat1 \(Concat\).*agree except in dim 1"):
        h(np.ones((2, 3, 4)), np.ones((2, 3, 5)))


def test_unused_input_gets_zero_gradient_of_its_dtype():
    g = nn.Graph()
    a, _ = g.input(), g.input()
    g.output(g.layer("r", nn.ReLU(), a))
    g(np.ones(3), np.ones(2, np.float32))
    _, gb = g.backward(np.ones(3))
    assert gb.dtype == np.float32 and (gb == 0).all()


def test_checkpoint_round_trip_of_a_graph(tmp_path):
    net = _net()
    for s in range(2):
        net(np.random.default_rng(s).standard_normal((2, 2, 8, 8)))
    ndconv.save({"model": net}, tmp_path / "r.npz")
    other = _net()
    other.load_state_dict(ndconv.load(tmp_path / "r.npz")["model"])
    x = np.random.default_rng(9).standard_normal((2, 2, 8, 8))
    np.testing.assert_array_equal(net.eval()(x), other.eval()(x))


def test_graph_structure_is_readable():
    g = nn.Graph()
    a, b = g.input(), g.input()
    s = g.add(a, b)
    g.output(g.layer("r", nn.ReLU(), s), s)
    names = [(name, type(m).__name__, [v.index for v in ins], out.index)
             for name, m, ins, out in g.nodes]
    assert names == [("add1", "Add", [0, 1], 2), ("r", "ReLU", [2], 3)]
    assert [v.index for v in g.inputs] == [0, 1] and [v.index for v in g.outputs] == [3, 2]

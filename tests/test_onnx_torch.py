"""Real network shapes exported by torch.onnx.export(dynamo=False): ndconv's
forward equals torch and onnxruntime, its backward equals torch autograd, and
SGD fine-tuning in ndconv follows torch step by step."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

import ndconv.onnx as nx  # noqa: E402
from ndconv import losses, optim  # noqa: E402
from onnx_nets import NETS, build, export  # noqa: E402


@pytest.fixture(scope="module", params=sorted(NETS))
def exported(request, tmp_path_factory):
    model, shape = build(request.param)
    path = tmp_path_factory.mktemp("onnx") / f"{request.param}.onnx"
    export(model, shape, path)
    return request.param, model, shape, path


def _input(shape, batch=3, dtype=np.float32, seed=1):
    return np.random.default_rng(seed).standard_normal((batch, *shape)).astype(dtype)


def test_graph_has_the_ops_the_net_is_about(exported):
    name, _, _, path = exported
    kinds = {n[2] for n in nx.load(path).nodes}
    need = {"resnet": {"BatchNormalization", "Add", "MaxPool", "GlobalAveragePool", "Gemm"},
            "mobilenet": {"HardSwish", "HardSigmoid", "Mul", "Conv", "BatchNormalization"},
            "unet": {"ConvTranspose", "Concat", "LeakyRelu", "Sigmoid", "Resize"}}[name]
    assert need <= kinds


def test_forward_equals_torch_and_onnxruntime(exported):
    _, model, shape, path = exported
    x = _input(shape)
    got = nx.load(path)(x)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (ref,) = sess.run(None, {"x": x})
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("opset, fold", [(11, False), (13, False), (17, True)],
                         ids=["opset11", "opset13", "folded"])
def test_other_export_forms(exported, tmp_path, opset, fold):
    """The same nets at older opsets (HardSwish as HardSigmoid * x before 14,
    Resize's and Squeeze's older forms) and with constant folding (BatchNorm
    fused into the convolutions, names lost): the forward still agrees."""
    name, model, shape, _ = exported
    path = export(model, shape, tmp_path / f"{name}.onnx", opset=opset, fold=fold)
    x = _input(shape, batch=2)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(nx.load(path)(x), want, rtol=1e-4, atol=1e-5)


def test_state_dict_is_torchs(exported):
    """Parameters and BatchNorm statistics under torch's keys: torch's state_dict
    loads (num_batches_tracked, which ONNX does not carry, aside)."""
    name, model, shape, path = exported
    net = nx.load(path)
    want = {k: v.numpy() for k, v in model.state_dict().items()
            if not k.endswith("num_batches_tracked")}
    got = net.state_dict()
    assert set(got) == set(want)
    for k, v in want.items():
        np.testing.assert_array_equal(got[k], v, err_msg=k)
    other = build(name, seed=5)[0]  # other weights and statistics
    net.load_state_dict({k: v.numpy() for k, v in other.state_dict().items()
                         if not k.endswith("num_batches_tracked")})
    x = _input(shape)
    with torch.no_grad():
        np.testing.assert_allclose(net(x), other(torch.from_numpy(x)).numpy(), rtol=1e-4, atol=1e-5)


# ONNX stores float attributes as float32 (HardSigmoid's 1/6, LeakyRelu's 0.1, BN's
# epsilon), so a float64 run differs from torch's float64 run in the 8th digit.
RTOL, ATOL = 1e-6, 1e-9


def test_backward_equals_torch_autograd(exported):
    _, model, shape, path = exported
    net = nx.load(path, dtype=np.float64)
    tm = build(exported[0])[0].double()
    x = _input(shape, dtype=np.float64)
    tx = torch.from_numpy(x.copy()).requires_grad_()
    ty = tm(tx)
    r = np.random.default_rng(2).standard_normal(ty.shape)
    (ty * torch.from_numpy(r)).sum().backward()
    y = net(x)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=RTOL, atol=ATOL)
    gx = net.backward(r)
    np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=RTOL, atol=ATOL)
    params = dict(tm.named_parameters())
    names = [k for k, _ in net.named_parameters()]
    assert sorted(names) == sorted(params)  # every trainable torch weight, by its name
    for k, p in net.named_parameters():
        np.testing.assert_allclose(p.grad, params[k].grad.numpy(), rtol=RTOL, atol=ATOL,
                                   err_msg=k)


def test_sgd_fine_tuning_follows_torch(exported):
    name, _, shape, path = exported
    net = nx.load(path, dtype=np.float64)
    tm = build(name)[0].double()  # eval mode: BN statistics frozen, as the import
    x = _input(shape, dtype=np.float64)
    with torch.no_grad():
        target = np.random.default_rng(3).standard_normal(tm(torch.from_numpy(x)).shape)
    opt = optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    topt = torch.optim.SGD(tm.parameters(), lr=0.05, momentum=0.9)
    loss_fn = losses.MSELoss()
    for _ in range(4):
        loss = loss_fn(net(x), target)
        opt.zero_grad()
        net.backward(loss_fn.backward())
        opt.step()
        topt.zero_grad()
        tloss = torch.nn.functional.mse_loss(tm(torch.from_numpy(x)), torch.from_numpy(target))
        tloss.backward()
        topt.step()
        assert loss == pytest.approx(tloss.item(), rel=RTOL)
    tstate = dict(tm.named_parameters())
    moved = 0
    start = nx.load(path, dtype=np.float64).state_dict()
    for k, p in net.named_parameters():
        np.testing.assert_allclose(p.data, tstate[k].detach().numpy(), rtol=RTOL, atol=ATOL,
                                   err_msg=k)
        moved += not np.allclose(p.data, start[k])
    for k, b in net.named_buffers():  # BatchNorm statistics stay, as torch's in eval mode
        np.testing.assert_array_equal(b, start[k])
    assert moved > 0.5 * len(tstate)  # the steps changed the weights
    # export back: onnxruntime runs the fine-tuned weights as torch has them
    out = path.parent / f"{name}-tuned.onnx"
    nx.save(net, out)
    x32 = x.astype(np.float32)
    (got,) = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"x": x32})
    with torch.no_grad():
        want = tm.float()(torch.from_numpy(x32)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_fresh_batchnorm_fine_tunes_like_torch(tmp_path):
    """A fresh BatchNorm's weight and running_var are equal (ones): torch's exporter
    stores them once and makes running_var an Identity of the weight. Training
    the weight must not move the statistics."""
    import onnx

    torch.manual_seed(0)
    tm = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.BatchNorm2d(3), torch.nn.ReLU(),
                             torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 2)).eval()
    path = tmp_path / "fresh.onnx"
    export(tm, (2, 6, 6), path)
    assert "Identity" in {n.op_type for n in onnx.load(str(path)).graph.node}
    net = nx.load(path, dtype=np.float64)
    tm = tm.double()
    x = _input((2, 6, 6), dtype=np.float64)
    target = np.zeros((3, 2))
    opt, topt = optim.SGD(net.parameters(), lr=0.5), torch.optim.SGD(tm.parameters(), lr=0.5)
    loss_fn = losses.MSELoss()
    for _ in range(3):
        loss_fn(net(x), target)
        opt.zero_grad()
        net.backward(loss_fn.backward())
        opt.step()
        topt.zero_grad()
        torch.nn.functional.mse_loss(tm(torch.from_numpy(x)), torch.from_numpy(target)).backward()
        topt.step()
    with torch.no_grad():
        np.testing.assert_allclose(net(x), tm(torch.from_numpy(x)).numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(dict(net.named_buffers())["1.running_var"], np.ones(3))
    assert not np.allclose(net.state_dict()["1.weight"], 1)


def test_torch_groupnorm_and_instancenorm(tmp_path):
    """torch exports GroupNorm (opset 17) as Reshape, InstanceNormalization, Reshape, Mul, Add."""
    torch.manual_seed(0)
    tm = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.GroupNorm(2, 4),
                             torch.nn.InstanceNorm2d(4, affine=True), torch.nn.SiLU()).eval()
    for m in (tm[1], tm[2]):
        m.weight.data.uniform_(0.5, 1.5)
        m.bias.data.uniform_(-0.5, 0.5)
    path = export(tm, (2, 7, 6), tmp_path / "gn.onnx")
    net = nx.load(path, dtype=np.float64)
    assert "InstanceNormalization" in {n[2] for n in net.nodes}
    x = _input((2, 7, 6), dtype=np.float64)
    tx = torch.from_numpy(x.copy()).requires_grad_()
    ty = tm.double()(tx)
    r = np.random.default_rng(4).standard_normal(ty.shape)
    (ty * torch.from_numpy(r)).sum().backward()
    np.testing.assert_allclose(net(x), ty.detach().numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(net.backward(r), tx.grad.numpy(), rtol=RTOL, atol=ATOL)
    for k, p in net.named_parameters():
        np.testing.assert_allclose(p.grad, dict(tm.named_parameters())[k].grad.numpy(),
                                   rtol=RTOL, atol=ATOL, err_msg=k)

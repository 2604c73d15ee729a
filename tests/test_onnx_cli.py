"""``ndconv summary`` and ``ndconv run`` on real exported networks and broken input."""

from __future__ import annotations

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
from PIL import Image  # noqa: E402

import ndconv  # noqa: E402
import ndconv.nn as nn  # noqa: E402
import ndconv.onnx as nx  # noqa: E402
from ndconv import models, plan  # noqa: E402
from onnx_nets import build, export  # noqa: E402
from test_cli import ndconv as ndconv_sub  # noqa: E402
from test_cli import ndconv_inproc  # noqa: E402


def _refused(res, *words):
    assert res.returncode == 2, res
    assert res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    for w in words:
        assert w in lines[0], lines[0]


@pytest.fixture(scope="module")
def resnet_onnx(tmp_path_factory):
    model, shape = build("resnet")
    path = tmp_path_factory.mktemp("cli") / "resnet.onnx"
    export(model, shape, path, batch=1)
    return model, shape, path


def test_summary_counts_what_torch_counts(resnet_onnx):
    model, shape, path = resnet_onnx
    # per layer output shapes and the weights' FLOPs from torch's own forward
    flops, outs = [], {}

    def hook(mod, inp, out):
        if isinstance(mod, torch.nn.Conv2d):
            flops.append(2 * mod.weight.numel() * out.shape[2] * out.shape[3])
        elif isinstance(mod, torch.nn.Linear):
            flops.append(2 * mod.weight.numel())
        outs[mod] = tuple(out.shape[1:])

    hs = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    with torch.no_grad():
        model(torch.zeros(1, *shape))
    for h in hs:
        h.remove()
    rows = plan.layer_rows(nx.load(path), shape)
    t = plan.total(rows)
    assert t.params == sum(p.numel() for p in model.parameters())
    assert t.flops == sum(flops)
    convs = [r for r in rows if r.layer.startswith("Conv")]
    tconvs = [outs[m] for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [r.out_shape for r in convs] == tconvs
    res = ndconv_inproc("summary", path)
    assert res.returncode == 0, res.stderr
    assert f"{t.params:,} parameters" in res.stdout and f"{t.flops:,} FLOPs" in res.stdout
    assert len(res.stdout.strip().splitlines()) == 1 + 2 + len(rows) + 1


class _Trunk(torch.nn.Module):
    """Residual adds, strides, padding, BN, average pooling; LeakyReLU so every
    input of the field carries gradient (ReLU and max pooling could zero some)."""

    def __init__(self):
        super().__init__()
        c = torch.nn.Conv2d
        self.stem = torch.nn.Sequential(c(2, 4, 3, padding=1), torch.nn.BatchNorm2d(4),
                                        torch.nn.LeakyReLU(0.1), torch.nn.AvgPool2d(2))
        self.a = torch.nn.Sequential(c(4, 4, 3, padding=1), torch.nn.LeakyReLU(0.1),
                                     c(4, 4, 5, padding=2, dilation=1))
        self.b = c(4, 6, 3, stride=2, padding=1)
        self.down = c(4, 6, 1, stride=2)
        self.c = c(6, 6, 3, padding=2, dilation=2)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.a(x)
        x = torch.nn.functional.leaky_relu(self.b(x) + self.down(x), 0.1)
        return self.c(x)


def test_receptive_field_equals_the_support_of_torch_gradients(tmp_path):
    torch.manual_seed(0)
    model = _Trunk().eval()
    shape = (2, 96, 96)
    path = tmp_path / "trunk.onnx"
    export(model, shape, path, batch=1)
    rows = plan.layer_rows(nx.load(path), shape)
    x = torch.randn(1, *shape, dtype=torch.float64, requires_grad=True)
    y = model.double()(x)
    i, j = y.shape[2] // 2, y.shape[3] // 2
    y[0, :, i, j].sum().backward()
    nz = np.nonzero(np.abs(x.grad[0].numpy()).sum(axis=0))
    support = tuple(int(a.max() - a.min() + 1) for a in nz)
    assert rows[-1].receptive_field == support
    assert support[0] > 20  # a real field, not a trivial one


def test_summary_of_checkpoints(tmp_path):
    m = models.digits_cnn(rng=3)
    ndconv.save({"model": m.state_dict(), "epoch": 2}, tmp_path / "digits.npz")
    res = ndconv_inproc("summary", tmp_path / "digits.npz")
    assert res.returncode == 0, res.stderr
    assert "ndconv.models.digits_cnn" in res.stdout
    assert f"{m.num_parameters():,} parameters" in res.stdout
    # the same architecture as a PyTorch state dict
    torch.save({k: torch.from_numpy(v) for k, v in m.state_dict().items()}, tmp_path / "d.pth")
    res = ndconv_inproc("summary", tmp_path / "d.pth", "--dtype", "float32,float16")
    assert res.returncode == 0, res.stderr
    assert "float16 bytes" in res.stdout and f"{m.num_parameters():,} parameters" in res.stdout
    torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "other.pth")
    _refused(ndconv_inproc("summary", tmp_path / "other.pth"), "matches no known architecture")


def test_summary_refusals(tmp_path, resnet_onnx):
    _refused(ndconv_inproc("summary", tmp_path / "missing.onnx"), "does not exist")
    (tmp_path / "bad.onnx").write_bytes(b"hello")
    _refused(ndconv_inproc("summary", tmp_path / "bad.onnx"), "is not an ONNX model")
    _refused(ndconv_inproc("summary", resnet_onnx[2], "--dtype", "floaty"), "--dtype")
    # a model with any spatial size needs --input
    m = nn.Sequential(nn.Conv2d(1, 2, 3, rng=0))
    nx.save(m, tmp_path / "c.onnx", (1, 5, 5))
    import onnx

    p = onnx.load(str(tmp_path / "c.onnx"))
    for d in p.graph.input[0].type.tensor_type.shape.dim[2:]:
        d.dim_param = "s"
    for d in p.graph.output[0].type.tensor_type.shape.dim[2:]:
        d.dim_param = "t"
    onnx.save(p, str(tmp_path / "dyn.onnx"))
    _refused(ndconv_inproc("summary", tmp_path / "dyn.onnx"), "give --input")
    res = ndconv_inproc("summary", tmp_path / "dyn.onnx", "--input", "1,9,9")
    assert res.returncode == 0 and "2x7x7" in res.stdout
    # a real subprocess: one line, exit 2
    _refused(ndconv_sub("summary", tmp_path / "bad.onnx"), "ndconv summary: error:")


@pytest.fixture()
def classifier(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, rng=0), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(4 * 6 * 5, 7, rng=1))
    path = tmp_path / "clf.onnx"
    nx.save(model, path, (3, 12, 10))
    rng = np.random.default_rng(0)
    imgs = []
    for k, size in enumerate([(12, 10), (30, 17), (12, 10)]):
        p = tmp_path / f"img{k}.png"
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(p)
        imgs.append(p)
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"name{i}" for i in range(7)) + "\n")
    return model, path, imgs, labels


def test_run_prints_the_top_k(classifier):
    model, path, imgs, labels = classifier
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    res = ndconv_inproc("run", path, *imgs, "--mean", "0.5,0.4,0.3", "--std", "0.2,0.25,0.3",
                        "--labels", labels, "--top", "3")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 3 * 4
    for n, p in enumerate(imgs):
        im = Image.open(p).convert("RGB")
        if im.size != (10, 12):
            im = im.resize((10, 12), Image.BILINEAR)
        x = np.moveaxis(np.asarray(im, np.float64) / 255, -1, 0)
        x = ((x - np.reshape(mean, (3, 1, 1))) / np.reshape(std, (3, 1, 1))).astype(np.float32)
        y = model(x[None])[0].astype(np.float64)
        prob = np.exp(y - y.max()) / np.exp(y - y.max()).sum()
        top = np.argsort(-prob)[:3]
        block = lines[4 * n: 4 * n + 4]
        assert block[0] == f"{p}:"
        for r, c in enumerate(top):
            assert block[r + 1].split() == [f"{r + 1}.", f"name{c}", f"({c})", f"{prob[c]:.4f}"]


def test_run_refusals(classifier, tmp_path):
    _, path, imgs, labels = classifier
    (tmp_path / "short.txt").write_text("a\nb\n")
    _refused(ndconv_inproc("run", path, imgs[0], "--labels", tmp_path / "short.txt"),
             "has 2 names", "7 classes")
    (tmp_path / "fake.png").write_bytes(b"not a png")
    _refused(ndconv_inproc("run", path, tmp_path / "fake.png"), "is not an image")
    _refused(ndconv_inproc("run", path, tmp_path / "nothing.png"), "does not exist")
    _refused(ndconv_inproc("run", path, imgs[0], "--mean", "1,2"), "--mean has 2 values")
    _refused(ndconv_inproc("run", path, imgs[0], "--std", "0"), "--std")
    _refused(ndconv_inproc("run", path, imgs[0], "--size", "3"), "--size")
    _refused(ndconv_inproc("run", path, imgs[0], "--top", "0"), "--top")
    _refused(ndconv_inproc("run", imgs[0], imgs[0]), "is not an ONNX model")
    _refused(ndconv_sub("run", path, tmp_path / "fake.png"), "ndconv run: error:")

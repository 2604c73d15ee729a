"""Every model of onnx's pytorch-converted backend tests through ndconv.onnx.load:
inputs and expected outputs (.pb) shipped in the onnx wheel."""

from __future__ import annotations

import glob
import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import numpy_helper  # noqa: E402

import ndconv.onnx as nx  # noqa: E402

DATA = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "pytorch-converted")
MODELS = sorted(glob.glob(os.path.join(DATA, "*", "model.onnx")))

# No exceptions: every model passes (an entry here would need its reason in the README).
EXPECTED_FAILURES = {}


def _tensors(folder, kind):
    files = sorted(glob.glob(os.path.join(folder, f"{kind}_*.pb")),
                   key=lambda f: int(f.rsplit("_", 1)[1].split(".")[0]))
    return [numpy_helper.to_array(onnx.load_tensor(f)) for f in files]


def test_the_wheel_ships_the_models():
    assert len(MODELS) >= 80


@pytest.mark.parametrize("path", MODELS, ids=[os.path.basename(os.path.dirname(p)) for p in MODELS])
def test_pytorch_converted(path):
    name = os.path.basename(os.path.dirname(path))
    if name in EXPECTED_FAILURES:
        pytest.xfail(EXPECTED_FAILURES[name])
    net = nx.load(path)
    sets = sorted(glob.glob(os.path.join(os.path.dirname(path), "test_data_set_*")))
    assert sets
    for folder in sets:
        xs, want = _tensors(folder, "input"), _tensors(folder, "output")
        got = net(*xs)
        got = got if isinstance(got, tuple) else (got,)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g.shape == w.shape and g.dtype == w.dtype
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("path", MODELS, ids=[os.path.basename(os.path.dirname(p)) for p in MODELS])
def test_pytorch_converted_backward(path):
    """The gradient (input and every weight) against a central difference along a
    random direction, in float64."""
    net = nx.load(path, dtype=np.float64)
    folder = sorted(glob.glob(os.path.join(os.path.dirname(path), "test_data_set_*")))[0]
    xs = [x.astype(np.float64) if x.dtype.kind == "f" else x for x in _tensors(folder, "input")]
    rng = np.random.default_rng(0)
    y = net(*xs)
    ys = y if isinstance(y, tuple) else (y,)
    rs = [rng.standard_normal(v.shape) for v in ys]
    net.zero_grad()
    g = net.backward(*rs)
    gs = g if isinstance(g, tuple) else (g,)
    floats = [i for i, x in enumerate(xs) if x.dtype.kind == "f"]
    params = [p for _, p in net.named_parameters()]
    vx = {i: rng.standard_normal(xs[i].shape) for i in floats}
    vp = [rng.standard_normal(p.shape) for p in params]
    want = sum(float((gs[i] * vx[i]).sum()) for i in floats) + sum(
        float((p.grad * v).sum()) for p, v in zip(params, vp))

    def loss(t):
        data = [p.data.copy() for p in params]
        for p, v in zip(params, vp):
            p.data = p.data + t * v
        out = net(*[xs[i] + t * vx[i] if i in vx else xs[i] for i in range(len(xs))])
        for p, d in zip(params, data):
            p.data = d
        out = out if isinstance(out, tuple) else (out,)
        return sum(float((o * r).sum()) for o, r in zip(out, rs))

    eps = 1e-6
    got = (loss(eps) - loss(-eps)) / (2 * eps)
    assert got == pytest.approx(want, rel=1e-5, abs=1e-6)

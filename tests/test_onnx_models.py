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

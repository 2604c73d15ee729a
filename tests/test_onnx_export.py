"""ndconv.onnx.save: every exportable layer type through onnxruntime and back."""

from __future__ import annotations

import os

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

import ndconv.nn as nn  # noqa: E402
import ndconv.onnx as nx  # noqa: E402


def _layer(name, *args, **kwargs):
    cls = getattr(nn, name, None)
    if cls is None:
        pytest.skip(f"ndconv.nn.{name} does not exist in this version")
    return cls(*args, **kwargs)


# (id, builder of the model, input shape without batch)
CASES = [
    ("conv1d", lambda: _layer("Conv1d", 2, 3, 3, stride=2, padding=1, rng=0), (2, 11)),
    ("conv2d-pairs-groups", lambda: _layer("Conv2d", 4, 6, (3, 2), padding=((1, 0), (2, 1)),
                                           dilation=(1, 2), groups=2, rng=0), (4, 9, 8)),
    ("conv2d-same-reflect", lambda: _layer("Conv2d", 2, 2, 3, padding="same",
                                           padding_mode="reflect", rng=0), (2, 6, 7)),
    ("conv2d-replicate-nobias", lambda: _layer("Conv2d", 2, 3, 3, padding=2, bias=False,
                                               padding_mode="replicate", rng=0), (2, 5, 5)),
    ("conv3d", lambda: _layer("Conv3d", 1, 2, 2, padding=1, rng=0), (1, 4, 5, 3)),
    ("convT1d", lambda: _layer("ConvTranspose1d", 2, 3, 4, stride=2, padding=1, rng=0), (2, 5)),
    ("convT2d", lambda: _layer("ConvTranspose2d", 4, 2, 3, stride=2, padding=1,
                               output_padding=1, groups=2, rng=0), (4, 4, 5)),
    ("convT3d", lambda: _layer("ConvTranspose3d", 2, 1, 2, stride=(1, 2, 2), dilation=2, rng=0),
     (2, 3, 3, 3)),
    ("linear", lambda: _layer("Linear", 7, 3, rng=0), (7,)),
    ("linear-3d-input", lambda: _layer("Linear", 5, 2, rng=0), (4, 5)),
    ("relu", lambda: _layer("ReLU"), (3, 4)),
    ("sigmoid", lambda: _layer("Sigmoid"), (3, 4)),
    ("tanh", lambda: _layer("Tanh"), (3, 4)),
    ("dropout", lambda: _layer("Dropout", 0.5), (3, 4)),
    ("flatten", lambda: _layer("Flatten"), (2, 3, 4)),
    ("flatten-2", lambda: _layer("Flatten", 2), (2, 3, 4)),
    ("maxpool1d", lambda: _layer("MaxPool1d", 3, 2, 1), (2, 9)),
    ("maxpool2d-ceil-dil", lambda: _layer("MaxPool2d", 2, 2, dilation=2, ceil_mode=True), (2, 9, 8)),
    ("maxpool3d", lambda: _layer("MaxPool3d", 2), (1, 4, 4, 5)),
    ("avgpool1d", lambda: _layer("AvgPool1d", 3, 2, 1), (2, 9)),
    ("avgpool2d-no-pad-count", lambda: _layer("AvgPool2d", 3, 2, 1, ceil_mode=True,
                                              count_include_pad=False), (2, 8, 9)),
    ("avgpool3d", lambda: _layer("AvgPool3d", 2, padding=1), (1, 4, 4, 5)),
    # the layers of real networks (ndconv.nn where present)
    ("batchnorm2d", lambda: _bn(_layer("BatchNorm2d", 3)), (3, 4, 5)),
    ("batchnorm1d", lambda: _bn(_layer("BatchNorm1d", 3)), (3, 6)),
    ("layernorm", lambda: _layer("LayerNorm", (4, 5)), (3, 4, 5)),
    ("groupnorm", lambda: _affine(_layer("GroupNorm", 2, 4)), (4, 3, 5)),
    ("groupnorm-1d-no-affine", lambda: _layer("GroupNorm", 3, 6, affine=False), (6, 7)),
    ("leakyrelu", lambda: _layer("LeakyReLU", 0.2), (3, 4)),
    ("elu", lambda: _layer("ELU", 0.7), (3, 4)),
    ("prelu", lambda: _layer("PReLU", 3), (3, 4, 2)),
    ("gelu", lambda: _layer("GELU"), (3, 4)),
    ("silu", lambda: _layer("SiLU"), (3, 4)),
    ("hardswish", lambda: _layer("Hardswish"), (3, 8)),
    ("hardsigmoid", lambda: _layer("Hardsigmoid"), (3, 8)),
    ("softmax", lambda: _layer("Softmax", 1), (5,)),
    ("logsoftmax", lambda: _layer("LogSoftmax", -1), (2, 5)),
    ("zeropad2d", lambda: _layer("ZeroPad2d", (1, 2, 0, 3)), (2, 3, 4)),
    ("reflectionpad1d", lambda: _layer("ReflectionPad1d", 2), (2, 5)),
    ("replicationpad2d", lambda: _layer("ReplicationPad2d", 1), (2, 3, 4)),
    ("upsample-nearest", lambda: _layer("Upsample", scale_factor=2), (2, 3, 4)),
    ("upsample-bilinear", lambda: _layer("Upsample", scale_factor=2, mode="bilinear"), (2, 3, 4)),
    ("upsample-align", lambda: _layer("Upsample", size=(5, 7), mode="bilinear",
                                      align_corners=True), (2, 3, 4)),
    ("adaptiveavgpool", lambda: _layer("AdaptiveAvgPool2d", 1), (3, 4, 6)),
    ("identity", lambda: _layer("Identity"), (3, 4)),
]


def _affine(layer):
    rng = np.random.default_rng(2)
    layer.weight.data = rng.standard_normal(layer.weight.shape).astype(np.float32)
    layer.bias.data = rng.standard_normal(layer.bias.shape).astype(np.float32)
    return layer


def _bn(layer):
    rng = np.random.default_rng(0)
    n = layer.num_features
    layer.running_mean = rng.standard_normal(n).astype(np.float32)
    layer.running_var = (rng.random(n) + 0.5).astype(np.float32)
    layer.weight.data = (rng.random(n) + 0.5).astype(np.float32)
    layer.bias.data = rng.standard_normal(n).astype(np.float32)
    return layer.eval()


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_round_trip_through_onnxruntime(case, tmp_path):
    _, make, shape = case
    model = make()
    path = tmp_path / "m.onnx"
    assert nx.save(model, path, shape) == path
    x = np.random.default_rng(1).standard_normal((3, *shape)).astype(np.float32)
    model.eval()
    want = model(x)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, {"input": x})
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    m = onnx.load(str(path))
    assert m.opset_import[0].version == nx.EXPORT_OPSET and m.ir_version == nx.EXPORT_IR_VERSION
    # and back into ndconv: same outputs, the weights under their state_dict names
    back = nx.load(path)
    np.testing.assert_allclose(back(x), want, rtol=1e-5, atol=1e-6)
    params = {k for k, _ in model.named_parameters()}
    assert {k for k, _ in back.named_parameters()} == params


def test_a_whole_cnn_and_a_checkpoint_round_trip(tmp_path):
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, rng=0), nn.ReLU(), nn.MaxPool2d(2),
        nn.Sequential(nn.Conv2d(4, 8, 3, padding=1, rng=1), nn.ReLU(), nn.AvgPool2d(2)),
        nn.Flatten(), nn.Linear(32, 10, rng=2))
    path = tmp_path / "cnn.onnx"
    nx.save(model, path, (1, 8, 8))
    back = nx.load(path)
    back.load_state_dict(model.state_dict())  # same keys and shapes
    x = np.random.default_rng(0).standard_normal((5, 1, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(back(x), model(x), rtol=1e-5, atol=1e-6)
    (y,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    np.testing.assert_allclose(y, model(x), rtol=1e-5, atol=1e-5)


def test_unexportable_layers_are_refused_before_writing(tmp_path):
    path = tmp_path / "m.onnx"
    with pytest.raises(ValueError, match="padding_mode='circular'"):
        nx.save(nn.Conv2d(1, 1, 3, padding=1, padding_mode="circular"), path, (1, 5, 5))
    with pytest.raises(ValueError, match=r"cannot export layer 1 \(FullyConnected\)"):
        nx.save(nn.Sequential(nn.Flatten(), nn.FullyConnected((4,), (2,))), path, (4,))
    with pytest.raises(ValueError, match="divisor_override"):
        nx.save(nn.AvgPool2d(2, divisor_override=3), path, (1, 4, 4))
    with pytest.raises(TypeError, match="`model` must be an ndconv.nn.Module"):
        nx.save("model", path, (1, 4, 4))
    assert not os.listdir(tmp_path)  # nothing written, not even a temporary file


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"old")
    model = nn.Linear(3, 2, rng=0)

    def boom(self):
        raise RuntimeError("disk full")

    import onnx as onnx_mod

    monkeypatch.setattr(onnx_mod.ModelProto, "SerializeToString", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        nx.save(model, path, (3,))
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["m.onnx"]


def test_float64_model_exports_as_float32(tmp_path):
    model = nn.Conv1d(1, 2, 3, dtype=np.float64, rng=0)
    nx.save(model, tmp_path / "m.onnx", (1, 6))
    x = np.random.default_rng(0).standard_normal((2, 1, 6))
    (y,) = ort.InferenceSession(str(tmp_path / "m.onnx"),
                                providers=["CPUExecutionProvider"]).run(None, {"input": x.astype(np.float32)})
    np.testing.assert_allclose(y, model(x), rtol=1e-5, atol=1e-6)

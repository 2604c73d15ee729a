"""Bad ONNX files: a clear ValueError naming the model, before large allocations."""

from __future__ import annotations

import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import ndconv.nn as nn  # noqa: E402
import ndconv.onnx as nx  # noqa: E402
from ndconv import plan  # noqa: E402


def _model(w=None):
    w = np.arange(12, dtype=np.float32).reshape(3, 4) if w is None else w
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", w.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", w.shape[1]])],
        [numpy_helper.from_array(w, "w")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def test_a_good_model_loads_runs_and_trains_in_float32():
    from ndconv import optim

    net = nx.load(_model().SerializeToString())
    x = np.ones((2, 3), np.float32)
    w = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(net(x), x @ w)
    opt = optim.SGD(net.parameters(), lr=0.5)
    net.backward(np.ones((2, 4), np.float32))
    opt.step()  # the weights are writable arrays of their own
    np.testing.assert_array_equal(net.state_dict()["w"], w - 1)


@pytest.mark.parametrize("data", [b"not an onnx file at all\n", b"\x89PNG\r\n\x1a\n" + bytes(50),
                                  bytes(range(256)) * 4])
def test_not_onnx(tmp_path, data):
    p = tmp_path / "x.onnx"
    p.write_bytes(data)
    with pytest.raises(ValueError, match=r"ONNX model '.*x\.onnx' is not an ONNX model"):
        nx.load(p)


def test_empty_file_folder_missing_file_and_wrong_type(tmp_path):
    (tmp_path / "e.onnx").write_bytes(b"")
    with pytest.raises(ValueError, match="is empty"):
        nx.load(tmp_path / "e.onnx")
    with pytest.raises(ValueError, match="is a folder"):
        nx.load(tmp_path)
    with pytest.raises(FileNotFoundError):
        nx.load(tmp_path / "missing.onnx")
    with pytest.raises(TypeError, match="`path_or_bytes` must be a path or bytes"):
        nx.load(12)


def test_truncated_anywhere_is_a_value_error(tmp_path):
    data = _model(np.ones((30, 20), np.float32)).SerializeToString()
    for cut in sorted({1, 2, 5, 10, 20, 40, len(data) // 3, len(data) // 2, len(data) - 10,
                       len(data) - 1} | set(range(1, len(data), max(1, len(data) // 40)))):
        with pytest.raises(ValueError, match="ONNX model"):
            nx.load(data[:cut])


def test_external_data(tmp_path):
    m = _model()
    path = tmp_path / "ext.onnx"
    onnx.save_model(m, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    net = nx.load(path)  # present: read from the model's folder
    np.testing.assert_array_equal(net(np.eye(3, dtype=np.float32)),
                                  np.arange(12, dtype=np.float32).reshape(3, 4))
    with pytest.raises(ValueError, match="load the model from its path, not from bytes"):
        nx.load(path.read_bytes())
    (tmp_path / "weights.bin").write_bytes(b"\0" * 8)  # shorter than declared
    with pytest.raises(ValueError, match="holds 8 bytes"):
        nx.load(path)
    os.remove(tmp_path / "weights.bin")
    with pytest.raises(ValueError, match="'weights.bin', which is missing"):
        nx.load(path)


def test_external_data_outside_the_folder_is_refused(tmp_path):
    m = _model()
    t = m.graph.initializer[0]
    t.ClearField("raw_data")
    t.ClearField("float_data")
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "../../etc/passwd"), ("length", "48")):
        e = t.external_data.add()
        e.key, e.value = k, v
    (tmp_path / "sub").mkdir()
    p = tmp_path / "sub" / "m.onnx"
    p.write_bytes(m.SerializeToString())
    with pytest.raises(ValueError, match="outside the model's folder"):
        nx.load(p)


def test_graph_that_does_not_type_check():
    g = helper.make_graph(
        [helper.make_node("Add", ["x", "i"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
         helper.make_tensor_value_info("i", TensorProto.INT64, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    with pytest.raises(ValueError, match="does not pass onnx.checker"):
        nx.load(m.SerializeToString())
    g2 = helper.make_graph([helper.make_node("Relu", ["nowhere"], ["y"])], "g", [],
                           [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    m2 = helper.make_model(g2, opset_imports=[helper.make_opsetid("", 17)])
    m2.ir_version = 8
    with pytest.raises(ValueError, match="does not pass onnx.checker"):
        nx.load(m2.SerializeToString())


def test_huge_declared_tensor_with_little_data():
    m = _model()
    t = m.graph.initializer[0]
    del t.dims[:]
    t.dims.extend([100_000, 100_000])  # 40 GB declared, 48 bytes held
    with pytest.raises(ValueError, match=r"declares shape \[100000, 100000\] \(40,000,000,000 "
                                         r"bytes\) but holds 48 bytes"):
        nx.load(m.SerializeToString())


def test_tensors_beyond_the_memory_guard():
    data = _model(np.ones((300, 200), np.float32)).SerializeToString()
    with plan.memory_limit("100kB"):
        with pytest.raises(nx.ModelTooLargeError, match="240,000 bytes") as info:
            nx.load(data)
    assert isinstance(info.value, ValueError) and isinstance(info.value, plan.MemoryLimitError)
    nx.load(data)  # fine without the limit


def test_float16_model_needs_a_dtype():
    m = _model(np.ones((3, 4), np.float16))
    m.graph.input[0].type.tensor_type.elem_type = TensorProto.FLOAT16
    m.graph.output[0].type.tensor_type.elem_type = TensorProto.FLOAT16
    with pytest.raises(ValueError, match="float16; ndconv computes in float32 or float64"):
        nx.load(m.SerializeToString())
    net = nx.load(m.SerializeToString(), dtype=np.float32)
    assert net(np.ones((1, 3), np.float32)).dtype == np.float32
    with pytest.raises(ValueError, match="`dtype`"):
        nx.load(m.SerializeToString(), dtype=np.int32)


def test_infer_keeps_nothing_for_backward():
    import tracemalloc

    from ndconv import nn as _nn

    model = _nn.Sequential(*[_nn.Linear(256, 256, rng=i) for i in range(8)])
    data = nx.export.to_model(model, (256,)).SerializeToString()
    net = nx.load(data)
    x = np.ones((512, 256), np.float32)
    with pytest.raises(RuntimeError, match="before forward"):
        net.backward(np.ones((512, 256), np.float32))
    peaks = []
    for run in (net.infer, net.forward):
        tracemalloc.start()
        y = run(x)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        np.testing.assert_allclose(y, model(x), rtol=1e-5, atol=1e-5)
    # forward keeps every layer's input for backward (8 x 0.5 MB); infer about two
    assert peaks[0] < 0.5 * peaks[1]
    net.infer(x)
    with pytest.raises(RuntimeError, match="infer keeps nothing"):
        net.backward(np.ones((512, 256), np.float32))


def test_bad_inputs_at_run_time():
    net = nx.load(_model().SerializeToString())
    with pytest.raises(TypeError, match="input 'x' must have dtype float32"):
        net(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"input 'x' must have shape \('\?', 3\)"):
        net(np.ones((2, 4), np.float32))
    with pytest.raises(ValueError, match="takes 1 input"):
        net(np.ones((2, 3), np.float32), np.ones(2))
    with pytest.raises(ValueError, match="one gradient per output"):
        net(np.ones((2, 3), np.float32))
        net.backward(np.ones((2, 4), np.float32), np.ones(1))


def test_import_ndconv_does_not_import_onnx():
    import subprocess
    import sys

    code = "import sys, ndconv, ndconv.nn, ndconv.plan; print('onnx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert nn.Module  # the layers are there without onnx

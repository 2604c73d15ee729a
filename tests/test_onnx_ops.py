"""Every ONNX operator of ndconv.onnx: forward against onnxruntime (float32),
backward (float64) against central differences, attributes refused up front."""

from __future__ import annotations

import numpy as np
import pytest

from onnx_helpers import check_gradients, numpy_helper, nx, one_node_model, run_ort

R = np.random.default_rng(0)


def f32(*shape):
    return R.standard_normal(shape).astype(np.float32)


def i64(*v):
    return np.array(v, dtype=np.int64)


def pos(*shape):
    return (R.random(shape) + 0.5).astype(np.float32)


# (id, op_type, graph inputs, attributes, initializers, opset)
CASES = [
    ("conv-asym-pads", "Conv", {"x": f32(2, 4, 7, 6)}, {"pads": [1, 0, 2, 1], "strides": [2, 1]},
     {"w": f32(3, 4, 3, 2), "b": f32(3)}, 17),
    ("conv-groups-dilation", "Conv", {"x": f32(1, 4, 9, 9)}, {"group": 2, "dilations": [2, 1]},
     {"w": f32(6, 2, 3, 3)}, 17),
    ("conv-depthwise-1d", "Conv", {"x": f32(2, 3, 11)}, {"group": 3, "pads": [1, 1]},
     {"w": f32(3, 1, 3)}, 17),
    ("conv-same-upper", "Conv", {"x": f32(1, 2, 6, 7)}, {"auto_pad": "SAME_UPPER", "strides": [2, 2]},
     {"w": f32(2, 2, 4, 3)}, 17),
    ("conv-same-lower", "Conv", {"x": f32(1, 2, 6, 7)}, {"auto_pad": "SAME_LOWER"},
     {"w": f32(2, 2, 2, 2)}, 17),
    ("conv-3d", "Conv", {"x": f32(1, 2, 5, 4, 4)}, {"pads": [1, 0, 1, 0, 1, 1]},
     {"w": f32(2, 2, 3, 2, 2), "b": f32(2)}, 11),
    ("convT-asym-outpad", "ConvTranspose", {"x": f32(2, 3, 4, 5)},
     {"strides": [2, 3], "pads": [1, 0, 0, 2], "output_padding": [1, 2]},
     {"w": f32(3, 2, 3, 3), "b": f32(2)}, 17),
    ("convT-groups-dilation", "ConvTranspose", {"x": f32(1, 4, 3, 3)},
     {"group": 2, "dilations": [2, 1], "strides": [1, 2]}, {"w": f32(4, 1, 2, 3)}, 17),
    ("convT-same-upper", "ConvTranspose", {"x": f32(1, 2, 3, 4)},
     {"auto_pad": "SAME_UPPER", "strides": [2, 2]}, {"w": f32(2, 3, 3, 3)}, 17),
    ("convT-output-shape", "ConvTranspose", {"x": f32(1, 2, 3, 3)},
     {"strides": [2, 2], "output_shape": [7, 8]}, {"w": f32(2, 1, 3, 3)}, 17),
    ("convT-1d", "ConvTranspose", {"x": f32(2, 2, 5)}, {"strides": [2], "pads": [0, 1]},
     {"w": f32(2, 3, 4)}, 11),
    ("batchnorm", "BatchNormalization", {"x": f32(2, 3, 4, 5)}, {"epsilon": 1e-3},
     {"s": f32(3), "b": f32(3), "m": f32(3), "v": pos(3)}, 15),
    ("layernorm", "LayerNormalization", {"x": f32(2, 3, 4)}, {"axis": -2, "epsilon": 1e-3},
     {"s": f32(3, 4), "b": f32(3, 4)}, 17),
    ("layernorm-nobias", "LayerNormalization", {"x": f32(2, 3, 4)}, {}, {"s": f32(4)}, 17),
    ("instancenorm", "InstanceNormalization", {"x": f32(2, 3, 4, 5)}, {"epsilon": 1e-3},
     {"s": f32(3), "b": f32(3)}, 17),
    ("instancenorm-1d", "InstanceNormalization", {"x": f32(2, 3, 6)}, {}, {"s": f32(3), "b": f32(3)}, 11),
    ("gemm-trans", "Gemm", {"a": f32(4, 3)}, {"transA": 1, "transB": 1, "alpha": 0.5, "beta": 2.0},
     {"b": f32(5, 4), "c": f32(5)}, 17),
    ("gemm", "Gemm", {"a": f32(3, 4)}, {}, {"b": f32(4, 5), "c": f32(3, 1)}, 17),
    ("matmul-batched", "MatMul", {"a": f32(2, 1, 3, 4)}, {}, {"b": f32(3, 4, 2)}, 17),
    ("matmul-vec", "MatMul", {"a": f32(4)}, {}, {"b": f32(2, 4, 3)}, 17),
    ("relu", "Relu", {"x": f32(3, 4)}, {}, {}, 17),
    ("leakyrelu", "LeakyRelu", {"x": f32(3, 4)}, {"alpha": 0.2}, {}, 17),
    ("prelu", "PRelu", {"x": f32(2, 3, 4)}, {}, {"s": f32(3, 1)}, 17),
    ("sigmoid", "Sigmoid", {"x": f32(3, 4) * 5}, {}, {}, 17),
    ("tanh", "Tanh", {"x": f32(3, 4)}, {}, {}, 17),
    ("elu", "Elu", {"x": f32(3, 4)}, {"alpha": 0.7}, {}, 17),
    ("selu", "Selu", {"x": f32(3, 4)}, {}, {}, 17),
    ("hardsigmoid", "HardSigmoid", {"x": f32(3, 4) * 4}, {"alpha": 0.3, "beta": 0.4}, {}, 17),
    ("hardswish", "HardSwish", {"x": f32(4, 5) * 4}, {}, {}, 17),
    ("softplus", "Softplus", {"x": f32(3, 4)}, {}, {}, 17),
    ("exp", "Exp", {"x": f32(3, 4)}, {}, {}, 17),
    ("clip-inputs", "Clip", {"x": f32(3, 4)}, {}, {"lo": np.float32(-0.5), "hi": np.float32(0.7)}, 17),
    ("clip-attrs", "Clip", {"x": f32(3, 4)}, {"min": -0.3, "max": 0.4}, {}, 6),
    ("softmax-13", "Softmax", {"x": f32(2, 3, 4)}, {"axis": 1}, {}, 13),
    ("softmax-11", "Softmax", {"x": f32(2, 3, 4)}, {"axis": 1}, {}, 11),
    ("logsoftmax", "LogSoftmax", {"x": f32(2, 3, 4)}, {}, {}, 17),
    ("maxpool-asym-ceil-dil", "MaxPool", {"x": f32(2, 2, 9, 8)},
     {"kernel_shape": [3, 2], "strides": [2, 2], "pads": [1, 0, 0, 1], "ceil_mode": 1,
      "dilations": [1, 2]}, {}, 17),
    ("maxpool-same", "MaxPool", {"x": f32(1, 2, 7, 7)},
     {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"}, {}, 17),
    ("maxpool-1d", "MaxPool", {"x": f32(2, 3, 10)}, {"kernel_shape": [3], "strides": [3]}, {}, 17),
    ("avgpool-asym-ceil", "AveragePool", {"x": f32(2, 2, 10, 8)},
     {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 0, 1, 1], "ceil_mode": 1}, {}, 17),
    ("avgpool-include-pad", "AveragePool", {"x": f32(1, 2, 7, 6)},
     {"kernel_shape": [3, 2], "strides": [2, 2], "pads": [1, 1, 1, 0], "count_include_pad": 1}, {}, 17),
    ("avgpool-include-pad-ceil", "AveragePool", {"x": f32(1, 1, 6, 6)},
     {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "count_include_pad": 1,
      "ceil_mode": 1}, {}, 17),
    ("avgpool-3d", "AveragePool", {"x": f32(1, 2, 5, 4, 6)}, {"kernel_shape": [2, 2, 3]}, {}, 17),
    ("globalavgpool", "GlobalAveragePool", {"x": f32(2, 3, 4, 5)}, {}, {}, 17),
    ("globalmaxpool", "GlobalMaxPool", {"x": f32(2, 3, 4, 5)}, {}, {}, 17),
    ("pad-constant", "Pad", {"x": f32(2, 3, 4)}, {"mode": "constant"},
     {"p": i64(0, 1, 2, 0, -1, 1), "v": np.float32(1.5)}, 17),
    ("pad-reflect", "Pad", {"x": f32(1, 2, 4, 5)}, {"mode": "reflect"},
     {"p": i64(0, 0, 2, 1, 0, 0, 3, 4)}, 17),
    ("pad-edge", "Pad", {"x": f32(1, 2, 4, 5)}, {"mode": "edge"}, {"p": i64(0, 0, 1, 5, 0, 0, 3, 0)}, 17),
    ("pad-axes-18", "Pad", {"x": f32(2, 3, 4)}, {"mode": "reflect"}, {"p": i64(1, 2, 2, 1),
     "_": np.array([], np.float32), "a": i64(-1, 1)}, 18),
    ("pad-attrs-2", "Pad", {"x": f32(1, 2, 3, 3)}, {"mode": "edge", "pads": [0, 0, 1, 2, 0, 0, 2, 1]},
     {}, 2),
    ("add-broadcast", "Add", {"a": f32(2, 3, 4)}, {}, {"b": f32(3, 1)}, 17),
    ("sub-broadcast", "Sub", {"a": f32(3, 1)}, {}, {"b": f32(2, 3, 4)}, 17),
    ("mul-broadcast", "Mul", {"a": f32(2, 1, 4)}, {}, {"b": f32(3, 1)}, 17),
    ("div-broadcast", "Div", {"a": f32(2, 3, 4)}, {}, {"b": pos(4)}, 17),
    ("concat", "Concat", {"a": f32(2, 3, 4), "b": f32(2, 1, 4)}, {"axis": -2}, {}, 17),
    ("flatten", "Flatten", {"x": f32(2, 3, 4, 5)}, {"axis": 2}, {}, 17),
    ("reshape", "Reshape", {"x": f32(2, 3, 4)}, {}, {"s": i64(0, -1, 2)}, 17),
    ("transpose", "Transpose", {"x": f32(2, 3, 4)}, {"perm": [1, 2, 0]}, {}, 17),
    ("squeeze-13", "Squeeze", {"x": f32(2, 1, 4, 1)}, {}, {"a": i64(-1, 1)}, 13),
    ("squeeze-11", "Squeeze", {"x": f32(2, 1, 4, 1)}, {"axes": [1]}, {}, 11),
    ("unsqueeze-13", "Unsqueeze", {"x": f32(2, 4)}, {}, {"a": i64(0, -1)}, 13),
    ("unsqueeze-11", "Unsqueeze", {"x": f32(2, 4)}, {"axes": [1, 3]}, {}, 11),
    ("gather", "Gather", {"x": f32(5, 3)}, {"axis": 0}, {"i": i64(4, 0, -1, 4)}, 17),
    ("gather-axis1", "Gather", {"x": f32(2, 5, 3)}, {"axis": 1}, {"i": np.array([[1, 1], [0, 3]], np.int64)}, 17),
    ("slice", "Slice", {"x": f32(4, 6, 5)}, {}, {"s": i64(1, -1), "e": i64(4, 0),
     "a": i64(0, 2), "st": i64(2, -2)}, 17),
    ("slice-9", "Slice", {"x": f32(4, 6)}, {"starts": [1, 0], "ends": [3, 100], "axes": [0, 1]}, {}, 9),
    ("split-13", "Split", {"x": f32(2, 7)}, {"axis": 1, "_n": 2}, {"s": i64(3, 4)}, 13),
    ("split-11", "Split", {"x": f32(6, 2)}, {"axis": 0, "split": [1, 5], "_n": 2}, {}, 11),
    ("split-18", "Split", {"x": f32(2, 7)}, {"axis": 1, "num_outputs": 3, "_n": 3}, {}, 18),
    ("shape", "Shape", {"x": f32(2, 3, 4)}, {"start": 1}, {}, 17),
    ("cast", "Cast", {"x": f32(2, 3)}, {"to": 11}, {}, 17),
    ("constantofshape", "ConstantOfShape", {}, {"value": numpy_helper.from_array(np.array([2.5], np.float32))},
     {"s": i64(2, 3)}, 17),
    ("identity", "Identity", {"x": f32(2, 3)}, {}, {}, 17),
    ("dropout-10", "Dropout", {"x": f32(2, 3)}, {"ratio": 0.3}, {}, 10),
    ("dropout-13", "Dropout", {"x": f32(2, 3)}, {}, {"r": np.float32(0.2)}, 13),
    ("resize-nearest", "Resize", {"x": f32(1, 2, 3, 4)}, {"mode": "nearest"},
     {"roi": np.array([], np.float32), "sc": np.array([1, 1, 2, 1.5], np.float32)}, 17),
    ("resize-nearest-asym-floor", "Resize", {"x": f32(1, 2, 3, 4)},
     {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"},
     {"roi": np.array([], np.float32), "sc": np.array([1, 1, 2, 3], np.float32)}, 13),
    ("resize-linear-sizes", "Resize", {"x": f32(1, 2, 4, 5)}, {"mode": "linear"},
     {"roi": np.array([], np.float32), "sc": np.array([], np.float32), "sz": i64(1, 2, 7, 3)}, 17),
    ("resize-linear-align", "Resize", {"x": f32(1, 2, 3, 4)},
     {"mode": "linear", "coordinate_transformation_mode": "align_corners"},
     {"roi": np.array([], np.float32), "sc": np.array([1, 1, 2, 2], np.float32)}, 17),
    ("resize-linear-pytorch", "Resize", {"x": f32(1, 1, 3, 5)},
     {"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"},
     {"roi": np.array([], np.float32), "sc": np.array([1, 1, 1.5, 0.6], np.float32)}, 17),
    ("resize-10", "Resize", {"x": f32(1, 1, 3, 2)}, {"mode": "nearest"},
     {"sc": np.array([1, 1, 2, 2], np.float32)}, 10),
    ("upsample-9", "Upsample", {"x": f32(1, 2, 2, 3)}, {"mode": "nearest"},
     {"sc": np.array([1, 1, 2, 3], np.float32)}, 9),
    ("upsample-9-linear", "Upsample", {"x": f32(1, 2, 2, 3)}, {"mode": "linear"},
     {"sc": np.array([1, 1, 2, 2], np.float32)}, 9),
]


def _model(op, inputs, attrs, inits, opset):
    attrs = dict(attrs)
    n = attrs.pop("_n", 1)
    inits = dict(inits)
    order = list(inputs) + list(inits)
    order = ["" if k == "_" else k for k in order]
    inits.pop("_", None)
    attrs["_order"] = order
    return one_node_model(op, inputs, attrs, inits=inits, n_outputs=n, opset=opset)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_forward_matches_onnxruntime(case):
    _, op, inputs, attrs, inits, opset = case
    m = _model(op, inputs, attrs, inits, opset)
    want = run_ort(m, inputs)
    got = nx.load(m)(*inputs.values())
    got = got if isinstance(got, tuple) else (got,)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        assert g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


NO_GRAD = ("Dropout", "Shape", "ConstantOfShape")


@pytest.mark.parametrize("case", [c for c in CASES if c[1] not in NO_GRAD],
                         ids=[c[0] for c in CASES if c[1] not in NO_GRAD])
def test_backward_matches_finite_differences(case):
    _, op, inputs, attrs, inits, opset = case
    m = _model(op, inputs, attrs, inits, opset)
    check_gradients(m, inputs)


def test_custom_domain_and_all_unsupported_nodes_are_named():
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Foo", ["x"], ["a"], domain="com.example"),
             helper.make_node("Celu", ["a"], ["b"]), helper.make_node("Relu", ["b"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17),
                                            helper.make_opsetid("com.example", 1)])
    m.ir_version = 8
    with pytest.raises(ValueError) as info:
        nx.load(m.SerializeToString())
    text = str(info.value)
    assert "node 0 ('', Foo): operator domain 'com.example' is not supported" in text
    assert "node 1 ('', Celu): operator Celu is not supported" in text


def test_bn_statistics_and_shapes_are_not_trained():
    _, op, inputs, attrs, inits, opset = next(c for c in CASES if c[0] == "batchnorm")
    net = nx.load(_model(op, inputs, attrs, inits, opset))
    assert sorted(k for k, _ in net.named_parameters()) == ["b", "s"]
    assert sorted(k for k, _ in net.named_buffers()) == ["m", "v"]
    assert list(net.state_dict()) == ["s", "b", "m", "v"]  # parameters, then buffers
    _, op, inputs, attrs, inits, opset = next(c for c in CASES if c[0] == "reshape")
    net = nx.load(_model(op, inputs, attrs, inits, opset))
    assert list(net.named_parameters()) == [] and "s" in net.constants


Y33 = np.zeros((1, 2, 3, 3), np.float32)
Y44 = np.zeros((1, 2, 4, 4), np.float32)
SCALES = {"roi": np.array([], np.float32), "sc": np.array([1, 1, 1, 1], np.float32)}
UNSUPPORTED = [  # (id, op, attributes, initializers, output types, message)
    ("op", "Celu", {}, {}, [Y44], "operator Celu is not supported"),
    ("attribute", "Relu", {"foo": 1}, {}, [Y44], None),  # onnx.checker refuses it first
    ("resize mode", "Resize", {"mode": "cubic"}, SCALES, [Y44], "mode='cubic' is not supported"),
    ("resize crop", "Resize", {"coordinate_transformation_mode": "tf_crop_and_resize"}, SCALES,
     [Y44], "coordinate_transformation_mode='tf_crop_and_resize' is not supported"),
    ("pad mode", "Pad", {"mode": "mirror"}, {"p": np.zeros(8, np.int64)}, [Y44],
     "mode='mirror' is not supported"),
    ("maxpool indices", "MaxPool", {"kernel_shape": [2, 2], "strides": [1, 1]}, {},
     [Y33, Y33.astype(np.int64)], "output 1"),
    ("bn training", "BatchNormalization", {"training_mode": 1},
     {"s": np.ones(2, np.float32), "b": np.ones(2, np.float32), "m": np.ones(2, np.float32),
      "v": np.ones(2, np.float32)}, [Y44, np.ones(2, np.float32), np.ones(2, np.float32)],
     "training_mode=1"),
    ("avgpool dilation", "AveragePool", {"kernel_shape": [1, 1], "dilations": [2, 2]}, {}, [Y44],
     "dilations=[2, 2] is not supported"),
    ("conv auto_pad", "Conv", {"auto_pad": "SAME_MIDDLE"}, {"w": np.ones((2, 2, 1, 1), np.float32)},
     [Y44], "auto_pad='SAME_MIDDLE' is not supported"),
]


@pytest.mark.parametrize("case", UNSUPPORTED, ids=[c[0] for c in UNSUPPORTED])
def test_unsupported_refused_at_load_naming_node_and_model(case):
    _, op, attrs, inits, outs, msg = case
    m = one_node_model(op, {"x": f32(1, 2, 4, 4)}, {**attrs, "_order": ["x", *inits]},
                       inits=inits, n_outputs=len(outs), opset=19, out_types=outs)
    if msg is None:  # onnx itself refuses the node: ndconv says so, naming the model
        with pytest.raises(ValueError, match="ONNX model .* does not pass onnx.checker"):
            nx.load(m)
        return
    with pytest.raises(ValueError, match="ONNX model") as info:
        nx.load(m)
    text = str(info.value)
    assert msg in text and f"node 0 ('', {op})" in text and "nothing was computed" in text

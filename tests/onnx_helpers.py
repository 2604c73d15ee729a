"""Shared helpers of the ONNX tests: build one-node models, compare with onnxruntime,
check gradients by central differences."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import ndconv.onnx as nx  # noqa: E402
from reference import numeric_grad  # noqa: E402

NP2ONNX = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE,
           np.dtype(np.int64): TensorProto.INT64, np.dtype(np.bool_): TensorProto.BOOL}


def one_node_model(op_type, inputs, attrs=None, *, inits=None, n_outputs=1, opset=17,
                   outputs=None, out_types=None):
    """A model with one node: ``inputs`` (name -> array) are graph inputs,
    ``inits`` (name -> array) initializers; input order is the node's."""
    inits = inits or {}
    names = list(inputs) + [n for n in inits if n not in inputs]
    order = attrs.pop("_order", None) if attrs else None
    node_inputs = order or names
    outs = outputs or [f"y{i}" for i in range(n_outputs)]
    node = helper.make_node(op_type, node_inputs, outs, **(attrs or {}))
    g = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info(k, NP2ONNX[v.dtype], v.shape) for k, v in inputs.items()],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs]
        if out_types is None else
        [helper.make_tensor_value_info(o, NP2ONNX[np.dtype(t.dtype)], t.shape)
         for o, t in zip(outs, out_types)],
        [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    if out_types is None:
        # give the outputs their real types (onnx.checker requires them): from onnx's
        # shape inference where it knows them, else ask onnxruntime
        probe = helper.make_model(helper.make_graph([node], "g", list(g.input), [], list(g.initializer)),
                                  opset_imports=[helper.make_opsetid("", opset)])
        probe.ir_version = 8
        known = {v.name: v for v in onnx.shape_inference.infer_shapes(probe).graph.value_info}
        if all(o in known and known[o].type.tensor_type.HasField("shape") for o in outs):
            del m.graph.output[:]
            m.graph.output.extend(known[o] for o in outs)
            return m.SerializeToString()
        try:
            res = run_ort(m.SerializeToString(), {k: v for k, v in inputs.items()})
        except Exception:  # noqa: BLE001  (ops onnxruntime refuses: keep float outputs)
            res = [np.zeros((1,), np.float32)] * len(outs)
        return one_node_model(op_type, inputs, {**(attrs or {}), **({"_order": order} if order else {})},
                              inits=inits, n_outputs=n_outputs, opset=opset, outputs=outputs,
                              out_types=res)
    return m.SerializeToString()


def run_ort(model_bytes, inputs):
    sess = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    return sess.run(None, inputs)


def check_gradients(model_bytes, inputs, rtol=1e-5, atol=1e-6):
    """ndconv's backward (float64) against central differences, inputs and parameters."""
    net = nx.load(model_bytes, dtype=np.float64)
    xs = [v.astype(np.float64) if v.dtype.kind == "f" else v for v in inputs.values()]
    y = net(*xs)
    ys = y if isinstance(y, tuple) else (y,)
    rng = np.random.default_rng(1)
    rs = [rng.standard_normal(v.shape) for v in ys]

    def loss():
        out = net(*xs)
        out = out if isinstance(out, tuple) else (out,)
        return sum(float((o * r).sum()) for o, r in zip(out, rs))

    net(*xs)
    net.zero_grad()
    gx = net.backward(*rs)
    gx = gx if isinstance(gx, tuple) else (gx,)
    for x, g in zip(xs, gx):
        if x.dtype.kind == "f":
            np.testing.assert_allclose(g, numeric_grad(loss, x), rtol=rtol, atol=atol)
    for name, p in net.named_parameters():
        np.testing.assert_allclose(p.grad, numeric_grad(loss, p.data), rtol=rtol, atol=atol,
                                   err_msg=name)
    return net

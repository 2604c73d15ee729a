"""The accounting of :mod:`ndconv.plan` on an imported graph: one Step per node.

Shapes come from running one sample of zeros through the graph; weights,
FLOPs and receptive-field rules come from each node's operator and its
weights, with plan's own formulas (:func:`ndconv.plan.conv`,
:func:`ndconv.plan.conv_transpose`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from ..lecture import plan

if TYPE_CHECKING:
    from ..core._typing import Shape
    from .graph import OnnxModule

# operators through which the receptive field passes unchanged (element-wise or
# a pure re-layout of the same values)
_MERGE = {"Relu", "LeakyRelu", "PRelu", "Sigmoid", "Tanh", "Elu", "Selu", "HardSigmoid",
          "HardSwish", "Softplus", "Softsign", "Exp", "Log", "Sqrt", "Neg", "Abs", "Erf",
          "Clip", "Add", "Sub", "Mul", "Div", "Pow", "Identity", "Dropout", "Cast",
          "BatchNormalization", "Concat", "Flatten", "Reshape", "Squeeze",
          "Unsqueeze", "Split"}
_WHOLE = {"Gemm", "MatMul", "GlobalAveragePool", "GlobalMaxPool", "Softmax", "LogSoftmax",
          "LayerNormalization"}


def _size(net: OnnxModule, name: str) -> int:
    if not name:
        return 0
    p = net._parameters.get(name)
    return 0 if p is None else p.size


def _value(net: OnnxModule, name: str) -> Any:  # an ndarray (None for an absent name)
    p = net._parameters.get(name)
    if p is not None:
        return p.data
    return net._buffers[name] if name in net._buffers else net.constants.get(name)


def _describe(net: OnnxModule, op_type: str, op: Any, ins: list[str], in_shape: Shape,
              out_shape: Shape) -> tuple[str, int, int, int, Any]:
    """``(label, weights, biases, flops, field)`` of one node (per sample)."""
    w = _size(net, ins[1]) if len(ins) > 1 else 0
    if op_type == "Conv":
        W = _value(net, ins[1])
        k = tuple(W.shape[2:])
        s, d, pairs = op.geometry(in_shape[1:], k)
        r = plan.conv(in_shape, W.shape[0], k, s, pairs, d, int(op.attrs["group"]),
                      bias=len(ins) > 2 and bool(ins[2]))
        return (f"Conv({in_shape[0]}, {W.shape[0]}, k={k})", r.weights,
                _size(net, ins[2]) if len(ins) > 2 else 0, r.flops,
                ("window", k, s, d, [lo for lo, _ in pairs]))
    if op_type == "ConvTranspose":
        W = _value(net, ins[1])
        r = plan.conv_transpose(in_shape, out_shape, W.size, 0)
        return (f"ConvTranspose({in_shape[0]}, {out_shape[0]}, k={tuple(W.shape[2:])})", W.size,
                _size(net, ins[2]) if len(ins) > 2 else 0, r.flops, "unknown")
    if op_type in ("MaxPool", "AveragePool"):
        s, d, pairs, _ = op._layout(np.empty((1, *in_shape), np.float32))
        return (f"{op_type}(k={op.k}, s={s})", 0, 0, 0,
                ("window", op.k, s, d, [lo for lo, _ in pairs]))
    if op_type == "Pad":
        # a shift of the window by the padding before each spatial dim
        _, _, crop, grow, _ = op._saved
        lo = [g[0] + c[0] for g, c in zip(grow[-(len(in_shape) - 1):], crop[-(len(in_shape) - 1):])]
        n = len(lo)
        return "Pad", 0, 0, 0, ("window", (1,) * n, (1,) * n, (1,) * n, lo)
    if op_type == "Gemm":
        b = _size(net, ins[2]) if len(ins) > 2 else 0
        return f"Gemm({w:,} weights)", w, b, 2 * w, "whole"
    if op_type == "MatMul":
        # per sample: one multiply-add per weight for each row of the sample
        rows = math.prod(out_shape[:-1]) if len(out_shape) > 1 else 1
        return "MatMul", w, 0, 2 * w * rows, "whole"
    if op_type in ("BatchNormalization", "LayerNormalization"):
        return op_type, _size(net, ins[1]), _size(net, ins[2]) if len(ins) > 2 else 0, 0, "merge"
    if op_type == "PRelu":
        return op_type, w, 0, 0, "merge"
    if op_type in _MERGE:
        return op_type, 0, 0, 0, "merge"
    if op_type in _WHOLE:
        return op_type, 0, 0, 0, "whole"
    return op_type, 0, 0, 0, "unknown"


def plan_steps(net: OnnxModule, input_shape: Shape) -> list[plan.Step]:
    """:class:`ndconv.plan.Step` per float-valued node of ``net`` for one sample."""
    if len(net.input_names) != 1:
        raise ValueError(f"{net.where}: the accounting needs a model with one input "
                         f"(it has {len(net.input_names)})")
    dtype = net.input_dtypes[0]
    shapes: dict[str, tuple[Shape, np.dtype[Any]]] = {}
    net._run((np.zeros((1, *input_shape), dtype),), shapes)
    src = {net.input_names[0]: "input"}
    shapes[net.input_names[0]] = ((1, *input_shape), dtype)
    steps: list[plan.Step] = []
    for index, name, op_type, ins, outs, op in net.nodes:
        out = outs[0]
        if out not in shapes or shapes[out][1].kind != "f":
            continue  # shape arithmetic (Shape, Gather of dims, ...), not a layer
        data = [n for n in ins if n and n in shapes and n not in net._parameters]
        if not data:
            continue  # computed from weights and constants alone, not a layer
        in_shape = shapes[data[0]][0][1:] if data else ()
        out_shape = shapes[out][0][1:]
        label, wts, biases, flops, field = _describe(net, op_type, op, ins,
                                                     tuple(in_shape), tuple(out_shape))
        steps.append(plan.Step(name or f"{index}", label, tuple(src.get(n, n) for n in ins), out,
                               tuple(in_shape), tuple(out_shape), wts, biases, flops, field))
    return steps

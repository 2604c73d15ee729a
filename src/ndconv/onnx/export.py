"""Export: an ndconv Sequential as an ONNX model that onnxruntime runs.

One function per layer kind writes that layer's nodes (dispatch on the class
name, so layers that exist only in some versions of ndconv need no import
here). Weights keep their ``state_dict`` names, so :func:`ndconv.onnx.load`
of the file gives a model whose ``load_state_dict`` takes the original's.
The file is checked with ``onnx.checker`` (with shape inference) and written
atomically.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core import _args
from ..io._files import atomic_write
from . import _read

if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Iterable, Iterator, Sequence

    from ..core._typing import ArrayLike, Shape
    from ..nn.module import Module

    #: writes one layer's nodes; returns the name of its output tensor
    _Emit = Callable[["_Builder", Any, str, str, Shape], str]

# Opset 17 / IR 8: run by onnxruntime >= 1.13 and onnxruntime-web (whose
# WebAssembly backend has the CPU operators); LayerNormalization is opset 17.
EXPORT_OPSET = 17
EXPORT_IR_VERSION = 8


class _Builder:
    def __init__(self, onnx: Any) -> None:
        self.onnx = onnx
        self.nodes: list[Any] = []  # onnx NodeProto
        self.inits: list[Any] = []  # onnx TensorProto
        self.count = 0

    def const(self, name: str, arr: ArrayLike) -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def scalar(self, name: str, value: ArrayLike) -> str:
        """A Constant node (not an initializer: an importer trains initializers)."""
        from onnx import numpy_helper

        arr = np.asarray(value)
        return self.node("Constant", [], name, value=numpy_helper.from_array(
            arr.astype(np.float32) if arr.dtype.kind == "f" or arr.ndim == 0 else arr))

    def weight(self, name: str, arr: ArrayLike) -> str:
        return self.const(name, np.asarray(arr, np.float32))

    @staticmethod
    def key(name: str, attr: str) -> str:
        """The state_dict key of a layer's tensor (a lone layer's keys have no prefix)."""
        return f"{name}.{attr}" if name else attr

    def node(self, op: str, inputs: list[str], name: str, **attrs: Any) -> str:
        self.count += 1
        name = name or "layer"
        out = f"{name}:{op}:{self.count}"
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [out], name=out, **attrs))
        return out


def _ints(v: Iterable[Any]) -> list[int]:
    return [int(i) for i in v]


def _conv(b: _Builder, layer: Any, name: str, x: str, shape: Shape) -> str:
    k = layer.kernel_size
    n = len(k)
    pairs = _args.padding_pairs(layer.padding, k, layer.dilation, layer.stride)
    mode = getattr(layer, "padding_mode", "zeros")
    w = b.weight(b.key(name, "weight"), layer.weight.data)
    ins = [x, w] + ([b.weight(b.key(name, "bias"), layer.bias.data)] if layer.bias is not None else [])
    if mode != "zeros":
        onnx_mode = {"reflect": "reflect", "replicate": "edge"}.get(mode)
        if onnx_mode is None:
            raise ValueError(f"layer {name} ({type(layer).__name__}): padding_mode={mode!r} "
                             f"has no ONNX Pad mode in opset {EXPORT_OPSET} (reflect and "
                             "replicate do)")
        p = [0, 0] + [lo for lo, _ in pairs] + [0, 0] + [hi for _, hi in pairs]
        ins[0] = b.node("Pad", [x, b.const(b.key(name, "pads"), np.array(p, np.int64))], name,
                        mode=onnx_mode)
        pairs = ((0, 0),) * n
    return b.node("Conv", ins, name, kernel_shape=_ints(k), strides=_ints(layer.stride),
                  dilations=_ints(layer.dilation), group=int(layer.groups),
                  pads=[lo for lo, _ in pairs] + [hi for _, hi in pairs])


def _conv_transpose(b: _Builder, layer: Any, name: str, x: str, shape: Shape) -> str:
    ins = [x, b.weight(b.key(name, "weight"), layer.weight.data)]
    if layer.bias is not None:
        ins.append(b.weight(b.key(name, "bias"), layer.bias.data))
    p = _ints(layer.padding)
    return b.node("ConvTranspose", ins, name, kernel_shape=_ints(layer.kernel_size),
                  strides=_ints(layer.stride), dilations=_ints(layer.dilation),
                  group=int(layer.groups), pads=p + p,
                  output_padding=_ints(layer.output_padding))


def _linear(b: _Builder, layer: Any, name: str, x: str, shape: Shape) -> str:
    w = b.weight(b.key(name, "weight"), layer.weight.data)
    bias = b.weight(b.key(name, "bias"), layer.bias.data) if layer.bias is not None else None
    if len(shape) == 2:
        return b.node("Gemm", [x, w] + ([bias] if bias else []), name, transB=1)
    y = b.node("MatMul", [x, b.node("Transpose", [w], name, perm=[1, 0])], name)
    return b.node("Add", [y, bias], name) if bias else y


def _pool(b: _Builder, layer: Any, name: str, x: str, shape: Shape) -> str:
    kind = "MaxPool" if type(layer).__name__.startswith("Max") else "AveragePool"
    p = _ints(layer.padding)
    attrs = dict(kernel_shape=_ints(layer.kernel_size), strides=_ints(layer.stride), pads=p + p,
                 ceil_mode=int(layer.ceil_mode))
    if kind == "MaxPool":
        attrs["dilations"] = _ints(layer.dilation)
    else:
        if getattr(layer, "divisor_override", None) is not None:
            raise ValueError(f"layer {name} (AvgPool): divisor_override has no ONNX form")
        attrs["count_include_pad"] = int(layer.count_include_pad)
    return b.node(kind, [x], name, **attrs)


def _flatten(b: _Builder, layer: Any, name: str, x: str, shape: Shape) -> str:
    nd = len(shape)
    s, e = layer.start_dim % nd, layer.end_dim % nd
    if s == 1 and e == nd - 1:
        return b.node("Flatten", [x], name, axis=1)
    new = [0] + [shape[i] for i in range(1, s)] + [-1] + [shape[i] for i in range(e + 1, nd)]
    if s == 0:
        raise ValueError(f"layer {name} (Flatten): start_dim=0 flattens the batch dim, which "
                         "the exported model keeps dynamic")
    return b.node("Reshape", [x, b.const(b.key(name, "shape"), np.array(new, np.int64))], name)


def _batchnorm(b: _Builder, layer: Any, name: str, x: str, shape: Shape) -> str:
    if getattr(layer, "running_mean", None) is None:
        raise ValueError(f"layer {name} ({type(layer).__name__}): without running statistics "
                         "(track_running_stats=False) it has no inference form to export")
    c = layer.num_features
    scale = layer.weight.data if layer.weight is not None else np.ones(c)
    bias = layer.bias.data if layer.bias is not None else np.zeros(c)
    return b.node("BatchNormalization",
                  [x, b.weight(b.key(name, "weight"), scale), b.weight(b.key(name, "bias"), bias),
                   b.weight(b.key(name, "running_mean"), layer.running_mean),
                   b.weight(b.key(name, "running_var"), layer.running_var)],
                  name, epsilon=float(layer.eps))


def _groupnorm(b: _Builder, layer: Any, name: str, x: str, shape: Shape) -> str:
    # torch's own form: (N, G, -1), InstanceNormalization, back to x's shape, affine
    g, c = layer.num_groups, layer.num_channels
    xr = b.node("Reshape", [x, b.const(b.key(name, "groups"), np.array([0, g, -1], np.int64))], name)
    n = b.node("InstanceNormalization", [xr, b.scalar(name, np.ones(g, np.float32)),
                                         b.scalar(name, np.zeros(g, np.float32))],
               name, epsilon=float(layer.eps))
    y = b.node("Reshape", [n, b.node("Shape", [x], name)], name)
    if getattr(layer, "weight", None) is None:
        return y
    view = b.const(b.key(name, "view"), np.array([c] + [1] * (len(shape) - 2), np.int64))
    y = b.node("Mul", [y, b.node("Reshape", [b.weight(b.key(name, "weight"), layer.weight.data),
                                             view], name)], name)
    return b.node("Add", [y, b.node("Reshape", [b.weight(b.key(name, "bias"), layer.bias.data),
                                                view], name)], name)


def _layernorm(b: _Builder, layer: Any, name: str, x: str, shape: Shape) -> str:
    ns = tuple(layer.normalized_shape)
    w = layer.weight.data if getattr(layer, "weight", None) is not None else np.ones(ns)
    bias = layer.bias.data if getattr(layer, "bias", None) is not None else np.zeros(ns)
    return b.node("LayerNormalization",
                  [x, b.weight(b.key(name, "weight"), w), b.weight(b.key(name, "bias"), bias)], name,
                  axis=-len(ns), epsilon=float(layer.eps))


def _prelu(b: _Builder, layer: Any, name: str, x: str, shape: Shape) -> str:
    w = b.weight(b.key(name, "weight"), layer.weight.data)
    # (C,) as in torch, viewed as (C, 1, ..., 1) to broadcast along the channel dim
    view = [-1] + [1] * (len(shape) - 2) if layer.weight.size > 1 else [1]
    slope = b.node("Reshape", [w, b.const(b.key(name, "view"), np.array(view, np.int64))], name)
    return b.node("PRelu", [x, slope], name)


def _softmax(b: _Builder, layer: Any, name: str, x: str, shape: Shape) -> str:
    if layer.dim is None:
        raise ValueError(f"layer {name} ({type(layer).__name__}): give `dim` to export it")
    op = "Softmax" if type(layer).__name__ == "Softmax" else "LogSoftmax"
    return b.node(op, [x], name, axis=int(layer.dim))


def _gelu(b: _Builder, layer: Any, name: str, x: str, shape: Shape) -> str:
    if getattr(layer, "approximate", "none") != "none":
        raise ValueError(f"layer {name} (GELU): approximate={layer.approximate!r} is not exported")
    # x * 0.5 * (1 + erf(x / sqrt 2)), torch's own opset-17 export
    e = b.node("Erf", [b.node("Div", [x, b.scalar(name, math.sqrt(2))],
                              name)], name)
    h = b.node("Add", [e, b.scalar(name, 1)], name)
    return b.node("Mul", [b.node("Mul", [x, h], name), b.scalar(name, 0.5)],
                  name)


def _pad(b: _Builder, layer: Any, name: str, x: str, shape: Shape) -> str:
    pairs = layer._pairs
    n = len(pairs)
    # (_kind is never None here: the layer was dispatched by it)
    mode = {"ReflectionPad": "reflect", "ReplicationPad": "edge"}.get(
        _kind(layer), "constant")  # type: ignore[arg-type]
    lead = len(shape) - n
    p = [0] * lead + [lo for lo, _ in pairs] + [0] * lead + [hi for _, hi in pairs]
    ins = [x, b.const(b.key(name, "pads"), np.array(p, np.int64))]
    if mode == "constant":
        ins.append(b.const(b.key(name, "value"), np.float32(getattr(layer, "value", 0.0))))
    return b.node("Pad", ins, name, mode=mode)


def _upsample(b: _Builder, layer: Any, name: str, x: str, shape: Shape) -> str:
    n = len(shape) - 2
    mode = "nearest" if layer.mode == "nearest" else "linear"
    attrs = {"mode": mode}
    if mode == "nearest":  # torch 'nearest': floor(out_index * in / out)
        attrs.update(coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    else:
        attrs["coordinate_transformation_mode"] = (
            "align_corners" if layer.align_corners else "pytorch_half_pixel")
    roi = b.const(b.key(name, "roi"), np.zeros(0, np.float32))
    if layer.size is not None:
        size = layer.size if isinstance(layer.size, tuple) else (layer.size,) * n
        sizes = b.node("Concat", [b.node("Slice", [b.node("Shape", [x], name),
                                                   b.const(b.key(name, "s0"), np.array([0], np.int64)),
                                                   b.const(b.key(name, "s1"), np.array([2], np.int64))],
                                         name),
                                  b.const(b.key(name, "size"), np.array(size, np.int64))], name, axis=0)
        return b.node("Resize", [x, roi, "", sizes], name, **attrs)
    sf = layer.scale_factor if isinstance(layer.scale_factor, tuple) else (layer.scale_factor,) * n
    scales = b.const(b.key(name, "scales"), np.array([1, 1, *sf], np.float32))
    return b.node("Resize", [x, roi, scales], name, **attrs)


def _adaptive_avg(b: _Builder, layer: Any, name: str, x: str, shape: Shape) -> str:
    out = layer.output_size
    n = len(shape) - 2
    out = out if isinstance(out, tuple) else (out,) * n
    out = tuple(s if o is None else o for o, s in zip(out, shape[2:]))
    if all(o == 1 for o in out):
        return b.node("GlobalAveragePool", [x], name)
    if any(s % o for s, o in zip(shape[2:], out)):
        raise ValueError(f"layer {name} (AdaptiveAvgPool): output {out} does not divide the "
                         f"input {shape[2:]}, so it is no fixed-window average pool")
    k = [s // o for s, o in zip(shape[2:], out)]
    return b.node("AveragePool", [x], name, kernel_shape=k, strides=k)


def _unary(op: str, **fixed: Any) -> _Emit:
    def emit(b: _Builder, layer: Any, name: str, x: str, shape: Shape) -> str:
        attrs = {k: (v(layer) if callable(v) else v) for k, v in fixed.items()}
        return b.node(op, [x], name, **attrs)

    return emit


def _silu(b: _Builder, layer: Any, name: str, x: str, shape: Shape) -> str:
    return b.node("Mul", [x, b.node("Sigmoid", [x], name)], name)


_EMIT: dict[str, _Emit] = {
    "Conv": _conv, "ConvTranspose": _conv_transpose, "Linear": _linear,
    "MaxPool": _pool, "AvgPool": _pool, "Flatten": _flatten,
    "ReLU": _unary("Relu"), "Sigmoid": _unary("Sigmoid"), "Tanh": _unary("Tanh"),
    "Dropout": _unary("Identity"), "Identity": _unary("Identity"),
    "LeakyReLU": _unary("LeakyRelu", alpha=lambda m: float(m.negative_slope)),
    "ELU": _unary("Elu", alpha=lambda m: float(m.alpha)),
    "Hardswish": _unary("HardSwish"),
    "Hardsigmoid": _unary("HardSigmoid", alpha=1 / 6, beta=0.5),
    "SiLU": _silu, "GELU": _gelu, "PReLU": _prelu,
    "Softmax": _softmax, "LogSoftmax": _softmax,
    "BatchNorm": _batchnorm, "LayerNorm": _layernorm, "GroupNorm": _groupnorm,
    "ZeroPad": _pad, "ConstantPad": _pad, "ReflectionPad": _pad, "ReplicationPad": _pad,
    "Upsample": _upsample, "AdaptiveAvgPool": _adaptive_avg,
}


def _kind(layer: object) -> str | None:
    """The key of ``_EMIT`` for ``layer`` (Conv2d -> Conv, BatchNorm2d -> BatchNorm), or None."""
    for cls in type(layer).__mro__:
        name = cls.__name__
        for key in (name, name[:-2] if name[-2:] in ("1d", "2d", "3d") else None):
            if key in _EMIT:
                return key
    return None


def _emitter(layer: object) -> _Emit | None:
    kind = _kind(layer)
    return None if kind is None else _EMIT[kind]


def _leaves(module: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    children = list(module.named_children())
    if not children or type(module).__name__ != "Sequential":
        yield prefix, module
        return
    for name, child in children:
        yield from _leaves(child, f"{prefix}.{name}" if prefix else name)


def to_model(model: Module, input_shape: Sequence[int] | None = None) -> Any:
    """The ``onnx.ModelProto`` of ``model`` (see :func:`save`)."""
    onnx = _read.require_onnx()
    from ..nn.module import Module
    from .graph import OnnxModule

    if isinstance(model, OnnxModule):  # an imported graph, with its current weights
        m = model.to_onnx()
        onnx.checker.check_model(m, full_check=True)
        return m
    if input_shape is None:
        raise TypeError("`input_shape` (one sample's shape, e.g. (3, 224, 224)) is required "
                        "to export an ndconv model")
    if not isinstance(model, Module):
        raise TypeError(f"`model` must be an ndconv.nn.Module, got {type(model).__name__}")
    shape = _args.shape_tuple(input_shape, "input_shape")
    leaves = list(_leaves(model))
    missing = [(n or type(m).__name__, type(m).__name__) for n, m in leaves if _emitter(m) is None]
    if missing:
        known = ", ".join(sorted(_EMIT))
        raise ValueError(f"cannot export layer {missing[0][0]} ({missing[0][1]}): ndconv.onnx.save "
                         f"writes Sequentials of {known}")
    params = list(model.parameters())
    dtype = params[0].data.dtype if params else np.dtype(np.float32)
    was_training = model.training
    model.eval()  # the exported graph is the inference form (Dropout off, BN statistics)
    try:
        b = _Builder(onnx)
        x = np.zeros((1, *shape), dtype)
        cur = "input"
        for name, layer in leaves:
            # (never None: layers without an emitter were refused above)
            cur = _emitter(layer)(b, layer, name, cur, x.shape)  # type: ignore[misc]
            x = layer(x)  # the next layer's input shape (and a check that the chain runs)
    finally:
        model.train(was_training)
    h = onnx.helper
    graph = h.make_graph(
        b.nodes, "ndconv",
        [h.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["batch", *shape])],
        [h.make_tensor_value_info("output", onnx.TensorProto.FLOAT, ["batch", *x.shape[1:]])],
        b.inits)
    graph.node[-1].output[0] = "output"
    m = h.make_model(graph, opset_imports=[h.make_opsetid("", EXPORT_OPSET)],
                     producer_name="ndconv")
    m.ir_version = EXPORT_IR_VERSION
    onnx.checker.check_model(m, full_check=True)
    return m


def save(model: Module, path: str | os.PathLike[str],
         input_shape: Sequence[int] | None = None) -> str | os.PathLike[str]:
    """Write ``model`` as an ONNX file that onnxruntime runs with the same outputs.

    Parameters
    ----------
    model : ndconv.nn.Module
        An imported :class:`~ndconv.onnx.OnnxModule` (its graph is written
        back with the current, e.g. fine-tuned, weights, in the file's
        opset and dtypes), or a layer or a (nested) Sequential of Conv1d/2d/3d, ConvTranspose,
        Linear, ReLU, Sigmoid, Tanh, LeakyReLU, ELU, PReLU, GELU, SiLU,
        Hardswish, Hardsigmoid, Softmax, LogSoftmax, Flatten, Dropout,
        Identity, MaxPool, AvgPool, BatchNorm, LayerNorm, GroupNorm, the padding layers,
        Upsample and AdaptiveAvgPool (the last ones where ndconv has them).
    path : str or os.PathLike
        Written atomically (a temporary file renamed into place).
    input_shape : tuple of int
        One sample's shape without the batch dim, e.g. ``(3, 224, 224)``; the
        batch dim stays dynamic (``"batch"``). Not needed for an OnnxModule.

    Returns
    -------
    str
        ``path``.

    Notes
    -----
    Opset 17, IR version 8 (onnxruntime >= 1.13 and onnxruntime-web).
    Weights are written as float32 under their ``state_dict`` names; the
    graph is the inference form (Dropout is the identity, BatchNorm uses its
    running statistics). Input ``"input"``, output ``"output"``.
    """
    m = to_model(model, input_shape)
    data = m.SerializeToString()
    with atomic_write(path) as f:
        f.write(data)
    return path

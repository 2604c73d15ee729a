"""An imported ONNX graph as an ndconv Module: forward, exact backward, trainable weights."""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import numpy as np

from ..nn.module import Module, Parameter
from . import _read
from .ops import OPS, Node

if TYPE_CHECKING:
    import os
    from collections.abc import Mapping

    from ..core._typing import DTypeLike, NDArray, Shape
    from ..lecture.plan import Step
    from .ops import Op

    #: ``(index, name, op_type, inputs, outputs, op)`` of one node
    _NodeRow = tuple[int, str, str, list[str], list[str], Op]
    #: a declared input: name, shape (None for symbolic dims), dtype
    _Input = tuple[str, "tuple[int | None, ...] | None", np.dtype[Any]]

_DEFAULT_DOMAINS = ("", "ai.onnx")


class OnnxModule(Module):
    """A network imported from ONNX (built by :func:`ndconv.onnx.load`).

    ``forward(*inputs)`` runs the graph's nodes in order and returns the output
    (a tuple when the graph has several); ``backward(*grad_outputs)`` carries
    gradients back through every node, adds them into each
    :class:`~ndconv.nn.Parameter`'s ``.grad`` and returns the gradient of the
    input (a tuple for several inputs; None for integer inputs).

    Attributes
    ----------
    input_names, output_names : list of str
    input_shapes : list of tuple
        Declared shapes; symbolic dims (a dynamic batch) are None.
    input_dtypes : list of numpy.dtype
    constants : dict
        Initializers that are neither trained nor state: shapes, axes,
        scales, integer tensors. BatchNormalization's running statistics are
        buffers (``named_buffers()``), in ``state_dict`` as in PyTorch.
    nodes : list of (onnx NodeProto fields, operator)
        ``(index, name, op_type, inputs, outputs, op)`` per node.
    opset : int
    """

    # Set by load(): declared here for the type checker only.
    _skeleton: Any  # the onnx.ModelProto without its tensors
    _file_dtypes: dict[str, np.dtype[Any]]

    def __init__(self, where: str, opset: int, inputs: list[_Input], outputs: list[str],
                 nodes: list[_NodeRow], params: Mapping[str, NDArray[Any]],
                 constants: dict[str, Any],
                 buffers: Mapping[str, NDArray[Any]] | None = None) -> None:
        super().__init__()
        self.where = where
        self.opset = opset
        self.input_names = [n for n, _, _ in inputs]
        self.input_shapes = [s for _, s, _ in inputs]
        self.input_dtypes = [d for _, _, d in inputs]
        self.output_names = list(outputs)
        self.nodes = nodes
        self.constants = constants
        for name, arr in params.items():
            # initializer names ("conv1.weight") are the state_dict keys, dots and all
            p = Parameter(arr)
            self._parameters[name] = p
            object.__setattr__(self, name, p)  # getattr(net, "conv1.weight") as Module expects
        for name, arr in (buffers or {}).items():
            # state that is not trained (BatchNorm statistics), kept as PyTorch keeps it
            self._buffers[name] = arr
            object.__setattr__(self, name, arr)
        self._needs_grad = self._grad_flow()
        self._ready = False  # forward has kept what backward needs
        self._last_use = self._lifetimes()

    # -- analysis at load time ------------------------------------------------

    def _grad_flow(self) -> set[str]:
        need = {n for n, d in zip(self.input_names, self.input_dtypes) if d.kind == "f"}
        need |= set(self._parameters)
        for _, _, _, ins, outs, op in self.nodes:
            if any(ins[i] in need for i in op.GRAD_INPUTS if i < len(ins) and ins[i]):
                need.update(o for o in outs if o)
        return need

    def _lifetimes(self) -> dict[str, int]:
        last: dict[str, int] = {}
        for k, (_, _, _, ins, _, _) in enumerate(self.nodes):
            for n in ins:
                if n:
                    last[n] = k
        return last

    # -- computation ------------------------------------------------------------

    def __call__(self, *inputs: Any) -> Any:
        return self.forward(*inputs)

    def _check_inputs(self, inputs: tuple[Any, ...]) -> list[NDArray[Any]]:
        if len(inputs) != len(self.input_names):
            raise ValueError(f"{self.where} takes {len(self.input_names)} input(s) "
                             f"({', '.join(self.input_names)}), got {len(inputs)}")
        out = []
        for x, name, shape, dtype in zip(inputs, self.input_names, self.input_shapes,
                                         self.input_dtypes):
            x = np.asarray(x)
            if dtype.kind == "f" and x.dtype != dtype:
                raise TypeError(f"input {name!r} must have dtype {dtype} (as the model "
                                f"declares), got {x.dtype}; cast it with .astype()")
            if dtype.kind in "iub" and x.dtype != dtype:
                if x.dtype.kind not in "iub":
                    raise TypeError(f"input {name!r} must be {dtype}, got {x.dtype}")
                x = x.astype(dtype)
            if shape is not None and (len(shape) != x.ndim or any(
                    s is not None and s != n for s, n in zip(shape, x.shape))):
                want = tuple("?" if s is None else s for s in shape)
                raise ValueError(f"input {name!r} must have shape {want} (? = any size), "
                                 f"got {x.shape}")
            out.append(x)
        return out

    def forward(self, *inputs: Any) -> Any:
        """Run the graph; return the output array (a tuple for several outputs)."""
        return self._run(inputs)

    def infer(self, *inputs: Any) -> Any:
        """``forward`` without keeping anything for ``backward``: inference memory is
        the live tensors only (each freed after its last reader)."""
        return self._run(inputs, keep=False)

    def _run(self, inputs: tuple[Any, ...],
             shapes: dict[str, tuple[Shape, np.dtype[Any]]] | None = None,
             keep: bool = True) -> Any:
        """Run the nodes; ``shapes`` (a dict) receives every tensor's shape; ``keep``
        False releases each operator's saved tensors right after it runs."""
        env = dict(self.constants)
        env.update(self._buffers)
        env.update((k, p.data) for k, p in self._parameters.items())
        env.update(zip(self.input_names, self._check_inputs(inputs)))
        pinned = (set(self.output_names) | set(self.constants) | set(self._buffers)
                  | set(self._parameters))
        for k, (index, name, op_type, ins, outs, op) in enumerate(self.nodes):
            args = [env[n] if n else None for n in ins]
            while args and args[-1] is None:
                args.pop()
            try:
                res = op.forward(*args)
            except ValueError as exc:
                raise ValueError(f"{self.where}: node {index} ({name!r}, {op_type}) with inputs "
                                 f"{[getattr(a, 'shape', None) for a in args]}: {exc}") from None
            if not keep:
                op.release()
            if not isinstance(res, tuple):
                res = (res,)
            for n, v in zip(outs, res):
                if n:
                    env[n] = v
                    if shapes is not None:
                        shapes[n] = (np.shape(v), np.asarray(v).dtype)
            for n in ins:  # free what no later node reads (inference memory)
                if n and self._last_use.get(n) == k and n not in pinned:
                    env.pop(n, None)
        result = tuple(env[n] for n in self.output_names)
        object.__setattr__(self, "_ready", keep)
        return result[0] if len(result) == 1 else result

    def backward(self, *grad_outputs: Any) -> Any:
        """Gradients back through the graph from ``d loss / d output(s)``.

        Adds into every Parameter's ``.grad``; returns ``d loss / d input``
        (a tuple for several inputs, None for an integer input).
        """
        if len(grad_outputs) == 1 and isinstance(grad_outputs[0], tuple):
            grad_outputs = grad_outputs[0]
        if len(grad_outputs) != len(self.output_names):
            raise ValueError(f"backward takes one gradient per output "
                             f"({len(self.output_names)}), got {len(grad_outputs)}")
        if not self._ready:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward "
                               "(infer keeps nothing for backward)")
        grads: dict[str, Any] = {}
        for n, g in zip(self.output_names, grad_outputs):
            if g is not None:
                grads[n] = np.asarray(g)
        for index, name, op_type, ins, outs, op in reversed(self.nodes):
            gys = [grads.pop(o, None) if o else None for o in outs]
            if all(g is None for g in gys) or not any(o in self._needs_grad for o in outs if o):
                continue
            gins = op.backward(*gys)
            for i, (n, g) in enumerate(zip(ins, gins)):
                if g is None or not n or n not in self._needs_grad or i not in op.GRAD_INPUTS:
                    continue
                grads[n] = g if n not in grads else grads[n] + g
        for k, p in self._parameters.items():
            if k in grads:
                p.accumulate(grads[k])
        gx = tuple(grads.get(n) for n in self.input_names)
        return gx[0] if len(gx) == 1 else gx

    def to_onnx(self) -> Any:
        """The graph with the current weights as an ``onnx.ModelProto`` (see ndconv.onnx.save)."""
        from onnx import numpy_helper

        m = type(self._skeleton)()
        m.CopyFrom(self._skeleton)
        tensors = dict(self.constants)
        tensors.update(self._buffers)
        tensors.update((k, p.data) for k, p in self._parameters.items())
        m.graph.initializer.extend(
            numpy_helper.from_array(np.asarray(v, self._file_dtypes.get(k, v.dtype)), k)
            for k, v in tensors.items())
        return m

    def plan_steps(self, input_shape: Shape) -> list[Step]:
        """The nodes as :class:`ndconv.plan.Step` records for ``plan.layer_rows``
        (one sample of shape ``input_shape`` is run to learn every tensor's shape)."""
        from .summary import plan_steps

        return plan_steps(self, input_shape)

    def extra_repr(self) -> str:
        kinds: dict[str, int] = {}
        for n in self.nodes:
            kinds[n[2]] = kinds.get(n[2], 0) + 1
        return (f"{len(self.nodes)} nodes ({', '.join(f'{k} x{v}' for k, v in kinds.items())}), "
                f"opset {self.opset}, {self.num_parameters():,} parameters")


def _value_info(onnx: Any, vi: Any, float_dtype: np.dtype[Any] | None, where: str) -> _Input:
    t = vi.type
    if not t.HasField("tensor_type"):
        raise ValueError(f"{where}: input {vi.name!r} is not a tensor (sequences and maps are "
                         "not supported)")
    try:
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.tensor_type.elem_type))
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{where}: input {vi.name!r} has an unsupported type") from None
    dtype = _float(dtype, float_dtype, f"input {vi.name!r}", where)
    shape = None
    if t.tensor_type.HasField("shape"):
        shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in t.tensor_type.shape.dim)
    return vi.name, shape, dtype


def _float(dtype: np.dtype[Any], float_dtype: np.dtype[Any] | None, what: str,
           where: str) -> np.dtype[Any]:
    if dtype.kind != "f":
        return dtype
    if float_dtype is not None:
        return np.dtype(float_dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"{where}: {what} is {dtype}; ndconv computes in float32 or float64: "
                         "pass dtype=np.float32 to convert the model")
    return dtype


def load(path_or_bytes: str | os.PathLike[str] | bytes, *,
         dtype: DTypeLike | None = None) -> OnnxModule:
    """Import an ONNX model as a trainable :class:`OnnxModule`.

    Parameters
    ----------
    path_or_bytes : str, os.PathLike or bytes
        An ``.onnx`` file (external data is read from its folder) or its bytes.
    dtype : {None, numpy.float32, numpy.float64}
        Compute every float tensor in this dtype (``np.float64`` for gradient
        checks, ``np.float32`` for a float16 model); None keeps the model's.

    Returns
    -------
    OnnxModule
        Float initializers that receive gradients (weights, biases, scales)
        are its Parameters, named as in the model (a PyTorch export keeps the
        ``state_dict`` names); BatchNormalization's running statistics are
        buffers (in ``state_dict``, as PyTorch's); the others are ``.constants``.

    Raises
    ------
    ValueError
        The file is not ONNX, is truncated, misses its external data, fails
        ``onnx.checker`` with shape inference, declares tensors it does not
        hold; or a node uses an operator, attribute or attribute value that
        ndconv does not handle (named with the node and the model), all
        before any computation. Too large tensors raise
        ``ModelTooLargeError`` (both a ValueError and
        :class:`ndconv.plan.MemoryLimitError`).

    Examples
    --------
    >>> import ndconv.onnx
    >>> net = ndconv.onnx.load("resnet.onnx")           # doctest: +SKIP
    >>> y = net(x)                                      # doctest: +SKIP
    >>> gx = net.backward(np.ones_like(y))              # doctest: +SKIP
    """
    onnx = _read.require_onnx()
    if dtype is not None:
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise ValueError(f"`dtype` (={dtype}) must be None, float32 or float64")
    model, where = _read.read_model(path_or_bytes)
    g = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in _DEFAULT_DOMAINS), None)
    if opset is None:
        raise ValueError(f"{where} imports no version of the default ONNX domain")

    init, file_dtypes = OrderedDict(), {}
    for t in g.initializer:
        arr = _read.to_array(onnx, t)
        if arr.dtype.kind == "f":
            arr = arr.astype(_float(arr.dtype, dtype, f"initializer {t.name!r}", where), copy=False)
        file_dtypes[t.name] = _read.to_array(onnx, t).dtype if arr.dtype.kind == "f" else arr.dtype
        init[t.name] = arr
    inputs = [_value_info(onnx, vi, dtype, where) for vi in g.input if vi.name not in init]
    # torch.onnx.export stores equal initializers once and makes the others
    # Identity nodes of it (a fresh BatchNorm's running_var = its weight, all
    # ones): give each its own copy, so that training one leaves the others.
    nodes = []
    for i, nd in enumerate(g.node):
        if nd.op_type == "Identity" and nd.input[0] in init and nd.output[0] not in init:
            init[nd.output[0]] = init[nd.input[0]].copy()
            file_dtypes[nd.output[0]] = file_dtypes[nd.input[0]]
        else:
            nodes.append((i, nd))

    # every node's operator and attributes, checked before anything runs
    problems: list[str] = []
    built: list[_NodeRow] = []
    known: dict[str, Any] = {}
    for i, nd in nodes:
        label = f"node {i} ({nd.name!r}, {nd.op_type})"
        if nd.domain not in _DEFAULT_DOMAINS:
            problems.append(f"{label}: operator domain {nd.domain!r} is not supported")
            continue
        cls = OPS.get(nd.op_type)
        if cls is None:
            problems.append(f"{label}: operator {nd.op_type} is not supported")
            continue
        try:
            attrs = {a.name: _read.attribute_value(onnx, a) for a in nd.attribute}
            consts = {k: (known[n] if n in known else init[n]) for k, n in enumerate(nd.input)
                      if n in known or n in init}
            op = cls(Node(nd.op_type, attrs, opset, list(nd.input), list(nd.output), consts, dtype))
        except ValueError as exc:
            problems.append(f"{label}: {exc}")
            continue
        if nd.op_type == "Constant":
            known[nd.output[0]] = op.value  # type: ignore[attr-defined]  # a Constant op's
        built.append((i, nd.name, nd.op_type, list(nd.input), list(nd.output), op))
    if problems:
        more = f" (and {len(problems) - 1} more: {'; '.join(problems[1:4])}" \
               f"{'; ...' if len(problems) > 4 else ''})" if len(problems) > 1 else ""
        raise ValueError(f"{where}: {problems[0]}{more}; nothing was computed")

    trained: set[str] = set()
    for *_, ins, _, op in built:
        trained.update(ins[k] for k in op.GRAD_INPUTS if k < len(ins) and ins[k] in init)
    # onnx hands out read-only views of the file's bytes: the weights are trained
    # in place, so each Parameter owns a writable copy
    params = OrderedDict((k, np.array(v, copy=True)) for k, v in init.items()
                         if k in trained and v.dtype.kind == "f")
    stats = {ins[k] for _, _, op_type, ins, _, _ in built if op_type == "BatchNormalization"
             for k in (3, 4) if k < len(ins) and ins[k] in init and ins[k] not in params}
    buffers = OrderedDict((k, np.array(init[k], copy=True)) for k in init if k in stats)
    constants = {k: v for k, v in init.items() if k not in params and k not in buffers}
    outputs = [o.name for o in g.output]
    net = OnnxModule(where, opset, inputs, outputs, built, params, constants, buffers)
    # what save() needs to write the graph back: the model without its tensors
    # (the Module holds them) and the dtype each tensor had in the file
    skeleton = model  # no longer needed as it is: drop its tensors rather than copy them
    del skeleton.graph.initializer[:]
    del skeleton.graph.node[:]
    skeleton.graph.node.extend(nd for _, nd in nodes)
    net._skeleton, net._file_dtypes = skeleton, file_dtypes
    return net

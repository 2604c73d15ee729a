"""Networks that are not a chain: Graph (a builder of layers on values), Add and Concat.

A :class:`Graph` records, in the order they are built, nodes ``value =
module(*values)``. ``forward`` evaluates them in that order (an order that
is topological by construction, since a value exists only once its node is
built); ``backward`` visits them in reverse and *adds* the gradients that
reach a value from each of its uses, which is the chain rule for a value
used twice (a residual block's input feeds both the convolutions and the
skip connection).

Example: a ResNet basic block, whose state-dict keys are torchvision's
(``conv1.weight``, ``bn1.running_mean``, ...)::

    g, relu = nn.Graph(), nn.ReLU()
    x = g.input()
    h = g.layer("conv1", nn.Conv2d(64, 64, 3, padding=1, bias=False), x)
    h = g.layer("relu", relu, g.layer("bn1", nn.BatchNorm2d(64), h))
    h = g.layer("conv2", nn.Conv2d(64, 64, 3, padding=1, bias=False), h)
    h = g.layer("bn2", nn.BatchNorm2d(64), h)
    g.output(g.layer("relu", relu, g.add(h, x)))   # ReLU used twice, as torchvision
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..core import _args
from .module import Module, PerThread

if TYPE_CHECKING:
    from collections.abc import Iterable

    from typing_extensions import Self

    from ..core._typing import ArrayLike, NDArray, Shape

__all__ = ["Graph", "Add", "Concat"]


def _unbroadcast(g: NDArray[Any], shape: Shape) -> NDArray[Any]:
    """Sum ``g`` down to ``shape``: the adjoint of NumPy broadcasting."""
    extra = g.ndim - len(shape)
    if extra:
        g = g.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, s in enumerate(shape) if s == 1 and g.shape[i] != 1)
    return g.sum(axis=axes, keepdims=True) if axes else g


class Add(Module):
    """Element-wise sum of its inputs (with NumPy broadcasting); the residual connection.

    ``backward(g)`` returns one gradient per input: ``g`` summed over the
    dims that input was broadcast along.
    """

    def __init__(self) -> None:
        super().__init__()
        self._cache = None

    def forward(self, *xs: ArrayLike) -> NDArray[Any]:
        if not xs:
            raise ValueError("Add needs at least one input")
        arrays = [np.asarray(x) for x in xs]
        out = arrays[0]
        for x in arrays[1:]:
            out = out + x
        self._cache = [x.shape for x in arrays]
        return out

    # One gradient per input: a tuple, where Module's backward returns one array.
    def backward(self, grad_out: ArrayLike) -> tuple[NDArray[Any], ...]:  # type: ignore[override]
        if self._cache is None:
            raise RuntimeError("Add.backward called before forward")
        g = np.asarray(grad_out)
        return tuple(_unbroadcast(g, s) for s in self._cache)


class Concat(Module):
    """Concatenate its inputs along ``dim`` (as ``torch.cat``); backward splits the gradient.

    Parameters
    ----------
    dim : int
        1 joins channels (a U-Net's skip connections, DenseNet, Inception).
    """

    dim: int

    def __init__(self, dim: int = 1) -> None:
        super().__init__()
        self.dim = _args._as_int(dim, "dim")
        self._cache = None

    def extra_repr(self) -> str:
        return f"dim={self.dim}"

    def forward(self, *xs: ArrayLike) -> NDArray[Any]:
        if not xs:
            raise ValueError("Concat needs at least one input")
        arrays = [np.asarray(x) for x in xs]
        nd = arrays[0].ndim
        if not -nd <= self.dim < nd:
            raise ValueError(f"Concat(dim={self.dim}) is out of range for inputs with {nd} dims")
        d = self.dim % nd
        first = arrays[0].shape
        for i, x in enumerate(arrays):
            if x.ndim != nd or x.shape[:d] + x.shape[d + 1:] != first[:d] + first[d + 1:]:
                raise ValueError(
                    f"Concat(dim={self.dim}) needs inputs that agree except in dim {d}; "
                    f"input 0 has shape {first}, input {i} has shape {x.shape}"
                )
        self._cache = (d, np.cumsum([x.shape[d] for x in arrays])[:-1])
        return np.concatenate(arrays, axis=d)

    def backward(self, grad_out: ArrayLike) -> tuple[NDArray[Any], ...]:  # type: ignore[override]
        if self._cache is None:
            raise RuntimeError("Concat.backward called before forward")
        d, cuts = self._cache
        return tuple(np.split(np.asarray(grad_out), cuts, axis=d))


class Value:
    """A value of a :class:`Graph` (an input or a node's output); only a handle."""

    __slots__ = ("graph", "index")

    graph: Graph
    index: int

    def __init__(self, graph: Graph, index: int) -> None:
        self.graph, self.index = graph, index

    def __repr__(self) -> str:
        return f"Value({self.index})"


class _Node:
    __slots__ = ("name", "module", "inputs", "output")

    name: str
    module: Module
    inputs: tuple[int, ...]
    output: int

    def __init__(self, name: str, module: Module, inputs: tuple[int, ...], output: int) -> None:
        self.name, self.module, self.inputs, self.output = name, module, inputs, output


# Attributes that are state, not a forward's saved intermediate results.
_STATE = frozenset({"_parameters", "_buffers", "_modules", "_non_persistent_buffers", "training"})


def _snapshot(module: Module) -> list[tuple[Module, dict[str, Any]]]:
    """What ``forward`` left in ``module`` (and its children) for ``backward``."""
    snap = []
    for m in module.modules():
        keep = _STATE | set(m._parameters) | set(m._buffers) | set(m._modules)
        saved = {k: v for k, v in vars(m).items() if k not in keep}
        # What forward keeps per thread (Module._cache, ...) lives outside vars(m).
        saved.update({k: getattr(m, k) for k in PerThread.names(type(m))})
        snap.append((m, saved))
    return snap


def _restore(snap: Iterable[tuple[Module, dict[str, Any]]]) -> None:
    for m, saved in snap:
        for k, v in saved.items():
            object.__setattr__(m, k, v)


class Graph(Module):
    """A network of modules on values: residual adds, concatenations, several inputs and outputs.

    Build with :meth:`input`, :meth:`layer` (or :meth:`add`, :meth:`cat`) and
    :meth:`output`; then call it like any module. Each module given to
    :meth:`layer` is registered under its name, so ``state_dict`` keys are
    ``"<name>.weight"``, as the attributes of the equivalent PyTorch module.

    Notes
    -----
    ``forward(*inputs)`` returns one array, or a tuple for several outputs.
    ``backward(*grad_outs)`` takes one gradient per output (``None`` for an
    output the loss does not use) and returns the gradient per input (a tuple
    for several inputs). A module may be used by several nodes (ReLU twice,
    tied weights): what its ``forward`` saved is kept per node, and its
    parameter gradients add up over the uses.
    """

    _run = PerThread()  # forward's saved run, per thread (see Module)

    # The graph's structure (set through object.__setattr__: not submodules).
    _graph_inputs: list[int]
    _nodes: list[_Node]
    _graph_outputs: tuple[int, ...] | None
    _n_values: int
    _auto: int

    def __init__(self) -> None:
        super().__init__()
        object.__setattr__(self, "_graph_inputs", [])
        object.__setattr__(self, "_nodes", [])
        object.__setattr__(self, "_graph_outputs", None)
        object.__setattr__(self, "_n_values", 0)
        object.__setattr__(self, "_auto", 0)
        object.__setattr__(self, "_run", None)

    # -- building ----------------------------------------------------------

    def _new_value(self) -> Value:
        v = Value(self, self._n_values)
        object.__setattr__(self, "_n_values", self._n_values + 1)
        return v

    def _check_value(self, v: object, what: str) -> int:
        if not isinstance(v, Value) or v.graph is not self:
            raise TypeError(f"{what} must be a Value of this Graph, got {v!r}")
        return v.index

    def input(self) -> Value:
        """A new graph input; ``forward`` takes the inputs in creation order."""
        if self._graph_outputs is not None:
            raise RuntimeError("Graph.input after Graph.output: the graph is complete")
        v = self._new_value()
        self._graph_inputs.append(v.index)
        return v

    def layer(self, name: str, module: Module, *inputs: Value) -> Value:
        """Add the node ``module(*inputs)`` and return its output value.

        Parameters
        ----------
        name : str
            Submodule name (state-dict prefix). Reusing a name is allowed only
            for the same module object (a ReLU applied twice).
        module : Module
            With one input, ``backward`` returns one gradient; with several, a
            tuple (as :class:`Add`, :class:`Concat`).
        *inputs : Value
        """
        if self._graph_outputs is not None:
            raise RuntimeError("Graph.layer after Graph.output: the graph is complete")
        if not isinstance(module, Module):
            raise TypeError(f"Graph.layer({name!r}) needs a Module, got {type(module).__name__}")
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"layer name (={name!r}) must be a Python identifier")
        if not inputs:
            raise ValueError(f"Graph.layer({name!r}) needs at least one input value")
        ids = tuple(self._check_value(v, f"input of layer {name!r}") for v in inputs)
        # A graph inside itself (directly or through another graph) would make
        # modules(), state_dict() and forward recurse without end.
        if any(m is self for m in module.modules()):
            raise ValueError(f"Graph.layer({name!r}): the module contains this graph; a "
                             "graph cannot be a layer of itself")
        current = self._modules.get(name)
        if current is not None and current is not module:
            raise ValueError(f"layer name {name!r} is already used by another module")
        if current is None:
            # hasattr on the class, as torch's add_module: a layer named "eval" or
            # "state_dict" would otherwise hide Module's method of that name.
            if name in self.__dict__ or hasattr(type(self), name):
                raise ValueError(f"layer name {name!r} clashes with a Graph attribute")
            setattr(self, name, module)
        out = self._new_value()
        self._nodes.append(_Node(name, module, ids, out.index))
        return out

    def _auto_name(self, kind: str) -> str:
        object.__setattr__(self, "_auto", self._auto + 1)
        return f"{kind}{self._auto}"

    def add(self, *values: Value, name: str | None = None) -> Value:
        """The sum of ``values`` (a residual connection), an :class:`Add` node."""
        return self.layer(name or self._auto_name("add"), Add(), *values)

    def cat(self, values: Iterable[Value], dim: int = 1, name: str | None = None) -> Value:
        """``values`` concatenated along ``dim``, a :class:`Concat` node."""
        return self.layer(name or self._auto_name("cat"), Concat(dim), *values)

    def output(self, *values: Value) -> Self:
        """Declare the outputs (in order); the graph is complete afterwards."""
        if not values:
            raise ValueError("Graph.output needs at least one value")
        ids = tuple(self._check_value(v, "output") for v in values)
        object.__setattr__(self, "_graph_outputs", ids)
        return self

    # -- reading (for exporters and summaries) -------------------------------

    @property
    def inputs(self) -> list[Value]:
        """The graph's input values, in ``forward``'s order."""
        return [Value(self, i) for i in self._graph_inputs]

    @property
    def outputs(self) -> list[Value]:
        """The graph's output values (empty before :meth:`output`)."""
        return [Value(self, i) for i in (self._graph_outputs or ())]

    @property
    def nodes(self) -> list[tuple[str, Module, list[Value], Value]]:
        """``(name, module, input values, output value)`` per node, in evaluation order.

        ``Value.index`` identifies a value across nodes (an exporter's edge name).
        """
        return [(n.name, n.module, [Value(self, i) for i in n.inputs], Value(self, n.output))
                for n in self._nodes]

    # -- running -----------------------------------------------------------

    # One array, or a tuple for several outputs: which, only the built graph knows.
    def forward(self, *inputs: ArrayLike) -> Any:
        if self._graph_outputs is None:
            raise RuntimeError("Graph.forward before Graph.output: declare the outputs first")
        if len(inputs) != len(self._graph_inputs):
            raise ValueError(
                f"Graph takes {len(self._graph_inputs)} input(s), got {len(inputs)}"
            )
        counts: dict[int, int] = {}
        for node in self._nodes:
            counts[id(node.module)] = counts.get(id(node.module), 0) + 1
        values = dict(zip(self._graph_inputs, inputs))
        snaps: dict[int, list[tuple[Module, dict[str, Any]]]] = {}
        for k, node in enumerate(self._nodes):
            try:
                values[node.output] = node.module(*(values[i] for i in node.inputs))
            except ValueError as exc:
                shapes = [getattr(values[i], "shape", None) for i in node.inputs]
                raise ValueError(
                    f"layer {node.name} ({type(node.module).__name__}) got input of shape "
                    f"{shapes[0] if len(shapes) == 1 else shapes}: {exc}"
                ) from exc
            if counts[id(node.module)] > 1:
                snaps[k] = _snapshot(node.module)
        object.__setattr__(self, "_run", (snaps, {i: (np.shape(values[i]), np.asarray(values[i]).dtype)
                                             for i in self._graph_inputs}))
        outs = tuple(values[i] for i in self._graph_outputs)
        return outs[0] if len(outs) == 1 else outs

    def backward(self, *grad_outs: ArrayLike | None) -> Any:
        if self._run is None:
            raise RuntimeError("Graph.backward called before forward")
        outputs = self._graph_outputs or ()  # declared: forward ran
        if len(grad_outs) == 1 and isinstance(grad_outs[0], tuple) and len(outputs) > 1:
            grad_outs = grad_outs[0]
        if len(grad_outs) != len(outputs):
            raise ValueError(
                f"Graph.backward takes one gradient per output ({len(outputs)}), "
                f"got {len(grad_outs)}"
            )
        snaps, in_shapes = self._run
        grads: dict[int, NDArray[Any]] = {}

        def accumulate(i: int, g: NDArray[Any]) -> None:
            # A value used twice receives the sum of both gradients.
            grads[i] = g if i not in grads else grads[i] + g

        for i, g in zip(outputs, grad_outs):
            if g is not None:
                accumulate(i, np.asarray(g))
        for k in range(len(self._nodes) - 1, -1, -1):
            node = self._nodes[k]
            g = grads.pop(node.output, None)
            if g is None:
                continue  # no loss depends on this node
            if k in snaps:
                _restore(snaps[k])
            gin: Any = node.module.backward(g)
            if len(node.inputs) == 1:
                gin = (gin,)
            for i, gi in zip(node.inputs, gin):
                accumulate(i, gi)
        out = tuple(grads.get(i, np.zeros(*in_shapes[i])) for i in self._graph_inputs)
        return out[0] if len(out) == 1 else out

    if TYPE_CHECKING:
        def __call__(self, *inputs: Any, **kwargs: Any) -> Any: ...

    def extra_repr(self) -> str:
        return (f"inputs={len(self._graph_inputs)}, nodes={len(self._nodes)}, "
                f"outputs={len(self._graph_outputs or ())}")

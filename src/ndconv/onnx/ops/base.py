"""The operator contract: attributes checked up front, forward and backward together.

Each ONNX operator is one small class (the shape of onnx's reference
evaluator, ``onnx/reference/ops/``), registered by name in :data:`OPS` (a dict
from op type to class, as tinygrad's ``extra/onnx.py``). The loader builds one
instance per node: ``__init__`` receives the node's attributes (defaults
filled in), the opset and the inputs already known at load time, and raises
``ValueError`` for anything the class does not handle, so a model that cannot
run is refused before any computation. ``forward(*inputs)`` returns the
outputs and keeps what ``backward`` needs; ``backward(*grad_outputs)`` returns
one gradient per input (None where there is none).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from ...core._typing import NDArray

_OpT = TypeVar("_OpT", bound="type[Op]")

OPS: dict[str, type[Op]] = {}


def register(*names: str) -> Callable[[_OpT], _OpT]:
    """Class decorator: the class implements the ONNX operators ``names``."""

    def deco(cls: _OpT) -> _OpT:
        for name in names:
            OPS[name] = cls
        return cls

    return deco


class Node:
    """What an operator sees of its node at load time.

    Attributes
    ----------
    op_type : str
    attrs : dict
        Attribute name -> Python value (ints, floats, str, lists, ndarrays).
    opset : int
        The model's version of the default domain.
    inputs, outputs : list of str
        Tensor names; ``""`` is an omitted optional input.
    consts : dict
        Input index -> ndarray, for inputs whose value is known at load time
        (initializers that are not trained, Constant outputs).
    float_dtype : numpy.dtype or None
        The dtype every float tensor is computed in when the caller chose one.
    """

    def __init__(self, op_type: str, attrs: dict[str, Any], opset: int, inputs: list[str],
                 outputs: list[str], consts: dict[int, Any],
                 float_dtype: np.dtype[Any] | None) -> None:
        self.op_type = op_type
        self.attrs = attrs
        self.opset = opset
        self.inputs = inputs
        self.outputs = outputs
        self.consts = consts
        self.float_dtype = float_dtype


class Op:
    """Base of every operator.

    Class attributes
    ----------------
    ATTRS : dict
        Attribute name -> default value; any other attribute is refused.
    GRAD_INPUTS : tuple of int
        Inputs that receive gradients (float data, weights, biases); the
        others (shapes, indices, axes, running statistics) never do.
    MAX_OUTPUTS : int
        Outputs the operator produces (optional extra outputs it cannot
        produce are refused when the node asks for them).
    """

    ATTRS: dict[str, Any] = {}
    GRAD_INPUTS: tuple[int, ...] = (0,)
    MAX_OUTPUTS = 1

    def __init__(self, node: Node) -> None:
        unknown = [a for a in node.attrs if a not in self.ATTRS]
        if unknown:
            known = ", ".join(sorted(self.ATTRS)) or "none"
            raise ValueError(f"attribute {unknown[0]!r} is not supported (supported: {known})")
        used = [o for o in node.outputs[self.MAX_OUTPUTS:] if o]
        if used:
            raise ValueError(
                f"output {len(node.outputs) - 1} ({used[0]!r}) is not supported; ndconv "
                f"computes the first {self.MAX_OUTPUTS} output(s) only")
        self.node = node
        self.attrs = {**self.ATTRS, **node.attrs}
        self.opset = node.opset
        self.setup()

    def setup(self) -> None:
        """Check attribute values (override); raise ValueError naming the attribute."""

    def forward(self, *inputs: Any) -> Any:
        raise NotImplementedError

    def backward(self, *grads: Any) -> tuple[NDArray[Any] | None, ...]:
        raise NotImplementedError(f"{type(self).__name__} has no backward")

    def release(self) -> None:
        """Drop what ``forward`` kept for ``backward`` (its ``_``-prefixed attributes)."""
        for k in [k for k in vars(self) if k.startswith("_")]:
            delattr(self, k)

    # helpers for subclasses ----------------------------------------------

    def choice(self, name: str, allowed: Iterable[Any]) -> Any:
        value = self.attrs[name]
        if value not in allowed:
            raise ValueError(
                f"attribute {name}={value!r} is not supported (supported: "
                f"{', '.join(repr(a) for a in allowed)})")
        return value

    def const(self, i: int) -> Any:
        """The load-time value of input ``i``, or None."""
        return self.node.consts.get(i)


def unbroadcast(g: NDArray[Any], shape: Sequence[int]) -> NDArray[Any]:
    """Sum ``g`` over the dims NumPy broadcasting added or stretched to reach it from ``shape``."""
    if g.shape == tuple(shape):
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1)
    return g.sum(axis=axes, keepdims=True).reshape(shape) if axes else g.reshape(shape)


def axis_of(axis: Any, ndim: int, name: str = "axis") -> int:
    """A possibly negative ONNX axis as an index in ``range(ndim)``."""
    a = int(axis)
    if not -ndim <= a < ndim:
        raise ValueError(f"{name}={axis} is out of range for a tensor of rank {ndim}")
    return a % ndim


def ints(value: Any) -> Any:  # tuple of int, or None
    """An int tuple from a list, an ndarray or None."""
    if value is None:
        return None
    return tuple(int(v) for v in np.asarray(value).reshape(-1))

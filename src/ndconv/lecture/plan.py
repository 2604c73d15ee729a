"""Accounting: what a layer costs before it is built.

For an input shape and a layer (or a :class:`~ndconv.nn.Sequential`), each
row gives the output shape, the weights and parameters, their bytes per dtype,
the FLOPs per sample and the receptive field, all computed from the
hyper-parameters alone, so the lecture's 14.4 GB layer can be costed on any
machine. :func:`lecture_table` is the lecture's case; :func:`format_table`
prints rows as text (``ndconv params`` shows it).

The memory guard lives here for users: :func:`memory_limit` /
:func:`set_memory_limit` (or ``NDCONV_MEMORY_LIMIT``) set the bytes that
:class:`~ndconv.nn.FullyConnected`, :class:`~ndconv.nn.LocallyConnected` and
:mod:`ndconv.derive` may allocate; beyond it they raise
:class:`MemoryLimitError` (a ``MemoryError``) stating the bytes needed,
before allocating anything.

Examples
--------
>>> from ndconv import plan
>>> rows = plan.lecture_table()
>>> rows[0].weights, plan.format_bytes(rows[0].nbytes("float32"))
(3600000000, '14.4 GB')
>>> rows[-1].params
2800
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core import _args
from ..core._memory import (
    MemoryLimitError,
    available_memory,
    format_bytes,
    get_memory_limit,
    memory_limit,
    set_memory_limit,
)
from ..core._memory import check as check_memory

if TYPE_CHECKING:
    from ..core._typing import DTypeLike, IntOrTuple, NDArray, Padding, Shape
    from ..nn.module import Module

__all__ = [
    "MemoryLimitError",
    "Row",
    "available_memory",
    "check_memory",
    "conv",
    "format_bytes",
    "format_table",
    "conv_transpose",
    "fully_connected",
    "graph_rows",
    "Step",
    "get_memory_limit",
    "layer_rows",
    "lecture_table",
    "locally_connected",
    "memory_limit",
    "receptive_region",
    "set_memory_limit",
    "total",
]

LECTURE_INPUT = (3, 3000, 4000)  # a 12-megapixel RGB photo: 36 million numbers
LECTURE_HIDDEN = 100


@dataclass(frozen=True)
class Row:
    """The cost of one layer on one input (a row of the table).

    Attributes
    ----------
    name : str
        The layer's name in its model ("0", "1.2") or a description.
    layer : str
        What the layer is, e.g. ``"Conv2d(3, 100, k=(3, 3))"``.
    in_shape, out_shape : tuple of int
        Unbatched shapes.
    weights, biases : int
        Parameter counts; ``params = weights + biases``.
    flops : int
        Per sample: 2 x the multiply-adds of the weights (bias additions,
        activations and pooling are not counted).
    receptive_field : tuple of int or None
        Input positions (of the model's input) per spatial dim that one output
        element depends on, through all layers so far; None where unknown.
    """

    name: str
    layer: str
    in_shape: Shape
    out_shape: Shape
    weights: int
    biases: int
    flops: int
    receptive_field: Shape | None = None
    _state: Any = field(default=None, repr=False, compare=False)  # the _Field so far

    @property
    def params(self) -> int:
        """``weights + biases``."""
        return self.weights + self.biases

    def nbytes(self, dtype: DTypeLike = "float32") -> int:
        """Bytes of the parameters in ``dtype``."""
        return self.params * np.dtype(dtype).itemsize


# --------------------------------------------------------------------------
# receptive field: each spatial dim maps output index p to the model-input
# interval [p*jump + start, p*jump + start + size) (wrapped when circular)


@dataclass(frozen=True)
class _Field:
    input_size: Shape
    jump: Shape
    start: Shape
    size: Shape
    whole: bool = False  # every output sees the whole input
    circular: bool = False
    known: bool = True

    @classmethod
    def identity(cls, spatial: Sequence[int]) -> _Field:
        n = len(spatial)
        return cls(tuple(spatial), (1,) * n, (0,) * n, (1,) * n)

    def window(
        self,
        k: Sequence[int],
        s: Sequence[int],
        d: Sequence[int],
        lo: Sequence[int],
        circular: bool = False,
    ) -> _Field:
        if self.whole or not self.known:
            return self
        if len(k) != len(self.jump):
            return _Field(self.input_size, (), (), (), known=False)
        return _Field(
            self.input_size,
            tuple(j * si for j, si in zip(self.jump, s)),
            tuple(st - l * j for st, l, j in zip(self.start, lo, self.jump)),
            tuple(sz + di * (ki - 1) * j for sz, di, ki, j in zip(self.size, d, k, self.jump)),
            circular=self.circular or circular,
        )

    def merge(self, other: _Field) -> _Field:
        """The field of an element-wise combination (a residual Add, a Concat)."""
        if not (self.known and other.known) or self.input_size != other.input_size:
            return _Field(self.input_size, (), (), (), known=False)
        if self.whole or other.whole:
            return self.everything()
        if self.jump != other.jump:  # different strides: no single window per output
            return _Field(self.input_size, (), (), (), known=False)
        start = tuple(min(a, b) for a, b in zip(self.start, other.start))
        end = tuple(max(a + sa, b + sb) for a, sa, b, sb in
                    zip(self.start, self.size, other.start, other.size))
        return _Field(self.input_size, self.jump, start,
                      tuple(e - st for e, st in zip(end, start)),
                      circular=self.circular or other.circular)

    def unknown(self) -> _Field:
        return _Field(self.input_size, (), (), (), known=False)

    def everything(self) -> _Field:
        return _Field(self.input_size, self.jump, self.start, self.size, whole=True,
                      circular=self.circular)

    def sizes(self) -> Shape | None:
        if not self.known:
            return None
        if self.whole:
            return tuple(self.input_size)
        return tuple(min(sz, n) if self.circular else sz
                     for sz, n in zip(self.size, self.input_size))


# --------------------------------------------------------------------------
# one function per kind of layer, from hyper-parameters alone


def fully_connected(
    in_shape: IntOrTuple,
    out_shape: IntOrTuple,
    bias: bool = True,
    *,
    name: str = "fully connected",
    _field: _Field | None = None,
) -> Row:
    """Cost of :class:`ndconv.nn.FullyConnected` ``(in_shape -> out_shape)``.

    Every output element has a weight for every input element: ``weights =
    prod(out_shape) * prod(in_shape)``.
    """
    i, o = _args.shape_tuple(in_shape, "in_shape"), _args.shape_tuple(out_shape, "out_shape")
    fld = (_field or _Field.identity(i[1:] or i)).everything()
    w = math.prod(i) * math.prod(o)
    return Row(name, "FullyConnected", i, o, w, math.prod(o) if bias else 0,
               2 * w, fld.sizes(), fld)


def _window_geometry(
    in_shape: IntOrTuple,
    kernel_size: IntOrTuple,
    stride: IntOrTuple,
    padding: Padding,
    dilation: IntOrTuple,
) -> tuple[Shape, Shape, Shape, Shape, tuple[tuple[int, int], ...], Shape]:
    # No input channels is allowed, as in nn.Conv (an empty sum).
    x = _args.shape_tuple(in_shape, "in_shape", empty_ok=(0,))
    if len(x) < 2:
        raise ValueError(
            f"`in_shape` (={in_shape!r}) must be (C_in, *S) with at least one spatial dim"
        )
    n = len(x) - 1
    k = _args.ntuple(kernel_size, n, "kernel_size", minimum=1)
    s = _args.ntuple(stride, n, "stride", minimum=1)
    d = _args.ntuple(dilation, n, "dilation", minimum=1)
    pairs = _args.padding_pairs(padding, k, d, s)
    out = _args.output_size(x[1:], k, s, pairs, d)
    return x, k, s, d, pairs, out


def conv(
    in_shape: IntOrTuple,
    out_channels: int,
    kernel_size: IntOrTuple,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    bias: bool = True,
    padding_mode: str = "zeros",
    *,
    name: str = "convolution",
    _field: _Field | None = None,
) -> Row:
    """Cost of :class:`ndconv.nn.Conv`: one kernel shared by all positions.

    ``weights = C_out * C_in / groups * prod(K)``, whatever the input size.
    """
    x, k, s, d, pairs, out = _window_geometry(in_shape, kernel_size, stride, padding, dilation)
    o = _args.positive_int(out_channels, "out_channels")
    g = _args.positive_int(groups, "groups")
    if x[0] % g or o % g:
        raise ValueError(
            f"`in_channels` (={x[0]}) and `out_channels` (={o}) must be divisible by "
            f"`groups` (={g})"
        )
    w = o * (x[0] // g) * math.prod(k)
    fld = (_field or _Field.identity(x[1:])).window(
        k, s, d, [lo for lo, _ in pairs], padding_mode == "circular")
    return Row(name, f"Conv{len(k)}d({x[0]}, {o}, k={k})", x, (o, *out), w, o if bias else 0,
               2 * w * math.prod(out), fld.sizes(), fld)


def conv_transpose(
    in_shape: IntOrTuple,
    out_shape: IntOrTuple,
    weights: int,
    biases: int,
    *,
    name: str = "transposed convolution",
    layer: str = "ConvTranspose",
    _field: _Field | None = None,
) -> Row:
    """Cost of a transposed convolution: every input element scatters the whole
    kernel, ``FLOPs = 2 * weights * prod(S_in)``.

    Each output sees a stride-dependent set of inputs, so the receptive field
    is left unknown.
    """
    i, o = _args.shape_tuple(in_shape, "in_shape"), _args.shape_tuple(out_shape, "out_shape")
    fld = (_field or _Field.identity(i[1:])).unknown()
    return Row(name, layer, i, o, weights, biases, 2 * weights * math.prod(i[1:]), None, fld)


def locally_connected(
    in_shape: IntOrTuple,
    out_channels: int,
    kernel_size: IntOrTuple,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    bias: bool = True,
    *,
    name: str = "locally connected",
    _field: _Field | None = None,
) -> Row:
    """Cost of :class:`ndconv.nn.LocallyConnected`: one kernel per output position.

    ``weights = C_out * prod(S_out) * C_in * prod(K)``; biases ``C_out * prod(S_out)``.
    """
    x, k, s, d, pairs, out = _window_geometry(in_shape, kernel_size, stride, padding, dilation)
    o = _args.positive_int(out_channels, "out_channels")
    w = o * math.prod(out) * x[0] * math.prod(k)
    fld = (_field or _Field.identity(x[1:])).window(k, s, d, [lo for lo, _ in pairs])
    return Row(name, f"LocallyConnected{len(k)}d({x[0]}, {o}, k={k})", x, (o, *out), w,
               o * math.prod(out) if bias else 0, 2 * w, fld.sizes(), fld)


# --------------------------------------------------------------------------
# layers and models


def _layer_row(layer: Any, name: str, in_shape: Shape, fld: _Field) -> Row:
    """The row of one (non-container) layer; dispatch on the class name and attributes
    so that this module needs no import of every layer."""
    from .. import nn

    kind = type(layer).__name__
    if isinstance(layer, nn.FullyConnected):
        if in_shape != layer.in_shape:
            raise ValueError(f"layer {name} ({kind}) expects input {layer.in_shape}, gets {in_shape}")
        return fully_connected(in_shape, layer.out_shape, layer.bias is not None, name=name,
                               _field=fld)
    if isinstance(layer, nn.LocallyConnected):
        if in_shape != (layer.in_channels, *layer.input_size):
            raise ValueError(
                f"layer {name} ({kind}) expects input {(layer.in_channels, *layer.input_size)}, "
                f"gets {in_shape}")
        r = locally_connected(in_shape, layer.out_channels, layer.kernel_size, layer.stride,
                              layer.pairs, layer.dilation, layer.bias is not None, name=name,
                              _field=fld)
        return _renamed(r, kind)
    if isinstance(layer, nn.Conv):
        if in_shape[0] != layer.in_channels or len(in_shape) != len(layer.kernel_size) + 1:
            raise ValueError(
                f"layer {name} ({kind}) expects input ({layer.in_channels}, *S) with "
                f"{len(layer.kernel_size)} spatial dims, gets {in_shape}")
        r = conv(in_shape, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                 layer.dilation, layer.groups, layer.bias is not None, layer.padding_mode,
                 name=name, _field=fld)
        return _renamed(r, kind)
    if isinstance(layer, nn.ConvTranspose):
        out = _args.transposed_output_size(in_shape[1:], layer.kernel_size, layer.stride,
                                           layer.padding, layer.output_padding,
                                           layer.dilation)
        return conv_transpose(in_shape, (layer.out_channels, *out), layer.weight.size,
                              0 if layer.bias is None else layer.bias.size, name=name,
                              layer=kind, _field=fld)
    if isinstance(layer, nn.Linear):
        if in_shape[-1] != layer.in_features:
            raise ValueError(f"layer {name} (Linear) expects (*, {layer.in_features}), gets {in_shape}")
        out = (*in_shape[:-1], layer.out_features)
        w = layer.weight.size
        new = fld.everything() if len(in_shape) == 1 else _Field(fld.input_size, (), (), (), known=False)
        return Row(name, f"Linear({layer.in_features}, {layer.out_features})", in_shape, out, w,
                   0 if layer.bias is None else layer.bias.size,
                   2 * w * math.prod(in_shape[:-1]), new.sizes(), new)
    if kind.startswith(("MaxPool", "AvgPool")):
        from ..core.pooling import pool_output_shape

        out = pool_output_shape(in_shape, layer.kernel_size, layer.stride, layer.padding,
                                layer.dilation, getattr(layer, "ceil_mode", False))
        new = fld.window(layer.kernel_size, layer.stride, layer.dilation, layer.padding)
        return Row(name, kind, in_shape, (in_shape[0], *out), 0, 0, 0, new.sizes(), new)
    if kind == "Flatten":
        nd = len(in_shape) + 1  # with the batch dim
        s, e = layer.start_dim % nd, layer.end_dim % nd
        b = (1, *in_shape)
        out = b[:s] + (math.prod(b[s : e + 1]),) + b[e + 1 :]
        # Each flattened element still depends on the same inputs.
        return Row(name, kind, in_shape, out[1:], 0, 0, 0, fld.sizes(), fld)
    if not layer.parameters() and kind in ("ReLU", "Sigmoid", "Tanh", "Dropout", "Identity"):
        return Row(name, kind, in_shape, in_shape, 0, 0, 0, fld.sizes(), fld)
    raise ValueError(
        f"plan does not know how to cost layer {name} ({kind}); known: FullyConnected, "
        "LocallyConnected, Conv, ConvTranspose, Linear, MaxPool, AvgPool, Flatten, "
        "ReLU, Sigmoid, Tanh, Dropout and Sequential"
    )


def _renamed(row: Row, kind: str) -> Row:
    k = row.layer.split("(", 1)[1]
    return Row(row.name, f"{kind}({k}", row.in_shape, row.out_shape, row.weights,
               row.biases, row.flops, row.receptive_field, row._state)


def _leaves(module: Module, prefix: str = "") -> Iterator[tuple[str, Module]]:
    children = list(module.named_children())
    if not children:
        yield prefix or type(module).__name__, module
        return
    for name, child in children:
        yield from _leaves(child, f"{prefix}.{name}" if prefix else name)


def layer_rows(model: Module, input_shape: IntOrTuple) -> list[Row]:
    """One :class:`Row` per layer of ``model`` (a layer or a nested Sequential).

    Parameters
    ----------
    model : ndconv.nn.Module
    input_shape : tuple of int
        One sample's shape, without the batch dim, e.g. ``(1, 8, 8)``.

    Returns
    -------
    list of Row
        Each layer's input is the previous layer's output; the receptive field
        is measured in positions of ``input_shape``.
    """
    from ..nn import Module

    if not isinstance(model, Module):
        raise TypeError(f"`model` must be an ndconv.nn.Module, got {type(model).__name__}")
    # No input channels is allowed, as nn.Conv allows it (an empty sum).
    shape = _args.shape_tuple(input_shape, "input_shape", empty_ok=(0,))
    if hasattr(model, "plan_steps"):  # a graph (ndconv.onnx.OnnxModule): not a chain
        return graph_rows(model.plan_steps(shape), shape)
    fld = _Field.identity(shape[1:] if len(shape) > 1 else shape)
    rows = []
    for name, layer in _leaves(model):
        row = _layer_row(layer, name, shape, fld)
        rows.append(row)
        shape, fld = row.out_shape, row._state
    return rows


@dataclass(frozen=True)
class Step:
    """One node of a graph that is not a chain, for :func:`graph_rows`.

    Attributes
    ----------
    name, layer : str
        As in :class:`Row`.
    inputs : tuple of str
        The tensors it reads: ``"input"`` (the model's input) or other steps'
        ``output``; names of neither (weights, constants) are ignored.
    output : str
    in_shape, out_shape : tuple of int
        Unbatched.
    weights, biases, flops : int
        As in :class:`Row` (computed with :func:`conv` etc. where one applies).
    field : str or tuple
        How the receptive field passes through: ``"merge"`` (element-wise,
        the union of its inputs' fields: activations, a residual Add,
        Concat), ``"whole"`` (every output sees every input: Gemm, global
        pooling), ``"unknown"``, or ``("window", kernel, stride, dilation,
        lo)`` (convolutions and pooling; ``lo`` the padding before each dim).
    """

    name: str
    layer: str
    inputs: tuple[str, ...]
    output: str
    in_shape: Shape
    out_shape: Shape
    weights: int = 0
    biases: int = 0
    flops: int = 0
    field: str | tuple[Any, ...] = "merge"


def graph_rows(steps: Iterable[Step], input_shape: IntOrTuple) -> list[Row]:
    """One :class:`Row` per :class:`Step` of a graph, receptive fields followed
    along every path from the input (the widest where paths join).

    Parameters
    ----------
    steps : iterable of Step
        In an order where every step comes after the steps it reads.
    input_shape : tuple of int
        One sample's shape ``(C, *S)`` of the tensor named ``"input"``.
    """
    shape = _args.shape_tuple(input_shape, "input_shape")
    fields = {"input": _Field.identity(shape[1:] if len(shape) > 1 else shape)}
    rows = []
    for st in steps:
        ins = [fields[n] for n in st.inputs if n in fields]
        if not ins:  # computed from constants only: no receptive field
            fld = _Field.identity(shape[1:] if len(shape) > 1 else shape).unknown()
        else:
            fld = ins[0]
            for other in ins[1:]:
                fld = fld.merge(other)
        if st.field == "whole":
            fld = fld.everything()
        elif st.field == "unknown":
            fld = fld.unknown()
        elif isinstance(st.field, tuple) and st.field[0] == "window":
            _, k, s, d, lo = st.field
            fld = fld.window(tuple(k), tuple(s), tuple(d), tuple(lo))
        if ins:
            fields[st.output] = fld
        rows.append(Row(st.name, st.layer, tuple(st.in_shape), tuple(st.out_shape),
                        int(st.weights), int(st.biases), int(st.flops), fld.sizes(), fld))
    return rows


def total(rows: Iterable[Row], name: str = "total") -> Row:
    """One row summing weights, biases and FLOPs; shapes and field of the ends."""
    rows = list(rows)
    if not rows:
        raise ValueError("`rows` is empty")
    return Row(name, "", rows[0].in_shape, rows[-1].out_shape,
               sum(r.weights for r in rows), sum(r.biases for r in rows),
               sum(r.flops for r in rows), rows[-1].receptive_field, rows[-1]._state)


def receptive_region(
    model: Module, input_shape: IntOrTuple, out_index: Sequence[int]
) -> tuple[NDArray[np.intp], ...]:
    """Input positions that one output element can depend on.

    Parameters
    ----------
    model : ndconv.nn.Module
    input_shape : tuple of int
        ``(C, *S)``.
    out_index : tuple of int
        Spatial index of the output element (channels excluded).

    Returns
    -------
    tuple of ndarray
        Per spatial dim, the sorted input indices inside the field (wrapped
        for circular padding, clipped to the input otherwise).
    """
    rows = layer_rows(model, input_shape)
    fld = rows[-1]._state
    S = fld.input_size
    if not fld.known:
        raise ValueError("the receptive field of this model is not known to plan")
    if fld.whole:
        return tuple(np.arange(n) for n in S)
    idx = _args.ntuple(out_index, len(S), "out_index", minimum=0, broadcast=False)
    region = []
    for p, j, st, sz, n in zip(idx, fld.jump, fld.start, fld.size, S):
        r = np.arange(p * j + st, p * j + st + sz)
        r = np.unique(r % n) if fld.circular else r[(r >= 0) & (r < n)]
        region.append(r)
    return tuple(region)


# --------------------------------------------------------------------------
# the lecture's case and the text table


def lecture_table(
    input_shape: IntOrTuple = LECTURE_INPUT,
    hidden: int = LECTURE_HIDDEN,
    kernel_size: IntOrTuple = 3,
) -> list[Row]:
    """The lecture's comparison on one photo, computed, never allocated.

    Rows: the fully connected layer into ``hidden`` units (3,600,000,000
    weights, 14.4 GB in float32); a fully connected layer into the same
    ``hidden``-channel image a convolution produces; the locally connected
    layer (locality only); the convolution (locality and translation
    invariance: 2,800 parameters). Convolution and locally connected layer use
    ``padding='same'`` (``kernel_size // 2`` per side for an odd kernel; the
    extra one at the end for an even one) so the hidden image keeps the photo's size.
    """
    x = _args.shape_tuple(input_shape, "input_shape")
    h = _args.positive_int(hidden, "hidden")
    k = _args.ntuple(kernel_size, len(x) - 1, "kernel_size", minimum=1)
    pad = "same"
    c = conv(x, h, k, padding=pad, name="convolution (both principles)")
    return [
        fully_connected(x, (h,), name=f"fully connected, {h} hidden units"),
        fully_connected(x, c.out_shape, name="fully connected, same output as conv"),
        locally_connected(x, h, k, padding=pad, name="locally connected (locality only)"),
        c,
    ]


def _si(n: float, unit: str = "") -> str:
    if n < 1000:
        return f"{n:,}{unit and ' ' + unit}"
    for p in ("k", "M", "G", "T", "P", "E", "Z"):
        n /= 1000
        if n < 1000 or p == "Z":
            return f"{n:.3g} {p}{unit}"
    raise AssertionError("unreachable")


def format_table(
    rows: Iterable[Row], dtypes: Sequence[DTypeLike] = ("float32",), *, with_total: bool = False
) -> str:
    """The rows as a plain-text table (what ``ndconv params`` prints).

    Parameters
    ----------
    rows : list of Row
    dtypes : sequence of dtype names
        One bytes column per dtype.
    with_total : bool
        Append a :func:`total` row.
    """
    rows = list(rows)
    if with_total and rows:
        rows.append(total(rows))
    dts = [np.dtype(d) for d in dtypes]
    head = ["layer", "kind", "input", "output", "weights", "params",
            *[f"{d.name} bytes" for d in dts], "FLOPs", "receptive field"]

    def shp(s: Sequence[int]) -> str:
        return "x".join(str(v) for v in s)

    body = []
    for r in rows:
        rf = "?" if r.receptive_field is None else shp(r.receptive_field)
        body.append([r.name, r.layer, shp(r.in_shape), shp(r.out_shape), f"{r.weights:,}",
                     f"{r.params:,}", *[format_bytes(r.nbytes(d)) for d in dts],
                     _si(r.flops), rf])
    widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
    right = {4, 5, *range(6, 6 + len(dts) + 1)}

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    out = [line(head), "  ".join("-" * w for w in widths)]
    out += [line(b) for b in body]
    return "\n".join(out)

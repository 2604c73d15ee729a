"""Operators that move data around: reshape, slice, gather, concat, pad, cast."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ...core import _memory
from ...core._windows import fold_padding, pad
from .base import Op, axis_of, ints, register

if TYPE_CHECKING:
    from ...core._typing import NDArray


# ONNX TensorProto.DataType -> NumPy (the types a CNN graph computes with)
DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32,
          7: np.int64, 9: np.bool_, 10: np.float16, 11: np.float64, 12: np.uint32,
          13: np.uint64}


def _grad_like(g: NDArray[Any], x: NDArray[Any]) -> NDArray[Any] | None:
    return g.astype(x.dtype, copy=False) if x.dtype.kind == "f" else None


@register("Constant")
class Constant(Op):
    ATTRS = {"value": None, "value_float": None, "value_floats": None, "value_int": None,
             "value_ints": None}
    GRAD_INPUTS = ()

    def setup(self) -> None:
        given = [k for k, v in self.node.attrs.items() if v is not None]
        if len(given) != 1:
            raise ValueError(f"needs exactly one value attribute, got {given or 'none'}")
        k = given[0]
        v = self.attrs[k]
        if k == "value":
            self.value = np.asarray(v)
        elif k.startswith("value_float"):
            self.value = np.asarray(v, np.float32)
        else:
            self.value = np.asarray(v, np.int64)
        fd = self.node.float_dtype
        if fd is not None and self.value.dtype.kind == "f":
            self.value = self.value.astype(fd)

    def forward(self) -> Any:
        return self.value


@register("ConstantOfShape")
class ConstantOfShape(Op):
    ATTRS = {"value": None}
    GRAD_INPUTS = ()

    def forward(self, shape: Any) -> Any:
        v = np.zeros(1, np.float32) if self.attrs["value"] is None else np.asarray(self.attrs["value"])
        fd = self.node.float_dtype
        if fd is not None and v.dtype.kind == "f":
            v = v.astype(fd)
        shape = ints(shape)
        _memory.check(int(np.prod(shape)) * v.dtype.itemsize, f"ConstantOfShape {list(shape)}")
        return np.full(shape, v.reshape(-1)[0], dtype=v.dtype)


@register("Shape")
class Shape(Op):
    ATTRS = {"start": None, "end": None}
    GRAD_INPUTS = ()

    def forward(self, x: NDArray[Any]) -> Any:
        dims = x.shape[slice(self.attrs["start"], self.attrs["end"])]
        return np.array(dims, dtype=np.int64)


@register("Cast")
class Cast(Op):
    ATTRS = {"to": None, "saturate": 1, "round_mode": "up"}

    def setup(self) -> None:
        to = self.attrs["to"]
        if isinstance(to, (str, bytes)):  # opset 1 named the type
            names = {"FLOAT": 1, "DOUBLE": 11, "INT64": 7, "INT32": 6, "BOOL": 9, "UINT8": 2}
            to = names.get(to.decode() if isinstance(to, bytes) else to)
        if to not in DTYPES:
            raise ValueError(f"attribute to={self.attrs['to']!r} is not a supported type "
                             f"(supported: {sorted(DTYPES)})")
        self.to = np.dtype(DTYPES[to])
        if self.to.kind == "f" and self.node.float_dtype is not None:
            self.to = np.dtype(self.node.float_dtype)

    def forward(self, x: NDArray[Any]) -> Any:
        self._dtype = x.dtype
        return x.astype(self.to)

    def backward(self, gy: NDArray[Any]) -> tuple[NDArray[Any] | None, ...]:
        return (gy.astype(self._dtype) if self._dtype.kind == "f" and gy.dtype.kind == "f" else None,)


@register("Flatten")
class Flatten(Op):
    ATTRS = {"axis": 1}

    def forward(self, x: NDArray[Any]) -> Any:
        a = self.attrs["axis"]
        a = a + x.ndim if a < 0 else a
        if not 0 <= a <= x.ndim:
            raise ValueError(f"axis={self.attrs['axis']} is out of range for rank {x.ndim}")
        self._shape = x.shape
        return x.reshape(int(np.prod(x.shape[:a])), int(np.prod(x.shape[a:])))

    def backward(self, gy: NDArray[Any]) -> tuple[NDArray[Any] | None, ...]:
        return (gy.reshape(self._shape),)


@register("Reshape")
class Reshape(Op):
    ATTRS = {"shape": None, "allowzero": 0, "consumed_inputs": None}

    def forward(self, x: NDArray[Any], shape: Any = None) -> Any:
        shape = list(ints(self.attrs["shape"] if self.opset < 5 else shape))
        if not self.attrs["allowzero"]:
            shape = [x.shape[i] if v == 0 else v for i, v in enumerate(shape)]
        self._shape = x.shape
        try:
            return x.reshape(shape)
        except ValueError:
            raise ValueError(f"cannot reshape a tensor of shape {x.shape} into {shape}") from None

    def backward(self, gy: NDArray[Any], *_: Any) -> tuple[NDArray[Any] | None, ...]:
        return (gy.reshape(self._shape), None)


@register("Transpose")
class Transpose(Op):
    ATTRS = {"perm": None}

    def forward(self, x: NDArray[Any]) -> Any:
        perm = ints(self.attrs["perm"]) or tuple(reversed(range(x.ndim)))
        if sorted(perm) != list(range(x.ndim)):
            raise ValueError(f"perm={list(perm)} is not a permutation of the {x.ndim} axes")
        self._inv = np.argsort(perm)
        return np.transpose(x, perm)

    def backward(self, gy: NDArray[Any]) -> tuple[NDArray[Any] | None, ...]:
        return (np.transpose(gy, self._inv),)


class _Axes(Op):
    """Squeeze / Unsqueeze: ``axes`` an attribute before opset 13, an input after."""

    ATTRS = {"axes": None}
    _shape: tuple[int, ...]  # the input's shape, kept by forward (declared for the type checker)

    def setup(self) -> None:
        if self.opset >= 13 and self.node.attrs.get("axes") is not None:
            raise ValueError(f"attribute axes is an input since opset 13 (model: {self.opset})")

    def _axes(self, axes: Any) -> Any:
        return ints(self.attrs["axes"] if self.opset < 13 else axes)

    def backward(self, gy: NDArray[Any], *_: Any) -> tuple[NDArray[Any] | None, ...]:
        return (gy.reshape(self._shape), None)


@register("Squeeze")
class Squeeze(_Axes):
    def forward(self, x: NDArray[Any], axes: Any = None) -> Any:
        ax = self._axes(axes)
        self._shape = x.shape
        if ax is None:
            return x.reshape([n for n in x.shape if n != 1])
        ax = tuple(axis_of(a, x.ndim, "axes") for a in ax)
        if any(x.shape[a] != 1 for a in ax):
            raise ValueError(f"cannot squeeze axes {list(ax)} of shape {x.shape} (not size 1)")
        return np.squeeze(x, ax)


@register("Unsqueeze")
class Unsqueeze(_Axes):
    def forward(self, x: NDArray[Any], axes: Any = None) -> Any:
        ax = self._axes(axes)
        if ax is None:
            raise ValueError("axes are required")
        r = x.ndim + len(ax)
        ax = sorted(axis_of(a, r, "axes") for a in ax)
        self._shape = x.shape
        return np.expand_dims(x, tuple(ax))


@register("Concat")
class Concat(Op):
    ATTRS = {"axis": None}

    def setup(self) -> None:
        if self.attrs["axis"] is None and self.opset >= 4:
            raise ValueError("attribute axis is required")
        self.GRAD_INPUTS = tuple(range(len(self.node.inputs)))

    def forward(self, *xs: NDArray[Any]) -> Any:
        a = axis_of(1 if self.attrs["axis"] is None else self.attrs["axis"], xs[0].ndim)
        self._axis, self._xs = a, [(x.shape[a], x.dtype) for x in xs]
        return np.concatenate(xs, axis=a)

    def backward(self, gy: NDArray[Any]) -> tuple[NDArray[Any] | None, ...]:
        cuts = np.cumsum([n for n, _ in self._xs])[:-1]
        parts = np.split(gy, cuts, axis=self._axis)
        return tuple(p if dt.kind == "f" else None for p, (_, dt) in zip(parts, self._xs))


@register("Split")
class Split(Op):
    """``split`` an attribute before opset 13, an input after; ``num_outputs`` from 18."""

    ATTRS = {"axis": 0, "split": None, "num_outputs": None}
    MAX_OUTPUTS = 1 << 30

    def forward(self, x: NDArray[Any], split: Any = None) -> Any:
        a = axis_of(self.attrs["axis"], x.ndim)
        parts = ints(self.attrs["split"] if self.opset < 13 else split)
        n_out = len(self.node.outputs)
        if parts is None:
            n = x.shape[a]
            size = -(-n // n_out)
            parts = [size] * (n // size) + ([n % size] if n % size else [])
            if len(parts) != n_out:
                raise ValueError(f"cannot split size {n} into {n_out} outputs")
        if sum(parts) != x.shape[a] or len(parts) != n_out:
            raise ValueError(f"split {list(parts)} does not cover axis {a} of size "
                             f"{x.shape[a]} in {n_out} outputs")
        self._axis, self._parts = a, parts
        return tuple(np.split(x, np.cumsum(parts)[:-1], axis=a))

    def backward(self, *gys: Any) -> tuple[NDArray[Any] | None, ...]:
        ref = next(g for g in gys if g is not None)
        out = []
        for g, n in zip(gys, self._parts):
            if g is None:
                shape = list(ref.shape)
                shape[self._axis] = n
                g = np.zeros(shape, ref.dtype)
            out.append(g)
        return (np.concatenate(out, axis=self._axis), None)


@register("Slice")
class Slice(Op):
    """``starts``/``ends``/``axes`` attributes before opset 10, inputs (with ``steps``) after."""

    ATTRS = {"starts": None, "ends": None, "axes": None}

    def forward(self, x: NDArray[Any], starts: Any = None, ends: Any = None, axes: Any = None,
                steps: Any = None) -> Any:
        if self.opset < 10:
            starts, ends, axes = self.attrs["starts"], self.attrs["ends"], self.attrs["axes"]
        starts, ends = ints(starts), ints(ends)
        axes = ints(axes) or tuple(range(len(starts)))
        steps = ints(steps) or (1,) * len(starts)
        key = [slice(None)] * x.ndim
        big = np.iinfo(np.int64).max
        for a, s, e, st in zip(axes, starts, ends, steps):
            if st == 0:
                raise ValueError("steps must not be 0")
            # INT64 max/min mean "to the end": clamp to the axis as NumPy does
            e = None if (st > 0 and e >= big) or (st < 0 and e <= -big) else e
            key[axis_of(a, x.ndim, "axes")] = slice(s, e, st)
        self._key, self._shape = tuple(key), x.shape
        return x[self._key]

    def backward(self, gy: NDArray[Any], *_: Any) -> tuple[NDArray[Any] | None, ...]:
        g = np.zeros(self._shape, gy.dtype)
        g[self._key] = gy
        return (g, None, None, None, None)


@register("Gather")
class Gather(Op):
    ATTRS = {"axis": 0}

    def forward(self, x: NDArray[Any], idx: NDArray[Any]) -> Any:
        a = axis_of(self.attrs["axis"], x.ndim)
        idx = np.asarray(idx).astype(np.int64)
        n = x.shape[a]
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise ValueError(f"indices out of range [{-n}, {n - 1}] for axis {a}")
        idx = np.where(idx < 0, idx + n, idx)
        self._saved = (x.shape, x.dtype, a, idx)
        return np.take(x, idx, axis=a)

    def backward(self, gy: NDArray[Any]) -> tuple[NDArray[Any] | None, ...]:
        shape, dtype, a, idx = self._saved
        if dtype.kind != "f":
            return (None, None)
        g = np.zeros(shape, gy.dtype)
        # repeated indices add up, as autograd's index_add
        gm = np.moveaxis(g, a, 0)
        np.add.at(gm, idx.reshape(-1), np.moveaxis(gy, list(range(a, a + idx.ndim)),
                                                  list(range(idx.ndim))).reshape(idx.size, *gm.shape[1:]))
        return (g, None)


_PAD_MODES = {"constant": "zeros", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}


@register("Pad")
class Pad(Op):
    """Pads (and negative pads, which crop) in modes constant, reflect, edge, wrap.

    Attributes ``pads``/``value`` before opset 11 (``paddings`` in opset 1),
    inputs ``pads``, ``constant_value`` and (opset 18) ``axes`` after.
    """

    ATTRS = {"mode": "constant", "pads": None, "paddings": None, "value": 0.0}

    def setup(self) -> None:
        m = self.attrs["mode"]
        self.mode = m.decode() if isinstance(m, bytes) else m
        if self.mode not in _PAD_MODES:
            raise ValueError(f"attribute mode={self.mode!r} is not supported (supported: "
                             f"{', '.join(repr(k) for k in _PAD_MODES)})")

    def forward(self, x: NDArray[Any], pads: Any = None, value: Any = None,
                axes: Any = None) -> Any:
        if self.opset < 11:
            pads = self.attrs["pads"] if self.attrs["pads"] is not None else self.attrs["paddings"]
            value = self.attrs["value"]
        p = ints(pads)
        ax = ints(axes)
        ax = tuple(range(x.ndim)) if ax is None else tuple(axis_of(a, x.ndim, "axes") for a in ax)
        if p is None or len(p) != 2 * len(ax):
            raise ValueError(f"pads={p} must hold 2 values per padded axis ({len(ax)} axes)")
        pairs: Any = [(0, 0)] * x.ndim  # a list, then the tuple of (lo, hi) pairs
        for i, a in enumerate(ax):
            pairs[a] = (p[i], p[i + len(ax)])
        pairs = tuple(pairs)
        mode = _PAD_MODES[self.mode]
        v = 0 if value is None else np.asarray(value).reshape(-1)[0] if np.size(value) else 0
        # crop first (negative pads), then pad what remains
        crop = tuple((min(lo, 0), min(hi, 0)) for lo, hi in pairs)
        grow = tuple((max(lo, 0), max(hi, 0)) for lo, hi in pairs)
        xc = pad(x, crop) if any(a or b for a, b in crop) else x
        if mode in ("reflect", "replicate", "circular"):
            for n, (lo, hi) in zip(xc.shape, grow):
                if mode == "reflect" and max(lo, hi) >= n:
                    raise ValueError(f"reflect pads ({lo}, {hi}) must be smaller than the "
                                     f"axis size {n}")
            y = pad(xc, grow, mode)
        else:
            _memory.check(int(np.prod([n + a + b for n, (a, b) in zip(xc.shape, grow)]))
                          * x.dtype.itemsize, f"Pad output of {x.shape} by {list(p)}")
            y = pad(xc, grow, value=v)
        self._saved = (x.shape, xc.shape, crop, grow, mode)
        return y

    def backward(self, gy: NDArray[Any], *_: Any) -> tuple[NDArray[Any] | None, ...]:
        shape, cshape, crop, grow, mode = self._saved
        g = fold_padding(gy, cshape, grow, mode)
        g = pad(g, tuple((-a, -b) for a, b in crop)) if any(a or b for a, b in crop) else g
        return (g, None, None, None)

"""Resize (opset 10+) and Upsample (opset 7-9): nearest and linear, any rank.

Each resized axis is one gather (nearest) or a weighted sum of two gathers
(linear) along that axis, so the backward pass is the matching scatter-add.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ...core import _memory
from .base import Op, ints, register

if TYPE_CHECKING:
    from ...core._typing import NDArray


_TRANSFORMS = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric",
               "tf_half_pixel_for_nn", "half_pixel_symmetric")
_NEAREST = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def _source(out_n: int, in_n: int, scale: float, transform: str) -> NDArray[np.float64]:
    """Input coordinate of every output index (ONNX's coordinate_transformation_mode)."""
    x = np.arange(out_n, dtype=np.float64)
    if transform == "asymmetric":
        return x / scale
    if transform == "align_corners":
        return np.zeros(out_n) if out_n == 1 else x * (in_n - 1) / (out_n - 1)
    if transform == "pytorch_half_pixel":
        return (x + 0.5) / scale - 0.5 if out_n > 1 else np.zeros(out_n)
    if transform == "tf_half_pixel_for_nn":
        return (x + 0.5) / scale
    if transform == "half_pixel_symmetric":
        adj = out_n / (scale * in_n)
        center = in_n / 2
        return center * (1 - adj) + (x + 0.5) / scale - 0.5
    return (x + 0.5) / scale - 0.5  # half_pixel


def _round(x: NDArray[np.float64], mode: str) -> NDArray[np.float64]:
    if mode == "floor":
        return np.floor(x)
    if mode == "ceil":
        return np.ceil(x)
    frac = x - np.floor(x)
    if mode == "round_prefer_ceil":
        return np.where(frac == 0.5, np.ceil(x), np.round(x))
    return np.where(frac == 0.5, np.floor(x), np.round(x))


def axis_plan(in_n: int, out_n: int, scale: float, mode: str, transform: str, nearest_mode: str,
              ) -> list[tuple[NDArray[np.int64], NDArray[np.float64] | None]]:
    """``[(index, weight), ...]`` along one axis: out = sum of weight * x[index]."""
    src = _source(out_n, in_n, scale, transform)
    if mode == "nearest":
        i = np.clip(_round(src, nearest_mode), 0, in_n - 1).astype(np.int64)
        return [(i, None)]
    src = np.clip(src, 0, in_n - 1)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, in_n - 1)
    w1 = src - i0
    return [(i0, 1 - w1), (i1, w1)]


class _Resample(Op):
    # set by each subclass's setup (declared for the type checker)
    mode: str
    transform: str
    nearest_mode: str

    def _plans(self, x: NDArray[Any], scales: Any, sizes: Any) -> Any:
        if sizes is not None and np.size(sizes):
            sizes = ints(sizes)
            if len(sizes) != x.ndim:
                raise ValueError(f"sizes {list(sizes)} must have one entry per dim ({x.ndim})")
            scales = [o / n for o, n in zip(sizes, x.shape)]
            out = list(sizes)
        else:
            scales = [float(s) for s in np.asarray(scales).reshape(-1)]
            if len(scales) != x.ndim or any(s <= 0 for s in scales):
                raise ValueError(f"scales {scales} must be positive, one per dim ({x.ndim})")
            out = [int(np.floor(n * s)) for n, s in zip(x.shape, scales)]
        _memory.check(int(np.prod(out)) * x.dtype.itemsize, f"{self.node.op_type} output {out}")
        plans = []
        for ax, (n, o, s) in enumerate(zip(x.shape, out, scales)):
            if o != n or s != 1:
                plans.append((ax, n, axis_plan(n, o, s, self.mode, self.transform,
                                              self.nearest_mode)))
        return plans

    def _run(self, x: NDArray[Any], plans: Any) -> Any:
        self._plans_used = plans
        for ax, _, plan in plans:
            y: Any = 0  # the sum of the gathers (an array after the first)
            for idx, w in plan:
                t = np.take(x, idx, axis=ax)
                if w is not None:
                    shape = [1] * x.ndim
                    shape[ax] = -1
                    t = t * w.astype(x.dtype).reshape(shape)
                y = t if isinstance(y, int) else y + t
            x = y
        return x

    def backward(self, gy: NDArray[Any], *_: Any) -> tuple[NDArray[Any] | None, ...]:
        g = gy
        for ax, n, plan in reversed(self._plans_used):
            shape = list(g.shape)
            shape[ax] = n
            out = np.zeros(shape, g.dtype)
            om, gm = np.moveaxis(out, ax, 0), np.moveaxis(g, ax, 0)
            for idx, w in plan:
                part = gm if w is None else gm * w.astype(g.dtype).reshape(-1, *[1] * (g.ndim - 1))
                np.add.at(om, idx, part)
            g = out
        return (g, None, None, None)


@register("Resize")
class Resize(_Resample):
    ATTRS = {"mode": "nearest", "coordinate_transformation_mode": "half_pixel",
             "nearest_mode": "round_prefer_floor", "cubic_coeff_a": -0.75,
             "exclude_outside": 0, "extrapolation_value": 0.0, "antialias": 0,
             "axes": None, "keep_aspect_ratio_policy": "stretch"}

    def setup(self) -> None:
        self.mode = self.choice("mode", ("nearest", "linear"))
        if self.opset < 11:
            self.attrs["coordinate_transformation_mode"] = "asymmetric"
            self.attrs["nearest_mode"] = "floor"  # opset 10: nearest is floor(x / scale)
        self.transform = self.choice("coordinate_transformation_mode", _TRANSFORMS)
        self.nearest_mode = self.choice("nearest_mode", _NEAREST)
        if self.attrs["antialias"]:
            raise ValueError("attribute antialias=1 is not supported")
        if self.attrs["axes"] is not None:
            raise ValueError("attribute axes is not supported (give scales for every dim)")
        self.choice("keep_aspect_ratio_policy", ("stretch",))

    def forward(self, x: NDArray[Any], roi: Any = None, scales: Any = None,
                sizes: Any = None) -> Any:
        if self.opset < 11:
            scales = roi  # opset 10: (X, scales)
        return self._run(x, self._plans(x, scales, sizes))


@register("Upsample")
class Upsample(_Resample):
    ATTRS = {"mode": "nearest", "scales": None, "width_scale": None, "height_scale": None}

    def setup(self) -> None:
        mode = self.attrs["mode"]
        self.mode = {"bilinear": "linear"}.get(mode, mode)
        if self.mode not in ("nearest", "linear"):
            raise ValueError(f"attribute mode={mode!r} is not supported (supported: 'nearest', "
                             "'linear', 'bilinear')")
        self.transform, self.nearest_mode = "asymmetric", "floor"

    def forward(self, x: NDArray[Any], scales: Any = None) -> Any:
        if scales is None:
            scales = self.attrs["scales"]
        if scales is None:
            scales = [1, 1, self.attrs["height_scale"], self.attrs["width_scale"]]
        return self._run(x, self._plans(x, scales, None))

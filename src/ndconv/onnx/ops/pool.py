"""Pooling: ONNX's (possibly asymmetric) pads and ceil_mode on ndconv's pooling.

The input is padded here (``-inf`` for max, zeros for average, plus the extra
cells ``ceil_mode`` needs at the end), then :func:`ndconv.max_pool` /
:func:`ndconv.avg_pool` run without padding; the average divides by the
number of cells each window holds (inside the input, or inside the padded
input with ``count_include_pad``), never the ``ceil_mode`` extras, as
onnx's reference and PyTorch do.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from ...core import pooling as P
from ...core._args import pool_output_size
from ...core._windows import pad
from .base import Op, ints, register
from .linear import _Windowed

if TYPE_CHECKING:
    from ...core._typing import NDArray


class _Pool(_Windowed):
    def setup(self) -> None:
        super().setup()
        if self.attrs["kernel_shape"] is None:
            raise ValueError("attribute kernel_shape is required")
        self.k = ints(self.attrs["kernel_shape"])

    def _layout(self, x: NDArray[Any]) -> Any:
        s, d, pairs = self.geometry(x.shape[2:], self.k)
        out = pool_output_size(x.shape[2:], self.k, s, pairs, d, bool(self.attrs["ceil_mode"]))
        # The padded input the windows read: lo before, and after the input
        # exactly up to the last window's end (ceil_mode may need cells past
        # the padding, which count as padding; unread padding is dropped).
        need = tuple((o - 1) * si + di * (ki - 1) + 1
                     for o, si, di, ki in zip(out, s, d, self.k))
        full = tuple((lo, m - n - lo) for m, n, (lo, _) in zip(need, x.shape[2:], pairs))
        return s, d, pairs, full


@register("MaxPool")
class MaxPool(_Pool):
    ATTRS = {"auto_pad": "NOTSET", "ceil_mode": 0, "dilations": None, "kernel_shape": None,
             "pads": None, "storage_order": 0, "strides": None}

    def forward(self, x: NDArray[Any]) -> Any:
        s, d, _, full = self._layout(x)
        xp = pad(x, full, value=-np.inf) if any(a or b for a, b in full) else x
        y = P.max_pool(xp, self.k, s, 0, d)
        self._saved = (xp, y, s, d, full)
        return y

    def backward(self, gy: NDArray[Any]) -> tuple[NDArray[Any] | None, ...]:
        xp, y, s, d, full = self._saved
        g = P.max_pool_backward(gy, xp, self.k, s, 0, d, out=y)
        return (pad(g, tuple((-a, -b) for a, b in full)),)


@register("AveragePool")
class AveragePool(_Pool):
    ATTRS = {"auto_pad": "NOTSET", "ceil_mode": 0, "count_include_pad": 0, "dilations": None,
             "kernel_shape": None, "pads": None, "strides": None}

    def setup(self) -> None:
        super().setup()
        if any(int(v) != 1 for v in (self.attrs["dilations"] or ())):
            raise ValueError(f"attribute dilations={list(self.attrs['dilations'])} is not "
                             "supported (average pooling without dilation only)")

    def _divisor(self, x: NDArray[Any], s: Any, pairs: Any, full: Any) -> Any:
        spatial = x.shape[2:]
        if self.attrs["count_include_pad"]:
            ones = np.ones(tuple(n + lo + hi for n, (lo, hi) in zip(spatial, pairs)), x.dtype)
            mask = pad(ones[None, None], tuple((0, f[1] - p[1]) for f, p in zip(full, pairs)))
        else:
            mask = pad(np.ones((1, 1, *spatial), x.dtype), full)
        return P.avg_pool(mask, self.k, s, 0, divisor_override=1)[0, 0]

    def forward(self, x: NDArray[Any]) -> Any:
        s, _, pairs, full = self._layout(x)
        xp = pad(x, full) if any(a or b for a, b in full) else x
        div = self._divisor(x, s, pairs, full)
        y = P.avg_pool(xp, self.k, s, 0, divisor_override=1) / div
        self._saved = (xp.shape, s, full, div)
        return y

    def backward(self, gy: NDArray[Any]) -> tuple[NDArray[Any] | None, ...]:
        shape, s, full, div = self._saved
        g = P.avg_pool_backward(gy / div, np.empty(shape, gy.dtype), self.k, s, 0,
                                divisor_override=1)
        return (pad(g, tuple((-a, -b) for a, b in full)),)


@register("GlobalAveragePool")
class GlobalAveragePool(Op):
    def forward(self, x: NDArray[Any]) -> Any:
        axes = tuple(range(2, x.ndim))
        self._shape = x.shape
        return x.mean(axis=axes, keepdims=True)

    def backward(self, gy: NDArray[Any]) -> tuple[NDArray[Any] | None, ...]:
        n = math.prod(self._shape[2:])
        return (np.broadcast_to(gy / gy.dtype.type(n), self._shape).copy(),)


@register("GlobalMaxPool")
class GlobalMaxPool(Op):
    def forward(self, x: NDArray[Any]) -> Any:
        axes = tuple(range(2, x.ndim))
        y = x.max(axis=axes, keepdims=True)
        self._saved = (x, y)
        return y

    def backward(self, gy: NDArray[Any]) -> tuple[NDArray[Any] | None, ...]:
        x, y = self._saved
        # the first maximum of each channel takes the gradient, as PyTorch's max
        flat = (x == y).reshape(*x.shape[:2], -1)
        first = np.zeros_like(flat)
        np.put_along_axis(first, flat.argmax(axis=-1)[..., None], True, axis=-1)
        return (first.reshape(x.shape) * gy,)

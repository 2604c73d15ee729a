"""Convolutions, matrix products, batch normalisation and softmax.

The heavy work is ndconv's own: :func:`ndconv.conv` / :func:`ndconv.conv_backward`
and :func:`ndconv.conv_transpose` / :func:`ndconv.conv_transpose_backward`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ...core import functional as F
from ...core._windows import pad
from .base import Op, axis_of, ints, register, unbroadcast

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ...core._typing import NDArray, Pairs


_AUTO_PAD = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")


def same_pads(spatial: Sequence[int], k: Sequence[int], s: Sequence[int], d: Sequence[int],
              auto_pad: str) -> Pairs:
    """``(lo, hi)`` per dim for ``auto_pad`` SAME_UPPER / SAME_LOWER: output ``ceil(S / s)``."""
    pairs = []
    for n, ki, si, di in zip(spatial, k, s, d):
        out = -(-n // si)
        total = max(0, (out - 1) * si + di * (ki - 1) + 1 - n)
        small, big = total // 2, total - total // 2
        pairs.append((small, big) if auto_pad == "SAME_UPPER" else (big, small))
    return tuple(pairs)


class _Windowed(Op):
    """Shared attributes of Conv, ConvTranspose and the pools."""

    def setup(self) -> None:
        self.choice("auto_pad", _AUTO_PAD)
        for name in ("kernel_shape", "strides", "dilations", "pads"):
            v = self.attrs.get(name)
            if v is not None and any(int(i) < (0 if name == "pads" else 1) for i in v):
                raise ValueError(f"attribute {name}={list(v)} must be "
                                 f"{'non-negative' if name == 'pads' else 'positive'}")
        pads = self.attrs.get("pads")
        if pads is not None and len(pads) % 2:
            raise ValueError(f"attribute pads={list(pads)} must hold 2 values per spatial dim")

    def geometry(self, spatial: Any, k: Any) -> Any:
        """``(stride, dilation, pairs)`` for this input's spatial shape and kernel."""
        n = len(spatial)
        s = ints(self.attrs.get("strides")) or (1,) * n
        d = ints(self.attrs.get("dilations")) or (1,) * n
        p = ints(self.attrs.get("pads"))
        for name, v in (("strides", s), ("dilations", d), ("kernel_shape", k)):
            if len(v) != n:
                raise ValueError(f"{name}={list(v)} has {len(v)} values for {n} spatial dims")
        auto = self.attrs["auto_pad"]
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            pairs = same_pads(spatial, k, s, d, auto)
        elif auto == "VALID" or p is None:
            pairs = ((0, 0),) * n
        else:
            if len(p) != 2 * n:
                raise ValueError(f"pads={list(p)} has {len(p)} values for {n} spatial dims")
            pairs = tuple(zip(p[:n], p[n:]))
        return s, d, pairs


@register("Conv")
class Conv(_Windowed):
    ATTRS = {"auto_pad": "NOTSET", "dilations": None, "group": 1, "kernel_shape": None,
             "pads": None, "strides": None}
    GRAD_INPUTS = (0, 1, 2)

    def forward(self, x: NDArray[Any], w: NDArray[Any], b: NDArray[Any] | None = None) -> Any:
        k = tuple(w.shape[2:])
        if self.attrs["kernel_shape"] is not None and ints(self.attrs["kernel_shape"]) != k:
            raise ValueError(f"kernel_shape={list(self.attrs['kernel_shape'])} differs from "
                             f"the weight's kernel {list(k)}")
        s, d, pairs = self.geometry(x.shape[2:], k)
        y = F.conv(x, w, b, s, pairs, d, int(self.attrs["group"]))
        self._saved = (x, w, s, d, pairs, b is not None)
        return y

    def backward(self, gy: NDArray[Any]) -> tuple[NDArray[Any] | None, ...]:
        x, w, s, d, pairs, has_b = self._saved
        gx, gw, gb = F.conv_backward(gy, x, w, s, pairs, d, int(self.attrs["group"]))
        return gx, gw, (gb if has_b else None)


@register("ConvTranspose")
class ConvTranspose(_Windowed):
    """The full transposed convolution (no padding), then ONNX's (possibly
    asymmetric) pads cropped off and ``output_padding`` added at the end."""

    ATTRS = {"auto_pad": "NOTSET", "dilations": None, "group": 1, "kernel_shape": None,
             "output_padding": None, "output_shape": None, "pads": None, "strides": None}
    GRAD_INPUTS = (0, 1, 2)

    def _pairs(self, x: NDArray[Any], w: NDArray[Any]) -> Any:
        n = x.ndim - 2
        k = tuple(w.shape[2:])
        s, d, pairs = self.geometry(x.shape[2:], k)
        op = ints(self.attrs["output_padding"]) or (0,) * n
        full = [(S - 1) * si + di * (ki - 1) + 1 for S, si, di, ki in zip(x.shape[2:], s, d, k)]
        out_shape = ints(self.attrs["output_shape"])
        auto = self.attrs["auto_pad"]
        if out_shape is not None or auto in ("SAME_UPPER", "SAME_LOWER"):
            if out_shape is None:
                out_shape = tuple(S * si for S, si in zip(x.shape[2:], s))
            out_shape = out_shape[-n:]
            pairs = []
            for f, o, target in zip(full, op, out_shape):
                total = f + o - target
                small, big = total // 2, total - total // 2
                pairs.append((small, big) if auto == "SAME_UPPER" else (big, small))
        # crop lo at the start; at the end crop hi but first extend by output_padding
        return s, d, tuple((-lo, oi - hi) for (lo, hi), oi in zip(pairs, op))

    def forward(self, x: NDArray[Any], w: NDArray[Any], b: NDArray[Any] | None = None) -> Any:
        s, d, crop = self._pairs(x, w)
        g = int(self.attrs["group"])
        full = F.conv_transpose(x, w, None, s, 0, 0, g, d)
        y = pad(full, crop)
        if b is not None:
            y = y + b.reshape(-1, *([1] * (x.ndim - 2)))
        self._saved = (x, w, s, d, crop, g, b is not None)
        return y

    def backward(self, gy: NDArray[Any]) -> tuple[NDArray[Any] | None, ...]:
        x, w, s, d, crop, g, has_b = self._saved
        gfull = pad(gy, tuple((-lo, -hi) for lo, hi in crop))
        gx, gw, _ = F.conv_transpose_backward(gfull, x, w, s, 0, 0, g, d)
        gb = gy.sum(axis=(0, *range(2, gy.ndim))) if has_b else None
        return gx, gw, gb


@register("BatchNormalization")
class BatchNormalization(Op):
    """Inference form: ``scale * (x - mean) / sqrt(var + epsilon) + B`` per channel.

    The running mean and variance are not trained (buffers, as in PyTorch);
    ``scale`` and ``B`` are.
    """

    ATTRS = {"epsilon": 1e-5, "momentum": 0.9, "spatial": 1, "is_test": None,
             "training_mode": 0, "consumed_inputs": None}
    GRAD_INPUTS = (0, 1, 2)

    def setup(self) -> None:
        if self.attrs["spatial"] != 1:
            raise ValueError("attribute spatial=0 (per-element statistics) is not supported")
        if self.attrs["training_mode"]:
            raise ValueError("attribute training_mode=1 is not supported: ndconv imports "
                             "the inference form (running statistics)")
        if len([o for o in self.node.outputs if o]) > 1:
            raise ValueError("the training outputs (running mean/var) are not supported: "
                             "ndconv imports the inference form")

    MAX_OUTPUTS = 5

    def forward(self, x: NDArray[Any], scale: NDArray[Any], bias: NDArray[Any],
                mean: NDArray[Any], var: NDArray[Any]) -> Any:
        shape = (-1,) + (1,) * (x.ndim - 2)
        inv = (1 / np.sqrt(var.astype(x.dtype) + x.dtype.type(self.attrs["epsilon"]))).reshape(shape)
        xhat = (x - mean.reshape(shape)) * inv
        self._saved = (xhat, inv, scale.reshape(shape))
        return xhat * scale.reshape(shape) + bias.reshape(shape)

    def backward(self, gy: NDArray[Any], *_: Any) -> tuple[NDArray[Any] | None, ...]:
        xhat, inv, scale = self._saved
        axes = (0, *range(2, gy.ndim))
        return (gy * (scale * inv), (gy * xhat).sum(axis=axes), gy.sum(axis=axes), None, None)


class _Normalization(Op):
    """``(x - mean) / sqrt(var + epsilon) * scale + B``, statistics over ``axes``."""

    GRAD_INPUTS = (0, 1, 2)

    def normalize(self, x: NDArray[Any], axes: Any, scale: NDArray[Any],
                  bias: NDArray[Any] | None) -> Any:
        mean = x.mean(axis=axes, keepdims=True)
        d = x - mean
        inv = 1 / np.sqrt((d * d).mean(axis=axes, keepdims=True) + x.dtype.type(self.attrs["epsilon"]))
        xhat = d * inv
        self._saved = (xhat, inv, scale, axes, None if bias is None else bias.shape)
        y = xhat * scale
        return y + bias if bias is not None else y

    def backward(self, gy: NDArray[Any]) -> tuple[NDArray[Any] | None, ...]:
        xhat, inv, scale, axes, bshape = self._saved
        gxhat = gy * scale
        gx = inv * (gxhat - gxhat.mean(axis=axes, keepdims=True)
                    - xhat * (gxhat * xhat).mean(axis=axes, keepdims=True))
        gs = unbroadcast(gy * xhat, scale.shape)
        gb = None if bshape is None else unbroadcast(gy, bshape)
        return gx, gs, gb


@register("LayerNormalization")
class LayerNormalization(_Normalization):
    """Statistics over the dims from ``axis`` on; Scale and B of those dims' shape."""

    ATTRS = {"axis": -1, "epsilon": 1e-5, "stash_type": 1}

    def forward(self, x: NDArray[Any], scale: NDArray[Any],
                bias: NDArray[Any] | None = None) -> Any:
        a = axis_of(self.attrs["axis"], x.ndim)
        return self.normalize(x, tuple(range(a, x.ndim)), scale, bias)


@register("InstanceNormalization")
class InstanceNormalization(_Normalization):
    """Statistics per sample and channel over the spatial dims; per-channel scale and B
    (torch exports GroupNorm as Reshape, this, Reshape, Mul, Add)."""

    ATTRS = {"epsilon": 1e-5}

    def forward(self, x: NDArray[Any], scale: NDArray[Any], bias: NDArray[Any]) -> Any:
        view = (-1,) + (1,) * (x.ndim - 2)
        self._channels = scale.shape
        return self.normalize(x, tuple(range(2, x.ndim)), scale.reshape(view), bias.reshape(view))

    def backward(self, gy: NDArray[Any]) -> tuple[NDArray[Any] | None, ...]:
        gx, gs, gb = super().backward(gy)
        # (gs and gb are arrays: InstanceNormalization always has Scale and B)
        return (gx, gs.reshape(self._channels),  # type: ignore[union-attr]
                gb.reshape(self._channels))  # type: ignore[union-attr]


@register("Gemm")
class Gemm(Op):
    """``alpha * A' @ B' + beta * C`` with ``A' = A.T`` if transA, ``B' = B.T`` if transB."""

    ATTRS = {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0, "broadcast": None}
    GRAD_INPUTS = (0, 1, 2)

    def forward(self, a: NDArray[Any], b: NDArray[Any], c: NDArray[Any] | None = None) -> Any:
        if a.ndim != 2 or b.ndim != 2:
            raise ValueError(f"Gemm needs 2-D A and B, got shapes {a.shape} and {b.shape}")
        A = a.T if self.attrs["transA"] else a
        B = b.T if self.attrs["transB"] else b
        alpha, beta = a.dtype.type(self.attrs["alpha"]), a.dtype.type(self.attrs["beta"])
        y = A @ B
        if alpha != 1:
            y *= alpha
        if c is not None:
            y = y + (beta * c if beta != 1 else c)
        self._saved = (A, B, alpha, beta, None if c is None else c.shape)
        return y

    def backward(self, gy: NDArray[Any]) -> tuple[NDArray[Any] | None, ...]:
        A, B, alpha, beta, cshape = self._saved
        g = gy * alpha if alpha != 1 else gy
        gA, gB = g @ B.T, A.T @ g
        if self.attrs["transA"]:
            gA = gA.T
        if self.attrs["transB"]:
            gB = gB.T
        gc = None if cshape is None else unbroadcast(gy * beta if beta != 1 else gy, cshape)
        return gA, gB, gc


@register("MatMul")
class MatMul(Op):
    """``numpy.matmul`` semantics (1-D operands promoted, batch dims broadcast)."""

    GRAD_INPUTS = (0, 1)

    def forward(self, a: NDArray[Any], b: NDArray[Any]) -> Any:
        self._saved = (a, b)
        return np.matmul(a, b)

    def backward(self, gy: NDArray[Any]) -> tuple[NDArray[Any] | None, ...]:
        a, b = self._saved
        a2 = a[None] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g = gy
        if a.ndim == 1:
            g = np.expand_dims(g, -2)
        if b.ndim == 1:
            g = g[..., None]
        ga = unbroadcast(g @ np.swapaxes(b2, -1, -2), a2.shape).reshape(a.shape)
        gb = unbroadcast(np.swapaxes(a2, -1, -2) @ g, b2.shape).reshape(b.shape)
        return ga, gb


class _SoftmaxBase(Op):
    """Opset < 13 flattens to 2-D at ``axis`` (default 1); opset >= 13 works along
    ``axis`` (default -1)."""

    ATTRS = {"axis": None}
    LOG: bool  # log-softmax (set by each subclass)

    def _view(self, x: NDArray[Any]) -> Any:
        axis = self.attrs["axis"]
        if self.opset < 13:
            a = axis_of(1 if axis is None else axis, x.ndim)
            return x.reshape(int(np.prod(x.shape[:a])), -1), -1
        return x, axis_of(-1 if axis is None else axis, x.ndim)

    def forward(self, x: NDArray[Any]) -> Any:
        v, ax = self._view(x)
        z = v - v.max(axis=ax, keepdims=True)
        if self.LOG:
            y = z - np.log(np.exp(z).sum(axis=ax, keepdims=True))
        else:
            e = np.exp(z)
            y = e / e.sum(axis=ax, keepdims=True)
        self._saved = (y, ax, x.shape)
        return y.reshape(x.shape)

    def backward(self, gy: NDArray[Any]) -> tuple[NDArray[Any] | None, ...]:
        y, ax, shape = self._saved
        g = gy.reshape(y.shape)
        if self.LOG:
            gx = g - np.exp(y) * g.sum(axis=ax, keepdims=True)
        else:
            gx = y * (g - (g * y).sum(axis=ax, keepdims=True))
        return (gx.reshape(shape),)


@register("Softmax")
class Softmax(_SoftmaxBase):
    LOG = False


@register("LogSoftmax")
class LogSoftmax(_SoftmaxBase):
    LOG = True

"""Resampling along each spatial axis: Upsample (nearest, linear) and the adaptive-pool windows.

Nearest and (multi)linear interpolation and adaptive average pooling are
separable: each spatial axis is mapped on its own by a small linear map from
``S_in`` to ``S_out`` positions, so one N-d implementation is a loop over the
axes. The forward gathers (so ``inf`` or ``nan`` stay where PyTorch has them),
the backward multiplies by the transposed ``(S_out, S_in)`` matrix of the map,
which sums each output gradient into the inputs it came from.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core import _args, _memory
from .module import Module

if TYPE_CHECKING:
    from ..core._typing import ArrayLike, DTypeLike, NDArray, Shape

__all__ = ["Upsample"]

_MODES = {"nearest": None, "linear": None, "bilinear": 2, "trilinear": 3}


def axis_matrix(idx: Sequence[NDArray[Any]], weights: Sequence[NDArray[Any]],
                n_in: int) -> NDArray[Any]:
    """Dense ``(S_out, S_in)`` matrix with ``weights[t][o]`` at ``(o, idx[t][o])``, summed."""
    n_out = len(idx[0])
    m = np.zeros((n_out, n_in), dtype=weights[0].dtype)
    rows = np.arange(n_out)
    for i, w in zip(idx, weights):
        np.add.at(m, (rows, i), w)
    return m


def apply_adjoint(g: NDArray[Any], mats: Sequence[NDArray[Any]]) -> NDArray[Any]:
    """Backward of a per-axis map: ``g`` through each ``mats[axis].T`` on the trailing axes."""
    n = len(mats)
    for k, m in enumerate(mats):
        ax = g.ndim - n + k
        g = np.moveaxis(np.tensordot(g, m.astype(g.dtype, copy=False), axes=([ax], [0])), -1, ax)
    return g


def nearest_index(n_in: int, n_out: int, scale: float | None,
                  shortcut: bool) -> NDArray[np.int64]:
    """PyTorch's CPU nearest index ``min(floor(o * scale), S_in - 1)`` in float32.

    ``scale`` is ``1 / scale_factor`` when one is given, else ``S_in / S_out``.
    PyTorch's 2-D kernel (``shortcut``) copies an axis whose size is unchanged
    and halves the index of one whose size doubles, whatever the scale factor;
    its 1-D and 3-D kernels do not (a scale factor of 1.3 on 2 pixels picks
    pixel 0 twice there, and copies in 2-D).
    """
    if shortcut and n_out == n_in:
        return np.arange(n_out)
    if shortcut and n_out == 2 * n_in:
        return np.arange(n_out) >> 1
    s = np.float32(1.0 / scale) if scale else np.float32(n_in) / np.float32(n_out)
    src = np.floor(np.arange(n_out, dtype=np.float32) * s).astype(np.int64)
    return np.minimum(src, n_in - 1)


def linear_taps(n_in: int, n_out: int, scale: float | None, align_corners: bool,
                dtype: DTypeLike,
                ) -> tuple[NDArray[Any], NDArray[Any], NDArray[Any], NDArray[Any]]:
    """``(i0, i1, w0, w1)`` of PyTorch's linear kernel (``area_pixel_compute_source_index``)."""
    t: Callable[[float], Any] = np.dtype(dtype).type
    if n_out == n_in:
        # PyTorch copies an axis whose size does not change, whatever the scale factor.
        idx = np.arange(n_out)
        return idx, idx, np.ones(n_out, dtype), np.zeros(n_out, dtype)
    if align_corners:
        s = t((n_in - 1) / (n_out - 1)) if n_out > 1 else t(0)
    else:
        s = t(1.0 / scale) if scale else t(n_in) / t(n_out)
    dst = np.arange(n_out).astype(dtype)
    src = s * dst if align_corners else np.maximum(s * (dst + t(0.5)) - t(0.5), t(0))
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    w1 = np.clip(src - i0.astype(dtype), t(0), t(1))
    i1 = i0 + (i0 < n_in - 1)
    return i0, i1, t(1) - w1, w1


def _take(x: NDArray[Any], idx: NDArray[Any], ax: int) -> NDArray[Any]:
    return np.take(x, idx, axis=ax)


class Upsample(Module):
    """Upsample the trailing spatial dims, as ``torch.nn.Upsample`` (N-d).

    Parameters
    ----------
    size : int or tuple of int, optional
        Output spatial size.
    scale_factor : float or tuple of float, optional
        Output size ``floor(S * scale_factor)``; exactly one of ``size`` and
        ``scale_factor`` is given.
    mode : {'nearest', 'linear', 'bilinear', 'trilinear'}
        ``'linear'`` interpolates along every spatial dim (any number of
        them); ``'bilinear'`` and ``'trilinear'`` are its names for 2 and 3
        spatial dims and, as in PyTorch, refuse other inputs.
    align_corners : bool, optional
        Linear modes only: map the corner pixels' centres onto each other
        (source ``o * (S_in - 1) / (S_out - 1)``) instead of the half-pixel rule
        (``max((o + 0.5) * S_in / S_out - 0.5, 0)``, or ``1 / scale_factor`` in
        place of ``S_in / S_out`` when the scale is given).
    recompute_scale_factor : bool, optional
        ``True`` computes the source positions from the output size rather
        than from ``scale_factor``.

    Notes
    -----
    Input ``(B, C, *S)``. Nearest picks source ``min(floor(o * S_in / S_out),
    S_in - 1)`` as PyTorch's ``'nearest'`` (not ``'nearest-exact'``), with its
    kernels' special cases for a size that a scale factor leaves unchanged
    (see :func:`nearest_index`). ``backward`` is the exact adjoint of the
    forward; where PyTorch's 1-D and 3-D nearest backward takes the 2-D
    shortcut that their forward does not, PyTorch's gradient is not, and
    ndconv's differs from it.
    """

    size: int | Shape | None
    scale_factor: float | tuple[float, ...] | None
    mode: str
    align_corners: bool | None
    recompute_scale_factor: bool | None

    def __init__(self, size: int | tuple[int, ...] | list[int] | None = None,
                 scale_factor: float | tuple[float, ...] | list[float] | None = None,
                 mode: str = "nearest",
                 align_corners: bool | None = None,
                 recompute_scale_factor: bool | None = None) -> None:
        super().__init__()
        if mode not in _MODES:
            raise ValueError(f"`mode` (={mode!r}) must be one of {tuple(_MODES)}")
        if (size is None) == (scale_factor is None):
            raise ValueError("exactly one of `size` and `scale_factor` must be given")
        if align_corners is not None and mode == "nearest":
            raise ValueError(
                "`align_corners` can only be set with the interpolating modes "
                "('linear', 'bilinear', 'trilinear'), as in PyTorch"
            )
        if size is not None:
            self.size = (_args.shape_tuple(size, "size") if isinstance(size, (tuple, list))
                         else _args.positive_int(size, "size"))
        else:
            self.size = None
        if scale_factor is not None:
            vals = scale_factor if isinstance(scale_factor, (tuple, list)) else (scale_factor,)
            if not vals or not all(_args.is_number(v) and v > 0 and math.isfinite(v)
                                   for v in vals):
                raise ValueError(
                    f"`scale_factor` (={scale_factor!r}) must be a positive number or a "
                    "tuple of them"
                )
            self.scale_factor = (tuple(float(v) for v in vals)
                                 if isinstance(scale_factor, (tuple, list))
                                 else float(scale_factor))
        else:
            self.scale_factor = None
        self.mode = mode
        self.align_corners = None if align_corners is None else bool(align_corners)
        self.recompute_scale_factor = recompute_scale_factor
        self._cache = None

    def extra_repr(self) -> str:
        what = (f"size={self.size}" if self.size is not None
                else f"scale_factor={self.scale_factor}")
        return f"{what}, mode={self.mode!r}"

    def _plan(self, x: NDArray[Any]) -> tuple[Shape, tuple[float | None, ...]]:
        """Output size and the per-axis scale handed to the kernels (None: from sizes)."""
        n = x.ndim - 2
        need = _MODES[self.mode]
        if x.ndim < 3 or (need is not None and n != need):
            want = f"{need} spatial dims" if need else "at least 1 spatial dim"
            raise ValueError(
                f"Upsample(mode={self.mode!r}) expects input (B, C, *S) with {want}; "
                f"got {x.shape}"
            )
        spatial = x.shape[2:]
        if self.size is not None:
            out = _args.ntuple(self.size, n, "size", minimum=1)
            self._check_memory(x, out)
            return out, (None,) * n
        sf: Any = self.scale_factor  # not None: size is None
        sf = sf if isinstance(sf, tuple) else (sf,) * n
        if len(sf) != n:
            raise ValueError(
                f"`scale_factor` (={self.scale_factor!r}) must have one entry per spatial "
                f"dim ({n})"
            )
        if not all(math.isfinite(s * f) for s, f in zip(spatial, sf)):
            raise ValueError(f"Upsample(scale_factor={self.scale_factor!r}) on spatial size "
                             f"{spatial} gives an output size beyond float64")
        out = tuple(math.floor(s * f) for s, f in zip(spatial, sf))
        if any(o < 1 for o in out):
            raise ValueError(
                f"Upsample(scale_factor={self.scale_factor!r}) gives an empty output "
                f"{out} for spatial size {spatial}"
            )
        self._check_memory(x, out)
        scales = (None,) * n if self.recompute_scale_factor else sf
        return out, scales

    @staticmethod
    def _check_memory(x: NDArray[Any], out: Shape) -> None:
        """The output and the per-axis (S_out, S_in) matrices, before they are made."""
        n_out = x.shape[0] * x.shape[1] * math.prod(out)
        mats = sum(o * s for o, s in zip(out, x.shape[2:]))
        _memory.guard((n_out + mats) * x.dtype.itemsize,
                      f"Upsample of input {x.shape} to spatial size {out}")

    def forward(self, x: ArrayLike) -> NDArray[Any]:
        x = _args.check_array(x, "x")
        out, scales = self._plan(x)
        n = len(out)
        mats = []
        y = x
        for k, (n_in, n_out, sc) in enumerate(zip(x.shape[2:], out, scales)):
            ax = 2 + k
            if self.mode == "nearest":
                idx = nearest_index(n_in, n_out, sc, shortcut=n == 2)
                y = _take(y, idx, ax)
                mats.append(axis_matrix([idx], [np.ones(n_out, x.dtype)], n_in))
            else:
                i0, i1, w0, w1 = linear_taps(n_in, n_out, sc, bool(self.align_corners), x.dtype)
                view = (-1,) + (1,) * (x.ndim - ax - 1)
                y = _take(y, i0, ax) * w0.reshape(view) + _take(y, i1, ax) * w1.reshape(view)
                mats.append(axis_matrix([i0, i1], [w0, w1], n_in))
        assert len(mats) == n
        self._cache = (x.shape, y.shape, mats)
        return y

    def backward(self, grad_out: ArrayLike) -> NDArray[Any]:
        if self._cache is None:
            raise RuntimeError("Upsample.backward called before forward")
        in_shape, out_shape, mats = self._cache
        g = np.asarray(grad_out)
        if g.shape != out_shape:
            raise ValueError(f"Upsample.backward expects grad_out of shape {out_shape}, got {g.shape}")
        return apply_adjoint(g, mats)

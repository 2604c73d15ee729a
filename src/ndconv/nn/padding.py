"""Padding layers (zero, constant, reflection, replication), as ``torch.nn``'s ``*PadNd``.

The padding itself is :func:`ndconv.core._windows.pad` and its gradient
:func:`ndconv.core._windows.fold_padding` (the same code the convolution's
``padding_mode`` uses), so the boundary modes have one home.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..core import _args, _memory
from ..core import _windows
from .module import Module, fixed_ndim

if TYPE_CHECKING:
    from ..core._typing import ArrayLike, NDArray, Pairs
    from .module import without_ndim

__all__ = [
    "ZeroPad", "ZeroPad1d", "ZeroPad2d", "ZeroPad3d",
    "ConstantPad", "ConstantPad1d", "ConstantPad2d", "ConstantPad3d",
    "ReflectionPad", "ReflectionPad1d", "ReflectionPad2d", "ReflectionPad3d",
    "ReplicationPad", "ReplicationPad1d", "ReplicationPad2d", "ReplicationPad3d",
]


def torch_padding_pairs(padding: int | tuple[int, ...] | list[int], n: int) -> Pairs:
    """PyTorch's pad tuple ``(left, right, top, bottom, front, back)`` as ``((lo, hi), ...)``.

    PyTorch lists the last dim first; the pairs here run from the first spatial
    dim to the last, as everywhere else in ndconv. An int pads every side.
    """
    if isinstance(padding, (tuple, list)):
        vals = tuple(_args._as_int(v, "padding") for v in padding)
        if len(vals) != 2 * n:
            raise ValueError(
                f"`padding` (={tuple(padding)!r}) must be an int or {2 * n} ints "
                f"(left, right{', top, bottom' if n > 1 else ''}{', front, back' if n > 2 else ''})"
            )
    else:
        vals = (_args._as_int(padding, "padding"),) * (2 * n)
    return tuple((vals[2 * i], vals[2 * i + 1]) for i in reversed(range(n)))


class _PadNd(Module):
    """Shared argument handling; ``mode`` is one of ``_windows.pad``'s boundary modes."""

    mode = "zeros"

    #: PyTorch's 2N-tuple, in its order (last dim first).
    padding: tuple[int, ...]
    value: float

    def __init__(self, num_spatial_dims: int, padding: int | tuple[int, ...] | list[int],
                 value: float = 0.0) -> None:
        super().__init__()
        n = _args.positive_int(num_spatial_dims, "num_spatial_dims")
        self._pairs = torch_padding_pairs(padding, n)
        # PyTorch keeps the 2n-tuple in its own order.
        self.padding = tuple(v for lo_hi in reversed(self._pairs) for v in lo_hi)
        if self.mode != "zeros" and any(v < 0 for v in self.padding):
            raise ValueError(
                f"`padding` (={padding!r}) must be non-negative for {type(self).__name__}"
            )
        if not _args.is_number(value):
            raise TypeError(f"`value` must be a real number, got {value!r}")
        self.value = float(value)
        self._cache = None

    def extra_repr(self) -> str:
        return f"{self.padding}" + (f", value={self.value}" if self.value else "")

    def forward(self, x: ArrayLike) -> NDArray[Any]:
        x = _args.check_array(x, "x")
        n = len(self._pairs)
        if x.ndim not in (n + 1, n + 2):
            raise ValueError(
                f"{type(self).__name__} expects input of shape (B, C, *S) or (C, *S) with "
                f"{n} spatial dims; got {x.shape}"
            )
        spatial = x.shape[x.ndim - n:]
        _args.check_mode_fits(spatial, self._pairs, self.mode)
        for i, (s, (lo, hi)) in enumerate(zip(spatial, self._pairs)):
            if s + lo + hi < 1:
                raise ValueError(
                    f"{type(self).__name__} padding {(lo, hi)} leaves spatial dim {i} of size "
                    f"{s} empty"
                )
        out = x.size // max(1, np.prod(spatial, dtype=object)) * np.prod(
            [s + lo + hi for s, (lo, hi) in zip(spatial, self._pairs)], dtype=object)
        _memory.guard(int(out) * x.dtype.itemsize, f"{type(self).__name__} of input {x.shape}")
        self._cache = spatial
        return _windows.pad(x, self._pairs, self.mode, value=x.dtype.type(self.value))

    def backward(self, grad_out: ArrayLike) -> NDArray[Any]:
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        g = np.asarray(grad_out)
        spatial = self._cache
        n = len(spatial)
        want = tuple(s + lo + hi for s, (lo, hi) in zip(spatial, self._pairs))
        if g.shape[g.ndim - n:] != want:
            raise ValueError(
                f"{type(self).__name__}.backward expects grad_out with spatial shape {want}, "
                f"got {g.shape}"
            )
        if self.mode == "zeros":
            # The adjoint of padding by (lo, hi) is padding by (-lo, -hi): it crops
            # what was added and fills zeros where a negative padding cropped.
            return _windows.pad(g, tuple((-lo, -hi) for lo, hi in self._pairs))
        return _windows.fold_padding(g, spatial, self._pairs, self.mode)


class ConstantPad(_PadNd):
    """Pad with the float ``value`` (negative padding crops), as ``torch.nn.ConstantPadNd``.

    ``padding`` as :class:`ZeroPad`'s, in PyTorch's order.
    """

    def __init__(self, num_spatial_dims: int, padding: int | tuple[int, ...] | list[int],
                 value: float) -> None:
        super().__init__(num_spatial_dims, padding, value)


class _ModePad(_PadNd):
    """A padding layer whose only argument is the padding (no fill value)."""

    def __init__(self, num_spatial_dims: int, padding: int | tuple[int, ...] | list[int]) -> None:
        super().__init__(num_spatial_dims, padding)


class ZeroPad(_ModePad):
    """Pad with zeros (negative padding crops), as ``torch.nn.ZeroPadNd``.

    Parameters
    ----------
    num_spatial_dims : int
    padding : int or tuple of 2N ints
        PyTorch's order: ``(left, right, top, bottom, front, back)``, last dim first.
    """


class ReflectionPad(_ModePad):
    """Mirror without repeating the edge (padding < size), as ``torch.nn.ReflectionPadNd``."""

    mode = "reflect"


class ReplicationPad(_ModePad):
    """Repeat the edge value, as ``torch.nn.ReplicationPadNd``."""

    mode = "replicate"


if TYPE_CHECKING:  # fixed_ndim's classes as a type checker reads them (see without_ndim)
    class _ZeroPadFixed(ZeroPad):
        @without_ndim(ZeroPad.__init__)
        def __init__(self, *args: Any, **kwargs: Any) -> None: ...

    class ZeroPad1d(_ZeroPadFixed): ...
    class ZeroPad2d(_ZeroPadFixed): ...
    class ZeroPad3d(_ZeroPadFixed): ...

    class _ConstantPadFixed(ConstantPad):
        @without_ndim(ConstantPad.__init__)
        def __init__(self, *args: Any, **kwargs: Any) -> None: ...

    class ConstantPad1d(_ConstantPadFixed): ...
    class ConstantPad2d(_ConstantPadFixed): ...
    class ConstantPad3d(_ConstantPadFixed): ...

    class _ReflectionPadFixed(ReflectionPad):
        @without_ndim(ReflectionPad.__init__)
        def __init__(self, *args: Any, **kwargs: Any) -> None: ...

    class ReflectionPad1d(_ReflectionPadFixed): ...
    class ReflectionPad2d(_ReflectionPadFixed): ...
    class ReflectionPad3d(_ReflectionPadFixed): ...

    class _ReplicationPadFixed(ReplicationPad):
        @without_ndim(ReplicationPad.__init__)
        def __init__(self, *args: Any, **kwargs: Any) -> None: ...

    class ReplicationPad1d(_ReplicationPadFixed): ...
    class ReplicationPad2d(_ReplicationPadFixed): ...
    class ReplicationPad3d(_ReplicationPadFixed): ...
else:
    ZeroPad1d, ZeroPad2d, ZeroPad3d = (fixed_ndim(ZeroPad, n) for n in (1, 2, 3))
    ConstantPad1d, ConstantPad2d, ConstantPad3d = (fixed_ndim(ConstantPad, n) for n in (1, 2, 3))
    ReflectionPad1d, ReflectionPad2d, ReflectionPad3d = (
        fixed_ndim(ReflectionPad, n) for n in (1, 2, 3))
    ReplicationPad1d, ReplicationPad2d, ReplicationPad3d = (
        fixed_ndim(ReplicationPad, n) for n in (1, 2, 3))

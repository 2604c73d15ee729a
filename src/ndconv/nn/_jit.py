"""Compiled element-wise gradients of the layers (numba), used when it is installed.

``np.where(x <= 0, 0, g)`` makes a boolean temporary and a second pass; the
ReLU gradient of a small network's training step is one of its larger
NumPy calls. Without numba the NumPy expressions in the layers run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..core._typing import NDArray

_KERNELS: dict[str, Any] = {}


def _relu_body(x: Any, g: Any, out: Any, zero: Any) -> Any:
    # No fastmath: a NaN input passes its gradient (x <= 0 is False), as PyTorch.
    for i in range(x.shape[0]):
        out[i] = zero if x[i] <= 0 else g[i]
    return out


def _build() -> Any:
    from numba import njit

    return njit(cache=True, nogil=True)(_relu_body)


def relu_backward(x: NDArray[Any], g: NDArray[Any]) -> NDArray[Any] | None:
    """``np.where(x <= 0, 0, g)`` compiled, or None without numba or for other arrays."""
    from ..core.algorithms._jit import build_once, numba_installed

    if (x.dtype != g.dtype or x.dtype not in (np.float32, np.float64)
            or not (x.flags.c_contiguous and g.flags.c_contiguous) or not numba_installed()):
        return None
    k = build_once(_KERNELS, _build)
    if k is None:
        return None
    out = np.empty(x.shape, x.dtype)
    k(x.reshape(-1), g.reshape(-1), out.reshape(-1), x.dtype.type(0))
    return out

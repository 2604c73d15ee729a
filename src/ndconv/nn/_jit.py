"""Compiled element-wise gradients of the layers (numba), used when it is installed.

``np.where(x <= 0, 0, g)`` makes a boolean temporary and a second pass; the
ReLU gradient of a small network's training step is one of its larger
NumPy calls. The forward ``np.maximum(x, 0)`` takes NumPy's loop for a
scalar operand, which is not vectorised: 4x slower than this (and than
with an array of zeros) on a batch of the digits CNN's feature maps.
Without numba the NumPy expressions in the layers run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.algorithms._jit import build_once

if TYPE_CHECKING:
    from ..core._typing import NDArray

_KERNELS: dict[str, Any] = {}
_FORWARD: dict[str, Any] = {}


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
    if (x.dtype != g.dtype or x.dtype not in (np.float32, np.float64)
            or not (x.flags.c_contiguous and g.flags.c_contiguous)):
        return None
    k = build_once(_KERNELS, _build)
    if k is None:
        return None
    out = np.empty(x.shape, x.dtype)
    k(x.reshape(-1), g.reshape(-1), out.reshape(-1), x.dtype.type(0))
    return out


def _relu_forward_body(x: Any, out: Any, zero: Any) -> Any:
    # No fastmath: NaN stays NaN; -0.0 becomes 0.0, as np.maximum(x, 0) does.
    for i in range(x.shape[0]):
        v = x[i]
        out[i] = v if v > 0 or v != v else zero
    return out


def _build_forward() -> Any:
    from numba import njit

    return njit(cache=True, nogil=True)(_relu_forward_body)


#: Fewest elements for the compiled forward: below, the call costs more than
#: NumPy's loop (measured: 4096 float32, 3.7 against 7.8 us; 16384, 10 against 7.7).
RELU_MIN = 2**14


def relu_forward(x: NDArray[Any]) -> NDArray[Any] | None:
    """``np.maximum(x, 0)`` compiled, or None without numba, for small or other arrays."""
    if (x.size < RELU_MIN or x.dtype not in (np.float32, np.float64)
            or not x.flags.c_contiguous):
        return None
    k = build_once(_FORWARD, _build_forward)
    if k is None:
        return None
    out = np.empty(x.shape, x.dtype)
    k(x.reshape(-1), out.reshape(-1), x.dtype.type(0))
    return out

"""Compiled element-wise gradients of the layers (numba), used when it is installed.

``np.where(x <= 0, 0, g)`` makes a boolean temporary and a second pass; the
ReLU gradient of a small network's training step is one of its larger
NumPy calls. Without numba the NumPy expressions in the layers run.
"""

from __future__ import annotations

import numpy as np

_KERNELS: dict = {}


def _relu_body(x, g, out, zero):
    # No fastmath: a NaN input passes its gradient (x <= 0 is False), as PyTorch.
    for i in range(x.shape[0]):
        out[i] = zero if x[i] <= 0 else g[i]
    return out


def relu_backward(x, g):
    """``np.where(x <= 0, 0, g)`` compiled, or None without numba or for other arrays."""
    k = _KERNELS.get("relu")
    if k is None:
        if "relu" in _KERNELS:  # numba is not there
            return None
        from ..core.algorithms._jit import numba_installed

        if not numba_installed():
            _KERNELS["relu"] = None
            return None
        from numba import njit

        k = _KERNELS["relu"] = njit(cache=True, nogil=True)(_relu_body)
    if (x.dtype != g.dtype or x.dtype not in (np.float32, np.float64)
            or not (x.flags.c_contiguous and g.flags.c_contiguous)):
        return None
    out = np.empty(x.shape, x.dtype)
    k(x.reshape(-1), g.reshape(-1), out.reshape(-1), x.dtype.type(0))
    return out

"""Winograd's batched products on gemm's compiled AVX-512 product, where it exists.

The ``(m+2)^N`` channel products of :mod:`.winograd` go through BLAS, which
may run kernels narrower than the CPU's vectors (an environment can pin
OpenBLAS to Haswell's AVX2 on an AVX-512 CPU): measured 100-110 GFLOP/s on
one core. :mod:`._gemm_kernel` (the GEMM method's product on packed panels)
reaches 170-230 GFLOP/s on the same shapes (64-256 channels, 64-400 tiles),
so where it is importable and the CPU has AVX-512 (:func:`available`), the
transforms write its packed layouts directly (:func:`._winograd_jit.input_transform`,
:func:`._winograd_jit.kernel_transform_panels`,
:func:`._winograd_jit.gather_transform`) and one compiled loop runs the
products of every position (:func:`products`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

try:
    from . import _gemm_kernel as _gk
except ImportError:  # a build without the compiled product
    _gk = None


def available():
    """Whether the compiled product is here and the CPU has AVX-512.

    Not on AVX2: there gemm's block runs at OpenBLAS's speed, and the
    channel products on it measured 0-20% slower than BLAS's forward and
    4-11% in the weight gradient (64-256 channels, AMD EPYC, 1 thread).
    """
    return _gk is not None and bool(_gk.available()) and _gk.ISA == "avx512"


#: Rows of a left panel (None without the compiled product).
MR = None if _gk is None else _gk.MR


def panel_width(dtype):
    """Columns of a right panel for ``dtype``."""
    return _gk.nr(np.dtype(dtype))


if _gk is not None:
    @njit(nogil=True, cache=True)
    def products(ap, bp, c, beta):
        """``c[k] (+)= A_k @ B_k`` for every position ``k``, from packed panels.

        ``ap``: ``(K, ceil(M/MR), inner, MR)``; ``bp``: ``(K, ceil(N/R),
        inner, R)``; ``c``: ``(K, M, N)``; ``beta``: add instead of
        overwriting.
        """
        for k in range(c.shape[0]):
            _gk.product(ap[k], bp[k], c[k], beta)

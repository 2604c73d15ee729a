"""Machine rates behind the algorithms' cost estimates, and shared cost helpers.

Each algorithm's ``estimate(spec)`` lives beside it in its module and is built
from these rates, measured on the development machine (2 cores of an AVX-512
Xeon, OpenBLAS).
"""

from __future__ import annotations

#: Machine rates behind the estimates, measured on the development machine
#: (2 cores): float32 GEMM flop/s for large well-shaped products; elementwise
#: NumPy operations per second with data in cache; memory copy bytes/s;
#: ``scipy.fft`` throughput in points*log2(points)/s; fixed seconds per
#: Python-level step (one ufunc or BLAS call); seconds per row of the compiled
#: depthwise kernel; values per second of the compiled im2col of ``gemm``
#: (contiguous runs, into cache: 4-9e9 measured on 1 core); of the compiled
#: direct kernel (:mod:`._direct_jit`): multiply-adds per second, seconds per
#: loop over its accumulator, seconds per call.
RATES: dict[str, float] = {"gemm": 2.0e11, "elem": 4e9, "copy": 8e9, "fft": 4e9, "step": 3e-6,
                           "row": 7.5e-8, "pack": 8e9, "jit_mac": 2.8e10, "jit_pass": 7e-9,
                           "jit_call": 1.5e-5}


def gemm_eff(k: float, n: float) -> float:
    """Fraction of GEMM peak reached with inner size ``k`` and ``n`` output columns.

    Skinny products (few channels) are bound by memory, not arithmetic; fitted
    to OpenBLAS on the development machine (k = n = 64: ~0.5, 128: ~1).
    """
    # Below k = 32 (single-channel inputs: k is just the taps) the product is
    # mostly packing overhead: 9 x 16 runs at ~3% of peak (measured).
    k_eff = (k / 128) ** 0.6 * min(1.0, k / 32) ** 1.5
    return max(0.01, min(1.0, k_eff * min(1.0, n / 128) ** 0.3))

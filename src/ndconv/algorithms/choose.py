"""Pick an algorithm for a correlation, and say why.

A cost model estimates each supported algorithm's time from the arguments
alone, with rates calibrated on the development machine (2 cores of an
AVX-512 Xeon, OpenBLAS; see :data:`RATES`); ``measure=True`` times the
plausible candidates on the actual arrays instead, as
``scipy.signal.choose_conv_method(measure=True)``. An algorithm whose
``supports(spec)`` says no is never chosen.
"""

from __future__ import annotations

import functools
import math
import time

import numpy as np

from . import ALGORITHMS

#: Machine rates behind the estimates, measured on the development machine
#: (2 cores): float32 GEMM flop/s for large well-shaped products; elementwise
#: NumPy operations per second with data in cache; memory copy bytes/s;
#: ``scipy.fft`` throughput in points*log2(points)/s; fixed seconds per
#: Python-level step (one ufunc or BLAS call); seconds per row of the compiled
#: depthwise kernel.
RATES = {"gemm": 2.0e11, "elem": 4e9, "copy": 8e9, "fft": 4e9, "step": 3e-6, "row": 7.5e-8}


def _gemm_eff(k, n):
    """Fraction of GEMM peak reached with inner size ``k`` and ``n`` output columns.

    Skinny products (few channels) are bound by memory, not arithmetic; fitted
    to OpenBLAS on the development machine (k = n = 64: ~0.5, 128: ~1).
    """
    # Below k = 32 (single-channel inputs: k is just the taps) the product is
    # mostly packing overhead: 9 x 16 runs at ~3% of peak (measured).
    k_eff = (k / 128) ** 0.6 * min(1.0, k / 32) ** 1.5
    return max(0.01, min(1.0, k_eff * min(1.0, n / 128) ** 0.3))


def _direct(spec):
    B, O, g = spec.batch, spec.out_channels, spec.groups
    Cg = spec.in_channels // g
    P = math.prod(spec.out_spatial)
    it = spec.dtype.itemsize
    r = RATES
    if Cg == 1:
        # Two passes over whole (out-of-cache) arrays per tap.
        per_tap = 3 * B * O * P * it / r["copy"]
    else:
        per_tap = (
            2 * B * spec.in_channels * P * it / r["copy"]
            + 2 * B * O * P * Cg / (r["gemm"] * _gemm_eff(Cg, O // g))
            + 3 * B * O * P * it / r["copy"]
        )
    return spec.taps * (per_tap + r["step"])


def _gemm(spec):
    B, O, g = spec.batch, spec.out_channels, spec.groups
    Cg = spec.in_channels // g
    P = math.prod(spec.out_spatial)
    it = spec.dtype.itemsize
    r = RATES
    cols = B * P * spec.taps * spec.in_channels * it
    k = spec.taps * Cg
    return (
        2 * cols / r["copy"]
        + 2 * spec.macs / (r["gemm"] * _gemm_eff(k, O // g))
        + 2 * B * O * P * it / r["copy"]
        + (cols // (32 * 2**20) + 1) * r["step"]
    )


def _winograd(spec):
    from .winograd import CHUNK_BYTES, tile_size

    N = spec.ndim
    B, C, O, g = spec.batch, spec.in_channels, spec.out_channels, spec.groups
    m = tile_size(N)
    a = m + 2
    tiles = B * math.prod(-(-o // m) for o in spec.out_spatial)
    r = RATES
    v, y = tiles * a**N * C, tiles * a**N * O
    # Elementwise operations per transformed value and dim (nonzeros of the
    # B^T and A^T rows; earlier dims work on smaller arrays, hence 0.6).
    nnz_in, nnz_out = (0.6, 0.8) if m == 2 else (3.7, 4.0)
    transforms = 0.6 * N * (v * nnz_in + y * nnz_out) / r["elem"]
    products = 2 * tiles * a**N * (C // g) * O / (r["gemm"] * _gemm_eff(C // g, O // g))
    chunks = max(1, v * spec.dtype.itemsize // CHUNK_BYTES)
    out = 2 * B * O * math.prod(spec.out_spatial) * spec.dtype.itemsize / r["copy"]
    calls = a**N // 8 + (a + 1) * N * (2 if m == 2 else 4)  # one matmul, ufuncs per row
    return transforms + products + out + chunks * calls * r["step"]


def _fft(spec):
    from .fft import block_length

    B, C, O, g = spec.batch, spec.in_channels, spec.out_channels, spec.groups
    Cg, Og = C // g, O // g
    span = [d * (k - 1) + 1 for k, d in zip(spec.kernel_size, spec.dilation)]
    extra = 4.0 * Cg * Og / (Cg + Og)
    total, L = 1, 1
    for n, k, s, o in zip(spec.padded_spatial, span, spec.stride, spec.out_spatial):
        bl, t = block_length(n, k, s, extra)
        total *= -(-o // t) * bl
        L *= bl
    r = RATES
    lg = math.log2(max(L, 2))
    # Transforms of the input blocks, the output blocks and the kernel (the
    # kernel's is large when channels are many and the image small), plus
    # the complex buffers' layout copies and the per-frequency products.
    points = (B * C + B * O) * total + O * Cg * L
    transforms = points * lg / r["fft"] + 3 * 4 * points * spec.dtype.itemsize / r["copy"]
    if Cg == 1:
        products = 3 * B * O * total / r["elem"]
    else:
        # many small complex products (one per frequency): well below peak
        products = 4 * B * Cg * O * total / (r["gemm"] * 0.25 * _gemm_eff(Cg, Og))
    return transforms + products + 20 * r["step"]


def _implicit(spec):
    from .implicit import CHUNK_ROWS, mode, waste

    B, C, O = spec.batch, spec.in_channels, spec.out_channels
    it = spec.dtype.itemsize
    r = RATES
    flops = 2 * spec.macs * waste(spec)
    grid = B * math.prod(spec.padded_spatial)
    copies = 2 * (grid * C + grid * O) * it / r["copy"]
    if mode(spec) == "taps":
        eff = _gemm_eff(C, O)
        calls = spec.taps * (grid // CHUNK_ROWS + 1)
    else:
        eff = _gemm_eff(spec.taps * (C // spec.groups), B)
        calls = spec.groups * math.prod(spec.out_spatial)
    return flops / (r["gemm"] * eff) + copies + calls * r["step"]


def _scatter(spec):
    from .scatter import TILE_BYTES

    B, C, O, g = spec.batch, spec.in_channels, spec.out_channels, spec.groups
    it = spec.dtype.itemsize
    r = RATES
    M = B * math.prod(spec.in_spatial)  # real (undilated) input elements
    flops = 2 * M * (C // g) * spec.taps * O
    contrib = M * spec.taps * O * it
    out = B * O * math.prod(spec.out_spatial) * it
    return (
        flops / (r["gemm"] * _gemm_eff(C // g, spec.taps * O // g))
        + 4 * contrib / r["copy"]
        + 3 * out / r["copy"]
        + (contrib // TILE_BYTES + 1) * spec.taps * r["step"]
    )


def _depthwise(spec):
    B, O = spec.batch, spec.out_channels
    P = math.prod(spec.out_spatial)
    padded = B * spec.in_channels * math.prod(spec.padded_spatial) * spec.dtype.itemsize
    import importlib.util

    # In cache on both cores; numba's fused kernel does ~4x the NumPy rate.
    jit = spec.dtype.kind == "f" and importlib.util.find_spec("numba") is not None
    work = 2 * spec.taps * B * O * P / (RATES["elem"] * (8 if jit else 2))
    chunks = B * O * P * spec.dtype.itemsize // (256 * 2**10) + 1
    # The compiled kernel pays ~0.075 us per output row (measured: 512 planes of
    # 8x8 take 0.41 ms, 12x the arithmetic), which decides small images.
    rows = B * O * math.prod(spec.out_spatial[:-1]) if jit else 0
    return (work + 2 * padded / RATES["copy"] + chunks * 2 * spec.taps * RATES["step"]
            + rows * RATES["row"])


_ESTIMATES = {
    "direct": _direct,
    "gemm": _gemm,
    "winograd": _winograd,
    "fft": _fft,
    "depthwise": _depthwise,
    "implicit": _implicit,
    "scatter": _scatter,
}


def estimate(method, spec):
    """Estimated seconds of ``method`` for ``spec`` on the calibrated machine."""
    return _ESTIMATES[method](spec)


def candidates(spec):
    """``({method: estimated seconds}, {method: reason unsupported})``."""
    est, no = {}, {}
    for name, algo in ALGORITHMS.items():
        ok, why = algo.supports(spec)
        if not ok:
            no[name] = why
        elif name in _ESTIMATES:
            est[name] = estimate(name, spec)
    return est, no


def _fmt(seconds):
    return f"{seconds * 1e3:.3g} ms"


def _timed(algo, x, w, spec):
    best = math.inf
    for _ in range(2):
        t0 = time.perf_counter()
        algo.run(x, w, spec)
        best = min(best, time.perf_counter() - t0)
    return best


def choose(spec, measure=False, x=None, w=None):
    """Return ``(method, reason)`` for the correlation ``spec``.

    Parameters
    ----------
    spec : CorrSpec
    measure : bool
        Time the candidates whose estimate is within 10x of the best (each
        run twice, the faster kept) instead of trusting the estimates.
    x, w : ndarray, optional
        Arrays to time with; random ones of the spec's shapes otherwise.

    Returns
    -------
    method : str
    reason : str
        The winner's estimated (or measured) time, the others', and why
        any algorithm was ruled out.
    """
    if not measure:
        return _choose_cached(spec)
    est, no = candidates(spec)
    best_est = min(est.values())
    pool = [k for k, v in est.items() if v <= 10 * best_est]
    if x is None or w is None:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((spec.batch, spec.in_channels, *spec.in_spatial))
        w = rng.standard_normal(
            (spec.out_channels, spec.in_channels // spec.groups, *spec.kernel_size)
        )
        x, w = x.astype(spec.dtype), w.astype(spec.dtype)
    times = {k: _timed(ALGORITHMS[k], x, w, spec) for k in pool}
    method = min(times, key=times.get)
    others = ", ".join(
        f"{k} {_fmt(v)}" for k, v in sorted(times.items(), key=lambda kv: kv[1]) if k != method
    )
    reason = f"measured {_fmt(times[method])}, fastest of: {others or 'no other'}"
    skipped = [k for k in est if k not in pool]
    if skipped:
        reason += f" (not timed, estimated >10x slower: {', '.join(skipped)})"
    ruled = "; ".join(f"{k} ruled out: {v}" for k, v in no.items())
    return method, reason + (f"; {ruled}" if ruled else "")


@functools.lru_cache(maxsize=512)
def _choose_cached(spec):
    """The cost-model choice; specs repeat (a layer per step), so remember it."""
    est, no = candidates(spec)
    method = min(est, key=est.get)
    others = ", ".join(
        f"{k} {_fmt(v)}" for k, v in sorted(est.items(), key=lambda kv: kv[1]) if k != method
    )
    reason = (
        f"estimated {_fmt(est[method])} ({_why(method, spec)}); others estimated: "
        f"{others or 'none'}"
    )
    ruled = "; ".join(f"{k} ruled out: {v}" for k, v in no.items())
    return method, reason + (f"; {ruled}" if ruled else "")


def _why(method, spec):
    cg = spec.in_channels // spec.groups
    if method == "depthwise":
        return f"1 input channel per group: {spec.taps} cache-blocked multiply-adds per output"
    if method == "direct":
        return f"{spec.taps} taps: one product per tap over shifted slices, no im2col copy"
    if method == "gemm":
        return f"{spec.taps} taps x {cg} channels per group: im2col + BLAS GEMM"
    if method == "winograd":
        from .winograd import tile_size

        m = tile_size(spec.ndim)
        return f"3x..x3 stride 1: Winograd F({m},3) per dim, fewer multiplies than im2col"
    if method == "scatter":
        return (
            f"input dilation {spec.lhs_dilation}: only the real input elements are "
            "multiplied (one GEMM), then added into place per tap"
        )
    if method == "implicit":
        from .implicit import mode

        if mode(spec) == "taps":
            return f"stride 1: {spec.taps} in-place GEMMs of shifted row slices, no im2col copy"
        return f"{spec.taps} taps, few outputs: one GEMM per output over the kernel on the grid"
    return f"kernel span {spec.kernel_size} is large: FFT cost does not grow with the taps"

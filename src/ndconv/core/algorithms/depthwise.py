"""Depthwise method: one input channel per group (``groups == in_channels``).

Each output channel then sees a single input plane, so there is no channel sum
to hand to BLAS: the output is the lecture's sum over kernel taps of the tap's
weight times a shifted slice, a broadcast multiply-add per tap. The direct
method does the same over whole arrays, which streams every array through
memory once per tap; here the planes are cut into chunks small enough to stay
in the CPU cache for all the taps (:data:`CHUNK_BYTES`), and the chunks are
shared among threads (NumPy releases the GIL inside its loops). This also
serves plain single-channel filtering (``ndconv.correlate`` of an image).
"""

from __future__ import annotations

import math

import numpy as np

from .._windows import pad
from . import _direct_jit, _rows_jit
from ._jit import numba_installed
from .threads import get_num_threads

#: Size of one chunk's output, in bytes: small enough for L2 with its inputs.
CHUNK_BYTES = 256 * 2**10

#: Below this many output bytes, one thread (thread start-up would dominate).
THREAD_BYTES = 4 * 2**20


def supports(spec):
    cg = spec.in_channels // spec.groups
    if cg != 1:
        return False, f"{cg} input channels per group; needs 1 (groups == in_channels)"
    return True, "one input channel per group"


def _chunks(planes, rows, row_bytes):
    """Blocks ``(p0, p1, r0, r1)`` of (planes, first output dim) under CHUNK_BYTES."""
    per = max(1, CHUNK_BYTES // max(row_bytes, 1))
    if per >= rows:
        n = max(1, per // rows)
        return [(p0, min(planes, p0 + n), 0, rows) for p0 in range(0, planes, n)]
    return [(p, p + 1, r0, min(rows, r0 + per)) for p in range(planes) for r0 in range(0, rows, per)]


def _padded(x, spec):
    """``pad`` for the jit path; zero padding writes only the border, not all twice."""
    simple = spec.padding_mode == "zeros" and all(r == 1 for r in spec.lhs_dilation)
    if not simple or any(lo < 0 or hi < 0 for lo, hi in spec.pairs):
        return np.ascontiguousarray(
            pad(x, spec.pairs, spec.padding_mode, lhs_dilation=spec.lhs_dilation)
        )
    xp = np.empty(x.shape[:2] + spec.padded_spatial, dtype=x.dtype)
    for i, (lo, hi) in enumerate(spec.pairs):
        edge = [slice(None)] * xp.ndim
        edge[2 + i] = slice(0, lo)
        xp[tuple(edge)] = 0
        edge[2 + i] = slice(xp.shape[2 + i] - hi, None)
        xp[tuple(edge)] = 0
    xp[(Ellipsis, *[slice(lo, lo + n) for (lo, _), n in zip(spec.pairs, spec.in_spatial)])] = x
    return xp


def _run_border(kernel, x, w, spec):
    """Zero padding handled inside the kernel: no padded copy of the input."""
    g = spec.groups
    B, O = spec.batch, spec.out_channels
    Og = O // g
    S_in, S_out = spec.in_spatial, spec.out_spatial
    N = spec.ndim
    xf = np.ascontiguousarray(x).reshape(B * g, -1)
    gs = np.array([math.prod(S_in[i + 1:]) for i in range(N)], dtype=np.int64)
    tapidx = np.array(list(np.ndindex(*spec.kernel_size)), dtype=np.int64).reshape(-1, N)
    wt = np.ascontiguousarray(w.reshape(g, Og, spec.taps))
    out = np.empty((B * g, Og, math.prod(S_out[:-1]), S_out[-1]), dtype=spec.dtype)
    i64 = lambda v: np.array(v, dtype=np.int64)  # noqa: E731
    from ._jit import set_threads

    work = B * O * math.prod(S_out) * spec.taps
    set_threads(get_num_threads() if work >= 2**21 else 1)
    kernel(xf, wt, tapidx, out, i64(S_in), gs, i64(S_out), i64(spec.stride),
           i64(spec.dilation), i64([lo for lo, _ in spec.pairs]), np.arange(B * g) % g)
    return out.reshape(B, O, *S_out)


def _run_jit(kernel, x, w, spec):
    N = spec.ndim
    g = spec.groups
    B, O = spec.batch, spec.out_channels
    Og = O // g
    S_out = spec.out_spatial
    Sp = spec.padded_spatial
    xf = _padded(x, spec).reshape(B * g, -1)
    gs = [math.prod(Sp[i + 1:]) for i in range(N)]
    offs = np.array(
        [sum(t * d * st for t, d, st in zip(tap, spec.dilation, gs))
         for tap in np.ndindex(*spec.kernel_size)],
        dtype=np.int64,
    )
    wt = np.ascontiguousarray(w.reshape(g, Og, spec.taps))
    out = np.empty((B * g, Og, math.prod(S_out[:-1]), S_out[-1]), dtype=spec.dtype)
    shape = np.array(S_out[:-1], dtype=np.int64)
    gstr = np.array([s * st for s, st in zip(spec.stride[:-1], gs[:-1])], dtype=np.int64)
    from ._jit import set_threads

    # Small problems on one thread: waking the pool costs more than it saves.
    work = B * O * math.prod(S_out) * spec.taps
    set_threads(get_num_threads() if work >= 2**21 else 1)
    kernel(xf, wt, offs, out, shape, gstr, spec.stride[-1], np.arange(B * g) % g)
    return out.reshape(B, O, *S_out)


def _rows(x, w, spec):
    """The compiled rows kernel where it applies (long rows, zero padding), else None."""
    if not _rows_jit.eligible(spec):
        return None
    work = spec.batch * spec.out_channels * math.prod(spec.out_spatial) * spec.taps
    return _rows_jit.run(x, w, spec, get_num_threads() if work >= 2**21 else 1)


def run(x, w, spec):
    # Long rows (an image): each output row straight from the input rows.
    y = _rows(x, w, spec)
    if y is not None:
        return y
    # Stride 1: the compiled direct kernel, whose slabs are one long loop per
    # tap (a row at a time is too short for the vector units).
    compiled = _direct_jit.plan(spec)
    if compiled is not None and not compiled.dot:
        return _direct_jit.run(compiled, x, w)
    # The compiled kernel is typed for real floats; complex and integer
    # planes take the NumPy loop below (same taps, same chunks).
    if spec.dtype in (np.dtype(np.float32), np.dtype(np.float64)):
        from ._jit import taps_kernel

        kernels = taps_kernel()
        if kernels is not None:
            w = w.astype(spec.dtype, copy=False)
            if spec.padding_mode == "zeros" and all(r == 1 for r in spec.lhs_dilation):
                return _run_border(kernels[1], x, w, spec)
            return _run_jit(kernels[0], x, w, spec)
    g = spec.groups
    B, O = spec.batch, spec.out_channels
    Og = O // g
    S_out = spec.out_spatial
    N = spec.ndim
    xp = pad(x, spec.pairs, spec.padding_mode, lhs_dilation=spec.lhs_dilation)
    planes = xp.reshape(B * g, *xp.shape[2:])
    wt = w.reshape(g, Og, spec.taps).astype(spec.dtype, copy=False)
    out = np.empty((B * g, Og, *S_out), dtype=spec.dtype)
    taps = list(np.ndindex(*spec.kernel_size))
    s0, d0 = spec.stride[0], spec.dilation[0]
    rest = math.prod(S_out[1:])
    chunks = _chunks(B * g, S_out[0], Og * rest * spec.dtype.itemsize)
    one = (None,) * N

    def work(chunk):
        p0, p1, r0, r1 = chunk
        # Weights of these planes: plane p is group p % g.
        wsel = wt[np.arange(p0, p1) % g]  # (np, Og, taps)
        acc = out[p0:p1, :, r0:r1]
        tmp = np.empty(acc.shape, dtype=spec.dtype)
        for t, tap in enumerate(taps):
            sl = spec.tap_slices(tap)
            # Rows r0..r1 of the output read input rows r*s0 + tap*d0.
            first = slice(tap[0] * d0 + r0 * s0, tap[0] * d0 + (r1 - 1) * s0 + 1, s0)
            src = planes[(slice(p0, p1), first, *sl[1:])][:, None]
            wk = wsel[:, :, t][(Ellipsis, *one)]
            if t == 0:
                np.multiply(src, wk, out=acc)
            else:
                np.multiply(src, wk, out=tmp)
                acc += tmp

    nthreads = get_num_threads()
    if nthreads > 1 and out.nbytes >= THREAD_BYTES and len(chunks) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(nthreads) as pool:
            list(pool.map(work, chunks))
    else:
        for c in chunks:
            work(c)
    return out.reshape(B, O, *S_out)


def run_bias(x, w, spec, bias):
    """``run`` plus ``bias``: the compiled kernel adds it as it writes the output."""
    y = _rows(x, w, spec)
    if y is not None:
        return add_bias(y, bias)
    compiled = _direct_jit.plan(spec)
    if compiled is not None and not compiled.dot:
        return _direct_jit.run(compiled, x, w, bias)
    return add_bias(run(x, w, spec), bias)


def estimate(spec):
    """Estimated seconds (see :mod:`ndconv.algorithms.cost`)."""
    from .cost import RATES

    compiled = _direct_jit.plan(spec)
    if compiled is not None and not compiled.dot:
        return _direct_jit.seconds(compiled)
    B, O = spec.batch, spec.out_channels
    P = math.prod(spec.out_spatial)
    padded = B * spec.in_channels * math.prod(spec.padded_spatial) * spec.dtype.itemsize
    # In cache on both cores; numba's fused kernel does ~4x the NumPy rate.
    jit = spec.dtype.kind == "f" and numba_installed()
    work = 2 * spec.taps * B * O * P / (RATES["elem"] * (8 if jit else 2))
    chunks = B * O * P * spec.dtype.itemsize // (256 * 2**10) + 1
    # The compiled kernel pays ~0.075 us per output row (measured: 512 planes of
    # 8x8 take 0.41 ms, 12x the arithmetic), which decides small images.
    rows = B * O * math.prod(spec.out_spatial[:-1]) if jit else 0
    return (work + 2 * padded / RATES["copy"] + chunks * 2 * spec.taps * RATES["step"]
            + rows * RATES["row"])


def reason(spec):
    return f"1 input channel per group: {spec.taps} cache-blocked multiply-adds per output"


from .record import Algorithm, add_bias  # noqa: E402

ALGORITHM = Algorithm(
    name="depthwise", supports=supports, run=run, estimate=estimate, reason=reason,
    run_bias=run_bias, arrays=("numpy",),
)

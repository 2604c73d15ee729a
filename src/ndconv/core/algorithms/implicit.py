"""Implicit GEMM: products of shifted views of a flattened grid, no im2col copy.

Lay the padded input out channels-last, ``(B, *S_padded, C)``, and flatten it
to rows ``(B * prod(S_padded), C)``. For stride 1, the input row that kernel
tap ``t`` multiplies for the output at grid position ``n`` is ``n + off(t)``,
with one constant offset per tap: so the tap's contribution to *every*
output is one GEMM of a contiguous slice of the rows with the tap's
``(C, O)`` weight, accumulated in place (BLAS ``beta = 1``) into an output laid
on the same grid. Positions of the grid that are not outputs (the last
``d*(k-1)`` of each dim) are computed and dropped: a small waste, no copy.

The same trick serves the weight gradient, whose "kernel" is the output
gradient (thousands of taps) and whose output is the small kernel: then the
loop runs over the few outputs instead, and with dilation 1 each output is
one GEMM of the kernel laid on the grid (zeros off the kernel) with a shifted
slice of the rows, inner size ``C * prod(S_padded)``.

Rows are processed in chunks so that an output chunk stays in cache across
the taps. BLAS with ``beta = 1`` comes from ``scipy.linalg.blas``; without
SciPy, NumPy's ``matmul`` and an addition do the same.
"""

from __future__ import annotations

import math

import numpy as np

from .._windows import pad

#: Rows of the output grid per chunk (accumulated over all taps in cache).
CHUNK_ROWS = 8192


def supports(spec):
    if spec.compute_dtype.kind not in "fc":
        return False, f"dtype {spec.dtype} is not floating point or complex (BLAS)"
    taps_ok = all(s == 1 for s in spec.stride) and spec.groups == 1
    outs_ok = all(d == 1 for d in spec.dilation)
    if not (taps_ok or outs_ok):
        return False, (
            f"needs stride 1 and groups 1 (loop over taps) or dilation 1 (loop over "
            f"outputs); got stride {spec.stride}, dilation {spec.dilation}, groups {spec.groups}"
        )
    return True, "stride 1 and groups 1, or dilation 1"


def mode(spec):
    """``'taps'`` or ``'outputs'``: which loop wastes less on grid positions."""
    Sp = math.prod(spec.padded_spatial)
    taps_ok = all(s == 1 for s in spec.stride) and spec.groups == 1
    outs_ok = all(d == 1 for d in spec.dilation)
    # Multiply-adds actually done, relative to the useful ones.
    waste_taps = Sp / math.prod(spec.out_spatial)
    waste_outs = Sp / spec.taps
    if taps_ok and (not outs_ok or waste_taps <= waste_outs):
        return "taps"
    return "outputs"


def waste(spec):
    """Work done relative to the direct formula's, in the mode :func:`mode` picks."""
    Sp = math.prod(spec.padded_spatial)
    if mode(spec) == "taps":
        return Sp / math.prod(spec.out_spatial)
    return Sp / spec.taps


#: BLAS routine per dtype character (float32, float64, complex64, complex128).
_BLAS_GEMM_NAMES = {"f": "sgemm", "d": "dgemm", "F": "cgemm", "D": "zgemm"}


def _gemm_acc():
    """``acc(a, b, c, first)``: ``c = a @ b`` (first) or ``c += a @ b``, in place."""
    try:
        from scipy.linalg import blas
    except ImportError:
        blas = None

    def acc(a, b, c, first):
        # C-contiguous (R, C) @ (C, O) -> (R, O) is, in BLAS's column-major
        # view, (O, C) @ (C, R) -> (O, R): pass the transposes, no copies.
        if blas is not None:
            f = getattr(blas, _BLAS_GEMM_NAMES[c.dtype.char])
            r = f(1.0, b.T, a.T, beta=0.0 if first else 1.0, c=c.T, overwrite_c=1)
            if not np.shares_memory(r, c):  # BLAS could not work in place
                c[...] = r.T
        elif first:
            np.matmul(a, b, out=c)
        else:
            c += a @ b

    return acc


def _run_taps(x, w, spec):
    N = spec.ndim
    B, C, O = spec.batch, spec.in_channels, spec.out_channels
    Sp = spec.padded_spatial
    xl = pad(x, spec.pairs, spec.padding_mode, lhs_dilation=spec.lhs_dilation,
             channels_last=True)
    rows = xl.reshape(-1, C)
    gs = [math.prod(Sp[i + 1:]) for i in range(N)]
    offs = [
        sum(t * d * g for t, d, g in zip(tap, spec.dilation, gs))
        for tap in np.ndindex(*spec.kernel_size)
    ]
    wt = np.ascontiguousarray(np.moveaxis(w.reshape(O, C, spec.taps), -1, 0).swapaxes(1, 2))
    M = rows.shape[0] - offs[-1]  # grid positions whose every tap is in range
    grid = np.empty((rows.shape[0], O), dtype=spec.dtype)
    acc = _gemm_acc()
    for m0 in range(0, M, CHUNK_ROWS):
        m1 = min(M, m0 + CHUNK_ROWS)
        c = grid[m0:m1]
        for t, off in enumerate(offs):
            acc(rows[m0 + off : m1 + off], wt[t], c, t == 0)
    out = grid.reshape(B, *Sp, O)[(slice(None), *[slice(0, o) for o in spec.out_spatial])]
    return np.ascontiguousarray(np.moveaxis(out, -1, 1))


def _run_outputs(x, w, spec):
    N = spec.ndim
    g = spec.groups
    B, C, O = spec.batch, spec.in_channels, spec.out_channels
    Cg, Og = C // g, O // g
    Sp = spec.padded_spatial
    P = math.prod(Sp)
    xp = pad(x, spec.pairs, spec.padding_mode, lhs_dilation=spec.lhs_dilation)
    gs = [math.prod(Sp[i + 1:]) for i in range(N)]
    outs = list(np.ndindex(*spec.out_spatial))
    offs = [sum(q * s * gg for q, s, gg in zip(qq, spec.stride, gs)) for qq in outs]
    # Rows (C * P + room for the largest shift, B): channel-major blocks of the grid.
    rows = np.zeros((C * P + offs[-1], B), dtype=spec.dtype)
    rows[: C * P] = np.moveaxis(xp, 0, -1).reshape(C * P, B)
    # The kernel on the grid, zero off its support: (g, Og, Cg * P).
    wgrid = np.zeros((O, Cg, *Sp), dtype=spec.dtype)
    wgrid[(slice(None), slice(None), *[slice(0, k) for k in spec.kernel_size])] = w
    wgrid = wgrid.reshape(g, Og, Cg * P)
    out = np.empty((B, O, len(outs)), dtype=spec.dtype)
    for gi in range(g):
        base = gi * Cg * P
        for i, off in enumerate(offs):
            r = wgrid[gi] @ rows[base + off : base + off + Cg * P]  # (Og, B)
            out[:, gi * Og : (gi + 1) * Og, i] = r.T
    return out.reshape(B, O, *spec.out_spatial)


def run(x, w, spec):
    if mode(spec) == "taps":
        return _run_taps(x, w, spec)
    return _run_outputs(x, w, spec)


def estimate(spec):
    """Estimated seconds (see :mod:`ndconv.algorithms.cost`)."""
    from .cost import RATES as r, gemm_eff

    B, C, O = spec.batch, spec.in_channels, spec.out_channels
    it = spec.dtype.itemsize
    flops = 2 * spec.macs * waste(spec)
    grid = B * math.prod(spec.padded_spatial)
    copies = 2 * (grid * C + grid * O) * it / r["copy"]
    if mode(spec) == "taps":
        eff = gemm_eff(C, O)
        calls = spec.taps * (grid // CHUNK_ROWS + 1)
    else:
        eff = gemm_eff(spec.taps * (C // spec.groups), B)
        calls = spec.groups * math.prod(spec.out_spatial)
    return flops / (r["gemm"] * eff) + copies + calls * r["step"]


def reason(spec):
    if mode(spec) == "taps":
        return f"stride 1: {spec.taps} in-place GEMMs of shifted row slices, no im2col copy"
    return f"{spec.taps} taps, few outputs: one GEMM per output over the kernel on the grid"


def mixes_nonfinite(spec):
    """The loop over outputs multiplies the kernel laid on the whole grid, zeros
    off its support: ``0 * Inf = NaN`` reaches every output."""
    return mode(spec) == "outputs"


def workspace_bytes(spec):
    """Taps: channels-last padded grid, the output on the grid, the output.
    Outputs: the grid's rows, the kernel laid on the grid, the output."""
    B, C, O, g = spec.batch, spec.in_channels, spec.out_channels, spec.groups
    it = spec.dtype.itemsize
    P = math.prod(spec.padded_spatial)
    out = B * O * math.prod(spec.out_spatial) * it
    if mode(spec) == "taps":
        return B * P * (2 * C + O) * it + 2 * out  # padding, then the channels-last copy
    # Plus the Python list of output positions and their offsets (~128 B each).
    return (B * C * P * 2 + O * (C // g) * P) * it + out + 128 * math.prod(spec.out_spatial)


from .record import Algorithm  # noqa: E402

ALGORITHM = Algorithm(
    name="implicit", supports=supports, run=run, estimate=estimate, reason=reason,
    mixes_nonfinite=mixes_nonfinite, workspace_bytes=workspace_bytes,
)

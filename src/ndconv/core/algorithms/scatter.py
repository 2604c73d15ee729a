"""Scatter method (col2im): each input element adds a copy of the kernel to the output.

With input dilation ``r > 1`` (the input gradient of a strided convolution,
and the transposed convolution) most of the dilated input is zeros, which
every gather-style method multiplies anyway. Here only the real elements
work: one GEMM ``(B*P_in, C) @ (C, taps*O)`` gives every element's
contribution to every tap, and one strided slice-add per tap (the lecture's
sum over taps, run backwards) puts them in place. Stride 1 only (which is what
input gradients are); any dilation, input dilation, cropping and groups.
Work is split over batch items and taps so the contribution buffer stays
under :data:`TILE_BYTES` (or one tap of one item, if that is larger).
"""

from __future__ import annotations

import math

import numpy as np

#: Upper bound on the contribution buffer of one chunk, in bytes.
TILE_BYTES = 32 * 2**20


def supports(spec):
    if spec.compute_dtype.kind not in "fciu":
        return False, f"dtype {spec.dtype} is not numeric"
    if any(s != 1 for s in spec.stride):
        return False, f"stride {spec.stride} is not 1"
    if spec.padding_mode != "zeros":
        return False, f"padding_mode {spec.padding_mode!r} is not 'zeros'"
    return True, "stride 1, zero padding (any input dilation)"


def _tap_slices(tap, spec):
    """``(src, dst)`` slices: input elements ``src`` land on outputs ``dst`` for ``tap``.

    Input element ``p`` sits at ``lo + p*r`` of the padded, dilated input; tap
    ``t`` of output ``q`` reads position ``q + t*d``, so ``q = lo + p*r - t*d``.
    """
    src, dst = [], []
    for t, d, r, (lo, _), n_in, n_out in zip(
        tap, spec.dilation, spec.lhs_dilation, spec.pairs, spec.in_spatial, spec.out_spatial
    ):
        shift = lo - t * d
        p0 = max(0, -(shift // r))  # smallest p with shift + p*r >= 0
        p1 = min(n_in - 1, (n_out - 1 - shift) // r)
        if p1 < p0:
            return None
        src.append(slice(p0, p1 + 1))
        q0 = shift + p0 * r
        dst.append(slice(q0, q0 + (p1 - p0) * r + 1, r))
    return tuple(src), tuple(dst)


def run(x, w, spec):
    g = spec.groups
    B, C, O = spec.batch, spec.in_channels, spec.out_channels
    Cg, Og = C // g, O // g
    S_in, S_out = spec.in_spatial, spec.out_spatial
    T = spec.taps
    Pin = math.prod(S_in)
    moves = [_tap_slices(tap, spec) for tap in np.ndindex(*spec.kernel_size)]
    # (g, T*Og, Cg): row (t, o) of group gi holds w[gi*Og + o, :, t]. Its
    # product with the channels-first input (Cg, Pin) is every element's
    # contribution, already laid out (t, o, *S_in): no transposes anywhere.
    wm = w.reshape(g, Og, Cg, T).transpose(0, 3, 1, 2).reshape(g, T * Og, Cg)
    wm = np.ascontiguousarray(wm, dtype=spec.dtype)
    xr = x.reshape(B, g, Cg, Pin)
    out = np.zeros((B, O, *S_out), dtype=spec.dtype)
    # Chunks of batch items and taps; one tap of one item (the size of that
    # item's output, at most) is the smallest unit.
    per_tap = Pin * O * spec.dtype.itemsize
    nt = max(1, min(T, TILE_BYTES // max(per_tap, 1)))
    nb = max(1, TILE_BYTES // max(per_tap * nt, 1))
    for b0 in range(0, B, nb):
        b1 = min(B, b0 + nb)
        ob = out[b0:b1]
        for t0 in range(0, T, nt):
            t1 = min(T, t0 + nt)
            contrib = _product(wm[:, t0 * Og : t1 * Og], xr[b0:b1])  # (nb, g, nt*Og, Pin)
            contrib = contrib.reshape(b1 - b0, g, t1 - t0, Og, *S_in)
            for t in range(t0, t1):
                if moves[t] is None:
                    continue
                src, dst = moves[t]
                part = contrib[:, :, t - t0].reshape(b1 - b0, O, *S_in)
                ob[(slice(None), slice(None), *dst)] += part[(slice(None), slice(None), *src)]
    return out


def _product(a, b):
    """``np.matmul(a, b)`` with BLAS on one thread.

    Not BLAS's own threads: OpenBLAS's threads keep spinning for tens of
    milliseconds after a product, and numba's OpenMP threads for a few after
    a compiled kernel, each taking a core from the other's next call. The
    stem's forward and backward (its weight gradient compiled, then this
    product) took 17-20 ms on 2 threads, and the next forward alone 8 ms
    instead of 1.1; with this product on one BLAS thread 5.6 ms and 0.7
    (2-vCPU VM; 1 thread: 7.9 ms). Rows split over ndconv's own threads,
    BLAS on one thread in each, measured 6.0-7.2 ms: the OpenMP threads'
    spin takes one of them.
    """
    from .threads import blas_single_thread

    with blas_single_thread():
        return np.matmul(a, b)


def estimate(spec):
    """Estimated seconds (see :mod:`ndconv.algorithms.cost`)."""
    from .cost import RATES as r, gemm_eff

    B, C, O, g = spec.batch, spec.in_channels, spec.out_channels, spec.groups
    it = spec.dtype.itemsize
    M = B * math.prod(spec.in_spatial)  # real (undilated) input elements
    flops = 2 * M * (C // g) * spec.taps * O
    contrib = M * spec.taps * O * it
    out = B * O * math.prod(spec.out_spatial) * it
    return (
        flops / (r["gemm"] * gemm_eff(C // g, spec.taps * O // g))
        + 4 * contrib / r["copy"]
        + 3 * out / r["copy"]
        + (contrib // TILE_BYTES + 1) * spec.taps * r["step"]
    )


def reason(spec):
    return (
        f"input dilation {spec.lhs_dilation}: only the real input elements are "
        "multiplied (one GEMM), then added into place per tap"
    )


def workspace_bytes(spec):
    """The output and two chunks of contributions (the next is made before the
    last is freed); no padded copy of the input."""
    it = spec.dtype.itemsize
    out = spec.batch * spec.out_channels * math.prod(spec.out_spatial) * it
    per_tap = math.prod(spec.in_spatial) * spec.out_channels * it
    contrib = min(per_tap * spec.taps * spec.batch, max(TILE_BYTES, per_tap))
    return out + 2 * contrib + spec.out_channels * spec.in_channels * spec.taps * it


from .record import Algorithm  # noqa: E402

ALGORITHM = Algorithm(
    name="scatter", supports=supports, run=run, estimate=estimate, reason=reason,
    workspace_bytes=workspace_bytes,
)

"""FFT method: blocked overlap-save with ``scipy.fft``, for large kernels.

The correlation is a convolution with the flipped (and, for ``dilation > 1``,
zero-dilated) kernel. A circular convolution of length ``L`` with a kernel of
span ``Kd`` is exact at positions ``Kd - 1 .. L - 1`` (overlap-save), so the
padded input is cut into overlapping blocks of length ``L`` that step by
``T*stride`` (``T`` outputs each), every block is transformed at once with
``rfftn`` over the spatial axes, multiplied by the kernel's transform (a
matrix product over channels at each frequency), transformed back, and the
``T`` exact outputs of each block are kept, subsampled by the stride. ``L`` is
picked per dim to minimise ``L log L / T`` (near-ties to the shorter block,
kinder to the cache): the whole axis for short inputs, blocks a few kernel
spans long for long signals and big images.

Cost ~ ``B*(C + O)*S*log(L)`` transforms plus ``B*C*O*S`` complex
multiply-adds, independent of the kernel's taps, so it wins for large kernels.
Error: floating-point rounding of the transforms, about
``eps * log2(L) * sum|x| |w|`` per output, relative to the exact result
(see ``tests/test_algorithms.py`` for the tolerance tested).
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np

from .._windows import pad, windows
from .threads import fft_workers

#: Fixed cost of one more block along a dim (edges copied, transform set-up),
#: in the units of ``L * log2(L)``; favours fewer, longer blocks.
_PER_BLOCK = 256

#: Relative cost within which :func:`block_length` takes the shortest block.
#: 1-D, 1M samples 'same', 2048 taps, 1 thread (Zen 5, L2 1 MiB), each length
#: forced: the model's best, 23328, took 4.9 ms, 15360-20480 3.8-4.2 (the
#: model within 1% of each other from ~15k to ~32k), 26244-28125 5.2-5.4;
#: alike on 2 threads. The transforms alone differ by ~10% among them.
TIE = 0.01

#: Upper bound on the complex buffers of one chunk of blocks, in bytes: small
#: enough that a chunk's spectra stay in the last-level cache from the forward
#: transform through the product to the inverse (12 MP 'same' k15, 1 thread,
#: interleaved: 64 MiB chunks 132 ms, 8 MiB 93 ms). A chunk is whole batch
#: items, block rows, or a range of blocks of one row where a row is larger.
CHUNK_BYTES = 8 * 2**20


def supports(spec):
    try:
        import scipy.fft  # noqa: F401
    except ImportError:
        return False, "needs SciPy (pip install 'ndconv[fast]')"
    if spec.compute_dtype.kind not in "fc":
        return False, f"dtype {spec.dtype} is not floating point or complex (FFT rounds)"
    return True, "any arguments (float or complex; rounding error ~ eps*log2(n))"


@functools.lru_cache(maxsize=1024)
def block_length(n, span, stride=1, extra=0.0):
    """FFT length along one dim: minimise the cost per output of a block.

    Parameters
    ----------
    n : int
        Padded input length along the dim.
    span : int
        Dilated kernel span ``d*(k-1)+1``.
    stride : int
    extra : float
        Cost of the per-frequency channel product relative to one
        ``log2(L)`` of transform work; larger values favour fewer wasted
        frequencies (longer blocks).

    Returns
    -------
    L : int
        The block (FFT) length; ``>= n`` means one block covers the axis.
    T : int
        Outputs per block.
    """
    from scipy.fft import next_fast_len

    whole = next_fast_len(n, real=True)
    n_out = (n - span) // stride + 1
    options = [(whole * (math.log2(max(whole, 2)) + extra) / n_out, whole, n_out)]
    L = next_fast_len(max(2 * span, 16), real=True)
    while L < whole:
        T = (L - span) // stride + 1
        if T >= 1:
            blocks = -(-n_out // T)
            options.append((blocks * (L * (math.log2(L) + extra) + _PER_BLOCK) / n_out, L, T))
        L = next_fast_len(L + 1, real=True)
    # The model is flat near its minimum (L log L / T barely moves between a
    # few and many kernel spans) while the cache is not: of the lengths within
    # TIE of the cheapest, the shortest.
    least = min(options)[0]
    L, _, T = min((L, cost, T) for cost, L, T in options if cost <= least * (1 + TIE))
    return L, T


def _kernel(w, spec):
    """The flipped, zero-dilated kernel ``(O, Cg, *Kd)`` whose convolution is the correlation."""
    K, d = spec.kernel_size, spec.dilation
    span = tuple(di * (k - 1) + 1 for k, di in zip(K, d))
    wd = np.zeros(w.shape[:2] + span, dtype=w.dtype)
    wd[(Ellipsis, *[slice(None, None, di) for di in d])] = w
    return np.flip(wd, axis=tuple(range(2, w.ndim))), span


def run(x, w, spec):
    from scipy import fft as sfft

    N = spec.ndim
    g = spec.groups
    B, C, O = spec.batch, spec.in_channels, spec.out_channels
    Cg, Og = C // g, O // g
    s = spec.stride
    S_out = spec.out_spatial
    wf, span = _kernel(w, spec)
    Sp = spec.padded_spatial
    extra = 4.0 * Cg * Og / (Cg + Og)
    LT = [block_length(n, k, st, extra) for n, k, st in zip(Sp, span, s)]
    L = tuple(lt[0] for lt in LT)
    T = tuple(lt[1] for lt in LT)
    nT = tuple(-(-o // t) for o, t in zip(S_out, T))
    # Pad past the end so that every block is a full L long (extra zeros only
    # feed outputs that are cropped away).
    need = tuple((nt - 1) * t * st + l for nt, t, st, l in zip(nT, T, s, L))
    pairs = tuple(
        (lo, hi + max(0, nd - sp)) for (lo, hi), nd, sp in zip(spec.pairs, need, Sp)
    )
    xp = pad(x, pairs, spec.padding_mode, lhs_dilation=spec.lhs_dilation)
    xp = xp[(Ellipsis, *[slice(0, nd) for nd in need])]
    axes = tuple(range(-N, 0))
    workers = fft_workers()
    # Real data: half-spectrum transforms; complex data needs the full ones.
    if spec.dtype.kind == "c":
        fwd, inv = sfft.fftn, sfft.ifftn
    else:
        fwd, inv = sfft.rfftn, sfft.irfftn
    Wf = fwd(wf, s=L, axes=axes, workers=workers)  # (O, Cg, *F)
    F = Wf.shape[2:]
    nF = math.prod(F)
    Wm = Wf.reshape(g, Og, Cg, nF)
    if Cg > 1:
        Wm = np.ascontiguousarray(np.moveaxis(Wm, -1, 0).swapaxes(-1, -2))  # (nF, g, Cg, Og)
    # Block views: (B, C, *nT, *L), taken in chunks of at most CHUNK_BYTES of
    # spectra: whole batch items where they fit, else ranges of blocks along
    # the first dims (one block row of 14 blocks of a 12 MP image held 19 MB,
    # out of cache: k15 113 -> 69 ms once a chunk is a few blocks of a row).
    blocks = windows(xp, L, tuple(t * st for t, st in zip(T, s)), (1,) * N)
    per_block = (C + O) * nF * np.dtype(Wf.dtype).itemsize * 2
    keep = tuple(slice(k - 1, k - 1 + (t - 1) * st + 1, st) for k, t, st in zip(span, T, s))
    # Exactly the output's size: the last block along a dim keeps only the
    # outputs that exist (a block-sized output cropped at the end cost one
    # more copy of all of it: 12 MP k15, 46 ms under load).
    out = np.empty((B, O, *S_out), dtype=spec.dtype)
    for b0, b1, ranges in _chunks(B, nT, max(1, CHUNK_BYTES // max(per_block, 1))):
        blk = blocks[(slice(b0, b1), slice(None), *[slice(lo, hi) for lo, hi in ranges])]
        nb = b1 - b0
        counts = tuple(hi - lo for lo, hi in ranges)
        nblk = math.prod(counts)
        Xf = fwd(blk, axes=axes, workers=workers)  # (nb, C, *counts, *F)
        Xf = Xf.reshape(nb, g, Cg, nblk, nF)
        if Cg == 1:
            # In place: a fresh product array per chunk costs its page faults.
            Y = np.multiply(Xf, Wm[None, :, :, 0, None, :], out=Xf) if Og == 1 else \
                Xf * Wm[None, :, :, 0, None, :]  # (nb, g, Og, nblk, nF)
        else:
            Xm = np.moveaxis(Xf, -1, 0).swapaxes(-1, -2)  # (nF, nb, g, nblk, Cg)
            Xm = np.ascontiguousarray(np.moveaxis(Xm, 1, 2)).reshape(nF, g, nb * nblk, Cg)
            Y = np.matmul(Xm, Wm)  # (nF, g, nb*nblk, Og)
            Y = Y.reshape(nF, g, nb, nblk, Og)
            Y = np.moveaxis(Y, 0, -1)  # (g, nb, nblk, Og, nF)
            Y = np.moveaxis(Y, (0, 1, 3), (1, 0, 2))  # (nb, g, Og, nblk, nF)
        Y = Y.reshape(nb, O, *counts, *F)
        y = inv(Y, s=L, axes=axes, workers=workers, overwrite_x=True)
        _put(out[b0:b1], y[(Ellipsis, *keep)], ranges, nT, T)  # y: (nb, O, *counts, *T)
    return out


def _chunks(B, nT, budget):
    """``(b0, b1, ranges)``: batch items b0..b1-1 and per dim a range of blocks,
    at most ``budget`` blocks in all (at least one): the last dims whole while
    they fit, then a range along the next dim, single blocks before it."""
    N = len(nT)
    d, inner = N - 1, 1
    while d >= 0 and inner * nT[d] <= budget:
        inner *= nT[d]
        d -= 1
    if d < 0:  # whole batch items
        nb = max(1, budget // inner)
        return [(b0, min(B, b0 + nb), [(0, n) for n in nT]) for b0 in range(0, B, nb)]
    step = max(1, budget // inner)
    return [(b, b + 1, [(i, i + 1) for i in idx] + [(a, min(nT[d], a + step))]
             + [(0, n) for n in nT[d + 1:]])
            for b in range(B) for idx in itertools.product(*[range(n) for n in nT[:d]])
            for a in range(0, nT[d], step)]


def _put(out, y, ranges, nT, T):
    """Copy a chunk's kept outputs ``y`` (nb, O, *counts, *T) of the blocks
    ``ranges`` into place in ``out`` (nb, O, *S_out), each output once: per
    dim, the whole blocks as one block view of ``out`` and the last, cropped
    block as another."""
    N = len(T)
    S_out = out.shape[2:]
    parts = []  # per dim: (first block, end block, outputs kept per block)
    for d in range(N):
        lo, hi = ranges[d]
        last = nT[d] - 1
        r = S_out[d] - last * T[d]  # outputs of the last block, 1..T
        whole = hi if r == T[d] else min(hi, last)
        parts.append([(a, b, t) for a, b, t in ((lo, whole, T[d]), (whole, hi, r)) if b > a])
    # (nb, O, n0, n1.., t0, t1..) -> (nb, O, n0, t0, n1, t1, ...)
    order = [0, 1] + [a for i in range(N) for a in (2 + i, 2 + N + i)]
    for pieces in itertools.product(*parts):
        dst = out[(slice(None), slice(None), *[slice(a * T[d], a * T[d] + (b - a) * t)
                                              for d, (a, b, t) in enumerate(pieces)])]
        dst = dst.reshape(dst.shape[:2] + tuple(v for a, b, t in pieces for v in (b - a, t)))
        src = y[(Ellipsis, *[slice(a - lo, b - lo) for (a, b, _), (lo, _) in zip(pieces, ranges)],
                 *[slice(0, t) for _, _, t in pieces])]
        dst[...] = src.transpose(order)


def _blocks(spec):
    """Per dim ``(L, T)`` as :func:`run` picks them, and the dilated kernel span."""
    Cg, Og = spec.in_channels // spec.groups, spec.out_channels // spec.groups
    span = [d * (k - 1) + 1 for k, d in zip(spec.kernel_size, spec.dilation)]
    extra = 4.0 * Cg * Og / (Cg + Og)
    LT = [block_length(n, k, s, extra)
          for n, k, s in zip(spec.padded_spatial, span, spec.stride)]
    return LT, span


def estimate(spec):
    """Estimated seconds (see :mod:`ndconv.algorithms.cost`)."""
    from .cost import RATES as r, gemm_eff

    B, C, O, g = spec.batch, spec.in_channels, spec.out_channels, spec.groups
    Cg, Og = C // g, O // g
    LT, _ = _blocks(spec)
    total, L = 1, 1
    for (bl, t), o in zip(LT, spec.out_spatial):
        total *= -(-o // t) * bl
        L *= bl
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
        products = 4 * B * Cg * O * total / (r["gemm"] * 0.25 * gemm_eff(Cg, Og))
    return transforms + products + 20 * r["step"]


def reason(spec):
    return f"kernel span {spec.kernel_size} is large: FFT cost does not grow with the taps"


def error_growth(spec):
    """Rounding error of an output in units of ``eps * max|x| * ||w||_2``.

    The transforms spread every input value of a block over all its outputs;
    their rounding grows as ``log2`` of the block's points.
    """
    LT, _ = _blocks(spec)
    return ERROR_FACTOR * math.log2(max(math.prod(L for L, _ in LT), 2))


#: Constant of :func:`error_growth`. Measured with one value of 1e9 in
#: Gaussian noise (1-D, 2-D, 3-D; 1 to 16 channels; float32 and float64): the
#: error where the window misses it reached 0.03-0.27 ``eps * 1e9 * ||w||_2``
#: against 1.2-1.8 from this constant (a margin of 4 or more).
ERROR_FACTOR = 0.1


def magnitude_growth(spec):
    """Bound on the transforms' intermediates over ``max|x| * max|w|``.

    A forward transform of a block sums its ``prod(L)`` points, the kernel's its
    taps, the product sums ``Cg`` channels, and an inverse pass may grow by its
    length again before the ``1/L`` normalisation.
    """
    LT, _ = _blocks(spec)
    L = math.prod(L for L, _ in LT)
    return float(spec.in_channels // spec.groups) * spec.taps * float(L) ** 2


def workspace_bytes(spec):
    """Padded blocks, output, kernel transform (twice with channels), chunk buffers."""
    B, C, O, g = spec.batch, spec.in_channels, spec.out_channels, spec.groups
    it = spec.dtype.itemsize
    LT, _ = _blocks(spec)
    nT = [-(-o // t) for (_, t), o in zip(LT, spec.out_spatial)]
    need = math.prod((n - 1) * t * s + L for n, (L, t), s in zip(nT, LT, spec.stride))
    nF = math.prod(L for L, _ in LT[:-1]) * (LT[-1][0] // 2 + 1)
    kernel = O * (C // g) * nF * 2 * it * (2 if C // g > 1 else 1)
    per_block = (C + O) * nF * 2 * it * 2
    # Transforms, layout copies, inverse output: one chunk of blocks, at most all.
    chunk = min(per_block * math.prod(nT) * B, max(CHUNK_BYTES, per_block)) * 2
    out = B * O * math.prod(n * t for n, (_, t) in zip(nT, LT)) * it
    return B * C * max(need, math.prod(spec.padded_spatial)) * it + out + kernel + chunk


from .record import Algorithm, always  # noqa: E402

ALGORITHM = Algorithm(
    name="fft", supports=supports, run=run, estimate=estimate, reason=reason,
    mixes_nonfinite=always, error_growth=error_growth, magnitude_growth=magnitude_growth,
    workspace_bytes=workspace_bytes,
)

"""What ``method='auto'`` reads from the arrays themselves, in one cheap pass.

FFT and Winograd mix every input of a block into every output of the block:
their rounding error in an output scales with the *largest* magnitude in the
block, not with that output's own terms, and a NaN or Inf anywhere in the
block reaches all of it. The direct formula's error in an output is bounded
by ``n * eps * sum |x||w|`` over that output's own window (``n`` terms). So
before ``'auto'`` hands arrays to such a method it measures:

- whether ``x`` and ``w`` are all finite;
- the input's dynamic range ``R = max|x| / typical``, ``typical`` being the
  smallest mean ``|x|`` (over all channels) of the blocks of about half the
  kernel's span per dim: every window contains a whole block, so no output's
  own terms are much smaller than ``typical * sum|w|``;
- the kernel's spread ``max_o ||w_o||_2 / sum|w_o|`` (between ``1/sqrt(n)``
  for a flat kernel and 1 for a single tap): a transform's error grows with
  ``||w||_2``, the direct bound with ``sum|w|``.

The pass reads ``x`` once in slabs of :data:`SLAB_BYTES`, never a temporary as
large as ``x``; with numba installed, a real float ``x`` is read in one
compiled pass instead (12 MP float32, 1 thread: 65 ms of NumPy passes -> a few
ms), with the same statistics.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .._typing import NDArray, Shape
    from .record import Algorithm
    from .spec import CorrSpec

#: Largest temporary of the survey (one slab's absolute values), in bytes.
SLAB_BYTES = 4 * 2**20


def block_shape(spec: CorrSpec) -> Shape:
    """Block per dim: half the dilated kernel span, in the real (undilated) input."""
    return tuple(
        max(1, ((d * (k - 1) + 1 + 1) // 2) // r)
        for k, d, r in zip(spec.kernel_size, spec.dilation, spec.lhs_dilation)
    )


def _block_means(a: NDArray[Any], block: Shape, channels: int) -> NDArray[Any]:
    """Mean over channels and blocks of the absolute slab ``a`` (rows, *rest)."""
    sums, sizes = a, []
    for i, b in enumerate(block):
        n = a.shape[i]
        starts = np.arange(0, n, b)
        sums = np.add.reduceat(sums, starts, axis=i)
        sizes.append(np.minimum(b, n - starts))
    count = functools.reduce(np.multiply.outer, sizes) * channels
    return sums / count


_COMPILED = None

#: The bits' maximum of a 1-D piece (compiled, set by :func:`_build`).
_piece_bits: Any = None


def _compiled() -> Any:
    """The compiled statistics pass, or None without numba."""
    global _COMPILED
    if _COMPILED is None:
        from ._jit import numba_installed

        _COMPILED = _build() if numba_installed() else False
    return _COMPILED or None


def _build() -> Any:
    # The helper becomes a module global, not a variable of this function: a
    # kernel that closes over another compiled function is never found in
    # numba's cache (see _rows_jit).
    global _piece_bits
    from numba import njit

    U = np.uint64  # unsigned loop bounds: signed ones keep LLVM from vectorising

    @njit(cache=True, nogil=True)
    def _piece_bits(rb: Any, mag: Any, peak: Any) -> Any:
        # The largest ``rb[j] & mag``: the bits of |x| without the sign order
        # like |x| (NaN above Inf above every finite value), and an integer
        # maximum vectorises where numba's float max() does not (a loop over
        # 1M float32 samples: 0.65 -> 0.06 ms).
        for j in range(U(rb.shape[0])):
            peak = max(peak, rb[j] & mag)
        return peak

    # No 'nnan'/'ninf': a NaN or Inf must survive into the totals; reassociation
    # lets the sums vectorise. One thread: the pass is memory-bound, and a
    # parallel one left numba's OpenMP threads spinning on the cores that the
    # method's own threads (scipy.fft's) then wanted (1024^2 k15 'same' on 2
    # threads, interleaved under load: 1.6x the NumPy slabs' time in parallel, 1.06x serial).
    @njit(fastmath={"reassoc", "nsz", "arcp", "contract"}, cache=True,
          nogil=True)
    def stats(x: Any, xb: Any, mag: Any, b0: int, per_task: int, mid: Any, mid_size: Any,
              b_last: int, top: Any, top_bits: Any, total: Any, smallest: Any) -> None:
        # x: (B, C, S0, M, S_last), any strides (the weight gradient's input
        # is x with batch and channels swapped: a view); channels are summed
        # into each block; mid: the block of each of the M
        # middle positions, mid_size: the positions in each such block; xb:
        # x's bits (x viewed as unsigned integers), mag: every bit but the
        # sign. Per batch and task t (per_task block rows of b0 rows each):
        # max|x| is the larger of top[., t] (rows of blocks) and of the float
        # whose bits are top_bits[., t] (pieces of 1-D rows: on short rows of
        # blocks the float compare and its rare store measured 2x faster than
        # the bits), total[., t] = sum|x| (NaN or Inf if x holds one),
        # smallest[., t] = the smallest block mean |x| (over the block's
        # elements and the channels).
        B, ntask = top.shape
        C = x.shape[1]
        S0, M, SL = x.shape[2], x.shape[3], x.shape[4]
        nmid = mid_size.shape[0]
        nlast = (SL + b_last - 1) // b_last
        last_size = np.empty(nlast, np.int64)
        for q in range(nlast):
            last_size[q] = min(b_last, SL - q * b_last)
        for task in range(B * ntask):
            b = task // ntask
            t = task - b * ntask
            # Rows of blocks: sums |x| (float64) per middle block and last
            # index, max |x| per last index. Not for pieces of 1-D rows, which
            # need neither (a 1M-sample signal: 12 MB to allocate and zero,
            # 0.5 ms, 10x the pass itself).
            wide = SL if M > 1 or b0 > 1 else 1
            cols = np.empty((nmid, wide))
            tops = np.zeros(wide, x.dtype)
            acc = np.empty(nlast)
            sums = 0.0
            least = np.inf
            peak = mag ^ mag  # (mag & 0 would type as a float)
            for r in range(t * per_task, min((t + 1) * per_task, (S0 + b0 - 1) // b0)):
                i0, i1 = r * b0, min(S0, (r + 1) * b0)
                if M == 1 and i1 - i0 == 1:
                    # Blocks are pieces of one row (a 1-D signal): sum each
                    # piece straight, no column buffer (3x fewer passes).
                    for q in range(nlast):
                        j0, j1 = q * b_last, min(SL, (q + 1) * b_last)
                        s = 0.0
                        for c in range(C):
                            row = x[b, c, i0, 0, j0:j1]
                            for j in range(U(j1 - j0)):
                                s += abs(row[j])
                            peak = _piece_bits(xb[b, c, i0, 0, j0:j1], mag, peak)
                        sums += s
                        least = min(least, s / ((j1 - j0) * C))
                    continue
                cols[:] = 0
                for c in range(C):
                    plane = x[b, c]
                    for i in range(i0, i1):
                        for m in range(M):
                            row = plane[i, m]
                            dst = cols[mid[m]]
                            if SL >= 64:  # vectorised: no reduction, no gather
                                for j in range(U(SL)):
                                    a = abs(row[j])
                                    dst[j] += a
                                    tops[j] = a if a > tops[j] else tops[j]
                            else:  # short rows: scalar, a store only for a new maximum
                                for j in range(SL):
                                    a = abs(row[j])
                                    dst[j] += a
                                    if a > tops[j]:
                                        tops[j] = a
                for k in range(nmid):
                    ck = cols[k]
                    for q in range(nlast):  # (not acc[j // b_last]: a division per column)
                        a = 0.0
                        for j in range(q * b_last, q * b_last + last_size[q]):
                            a += ck[j]
                        acc[q] = a
                    n = (i1 - i0) * mid_size[k] * C
                    for q in range(nlast):
                        sums += acc[q]
                        least = min(least, acc[q] / (n * last_size[q]))
            top[b, t] = tops.max()
            top_bits[b, t] = peak
            total[b, t] = sums
            smallest[b, t] = least

    @njit(fastmath={"reassoc", "nsz", "arcp", "contract"}, cache=True,
          nogil=True)
    def plane_stats(flat: Any, flatb: Any, mag: Any, offs: Any, S0: int, M: int, SL: int,
                    b0: int, per_task: int, mid: Any, mid_size: Any, b_last: int,
                    top_bits: Any, total: Any, smallest: Any) -> None:
        # As stats, for planes that are contiguous: flat is x's memory (1-D),
        # flatb its bits, offs[b, c] the first element of plane (b, c), whose
        # S0 * M * SL values follow one another. The channels are summed over
        # a task's rows as one long run, then the runs' blocks (a row of a
        # 28-wide layer is too short a loop to vectorise: an (8, 128, 28, 28)
        # float32 x took 0.62 ms, 1.22 with its batch and channel axes
        # swapped; this way 0.42 and 0.56).
        B, ntask = total.shape
        C = offs.shape[1]
        nrow = (S0 + b0 - 1) // b0
        nmid = mid_size.shape[0]
        nlast = (SL + b_last - 1) // b_last
        run = M * SL
        acc = np.empty(min(per_task * b0, S0) * run)
        line = np.empty(run)
        blocks = np.empty((per_task, nmid, nlast))
        for task in range(B * ntask):
            b = task // ntask
            t = task - b * ntask
            r0, r1 = t * per_task, min((t + 1) * per_task, nrow)
            i0, i1 = r0 * b0, min(S0, r1 * b0)
            n = (i1 - i0) * run
            a = acc[:n]
            a[:] = 0
            peak = mag ^ mag
            for c in range(C):
                o = offs[b, c] + i0 * run
                row = flat[o:o + n]
                for j in range(U(n)):
                    a[j] += abs(row[j])
                peak = _piece_bits(flatb[o:o + n], mag, peak)
            blk = blocks[:r1 - r0]
            blk[:] = 0
            for rb in range(r1 - r0):
                # the block row's rows added up first (long loops), then its
                # blocks (short ones)
                ia, ib = rb * b0, min(i1 - i0, (rb + 1) * b0)
                line[:] = a[ia * run:(ia + 1) * run]
                for i in range(ia + 1, ib):
                    seg = a[i * run:(i + 1) * run]
                    for j in range(U(run)):
                        line[j] += seg[j]
                for m in range(M):
                    k = mid[m]
                    for q in range(nlast):
                        s = 0.0
                        for j in range(m * SL + q * b_last, m * SL + min(SL, (q + 1) * b_last)):
                            s += line[j]
                        blk[rb, k, q] += s
            sums = 0.0
            least = np.inf
            for rb in range(r1 - r0):
                rows = min(b0, S0 - (r0 + rb) * b0)
                for k in range(nmid):
                    for q in range(nlast):
                        s = blk[rb, k, q]
                        sums += s
                        least = min(least, s / (rows * mid_size[k] * C
                                                * min(b_last, SL - q * b_last)))
            top_bits[b, t] = peak
            total[b, t] = sums
            smallest[b, t] = least

    return stats, plane_stats


def max_abs(a: NDArray[Any]) -> float:
    """``max |a|`` of a real array without a temporary (NaN where ``a`` holds NaN).

    With numba, a contiguous float array's largest magnitude is found on its
    bits (as :func:`_fast_x_stats` does): one vectorised integer pass, where
    NumPy takes a maximum and a minimum.
    """
    flat = (flat_memory(a) if a.dtype in (np.float32, np.float64) and a.size
            and _compiled() is not None else None)
    if flat is not None:
        bits = np.dtype(f"u{a.itemsize}")
        mag = bits.type(np.iinfo(bits).max >> 1)
        peak = _piece_bits(flat.view(bits), mag, mag ^ mag)
        return float(np.array(peak, bits).view(a.dtype))
    with np.errstate(invalid="ignore"):
        return float(max(np.max(a), -np.min(a)))


def _fast_x_stats(x: NDArray[Any], block: Shape) -> tuple[float, float] | None:
    """:attr:`Survey._x_stats` in one compiled pass, or None where it does not apply."""
    if (x.dtype not in (np.float32, np.float64) or x.size == 0 or x.ndim < 3
            or _compiled() is None):
        return None
    if x.ndim == 3:
        # One spatial dim: a plane one row high, blocks one row high (the same
        # blocks; NumPy's slabs took 4 ms of a 1-D 1M-sample FFT call's 19).
        x, block = x[:, :, None], (1, *block)
    B, C, S = x.shape[0], x.shape[1], x.shape[2:]
    mid_shape, bmid = S[1:-1], block[1:-1]
    counts = [-(-n // b) for n, b in zip(mid_shape, bmid)]
    grids = np.meshgrid(*[np.arange(n) // b for n, b in zip(mid_shape, bmid)], indexing="ij")
    mid = (np.ravel_multi_index(tuple(grids), counts).ravel() if mid_shape
           else np.zeros(1, np.intp)).astype(np.int64)
    mid_size = np.bincount(mid, minlength=math.prod(counts)).astype(np.int64)
    nrow = -(-S[0] // block[0])
    # Tasks of at least 64 input rows (each holds rows of sums and maxima as wide as x).
    per_task = max(1, -(-64 // block[0]))
    ntask = -(-nrow // per_task)
    try:  # a view, whatever the batch and channel strides (never a copy of x)
        xv = np.reshape(x, (B, C, S[0], math.prod(mid_shape), S[-1]), copy=False)
    except ValueError:
        return None  # planes not contiguous: the slabs below
    bits = np.dtype(f"u{x.dtype.itemsize}")
    mag = bits.type(np.iinfo(bits).max >> 1)
    stats, plane_stats = _compiled()
    M = math.prod(mid_shape)
    run = M * S[-1]
    # Rows of 64 or more vectorise in stats' own loops, with fewer passes;
    # 1-D signals' short blocks do not (16 x 64 x 4096 in blocks of 5: 12.6 ms
    # there).
    short = S[-1] < 64 or (S[0] == 1 and not mid_shape and block[-1] < 64)
    memory = _planes_memory(x) if short and block[0] * run <= PLANE_RUN else None
    if memory is not None:
        flat, offs = memory
        per_task = max(1, min(nrow, PLANE_RUN // (block[0] * run)))
        ntask = -(-nrow // per_task)
        top_bits = np.empty((B, ntask), bits)
        total, smallest = np.empty((B, ntask)), np.empty((B, ntask))
        plane_stats(flat, flat.view(bits), mag, offs, S[0], M, S[-1], block[0], per_task,
                    mid, mid_size, block[-1], top_bits, total, smallest)
        top = np.zeros(1, x.dtype)
    else:
        top, top_bits = np.empty((B, ntask), x.dtype), np.empty((B, ntask), bits)
        total, smallest = np.empty((B, ntask)), np.empty((B, ntask))
        stats(xv, xv.view(bits), mag, block[0], per_task, mid, mid_size, block[-1], top,
              top_bits, total, smallest)
    if not np.isfinite(total).all():
        # NaN or Inf somewhere: max|x| as NumPy's max reports it
        return (math.nan if np.isnan(total).any() else math.inf), 0.0
    return float(max(top.max(), top_bits.max().view(x.dtype))), float(smallest.min())


#: Most values in one run of :func:`_fast_x_stats`'s plane pass (a task's rows
#: of every plane, summed over the channels in float64: 256 KiB, in L2 cache).
PLANE_RUN = 2**15


def _planes_memory(x: NDArray[Any]) -> tuple[NDArray[Any], NDArray[Any]] | None:
    """``(flat, offs)``: a 1-D view of the memory of ``x`` (B, C, *S) and the
    offset in it of each plane ``(b, c)``, where each plane is contiguous and
    ``x`` a permutation of a C-ordered array (x itself, or x with its batch and
    channel axes swapped); else None."""
    step = x.itemsize
    for n, st in zip(x.shape[:1:-1], x.strides[:1:-1]):  # the spatial dims, last first
        if n > 1 and st != step:
            return None
        step *= n
    flat = flat_memory(x)
    if flat is None:
        return None
    sb, sc = x.strides[0] // x.itemsize, x.strides[1] // x.itemsize
    offs = (np.arange(x.shape[0], dtype=np.int64)[:, None] * sb
            + np.arange(x.shape[1], dtype=np.int64)[None, :] * sc)
    return flat, offs


def flat_memory(a: NDArray[Any]) -> NDArray[Any] | None:
    """A 1-D view of the memory of ``a`` where ``a`` is a C-ordered array with
    its axes permuted (a transposed view, a Fortran-ordered array), else None
    (the one home of that test: :mod:`.winograd_dual` reads its arrays so too)."""
    at = a.transpose(sorted(range(a.ndim), key=lambda i: -a.strides[i]))
    return at.reshape(-1) if at.flags.c_contiguous else None


class Survey:
    """Finite-ness, dynamic range and kernel spread of ``(x, w)``, each computed
    on first use (a method that needs none of them costs nothing)."""

    def __init__(self, x: NDArray[Any], w: NDArray[Any], spec: CorrSpec) -> None:
        self.x, self.w, self.spec = x, w, spec

    @functools.cached_property
    def _x_stats(self) -> tuple[float, float]:
        """``(max|x|, smallest block mean |x|)``; NaN max where x holds NaN."""
        x, spec = self.x, self.spec
        fast = _fast_x_stats(x, block_shape(spec))
        if fast is not None:
            return fast
        # Integers per slab in float64 (abs of the most negative int overflows).
        wide = x.dtype.kind not in "fc"
        B, C = x.shape[:2]
        S = x.shape[2:]
        block = block_shape(spec)
        row_bytes = C * math.prod(S[1:]) * (8 if wide else x.dtype.itemsize)
        rows = max(block[0], SLAB_BYTES // max(row_bytes, 1) // block[0] * block[0])
        biggest, smallest = 0.0, math.inf
        with np.errstate(invalid="ignore", over="ignore"):
            for b in range(B):
                for r0 in range(0, S[0], rows):
                    slab = x[b, :, r0:r0 + rows]
                    a = np.abs(slab.astype(np.float64) if wide else slab)
                    top = float(a.max())
                    if not math.isfinite(top):
                        return top, 0.0
                    biggest = max(biggest, top)
                    s = a.sum(axis=0, dtype=np.float64)
                    smallest = min(smallest, float(_block_means(s, block, C).min()))
        return biggest, smallest

    @functools.cached_property
    def finite(self) -> bool:
        """No NaN or Inf in ``x`` or ``w``."""
        if self.x.dtype.kind not in "fc" and self.w.dtype.kind not in "fc":
            return True
        if self.w.dtype.kind == "f":
            w_ok = math.isfinite(self.w_max_abs)
        else:
            with np.errstate(over="ignore", invalid="ignore"):
                w_ok = bool(np.isfinite(np.sum(self.w)))
        return w_ok and math.isfinite(self._x_stats[0])

    @property
    def max_abs(self) -> float:
        return self._x_stats[0]

    @functools.cached_property
    def w_max_abs(self) -> float:
        """``max|w|`` (NaN where ``w`` holds NaN), for :attr:`finite` and the
        dispatcher's overflow check alike: one pass over ``w``, where a sum
        (finite-ness) and a maximum and a minimum were three (0.8 ms of a
        128-channel backward, whose weight gradient's kernel is grad_out)."""
        return max_abs(self.w)

    @functools.cached_property
    def dynamic_range(self) -> float:
        """``max|x|`` over the smallest block's mean ``|x|`` (1 for an all-zero x,
        inf when some block is all zeros but x is not)."""
        biggest, smallest = self._x_stats
        if biggest == 0:
            return 1.0
        return biggest / smallest if smallest > 0 else math.inf

    @functools.cached_property
    def spread(self) -> float:
        """``max_o ||w_o||_2 / sum |w_o|`` over output channels (rows of ``w``)."""
        w = self.w.reshape(self.w.shape[0], -1)
        l1 = np.zeros(w.shape[0])
        l2 = np.zeros(w.shape[0])
        step = max(1, SLAB_BYTES // (8 * w.shape[0]))
        for j in range(0, w.shape[1], step):  # columns in slabs: no copy of all of w
            a = np.abs(w[:, j:j + step], dtype=np.float64)
            l1 += a.sum(axis=1)
            l2 += np.einsum("ij,ij->i", a, a)
        l2 = np.sqrt(l2)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(l1 > 0, l2 / np.where(l1 > 0, l1, 1), 0.0)
        return float(ratio.max())


def error_note(algo: Algorithm, spec: CorrSpec, data: Survey) -> str | None:
    """Why ``algo`` would break the direct formula's error bound on these arrays, or None.

    ``algo.error_growth(spec) * R * spread`` estimates an output's error over
    ``eps * typical * sum|w|``; the direct bound is ``n`` in those units.
    """
    if algo.error_growth is None:
        return None
    n = (spec.in_channels // spec.groups) * spec.taps
    growth = algo.error_growth(spec) * data.dynamic_range
    if growth <= n:  # spread <= 1: the kernel need not be read (a weight
        return None  # gradient's kernel is grad_out: 9 ms at 25 MB)
    risk = growth * data.spread
    if risk <= n:
        return None
    return (
        f"the input's dynamic range (max |x| / smallest typical |x| of a block) is "
        f"{data.dynamic_range:.3g}: its rounding, ~{risk:.3g} eps per typical term, would "
        f"exceed the direct sum's bound of {n} eps"
    )


def nonfinite_note(algo: Algorithm, spec: CorrSpec, data: Survey) -> str | None:
    """Why ``algo`` would spread these arrays' NaN/Inf beyond their windows, or None."""
    if algo.mixes_nonfinite(spec) and not data.finite:
        return "the arrays hold NaN or Inf, which it would spread beyond their windows"
    return None

"""Winograd method: F(m, 3) minimal filtering along every dim, for 3x..x3 kernels.

Lavin & Gray (2015): an output tile of ``m`` values of a 3-tap correlation is
``A^T [(G g) * (B^T d)]`` for an input tile ``d`` of ``m + 2`` values. Applied
along each of the N spatial dims (a tensor product, so one implementation for
every N), a layer becomes ``(m+2)^N`` independent channel matrix products over
all tiles, instead of ``3^N`` products over all pixels of im2col: in 2-D,
F(4x4, 3x3) does 36 products for 16 outputs (4x fewer multiplies than the
direct 144), F(2x2, 3x3) 16 for 4 (2.25x fewer).

F(4, 3) is used up to 2-D; its transforms have larger coefficients, so in 3-D
(where the error compounds over three dims) F(2, 3) is used instead. The
rounding error grows with the coefficients and slowly with the channels: in
float32, F(4x4, 3x3) (on the points 0, 1, -1, 2, -1/2) stays under ``5e-6`` of
``max|y|`` up to 512 channels, the direct method near ``5e-7``.

With numba installed (``ndconv[jit]``), the input and output transforms of
F(4, 3) are compiled (:mod:`._winograd_jit`): one pass per tile in cache
instead of one NumPy pass per coefficient.

Work proceeds in chunks of tiles whose transformed buffers stay under
:data:`CHUNK_BYTES` (but hold :data:`MIN_TILES` tiles where the input
allows), so memory stays bounded whatever the input size; the chunks run on
:func:`ndconv.get_num_threads` threads with BLAS on one thread each (2x
faster than BLAS's own threads on these small products), each chunk copying
its own padded rows of the input.

A correlation with a 3x..x3 *output* and a larger kernel (the weight
gradient of a 3x..x3 layer) is computed by the transposed algorithm of
:mod:`.winograd_dual`, under the same method name.
"""

from __future__ import annotations

import collections
import functools
import math
import threading

import numpy as np

from .._windows import pad
from ._jit import numba_installed as _numba_installed
from . import winograd_dual
from .threads import blas_single_thread, get_num_threads, map_chunks as _map_chunks

#: Upper bound on the transformed input of one chunk, in bytes.
CHUNK_BYTES = 2 * 2**20

#: Fewest tiles per chunk where the input allows (each thread keeping one):
#: the products' row count, below which BLAS slows (measured at 256 channels,
#: 1 thread: 91 GFLOP/s with 48 rows, 103-106 with 196-256).
MIN_TILES = 192

# (B^T, G, A^T) for F(m, 3), from Lavin & Gray, "Fast Algorithms for
# Convolutional Neural Networks" (2015), section 4.
_MATRICES = {
    2: (
        [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
        [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]],
        [[1, 1, 1, 0], [0, 1, -1, -1]],
    ),
    # Points 0, 1, -1, 2, -1/2 (and infinity), not the usual 0, +-1, +-2: the
    # transforms' coefficients are better balanced, and the float32 error is
    # 3x smaller (4.4e-6 against 1.4e-5 of max|y| at 256 channels; Barabasz
    # et al., "Error analysis and improving the accuracy of Winograd
    # convolution for deep neural networks", 2020). Built with Toom-Cook as
    # wincnn does; every coefficient of B^T and A^T is exact in binary.
    4: (
        [
            [1, 1.5, -2, -1.5, 1, 0],
            [0, -1, -2.5, -0.5, 1, 0],
            [0, 1, 0.5, -2.5, 1, 0],
            [0, -0.5, -1, 0.5, 1, 0],
            [0, 2, -1, -2, 1, 0],
            [0, 1, 1.5, -2, -1.5, 1],
        ],
        [
            [1, 0, 0],
            [-1 / 3, -1 / 3, -1 / 3],
            [1 / 3, -1 / 3, 1 / 3],
            [1 / 15, 2 / 15, 4 / 15],
            [-16 / 15, 8 / 15, -4 / 15],
            [0, 0, 1],
        ],
        [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -0.5, 0], [0, 1, 1, 4, 0.25, 0], [0, 1, -1, 8, -0.125, 1]],
    ),
}


def tile_size(ndim):
    """Outputs per tile per dim: F(4, 3) up to 2-D, F(2, 3) beyond."""
    return 4 if ndim <= 2 else 2


def supports(spec):
    if spec.compute_dtype.kind not in "fc":
        return False, (f"dtype {spec.dtype} is not floating point or complex (the "
                       "transforms have fractions)")
    if any(s != 1 for s in spec.stride):
        return False, f"stride {spec.stride} is not 1"
    if any(d != 1 for d in spec.dilation):
        return False, f"dilation {spec.dilation} is not 1"
    if _dual(spec):
        return True, "3x..x3 output, stride 1: Winograd's weight-gradient form"
    if any(k != 3 for k in spec.kernel_size):
        return False, f"kernel {spec.kernel_size} is not 3 in every dim"
    return True, "3x..x3 kernel, stride 1, dilation 1"


def _dual(spec):
    """Whether ``spec`` is served by :mod:`.winograd_dual` (a 3x..x3 output of a
    larger kernel: a 3x..x3 layer's weight gradient) rather than F(m, 3)."""
    return (any(k != 3 for k in spec.kernel_size) and all(o == 3 for o in spec.out_spatial)
            and all(k >= 2 for k in spec.kernel_size))


def _combine(arr, mat, axis, step=1, count=None, *, prepend=True):
    """Linear combinations of (strided) slices of ``arr`` along ``axis``.

    ``out[r] = sum_j mat[r, j] * arr[j : j + step*count : step]`` along ``axis``.
    With ``prepend`` the new axis of size ``len(mat)`` goes first; otherwise it
    replaces ``axis`` (then ``count`` must be 1 and ``step`` is unused). The
    layout keeps channels innermost, so every operation streams contiguous
    runs; coefficients 0 and +-1 cost no multiply, which is most of B^T.
    """
    sl = [slice(None)] * arr.ndim
    shape = list(arr.shape)
    if prepend:
        shape[axis] = count
        out = np.empty([len(mat)] + shape, dtype=arr.dtype)
    else:
        shape[axis] = len(mat)
        out = np.empty(shape, dtype=arr.dtype)
        shape[axis] = 1
    dst = [slice(None)] * out.ndim
    tmp = None
    for r, row in enumerate(mat):
        if prepend:
            o = out[r]
        else:
            dst[axis] = slice(r, r + 1)
            o = out[tuple(dst)]
        first = True
        for j, c in enumerate(row):
            if c == 0:
                continue
            if prepend:
                sl[axis] = slice(j, j + step * (count - 1) + 1, step)
            else:
                sl[axis] = slice(j, j + 1)
            src = arr[tuple(sl)]
            if first:
                if c == 1:
                    np.copyto(o, src)
                elif c == -1:
                    np.negative(src, out=o)
                else:
                    np.multiply(src, arr.dtype.type(c), out=o)
                first = False
            elif c == 1:
                o += src
            elif c == -1:
                o -= src
            else:
                if tmp is None:
                    tmp = np.empty(o.shape, dtype=arr.dtype)
                np.multiply(src, arr.dtype.type(c), out=tmp)
                o += tmp
    return out


#: Bytes of transformed kernels (with the kernels they came from) that
#: :func:`_kernel_transform` keeps for the next call with an equal kernel; 0
#: turns the cache off.
KERNEL_CACHE_BYTES = 64 * 2**20

#: key -> (a copy of the kernel, its U), least recently used first.
_U_CACHE = collections.OrderedDict()
_U_LOCK = threading.Lock()


def _kernel_transform(w, spec, m, panels=None):
    """:func:`_transform_kernel`, or its result for an equal kernel kept from
    an earlier call (shared: callers only read it).

    A layer's kernel is the same array from call to call in inference and in
    every forward and backward of one training step, and transforming it is
    serial work (3.4 of a 2-thread 18 ms layer at 256 channels: a transposing
    copy and the float64 sums). The cache compares the kernel's bits with a
    copy of the one each ``U`` came from (0.2 ms at 256 channels), never the
    array's identity: a kernel changed in place (an optimizer step) is a
    different kernel (and -0.0 is not 0.0). Most recently used entries are
    kept, up to :data:`KERNEL_CACHE_BYTES` in all.
    """
    R = panels.panel_width(w.dtype) if panels is not None else None
    bits = np.dtype(f"u{w.dtype.itemsize}") if w.dtype.kind == "f" else w.dtype
    wb = w.view(bits)
    # Keyed by a sample of the kernel's values too: layers of one shape (a
    # network's repeated blocks) each keep their own entry, and a changed
    # kernel (training) usually misses here, before the whole comparison.
    # (whether compiled: the NumPy path's own U when numba is switched off)
    sample = wb[np.unravel_index(_sample_positions(w.size), w.shape)].tobytes()
    key = (w.shape, w.dtype.str, spec.ndim, spec.groups, m, R, _compiled(4) is not None, sample)
    with _U_LOCK:
        hit = _U_CACHE.get(key)
        if hit is not None:
            _U_CACHE.move_to_end(key)
    if hit is not None and np.array_equal(hit[0], wb):
        return hit[1]
    U = _transform_kernel(w, spec, m, panels)
    if wb.nbytes + U.nbytes <= KERNEL_CACHE_BYTES:
        # (not flagged read-only: numba would compile every kernel taking it
        # once more, for read-only arrays)
        kept = np.array(wb, order="C")
        with _U_LOCK:
            _U_CACHE[key] = (kept, U)
            _U_CACHE.move_to_end(key)
            total = sum(k.nbytes + u.nbytes for k, u in _U_CACHE.values())
            while total > KERNEL_CACHE_BYTES:
                _, (k, u) = _U_CACHE.popitem(last=False)
                total -= k.nbytes + u.nbytes
    return U


@functools.lru_cache(maxsize=256)
def _sample_positions(size):
    """Flat positions of at most 256 values spread over a kernel of ``size``."""
    return np.unique(np.linspace(0, size - 1, min(size, 256)).astype(np.int64))


def _transform_kernel(w, spec, m, panels=None):
    """``U`` of shape ``(a^N, g, Cg, Og)`` with ``a = m + 2`` (with ``panels``,
    :mod:`._winograd_gemm`: packed as its right panels, ``(a^N, ceil(O/R), C, R)``).

    ``U = M @ w`` over the taps, ``M`` (``a^N`` by ``3^N``) being ``G`` applied
    along every dim of each one-tap kernel (:func:`_tap_matrix`): one product
    over a copy of ``w`` with its taps first, instead of one strided pass per
    coefficient (measured: 9.4 ms of a 25 ms layer at 256 channels, now ~1).
    Computed in float64 for float32 kernels, rounded once. With numba, real
    kernels take the compiled :func:`._winograd_jit.kernel_transform`
    instead (measured 5-9 ms at 256 channels as NumPy's float64 copies and
    product, ~1 ms compiled).
    """
    N = spec.ndim
    g = spec.groups
    O, Cg = w.shape[:2]
    Og, T, A = O // g, 3**N, (m + 2) ** N
    # (T, g, Cg, Og): taps first, then U's own order of the channels (a view)
    taps = w.reshape(g, Og, Cg, T).transpose(3, 0, 2, 1)
    jit = _compiled(4)
    if jit is not None and w.dtype.kind == "f":
        if panels is not None:  # the right panels of the compiled product (g = 1)
            R = panels.panel_width(w.dtype)
            U = np.empty((A, -(-O // R), Cg, R), dtype=w.dtype)
            if O % R:
                U[:, -1, :, O % R:] = 0  # columns past O (the kernel reads whole panels)
            dst = U
        else:
            U = np.empty((A, g, Cg, Og), dtype=w.dtype)
            dst = U.reshape(A, 1, g * Cg, Og)
        wt = np.ascontiguousarray(taps).reshape(T, g * Cg, Og)
        jit.kernel_transform(wt, _tap_matrix(m, N), dst)
        return U
    wide = np.float64 if w.dtype == np.float32 else w.dtype
    # BLAS's own threads thrash on this flat product (K = 3^N): measured 4-30 ms
    # on 2 threads under load against ~1 ms on one.
    with blas_single_thread():
        u = _tap_matrix(m, N).astype(wide) @ taps.reshape(T, -1).astype(wide)
    return u.astype(w.dtype, copy=False).reshape(-1, g, Cg, Og)


_TAP_MATRICES = {}


def _tap_matrix(m, N):
    """``M`` with ``M[k, t]``: coefficient of tap ``t`` (C order) in position ``k``
    of the transformed kernel, in the layout the tiles use (the last spatial
    dim's index slowest: each step of :func:`_combine` prepends its axis)."""
    key = (m, N)
    if key not in _TAP_MATRICES:
        G = _MATRICES[m][1]
        u = np.eye(3**N).reshape((3**N,) + (3,) * N)[:, None]  # one kernel per tap
        for i in range(N):
            u = _combine(u, G, axis=i + 2 + i, step=1, count=1)
        _TAP_MATRICES[key] = np.ascontiguousarray(u.reshape((m + 2) ** N, 3**N))
    return _TAP_MATRICES[key]


def run(x, w, spec):
    return run_bias(x, w, spec, None)


def run_bias(x, w, spec, bias):
    """:func:`run` plus ``bias`` (C_out,) per output channel (None: none), added
    by the compiled output transform as it writes each value (a pass over the
    output after was 0.4 of a 9 ms 128-channel layer on 2 threads)."""
    m = tile_size(spec.ndim)
    jit = _compiled(m)
    if _dual(spec):
        return add_bias(winograd_dual.run(x, w, spec, m, jit), bias)
    fused = jit is not None and (bias is None or bias.dtype == spec.dtype)
    out = _run(x, w, spec, m, jit, bias if fused else None)
    return out if fused else add_bias(out, bias)


def _run(x, w, spec, m, jit, bias=None):
    """The correlation by F(m, 3) (``jit``: the compiled transforms, or None),
    plus ``bias`` if given (compiled only)."""
    N = spec.ndim
    B, C, O = spec.batch, spec.in_channels, spec.out_channels
    a = m + 2
    nT = tuple(-(-o // m) for o in spec.out_spatial)
    rest = math.prod(nT[1:])
    row_bytes = a**N * max(C, O) * rest * spec.dtype.itemsize
    chunks = tile_chunks(B, nT, chunk_rows(B, nT, row_bytes, MIN_TILES))
    if jit is not None:
        panels = _panels(spec)
        U = _kernel_transform(w.astype(spec.dtype, copy=False), spec, m, panels)
        bias = np.empty(0, spec.dtype) if bias is None else np.ascontiguousarray(bias)
        return _run_compiled(jit, x, U, spec, m, nT, chunks, panels, bias)
    U = _kernel_transform(w.astype(spec.dtype, copy=False), spec, m)
    return _run_numpy(x, U, spec, m, nT, chunks)


def chunk_rows(B, nT, row_bytes, min_tiles):
    """Tile rows (of the first dim) per chunk: under :data:`CHUNK_BYTES` but at
    least ``min_tiles`` tiles, at most an even share of all rows per thread,
    then evened out so that the chunks are about the same size."""
    rest = math.prod(nT[1:])
    rows = B * nT[0]
    want = max(1, CHUNK_BYTES // max(row_bytes, 1), -(-min_tiles // rest))
    threads = get_num_threads()
    if rows * rest >= threads * min_tiles:  # (a small layer is not worth a thread pool)
        want = min(want, max(1, -(-rows // threads)))
    if want >= nT[0]:
        nb = want // nT[0]
        return -(-B // -(-B // nb)) * nT[0]
    return -(-nT[0] // -(-nT[0] // want))


def tile_chunks(B, nT, per_chunk):
    """``(b0, b1, i0, i1)``: batch items ``b0:b1``, tile rows ``i0:i1`` of the
    first dim, about ``per_chunk`` tile rows each."""
    if per_chunk >= nT[0]:
        nb = max(1, per_chunk // nT[0])
        return [(b0, min(B, b0 + nb), 0, nT[0]) for b0 in range(0, B, nb)]
    return [(b, b + 1, i0, min(nT[0], i0 + per_chunk))
            for b in range(B) for i0 in range(0, nT[0], per_chunk)]


def tile_grid(chunk, nT, m):
    """Batch index and first position (per dim) of each tile of a chunk, C order."""
    b0, b1, i0, i1 = chunk
    grids = np.meshgrid(np.arange(b0, b1), np.arange(i0, i1), *[np.arange(t) for t in nT[1:]],
                        indexing="ij")
    return grids[0].ravel(), np.stack([t.ravel() * m for t in grids[1:]], axis=1)


def _run_numpy(x, U, spec, m, nT, chunks):
    """``run`` with the NumPy passes of :func:`_combine` over a padded
    channels-last copy of the input covering whole tiles."""
    N, g = spec.ndim, spec.groups
    B, C, O = spec.batch, spec.in_channels, spec.out_channels
    Cg = C // g
    a = m + 2
    BT, _, AT = _MATRICES[m]
    S_out = spec.out_spatial
    # Channels-last, so the transforms stream contiguous runs of channels and
    # the transformed tiles are the (tiles, C) left operand of the products.
    xl = padded_rows(x, spec, nT, m)
    out = np.empty((B, O, *[t * m for t in nT]), dtype=spec.dtype)
    ATd = np.asarray(AT, dtype=spec.dtype)

    def work(chunk):
        b0, b1, i0, i1 = chunk
        v = xl[b0:b1, i0 * m : i1 * m + 2]  # (nb, rows, *S', C)
        counts = (i1 - i0,) + nT[1:]
        for i in range(N):
            v = _combine(v, BT, axis=i + 1 + i, step=m, count=counts[i])
        nb = b1 - b0
        P = nb * math.prod(counts)
        # (a^N, P, C) @ (a^N, C, O), per group.
        if g == 1:
            y = np.matmul(v.reshape(a**N, P, C), U[:, 0])
        else:
            vg = np.swapaxes(v.reshape(a**N, P, g, Cg), 1, 2)
            y = np.swapaxes(np.matmul(vg, U), 1, 2)
        y = y.reshape((a,) * N + (nb,) + counts + (O,))
        for i in range(N):
            y = _combine(y, ATd, axis=i, prepend=False)
        # (m_{N-1}, ..., m_0, nb, *counts, O) -> (nb, O, c_0, m_0, c_1, m_1, ...)
        order = [N, 2 * N + 1] + [a_ for i in range(N) for a_ in (N + 1 + i, N - 1 - i)]
        dst = out[b0:b1, :, i0 * m : i1 * m]
        dst[...] = y.transpose(order).reshape(dst.shape)

    _map_chunks(work, chunks)
    if out.shape[2:] != tuple(S_out):
        out = np.ascontiguousarray(out[(Ellipsis, *[slice(0, o) for o in S_out])])
    return out


_JIT = {}


def _compiled(m):
    """The compiled transforms of :mod:`._winograd_jit`, or None.

    None without numba, and for F(2, 3) (3-D and beyond): its 4-point lines
    over few channels are faster as the NumPy passes over whole chunks
    (measured: conv3d 16->32 64x64x32 took 1.6x longer compiled).
    """
    if m != 4:
        return None
    if "k" not in _JIT:
        try:
            from . import _winograd_jit
        except ImportError:  # no numba: pip install 'ndconv[jit]'
            _JIT["k"] = None
        else:
            _JIT["k"] = _winograd_jit
    return _JIT["k"]


def _panels(spec):
    """:mod:`._winograd_gemm` (the compiled AVX-512 product) where it serves
    ``spec`` (one group, float32/float64), or None (BLAS)."""
    if spec.groups != 1 or spec.dtype not in (np.float32, np.float64):
        return None
    if "g" not in _JIT:
        try:
            from . import _winograd_gemm
        except ImportError:  # no numba
            _JIT["g"] = None
        else:  # None without gemm's compiled product or without AVX-512
            _JIT["g"] = _winograd_gemm if _winograd_gemm.available() else None
    return _JIT["g"]


#: ``kind`` of :func:`._winograd_jit.lines` per tile size: B^T, A^T, A.
KINDS = {4: (0, 1, 4), 2: (2, 3, 5)}


def _products(v, U, g):
    """``(a^N, P, O)``: the per-position channel products of the chunk, per group."""
    A, P, C = v.shape
    if g == 1:
        return np.matmul(v, U[:, 0])
    vg = np.swapaxes(v.reshape(A, P, g, C // g), 1, 2)
    return np.ascontiguousarray(np.swapaxes(np.matmul(vg, U), 1, 2)).reshape(A, P, -1)


def _run_compiled(jit, x, U, spec, m, nT, chunks, panels, bias):
    """``run`` with the compiled transforms of :mod:`._winograd_jit`, plus
    ``bias`` (as for its ``output_transform``).

    The input is copied padded and channels last, covering whole tiles (the
    tiles' rows are then contiguous channel vectors: measured 10-15% faster
    than gathering them from ``x`` itself); with zero padding each chunk
    copies its own rows, on its own thread, just before transforming them
    (a whole copy up front ran on one thread: 7 of 47 ms at 64 channels).
    The tiles of a chunk are located by their first element's row in that
    copy flattened to ``(rows, C)``. With ``panels`` (:mod:`._winograd_gemm`),
    the tiles are written as the left panels of its product and ``U`` is its
    right panels.
    """
    N, g = spec.ndim, spec.groups
    B, C, O = spec.batch, spec.in_channels, spec.out_channels
    a = m + 2
    per_chunk = spec.padding_mode == "zeros" and all(r == 1 for r in spec.lhs_dilation)
    xl = None if per_chunk else padded_rows(x, spec, nT, m)
    out = np.empty((B, O, *spec.out_spatial), dtype=spec.dtype)
    of = out.reshape(B, O, -1)
    s_out = np.asarray(spec.out_spatial, np.int64)

    def work(chunk):
        b0, _, i0, _ = chunk
        tb, origin = tile_grid(chunk, nT, m)
        if per_chunk:
            xc = _chunk_rows(x, spec, nT, m, chunk)
            tb, first = tb - b0, origin - np.array([i0 * m] + [0] * (N - 1))
        else:
            xc, first = xl, origin
        rs = rows_strides(xc.shape)
        rows, offs = tb * rs[0] + first @ rs[1:], tile_offsets(rs, a)
        P = len(tb)
        if panels is not None:
            MR = panels.MR
            v = np.empty((a**N, -(-P // MR), C, MR), dtype=spec.dtype)
            if P % MR:
                v[:, -1] = 0  # the rows past P (the kernel reads whole panels)
            jit.input_transform(xc.reshape(-1, C), v, rows, offs, m, N)
            mm = np.empty((a**N, P, O), dtype=spec.dtype)
            panels.products(v, U, mm, False)
        else:
            v = np.empty((a**N, P, C), dtype=spec.dtype)
            jit.input_transform(xc.reshape(-1, C), v[..., None], rows, offs, m, N)
            mm = _products(v, U, g)
        jit.output_transform(mm, of, tb + (b0 if per_chunk else 0), origin, s_out, m, N,
                             bias)

    _map_chunks(work, chunks)
    return out


def _chunk_rows(x, spec, nT, m, chunk):
    """The rows of :func:`padded_rows` that the tiles of ``chunk`` read, copied
    from ``x`` (zero padding, no input dilation): ``(b1-b0, rows, *S', C)``."""
    b0, b1, i0, i1 = chunk
    (lo0, hi0), S0 = spec.pairs[0], spec.in_spatial[0]
    p0, p1 = i0 * m, i1 * m + 2  # the padded rows wanted
    # x rows inside them (a negative padding crops: those rows are not read)
    s0, s1 = max(0, p0 - lo0), min(S0 + min(0, hi0), p1 - lo0)
    need = tuple(t * m + 2 for t in nT)
    rest = tuple((lo, hi + nd - sp) for (lo, hi), nd, sp
                 in zip(spec.pairs[1:], need[1:], spec.padded_spatial[1:]))
    if s1 <= s0:  # all padding
        shape = [sum(p) + n for p, n in zip(rest, spec.in_spatial[1:])]
        return np.zeros((b1 - b0, p1 - p0, *shape, spec.in_channels), dtype=spec.dtype)
    before = s0 - (p0 - lo0)
    pairs = ((before, (p1 - p0) - before - (s1 - s0)),) + rest
    return pad(x[b0:b1, :, s0:s1], pairs, channels_last=True)


def padded_rows(x, spec, nT, m):
    """``x`` padded (zeros beyond, so that ``nT`` tiles of ``m`` outputs per dim
    are whole) and channels last: ``(B, *S', C)``."""
    need = tuple(t * m + 2 for t in nT)
    Sp = spec.padded_spatial
    if spec.padding_mode == "zeros":
        pairs = tuple((lo, hi + nd - sp) for (lo, hi), nd, sp in zip(spec.pairs, need, Sp))
        return pad(x, pairs, lhs_dilation=spec.lhs_dilation, channels_last=True)
    xl = pad(x, spec.pairs, spec.padding_mode, channels_last=True)
    return np.pad(xl, [(0, 0)] + [(0, nd - sp) for nd, sp in zip(need, Sp)] + [(0, 0)])


def rows_strides(shape):
    """Strides, in rows of channels, of a channels-last ``(B, *S, C)``: batch, then per dim."""
    n = len(shape) - 1
    st = np.ones(n, np.int64)
    for i in range(n - 2, -1, -1):
        st[i] = st[i + 1] * shape[i + 1]
    return st


def tile_offsets(row_strides, size):
    """Row offset of every element of a ``size^N`` tile, C order over
    ``(k_{N-1}, ..., k_0)``: the first spatial dim fastest, the layout of U
    (each step of :func:`_kernel_transform` prepends its axis)."""
    off = np.zeros(1, np.int64)
    for i in range(len(row_strides) - 1, 0, -1):
        off = (off[:, None] + np.arange(size) * row_strides[i]).ravel()
    return off


def estimate(spec):
    """Estimated seconds (see :mod:`ndconv.algorithms.cost`)."""
    from .cost import RATES as r, gemm_eff

    if _dual(spec):
        m = tile_size(spec.ndim)
        return winograd_dual.estimate(spec, m, m == 4 and _numba_installed())
    N = spec.ndim
    B, C, O, g = spec.batch, spec.in_channels, spec.out_channels, spec.groups
    m = tile_size(N)
    a = m + 2
    tiles = B * math.prod(-(-o // m) for o in spec.out_spatial)
    v, y = tiles * a**N * C, tiles * a**N * O
    # Elementwise operations per transformed value and dim (nonzeros of the
    # B^T and A^T rows; earlier dims work on smaller arrays, hence 0.6).
    nnz_in, nnz_out = (0.6, 0.8) if m == 2 else (3.7, 4.0)
    transforms = 0.6 * N * (v * nnz_in + y * nnz_out) / r["elem"]
    if m == 4 and _numba_installed():
        transforms *= 0.6  # compiled: one pass per tile (measured 0.3 ms per 450k values)
    products = 2 * tiles * a**N * (C // g) * O / (r["gemm"] * gemm_eff(C // g, O // g))
    chunks = max(1, v * spec.dtype.itemsize // CHUNK_BYTES)
    out = 2 * B * O * math.prod(spec.out_spatial) * spec.dtype.itemsize / r["copy"]
    calls = a**N // 8 + (a + 1) * N * (2 if m == 2 else 4)  # one matmul, ufuncs per row
    return transforms + products + out + chunks * calls * r["step"]


def reason(spec):
    m = tile_size(spec.ndim)
    if _dual(spec):
        return (f"3x..x3 output, stride 1: Winograd F({m},3) transposed (the weight "
                "gradient's form), fewer multiplies than im2col")
    return f"3x..x3 stride 1: Winograd F({m},3) per dim, fewer multiplies than im2col"


def _row_sum(mat):
    return max(sum(abs(c) for c in row) for row in mat)


def error_growth(spec):
    """Rounding error of an output in units of ``eps * max|x| * ||w||_2``.

    Every output of a tile mixes all ``(m+2)^N`` inputs of the tile through the
    transforms' coefficients (up to 8 in F(4, 3), 1 in F(2, 3)); the error
    doubles about per dim.
    """
    return ERROR_FACTOR[tile_size(spec.ndim)] * 2.0 ** (spec.ndim - 1)


#: Constants of :func:`error_growth` per tile size. Measured with one value of
#: 1e9 in Gaussian noise (float32 and float64, 1 to 128 channels), the error in
#: outputs whose window misses it: F(4, 3) on the points of :data:`_MATRICES`
#: up to 1.25 (1-D) and 2.46 (2-D) ``eps * 1e9 * ||w||_2``, F(2, 3) in 3-D below
#: 1e-7; these give 4 and 8 (F(4, 3)) and 4 (F(2, 3), 3-D).
ERROR_FACTOR = {4: 4.0, 2: 1.0}


def magnitude_growth(spec):
    """Bound on the intermediates over ``max|x| * max|w|``: the transforms'
    largest row sums per dim, times the channels summed."""
    if _dual(spec):
        return winograd_dual.magnitude_growth(spec, tile_size(spec.ndim))
    BT, G, AT = _MATRICES[tile_size(spec.ndim)]
    per_dim = _row_sum(BT) * _row_sum(G) * _row_sum(AT)
    return float(spec.in_channels // spec.groups) * float(per_dim) ** spec.ndim


def workspace_bytes(spec):
    """Channels-last padded input (whole tiles), kernel transform, output, and
    each thread's chunk of transformed tiles."""
    if _dual(spec):
        return winograd_dual.workspace_bytes(spec, tile_size(spec.ndim))
    N = spec.ndim
    B, C, O, g = spec.batch, spec.in_channels, spec.out_channels, spec.groups
    it = spec.dtype.itemsize
    m = tile_size(N)
    a = m + 2
    nT = [-(-o // m) for o in spec.out_spatial]
    padded = B * C * math.prod(t * m + 2 for t in nT) * it
    kernel = a**N * (C // g) * O * it * 2
    out = B * O * math.prod(t * m for t in nT) * it
    row = a**N * max(C, O) * math.prod(nT[1:]) * it
    rows = chunk_rows(B, nT, row, MIN_TILES) if B and nT[0] else 1
    chunk = min(B * nT[0], rows) * row * 4 * get_num_threads()
    return padded + kernel + out + chunk


from .record import Algorithm, add_bias, always  # noqa: E402

ALGORITHM = Algorithm(
    name="winograd", supports=supports, run=run, estimate=estimate, reason=reason,
    mixes_nonfinite=always, error_growth=error_growth, magnitude_growth=magnitude_growth,
    workspace_bytes=workspace_bytes, run_bias=run_bias, any_kernel_layout=True,
)

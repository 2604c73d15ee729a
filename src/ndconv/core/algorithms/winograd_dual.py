"""Winograd for a correlation with a 3x..x3 *output*: a 3x..x3 layer's weight gradient.

The weight gradient of a 3x..x3 stride-1 layer is a correlation of the padded
input with the output gradient as its (large) kernel, 3 outputs per dim. Its
Winograd form is the transpose of the forward's F(m, 3) (Lavin & Gray, 2015,
section 5): with ``V = B^T d`` the transformed input tiles of the forward
(``m + 2`` values, ``m`` apart) and ``D = A dy`` each ``m``-value tile of the
output gradient taken into the same ``m + 2`` positions by the transpose of
the forward's output transform,

    ``dw = G^T [sum over tiles and batch of V * D]``

per dim (a tensor product, so one implementation for every N): ``(m+2)^N``
channel products ``V^T D``, summed over all tiles, each over the inner size
"tiles x batch" (long, well shaped for BLAS), then ``G^T`` once. F(4x4,
3x3) in 2-D does 36 products of K = tiles for the 9 of im2col over all
pixels (16 per tile): 4x fewer multiplies. It is exact in exact arithmetic
(the forward's identity, transposed); in float32 its error stays near
PyTorch's (2-4e-6 of max|dw| measured, 1 to 256 channels).

:mod:`.winograd` dispatches here (one method, ``'winograd'``, for both
shapes). Work proceeds in chunks of tiles (transformed buffers under
:data:`CHUNK_BYTES`); on ``T`` threads the transforms of each chunk are split
over the tiles and its products over the ``(m+2)^N`` positions, so every
thread accumulates only its own positions and no partial sums are added up.
"""

from __future__ import annotations

import math
import threading

import numpy as np

from .._windows import pad
from .threads import blas_single_thread, get_num_threads, map_chunks

#: Upper bound on the transformed input and output gradient of one chunk, in bytes.
CHUNK_BYTES = 8 * 2**20

#: Fewest tiles per chunk: the products' inner size (BLAS slows below it).
MIN_TILES = 256


def _tiles(spec, m):
    """Tiles per dim of the kernel (the output gradient), ``m`` taps each."""
    return tuple(-(-k // m) for k in spec.kernel_size)


def _layouts(x, w, spec, m):
    """For the NumPy passes: the padded input ``(Cin, *S', batch)`` and kernel
    ``(Cg, *K', O)``, channels last, both covering whole tiles (zeros beyond
    the kernel meet only input positions no real tap reads)."""
    from .winograd import padded_rows

    nT = _tiles(spec, m)
    # x is (batch, Cin, *S): swapped, the batch becomes the channels, last.
    xl = padded_rows(np.swapaxes(x, 0, 1), spec, nT, m)
    extra = tuple((0, t * m - k) for t, k in zip(nT, spec.kernel_size))
    return xl, pad(np.swapaxes(w, 0, 1), extra, channels_last=True)


def run(x, w, spec, m, compiled):
    """The correlation of ``x`` with kernel ``w``, output ``(batch, O, 3, .., 3)``.

    ``m``: taps per tile per dim; ``compiled``: the transforms of
    :mod:`._winograd_jit` (or None: the NumPy passes of :mod:`.winograd`).
    """
    from .winograd import tile_chunks

    N, g = spec.ndim, spec.groups
    Bx, O = spec.batch, spec.out_channels
    Cg, Og = spec.in_channels // g, O // g
    A = (m + 2) ** N
    nT = _tiles(spec, m)
    rest = math.prod(nT[1:])
    chunks = tile_chunks(Cg, nT, _chunk_rows(spec, m))
    tiles = max((j1 - j0) * (i1 - i0) * rest for j0, j1, i0, i1 in chunks)
    panels = _panels(spec) if compiled is not None else None
    if panels is None:
        # One pair of buffers for every chunk (each chunk uses its first P tiles).
        v = np.empty((A, g, tiles, Bx), dtype=spec.dtype)
        d = np.empty((A, tiles, O), dtype=spec.dtype)

        def views(P):
            return v[:, :, :P], d[:, :P]

        accumulate = _accumulate
        if compiled is None:
            fill = _numpy_fill(*_layouts(x, w, spec, m), spec, m, nT)
        else:
            fill = _compiled_fill(compiled, x, w, spec, m, nT)
    else:
        views, fill, accumulate = _panel_parts(panels, compiled, x, w, spec, m, nT, tiles)
    dU = np.empty((A, g, Bx, Og), dtype=spec.dtype)
    threads = min(get_num_threads(), A, max(1, len(chunks) * tiles // 64))
    if threads > 1:
        _threaded(fill, views, accumulate, chunks, dU, threads, rest)
    else:
        with blas_single_thread():
            for i, chunk in enumerate(chunks):
                vc, dc = views(_count(chunk, rest))
                fill(chunk, vc, dc, 0, 1)
                accumulate(vc, dc, dU, 0, A, i == 0)
    r = _kernel_gradient(dU, m, N, compiled)
    return np.ascontiguousarray(r.transpose(2, 1, 3, 0)).reshape(Bx, O, *(3,) * N)


def _kernel_gradient(dU, m, N, compiled):
    """``dw = G^T dU`` per dim, ``(3^N, g, Bx, Og)``: the transpose of the
    forward's kernel transform, in float64 for float32. With numba, that
    transform's own compiled sums with ``M^T`` (reading ``dU`` as the kernel
    with its taps first; 128 channels 0.55 -> 0.34 ms, 256: 2.8 -> 2.2 against
    NumPy's float64 copies and products); else BLAS over blocks of columns
    (a float64 copy of all of dU took longer than the products at 512
    channels)."""
    from .winograd import _tap_matrix

    A, g, Bx, Og = dU.shape
    T = 3**N
    Mt = np.ascontiguousarray(_tap_matrix(m, N).T)  # (T, A), float64
    if compiled is not None and dU.dtype.kind == "f":
        r = np.empty((T, 1, g * Bx, Og), dtype=dU.dtype)
        compiled.kernel_transform(dU.reshape(A, g * Bx, Og), Mt, r)
        return r.reshape(T, g, Bx, Og)
    wide = np.float64 if dU.dtype == np.float32 else dU.dtype
    Mt, flat = Mt.astype(wide), dU.reshape(A, -1)
    r = np.empty((T, flat.shape[1]), dtype=dU.dtype)
    step = max(1, 2**17 // A)
    with blas_single_thread():
        for c0 in range(0, flat.shape[1], step):
            r[:, c0:c0 + step] = Mt @ flat[:, c0:c0 + step].astype(wide)
    return r.reshape(T, g, Bx, Og)


def _chunk_rows(spec, m):
    """Tile rows (of the first dim) per chunk: at least :data:`MIN_TILES`
    tiles, more up to :data:`CHUNK_BYTES` of transformed tiles."""
    nT = _tiles(spec, m)
    rest = math.prod(nT[1:])
    A = (m + 2) ** spec.ndim
    row_bytes = A * (spec.groups * spec.batch
                     + spec.out_channels) * rest * spec.dtype.itemsize
    return max(-(-MIN_TILES // rest), CHUNK_BYTES // max(row_bytes, 1))


def _count(chunk, rest):
    j0, j1, i0, i1 = chunk
    return (j1 - j0) * (i1 - i0) * rest


def _accumulate(v, d, dU, k0, k1, first):
    """``dU[k] (+)= v[k]^T @ d[k]`` for positions ``k0:k1``, per group (``=``
    for the ``first`` chunk, written in place; later ones through one buffer).

    ``v``: ``(A, g, P, Bx)``; ``d``: ``(A, P, O)``.
    """
    g, Og = dU.shape[1], dU.shape[3]
    tmp = None if first else np.empty(dU.shape[2:], dtype=dU.dtype)
    for k in range(k0, k1):
        for gi in range(g):
            dk = d[k, :, gi * Og:(gi + 1) * Og]
            if first:
                np.matmul(v[k, gi].T, dk, out=dU[k, gi])
            else:
                np.matmul(v[k, gi].T, dk, out=tmp)
                dU[k, gi] += tmp


def _threaded(fill, views, accumulate, chunks, dU, threads, rest):
    """The chunks on ``threads`` threads: each transforms its share of every
    chunk's tiles, then (once all have) multiplies its share of the positions,
    so each position's sum stays on one thread and none is added up after."""
    A = dU.shape[0]
    bounds = [A * t // threads for t in range(threads + 1)]
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def worker(t):
        try:
            for i, chunk in enumerate(chunks):
                vc, dc = views(_count(chunk, rest))
                fill(chunk, vc, dc, t, threads)
                barrier.wait()
                accumulate(vc, dc, dU, bounds[t], bounds[t + 1], i == 0)
                barrier.wait()  # the buffers are refilled next
        except threading.BrokenBarrierError:
            pass  # another thread failed: its error is raised below
        except BaseException as e:  # noqa: BLE001 (re-raised below)
            errors.append(e)
            barrier.abort()

    map_chunks(worker, list(range(threads)))
    if errors:
        raise errors[0]


def _panels(spec):
    from .winograd import _panels as panels

    return panels(spec)


def _panel_parts(panels, jit, x, w, spec, m, nT, tiles):
    """``(views, fill, accumulate)`` on the packed panels of
    :mod:`._winograd_gemm`'s product: ``dU_k (batch, O) = V_k^T D_k``, with
    ``V_k^T`` as left panels ``(ceil(batch/MR), P, MR)`` and ``D_k`` as right
    panels ``(ceil(O/R), P, R)``, written so by the transforms."""
    from .winograd import KINDS

    A = (m + 2) ** spec.ndim
    Bx, O = spec.batch, spec.out_channels
    MR, R = panels.MR, panels.panel_width(spec.dtype)
    nv, nd = -(-Bx // MR), -(-O // R)
    # Zeros once: the panels' rows past Bx and columns past O are never
    # written, and must be finite.
    vbuf = np.zeros(A * nv * tiles * MR, dtype=spec.dtype)
    dbuf = np.zeros(A * nd * tiles * R, dtype=spec.dtype)

    def views(P):  # contiguous: the kernel steps through whole panels of P rows
        return (vbuf[:A * nv * P * MR].reshape(A, nv, P, MR),
                dbuf[:A * nd * P * R].reshape(A, nd, P, R))

    kin, _, kexp = KINDS[m]
    gather = jit.gather_transform
    shares = _shares(x, w, spec, m, nT)

    def fill(chunk, v, d, t, T):
        (p0, p1, gargs, xargs) = shares(chunk, t, T)
        gather(*gargs, kexp, d[:, :, p0:p1], O)
        gather(*xargs[0], kin, v[:, :, p0:p1], Bx)

    # Each chunk's sums apart, then added: accumulating every chunk in place
    # summed thousands of tiles in one float32 chain (1.5e-5 of max|dw| at
    # 64 channels, 56x56, batch 32; 2.2e-6 this way).
    part = {}

    def accumulate(v, d, dU, k0, k1, first):
        if first:
            panels.products(v[k0:k1], d[k0:k1], dU[k0:k1, 0], False)
            return
        tmp = part.get(k0)
        if tmp is None:
            tmp = part[k0] = np.empty((k1 - k0,) + dU.shape[2:], dtype=dU.dtype)
        panels.products(v[k0:k1], d[k0:k1], tmp, False)
        dU[k0:k1, 0] += tmp

    return views, fill, accumulate


def _memory(a):
    """``(flat, strides)``: a 1-D view of the memory of ``a`` and its strides in
    elements, so that compiled kernels read any C-ordered permutation (such as
    a transposed view) in place; other layouts are copied first."""
    from .survey import flat_memory

    flat = flat_memory(a)
    if flat is None:
        a = np.ascontiguousarray(a)
        flat = a.reshape(-1)
    return flat, np.array([s // a.itemsize for s in a.strides], np.int64)


def _source(x, spec):
    """``(src, lo, lim)``: the array the tiles read (``x`` itself with zero
    padding, else a padded copy), the padding before each dim that the tiles'
    positions skip, and the extent along each dim past which they read zeros."""
    if spec.padding_mode == "zeros" and all(r == 1 for r in spec.lhs_dilation):
        # Negative padding crops: the tiles must not see the cropped values.
        lim = [s + min(0, hi) for s, (_, hi) in zip(spec.in_spatial, spec.pairs)]
        return x, np.array([lo for lo, _ in spec.pairs], np.int64), np.array(lim, np.int64)
    if spec.padding_mode == "zeros":
        xp = pad(x, spec.pairs, lhs_dilation=spec.lhs_dilation)
    else:
        xp = pad(x, spec.pairs, spec.padding_mode)
    return xp, np.zeros(spec.ndim, np.int64), np.array(xp.shape[2:], np.int64)


def _shares(x, w, spec, m, nT):
    """``share(chunk, t, T) -> (p0, p1, grad_args, [input_args per group])``:
    the ``t``-th of ``T`` shares of a chunk's tiles, ``p0:p1``, and the
    leading arguments of :func:`._winograd_jit.gather_transform` that read
    them from ``w`` (the output gradient) and from ``x``, in place."""
    from .winograd import tile_grid

    Cg = spec.in_channels // spec.groups
    src, lo, lim = _source(x, spec)
    xflat, xst = _memory(src)
    gflat, gst = _memory(w)
    glim = np.array(spec.kernel_size, np.int64)

    def share(chunk, t, T):
        tj, origin = tile_grid(chunk, nT, m)
        P = len(tj)
        p0, p1 = P * t // T, P * (t + 1) // T
        tj, origin = tj[p0:p1], origin[p0:p1]
        # Tiles run over dim 1 (the kernel's channels), channels over dim 0.
        gargs = (gflat, gst[1], gst[0], gst[2:], glim, tj, origin)
        xargs = [(xflat, xst[1], xst[0], xst[2:], lim, gi * Cg + tj, origin - lo)
                 for gi in range(spec.groups)]
        return p0, p1, gargs, xargs

    return share


def _compiled_fill(jit, x, w, spec, m, nT):
    """``fill(chunk, v, d, t, T)``: the ``t``-th of ``T`` shares of the chunk's
    transformed input tiles ``v`` and output-gradient tiles ``d``, read straight
    from ``x`` and ``w`` (:func:`._winograd_jit.gather_transform`)."""
    from .winograd import KINDS

    gather = jit.gather_transform
    kin, _, kexp = KINDS[m]
    shares = _shares(x, w, spec, m, nT)

    def fill(chunk, v, d, t, T):
        p0, p1, gargs, xargs = shares(chunk, t, T)
        gather(*gargs, kexp, d[:, None, p0:p1], d.shape[2])
        for gi, args in enumerate(xargs):
            gather(*args, kin, v[:, gi, None, p0:p1], v.shape[3])

    return fill


def _numpy_fill(xl, gl, spec, m, nT):
    """As :func:`_compiled_fill`, with the NumPy passes of :func:`.winograd._combine`
    (share 0 computes the whole chunk)."""
    from .winograd import _MATRICES, _combine

    N, g = spec.ndim, spec.groups
    Bx = spec.batch
    Cg = spec.in_channels // g
    BT, _, AT = _MATRICES[m]
    At = np.asarray(AT, dtype=np.float64).T.tolist()  # A: m values to m + 2

    def fill(chunk, v, d, t, T):
        if t:
            return
        j0, j1, i0, i1 = chunk
        counts = (i1 - i0,) + tuple(nT[1:])
        gc = gl[j0:j1, i0 * m:i1 * m]  # (nj, rows, *K', O)
        for i in range(N):
            gc = _combine(gc, At, axis=i + 1 + i, step=m, count=counts[i])
        d[...] = gc.reshape(d.shape)
        for gi in range(g):
            xc = xl[gi * Cg + j0:gi * Cg + j1, i0 * m:i0 * m + counts[0] * m + 2]
            for i in range(N):
                xc = _combine(xc, BT, axis=i + 1 + i, step=m, count=counts[i])
            v[:, gi] = xc.reshape(v.shape[0], -1, Bx)

    return fill


def estimate(spec, m, compiled):
    """Estimated seconds (see :mod:`ndconv.algorithms.cost`)."""
    from .cost import RATES as r, gemm_eff

    N, g = spec.ndim, spec.groups
    Bx, O = spec.batch, spec.out_channels
    Cg = spec.in_channels // g
    A = (m + 2) ** N
    tiles = Cg * math.prod(_tiles(spec, m))  # per group: the products' inner size
    v, d = g * tiles * A * Bx, tiles * A * O
    # Elementwise operations per transformed value and dim, as in winograd.estimate.
    transforms = 0.6 * N * (v * 3.7 + d * 2.5) / r["elem"] * (0.6 if compiled else 1.0)
    products = 2 * A * tiles * Bx * O / (r["gemm"] * gemm_eff(Bx, O // g))
    copies = (spec.batch * spec.in_channels * math.prod(spec.in_spatial)
              + O * Cg * math.prod(spec.kernel_size)) * spec.dtype.itemsize / r["copy"]
    chunks = -(-Cg * _tiles(spec, m)[0] // _chunk_rows(spec, m))
    # Each chunk adds into the (A, Bx, O) sums; G^T reads them once in float64.
    sums = (2 * chunks + 3) * A * Bx * (O // g) * g * spec.dtype.itemsize / r["copy"]
    return transforms + products + copies + sums + chunks * A * g * r["step"]


def _row_sum(mat):
    return max(sum(abs(c) for c in row) for row in mat)


def magnitude_growth(spec, m):
    """Bound on the intermediates over ``max|x| * max|w|``: the transforms'
    largest row sums per dim, times the terms summed (kernel channels x tiles)."""
    from .winograd import _MATRICES

    BT, G, AT = _MATRICES[m]
    per_dim = _row_sum(BT) * _row_sum(list(zip(*AT))) * _row_sum(list(zip(*G)))
    terms = (spec.in_channels // spec.groups) * math.prod(_tiles(spec, m))
    return float(terms) * float(per_dim) ** spec.ndim


def workspace_bytes(spec, m):
    """Padded input and kernel (whole tiles), one chunk's buffers, the sums."""
    N, g = spec.ndim, spec.groups
    Bx, O = spec.batch, spec.out_channels
    Cg = spec.in_channels // g
    it = spec.dtype.itemsize
    A = (m + 2) ** N
    nT = _tiles(spec, m)
    padded = spec.in_channels * Bx * math.prod(t * m + 2 for t in nT) * it
    kernel = Cg * O * math.prod(t * m for t in nT) * it
    rest = math.prod(nT[1:])
    chunk = min(Cg * math.prod(nT), _chunk_rows(spec, m) * rest) * A * (g * Bx + O) * it
    return padded + kernel + chunk + 2 * A * g * Bx * (O // g) * it

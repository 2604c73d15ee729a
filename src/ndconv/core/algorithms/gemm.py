"""GEMM method: im2col in a channels-last layout, in tiles of bounded size.

The padded input is copied once into ``(B, *S, C)`` order, so each im2col row
``(*K, C)`` is made of contiguous runs of ``C`` values; the columns of a tile of
output positions are gathered into one buffer and multiplied with the kernel
reshaped to ``(K*C, O)`` by BLAS. The buffer never exceeds :data:`TILE_BYTES`
(plus one output row), so memory stays bounded whatever the input size.

With numba installed (``ndconv[jit]``) and many output positions per batch
item, the compiled im2col of :mod:`._gemm_jit` packs cache-sized tiles of
:data:`PACK_BYTES` channel-major instead, so that each product lands in the
output in its final layout and the columns never leave the cache; the tiles
run on :func:`ndconv.get_num_threads` threads, BLAS on one thread in each.
The stem of a ResNet (3->64, 7x7, stride 2) ran 1.4x, a 3-D layer
(16->32, 3x3x3) 1.6x faster than the NumPy path (1 thread).

On a CPU with AVX-512, or AVX2 with FMA, the products are not BLAS's but the
compiled micro-kernel of :mod:`._gemm_kernel` (on AVX-512 2x NumPy's SGEMM
where OpenBLAS is held to AVX2; on AVX2 as fast as OpenBLAS's Haswell
kernels), and it needs no im2col where output lines are long: its rows are
read straight from the padded input, one offset per (channel, tap). The
weight gradient's loop over taps likewise gathers its rows from the input.
The stem ran 1.7-1.9x, a 1-D layer (64->64, k9) 2.0x and the 3-D layer 2.3x
faster than with BLAS (1 thread, forward), and their weight gradients
1.6x, 2.3x and 3.3x (thread CPU time, development machine).

Small correlations (a layer of a small network) take one gather instead:
the flat index of every column entry in the input, padding and input
dilation included, is computed once per spec and kept (:func:`_gather_index`),
so a call is one ``take`` and one matmul, not the dozen NumPy calls of
padding, strided views and tiles, which cost more than the arithmetic there.
With numba, the smallest of them (up to :data:`SMALL_MACS` multiply-adds:
a small network's layers at batch 1) are one compiled call over the same
index instead, the bias added as the output is written (:mod:`._small_jit`).
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .._windows import pad, source_index, windows
from .threads import matmul
from . import portable
from ._jit import numba_installed as _numba_installed

#: Upper bound on the im2col buffer, in bytes.
TILE_BYTES = 32 * 2**20

#: Largest gather index (entries: channels x taps x output positions) kept
#: per spec, and largest column buffer (bytes) gathered in one ``take``:
#: above ~200 kB of columns the padded copy and strided view gather faster
#: than ``take``'s scattered reads (measured on the digits CNN's layers and
#: their gradients, batch 1-64, 1 thread).
GATHER_ENTRIES = 2**16
GATHER_BYTES = 192 * 2**10

#: Most multiply-adds of a gathered correlation that the compiled kernel of
#: :mod:`._small_jit` computes: there the five NumPy passes (copy, take,
#: product, transpose, bias) cost more than the arithmetic (the digits CNN's
#: convs at batch 1, 9k and 74k: 2-3x faster); above, BLAS's product wins
#: (the same layers at batch 32-64 ran 1.5-2x slower compiled).
SMALL_MACS = 2**18

#: The bound on the gathered columns (bytes) where numba gathers them in one
#: compiled pass (:func:`._small_jit.gather`, no ``take``) and no compiled
#: packing path applies (few positions and taps): the digits CNN's second
#: conv at batch 32-64 (300-600 kB of columns) and its gradients, where the
#: tile path's padded copy, strided copy and bias pass cost as much as the product.
GATHER_BYTES_COMPILED = 4 * 2**20

#: Bytes of one packed tile of columns of the compiled path (the L2 cache of
#: the development machine; 0.5, 2 and 8 MiB measured, 2 the fastest by 5-20%
#: on the stem, 1-D and 3-D layers).
PACK_BYTES = 2**21

#: Fewest output positions per batch item for the compiled path: below, the
#: per-item products are too narrow, and the NumPy path's one product over
#: all batch items is faster (weight gradients: a few positions, many items).
PACK_MIN_POSITIONS = 256


def supports(spec):
    return True, "any arguments"


def _tiles(batch, rows, row_bytes):
    """Blocks ``(b0, b1, i0, i1)`` of (batch, first output dim) under TILE_BYTES."""
    per_tile = max(1, TILE_BYTES // max(row_bytes, 1))
    if per_tile >= rows:
        nb = max(1, per_tile // rows)
        for b0 in range(0, batch, nb):
            yield b0, min(batch, b0 + nb), 0, rows
    else:
        for b0 in range(batch):
            for i0 in range(0, rows, per_tile):
                yield b0, b0 + 1, i0, min(rows, i0 + per_tile)


def _gathers(spec):
    """Whether ``spec`` is small enough for the one-gather path."""
    P = math.prod(spec.out_spatial)
    entries = spec.in_channels * spec.taps * P
    limit = GATHER_BYTES
    if (P < PACK_MIN_POSITIONS and spec.taps < PACK_MIN_TAPS and spec.numpy
            and spec.dtype in (np.float32, np.float64) and _numba_installed()):
        limit = GATHER_BYTES_COMPILED  # (asked without compiling: the chooser asks too)
    # (positions in int64: a huge padding or stride, valid where its step is
    # never taken, stays on the strided path)
    return (entries <= GATHER_ENTRIES
            and spec.batch * entries * spec.dtype.itemsize <= limit
            and max(spec.padded_spatial) < 2**31 and max(spec.in_spatial) < 2**31)


def _compiled_gather(spec):
    """The compiled gather of :mod:`._small_jit` for ``spec``'s dtype, or None."""
    if spec.dtype not in (np.float32, np.float64) or not spec.numpy or not _numba_installed():
        return None
    from ._small_jit import gather_kernel

    return gather_kernel()


def _axis_index(n, k, s, d, lo, r, o, mode):
    """Per dim: the input cell that output ``o`` reads at tap ``t``, shape (o, k); -1: a zero."""
    # A step taken only once is never used (a huge one must not overflow), as in windows().
    s, d = (s if o > 1 else 0), (d if k > 1 else 0)
    u = np.arange(o)[:, None] * s + np.arange(k)[None, :] * d - lo  # in the dilated input
    if r > 1:  # input dilation (zero padding only): the inserted zeros read -1
        real = (u % r == 0) & (u >= 0) & (u <= (n - 1) * r)
        return np.where(real, u // r, -1)
    index, inside = source_index(u, n, mode)
    return np.where(inside, index, -1)


@functools.lru_cache(maxsize=64)
def _gather_index(spec):
    """Flat index of every im2col entry, shape ``(g, P, Cg*taps)`` (columns in
    the kernel's own order, so that it multiplies without a copy), into one
    batch item's ``x`` raveled with one zero appended (what padding reads),
    and the output's shape; None where ``spec`` is not small enough
    (:func:`_gathers`)."""
    if not _gathers(spec):
        return None
    g, C, S = spec.groups, spec.in_channels, spec.in_spatial
    S_out = spec.out_spatial
    n = spec.ndim
    flat = np.zeros((1,) * (2 * n), dtype=np.intp)
    zero = np.zeros((1,) * (2 * n), dtype=bool)
    step = 1
    for i in reversed(range(n)):
        lo = spec.pairs[i][0]
        ax = _axis_index(S[i], spec.kernel_size[i], spec.stride[i], spec.dilation[i], lo,
                         spec.lhs_dilation[i], S_out[i], spec.padding_mode)
        # axes: (*K, *S_out), so the column order is (tap, position) as the kernel's
        shape = [1] * (2 * n)
        shape[i], shape[n + i] = ax.shape[1], ax.shape[0]
        ax = ax.T.reshape(shape)
        flat = flat + np.maximum(ax, 0) * step
        zero = zero | (ax < 0)
        step *= S[i]
    flat = np.where(zero, C * step, flat).reshape(1, spec.taps, -1)
    index = np.arange(C).reshape(C, 1, 1) * step + flat  # (C, taps, P)
    index[:, zero.reshape(spec.taps, -1)] = C * step  # the appended zero
    P = index.shape[-1]
    index = index.reshape(g, C // g, spec.taps, P).transpose(0, 3, 1, 2)
    index = np.ascontiguousarray(index).reshape(g, P, (C // g) * spec.taps)
    index.setflags(write=False)
    return index, (spec.batch, spec.out_channels, *S_out)


def _kernel_matrix(w, spec):
    """The kernel as ``(g, taps*Cg, Og)``, rows in the columns' order ``(tap, channel)``."""
    g = spec.groups
    Og, Cg = spec.out_channels // g, spec.in_channels // g
    # (g, taps, Cg, Og); the reshape copies it C-contiguous
    return w.reshape(g, Og, Cg, spec.taps).transpose(0, 3, 2, 1).reshape(g, spec.taps * Cg, Og)


def _run_gathered(x, w, spec, index, out_shape, bias=None):
    B, g = spec.batch, spec.groups
    gather = _compiled_gather(spec)
    if gather is not None:
        cols = np.empty((B, *index.shape), dtype=spec.dtype)
        gather(np.ascontiguousarray(x, dtype=spec.dtype).reshape(B, -1), index,
               _ZERO[spec.dtype.char], cols)
    else:
        size = x[0].size if B else 0
        src = np.empty((B, size + 1), dtype=spec.dtype)
        src[:, :size] = x.reshape(B, size)
        src[:, size] = 0
        cols = src.take(index, axis=1)  # (B, g, P, Cg*taps)
    O = spec.out_channels
    wmat = w.reshape(g, O // g, -1).transpose(0, 2, 1)  # (g, Cg*taps, Og), a view
    # Output positions as the rows of the product, as in the tile path (one
    # product for the whole batch when g == 1): every position is computed
    # alike, which keeps a circular convolution exactly translation-equivariant
    # (as columns, BLAS's edge kernels round the last positions differently).
    if g == 1:
        res = matmul(cols.reshape(-1, cols.shape[-1]), wmat[0]).reshape(B, 1, -1, O)
    else:
        res = matmul(cols, wmat)  # (B, g, P, Og)
    out = np.empty((B, g, O // g, res.shape[2]), dtype=res.dtype)
    if gather is not None:  # (numba is there: the compiled transposing copy)
        from ._small_jit import positions_last_kernel

        move = positions_last_kernel()
        if move is not None:
            b = (np.ascontiguousarray(bias, dtype=res.dtype) if bias is not None
                 else np.zeros(O, res.dtype)).reshape(g, O // g)
            move(res.reshape(B, g, -1, O // g), b, bias is not None, out)
            return out.reshape(out_shape)
    if bias is None:
        np.copyto(out, res.transpose(0, 1, 3, 2))
    else:  # the bias in the same pass as the transposing copy
        np.add(res.transpose(0, 1, 3, 2), bias.reshape(g, O // g, 1), out=out)
    return out.reshape(out_shape)


@functools.lru_cache(maxsize=64)
def _small_fits(spec):
    """Whether the compiled gathered path could take ``spec`` (its size and dtype)."""
    return (spec.macs <= SMALL_MACS and spec.dtype in (np.float32, np.float64)
            and spec.numpy and _numba_installed())


def _small(spec):
    """``(kernel, index, out_shape)`` of the compiled gathered path for ``spec``, or None."""
    gather = _gather_index(spec) if _small_fits(spec) else None
    if gather is None:
        return None
    from ._small_jit import kernel

    k = kernel()  # (looked up per call: a test may hide numba)
    return None if k is None else (k, *gather)


def _run_small(small, x, w, spec, bias):
    k, index, out_shape = small
    B, O = spec.batch, spec.out_channels
    out = np.empty((B, O, index.shape[1]), dtype=spec.dtype)
    xf = np.ascontiguousarray(x, dtype=spec.dtype).reshape(B, -1)
    wf = np.ascontiguousarray(w, dtype=spec.dtype).reshape(O, -1)
    has_bias = bias is not None
    b = np.ascontiguousarray(bias, dtype=spec.dtype) if has_bias else wf[0, :0]
    k(xf, index, wf, b, has_bias, _ZERO[spec.dtype.char], out)
    return out.reshape(out_shape)


def prepared(spec):
    """The compiled gathered call for a repeating ``spec`` (see ``Algorithm.prepared``), or None."""
    small = _small(spec)
    if small is None:
        return None
    from ._small_jit import kernel

    _, index, out_shape = small

    def call(x, w, bias):
        k = kernel()  # (per call: a test may hide numba)
        if k is None:
            return None
        return _run_small((k, index, out_shape), x, w, spec, bias)

    return call


#: The zero a padded position reads in the compiled gathered kernel, per dtype.
_ZERO = {c: np.zeros(1, c) for c in "fd"}


def run_bias(x, w, spec, bias):
    """:func:`run` plus ``bias`` per output channel: in the compiled gathered
    kernel where it runs, else added after."""
    if bias is None or not spec.numpy:
        return add_bias(run(x, w, spec), bias)
    small = _small(spec)
    if small is not None:
        return _run_small(small, x, w, spec, bias)
    gather = _gather_index(spec)
    if gather is not None:
        return _run_gathered(x, w, spec, *gather, bias=bias)
    pack = _compiled(spec)
    if pack is not None:
        return _run_packed(pack, x, w, spec, bias)
    return add_bias(run(x, w, spec), bias)


def run(x, w, spec):
    if not spec.numpy:  # another array-API library: stacked taps, one matmul
        return portable.gemm(x, w, spec)
    small = _small(spec)
    if small is not None:
        return _run_small(small, x, w, spec, None)
    gather = _gather_index(spec)
    if gather is not None:
        return _run_gathered(x, w, spec, *gather)
    pack = _compiled(spec)
    if pack is not None:
        return _run_packed(pack, x, w, spec)
    N = spec.ndim
    g = spec.groups
    B, C, O = spec.batch, spec.in_channels, spec.out_channels
    Cg, Og = C // g, O // g
    K = spec.kernel_size
    Kp = spec.taps
    S_out = spec.out_spatial
    xl = pad(
        x, spec.pairs, spec.padding_mode, lhs_dilation=spec.lhs_dilation,
        channels_last=True,
    )
    # (B, *S_out, C, *K) -> (B, *S_out, *K, C): rows of contiguous channel runs.
    win = np.moveaxis(windows(xl, K, spec.stride, spec.dilation, axis=-2), N + 1, -1)
    # Kernel as (g, K*Cg, Og), matching the row order (*K, Cg) of the columns.
    wmat = _kernel_matrix(w, spec)
    out = np.empty((B, O, *S_out), dtype=spec.dtype)
    rest = math.prod(S_out[1:])
    row_bytes = rest * Kp * C * spec.dtype.itemsize
    for b0, b1, i0, i1 in _tiles(B, S_out[0], row_bytes):
        blk = win[b0:b1, i0:i1]  # (nb, ni, *S_rest, *K, C)
        nb, ni = b1 - b0, i1 - i0
        M = nb * ni * rest
        if g == 1:
            cols = blk.reshape(M, Kp * C)  # the im2col copy
            res = matmul(cols, wmat[0])  # (M, O)
            res = res.reshape(nb, ni, *S_out[1:], O)
        else:
            blk = blk.reshape(nb, ni, *S_out[1:], *K, g, Cg)
            cols = np.moveaxis(blk, -2, 0).reshape(g, M, Kp * Cg)
            res = matmul(cols, wmat)  # (g, M, Og)
            res = np.moveaxis(res, 0, -2).reshape(nb, ni, *S_out[1:], O)
        out[b0:b1, :, i0:i1] = np.moveaxis(res, -1, 1)
    return out


_JIT = {}




#: Fewest kernel taps for the compiled path's loop over taps (the weight
#: gradient's correlation: its kernel is the output gradient).
PACK_MIN_TAPS = 64

#: The loop over taps: at least this many taps per tile (the inner size of
#: its products), and tiles of up to this many bytes.
TAPS_LEAST = 256
TAPS_BUDGET = 2**21

#: Below this many multiply-adds the compiled paths run on one thread: the
#: pool costs ~0.5 ms, and tiny products hand the GIL back and forth
#: (conv 1->6 5x5 on 64 28x28 images, 7.5e6: 0.97 ms on 2 threads, 0.67 on one).
THREAD_MIN_MACS = 2**24


def packing(spec):
    """Which compiled path :func:`run` takes for ``spec``: ``'positions'``, ``'taps'`` or None.

    ``'positions'``: tiles of output positions of one batch item, each one
    product ``(O, C*taps) @ (C*taps, n)`` written into the output.
    ``'taps'``: few output positions and many taps (a weight gradient): tiles
    of taps of one input channel, each product ``(O, n) @ (n, B*positions)``
    accumulated, so the long sum over taps is the inner size of the GEMMs.
    None: the NumPy paths (no numba, integer dtypes, other libraries' arrays,
    and small correlations, which take the one gather of :func:`_gather_index`).
    """
    if not (spec.numpy and spec.dtype.kind in "fc" and _numba_installed()) or _gathers(spec):
        return None
    if math.prod(spec.out_spatial) >= PACK_MIN_POSITIONS:
        return "positions"
    if spec.taps >= PACK_MIN_TAPS:
        return "taps"
    return None


#: Fewest outputs per group for the compiled product, per path: below, most
#: of a register block (6 rows; on the loop over taps 32 or 64 columns on
#: AVX-512, 8 or 16 on AVX2, which so never runs its narrow block) is
#: padding, and BLAS or another method is faster (depthwise layers).
KERNEL_MIN_OUTPUTS = {"positions": 3, "taps": 16}


def _kernel(spec):
    """The compiled product of :mod:`._gemm_kernel` where it runs (AVX-512
    or AVX2 with FMA, float32/float64, enough outputs per group), else None: BLAS multiplies
    the tiles."""
    path = packing(spec)
    if (path is None or spec.dtype not in (np.float32, np.float64)
            or spec.out_channels // spec.groups < KERNEL_MIN_OUTPUTS[path]):
        return None
    if "kernel" not in _JIT:
        try:
            from . import _gemm_kernel as kernel
            kernel = kernel if kernel.available() else None
        except ImportError:  # numba or llvmlite unusable: BLAS
            kernel = None
        _JIT["kernel"] = kernel
    return _JIT["kernel"]


def _run_panels(kernel, xf, wmat, out, spec, n, nthreads, dims, pos_step, tap_off, bias=None):
    """The positions path with the compiled product, into the output in place:
    output lines read straight from the padded input (:func:`_reads_rows`;
    ``bias`` added there as each line is written), or tiles of ``n`` output
    positions packed into the product's panels (``bias`` added after)."""
    from ._jit import set_threads

    g = spec.groups
    B, O = spec.batch, spec.out_channels
    P = math.prod(spec.out_spatial)
    R, lanes = kernel.nr(spec.dtype), kernel.lanes(spec.dtype)
    ap = kernel.pack_a(wmat, spec.dtype)
    of = out.reshape(B, O, P)
    W = spec.out_spatial[-1]
    if _reads_rows(W, R, lanes):
        C, L = xf.shape[1:]
        xr = xf.reshape(B, C * L)
        if W % lanes:
            # The last vector of a line reads past it; past the last item's
            # last line that is past xr: room there, in a copy of that item
            # only (a roomy copy of all of xr was 3 of a 51 ms 1-D layer).
            tail = np.empty((1, C * L + R), dtype=spec.dtype)
            tail[:, :C * L] = xr[B - 1:]
            tail[:, C * L:] = 0
        else:
            tail = xr[B - 1:]
        # (added per line while it is in cache: a pass over the output after
        # was 1.4 ms of that layer)
        line_bias = (np.ascontiguousarray(bias, dtype=spec.dtype) if bias is not None
                     else np.empty(0, spec.dtype))
        offs = (np.arange(C, dtype=np.int64)[:, None] * L + tap_off[None, :]).reshape(g, -1)
        lines = _lines(B, P // W)
        nchunks = min(len(lines), nthreads)
        set_threads(nchunks)
        kernel.positions_rows_parallel(xr, tail, ap, offs, of, lines, dims, pos_step, R,
                                       line_bias, nchunks)
        return out
    n = -(-n // R) * R
    tiles = np.array([(b, p0) for b in range(B) for p0 in range(0, P, n)], np.int64)
    nchunks = min(len(tiles), nthreads)
    set_threads(nchunks)
    kernel.positions_parallel(xf, ap, of, tiles, n, dims, pos_step, tap_off, R, nchunks)
    return add_bias(out, bias)


@functools.lru_cache(maxsize=64)
def _lines(batch, per_item):
    """``(b, q)`` for every output line ``q`` of every batch item (read-only)."""
    lines = np.stack(np.divmod(np.arange(batch * per_item, dtype=np.int64), per_item), axis=1)
    lines.setflags(write=False)
    return lines


#: Taps per tile of the compiled loop over taps (the kernel's slice
#: transposed into panels per tile: 1024 x 64 float32 values, 256 kB).
KERNEL_TAPS = 1024


def _run_taps(kernel, xf, wf, out, spec, grid, run_step, plane, pos_off, nthreads):
    """The loop over taps with the compiled product, rows of the product read
    from the padded input at their offsets (no im2col)."""
    from ._jit import set_threads

    g = spec.groups
    B, C, O, T = spec.batch, spec.in_channels, spec.out_channels, spec.taps
    P = math.prod(spec.out_spatial)
    mr, R = kernel.taps_layout(spec.dtype, O // g)
    Ogp = -(-(O // g) // R) * R
    L = xf.shape[-1]
    M = B * P
    roff = np.zeros(-(-M // mr) * mr, np.int64)  # rows past M read row 0, dropped
    roff[:M] = (np.arange(B, dtype=np.int64)[:, None] * (C * L) + pos_off[None, :]).ravel()
    toff = _offsets(spec.kernel_size, spec.dilation, grid, run_step, plane)
    n = min(T, KERNEL_TAPS)
    tiles = np.array([(c, t0) for c in range(C) for t0 in range(0, T, n)], np.int64)
    nchunks = min(len(tiles), nthreads)
    accs = np.zeros((nchunks, len(roff), g * Ogp), dtype=spec.dtype)
    set_threads(nchunks)
    kernel.taps_parallel(xf, roff, toff, wf, accs, tiles, n, mr, R)
    total = accs[0]
    for part in accs[1:]:
        total += part
    res = total[:M].reshape(B, P, g, Ogp)[..., :O // g].reshape(B, P, O)
    out.reshape(B, O, P)[...] = res.transpose(0, 2, 1)
    return out


def _reads_rows(W, R, lanes):
    """Whether output lines of ``W`` positions are read from the input
    directly (panels of ``R`` positions, the last one of a line narrower),
    rather than packed into panels of columns spanning lines: where lines
    fill at least half a panel and whole vectors (of ``lanes``) but for
    at most 10%."""
    return 2 * W >= R and -(-W // lanes) * lanes <= 1.1 * W


def _compiled(spec):
    """The compiled packing kernel when :func:`packing` names a path, else None."""
    if packing(spec) is None:
        return None
    if "pack" not in _JIT:
        try:
            from ._gemm_jit import pack
        except ImportError:  # numba present but unusable: the NumPy path
            pack = None
        _JIT["pack"] = pack
    return _JIT["pack"]


def _offsets(shape, steps, grid, phases=1, plane=0):
    """Flat offset into a grid of strides ``grid`` of each index of ``shape``
    (C order), one step along dim ``i`` moving ``steps[i]`` grid cells.

    With ``phases`` > 1 the last dim is laid out as by :func:`_split_last`:
    its column ``j`` sits at ``(j % phases) * plane + j // phases``.
    Kept per arguments (read-only): a layer asks for the same every call.
    """
    return _offsets_kept(tuple(shape), tuple(steps), tuple(grid), phases, plane)


@functools.lru_cache(maxsize=256)
def _offsets_kept(shape, steps, grid, phases, plane):
    off = np.zeros((1,) * len(shape), np.int64)
    for i, (n, s, st) in enumerate(zip(shape, steps, grid)):
        q = np.arange(n, dtype=np.int64) * s
        if i == len(shape) - 1:
            q = (q % phases) * plane + q // phases
        else:
            q = q * st
        off = off + q.reshape((1,) * i + (n,) + (1,) * (len(shape) - i - 1))
    off = off.ravel()
    off.setflags(write=False)
    return off


def _split_last(xp, phases):
    """``(xs, plane)``: ``xp`` with its last dim regrouped into ``phases`` planes
    of ``plane`` columns, column ``j`` at ``(j % phases) * plane + j // phases``.

    A stride ``s`` along the last dim then reads consecutive columns of one
    plane: the compiled packing copies contiguous runs (vectorised, 2-5x
    faster than gathering every ``s``-th value).
    """
    if phases == 1:
        return xp, xp.shape[-1]
    L = xp.shape[-1]
    plane = -(-L // phases)
    if plane * phases != L:
        xp = np.pad(xp, [(0, 0)] * (xp.ndim - 1) + [(0, plane * phases - L)])
    lead = xp.shape[:-1]
    xs = np.ascontiguousarray(np.swapaxes(xp.reshape(*lead, plane, phases), -1, -2))
    return xs.reshape(*lead, phases * plane), plane


def _padded_planes(x, spec, phases):
    """``(xs, plane)``: ``x`` zero-padded by ``spec`` and split as by
    :func:`_split_last`, in one pass, or None where that does not apply
    (other padding modes, cropping, input dilation, one phase).

    Padding, then splitting, copies the input twice: 0.08 of the stem
    layer's 0.63 ms on 2 threads (3->64 k7 s2 on 224x224); here each phase
    is one strided copy into its plane of a zeroed array.
    """
    pairs = spec.pairs
    if (phases == 1 or spec.padding_mode != "zeros" or any(r != 1 for r in spec.lhs_dilation)
            or any(lo < 0 or hi < 0 for lo, hi in pairs)):
        return None
    n = len(pairs)
    S = x.shape[-n:]
    Sp = [s + lo + hi for s, (lo, hi) in zip(S, pairs)]
    plane = -(-Sp[-1] // phases)
    xs = np.zeros((*x.shape[:-n], *Sp[:-1], phases * plane), dtype=spec.dtype)
    inner = tuple(slice(lo, lo + s) for s, (lo, _) in zip(S[:-1], pairs[:-1]))
    lo, L = pairs[-1][0], S[-1]
    for ph in range(phases):
        # padded column j * phases + ph holds input column j * phases + ph - lo
        j0 = max(0, -(-(lo - ph) // phases))
        j1 = min(plane, (L - 1 + lo - ph) // phases + 1)
        if j1 > j0:
            c0 = j0 * phases + ph - lo
            xs[(Ellipsis, *inner, slice(ph * plane + j0, ph * plane + j1))] = (
                x[(Ellipsis, *(slice(None),) * (n - 1), slice(c0, None, phases))][..., :j1 - j0])
    return xs, plane


def _pack_columns(rows, spec, total, least=64, budget=None):
    """Columns per packed tile of ``rows`` rows: ``budget`` bytes (default
    :data:`PACK_BYTES`), at least ``least``, at most ``total``."""
    per_col = rows * spec.dtype.itemsize
    return max(1, min(total, max(least, (budget or PACK_BYTES) // max(per_col, 1))))


def _gemm_acc_t():
    """``acc(a, b, c)``: ``c += a @ b.T`` in place, ``b`` and ``c`` C-contiguous.

    BLAS with ``beta = 1`` (``scipy.linalg.blas``), no temporary product; in
    BLAS's column-major view ``c.T += b @ a.T``, and ``b.T``, ``c.T`` are
    Fortran-ordered already. Without SciPy, NumPy's product and an addition.
    """
    try:
        from scipy.linalg import blas
    except ImportError:
        blas = None
    from .implicit import _BLAS_GEMM_NAMES as names

    def acc(a, b, c):
        if blas is None:
            c += a @ b.T
            return
        f = getattr(blas, names[c.dtype.char])
        r = f(1.0, b.T, a.T, beta=1.0, c=c.T, overwrite_c=1, trans_a=1)
        if not np.shares_memory(r, c):  # BLAS could not work in place
            c[...] = r.T

    return acc


def _unpadded(x, spec):
    """Whether ``x`` itself is the padded input ``_run_packed`` reads (no
    padding, no input dilation, C order, the compute dtype): no copy then
    (a copy of a 1-D layer's 16 MB input was 3 of its 51 ms)."""
    return (all(lo == 0 and hi == 0 for lo, hi in spec.pairs)
            and all(r == 1 for r in spec.lhs_dilation)
            and x.dtype == spec.dtype and x.flags.c_contiguous)


def _run_packed(pack, x, w, spec, bias=None):
    """:func:`run` through the compiled packing of :mod:`._gemm_jit`, plus
    ``bias`` (None: none)."""
    from .threads import get_num_threads, map_chunks

    g = spec.groups
    B, C, O = spec.batch, spec.in_channels, spec.out_channels
    Cg, Og, T = C // g, O // g, spec.taps
    S_out = spec.out_spatial
    P = math.prod(S_out)
    path = packing(spec)
    # The step of the runs along the last dim: split into that many planes.
    run_step = (spec.stride if path == "positions" else spec.dilation)[-1]
    planes = None if _unpadded(x, spec) else _padded_planes(x, spec, run_step)
    if planes is None:
        xp = x if _unpadded(x, spec) else np.ascontiguousarray(
            pad(x, spec.pairs, spec.padding_mode, lhs_dilation=spec.lhs_dilation))
        planes = _split_last(xp, run_step)
    xp, plane = planes
    Sp = xp.shape[2:]
    xf = xp.reshape(B, C, -1)
    grid = [math.prod(Sp[i + 1:]) for i in range(spec.ndim)]
    out = np.empty((B, O, *S_out), dtype=spec.dtype)
    nthreads = get_num_threads() if spec.macs >= THREAD_MIN_MACS else 1
    if path == "positions":
        pos_step = np.array([s * st for s, st in zip(spec.stride[:-1], grid)] + [1], np.int64)
        tap_off = _offsets(spec.kernel_size, spec.dilation, grid, run_step, plane)
        # Row c * T + t of the columns is channel c at tap t: w's own (O, Cg, *K) order.
        wmat = np.ascontiguousarray(w, dtype=spec.dtype).reshape(g, Og, Cg * T)
        of = out.reshape(B, O, P)
        n = _pack_columns(C * T, spec, P)
        tiles = [(b, p0) for b in range(B) for p0 in range(0, P, n)]
        nchunks = min(len(tiles), 4 * nthreads) if nthreads > 1 else 1
        dims = np.array(S_out, np.int64)

        kernel = _kernel(spec)
        if kernel is not None:
            return _run_panels(kernel, xf, wmat, out, spec, n, nthreads, dims, pos_step,
                               tap_off, bias)

        def work(chunk):
            buf = np.empty((C * T, n), dtype=spec.dtype)
            for b, p0 in chunk:
                p1 = min(P, p0 + n)
                cols = buf[:, :p1 - p0]
                pack(xf[b], cols, p0, dims, pos_step, tap_off)
                for gi in range(g):
                    np.matmul(wmat[gi], cols[gi * Cg * T:(gi + 1) * Cg * T],
                              out=of[b, gi * Og:(gi + 1) * Og, p0:p1])

        map_chunks(work, [tiles[i::nchunks] for i in range(nchunks)])
        return add_bias(out, bias)
    # Taps: the roles of positions and taps swap. For input channel c and
    # taps t0..t1, row b * P + p of the columns holds x[b, c] at output
    # position p and tap t; (Og, n) @ columns.T adds those taps' terms to
    # every output of c's group.
    pos_off = _offsets(S_out, spec.stride, grid, run_step, plane)
    tap_step = np.array([d * st for d, st in zip(spec.dilation[:-1], grid)] + [1], np.int64)
    wf = np.ascontiguousarray(w, dtype=spec.dtype).reshape(O, Cg, T)
    kernel = _kernel(spec)
    if kernel is not None:
        return add_bias(
            _run_taps(kernel, xf, wf, out, spec, grid, run_step, plane, pos_off, nthreads), bias)
    n = _pack_columns(B * P, spec, T, TAPS_LEAST, TAPS_BUDGET)
    tiles = [(c, t0) for c in range(C) for t0 in range(0, T, n)]
    nchunks = min(len(tiles), nthreads)
    kdims = np.array(spec.kernel_size, np.int64)

    gemm_acc = _gemm_acc_t()

    def reduce(chunk):
        acc = np.zeros((O, B * P), dtype=spec.dtype)
        buf = np.empty(B * P * n, dtype=spec.dtype)
        for c, t0 in chunk:
            t1 = min(T, t0 + n)
            cols = buf[:B * P * (t1 - t0)].reshape(B * P, t1 - t0)  # C-contiguous
            pack(xf[:, c], cols, t0, kdims, tap_step, pos_off)
            gi, cl = divmod(c, Cg)
            gemm_acc(wf[gi * Og:(gi + 1) * Og, cl, t0:t1], cols, acc[gi * Og:(gi + 1) * Og])
        return acc

    parts = map_chunks(reduce, [tiles[i::nchunks] for i in range(nchunks)])
    total = parts[0]
    for part in parts[1:]:
        total += part
    out.reshape(B, O, P)[...] = np.moveaxis(total.reshape(O, B, P), 1, 0)
    return add_bias(out, bias)


def estimate(spec):
    """Estimated seconds (see :mod:`ndconv.algorithms.cost`)."""
    from .cost import RATES as r, gemm_eff

    B, O, g = spec.batch, spec.out_channels, spec.groups
    Cg = spec.in_channels // g
    P = math.prod(spec.out_spatial)
    it = spec.dtype.itemsize
    cols = B * P * spec.taps * spec.in_channels * it
    k = spec.taps * Cg
    path = packing(spec)
    if path is not None and _kernel(spec) is not None:
        return _estimate_kernel(spec, path)
    if path is not None:
        # Columns packed into cache, the padded copy, and one product per
        # tile (and group).
        # A step along the last dim costs one more copy (:func:`_split_last`).
        split = 1 if (spec.stride if path == "positions" else spec.dilation)[-1] == 1 else 2
        padded = split * B * spec.in_channels * math.prod(spec.padded_spatial) * it
        if path == "positions":
            # Products of a few hundred columns reach ~60% of the rate of one
            # large product (measured against winograd and implicit, 1 thread).
            # Fewer than 4 output rows per group make a matrix-vector product,
            # bound by reading the columns (1 -> 1 channel, 21x21 kernel on
            # 64x64: 0.45 ms, against FFT's 0.20).
            eff = 0.6 * gemm_eff(k, O // g) * min(1.0, (O // g) / 4) ** 2
            calls = g * B * (-(-P // _pack_columns(spec.in_channels * spec.taps, spec, P)))
        else:
            n = _pack_columns(B * P, spec, spec.taps, TAPS_LEAST, TAPS_BUDGET)
            eff = gemm_eff(n, O // g) * min(1.0, B * P / 128) ** 0.3
            calls = spec.in_channels * -(-spec.taps // n)
        return (
            cols / it / r["pack"]
            + 2 * padded / r["copy"]
            + 2 * spec.macs / (r["gemm"] * eff)
            + calls * r["step"]
        )
    return (
        2 * cols / r["copy"]
        + 2 * spec.macs / (r["gemm"] * gemm_eff(k, O // g))
        + 2 * B * O * P * it / r["copy"]
        + (cols // (32 * 2**20) + 1) * r["step"]
        + portable.calls(spec, per_tap=2, fixed=8)
    )


def _estimate_kernel(spec, path):
    """Estimated seconds of the compiled product's paths (:func:`_run_panels`,
    :func:`_run_taps`): the blocks' arithmetic, the padded copies, and the
    packing where the product cannot read the input directly."""
    from .cost import RATES as r

    from . import _gemm_kernel as kernel

    B, C, O, g = spec.batch, spec.in_channels, spec.out_channels, spec.groups
    Og, T = O // g, spec.taps
    P = math.prod(spec.out_spatial)
    it = spec.dtype.itemsize
    R, lanes = kernel.nr(spec.dtype), kernel.lanes(spec.dtype)
    flops = kernel.SHAPE.flops  # the host's block (the edges' waste counted below)
    split = 1 if (spec.stride if path == "positions" else spec.dilation)[-1] == 1 else 2
    padded = split * B * C * math.prod(spec.padded_spatial) * it
    if path == "positions":
        W = spec.out_spatial[-1]
        rows = _reads_rows(W, R, lanes)
        waste = -(-Og // kernel.MR) * kernel.MR / Og
        if rows:  # the last vector of a line
            waste *= -(-W // lanes) * lanes / W
        else:  # packed columns, and part of the last panel of each tile
            n = -(-_pack_columns(C * T, spec, P) // R) * R
            waste *= -(-P // n) * n / P
        k = (C // g) * T  # a block's steps against its fixed cost (~24 loads and stores)
        t = 2 * spec.macs * waste * (k + 24) / k / flops + 3 * padded / r["copy"]
        if not rows:
            t += B * P * C * T / r["pack"]
        calls = B * g * (P // W if rows else -(-P // n))
        return t + calls * 2e-7 + B * O * P * it / r["copy"]
    mr, R = kernel.taps_layout(spec.dtype, Og)
    M = B * P
    waste = -(-Og // R) * R / Og * (-(-M // mr) * mr / M)
    # The kernel (an output gradient) transposed into panels, once per channel.
    return (2 * spec.macs * waste / flops + 2 * padded / r["copy"]
            + O * T * (C // g) / r["pack"] + C * r["step"])


def reason(spec):
    cg = spec.in_channels // spec.groups
    if not spec.numpy:
        return f"{spec.taps} taps x {cg} channels per group: stacked taps, one {spec.library} matmul"
    kernel = _kernel(spec)
    if kernel is not None:
        return (f"{spec.taps} taps x {cg} channels per group: compiled {kernel.SHAPE.isa} product "
                f"({packing(spec)} path)")
    return f"{spec.taps} taps x {cg} channels per group: im2col + BLAS GEMM"


def workspace_bytes(spec):
    """Channels-last padded copy and output, plus two tiles' columns and products
    (the next tile's are gathered before the last one's are freed)."""
    it = spec.dtype.itemsize
    rest = math.prod(spec.out_spatial[1:])
    row = rest * spec.taps * spec.in_channels * it
    tile = min(row * spec.out_spatial[0] * spec.batch, max(TILE_BYTES, row))  # >= one row
    products = tile // max(spec.taps * spec.in_channels // spec.groups, 1) * spec.out_channels * 2
    return padded_and_output_bytes(spec) + 2 * (tile + products)


from .record import ARRAY_API, Algorithm, add_bias, padded_and_output_bytes  # noqa: E402

ALGORITHM = Algorithm(
    name="gemm", supports=supports, run=run, estimate=estimate, reason=reason,
    workspace_bytes=workspace_bytes, run_bias=run_bias, prepared=prepared,
    arrays=("numpy", ARRAY_API),
)

"""Compiled matrix product on packed panels (numba), for the GEMM method.

Why not BLAS: OpenBLAS may run kernels narrower than the CPU's vectors (an
environment can pin ``OPENBLAS_CORETYPE=Haswell``, AVX2, on an AVX-512 CPU),
and each BLAS call packs its operands again. Here the product runs on the
full vectors and reads its operands where they already are: on the
development machine (AMD Zen 5, OpenBLAS pinned to Haswell) 200-250 GFLOP/s
on one core against NumPy's 80-120 on the shapes of a ResNet stem, a 1-D and
a 3-D layer. On a CPU with AVX2 and FMA but no AVX-512 the block is the
smaller one of :data:`SHAPES` (16 registers of 8 float32 lanes): the product
itself then runs at OpenBLAS's speed, and the layers gain from reading the
input in place (no im2col) and from the loop over taps (AMD EPYC, 1 thread:
the stem 1.2x, the 1-D and 3-D layers 1.1x and 1.45x faster forward, their
gradients 1.2x, 1.4x and 1.5x).

The layout (as in BLIS/GotoBLAS): ``C (M, N) = A (M, K) @ B (K, N)`` with
``A`` packed as ``(ceil(M/MR), K, MR)`` (a column of ``MR`` rows per ``k``)
and ``B`` as ``(ceil(N/NR), K, NR)`` (a row of ``NR`` columns per ``k``), so
that the micro-kernel streams both while an ``MR x NR`` block of ``C`` stays
in registers: per ``k``, ``NR / W`` vector loads of ``B``, ``MR`` broadcasts
of ``A`` and ``MR * NR / W`` fused multiply-adds (``W`` lanes; on AVX-512
16 float32 or 8 float64, 24 of the 32 vector registers hold the block; on
AVX2 8 or 4, 12 of 16). The block's shape is the host's entry of
:data:`SHAPES` (:data:`SHAPE`); every panel width and layout follows it.
Three uses:

- :func:`positions_rows`: ``B``'s rows are not packed at all but read from
  the padded input, one offset per (channel, tap), for the panels of one
  output line (contiguous in the input): a convolution with no im2col.
- :func:`positions`: im2col tiles packed straight into ``B``'s panels
  (:func:`._gemm_jit.pack_panels`), where lines are short.
- :func:`taps`: a weight gradient's long sum over taps, ``A``'s rows
  gathered from the input at a row offset plus a tap offset, ``B`` the
  output gradient transposed into panels tile by tile.

The micro-kernel is written in LLVM IR (a numba ``intrinsic``): numba's own
loops over a small array keep the block in memory, which ran at 4 GFLOP/s.
Edges of ``C`` run smaller blocks (fewer rows, or fewer vectors) in place,
or, for a corner or a part of a vector, a whole block into a scratch block;
padded rows and columns only ever reach dropped results.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from ._gemm_jit import line_start, pack_panels

class Shape(NamedTuple):
    """The register block of one instruction set.

    ``isa``: its name; ``vector_bytes``: bytes of one vector register;
    ``mr``: rows of the block (broadcasts of ``A``); ``nv``: vectors per row
    (``NR = nv * lanes`` columns of ``B``); ``flops``: the product's flop/s
    on one core on whole blocks in the units of the cost estimates
    (:data:`.cost.RATES`, whose BLAS rate is 2e11).
    """

    isa: str
    vector_bytes: int
    mr: int
    nv: int
    flops: float


#: The block per instruction set. AVX-512 (32 zmm registers): 6 x 4 vectors,
#: 24 accumulators (development machine, AMD Zen 5: 200-250e9 flop/s on the
#: stem, 1-D and 3-D layers' products). AVX2 + FMA (16 ymm registers): the
#: 6 x 2 block of BLIS's Haswell/Zen kernels, 12 accumulators, 2 loads of
#: ``B`` and a broadcast of ``A`` (AMD EPYC without AVX-512: 40-60e9 on one
#: core, OpenBLAS's Haswell SGEMM alike; its ``flops`` is set so that the
#: estimates rank it as measured against the BLAS methods there: the 1-D
#: layer 64->64 k9 ran in half of ``implicit``'s time, 8.5e10 ranked it
#: behind).
SHAPES = {
    "avx512": Shape("AVX-512", 64, 6, 4, 2.1e11),
    "avx2": Shape("AVX2", 32, 6, 2, 1.5e11),
}


def isa(features):
    """The key of :data:`SHAPES` for CPU ``features`` (a mapping of LLVM
    feature names, as ``llvmlite.binding.get_host_cpu_features()``), or
    None where neither instruction set is there (BLAS is then faster)."""
    if features.get("avx512f", False):
        return "avx512"
    if features.get("avx2", False) and features.get("fma", False):
        return "avx2"
    return None


def _host_isa():
    try:
        import llvmlite.binding as llvm

        return isa(llvm.get_host_cpu_features())
    except Exception:  # noqa: BLE001 - any failure: no compiled product
        return None


#: The host's instruction set (None: neither; the kernels then keep the
#: AVX2 block, correct on any x86-64 CPU, but :func:`available` is False).
ISA = _host_isa()

#: The host's register block: every layout below follows it.
SHAPE = SHAPES[ISA or "avx2"]

#: Rows of the register block (broadcasts of ``A``).
MR = SHAPE.mr

#: Vectors per row of the register block: ``NR = NV * lanes`` columns of ``B``.
NV = SHAPE.nv

#: The product's inner size per pass over a block of ``C`` (the ``K`` chunk
#: of the panels read while the block sits in registers: 256 x 64 float32
#: columns of ``B`` are 64 kB on AVX-512, streamed from L2; 16 kB on AVX2).
KC = 256


def lanes(dtype, shape=SHAPE):
    """Lanes of one vector of ``dtype`` in ``shape``'s registers."""
    return shape.vector_bytes // np.dtype(dtype).itemsize


def nr(dtype, shape=SHAPE):
    """Columns of the register block (panel width of ``B``) for ``dtype``."""
    return shape.nv * lanes(dtype, shape)


def available():
    """Whether the host CPU has AVX-512 or AVX2 with FMA (else BLAS is the
    faster product)."""
    return ISA is not None


def _make_block(mr, nv, a_mode, b_mode, a_rows=None, b_vectors=None):
    """The micro-kernel for an ``mr x nv`` vectors register block, an intrinsic.

    ``a_mode``: ``'packed'`` (``A`` a contiguous ``(k, mr)`` panel) or
    ``'gather'`` (element ``(i, t)`` at ``a + aoffs[i] + toffs[t]``: rows of
    ``A`` read straight from an input at ``mr`` row offsets and ``k`` tap
    offsets). ``b_mode``: ``'packed'`` (a contiguous ``(k, NR)`` panel) or
    ``'rows'`` (row ``t`` is the ``NR`` values at ``b + boffs[t]``).
    ``a_rows``, ``b_vectors``: the packed panels' widths (default ``mr``,
    ``nv``; wider where an edge block reads the whole blocks' panels).
    """
    a_rows = a_rows or mr
    b_vectors = b_vectors or nv

    @intrinsic
    def block(typingctx, like, a, aoffs, toffs, b, boffs, c, k, ldc, beta):
        """``C[:mr, :NR] (+)= A.T @ B`` for ``k`` steps, at raw addresses (element
        offsets in the tables); ``like``: an array of the dtype (typing only);
        ``c``: the block's first element, rows ``ldc`` elements apart;
        ``beta`` nonzero: add to ``C``'s values."""
        dt = like.dtype
        if dt == types.float32:
            ft, dtype = ir.FloatType(), np.dtype(np.float32)
        elif dt == types.float64:
            ft, dtype = ir.DoubleType(), np.dtype(np.float64)
        else:
            return None
        size, width = dtype.itemsize, lanes(dtype)
        u = types.uintp
        sig = types.void(like, u, u, u, u, u, u, types.intp, types.intp, types.intp)

        def codegen(context, builder, signature, args):
            _, pa, pao, pto, pb, pbo, pc, kk, ldc_, beta_ = args
            vt = ir.VectorType(ft, width)
            fp, vp = ft.as_pointer(), vt.as_pointer()
            A, B, C = (builder.inttoptr(p, fp) for p in (pa, pb, pc))
            intp = kk.type
            ip = intp.as_pointer()
            aoffs_, toffs_, boffs_ = (builder.inttoptr(p, ip) for p in (pao, pto, pbo))
            fma = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vt, [vt, vt, vt]),
                f"llvm.fma.v{width}f{8 * size}")

            def const(v):
                return ir.Constant(intp, v)

            def c_ptr(i, v):
                off = builder.add(builder.mul(const(i), ldc_), const(v * width))
                return builder.bitcast(builder.gep(C, [off]), vp)

            # The block's rows of C fetched for writing while the k loop runs:
            # a C bigger than L2 (the stem's 64 x 12544) otherwise stalls on
            # the read-for-ownership of each row's lines at the stores (the
            # product 30-38 -> 52-61 GFLOP/s there, 1 thread, AVX2 EPYC).
            i8p = ir.IntType(8).as_pointer()
            i32 = ir.IntType(32)
            prefetch = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                "llvm.prefetch.p0")
            for i in range(mr):  # the row's first and last element (1 or 2 lines)
                for p in (builder.bitcast(c_ptr(i, 0), i8p),
                          builder.bitcast(builder.gep(C, [builder.add(
                              builder.mul(const(i), ldc_), const(nv * width - 1))]), i8p)):
                    builder.call(prefetch, [p, ir.Constant(i32, 1), ir.Constant(i32, 3),
                                            ir.Constant(i32, 1)])
            # Accumulators as allocas: LLVM's mem2reg turns them into registers.
            accs = [[cgutils.alloca_once_value(builder, ir.Constant(vt, [0.0] * width))
                     for _ in range(nv)] for _ in range(mr)]
            if a_mode == "gather":
                arow = [builder.gep(A, [builder.load(builder.gep(aoffs_, [const(i)]))])
                        for i in range(mr)]
            splat = ir.Constant(ir.VectorType(ir.IntType(32), width), [0] * width)
            with cgutils.for_range(builder, kk) as loop:
                t = loop.index
                if b_mode == "rows":
                    b_off = builder.load(builder.gep(boffs_, [t]))
                else:
                    b_off = builder.mul(t, const(b_vectors * width))
                bv = [builder.load(builder.bitcast(
                    builder.gep(B, [builder.add(b_off, const(v * width))]), vp), align=size)
                    for v in range(nv)]
                if a_mode == "gather":
                    toff = builder.load(builder.gep(toffs_, [t]))
                else:
                    a_off = builder.mul(t, const(a_rows))
                for i in range(mr):
                    if a_mode == "gather":
                        s = builder.load(builder.gep(arow[i], [toff]))
                    else:
                        s = builder.load(builder.gep(A, [builder.add(a_off, const(i))]))
                    sv = builder.insert_element(ir.Constant(vt, ir.Undefined), s,
                                                ir.Constant(ir.IntType(32), 0))
                    sv = builder.shuffle_vector(sv, ir.Constant(vt, ir.Undefined), splat)
                    for v in range(nv):
                        acc = builder.load(accs[i][v])
                        builder.store(builder.call(fma, [sv, bv[v], acc]), accs[i][v])
            # The block's sum from zero, then added to C: a long sum over many
            # chunks (a weight gradient's 10^5 taps) adds rounded partial sums
            # of KC terms, not every term to the running total (1e-5 against
            # 1e-6 of max|y| on the 3-D layer's weight gradient).
            with builder.if_else(builder.icmp_signed("!=", beta_, const(0))) as (add, put):
                with add:
                    for i in range(mr):
                        for v in range(nv):
                            p = c_ptr(i, v)
                            total = builder.fadd(builder.load(accs[i][v]),
                                                 builder.load(p, align=size))
                            builder.store(total, p, align=size)
                with put:
                    for i in range(mr):
                        for v in range(nv):
                            builder.store(builder.load(accs[i][v]), c_ptr(i, v), align=size)
            return context.get_dummy_value()

        return sig, codegen

    return block


def _edges(b_mode):
    """The whole block and its edge blocks (fewer rows, or fewer vectors) for
    ``B`` as ``b_mode``, and an ``njit`` function running the right one:
    ``run(like, mi, nvj, pa, pb, pbo, pc, kc, ldc, beta)`` for ``mi`` rows
    (1..MR) by ``nvj`` vectors (1..NV), of which one is MR or NV."""
    shapes = [(MR, v) for v in range(NV, 0, -1)] + [(r, NV) for r in range(MR - 1, 0, -1)]
    run = None
    # A chain of branches, the last shape first, each naming its block.
    for mi, nvj in reversed(shapes):
        run = _branch(_make_block(mi, nvj, "packed", b_mode, MR, NV), mi, nvj, run)
    return run


def _branch(block, mi0, nv0, rest):
    """``block`` where ``(mi, nvj)`` is ``(mi0, nv0)`` (or ``rest`` is None), else ``rest``."""
    if rest is None:
        @njit(nogil=True, inline="always")
        def run(like, mi, nvj, pa, pb, pbo, pc, kc, ldc, beta):
            block(like, pa, 0, 0, pb, pbo, pc, kc, ldc, beta)
    else:
        @njit(nogil=True, inline="always")
        def run(like, mi, nvj, pa, pb, pbo, pc, kc, ldc, beta):
            if mi == mi0 and nvj == nv0:
                block(like, pa, 0, 0, pb, pbo, pc, kc, ldc, beta)
            else:
                rest(like, mi, nvj, pa, pb, pbo, pc, kc, ldc, beta)
    return run


_packed_block = _edges("packed")
_rows_block = _edges("rows")


@njit(nogil=True, inline="always")
def _blocks(c, i0, j0, mi, nj, lanes, pa, pb, pbo, kc, beta, scratch, rows):
    """The block of ``c`` at ``(i0, j0)``, ``mi`` rows by ``nj`` columns: an
    edge of whole vectors in one dim runs its own smaller block in place; a
    corner, or a part of a vector, runs through ``scratch`` (MR rows)."""
    it = c.itemsize
    ldc = c.strides[0] // it
    nvj = -(-nj // lanes)
    if nj == nvj * lanes and (mi == MR or nvj == NV):
        pc = c.ctypes.data + (i0 * ldc + j0) * it
        if rows:
            _rows_block(c, mi, nvj, pa, pb, pbo, pc, kc, ldc, beta)
        else:
            _packed_block(c, mi, nvj, pa, pb, pbo, pc, kc, ldc, beta)
        return
    if beta:
        for i in range(mi):
            for j in range(nj):
                scratch[i, j] = c[i0 + i, j0 + j]
    R = scratch.shape[1]
    if rows:
        _rows_block(c, MR, nvj, pa, pb, pbo, scratch.ctypes.data, kc, R, beta)
    else:
        _packed_block(c, MR, nvj, pa, pb, pbo, scratch.ctypes.data, kc, R, beta)
    for i in range(mi):
        for j in range(nj):
            c[i0 + i, j0 + j] = scratch[i, j]


@njit(nogil=True, cache=True)
def product(ap, bp, c, beta):
    """``c (+)= A @ B`` from packed panels.

    ``ap``: ``(ceil(M/MR), K, MR)`` with ``M = c.shape[0]``; ``bp``:
    ``(panels, K, NR)``, column ``j`` of ``B`` at ``bp[j // NR, :, j % NR]``,
    at least ``c.shape[1]`` columns; ``c``: 2-D, unit stride along its rows.
    ``beta``: add to ``c`` instead of overwriting it.
    """
    M, N = c.shape
    K = ap.shape[1]
    R = bp.shape[2]
    it = c.itemsize
    lanes = R // NV
    scratch = np.empty((MR, R), dtype=c.dtype)
    base_a, base_b = ap.ctypes.data, bp.ctypes.data
    for k0 in range(0, K, KC):
        kc = min(KC, K - k0)
        acc = 1 if (beta or k0 > 0) else 0
        for j0 in range(0, N, R):
            nj = min(R, N - j0)
            pb = base_b + ((j0 // R) * K + k0) * R * it
            for i0 in range(0, M, MR):
                mi = min(MR, M - i0)
                pa = base_a + ((i0 // MR) * K + k0) * MR * it
                _blocks(c, i0, j0, mi, nj, lanes, pa, pb, 0, kc, acc, scratch, False)


def pack_a(a, dtype):
    """``a`` (G, M, K) packed as ``(G, ceil(M/MR), K, MR)``, zero rows past ``M``."""
    G, M, K = a.shape
    blocks = -(-M // MR)
    out = np.zeros((G, blocks * MR, K), dtype=dtype)
    out[:, :M] = a
    return np.ascontiguousarray(out.reshape(G, blocks, MR, K).transpose(0, 1, 3, 2))


@njit(nogil=True, cache=True)
def positions(xf, ap, bp, of, tiles, n, out_shape, pos_step, tap_off):
    """The tiles ``(b, p0)`` of output positions: each packed into ``bp`` and
    multiplied into ``of[b, :, p0:p0 + n]``, group by group (the loop of
    ``gemm._run_panels``, compiled: tiles of a few hundred columns would
    cost more in Python calls than in arithmetic)."""
    G = ap.shape[0]
    Og = of.shape[1] // G
    P = of.shape[2]
    for i in range(tiles.shape[0]):
        b = tiles[i, 0]
        p0 = tiles[i, 1]
        p1 = min(P, p0 + n)
        pack_panels(xf[b], bp, p0, p1 - p0, out_shape, pos_step, tap_off)
        for gi in range(G):
            product(ap[gi], bp[gi], of[b, gi * Og:(gi + 1) * Og, p0:p1], 0)


@njit(nogil=True, cache=True)
def positions_rows(xf, xtail, ap, offs, of, lines, out_shape, pos_step, R, bias):
    """The product read straight from the padded input, no im2col: for
    output lines ``(b, q)`` (``q``: the index of a line along the last output
    dim), each panel of ``R`` positions of the line is one block of ``B``
    whose row ``c * T + t`` starts at ``xf[b]``'s flat offset ``base + offs``
    (the line's runs are contiguous in the input: a stride along the last
    dim is split into planes first). ``xf``: ``(B, C * L)``; where a line
    does not end on a whole vector its last vector is read whole (the values
    past the line land in dropped columns), which past the last batch item
    would read beyond ``xf``: that item's lines read ``xtail`` instead, a copy
    of ``xf[B - 1]`` with room for ``R`` values (or ``xf[B - 1:]`` itself
    where no room is needed). ``offs``: ``(G, Cg * T)`` int64; ``of``:
    ``(B, O, P)``; ``bias``: ``(O,)`` added to each line's block while it is
    in cache, or empty (none)."""
    G = ap.shape[0]
    K = ap.shape[2]
    Og = of.shape[1] // G
    N = out_shape.shape[0]
    W = out_shape[N - 1]
    it = of.itemsize
    last = of.shape[0] - 1
    P = of.shape[2]
    flat = of.reshape(-1)  # (rows of the bias pass as contiguous 1-D slices)
    scratch = np.empty((MR, R), dtype=of.dtype)
    lanes = R // NV
    for li in range(lines.shape[0]):
        b = lines[li, 0]
        q = lines[li, 1]
        base = line_start(q, out_shape, pos_step)
        if b == last:
            xb = xtail.ctypes.data + base * it
        else:
            xb = xf.ctypes.data + (b * xf.shape[1] + base) * it
        for gi in range(G):
            c = of[b, gi * Og:(gi + 1) * Og, q * W:(q + 1) * W]
            pa0 = ap.ctypes.data + gi * ap.shape[1] * K * MR * it
            po0 = offs.ctypes.data + gi * K * 8
            for j0 in range(0, W, R):
                nj = min(R, W - j0)
                for k0 in range(0, K, KC):
                    kc = min(KC, K - k0)
                    acc = 1 if k0 > 0 else 0
                    for i0 in range(0, Og, MR):
                        mi = min(MR, Og - i0)
                        pa = pa0 + ((i0 // MR) * K + k0) * MR * it
                        _blocks(c, i0, j0, mi, nj, lanes, pa, xb + j0 * it, po0 + k0 * 8, kc,
                                acc, scratch, True)
            if bias.shape[0]:  # the line's block is still in cache
                for o in range(Og):
                    bo = bias[gi * Og + o]
                    row = flat[((b * of.shape[1] + gi * Og + o) * P + q * W):][:W]
                    for j in range(np.uint64(W)):  # (unsigned: vectorised)
                        row[j] += bo


_gather_wide = _make_block(MR, NV, "gather", "packed")
_gather_narrow = _make_block(8, NV // 2, "gather", "packed")


def taps_layout(dtype, og, shape=SHAPE):
    """``(mr, R)`` of the loop over taps for ``og`` outputs per group: a
    register block of ``mr`` rows by ``nr`` columns of ``shape``, or where
    ``og`` fills only half of them, 8 rows by half the columns (more rows
    run out of general registers for their row pointers: 12 rows ran at
    half the speed)."""
    r = nr(dtype, shape)
    if og <= r // 2:
        return 8, r // 2
    return shape.mr, r


@njit(nogil=True, cache=True)
def taps(xf, roff, toff, wf, acc, tiles, n, mr, R):
    """The loop over taps of ``gemm`` (weight gradients), no im2col: for
    tiles ``(c, t0)`` of input channel ``c`` and taps ``t0 .. t0 + n``,
    ``acc[m, gi * Ogp + o] += sum_t x[row m, c, tap t] * wf[gi * Og + o, cl, t]``.

    ``xf``: ``(Bs, Cs, L)`` padded input, flattened; ``roff``: element
    offset of each row ``m`` of ``acc`` (a batch item and an output
    position) into ``xf[:, 0]``, a multiple of ``mr`` long; ``toff``: the
    offset of each tap; ``wf``: ``(O, Cg, T)`` (the kernel: an output
    gradient); ``acc``: ``(len(roff), G * Ogp)``, ``Ogp`` the outputs per
    group padded to whole ``R``; ``mr, R``: from :func:`taps_layout`.
    The kernel's slice is transposed into panels tile by tile (in cache).
    """
    O, Cg, T = wf.shape
    Cs = xf.shape[1]
    L = xf.shape[2]
    G = Cs // Cg
    Og = O // G
    panels = -(-Og // R)
    M = roff.shape[0]
    it = acc.itemsize
    ldc = acc.strides[0] // it
    bp = np.zeros((panels, n, R), dtype=acc.dtype)
    for ti in range(tiles.shape[0]):
        c = tiles[ti, 0]
        t0 = tiles[ti, 1]
        t1 = min(T, t0 + n)
        gi = c // Cg
        cl = c - gi * Cg
        for o in range(Og):
            jb = o // R
            j = o - jb * R
            row = wf[gi * Og + o, cl]
            for t in range(t1 - t0):
                bp[jb, t, j] = row[t0 + t]
        abase = xf.ctypes.data + c * L * it
        for k0 in range(t0, t1, KC):
            kc = min(KC, t1 - k0)
            po = toff.ctypes.data + k0 * 8
            for jb in range(panels):
                pb = bp.ctypes.data + (jb * n + (k0 - t0)) * R * it
                col = (gi * panels + jb) * R
                for i0 in range(0, M, mr):
                    pc = acc.ctypes.data + (i0 * ldc + col) * it
                    pr = roff.ctypes.data + i0 * 8
                    if R == NV * (SHAPE.vector_bytes // it):
                        _gather_wide(acc, abase, pr, po, pb, 0, pc, kc, ldc, 1)
                    else:
                        _gather_narrow(acc, abase, pr, po, pb, 0, pc, kc, ldc, 1)


# Parallel drivers: numba's thread pool (started once, ~10 us a launch)
# rather than a Python pool per call (~100 us: a whole stem layer takes
# ~0.6 ms on 2 threads). Chunk ``ci`` takes every ``nchunks``-th line/tile.


@njit(nogil=True, cache=True, parallel=True)
def positions_rows_parallel(xf, xtail, ap, offs, of, lines, out_shape, pos_step, R, bias,
                            nchunks):
    """:func:`positions_rows` on ``nchunks`` threads."""
    for ci in prange(nchunks):
        positions_rows(xf, xtail, ap, offs, of, lines[ci::nchunks], out_shape, pos_step, R,
                       bias)


@njit(nogil=True, cache=True, parallel=True)
def positions_parallel(xf, ap, of, tiles, n, out_shape, pos_step, tap_off, R, nchunks):
    """:func:`positions` on ``nchunks`` threads, a panel buffer each."""
    G = ap.shape[0]
    rows = ap.shape[2]
    for ci in prange(nchunks):
        bp = np.empty((G, n // R, rows, R), dtype=of.dtype)
        positions(xf, ap, bp, of, tiles[ci::nchunks], n, out_shape, pos_step, tap_off)


@njit(nogil=True, cache=True, parallel=True)
def taps_parallel(xf, roff, toff, wf, accs, tiles, n, mr, R):
    """:func:`taps` on ``len(accs)`` threads, an accumulator each (``accs``
    zeroed; their sum is the result)."""
    nchunks = accs.shape[0]
    for ci in prange(nchunks):
        taps(xf, roff, toff, wf, accs[ci], tiles[ci::nchunks], n, mr, R)

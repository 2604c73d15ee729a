"""Compiled matrix product on packed panels (numba), for the GEMM method.

Why not BLAS: OpenBLAS may run kernels narrower than the CPU's vectors (an
environment can pin ``OPENBLAS_CORETYPE=Haswell``, AVX2, on an AVX-512 CPU),
and each BLAS call packs its operands again. Here the im2col tiles of
:mod:`._gemm_jit` are packed once, straight into the layout this product
reads, and the product runs on the full 512-bit vectors: on the development
machine (AMD Zen 5, OpenBLAS pinned to Haswell) 160-230 GFLOP/s on one core
against NumPy's 80-110 on the shapes of a ResNet stem, a 1-D and a 3-D layer.

The layout (as in BLIS/GotoBLAS): ``C (M, N) = A (M, K) @ B (K, N)`` with
``A`` packed as ``(ceil(M/MR), K, MR)`` (a column of ``MR`` rows per ``k``)
and ``B`` as ``(ceil(N/NR), K, NR)`` (a row of ``NR`` columns per ``k``), so
that the micro-kernel streams both contiguously while an ``MR x NR`` block
of ``C`` stays in registers: per ``k``, ``NR / W`` vector loads of ``B``,
``MR`` broadcasts of ``A`` and ``MR * NR / W`` fused multiply-adds (``W``
lanes: 16 float32 or 8 float64 on AVX-512; 24 of the 32 vector registers
hold the block).

The micro-kernel is written in LLVM IR (a numba ``intrinsic``): numba's own
loops over a small array keep the block in memory, which ran at 4 GFLOP/s.
Blocks on the edges of ``C`` go through a scratch block, so the panels may
be padded (with zeros, or anything finite) to whole ``MR`` and ``NR``.
"""

from __future__ import annotations

import functools

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

#: Rows of the register block (broadcasts of ``A``).
MR = 6

#: Vectors per row of the register block: ``NR = NV * W`` columns of ``B``.
NV = 4

#: Lanes of a 512-bit vector per dtype.
LANES = {np.dtype(np.float32): 16, np.dtype(np.float64): 8}

#: The product's inner size per pass over a block of ``C`` (the ``K`` chunk
#: of the panels read while the block sits in registers: 256 x 64 float32
#: columns of ``B`` are 64 kB, streamed from L2).
KC = 256


def nr(dtype):
    """Columns of the register block (panel width of ``B``) for ``dtype``."""
    return NV * LANES[np.dtype(dtype)]


@functools.cache
def available():
    """Whether the host CPU has AVX-512 (else BLAS is the faster product)."""
    try:
        import llvmlite.binding as llvm

        return bool(llvm.get_host_cpu_features().get("avx512f", False))
    except Exception:  # noqa: BLE001 - any failure: no compiled product
        return False


@intrinsic
def _block(typingctx, like, a, b, c, k, ldc, beta):
    """``C[:MR, :NR] (+)= A_panel.T @ B_panel`` for ``k`` steps, at raw addresses.

    ``like``: an array of the dtype (for typing only); ``a``: ``(k, MR)``,
    ``b``: ``(k, NR)`` contiguous panels; ``c``: the block's first element,
    rows ``ldc`` elements apart; ``beta`` nonzero: add to ``C``'s values.
    """
    dt = like.dtype
    if dt == types.float32:
        ft, width, size = ir.FloatType(), 16, 4
    elif dt == types.float64:
        ft, width, size = ir.DoubleType(), 8, 8
    else:
        return None
    sig = types.void(like, types.uintp, types.uintp, types.uintp, types.intp, types.intp,
                     types.intp)

    def codegen(context, builder, signature, args):
        _, pa, pb, pc, kk, ldc_, beta_ = args
        vt = ir.VectorType(ft, width)
        fp, vp = ft.as_pointer(), vt.as_pointer()
        A, B, C = (builder.inttoptr(p, fp) for p in (pa, pb, pc))
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vt, [vt, vt, vt]),
            f"llvm.fma.v{width}f{8 * size}")
        intp = kk.type

        def const(v):
            return ir.Constant(intp, v)

        def c_ptr(i, v):
            off = builder.add(builder.mul(const(i), ldc_), const(v * width))
            return builder.bitcast(builder.gep(C, [off]), vp)

        # Accumulators as allocas: LLVM's mem2reg turns them into registers.
        accs = [[cgutils.alloca_once_value(builder, ir.Constant(vt, [0.0] * width))
                 for _ in range(NV)] for _ in range(MR)]
        with builder.if_then(builder.icmp_signed("!=", beta_, const(0))):
            for i in range(MR):
                for v in range(NV):
                    builder.store(builder.load(c_ptr(i, v), align=size), accs[i][v])
        splat = ir.Constant(ir.VectorType(ir.IntType(32), width), [0] * width)
        with cgutils.for_range(builder, kk) as loop:
            t = loop.index
            b_off = builder.mul(t, const(NV * width))
            bv = [builder.load(builder.bitcast(
                builder.gep(B, [builder.add(b_off, const(v * width))]), vp), align=size)
                for v in range(NV)]
            a_off = builder.mul(t, const(MR))
            for i in range(MR):
                s = builder.load(builder.gep(A, [builder.add(a_off, const(i))]))
                sv = builder.insert_element(ir.Constant(vt, ir.Undefined), s,
                                            ir.Constant(ir.IntType(32), 0))
                sv = builder.shuffle_vector(sv, ir.Constant(vt, ir.Undefined), splat)
                for v in range(NV):
                    acc = builder.load(accs[i][v])
                    builder.store(builder.call(fma, [sv, bv[v], acc]), accs[i][v])
        for i in range(MR):
            for v in range(NV):
                builder.store(builder.load(accs[i][v]), c_ptr(i, v), align=size)
        return context.get_dummy_value()

    return sig, codegen


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
    ldc = c.strides[0] // it
    scratch = np.empty((MR, R), dtype=c.dtype)
    sa = scratch.ctypes.data
    base_a, base_b, base_c = ap.ctypes.data, bp.ctypes.data, c.ctypes.data
    for k0 in range(0, K, KC):
        kc = min(KC, K - k0)
        acc = 1 if (beta or k0 > 0) else 0
        for j0 in range(0, N, R):
            nj = min(R, N - j0)
            pb = base_b + ((j0 // R) * K + k0) * R * it
            for i0 in range(0, M, MR):
                mi = min(MR, M - i0)
                pa = base_a + ((i0 // MR) * K + k0) * MR * it
                if mi == MR and nj == R:
                    _block(c, pa, pb, base_c + (i0 * ldc + j0) * it, kc, ldc, acc)
                    continue
                # An edge block: through the scratch block.
                if acc:
                    for i in range(mi):
                        for j in range(nj):
                            scratch[i, j] = c[i0 + i, j0 + j]
                _block(c, pa, pb, sa, kc, R, acc)
                for i in range(mi):
                    for j in range(nj):
                        c[i0 + i, j0 + j] = scratch[i, j]


def pack_a(a, dtype):
    """``a`` (M, K) packed as ``(ceil(M/MR), K, MR)``, zero rows past ``M``."""
    M, K = a.shape
    blocks = -(-M // MR)
    out = np.zeros((blocks * MR, K), dtype=dtype)
    out[:M] = a
    return np.ascontiguousarray(out.reshape(blocks, MR, K).transpose(0, 2, 1))

"""The compiled product of the gemm method (``core/algorithms/_gemm_kernel.py``).

The micro-kernel multiplies packed panels on 512-bit vectors; the gemm
method uses it three ways: output lines read straight from the padded input
(``positions_rows``), im2col tiles packed into its panels (``positions``),
and the loop over taps of a weight gradient, rows gathered from the input
(``taps``, a wide and a narrow register block). Each is checked against
float64 references (NumPy's product, PyTorch) on odd sizes: edges of the
register block in both dims, inner sizes past one chunk, strides, dilations,
groups, padding modes, batch 1, 1-D to 3-D, float32 and float64, forward and
both gradients; and the BLAS path it replaces must give the same results.
"""

from __future__ import annotations

import numpy as np
import pytest

from test_gemm_packed import check_against_torch

import ndconv
from ndconv.algorithms import CorrSpec, gemm

pytest.importorskip("numba")
kernel = pytest.importorskip("ndconv.core.algorithms._gemm_kernel")
torch = pytest.importorskip("torch")

if not kernel.available():  # pragma: no cover - a CPU without AVX-512 or AVX2 + FMA
    pytest.skip("the compiled product needs AVX-512 or AVX2 with FMA", allow_module_level=True)


@pytest.mark.parametrize("features, want", [
    ({"avx512f": True, "avx2": True, "fma": True}, "avx512"),
    ({"avx512f": False, "avx2": True, "fma": True}, "avx2"),
    ({"avx2": True, "fma": False}, None),  # no FMA: BLAS
    ({"avx": True, "sse4.2": True}, None),
    ({}, None),
])
def test_instruction_set_from_features(features, want):
    assert kernel.isa(features) == want


@pytest.mark.parametrize("isa, vector_bits, regs", [("avx512", 512, 32), ("avx2", 256, 16)])
def test_block_shapes_fit_the_registers(isa, vector_bits, regs):
    """Each block's accumulators, its loads of ``B`` and a broadcast fit the
    ISA's vector registers (16 ymm, 32 zmm); the panel widths follow the
    vector width per dtype, and so does the loop over taps' layout."""
    shape = kernel.SHAPES[isa]
    assert shape.vector_bytes * 8 == vector_bits
    assert shape.mr * shape.nv + shape.nv + 1 <= regs
    for dtype, size in ((np.float32, 4), (np.float64, 8)):
        lanes = vector_bits // (8 * size)
        assert kernel.lanes(dtype, shape) == lanes
        R = kernel.nr(dtype, shape)
        assert R == shape.nv * lanes
        # Few outputs: the narrow block of 8 rows (8 row pointers), half the columns.
        assert kernel.taps_layout(dtype, R // 2, shape) == (8, R // 2)
        assert kernel.taps_layout(dtype, R // 2 + 1, shape) == (shape.mr, R)
    # The host runs its own ISA's block.
    assert kernel.SHAPE == kernel.SHAPES[kernel.ISA]


def _rel_err(got, want):
    return float(np.abs(got - want).max() / np.abs(want).max())


def _pack_b(b, R):
    """``b`` (K, N) as the product's panels ``(ceil(N/R), K, R)``, zero-padded."""
    K, N = b.shape
    p = -(-N // R)
    out = np.zeros((K, p * R), b.dtype)
    out[:, :N] = b
    return np.ascontiguousarray(out.reshape(K, p, R).transpose(1, 0, 2))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("M, K, N", [
    (6, 1, 64), (1, 7, 3), (5, 300, 65), (13, 257, 130), (64, 147, 200), (7, 600, 31),
])
def test_product_against_float64(dtype, M, K, N):
    """Whole and edge blocks (rows past ``MR``, columns past ``NR``), inner
    sizes past one chunk (``KC``), into a strided output, overwrite and add."""
    rng = np.random.default_rng(M * K + N)
    a = rng.standard_normal((M, K)).astype(dtype)
    b = rng.standard_normal((K, N)).astype(dtype)
    ap = kernel.pack_a(a[None], dtype)[0]
    bp = _pack_b(b, kernel.nr(dtype))
    big = rng.standard_normal((M, N + 9)).astype(dtype)
    c = big[:, 3:3 + N]  # rows N + 9 apart
    want = a.astype(np.float64) @ b.astype(np.float64)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    start = c.copy()
    kernel.product(ap, bp, c, 1)
    assert _rel_err(c, start + want) < tol
    kernel.product(ap, bp, c, 0)
    assert _rel_err(c, want) < tol
    # The values around the output were left alone.
    np.testing.assert_array_equal(big[:, :3], big[:, :3].copy())
    assert np.all(np.isfinite(big[:, 3 + N:]))


def _spec(xs, ws, stride=1, dilation=1, pairs=None, groups=1, mode="zeros",
          dtype=np.float32):
    n = len(ws) - 2
    return CorrSpec(
        batch=xs[0], in_channels=xs[1], out_channels=ws[0], groups=groups,
        in_spatial=tuple(xs[2:]), kernel_size=tuple(ws[2:]), stride=(stride,) * n,
        dilation=(dilation,) * n, pairs=pairs or ((0, 0),) * n, lhs_dilation=(1,) * n,
        padding_mode=mode, dtype=np.dtype(dtype),
    )


@pytest.fixture(params=["rows", "packed", "taps"])
def lines(request, monkeypatch):
    """Every compiled correlation through the kernel: output lines read
    from the input (``rows``), im2col tiles packed into panels, or (forward
    and gradients alike) the loop over taps."""
    monkeypatch.setattr(gemm, "GATHER_ENTRIES", 0)
    monkeypatch.setattr(gemm, "PACK_MIN_POSITIONS", 10**12 if request.param == "taps" else 1)
    monkeypatch.setattr(gemm, "PACK_MIN_TAPS", 1)
    monkeypatch.setattr(gemm, "KERNEL_MIN_OUTPUTS", {"positions": 1, "taps": 1})
    rows = request.param == "rows"
    monkeypatch.setattr(gemm, "_reads_rows", lambda W, R, lanes: rows)
    return request.param


CASES = [  # x shape, w shape, stride, padding, dilation, groups, padding_mode
    ((1, 3, 61, 57), (16, 3, 7, 7), 2, 3, 1, 1, "zeros"),
    ((2, 4, 7, 9, 70), (6, 4, 3, 3, 3), 1, 1, 1, 1, "zeros"),
    ((3, 8, 301), (8, 4, 9), 1, 4, 2, 2, "reflect"),
    ((2, 6, 23, 71), (9, 2, 3, 5), (1, 2), (1, 2), 1, 3, "circular"),
    ((1, 4, 33, 135), (20, 4, 5, 5), 3, 2, 2, 1, "replicate"),
    ((2, 5, 40), (70, 5, 4), 1, 0, 1, 1, "zeros"),
    ((1, 2, 9, 10, 11), (40, 2, 2, 3, 3), (1, 2, 1), 1, 1, 1, "zeros"),
    ((2, 32, 70), (16, 32, 9), 1, 4, 1, 1, "zeros"),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xs, ws, s, p, d, g, mode", CASES)
def test_conv_and_gradients_against_torch(lines, dtype, xs, ws, s, p, d, g, mode):
    """Forward, input and weight gradients through the kernel (the weight
    gradient's loop over taps too), non-contiguous input, against float64
    PyTorch."""
    check_against_torch(xs, ws, s, p, d, g, mode, dtype, seed=5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xs, ws, s, p, g", [
    ((3, 8, 301), (16, 8, 9), 1, 0, 1),  # no padding: x read in place, lines end mid-vector
    ((2, 4, 20, 37), (6, 2, 3, 3), 1, 0, 2),  # groups, the last item's lines in a roomy copy
    ((1, 3, 40, 81), (16, 3, 7, 7), 2, 0, 1),  # a stride along the last dim (split copy)
    ((2, 5, 17, 33), (7, 5, 3, 3), 1, 1, 1),  # padded
])
def test_bias_and_unpadded_input_against_torch(lines, dtype, xs, ws, s, p, g):
    """A bias (added per line on the lines path, after the others) and a
    C-contiguous input needing no padding (read in place, never written),
    against float64 PyTorch with the same bias; the first call and the
    second (which takes the prepared decision, the bias in ``run_bias``)."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = (10 * rng.standard_normal(ws[0])).astype(dtype)
    before = x.copy()
    ys = [ndconv.conv(x, w, b, s, p, 1, g, method="gemm") for _ in range(2)]
    conv = {1: torch.nn.functional.conv1d, 2: torch.nn.functional.conv2d}[len(ws) - 2]
    want = conv(*(torch.from_numpy(a.astype(np.float64)) for a in (x, w, b)), stride=s,
                padding=p, groups=g).numpy()
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for y in ys:
        assert y.dtype == dtype and y.shape == want.shape
        assert np.abs(y - want).max() < tol * np.abs(want).max()
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("part", [5 / 16, 5 / 8])
def test_taps_wide_and_narrow_blocks(part, monkeypatch):
    """The weight gradient's loop over taps: ``5/16`` of a panel of outputs
    (20 on AVX-512, 5 on AVX2) fill at most half of it (the 8-row block),
    ``5/8`` more (the 6-row one); a batch of 3 with 5 kernel positions
    leaves an edge of rows."""
    R = kernel.nr(np.float32)
    og = int(R * part)
    monkeypatch.setitem(gemm.KERNEL_MIN_OUTPUTS, "taps", 1)  # AVX2's narrow outputs
    rng = np.random.default_rng(og)
    spec = _spec((3, 2, 40, 45), (og, 2, 36, 41))
    assert gemm.packing(spec) == "taps" and gemm._kernel(spec) is kernel
    assert kernel.taps_layout(spec.dtype, og)[0] == (8 if og <= R // 2 else kernel.MR)
    x = rng.standard_normal((3, 2, 40, 45)).astype(np.float32)
    w = rng.standard_normal((og, 2, 36, 41)).astype(np.float32)
    got = ndconv.algorithms.run(x, w, spec, "gemm")
    want = ndconv.algorithms.run(x.astype(np.float64), w.astype(np.float64),
                                 _spec((3, 2, 40, 45), (og, 2, 36, 41), dtype=np.float64),
                                 "direct")
    assert _rel_err(got, want) < 1e-5


def test_same_result_as_blas(monkeypatch):
    """The stem, a 1-D and a 3-D layer, and their weight gradients: the kernel
    and BLAS (the path on CPUs without AVX-512) agree."""
    rng = np.random.default_rng(6)
    specs = [
        _spec((1, 3, 60, 60), (64, 3, 7, 7), stride=2, pairs=((3, 3), (3, 3))),
        _spec((2, 16, 300), (32, 16, 9)),
        _spec((1, 4, 6, 12, 64), (8, 4, 3, 3, 3), pairs=((1, 1),) * 3),
        _spec((8, 2, 30, 30), (32, 2, 28, 28)),  # a weight gradient's correlation
    ]
    for spec in specs:
        assert gemm._kernel(spec) is kernel
        x = rng.standard_normal((spec.batch, spec.in_channels, *spec.in_spatial))
        w = rng.standard_normal((spec.out_channels, spec.in_channels, *spec.kernel_size))
        x, w = x.astype(np.float32), w.astype(np.float32)
        ours = ndconv.algorithms.run(x, w, spec, "gemm")
        with monkeypatch.context() as m:
            m.setattr(kernel, "available", lambda: False)
            m.setitem(gemm._JIT, "kernel", None)
            blas = ndconv.algorithms.run(x, w, spec, "gemm")
        np.testing.assert_allclose(ours, blas, rtol=0, atol=1e-5 * np.abs(blas).max())


def test_nonfinite_values_stay_where_they_belong(lines):
    """An Inf in the input reaches exactly the outputs whose window holds it
    (padding rows and columns of the blocks multiply zeros by it: NaN there
    must never leak into the result)."""
    x = np.ones((1, 4, 9, 70), np.float32)
    x[0, 1, 4, 33] = np.inf
    w = np.ones((7, 4, 3, 3), np.float32)
    y = ndconv.conv(x, w, None, 1, 0, method="gemm")
    bad = np.zeros(y.shape[2:], bool)
    bad[2:5, 31:34] = True
    assert np.all(np.isinf(y[0][:, bad])) and np.all(np.isfinite(y[0][:, ~bad]))


def test_threads_give_the_same_result(lines):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 30, 80)).astype(np.float32)
    w = rng.standard_normal((24, 3, 5, 5)).astype(np.float32)
    gy = rng.standard_normal((2, 24, 26, 76)).astype(np.float32)
    before = ndconv.get_num_threads()
    out = []
    try:
        for n in (1, 2):
            ndconv.set_num_threads(n)
            y = ndconv.conv(x, w, None, method="gemm")
            out.append((y, *ndconv.conv_backward(gy, x, w, method="gemm")[:2]))
    finally:
        ndconv.set_num_threads(before)
    for one, two in zip(*out):
        np.testing.assert_allclose(one, two, rtol=0, atol=1e-5 * np.abs(one).max())


def test_concurrent_calls(lines):
    """Calls from several Python threads at once (each launching numba's
    pool) give each its own right result."""
    import threading

    rng = np.random.default_rng(8)
    jobs = [(rng.standard_normal((2, 4, 20, 70)).astype(np.float32),
             rng.standard_normal((12, 4, 3, 3)).astype(np.float32)) for _ in range(4)]
    want = [ndconv.conv(x, w, None, 1, 1, method="direct") for x, w in jobs]
    got = [None] * len(jobs)
    before = ndconv.get_num_threads()
    ndconv.set_num_threads(2)

    def work(i):
        x, w = jobs[i]
        for _ in range(3):
            got[i] = ndconv.conv(x, w, None, 1, 1, method="gemm")

    try:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        ndconv.set_num_threads(before)
    for g, w_ in zip(got, want):
        assert _rel_err(g, w_) < 1e-5


def test_long_sums_stay_accurate():
    """A weight gradient's correlation sums 2 x 65536 taps per output: each
    register block's chunk is summed from zero and then added, so the result
    keeps BLAS's accuracy (5e-7 of max|y|; adding every term to the running
    total gave 1e-5, on the 3-D layer's weight gradient 1.3e-5)."""
    rng = np.random.default_rng(9)
    xs, ws = (8, 2, 258, 258), (16, 2, 256, 256)
    spec = _spec(xs, ws)
    assert gemm.packing(spec) == "taps" and gemm._kernel(spec) is kernel
    # Values of one sign: the sums grow with the number of terms.
    x = rng.standard_normal(xs).astype(np.float32) + 1
    w = rng.standard_normal(ws).astype(np.float32) + 1
    got = ndconv.algorithms.run(x, w, spec, "gemm")
    want = torch.nn.functional.conv2d(torch.from_numpy(x.astype(np.float64)),
                                      torch.from_numpy(w.astype(np.float64))).numpy()
    assert _rel_err(got, want) < 2e-6


def test_the_other_instruction_sets_block(tmp_path):
    """This file's checks of the product, of the three paths (``lines``) and
    of the loop over taps' blocks on the other ISA's block shape, in a subprocess
    that reports the other ISA's features to ``_gemm_kernel`` while numba
    compiles for the real CPU (``NUMBA_CPU_FEATURES``; an empty cache): on
    an AVX2 CPU the AVX-512 block's 16-lane vectors are split by LLVM into
    two (slow, but the panels, edges and layouts are the AVX-512 ones); on
    an AVX-512 CPU the AVX2 block runs as it would there."""
    import os
    import subprocess
    import sys

    import llvmlite.binding as llvm

    other = "avx2" if kernel.ISA == "avx512" else "avx512"
    script = f"""
import sys
import llvmlite.binding as llvm
real = llvm.get_host_cpu_features
def features():
    f = real()
    for name in list(f):
        if name.startswith("avx512"):
            f[name] = False
    f["avx512f"] = {other == "avx512"}
    return f
llvm.get_host_cpu_features = features
from ndconv.core.algorithms import _gemm_kernel
assert _gemm_kernel.ISA == {other!r}, _gemm_kernel.ISA
import pytest
sys.exit(pytest.main(["-q", "-x", "-p", "no:cacheprovider", {__file__!r}, "-k",
                      "product_against or taps_wide or nonfinite or threads_give "
                      "or same_result_as_blas"]))
"""
    env = dict(os.environ, NUMBA_CPU_FEATURES=llvm.get_host_cpu_features().flatten(),
               NUMBA_CACHE_DIR=str(tmp_path))
    res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=1800, cwd=os.path.dirname(__file__))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]

"""Winograd F(m, 3): the compiled transforms, the NumPy transforms, and accuracy."""

from __future__ import annotations

import numpy as np
import pytest

import ndconv
from ndconv.algorithms import winograd
from reference import conv_ref

numba = pytest.importorskip("numba", reason="the compiled transforms need numba (ndconv[jit])")


def _numpy_path(monkeypatch):
    monkeypatch.setattr(winograd, "_compiled", lambda m: None)


CASES = [  # x shape, w shape, padding, groups, padding_mode
    ((2, 3, 9, 11), (4, 3, 3, 3), 1, 1, "zeros"),
    ((1, 4, 7, 5), (6, 2, 3, 3), 0, 2, "zeros"),
    ((3, 6, 13, 17), (6, 1, 3, 3), 1, 6, "zeros"),
    ((2, 3, 8, 8), (5, 3, 3, 3), 1, 1, "reflect"),
    ((1, 1, 4, 4), (1, 1, 3, 3), 2, 1, "circular"),
    ((2, 5, 3, 30), (3, 5, 3, 3), ((1, 0), (2, 1)), 1, "zeros"),
    ((2, 2, 10), (3, 2, 3), 1, 1, "zeros"),
    ((1, 3, 23), (2, 3, 3), 0, 1, "replicate"),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("xs, ws, padding, groups, mode", CASES)
def test_compiled_transforms_equal_reference_and_numpy_path(xs, ws, padding, groups, mode,
                                                            dtype, monkeypatch):
    assert winograd._compiled(4) is not None
    rng = np.random.default_rng(len(xs) + sum(xs))
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    ref = conv_ref(x.astype(np.float64), w.astype(np.float64), None, 1, padding, 1, groups, mode)
    y = ndconv.conv(x, w, None, 1, padding, 1, groups, padding_mode=mode, method="winograd")
    _numpy_path(monkeypatch)
    yn = ndconv.conv(x, w, None, 1, padding, 1, groups, padding_mode=mode, method="winograd")
    tol = 1e-13 if dtype == np.float64 else 1e-5
    scale = np.abs(ref).max()
    assert y.dtype == dtype and y.shape == ref.shape
    assert np.abs(y - ref).max() <= tol * scale
    assert np.abs(yn - ref).max() <= tol * scale


@pytest.mark.parametrize("compiled", [True, False])
def test_float32_error_within_1e5_at_256_channels(compiled, monkeypatch):
    # The case: F(4x4, 3x3) on the usual points 0, +-1, +-2 was 1.6e-5
    # of max|y| here; the points 0, 1, -1, 2, -1/2 keep it under 1e-5.
    if not compiled:
        _numpy_path(monkeypatch)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 256, 80, 128)).astype(np.float32)
    w = (rng.standard_normal((256, 256, 3, 3)) / np.sqrt(9 * 256)).astype(np.float32)
    ref = ndconv.conv(x.astype(np.float64), w.astype(np.float64), None, 1, 1, method="gemm")
    y = ndconv.conv(x, w, None, 1, 1, method="winograd")
    assert np.abs(y - ref).max() <= 1e-5 * np.abs(ref).max()


@pytest.mark.parametrize("m", [2, 4])
def test_matrices_compute_a_3_tap_correlation_exactly(m):
    # A^T [(G g) * (B^T d)] == the correlation of d with g, in exact arithmetic
    # (here float64 at 1e-14): the matrices, not only the code, are right.
    BT, G, AT = (np.asarray(a, np.float64) for a in winograd._MATRICES[m])
    rng = np.random.default_rng(m)
    for _ in range(5):
        d, g = rng.standard_normal(m + 2), rng.standard_normal(3)
        want = np.array([d[i:i + 3] @ g for i in range(m)])
        np.testing.assert_allclose(AT @ ((G @ g) * (BT @ d)), want, rtol=0, atol=1e-14)


# --------------------------------------------------------------------------
# the weight gradient (winograd_dual: F(m, 3) transposed) and the chunked forward

torch = pytest.importorskip("torch")
from ndconv.algorithms import winograd_dual  # noqa: E402 (after the importorskip)

_TORCH_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate",
               "circular": "circular"}

GRAD_CASES = [  # x shape, w shape, padding (int or per-dim (lo, hi)), groups, padding_mode
    ((2, 3, 9, 11), (4, 3, 3, 3), 1, 1, "zeros"),
    ((1, 4, 7, 5), (6, 2, 3, 3), 0, 2, "zeros"),
    ((3, 6, 13, 17), (6, 1, 3, 3), 1, 6, "zeros"),
    ((2, 5, 3, 30), (3, 5, 3, 3), ((1, 0), (2, 1)), 1, "zeros"),
    ((2, 3, 8, 10), (5, 3, 3, 3), 1, 1, "reflect"),
    ((1, 2, 6, 7), (2, 2, 3, 3), 1, 1, "circular"),
    ((3, 2, 10), (3, 2, 3), 1, 1, "zeros"),
    ((1, 3, 23), (2, 3, 3), 0, 1, "replicate"),
    ((2, 2, 6, 7, 5), (3, 2, 3, 3, 3), 1, 1, "zeros"),
    ((1, 4, 5, 4, 6), (2, 2, 3, 3, 3), ((0, 1), (1, 1), (2, 0)), 2, "zeros"),
]


def _torch_grads(x, w, gy, padding, groups, mode):
    n = x.ndim - 2
    pairs = ((padding, padding),) * n if isinstance(padding, int) else padding
    xt = torch.tensor(x.astype(np.float64), requires_grad=True)
    wt = torch.tensor(w.astype(np.float64), requires_grad=True)
    flat = [p for pr in pairs[::-1] for p in pr]
    xp = torch.nn.functional.pad(xt, flat, mode=_TORCH_MODE[mode])
    conv = (torch.nn.functional.conv1d, torch.nn.functional.conv2d,
            torch.nn.functional.conv3d)[n - 1]
    conv(xp, wt, groups=groups).backward(torch.from_numpy(gy.astype(np.float64)))
    return xt.grad.numpy(), wt.grad.numpy()


@pytest.fixture
def dual_calls(monkeypatch):
    """Counts the weight gradients winograd_dual computes (so that a test
    fails if conv_backward quietly hands them to another method)."""
    calls = []
    run = winograd_dual.run

    def counted(*args):
        calls.append(args[2])
        return run(*args)

    monkeypatch.setattr(winograd_dual, "run", counted)
    return calls


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("xs, ws, padding, groups, mode", GRAD_CASES)
def test_weight_gradient_matches_torch(xs, ws, padding, groups, mode, dtype, compiled,
                                       dual_calls, monkeypatch):
    if not compiled:
        _numpy_path(monkeypatch)
    rng = np.random.default_rng(sum(xs) + len(ws))
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    y = ndconv.conv(x, w, None, 1, padding, 1, groups, padding_mode=mode, method="winograd")
    gy = rng.standard_normal(y.shape).astype(dtype)
    gx, gw, _ = ndconv.conv_backward(gy, x, w, 1, padding, 1, groups, padding_mode=mode,
                                     method="winograd")
    want_gx, want_gw = _torch_grads(x, w, gy, padding, groups, mode)
    assert len(dual_calls) == 1  # the weight gradient went through winograd_dual
    tol = 1e-13 if dtype == np.float64 else 1e-5
    assert gw.dtype == dtype and gw.shape == w.shape
    assert np.abs(gw - want_gw).max() <= tol * np.abs(want_gw).max()
    assert np.abs(gx - want_gx).max() <= tol * np.abs(want_gx).max()


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_weight_gradient_in_chunks_on_threads(threads, dual_calls, monkeypatch):
    # Many small chunks (a sum over chunks), split over threads: tiles per
    # thread in the transforms, positions per thread in the products.
    monkeypatch.setattr(winograd_dual, "MIN_TILES", 8)
    monkeypatch.setattr(winograd_dual, "CHUNK_BYTES", 4096)
    rng = np.random.default_rng(threads)
    x = rng.standard_normal((3, 5, 29, 22))
    w = rng.standard_normal((6, 5, 3, 3))
    gy = rng.standard_normal((3, 6, 29, 22))
    before = ndconv.get_num_threads()
    ndconv.set_num_threads(threads)
    try:
        _, gw, _ = ndconv.conv_backward(gy, x, w, padding=1, method="winograd")
    finally:
        ndconv.set_num_threads(before)
    _, want = _torch_grads(x, w, gy, 1, 1, "zeros")
    assert len(dual_calls) == 1
    np.testing.assert_allclose(gw, want, rtol=0, atol=1e-12 * np.abs(want).max())


def test_weight_gradient_error_on_a_thread_is_raised(monkeypatch):
    # One thread failing must not leave the others waiting at the barrier.
    monkeypatch.setattr(winograd_dual, "MIN_TILES", 8)
    monkeypatch.setattr(winograd_dual, "CHUNK_BYTES", 4096)
    made = winograd_dual._shares

    def failing(*args):
        share = made(*args)

        def f(chunk, t, T):
            if t == 1:
                raise RuntimeError("share 1 failed")
            return share(chunk, t, T)

        return f

    monkeypatch.setattr(winograd_dual, "_shares", failing)
    x = np.ones((2, 4, 40, 40))
    w = np.ones((4, 4, 3, 3))
    before = ndconv.get_num_threads()
    ndconv.set_num_threads(2)
    try:
        with pytest.raises(RuntimeError, match="share 1 failed"):
            ndconv.conv_backward(np.ones((2, 4, 40, 40)), x, w, padding=1, method="winograd")
    finally:
        ndconv.set_num_threads(before)


@pytest.mark.parametrize("compiled", [True, False])
def test_weight_gradient_float32_error_within_1e5_at_256_channels(compiled, monkeypatch):
    if not compiled:
        _numpy_path(monkeypatch)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 256, 14, 14)).astype(np.float32)
    w = (rng.standard_normal((256, 256, 3, 3)) / np.sqrt(9 * 256)).astype(np.float32)
    gy = rng.standard_normal((16, 256, 14, 14)).astype(np.float32)
    _, gw, _ = ndconv.conv_backward(gy, x, w, padding=1, method="winograd")
    _, ref, _ = ndconv.conv_backward(gy.astype(np.float64), x.astype(np.float64),
                                     w.astype(np.float64), padding=1, method="gemm")
    assert np.abs(gw - ref).max() <= 1e-5 * np.abs(ref).max()


@pytest.mark.parametrize("xs, ws", [((8, 128, 28, 28), (128, 128, 3, 3)),
                                    ((16, 256, 14, 14), (256, 256, 3, 3))])
def test_auto_computes_these_weight_gradients_with_winograd(xs, ws, dual_calls):
    x = np.ones(xs, np.float32)
    w = np.ones(ws, np.float32)
    ndconv.conv_backward(np.ones(xs, np.float32), x, w, padding=1)
    assert len(dual_calls) == 1


@pytest.mark.parametrize("xs, ws, padding", [
    ((2, 3, 7, 9), (4, 3, 5, 7), 0),  # a 3x3 output of a larger kernel
    ((1, 2, 5, 6), (3, 2, 3, 4), ((0, 0), (0, 0))),  # one kernel dim of 3
    ((2, 2, 3), (3, 2, 3), 1),  # 3 outputs of a 3-tap kernel: the forward form
])
def test_a_forward_with_a_3x3_output_takes_either_form(xs, ws, padding):
    rng = np.random.default_rng(len(xs))
    x = rng.standard_normal(xs)
    w = rng.standard_normal(ws)
    y = ndconv.conv(x, w, None, 1, padding, method="winograd")
    ref = conv_ref(x, w, None, 1, padding)
    assert y.shape == ref.shape and all(s == 3 for s in y.shape[2:])
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-12 * np.abs(ref).max())


@pytest.mark.parametrize("compiled", [True, False])
def test_forward_in_row_chunks_with_asymmetric_and_negative_padding(compiled, monkeypatch):
    # Chunks of single tile rows: each copies its own padded rows from x.
    if not compiled:
        _numpy_path(monkeypatch)
    monkeypatch.setattr(winograd, "MIN_TILES", 1)
    monkeypatch.setattr(winograd, "CHUNK_BYTES", 2000)
    rng = np.random.default_rng(7)
    for xs, ws, padding in [((2, 3, 23, 9), (4, 3, 3, 3), 1),
                            ((1, 2, 17, 5), (3, 2, 3, 3), ((3, 0), (0, 2))),
                            ((2, 2, 19), (2, 2, 3), ((0, 4),))]:
        x = rng.standard_normal(xs)
        w = rng.standard_normal(ws)
        y = ndconv.conv(x, w, None, 1, padding, method="winograd")
        ref = conv_ref(x, w, None, 1, padding)
        np.testing.assert_allclose(y, ref, rtol=0, atol=1e-12 * np.abs(ref).max())
    # conv_transpose with padding 3 > k - 1: its correlation crops the input
    x = rng.standard_normal((2, 4, 21, 8))
    w = rng.standard_normal((4, 3, 3, 3))
    y = ndconv.conv_transpose(x, w, None, 1, 3, method="winograd")
    ref = torch.nn.functional.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(w),
                                               None, 1, 3).numpy()
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-12 * np.abs(ref).max())


def _gemm_panels():
    """:mod:`._winograd_gemm` where gemm's compiled product runs on this CPU
    (AVX-512, or AVX2 with FMA, where winograd does not choose it: forced)."""
    try:
        from ndconv.core.algorithms import _gemm_kernel, _winograd_gemm
    except ImportError:
        return None
    return _winograd_gemm if _gemm_kernel.available() else None


@pytest.mark.skipif(_gemm_panels() is None,
                    reason="no compiled product (gemm's _gemm_kernel: AVX-512 or AVX2+FMA)")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("xs, ws", [((3, 7, 13, 10), (5, 7, 3, 3)),  # few rows and columns
                                    ((2, 70, 9, 9), (67, 70, 3, 3)),  # past one panel
                                    ((1, 3, 30, 3), (2, 3, 3, 3))])
def test_compiled_product_equals_blas(xs, ws, threads, dtype, monkeypatch):
    # Forward and weight gradient on the packed panels of the compiled
    # product, against the same transforms on BLAS; chunks small enough
    # that the weight gradient sums several.
    monkeypatch.setattr(winograd_dual, "MIN_TILES", 8)
    monkeypatch.setattr(winograd_dual, "CHUNK_BYTES", 8192)
    monkeypatch.setattr(winograd, "MIN_TILES", 4)
    rng = np.random.default_rng(sum(xs))
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    gy = rng.standard_normal((xs[0], ws[0], *xs[2:])).astype(dtype)
    monkeypatch.setitem(winograd._JIT, "g", _gemm_panels())
    before = ndconv.get_num_threads()
    ndconv.set_num_threads(threads)
    try:
        y = ndconv.conv(x, w, None, 1, 1, method="winograd")
        _, gw, _ = ndconv.conv_backward(gy, x, w, padding=1, method="winograd")
        monkeypatch.setitem(winograd._JIT, "g", None)  # BLAS
        y_blas = ndconv.conv(x, w, None, 1, 1, method="winograd")
        _, gw_blas, _ = ndconv.conv_backward(gy, x, w, padding=1, method="winograd")
    finally:
        ndconv.set_num_threads(before)
    tol = 1e-13 if dtype == np.float64 else 1e-5
    assert np.abs(y - y_blas).max() <= tol * np.abs(y_blas).max()
    assert np.abs(gw - gw_blas).max() <= tol * np.abs(gw_blas).max()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("O, Cg, g, N", [(70, 5, 1, 2), (8, 3, 4, 2), (130, 2, 1, 1), (3, 300, 1, 2)])
def test_compiled_kernel_transform_and_its_transpose_within_one_rounding(O, Cg, g, N, dtype):
    # The compiled sums (forward's U = M w, in every layout it writes, and the
    # weight gradient's G^T = M^T dU) against float64 einsums: within one
    # rounding to the dtype plus a float64 sum's own error (its order differs
    # from the einsum's: 8 eps64 of the sum of |terms|).
    from ndconv.core.algorithms import _winograd_jit as jit, winograd_dual

    rng = np.random.default_rng(7)
    T, A = 3**N, 6**N
    M = winograd._tap_matrix(4, N)
    w = rng.standard_normal((O, Cg) + (3,) * N).astype(dtype)
    w64 = w.astype(np.float64).reshape(g, O // g, Cg, T)
    exact = np.einsum("kt,goct->kgco", M, w64)

    def bound(exact, terms):
        return (np.spacing(np.abs(exact).astype(dtype)).astype(np.float64)
                + 8 * np.finfo(np.float64).eps * terms)

    spec = type("Spec", (), {"ndim": N, "groups": g, "dtype": np.dtype(dtype)})()
    U = winograd._kernel_transform(w, spec, 4)  # (A, g, Cg, Og)
    assert np.all(np.abs(U - exact) <= bound(exact, np.einsum("kt,goct->kgco", abs(M), abs(w64))))
    if g == 1:  # the right panels of the compiled product, R outputs each
        R = 8
        Up = np.full((A, -(-O // R), Cg, R), np.nan, dtype)
        wt = np.ascontiguousarray(w.reshape(1, O, Cg, T).transpose(3, 0, 2, 1))
        jit.kernel_transform(wt.reshape(T, Cg, O), M, Up)
        got = Up.transpose(0, 2, 1, 3).reshape(A, Cg, -1)[:, :, :O]
        assert np.array_equal(got, U[:, 0])
        if O % R:  # the columns past O are the caller's (left untouched)
            assert np.isnan(Up[:, -1, :, O % R:]).all()
    dU = rng.standard_normal((A, g, Cg, O // g)).astype(dtype)
    exact_t = np.einsum("kt,kgbo->tgbo", M, dU.astype(np.float64))
    r = winograd_dual._kernel_gradient(dU, 4, N, jit)
    terms = np.einsum("kt,kgbo->tgbo", abs(M), abs(dU.astype(np.float64)))
    assert np.all(np.abs(r - exact_t) <= bound(exact_t, terms))


def _counting_transforms(monkeypatch):
    """Count the kernel transforms actually computed (cache misses)."""
    calls = []
    real = winograd._transform_kernel

    def counted(*args, **kwargs):
        calls.append(args[0].shape)
        return real(*args, **kwargs)

    monkeypatch.setattr(winograd, "_transform_kernel", counted)
    monkeypatch.setattr(winograd, "_U_CACHE", type(winograd._U_CACHE)())
    return calls


@pytest.mark.parametrize("compiled", [True, False])
def test_kernel_cache_serves_equal_kernels_and_never_a_changed_one(compiled, monkeypatch):
    if not compiled:
        _numpy_path(monkeypatch)
    calls = _counting_transforms(monkeypatch)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 8, 12, 12)).astype(np.float32)
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)

    def check(w):
        y = ndconv.conv(x.astype(w.dtype), w, None, 1, 1, method="winograd")
        ref = conv_ref(x.astype(np.float64), w.astype(np.float64), None, 1, 1)
        assert np.abs(y - ref).max() <= 1e-5 * np.abs(ref).max()

    check(w)
    check(w.copy())  # equal values in another array: served
    check(np.asfortranarray(w))  # and in another memory order
    assert len(calls) == 1
    w[3, 2, 1, 0] += 1.0  # changed in place (an optimizer step): transformed again
    check(w)
    assert len(calls) == 2
    # one value changed where the cache's key does not sample: still a miss
    unsampled = np.setdiff1d(np.arange(w.size), winograd._sample_positions(w.size))[7]
    w.reshape(-1)[unsampled] *= 2
    check(w)
    assert len(calls) == 3
    w[0, 0, 0, 0] = 0.0
    check(w)
    w[0, 0, 0, 0] = -0.0  # equal as numbers, not as bits: a different kernel
    check(w)
    assert len(calls) == 5
    check(w.astype(np.float64))  # another dtype: its own entry
    assert len(calls) == 6


def test_kernel_cache_keeps_at_most_its_bytes_least_recent_out(monkeypatch):
    calls = _counting_transforms(monkeypatch)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 8, 10, 10)).astype(np.float32)
    w1, w2 = (rng.standard_normal((8, 8, 3, 3)).astype(np.float32) for _ in range(2))
    ndconv.conv(x, w1, None, 1, 1, method="winograd")
    ((kept, U),) = winograd._U_CACHE.values()
    one = kept.nbytes + U.nbytes
    monkeypatch.setattr(winograd, "KERNEL_CACHE_BYTES", one)  # room for one entry
    for w in (w2, w1, w1, w2):
        y = ndconv.conv(x, w, None, 1, 1, method="winograd")
        ref = conv_ref(x.astype(np.float64), w.astype(np.float64), None, 1, 1)
        assert np.abs(y - ref).max() <= 1e-5 * np.abs(ref).max()
    assert len(calls) == 4  # w1, w2 (w1 out), w1 (w2 out), w1 served, w2
    assert sum(k.nbytes + u.nbytes for k, u in winograd._U_CACHE.values()) <= one
    monkeypatch.setattr(winograd, "KERNEL_CACHE_BYTES", 0)  # off: nothing kept
    winograd._U_CACHE.clear()
    ndconv.conv(x, w1, None, 1, 1, method="winograd")
    ndconv.conv(x, w1, None, 1, 1, method="winograd")
    assert len(calls) == 6 and not winograd._U_CACHE


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xs, ws, groups", [
    ((2, 16, 20, 20), (24, 16, 3, 3), 1),    # the compiled product's panels
    ((3, 6, 13, 17), (6, 2, 3, 3), 3),       # groups: BLAS
    ((2, 4, 6, 7, 8), (5, 4, 3, 3, 3), 1),   # 3-D: F(2, 3)
    ((2, 3, 30), (4, 3, 3), 1),
])
def test_bias_is_added_as_the_output_is_written(xs, ws, groups, dtype):
    rng = np.random.default_rng(sum(xs))
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = (100 * rng.standard_normal(ws[0])).astype(dtype)  # large: a missed bias shows
    conv = {1: torch.nn.functional.conv1d, 2: torch.nn.functional.conv2d,
            3: torch.nn.functional.conv3d}[len(ws) - 2]
    ref = conv(*(torch.from_numpy(a.astype(np.float64)) for a in (x, w, b)), padding=1,
               groups=groups).numpy()
    y = ndconv.conv(x, w, b, 1, 1, 1, groups, method="winograd")
    tol = 1e-13 if dtype == np.float64 else 1e-5
    assert np.abs(y - ref).max() <= tol * np.abs(ref).max()
    # values that need scaling (their transforms would overflow): bias after it
    big = np.finfo(dtype).max / 8
    xb = x / np.abs(x).max() * np.sqrt(big)
    wb = w / np.abs(w).max() * np.sqrt(big)
    yb = ndconv.conv(xb, wb, b, 1, 1, 1, groups, method="winograd")
    refb = ndconv.conv(xb, wb, b, 1, 1, 1, groups, method="direct")
    assert np.all(np.isfinite(yb))
    assert np.abs(yb - refb).max() <= 1e-4 * np.abs(refb).max()


@pytest.mark.parametrize("compiled", [True, False])
def test_weight_gradient_reads_grad_out_in_place_others_get_a_contiguous_copy(compiled,
                                                                               monkeypatch):
    # The weight gradient's kernel is grad_out with its batch and channel axes
    # swapped: Winograd (any_kernel_layout) reads that view in place; a method
    # that does not declare it gets a C-contiguous kernel from the dispatcher.
    if not compiled:
        _numpy_path(monkeypatch)
    from ndconv.algorithms import ALGORITHMS

    assert ALGORITHMS["winograd"].any_kernel_layout
    assert not ALGORITHMS["gemm"].any_kernel_layout
    import dataclasses

    seen = {}
    for name in ("winograd", "gemm"):
        real = ALGORITHMS[name].run

        def spy(x, w, spec, real=real, name=name):
            seen.setdefault(name, []).append(w)
            return real(x, w, spec)

        monkeypatch.setitem(ALGORITHMS, name, dataclasses.replace(
            ALGORITHMS[name], run=spy, run_bias=None, prepared=None))
    rng = np.random.default_rng(9)
    x = rng.standard_normal((4, 3, 10, 10))
    w = rng.standard_normal((5, 3, 3, 3))
    gy = rng.standard_normal((4, 5, 10, 10))
    ref = _torch_grads(x, w, gy, 1, 1, "zeros")
    for method in ("winograd", "gemm"):
        gx, gw, gb = ndconv.conv_backward(gy, x, w, 1, 1, method=method)
        for got, want in zip((gx, gw), ref):
            assert np.abs(got - want).max() <= 1e-12 * np.abs(want).max()
        kernels = seen[method]
        grad_out_kernel = [k for k in kernels if k.shape == (5, 4, 10, 10)]
        assert len(grad_out_kernel) == 1
        if method == "winograd":
            assert np.shares_memory(grad_out_kernel[0], gy)
            assert not grad_out_kernel[0].flags.c_contiguous
        else:
            assert grad_out_kernel[0].flags.c_contiguous

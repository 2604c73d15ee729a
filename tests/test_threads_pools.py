"""Which thread pool runs what: the serial kernels stay serial, small products
run on one BLAS thread, and thread counts are what they were afterwards.

numba keys its on-disk cache by signature, CPU and bytecode, not by the
``parallel`` flag: the serial and the ``prange`` variant of one function
shared their entries, and the second to compile in a process ran the first's
code (the "1 thread" path woke numba's OpenMP pool). Those cases run in fresh
processes with their own cache folder, because a pool starts once per
process and the cache lives on disk.
"""

import contextlib
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import ndconv
from ndconv.core.algorithms import threads
from test_concurrency import _run_threads

_POOL_KERNELS = """
import sys, numpy as np, numba.np.ufunc.parallel as par
from ndconv.core import _pool_jit
k = _pool_jit.kernels()
x = np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32)
tab = _pool_jit.offsets((64,), (2,), (2,), (0,), (1,), (32,))
y = np.empty((4, 32), np.float32)
if sys.argv[1] == "both":
    k[2](x, tab, y)  # the prange variant compiles (and saves) first
k[3](x, tab, y)      # then the serial one
print(bool(k[3].stats.cache_hits), par._is_initialized, float(np.abs(y - x.reshape(4, 32, 2).max(-1)).max()))
"""

_DIRECT_KERNELS = """
import numpy as np, ndconv
from ndconv.core.algorithms import _direct_jit
# rows of 128 outputs: the slab kernel (rows of 256 and more take _rows_jit instead)
img = np.random.default_rng(0).standard_normal((2048, 128)).astype(np.float32)
k = np.ones((3, 3), np.float32)
ndconv.set_num_threads(2)
a = ndconv.correlate(img, k, mode="same")  # the prange variant (2**20 multiply-adds and more)
ndconv.set_num_threads(1)
b = ndconv.correlate(img, k, mode="same")  # the serial one
print(bool(_direct_jit.kernels()[1].stats.cache_hits), bool(_direct_jit.kernels()[1].stats.cache_misses),
      float(np.abs(a - b).max()))
"""


def _run(script, cache, *args):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                         timeout=600, env=env, check=True)
    return out.stdout.split()


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one CPU: numba's pool has one thread")
def test_serial_pool_kernel_never_runs_the_prange_code(tmp_path):
    pytest.importorskip("numba")
    # One process compiles both variants: the serial one must not load the
    # prange variant's cache entry (it did: the two shared one index file).
    hit, _, err = _run(_POOL_KERNELS, tmp_path, "both")
    assert hit == "False"
    assert float(err) == 0.0
    # A later process running only the serial variant loads its own entry
    # from disk and never starts numba's thread pool.
    hit, started, err = _run(_POOL_KERNELS, tmp_path, "serial")
    assert (hit, started) == ("True", "False")
    assert float(err) == 0.0


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one CPU: numba's pool has one thread")
def test_serial_direct_kernel_compiles_its_own_code(tmp_path):
    pytest.importorskip("numba")
    hit, miss, diff = _run(_DIRECT_KERNELS, tmp_path)
    assert (hit, miss) == ("False", "True")
    assert float(diff) < 1e-5


def test_parallel_and_serial_variants_have_their_own_names():
    pytest.importorskip("numba")
    from ndconv.core.algorithms._jit import parallel_and_serial

    def f(a):
        return a + 1

    par, ser = parallel_and_serial(f, cache=False)
    assert par.py_func.__qualname__ != ser.py_func.__qualname__
    assert par.targetoptions.get("parallel") and not ser.targetoptions.get("parallel")
    assert par(np.arange(3.0)).tolist() == ser(np.arange(3.0)).tolist() == [1.0, 2.0, 3.0]


def _blas_counts():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    return [(i["filepath"], i["num_threads"]) for i in threadpoolctl.threadpool_info()
            if i["user_api"] == "blas"]


@pytest.fixture
def two_threads():
    ndconv.set_num_threads(2)
    yield
    ndconv.set_num_threads(None)


@pytest.mark.parametrize("shape, single", [((64, 128, 64), True), ((512, 512, 512), False),
                                           ((32, 64, 32), False)])  # OpenBLAS: one thread anyway
def test_matmul_picks_one_blas_thread_for_small_products_only(monkeypatch, two_threads, shape,
                                                              single):
    entered = []

    @contextlib.contextmanager
    def record(numpy_only=False):
        entered.append(numpy_only)  # np.matmul alone: only NumPy's BLAS to limit
        yield

    monkeypatch.setattr(threads, "blas_single_thread", record)
    m, k, n = shape
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((m, k)), rng.standard_normal((k, n))
    np.testing.assert_allclose(threads.matmul(a, b), np.einsum("ik,kj->ij", a, b), rtol=1e-12,
                               atol=1e-10)
    assert entered == ([True] if single else [])


def test_numpy_only_section_limits_numpys_blas_alone_and_nests_under_a_full_one(two_threads):
    pytest.importorskip("scipy.linalg")  # a second OpenBLAS, SciPy's own
    before = _blas_counts()
    numpys = [p for p, _ in before  # the wheel's OpenBLAS, in numpy.libs (or numpy/)
              if any(os.sep + d + os.sep in p for d in ("numpy.libs", "numpy"))]
    if len(before) < 2 or len(numpys) != 1:
        pytest.skip("NumPy's BLAS is not a library of its own here")
    seen = {}
    with threads.blas_single_thread(numpy_only=True):
        seen["numpy only"] = _blas_counts()
        with threads.blas_single_thread():  # a full section inside: every library
            seen["full inside"] = _blas_counts()
        seen["after full"] = _blas_counts()
    seen["after"] = _blas_counts()
    assert seen["numpy only"] == [(p, 1 if p in numpys else 2) for p, _ in before]
    assert seen["full inside"] == seen["after full"] == [(p, 1) for p, _ in before]
    assert seen["after"] == before == [(p, 2) for p, _ in before]
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((300, 128)), rng.standard_normal((128, 96))
    np.testing.assert_allclose(threads.matmul(a, b), np.einsum("ik,kj->ij", a, b), rtol=1e-12,
                               atol=1e-10)
    assert _blas_counts() == before


def test_linear_same_values_on_one_and_two_threads_and_counts_restored():
    before = _blas_counts()
    rng = np.random.default_rng(1)
    layer = ndconv.nn.Linear(128, 64, rng=0)
    x = rng.standard_normal((64, 128)).astype(np.float32)
    gy = rng.standard_normal((64, 64)).astype(np.float32)
    w = layer.weight.data.astype(np.float64)
    ref = x.astype(np.float64) @ w.T + layer.bias.data
    got = {}
    for n in (1, 2):
        ndconv.set_num_threads(n)
        try:
            layer.weight.grad = None
            y = layer(x)
            gx = layer.backward(gy)
            got[n] = (y, gx, layer.weight.grad.copy())
            assert _blas_counts() == [(p, n) for p, _ in before]
        finally:
            ndconv.set_num_threads(None)
    assert _blas_counts() == before
    np.testing.assert_allclose(got[1][0], ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[1][1], gy.astype(np.float64) @ w, rtol=1e-5, atol=1e-4)
    for a, b in zip(got[1], got[2]):  # small products: one BLAS thread either way
        np.testing.assert_array_equal(a, b)


def test_concurrent_small_products_correct_and_blas_count_restored(two_threads):
    before = _blas_counts()
    rng = np.random.default_rng(2)
    a = rng.standard_normal((8, 64, 96))
    b = rng.standard_normal((96, 80))
    ref = [np.einsum("ik,kj->ij", a[i], b) for i in range(len(a))]

    def work(i):
        for _ in range(50):
            np.testing.assert_allclose(threads.matmul(a[i], b), ref[i], rtol=1e-12, atol=1e-10)

    _run_threads(work, len(a))  # raises the first thread's failure here
    # Overlapping one-thread sections from 8 threads: the last to leave put
    # back the 2 that set_num_threads gave.
    assert _blas_counts() == before == [(p, 2) for p, _ in before]


def test_one_thread_sections_change_blas_only_from_the_main_thread(two_threads):
    # OpenBLAS 0.3.30/0.3.31 ignore a thread count set from another thread: a
    # section there must neither lower the count nor (on leaving) restore it.
    before = _blas_counts()
    seen = {}
    with threads.blas_single_thread():
        seen["main inside"] = _blas_counts()
        with threads.blas_single_thread():  # nested: still 1, restored once
            seen["nested"] = _blas_counts()
        seen["after nested"] = _blas_counts()

        def worker():
            with threads.blas_single_thread():
                pass
            seen["worker left"] = _blas_counts()

        t = threading.Thread(target=worker)
        t.start()
        t.join()
    one = [(p, 1) for p, _ in before]
    assert seen == {"main inside": one, "nested": one, "after nested": one, "worker left": one}
    assert _blas_counts() == before
    t = threading.Thread(target=lambda: threads.matmul(np.ones((64, 64)), np.ones((64, 64))))
    t.start()
    t.join()
    assert _blas_counts() == before


def test_main_section_closing_before_a_worker_section_restores_blas(two_threads):
    # The order that lost the restore: the main thread opens, a worker opens,
    # the main thread closes, the worker closes last.
    before = _blas_counts()
    inside, main_closed = threading.Event(), threading.Event()

    def worker():
        with threads.blas_single_thread():
            inside.set()
            main_closed.wait(10)

    t = threading.Thread(target=worker)
    with threads.blas_single_thread():
        t.start()
        inside.wait(10)
    main_closed.set()
    t.join()
    assert _blas_counts() == before == [(p, 2) for p, _ in before]


_LATE_BLAS = """
import numpy as np, ndconv
from ndconv.core.algorithms import threads
from threadpoolctl import threadpool_info
ndconv.set_num_threads(2)
with threads.blas_single_thread():  # the first section: finds the BLAS libraries loaded now
    pass
import cv2  # noqa: F401  (OpenCV's wheel brings an OpenBLAS of its own)
with threads.blas_single_thread():
    print(sorted({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}),
          len([i for i in threadpool_info() if i["user_api"] == "blas"]))
"""


def test_one_thread_sections_limit_a_blas_loaded_after_the_first():
    pytest.importorskip("cv2")
    pytest.importorskip("threadpoolctl")
    out = subprocess.run([sys.executable, "-c", _LATE_BLAS], capture_output=True, text=True,
                         timeout=300, check=True)
    counts, libs = out.stdout.rsplit(maxsplit=1)
    if int(libs) < 3:
        pytest.skip("this OpenCV wheel brings no BLAS of its own")
    assert counts == "[1]", out.stdout  # every BLAS on one thread, OpenCV's too


def test_scatter_product_runs_blas_on_one_thread(monkeypatch, two_threads):
    # OpenBLAS's threads spin for tens of ms after a product and took a core
    # from the compiled kernels' OpenMP threads (the stem's next forward: 8 ms
    # instead of 1.1): the scatter's product runs BLAS on one thread.
    from ndconv.core.algorithms import scatter

    seen = []
    real = np.matmul

    class _NP:
        def __getattr__(self, name):
            return getattr(np, name)

        @staticmethod
        def matmul(a, b, **kw):
            seen.append([n for _, n in _blas_counts()])
            return real(a, b, **kw)

    monkeypatch.setattr(scatter, "np", _NP())
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 3, 224, 224)).astype(np.float32)  # the stem
    w = rng.standard_normal((64, 3, 7, 7)).astype(np.float32)
    gy = rng.standard_normal((1, 64, 112, 112)).astype(np.float32)
    gx = ndconv.conv_backward(gy, x, w, 2, 3)[0]  # auto: the scatter for the input gradient
    assert seen and all(set(c) == {1} for c in seen)
    assert _blas_counts() and all(n == 2 for _, n in _blas_counts())  # restored after
    torch = pytest.importorskip("torch")
    ref = torch.nn.grad.conv2d_input(x.shape, torch.from_numpy(w), torch.from_numpy(gy), 2, 3)
    np.testing.assert_allclose(gx, ref.numpy(), rtol=1e-4, atol=1e-3)


def test_side_by_side_runs_each_piece_on_one_thread_of_its_own(two_threads):
    before = _blas_counts()
    seen = []
    gate = threading.Barrier(2, timeout=20)  # both pieces must be running at once

    def piece(tag):
        def run():
            gate.wait()
            seen.append((tag, threading.get_ident(), ndconv.get_num_threads(),
                         [n for _, n in _blas_counts()]))
            return tag
        return run

    assert threads.side_by_side(piece("a"), piece("b")) == ("a", "b")
    (_, ta, na, blas_a), (_, tb, nb, blas_b) = sorted(seen)
    assert ta != tb and na == nb == 1
    assert set(blas_a) == set(blas_b) == {1}  # BLAS on one thread meanwhile
    assert _blas_counts() == before and ndconv.get_num_threads() == 2


def test_side_by_side_raises_the_error_and_runs_serially_on_one_thread(two_threads):
    def boom():
        raise ValueError("second piece failed")

    with pytest.raises(ValueError, match="second piece failed"):
        threads.side_by_side(lambda: 1, boom)
    ndconv.set_num_threads(1)
    order = []
    assert threads.side_by_side(lambda: order.append(threading.get_ident()) or 1,
                                lambda: order.append(threading.get_ident()) or 2) == (1, 2)
    assert order == [threading.get_ident()] * 2  # one thread set: in the caller, in order


@pytest.mark.parametrize("xs, ws, stride, padding", [
    ((8, 64, 30, 30), (64, 64, 3, 3), 1, 1),       # Winograd's gradients
    ((4, 32, 2100), (48, 32, 9), 1, 0),            # gemm's (1-D)
    ((2, 8, 18, 36, 36), (16, 8, 3, 3, 3), 2, 1),  # strided 3-D
])
def test_backward_gradients_side_by_side_match_torch(monkeypatch, two_threads, xs, ws,
                                                     stride, padding):
    torch = pytest.importorskip("torch")
    from ndconv.core import functional

    calls = []
    real = threads.side_by_side

    def counted(a, b):
        calls.append(True)
        return real(a, b)

    monkeypatch.setattr(threads, "side_by_side", counted)
    monkeypatch.setattr(functional, "BOTH_GRADS_MACS", 2**20)
    rng = np.random.default_rng(3)
    x = rng.standard_normal(xs).astype(np.float32)
    w = (rng.standard_normal(ws) / np.sqrt(np.prod(ws[1:]))).astype(np.float32)
    y = ndconv.conv(x, w, None, stride, padding)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    xt, wt = (torch.tensor(a.astype(np.float64), requires_grad=True) for a in (x, w))
    conv = (torch.nn.functional.conv1d, torch.nn.functional.conv2d,
            torch.nn.functional.conv3d)[len(ws) - 3]
    conv(xt, wt, None, stride, padding).backward(torch.from_numpy(gy.astype(np.float64)))
    for _ in range(2):  # the first call, then the prepared one
        gx, gw, gb = ndconv.conv_backward(gy, x, w, stride, padding)
        for got, want in ((gx, xt.grad.numpy()), (gw, wt.grad.numpy()),
                          (gb, gy.astype(np.float64).sum(axis=(0, *range(2, gy.ndim))))):
            assert np.abs(got - want).max() <= 2e-5 * np.abs(want).max()
    assert len(calls) == 2
    _, gw1, _ = ndconv.conv_backward(gy, x, w, stride, padding, input_grad=False)
    assert len(calls) == 2  # one gradient: nothing beside it (on both threads)
    assert np.abs(gw1 - wt.grad.numpy()).max() <= 2e-5 * np.abs(wt.grad.numpy()).max()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
def test_side_by_side_in_a_child_forked_after_it_ran(two_threads):
    # The child inherits the kept helper thread's executor but not the thread:
    # side_by_side there must start its own, not wait on the parent's forever.
    assert threads.side_by_side(lambda: 1, lambda: 2) == (1, 2)  # the helper exists
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        result = pool.apply_async(_side_by_side_in_child)
        assert result.get(timeout=60) == (3, 4)


def _side_by_side_in_child():
    ndconv.set_num_threads(2)
    return threads.side_by_side(lambda: 3, lambda: 4)

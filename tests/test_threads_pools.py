"""Which thread pool runs what: compiled kernels on ndconv's own threads (never
numba's OpenMP pool), small products on one BLAS thread, thread counts what
they were afterwards, and :func:`ndconv.core.algorithms.threads.map_chunks`'s
pool under nesting, errors, concurrent callers and fork.
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

_NO_OPENMP = """
import numpy as np, numba.np.ufunc.parallel as par, ndconv, ndconv.images
from ndconv.core import pooling
rng = np.random.default_rng(0)
f32 = lambda *s: rng.standard_normal(s).astype(np.float32)
x, xs, img, gy = f32(4, 8, 64, 64), f32(1, 3, 96, 96), f32(2, 1, 512, 512), f32(1, 64, 48, 48)
wd, ws, w6, wr, gp = f32(8, 1, 3, 3), f32(64, 3, 7, 7), f32(6, 1, 5, 5), f32(1, 1, 5, 5), f32(4, 8, 31, 31)
few, photo = f32(64, 1, 28, 28), rng.integers(0, 255, (256, 256, 3), np.uint8)
xd, wdd = f32(8, 32, 96, 96), f32(32, 1, 3, 3)
calls = [
    lambda: ndconv.conv(xd, wdd, None, 2, 1, 1, 32),  # depthwise, strided (border kernel)
    lambda: ndconv.conv(xd, wdd, None, 2, 1, 1, 32, padding_mode="reflect"),  # (padded kernel)
    lambda: ndconv.conv(x, wd, None, 1, 1, 1, 8, method="depthwise"),
    lambda: ndconv.conv(xs, ws, None, 2, 3),  # stem (gemm)
    lambda: ndconv.conv_backward(gy, xs, ws, 2, 3),
    lambda: ndconv.conv(few, w6, None, 1, 2),  # few channels (direct)
    lambda: ndconv.conv(img, wr, None, 1, 2),  # long rows
    lambda: ndconv.max_pool(x, (3, 3), 2),
    lambda: pooling.max_pool_backward(gp, x, (3, 3), 2),
    lambda: ndconv.images.filter_image(photo, np.ones((5, 5)) / 25),
]
ndconv.set_num_threads(1)
one = [c() for c in calls]
ndconv.set_num_threads(2)
two = [c() for c in calls]
diff = max(float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
           for r1, r2 in zip(one, two) for a, b in zip(r1 if isinstance(r1, tuple) else (r1,),
                                                         r2 if isinstance(r2, tuple) else (r2,)))
print(par._is_initialized, diff)
"""


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one CPU: one thread anyway")
def test_compiled_paths_on_two_threads_never_start_numbas_openmp_pool():
    # numba's OpenMP threads spin for milliseconds after each parallel loop
    # and took a core from the BLAS and Python threads that ran next (the
    # stem's backward 8 ms instead of 4.5 on 2 threads): every compiled
    # kernel runs its chunks on ndconv's own threads instead. A fresh
    # process, because numba's pool starts once per process.
    pytest.importorskip("numba")
    out = subprocess.run([sys.executable, "-c", _NO_OPENMP], capture_output=True, text=True,
                         timeout=900, check=True)
    started, diff = out.stdout.split()
    assert started == "False", out.stdout + out.stderr
    assert float(diff) < 1e-4  # the same results as on one thread


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
    def record():
        entered.append(True)
        yield

    monkeypatch.setattr(threads, "blas_single_thread", record)
    m, k, n = shape
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((m, k)), rng.standard_normal((k, n))
    np.testing.assert_allclose(threads.matmul(a, b), np.einsum("ik,kj->ij", a, b), rtol=1e-12,
                               atol=1e-10)
    assert bool(entered) == single


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


def test_map_chunks_results_in_order_on_the_kept_pool(two_threads):
    seen = []

    def work(i):
        seen.append(threading.current_thread().name)
        return i * i

    assert threads.map_chunks(work, list(range(40))) == [i * i for i in range(40)]
    pool = threads._pool_state["pool"]
    assert threads.map_chunks(work, list(range(40))) == [i * i for i in range(40)]
    assert threads._pool_state["pool"] is pool  # kept, not one per call
    assert "MainThread" in seen  # the caller takes chunks too


def test_map_chunks_raises_a_chunks_error_after_all_chunks_stopped(two_threads):
    done = []

    def work(i):
        if i == 3:
            raise ValueError("chunk 3")
        done.append(i)

    with pytest.raises(ValueError, match="chunk 3"):
        threads.map_chunks(work, list(range(8)))
    # every chunk that ran had finished when the error came (none still writing)
    n = len(done)
    threading.Event().wait(0.05)
    assert len(done) == n


def test_map_chunks_nested_and_from_many_threads_finishes(two_threads):
    # Chunks that call map_chunks themselves, from 6 threads at once, on a
    # pool of one thread: every call must finish (the caller runs what the
    # pool has not started).
    def inner(j):
        return j + 1

    def outer(i):
        return sum(threads.map_chunks(inner, list(range(i, i + 5))))

    def caller(k):
        assert threads.map_chunks(outer, list(range(10))) == [5 * i + 15 for i in range(10)]

    t = threading.Thread(target=_run_threads, args=(caller, 6))
    t.start()
    t.join(120)
    assert not t.is_alive(), "map_chunks deadlocked"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_map_chunks_in_a_forked_child_has_threads_again(two_threads):
    threads.map_chunks(abs, [-1, -2, -3])  # the parent's pool exists
    pid = os.fork()
    if pid == 0:  # the child: none of the parent's threads are here
        import signal
        import time
        signal.alarm(30)  # a hang fails the test instead of stalling it

        def work(i):
            time.sleep(0.002)
            return threading.current_thread().name

        names = threads.map_chunks(work, list(range(40)))
        # a pool of the child's own: some chunks ran on its thread
        os._exit(0 if any(n != "MainThread" for n in names) else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0

"""Threads: BLAS thread counts and memory limits are not lost or mixed (issue 14, 10-11)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import ndconv
from ndconv import plan


def _blas_threads():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    return [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]


def _run_threads(target, n):
    errors = []

    def wrapped(i):
        try:
            target(i)
        except BaseException as e:  # reported below, in the test's thread
            errors.append(e)

    threads = [threading.Thread(target=wrapped, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def test_concurrent_winograd_calls_restore_the_blas_threads(monkeypatch):
    """Each call lowers BLAS to one thread around its own threads; overlapping
    calls used to restore each other's 1, leaving the process single-threaded."""
    import scipy.linalg  # noqa: F401  (its BLAS counts too)

    from ndconv.algorithms import threads

    # Winograd runs its chunks on 2 threads; BLAS stays at its own default
    # (set_num_threads would install a limiter that hides the bug).
    monkeypatch.setitem(threads._state, "threads", 2)
    try:
        before = _blas_threads()
        assert before
        rng = np.random.default_rng(0)
        # Large enough for several chunks, so that the threads really run.
        x = rng.standard_normal((4, 32, 128, 128)).astype(np.float32)
        w = rng.standard_normal((32, 32, 3, 3)).astype(np.float32)
        ref = ndconv.conv(x[:1], w, padding=1, method="direct")

        def work(i):
            for _ in range(3):
                y = ndconv.conv(x, w, padding=1, method="winograd")
                np.testing.assert_allclose(y[:1], ref, rtol=1e-3, atol=1e-2)

        _run_threads(work, 6)
        assert _blas_threads() == before
    finally:
        threads._state["threads"] = None


def test_set_num_threads_inside_a_running_winograd_call_is_kept():
    from ndconv.algorithms import threads

    ndconv.set_num_threads(2)
    try:
        with threads.blas_single_thread():
            assert all(n == 1 for n in _blas_threads())
            ndconv.set_num_threads(3)
            assert ndconv.get_num_threads() == 3
        assert all(n == 3 for n in _blas_threads())
    finally:
        ndconv.set_num_threads(None)


def test_memory_limit_in_one_thread_does_not_refuse_another_threads_conv():
    entered, done = threading.Event(), threading.Event()
    x = np.ones((1, 1, 64, 64), np.float32)
    w = np.ones((1, 1, 3, 3), np.float32)

    def limited(_):
        with plan.memory_limit("1kB"):
            entered.set()
            assert plan.get_memory_limit()[0] == 1000
            with pytest.raises(plan.MemoryLimitError):
                ndconv.conv(x, w)
            done.wait(10)

    def free(_):
        entered.wait(10)
        try:
            y = ndconv.conv(x, w)  # 16 kB: fine without this thread's limit
            assert y.shape == (1, 1, 62, 62)
            assert plan.get_memory_limit()[0] != 1000
        finally:
            done.set()

    _run_threads(lambda i: (limited if i == 0 else free)(i), 2)


def test_overlapping_exits_in_threads_each_remove_their_own_limit():
    """A enters, B enters, A exits, then B checks: B still sees its own limit."""
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def a(_):
        with plan.memory_limit("1MB"):
            a_in.set()
            b_in.wait(10)
        a_out.set()
        seen["a after"] = plan.get_memory_limit()[1]

    def b(_):
        a_in.wait(10)
        with plan.memory_limit("2MB"):
            b_in.set()
            a_out.wait(10)
            seen["b inside"] = plan.get_memory_limit()[0]
        seen["b after"] = plan.get_memory_limit()[1]

    _run_threads(lambda i: (a if i == 0 else b)(i), 2)
    assert seen["b inside"] == 2_000_000
    assert "memory_limit()" not in seen["a after"] and "memory_limit()" not in seen["b after"]
    assert "memory_limit()" not in plan.get_memory_limit()[1]


def test_process_wide_limit_reaches_every_thread():
    plan.set_memory_limit("1kB")
    try:
        got = []
        _run_threads(lambda i: got.append(plan.get_memory_limit()[0]), 3)
        assert got == [1000] * 3
    finally:
        plan.set_memory_limit(None)

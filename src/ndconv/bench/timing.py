"""Timing: interleaved calls, medians, the machine's GEMM peak, one row per result."""

from __future__ import annotations

import importlib
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import ndconv

#: One result of the table: group, case, impl, ms, gflops, peak, ratio, note,
#: faults (minor page faults per timed call, where counted).
Row = dict[str, Any]


def peer(name: str, skipped: dict[str, str]) -> Any:
    """The module ``name``, or None after noting in ``skipped`` that it is absent.

    Peers (PyTorch, SciPy, OpenCV, onnxruntime) are optional: a benchmark row
    whose peer is not installed is left out, with one line saying so.
    """
    try:
        return importlib.import_module(name)
    except ImportError:
        if name not in skipped:
            skipped[name] = f"{name} is not installed: its rows are left out"
        return None


def set_threads(n: int | None) -> None:
    """``n`` threads for ndconv and every installed peer (None: ndconv's default)."""
    ndconv.set_num_threads(n)
    if n is None:
        return
    torch = _maybe("torch")
    if torch is not None:
        torch.set_num_threads(n)
    cv2 = _maybe("cv2")
    if cv2 is not None:
        cv2.setNumThreads(n)


def _maybe(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def sgemm_peak(quick: bool) -> float:
    """Measured float32 GEMM GFLOP/s of NumPy's BLAS (median of 5)."""
    n = 1024 if quick else 2048
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(np.float32)
    b = rng.standard_normal((n, n)).astype(np.float32)
    a @ b
    ts = []
    for _ in range(5):
        t0 = time.perf_counter()
        a @ b
        ts.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(ts) / 1e9


#: A peer slower than this per call (warm-up) is timed in one round only.
SLOW_S = 3.0

#: A call shorter than this gets one untimed call before its timed one in every round.
SETTLE_S = 0.25

#: A call shorter than this gets two: the call after the one that woke the
#: threads from their sleep paid a host tick (4 ms) on the development VM.
WAKE_S = 0.02

#: Seconds of sleep before each library's turn in a round, so that the threads
#: the library before it left spinning (OpenMP, OpenBLAS) have gone to sleep.
PAUSE_S = 0.03


class Timings(dict):  # type: ignore[type-arg]
    """Median seconds per name (a dict), and ``faults``: the median minor page
    faults of each name's timed calls (None where ``resource`` is missing)."""

    faults: dict[str, float | None]


def _minor_faults() -> int | None:
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def time_interleaved(
    impls: Sequence[tuple[str, Callable[[], object]]], repeats: int
) -> Timings:
    """Median seconds of each callable, calls interleaved round by round.

    Each callable is called once untimed first (first-call costs: plans,
    caches, JIT, page faults), and unless that took longer than
    :data:`SLOW_S` once more, untimed too, to see how long a call takes. One
    slower than :data:`SLOW_S` then runs in the first round only (PyTorch's
    direct 63x63 kernel takes tens of seconds).

    In every round each callable's turn starts with a pause of
    :data:`PAUSE_S`, and one shorter than :data:`SETTLE_S` is then called
    once untimed before its timed call (twice if shorter than
    :data:`WAKE_S`). Thread pools keep spinning on the
    cores for milliseconds after a call returns (PyTorch's OpenMP threads,
    numba's, OpenBLAS's), and the next library's call on 2 threads ran up to
    2x slower because of it (the stem layer: ndconv 1.9 ms after its own
    calls, 3.0 ms right after torch's; torch slowed after ndconv too), and
    caches hold the other library's data. A program runs one library's
    calls one after another, so each is timed as it runs after itself, still
    in the same rounds, under the same load.

    The pause has a cost of its own on a VM: an idle vCPU's threads wake
    late. On the Zen 5 development VM (cpuidle haltpoll) the first two calls
    after a 30 ms pause each took one 4.0 ms host tick more in about half of
    the rounds, in runs that came and went, whatever the library: a numba
    ``prange`` loop of 0.05 ms, ``torch.sin`` of 0.1 ms on 2 threads, ndconv's
    1->6 k5 layer (0.16 ms after itself, 4.14 ms timed after one settling
    call); the third call never did. With ``GOMP_SPINCOUNT=0`` or ``1000``
    libgomp's threads sleep at once and wake in 0.15 ms: the tick is paid by
    threads that spun and were descheduled by the host. Calls that short
    therefore get a second settling call.

    The minor page faults of each timed call are counted too (the result's
    ``faults``): fresh pages cost ~6 us each on the development VM, and
    whether a library's buffers come from fresh pages depends on what ran
    before in the process (PyTorch's stem forward: 9-14 ms with 1,545 faults
    per call, 3.8-4.5 ms with none).
    """
    rounds = {}
    settle: dict[str, int] = {}
    for name, fn in impls:
        t0 = time.perf_counter()
        fn()
        took = time.perf_counter() - t0
        if took <= SLOW_S:
            # The first call's one-time costs (loading compiled kernels: half a
            # second) are not the call's: judge by a second one. (Judged by the
            # first, the digits CNN lost its settling call and was timed cold,
            # 0.46 ms instead of 0.09.)
            t0 = time.perf_counter()
            fn()
            took = time.perf_counter() - t0
        rounds[name] = 1 if took > SLOW_S else repeats
        settle[name] = 2 if took < WAKE_S else 1 if took < SETTLE_S else 0
    times: dict[str, list[float]] = {name: [] for name, _ in impls}
    faults: dict[str, list[int]] = {name: [] for name, _ in impls}
    for r in range(repeats):
        for name, fn in impls:
            if r >= rounds[name]:
                continue
            time.sleep(PAUSE_S)
            for _ in range(settle[name]):
                fn()
            f0 = _minor_faults()
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
            f1 = _minor_faults()
            if f0 is not None and f1 is not None:
                faults[name].append(f1 - f0)
    out = Timings({name: statistics.median(v) for name, v in times.items()})
    out.faults = {name: statistics.median(v) if v else None for name, v in faults.items()}
    return out


def row(
    group: str,
    case: str,
    impl: str,
    seconds: float,
    flops: float,
    peak: float,
    nd_seconds: float | None = None,
    faults: float | None = None,
) -> Row:
    g = flops / seconds / 1e9
    return {
        "group": group, "case": case, "impl": impl, "ms": seconds * 1e3, "gflops": g,
        "peak": g / peak, "ratio": None if nd_seconds is None else nd_seconds / seconds,
        "note": "", "faults": faults,
    }


def progress(rows: Sequence[Row]) -> None:
    print(f"  ... {rows[-1]['group']}: {rows[-1]['case']} done", file=sys.stderr, flush=True)

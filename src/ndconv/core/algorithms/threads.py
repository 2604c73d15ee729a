"""How many threads the algorithms use: BLAS threads and ``scipy.fft`` workers.

By default ndconv leaves BLAS at its own default (all cores) and gives
``scipy.fft`` one worker per core. :func:`set_num_threads` sets both; the BLAS
part needs ``threadpoolctl`` (installed with scikit-learn), otherwise only the
FFT workers change and the BLAS count stays as the environment variables
(``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``) set it.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

_T = TypeVar("_T")
_R = TypeVar("_R")

if TYPE_CHECKING:
    from collections.abc import Iterator

#: The thread count set (None: the defaults) and threadpoolctl's limiter holding it.
_state: dict[str, Any] = {"threads": None, "limiter": None}


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def get_num_threads() -> int:
    """Number of threads ndconv's algorithms use (BLAS and FFT).

    Returns
    -------
    int
        The value given to :func:`set_num_threads`, or the usable CPU count
        (inside :func:`threads_here`, in that thread: its count).
    """
    return getattr(_here, "threads", None) or _state["threads"] or _cpu_count()


#: Per Python thread: the thread count of a :func:`threads_here` section.
_here = threading.local()


@contextlib.contextmanager
def threads_here(n: int) -> Iterator[None]:
    """Context: ndconv's algorithms run on ``n`` threads in the calling thread.

    For independent pieces of work run side by side (:func:`side_by_side`):
    each piece's methods then take their share of the cores (their chunks,
    numba's loops, ``scipy.fft``'s workers); BLAS's count is process-wide
    and the caller's to set (:func:`blas_single_thread`). Other threads keep
    the process setting.
    """
    from ._jit import numba_threads, set_threads

    keep, keep_numba = getattr(_here, "threads", None), numba_threads()
    _here.threads = n
    set_threads(n)  # numba's count is per thread too
    try:
        yield
    finally:
        _here.threads = keep
        if keep_numba:
            set_threads(keep_numba)


def side_by_side(first: Callable[[], _R], second: Callable[[], _R]) -> tuple[_R, _R]:
    """``(first(), second())``, the two at once, each on half of ndconv's threads.

    Two independent computations that each scale poorly on 2 cores (a
    backward pass's weight and input gradients: their survey passes, copies
    and serial transforms leave a core idle) finish sooner side by side than
    one after the other on all cores. Called from the main thread with more
    than one thread set; otherwise (or if a thread cannot start) one after
    the other, as called. BLAS is on one thread meanwhile; NumPy's error
    state is the caller's in both; the first error raised is re-raised.
    """
    n = get_num_threads()
    if n < 2 or threading.current_thread() is not threading.main_thread():
        return first(), second()
    errs = np.geterr()
    out: list[Any] = [None, None]
    errors: list[BaseException] = []

    def run(i: int, fn: Callable[[], _R]) -> None:
        try:
            with np.errstate(**errs), threads_here(n // 2 if i == 0 else n - n // 2):
                out[i] = fn()
        except BaseException as e:  # noqa: BLE001 (re-raised below)
            errors.append(e)

    with blas_single_thread():
        try:
            done = _helper().submit(run, 1, second)
        except RuntimeError:  # no thread to be had: one after the other
            return first(), second()
        try:
            run(0, first)
        finally:
            done.result()
    if errors:
        raise errors[0]
    return out[0], out[1]


#: ``{process id: executor}`` of :func:`_helper`.
_helpers: dict[int, Any] = {}


def _helper() -> Any:
    """The one kept thread :func:`side_by_side` runs its second piece on (a
    thread per call would start and end one for every backward pass), per
    process: a child forked after it was started inherits the executor but
    not its thread, and work handed to it would wait forever."""
    pid = os.getpid()
    with _lock:
        if pid not in _helpers:
            from concurrent.futures import ThreadPoolExecutor

            _helpers.clear()  # (a parent's, in a forked child: its thread is not here)
            _helpers[pid] = ThreadPoolExecutor(1, thread_name_prefix="ndconv-side")
        return _helpers[pid]


def set_num_threads(n: int | None) -> bool:
    """Use ``n`` threads in BLAS matrix products and ``scipy.fft`` transforms.

    Parameters
    ----------
    n : int or None
        Positive thread count; ``None`` restores the defaults.

    Returns
    -------
    bool
        True if the BLAS thread count was set too (``threadpoolctl`` is
        installed), False if only the FFT workers were.

    Notes
    -----
    The setting is process-wide, like ``torch.set_num_threads``. For a
    temporary change use ``threadpoolctl.threadpool_limits`` as a context
    manager instead.

    Examples
    --------
    >>> import ndconv
    >>> _ = ndconv.set_num_threads(1)
    >>> ndconv.get_num_threads()
    1
    >>> _ = ndconv.set_num_threads(None)
    """
    if n is not None:
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"`n` (={n!r}) must be a positive int or None")
        n = int(n)  # threadpoolctl and numba take Python ints only
    with _lock:
        _state["threads"] = n
        if _single["depth"]:  # a one-thread section is open: apply when it closes
            _single["reapply"] = True
            try:
                import threadpoolctl  # noqa: F401
            except ImportError:
                return n is None
            return True
        return _set_blas(n)


def _set_blas(n: int | None) -> bool:
    """Set (``None``: restore) the BLAS thread count; the caller holds ``_lock``."""
    if _state["limiter"] is not None:
        _state["limiter"].restore_original_limits()
        _state["limiter"] = None
    if n is None:
        return True
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return False
    _load_scipy_blas()  # so that the limit reaches it too
    _state["limiter"] = threadpool_limits(limits=n, user_api="blas")
    return True


def _load_scipy_blas() -> None:
    """Load SciPy's own BLAS (a library of its own beside NumPy's), if SciPy is
    installed: threadpoolctl only sees libraries already loaded."""
    try:
        import scipy.linalg  # noqa: F401
    except ImportError:
        pass


def fft_workers() -> int:
    """``workers`` argument for ``scipy.fft`` calls."""
    return get_num_threads()


_controller: dict[str, Any] = {}

#: BLAS-on-one-thread sections in progress in the main thread (nested), and
#: the (library, thread count) pairs the outermost one will restore (see
#: :func:`blas_single_thread`).
_single: dict[str, Any] = {"depth": 0, "limiter": None, "reapply": False}
_lock = threading.Lock()


@contextlib.contextmanager
def blas_single_thread(numpy_only: bool = False) -> Iterator[None]:
    """Context: BLAS on one thread, while ndconv runs its own threads around it.

    ``numpy_only``: limit only the BLAS that NumPy's own products call, for a
    section that runs nothing but ``np.matmul`` (:func:`matmul`): each
    library costs a get and a set each way, and with OpenCV and SciPy
    loaded there are three (measured: 6.5 us a section against 1.2, 2
    threads, Zen 5), against a 10 us product. Where NumPy's BLAS cannot be
    told apart (one shared library) every library is limited.

    Algorithms that split work into independent chunks (Winograd) run the
    chunks on :func:`get_num_threads` Python threads (NumPy releases the GIL);
    BLAS must not start its own threads inside each, or the cores are
    oversubscribed. Without threadpoolctl this does nothing.

    Only the main thread changes the count; in other threads this does
    nothing. OpenBLAS 0.3.30 and 0.3.31 (NumPy's and SciPy's wheels) ignore
    ``openblas_set_num_threads`` called from any other thread (measured: a
    worker thread's set(1) and set(2) leave the count as it was), so a
    section opened in the main thread and closed last in a worker (6 Python
    threads calling Winograd) had its restore dropped and left the process
    on one BLAS thread for good. The main thread's sections nest (a depth
    count under a lock); worker threads run their BLAS calls on the count
    the main thread set.
    """
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        yield
        return
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with _lock:
        if _single["depth"] == 0:
            # Finding the BLAS libraries is slow (~ms): again only after new
            # modules were imported, which is how another BLAS arrives (OpenCV's
            # wheel brings its own OpenBLAS: one loaded after the first section
            # was never limited).
            if _controller.get("modules") != len(sys.modules):
                _load_scipy_blas()  # so that it is among them
                _controller["modules"] = len(sys.modules)
                blas = [lib for lib in ThreadpoolController().lib_controllers
                        if lib.user_api == "blas"]
                _controller["blas"] = blas
                _controller["numpy"] = [lib for lib in blas if _is_numpys(lib.filepath)] or blas
            # Each library's own get/set (a C call, ~1 us): threadpoolctl's
            # limit() took ~30 us per section, a digits CNN's whole Linear layer.
            _single["limiter"] = []
        # A section inside a NumPy-only one may need the other libraries too.
        held = {id(lib) for lib, _ in _single["limiter"]}
        for lib in _controller["numpy" if numpy_only else "blas"]:
            if id(lib) not in held:
                _single["limiter"].append((lib, lib.get_num_threads()))
                lib.set_num_threads(1)
        _single["depth"] += 1
    try:
        yield
    finally:
        with _lock:
            _single["depth"] -= 1
            if _single["depth"] == 0:
                for lib, n in _single["limiter"]:
                    lib.set_num_threads(n)
                _single["limiter"] = None
                reapply, _single["reapply"] = _single["reapply"], False
                if reapply:  # set_num_threads ran inside: its value wins
                    _set_blas(_state["threads"])


def _is_numpys(path: str) -> bool:
    """Whether the library at ``path`` ships inside NumPy (its wheel puts its
    OpenBLAS in ``numpy.libs`` beside the package, or inside it)."""
    root = os.path.dirname(os.path.realpath(np.__file__))
    path = os.path.realpath(path)
    return any(os.path.commonpath([path, d]) == d for d in (root, root + ".libs"))


#: Products of fewer multiply-adds than this run with BLAS on one thread.
#: OpenBLAS goes multi-threaded from 2**18 (M*N*K); below a few hundred
#: microseconds of work, waking its second thread costs more than it saves,
#: and on a busy machine the handoff waits for a core: (64, 128) @ (128, 64)
#: took 22 us on one thread and 32 on two, (1024, 144) @ (144, 32) 0.19 ms
#: and up to 20 ms (2 cores, load 6). The digits CNN's Linear layers and
#: small im2col products were slower on 2 threads than on 1.
BLAS_THREAD_MACS = 2**23

#: OpenBLAS runs a product of at most this many multiply-adds (each matrix of
#: a stack) on one thread by itself (its GEMM_MULTITHREAD_THRESHOLD, 4 x
#: 65536): no limiter is needed there, and entering one cost ~13 us per call
#: (a batch-1 digits CNN's Linear layers, 2 threads).
BLAS_SERIAL_MACS = 2**18


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b``, with BLAS on one thread when the product is small.

    Parameters
    ----------
    a, b : ndarray
        Operands of ``np.matmul`` (at least 2-D; stacks broadcast).

    Returns
    -------
    ndarray
        ``np.matmul(a, b)``, the same values whichever thread count ran it.

    Notes
    -----
    Below :data:`BLAS_THREAD_MACS` multiply-adds the product runs inside
    :func:`blas_single_thread` (a few us to enter and leave), unless
    ndconv is on one thread anyway or each matrix product is one OpenBLAS
    runs on one thread by itself (:data:`BLAS_SERIAL_MACS`).
    """
    # (the cheap tests first: np.broadcast_shapes alone costs ~1.5 us, more
    # than a batch-1 Linear layer's product)
    if a.ndim >= 2 and b.ndim >= 2:
        one = a.shape[-2] * a.shape[-1] * b.shape[-1]
        if BLAS_SERIAL_MACS < one < BLAS_THREAD_MACS and get_num_threads() > 1:
            stack = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
            if math.prod(stack) * one < BLAS_THREAD_MACS:
                with blas_single_thread(numpy_only=True):
                    return np.matmul(a, b)
    return np.matmul(a, b)


def map_chunks(work: Callable[[_T], _R], chunks: Sequence[_T]) -> list[_R]:
    """``[work(c) for c in chunks]``, on ndconv's threads with single-threaded BLAS.

    Chunks must be independent and write disjoint parts of the output: they
    run on :func:`get_num_threads` Python threads (NumPy, BLAS and the
    compiled kernels release the GIL), BLAS on one thread inside each (small
    products scale badly on BLAS's own threads, and its threads inside ours
    would oversubscribe the cores) when called from the main thread (see
    :func:`blas_single_thread`).
    """
    nthreads = get_num_threads()
    if nthreads > 1 and len(chunks) > 1:
        from concurrent.futures import ThreadPoolExecutor

        # NumPy's error state is per thread: the caller's (NaN and Inf are
        # values inside an algorithm, see algorithms.execute) holds in ours too.
        errs = np.geterr()

        def run(chunk: _T) -> _R:
            with np.errstate(**errs):
                return work(chunk)

        with blas_single_thread(), ThreadPoolExecutor(min(nthreads, len(chunks))) as pool:
            return list(pool.map(run, chunks))
    return [work(c) for c in chunks]

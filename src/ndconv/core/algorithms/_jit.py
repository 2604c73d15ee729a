"""Optional compiled kernels (numba), used when ``numba`` is installed.

NumPy cannot fuse the per-tap multiply-adds of a depthwise or single-channel
filter: each tap is a pass over memory. This kernel does all taps of one
output row while the row sits in L1 cache, on all cores (``prange``). It is
N-d like everything else: the padded input is flattened and each tap is a
constant offset into it, so one loop serves every number of dims. Without
numba (``pip install 'ndconv[jit]'``) the NumPy path in ``depthwise.py`` runs.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util

import numpy as np

#: The compiled depthwise kernels (see :func:`build_once`).
_KERNELS: dict = {}

#: LLVM's fast-math flags of the compiled correlation kernels (direct, rows,
#: small): reassociation (the dot products vectorise) and contraction into
#: FMAs, but no assumption that NaN and Inf never occur (they are values
#: here, as in PyTorch).
FAST_MATH = {"reassoc", "contract", "nsz", "arcp"}


@functools.cache
def numba_installed() -> bool:
    """Whether numba can be imported (found once; importing it is what costs)."""
    return importlib.util.find_spec("numba") is not None


def _build():
    from numba import njit, prange

    @njit(parallel=True, fastmath=True, cache=True, nogil=True)
    def taps_kernel(xf, wt, offs, out, shape, gstr, s_last, plane_group):
        # xf: (planes, L) padded input, flattened; wt: (groups, Og, T);
        # offs: flat offset of each tap; out: (planes, Og, Q, W), Q rows of W
        # outputs along the last dim; shape/gstr: the leading output dims and
        # their flat input strides (stride * grid stride).
        planes, Og, Q, W = out.shape
        T = offs.shape[0]
        nd = shape.shape[0]
        for idx in prange(planes * Q):
            p = idx // Q
            q = idx - p * Q
            base = 0
            r = q
            for i in range(nd - 1, -1, -1):
                qi = r % shape[i]
                r //= shape[i]
                base += qi * gstr[i]
            g = plane_group[p]
            for o in range(Og):
                row = out[p, o, q]
                if s_last == 1:
                    src = xf[p, base + offs[0]:base + offs[0] + W]
                    w0 = wt[g, o, 0]
                    for j in range(W):
                        row[j] = w0 * src[j]
                    t = 1
                    while t + 2 < T:  # three taps per pass over the row
                        wa, wb, wc = wt[g, o, t], wt[g, o, t + 1], wt[g, o, t + 2]
                        sa = xf[p, base + offs[t]:base + offs[t] + W]
                        sb = xf[p, base + offs[t + 1]:base + offs[t + 1] + W]
                        sc = xf[p, base + offs[t + 2]:base + offs[t + 2] + W]
                        for j in range(W):
                            row[j] += wa * sa[j] + wb * sb[j] + wc * sc[j]
                        t += 3
                    while t < T:
                        wv = wt[g, o, t]
                        src = xf[p, base + offs[t]:base + offs[t] + W]
                        for j in range(W):
                            row[j] += wv * src[j]
                        t += 1
                else:
                    w0 = wt[g, o, 0]
                    o0 = base + offs[0]
                    for j in range(W):
                        row[j] = w0 * xf[p, o0 + j * s_last]
                    for t in range(1, T):
                        wv = wt[g, o, t]
                        ot = base + offs[t]
                        for j in range(W):
                            row[j] += wv * xf[p, ot + j * s_last]
        return out

    @njit(parallel=True, fastmath=True, cache=True, nogil=True)
    def border_kernel(xf, wt, tapidx, out, in_shape, in_gstr, out_shape, stride,
                      dilation, lo, plane_group):
        # Zero padding without a padded copy: taps that fall outside the
        # input contribute nothing, so each (row, tap) keeps only the part of
        # the row whose inputs exist. xf: (planes, prod(S_in)); tapidx: (T, N)
        # kernel index per dim; in_gstr: flat stride of each input dim.
        planes, Og, Q, W = out.shape
        T, N = tapidx.shape
        last = N - 1
        s, d, l0, n_last = stride[last], dilation[last], lo[last], in_shape[last]
        for idx in prange(planes * Q):
            p = idx // Q
            q = idx - p * Q
            coord = np.empty(N, np.int64)
            r = q
            for i in range(last - 1, -1, -1):
                coord[i] = r % out_shape[i]
                r //= out_shape[i]
            g = plane_group[p]
            for o in range(Og):
                row = out[p, o, q]
                row[:] = 0
                for t in range(T):
                    base = 0
                    inside = True
                    for i in range(last):
                        c = coord[i] * stride[i] + tapidx[t, i] * dilation[i] - lo[i]
                        if c < 0 or c >= in_shape[i]:
                            inside = False
                            break
                        base += c * in_gstr[i]
                    if not inside:
                        continue
                    # input column of output j: j*s + t*d - lo, kept in [0, n_last)
                    shift = tapidx[t, last] * d - l0
                    j0 = 0 if shift >= 0 else (-shift + s - 1) // s
                    j1 = min(W - 1, (n_last - 1 - shift) // s) if n_last - 1 - shift >= 0 else -1
                    if j1 < j0:
                        continue
                    wv = wt[g, o, t]
                    if s == 1:
                        src = xf[p, base + shift + j0:base + shift + j1 + 1]
                        dst = row[j0:j1 + 1]
                        for j in range(j1 - j0 + 1):
                            dst[j] += wv * src[j]
                    else:
                        for j in range(j0, j1 + 1):
                            row[j] += wv * xf[p, base + shift + j * s]
        return out

    return taps_kernel, border_kernel


def build_once(store, build):
    """The kernels ``build()`` compiles, built on the first call and kept in
    ``store`` (a dict); None, kept too, where numba cannot be imported. A test
    sets ``store["k"] = None`` to run the NumPy paths."""
    if "k" not in store:
        try:
            import numba  # noqa: F401
        except ImportError:
            store["k"] = None
        else:
            store["k"] = build()
    return store["k"]


def parallel_and_serial(fn, **opts):
    """``fn`` compiled twice: with ``prange`` on numba's threads, and serially.

    Each variant gets its own on-disk cache entries. numba's cache key is the
    signature, the CPU and the function's bytecode (and closure), not the
    ``parallel`` flag, and its file is named after ``fn.__qualname__``: two
    ``njit(cache=True)`` of one function share the entries, and the second to
    compile in a process loads the first's code. The serial variant then ran
    the parallel one (waking numba's OpenMP threads at "1 thread", where a
    call's own threads or torch's were meant to have the cores) or the
    parallel one ran serially (2 threads no faster than 1). So the serial one
    is compiled from a copy of ``fn`` with its own ``__qualname__``.

    Returns
    -------
    tuple
        ``(parallel, serial)`` numba dispatchers.
    """
    import types

    from numba import njit

    serial = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial",
                                fn.__defaults__, fn.__closure__)
    serial.__qualname__ = fn.__qualname__ + "_serial"
    serial.__module__ = fn.__module__
    return njit(parallel=True, **opts)(fn), njit(**opts)(serial)


def taps_kernel():
    """``(padded_kernel, border_kernel)`` compiled, or None without numba."""
    return build_once(_KERNELS, _build)


def set_threads(n):
    """Give numba's thread pool ``n`` threads (if numba is installed).

    The first call starts numba's pool. With numba's ``omp`` threading layer
    that start calls ``omp_set_num_threads(NUMBA_NUM_THREADS)`` in an OpenMP
    runtime PyTorch shares: a program that had run ``torch.set_num_threads(1)``
    and one torch op found torch on every core after its first ndconv call
    (the benchmark's "1 thread" column timed torch on 2 threads). So the
    thread counts of the OpenMP runtimes loaded before are put back.
    """
    import sys

    numba = sys.modules.get("numba")
    if numba is None:
        # Not imported yet: the kernel about to run will import it, and its
        # first parallel launch would start the pool without the counts put
        # back (the depthwise layer's first call left torch on 2 threads).
        if not numba_installed():
            return
        import numba
    n = min(n, numba.config.NUMBA_NUM_THREADS)
    if _LAUNCHED:
        numba.set_num_threads(n)
        return
    with _openmp_threads_kept():
        numba.set_num_threads(n)  # starts numba's pool
    _LAUNCHED.append(True)


def numba_threads():
    """numba's thread count in the calling thread, or None before its pool
    was started by :func:`set_threads` (or without numba)."""
    import sys

    numba = sys.modules.get("numba")
    return numba.get_num_threads() if numba is not None and _LAUNCHED else None


#: Non-empty once numba's thread pool has been started by :func:`set_threads`.
_LAUNCHED: list = []


@contextlib.contextmanager
def _openmp_threads_kept():
    """Context: the thread counts of loaded OpenMP runtimes are the same after it."""
    import sys

    restore = []
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        pass
    else:
        for lib in ThreadpoolController().select(user_api="openmp").lib_controllers:
            restore.append(functools.partial(lib.set_num_threads, lib.num_threads))
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "get_num_threads"):
        restore.append(functools.partial(torch.set_num_threads, torch.get_num_threads()))
    try:
        yield
    finally:
        for put_back in restore:
            put_back()

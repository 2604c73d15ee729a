"""Compiled max pooling and its gradient (numba), used when ``numba`` is installed.

The NumPy gradient finds each window's winner tap by tap with whole-array
comparisons (five passes per tap) and then scatters; for the small layers
of a small network that is tens of NumPy calls per step. Here one pass over
the outputs finds each window's winner (the first maximum, or the last NaN
in a window holding NaN, as PyTorch) through a table of each window's input
offsets and adds the output gradient there. N-d: the table is flat offsets.
The forward pass takes the same table: one call instead of one NumPy
maximum per tap and a padded copy.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .algorithms._jit import build_once

#: Most entries (outputs x taps) of the offsets table of one call's geometry.
TABLE_ENTRIES = 2**22

#: Fewest table entries (outputs x taps) for which the kernels run on numba's threads.
THREAD_ENTRIES = 2**18

_KERNELS: dict = {}


def _build():
    from numba import prange

    def body(gy, x, y, tab, gx):
        # gy, y: (planes, P); x, gx: (planes, S); tab: (P, T) input offset
        # of each window's taps in row-major order, -1 in the padding. No
        # fastmath: the NaN tests must stay.
        planes, P = y.shape
        T = tab.shape[1]
        for pl in prange(planes):
            gx[pl, :] = 0  # zeroed plane by plane, while it sits in cache
            for q in range(P):
                yv = y[pl, q]
                nan = yv != yv
                win = -1
                for t in range(T):
                    off = tab[q, t]
                    if off < 0:
                        continue
                    v = x[pl, off]
                    if nan:
                        if v != v:
                            win = off  # the last NaN wins
                    elif v == yv:
                        win = off  # the first maximum wins
                        break
                if win >= 0:
                    gx[pl, win] += gy[pl, q]
        return gx

    def forward(x, tab, y):
        # y: (planes, P) = max over each window's taps inside the input; NaN
        # if the window holds one (as np.maximum and PyTorch). No fastmath.
        planes, P = y.shape
        T = tab.shape[1]
        for pl in prange(planes):
            for q in range(P):
                m = -np.inf
                for t in range(T):
                    off = tab[q, t]
                    if off < 0:
                        continue
                    v = x[pl, off]
                    if v > m or v != v:
                        m = v
                        if v != v:
                            break
                y[pl, q] = m
        return y

    from .algorithms._jit import parallel_and_serial

    opts = dict(cache=True, nogil=True)
    return parallel_and_serial(body, **opts) + parallel_and_serial(forward, **opts)


def kernels():
    """``(gradient, gradient_serial, forward, forward_serial)`` compiled, or None."""
    return build_once(_KERNELS, _build)


@functools.lru_cache(maxsize=256)
def offsets(spatial, k, s, lo, d, out):
    """``(prod(out), prod(k))`` flat input offset of every window's taps (-1: padding)."""
    n = len(spatial)
    flat = np.zeros((*out, *k), np.int64)
    valid = np.ones((*out, *k), bool)
    stride = 1
    for i in range(n - 1, -1, -1):
        shape = [1] * (2 * n)
        shape[i], shape[n + i] = out[i], k[i]
        c = (np.arange(out[i])[:, None] * s[i] + np.arange(k[i])[None, :] * d[i] - lo[i])
        c = c.reshape(shape)
        valid &= (c >= 0) & (c < spatial[i])
        flat += c * stride
        stride *= spatial[i]
    flat[~valid] = -1
    return flat.reshape(math.prod(out), math.prod(k))


def applies(x, out, k) -> bool:
    """Whether the compiled gradient takes this call (float32/float64, table size)."""
    return (x.dtype in (np.float32, np.float64) and kernels() is not None
            and math.prod(out) * math.prod(k) <= TABLE_ENTRIES)


def _threaded(size, threads, which):
    """The kernel ``which`` (0: gradient, 2: forward) on threads for large arrays."""
    if threads > 1 and size >= THREAD_ENTRIES:
        from .algorithms._jit import set_threads

        set_threads(threads)
        return kernels()[which]
    return kernels()[which + 1]


def max_forward(x, k, s, lo, d, out, threads):
    """Max pooling of ``x`` (B, C, *S) to spatial size ``out`` (-inf padding)."""
    spatial = x.shape[2:]
    tab = offsets(tuple(spatial), tuple(k), tuple(s), tuple(lo), tuple(d), tuple(out))
    planes = x.shape[0] * x.shape[1]
    y = np.empty((planes, math.prod(out)), x.dtype)
    _threaded(y.size * tab.shape[1], threads, 2)(
        np.ascontiguousarray(x).reshape(planes, math.prod(spatial)), tab, y)
    return y.reshape(*x.shape[:2], *out)


class ForwardPlan:
    """:func:`max_forward` for one input shape and geometry, its table and sizes
    found once: a remembered call (a layer's, every step) is then one
    allocation and one compiled call, which is what costs at batch 1.

    Holds no values of any array; the kernels are looked up per call, so a
    test that hides numba (``_KERNELS["k"] = None``) is obeyed (``None``).
    """

    __slots__ = ("shape", "tab", "planes", "size", "out_shape", "threaded")

    def __init__(self, shape, k, s, lo, d, out):
        spatial = tuple(shape[2:])
        self.shape = tuple(shape)
        self.tab = offsets(spatial, tuple(k), tuple(s), tuple(lo), tuple(d), tuple(out))
        self.planes = shape[0] * shape[1]
        self.size = math.prod(spatial)
        self.out_shape = (*shape[:2], *out)
        # as _threaded: the pool only for large calls (then the thread count is read)
        self.threaded = self.planes * math.prod(out) * self.tab.shape[1] >= THREAD_ENTRIES

    def __call__(self, x):
        """Max pooling of ``x`` (of ``shape``, float32/float64), or None without the kernels."""
        ks = _KERNELS.get("k")
        if ks is None:
            return None
        y = np.empty((self.planes, self.tab.shape[0]), x.dtype)
        xf = np.ascontiguousarray(x).reshape(self.planes, self.size)
        if self.threaded:
            from .algorithms.threads import get_num_threads

            threads = get_num_threads()
            fn = _threaded(y.size * self.tab.shape[1], threads, 2)
        else:
            fn = ks[3]
        fn(xf, self.tab, y)
        return y.reshape(self.out_shape)


def max_backward(gy, x, y, k, s, lo, d, threads):
    """Gradient of max pooling (windows ``k``, stride ``s``, padding ``lo`` before,
    dilation ``d``) for output gradient ``gy``, input ``x`` and output ``y``."""
    spatial, out = x.shape[2:], y.shape[2:]
    tab = offsets(tuple(spatial), tuple(k), tuple(s), tuple(lo), tuple(d), tuple(out))
    planes = x.shape[0] * x.shape[1]
    gx = np.empty((planes, math.prod(spatial)), gy.dtype)
    P = math.prod(out)
    _threaded(gx.size, threads, 0)(np.ascontiguousarray(gy).reshape(planes, P),
                                   np.ascontiguousarray(x).reshape(planes, gx.shape[1]),
                                   np.ascontiguousarray(y).reshape(planes, P), tab, gx)
    return gx.reshape(x.shape)

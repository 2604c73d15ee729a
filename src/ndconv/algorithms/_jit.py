"""Optional compiled kernels (numba), used when ``numba`` is installed.

NumPy cannot fuse the per-tap multiply-adds of a depthwise or single-channel
filter: each tap is a pass over memory. This kernel does all taps of one
output row while the row sits in L1 cache, on all cores (``prange``). It is
N-d like everything else: the padded input is flattened and each tap is a
constant offset into it, so one loop serves every number of dims. Without
numba (``pip install 'ndconv[jit]'``) the NumPy path in ``depthwise.py`` runs.
"""

from __future__ import annotations

_KERNEL = None


def _build(numba):
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

    return taps_kernel


def taps_kernel():
    """The compiled depthwise kernel, or None when numba is not installed."""
    global _KERNEL
    if _KERNEL is None:
        try:
            import numba
        except ImportError:
            _KERNEL = False
        else:
            _KERNEL = _build(numba)
    return _KERNEL or None


def set_threads(n):
    """Give numba's thread pool ``n`` threads (if numba is loaded)."""
    import sys

    numba = sys.modules.get("numba")
    if numba is not None:
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))

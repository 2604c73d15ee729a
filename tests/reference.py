"""A tiny, obviously-right NumPy reference for the N-d convolution forward pass.

``np.pad`` for the border, an ``as_strided`` window view for the sliding
windows, ``einsum`` for the sum over channels and taps (as JAX's
``lax_reference``). Slow and memory-hungry on purpose: it exists to be read,
not to be fast, and it shares no code with ndconv.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

_NP_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "edge",
            "circular": "wrap"}


def conv_ref(x, w, bias=None, stride=1, pairs=0, dilation=1, groups=1,
             padding_mode="zeros"):
    """``out[b, o, p] = bias[o] + sum_{c, t} w[o, c, t] * xp[b, g*Cg + c, p*s + t*d]``.

    Parameters
    ----------
    x : ndarray, shape (B, C, *S)
    w : ndarray, shape (O, C // groups, *K)
    bias : ndarray, shape (O,), optional
    stride, dilation : int or tuple of N ints
    pairs : int or tuple of N (lo, hi) pairs
        Explicit padding only (the string forms are resolved by the caller).
    groups : int
    padding_mode : {'zeros', 'reflect', 'replicate', 'circular'}
    """
    n = w.ndim - 2
    stride = (stride,) * n if np.isscalar(stride) else tuple(stride)
    dilation = (dilation,) * n if np.isscalar(dilation) else tuple(dilation)
    if np.isscalar(pairs):
        pairs = ((pairs, pairs),) * n
    xp = np.pad(x, [(0, 0), (0, 0), *pairs], mode=_NP_MODE[padding_mode])
    B, C = x.shape[:2]
    O, Cg = w.shape[:2]
    K = w.shape[2:]
    S = xp.shape[2:]
    out_sp = tuple((s - d * (k - 1) - 1) // st + 1
                   for s, k, st, d in zip(S, K, stride, dilation))
    # View (B, C, *out, *K): window at output p, tap t reads xp[p*s + t*d].
    view = as_strided(
        xp,
        shape=(B, C, *out_sp, *K),
        strides=(*xp.strides[:2],
                 *(st * s for st, s in zip(xp.strides[2:], stride)),
                 *(st * d for st, d in zip(xp.strides[2:], dilation))),
        writeable=False,
    )
    letters = "ijklmnopqr"[:n]
    taps = "tuvwxyzTUV"[:n]
    Og = O // groups
    outs = []
    for g in range(groups):
        xg = view[:, g * Cg:(g + 1) * Cg]
        wg = w[g * Og:(g + 1) * Og]
        outs.append(np.einsum(f"bc{letters}{taps},oc{taps}->bo{letters}", xg, wg))
    out = np.concatenate(outs, axis=1)
    if bias is not None:
        out = out + bias.reshape((-1,) + (1,) * n)
    return out


def numeric_grad(f, a, eps=1e-6):
    """Central differences of the scalar ``f()`` with respect to every entry of ``a``
    (changed in place and restored)."""
    g = np.zeros_like(a)
    for i in np.ndindex(a.shape):
        old = a[i]
        a[i] = old + eps
        fp = f()
        a[i] = old - eps
        fm = f()
        a[i] = old
        g[i] = (fp - fm) / (2 * eps)
    return g

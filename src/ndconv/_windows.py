"""The one padding and sliding-window helper.

Convolution (every algorithm), its gradients, pooling and im2col all go
through :func:`pad` and :func:`windows`, so stride, dilation, padding and
boundary modes are handled in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.lib.stride_tricks import as_strided

if TYPE_CHECKING:
    from ._typing import NDArray, Pairs

_NP_MODES: dict[str, Literal["reflect", "edge", "wrap"]] = {
    "reflect": "reflect",
    "replicate": "edge",
    "circular": "wrap",
}


def pad(
    x: NDArray[Any],
    pairs: Pairs,
    mode: str = "zeros",
    *,
    lhs_dilation: Sequence[int] | None = None,
    channels_last: bool = False,
    value: Any = 0,
) -> NDArray[Any]:
    """Pad (or crop) the trailing spatial dims of ``x``.

    Parameters
    ----------
    x : ndarray, shape (B, C, *S)
    pairs : tuple of (int, int)
        ``(lo, hi)`` per spatial dim. Negative values crop, which the
        transposed convolution needs when its ``padding`` exceeds ``d*(k-1)``.
    mode : {'zeros', 'reflect', 'replicate', 'circular'}
    lhs_dilation : tuple of int, optional
        Insert ``r - 1`` zeros between input elements along each spatial dim
        before padding (zeros mode only); a strided convolution's gradient is
        a convolution of the gradient dilated this way.
    channels_last : bool
        Return a C-contiguous array of shape ``(B, *S_padded, C)``; the layout
        change rides on the copy that padding makes anyway.
    value : scalar
        Fill value for ``mode='zeros'`` (pooling pads with -inf).

    Returns
    -------
    ndarray
    """
    n = len(pairs)
    lead = x.ndim - n
    r = lhs_dilation or (1,) * n
    if mode != "zeros":
        assert all(v == 1 for v in r), "lhs_dilation needs zero padding"
        # np.pad cannot crop; padding here is non-negative (validated upstream).
        padded = np.pad(x, [(0, 0)] * lead + list(pairs), mode=_NP_MODES[mode])
        if channels_last:
            return np.ascontiguousarray(np.moveaxis(padded, 1, -1))
        return padded
    dil = [(s - 1) * ri + 1 for s, ri in zip(x.shape[lead:], r)]
    shape = [dl + lo + hi for dl, (lo, hi) in zip(dil, pairs)]
    if any(s <= 0 for s in shape):
        raise ValueError(f"padding {pairs} leaves an empty array")
    # Source slice (in dilated coordinates) that lands inside the result.
    src: list[slice] = []
    dst: list[slice] = []
    for dl, (lo, hi), ri, sz in zip(dil, pairs, r, shape):
        start = max(0, -lo)  # first dilated index kept
        stop = dl - max(0, -hi)  # one past the last kept
        first = -(-start // ri) * ri  # first real element at or after start
        if first >= stop:
            src.append(slice(0, 0))
            dst.append(slice(0, 0))
            continue
        src.append(slice(first // ri, (stop - 1) // ri + 1))
        d0 = first + lo
        dst.append(slice(d0, d0 + ((stop - 1) // ri - first // ri) * ri + 1, ri))
    lead_shape = list(x.shape[:lead])
    if channels_last:
        out = np.full([lead_shape[0], *shape, *lead_shape[1:]], value, dtype=x.dtype)
        moved = np.moveaxis(x, 1, -1) if lead >= 2 else x
        # (index tuples named first: mypy reads ``a[(s, *t)]`` as 3.11's ``a[s, *t]``)
        to: tuple[Any, ...] = (slice(None), *dst)
        of: tuple[Any, ...] = (slice(None), *src)
        out[to] = moved[of]
    else:
        out = np.full(lead_shape + shape, value, dtype=x.dtype)
        to, of = (Ellipsis, *dst), (Ellipsis, *src)
        out[to] = x[of]
    return out


def windows(
    x: NDArray[Any],
    kernel_size: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
    axis: int = -1,
) -> NDArray[Any]:
    """Read-only view of every window of ``x`` along N consecutive axes.

    The N axes ending at ``axis`` (default: the last N) are replaced by the
    output positions, and N window axes are appended at the end, as in
    ``numpy.lib.stride_tricks.sliding_window_view`` but with stride and
    dilation. No copy is made.

    Parameters
    ----------
    x : ndarray
    kernel_size, stride, dilation : tuple of int, length N
    axis : int
        Position of the last of the N windowed axes.

    Returns
    -------
    ndarray
        Shape ``x.shape[:first] + S_out + x.shape[last+1:] + kernel_size`` with
        ``S_out[i] = (S[i] - d[i]*(k[i]-1) - 1) // s[i] + 1``.
    """
    n = len(kernel_size)
    last = axis % x.ndim
    first = last - n + 1
    sizes = x.shape[first : last + 1]
    strides = x.strides[first : last + 1]
    out = tuple(
        (sz - d * (k - 1) - 1) // s + 1
        for sz, k, s, d in zip(sizes, kernel_size, stride, dilation)
    )
    shape = x.shape[:first] + out + x.shape[last + 1 :] + tuple(kernel_size)
    # A step taken only once (one output, one tap) is never used: 0 there, so
    # that a huge stride or dilation cannot overflow the strides of the view.
    st = (
        x.strides[:first]
        + tuple(t * s if o > 1 else 0 for t, s, o in zip(strides, stride, out))
        + x.strides[last + 1 :]
        + tuple(t * d if k > 1 else 0 for t, d, k in zip(strides, dilation, kernel_size))
    )
    return as_strided(x, shape=shape, strides=st, writeable=False)


def fold_padding(
    g: NDArray[Any], spatial: Sequence[int], pairs: Pairs, mode: str
) -> NDArray[Any]:
    """Adjoint of :func:`pad`: sum the gradient of a padded array into the source.

    Parameters
    ----------
    g : ndarray, shape (B, C, *S_padded)
    spatial : tuple of int
        The unpadded spatial shape ``S``.
    pairs : tuple of (int, int)
    mode : {'zeros', 'reflect', 'replicate', 'circular'}

    Returns
    -------
    ndarray, shape (B, C, *S)
    """
    n = len(spatial)
    lead = g.ndim - n
    for i, (size, (lo, hi)) in enumerate(zip(spatial, pairs)):
        ax = lead + i
        core = _take(g, ax, slice(lo, lo + size)).copy()
        if mode != "zeros":
            # Each padded cell copies exactly one source cell; add it back there.
            for j in range(lo):
                _take(core, ax, _source(-lo + j, size, mode))[...] += _take(g, ax, j)
            for j in range(hi):
                _take(core, ax, _source(size + j, size, mode))[...] += _take(
                    g, ax, lo + size + j
                )
        g = core
    return g


def _take(a: NDArray[Any], axis: int, index: int | slice) -> NDArray[Any]:
    key = [slice(None)] * a.ndim
    key[axis] = index if isinstance(index, slice) else slice(index, index + 1)
    return a[tuple(key)]


def _source(i: int, size: int, mode: str) -> int:
    """Index of the source element that padded position ``i`` copies."""
    if mode == "replicate":
        return min(max(i, 0), size - 1)
    if mode == "circular":
        return i % size
    # reflect (without repeating the edge), valid for |overhang| < size
    if i < 0:
        return -i
    if i >= size:
        return 2 * (size - 1) - i
    return i


"""The one padding and sliding-window helper.

Convolution (every algorithm), its gradients, pooling and im2col all go
through :func:`pad` and :func:`windows`, so stride, dilation, padding and
boundary modes are handled in one place: :func:`tap_slices` is where one
kernel tap reads, :func:`source_index` which input cell a padded position
copies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ._args import output_size

if TYPE_CHECKING:
    from ._typing import ArrayLike, NDArray, Pairs

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
        out = _frame([lead_shape[0], *shape, *lead_shape[1:]], dst, 1, value, x.dtype)
        moved = np.moveaxis(x, 1, -1) if lead >= 2 else x
        # (index tuples named first: mypy reads ``a[(s, *t)]`` as 3.11's ``a[s, *t]``)
        to: tuple[Any, ...] = (slice(None), *dst)
        of: tuple[Any, ...] = (slice(None), *src)
        out[to] = moved[of]
    else:
        out = _frame(lead_shape + shape, dst, lead, value, x.dtype)
        to, of = (Ellipsis, *dst), (Ellipsis, *src)
        out[to] = x[of]
    return out


def _frame(shape: list[int], dst: list[slice], first: int, value: Any,
           dtype: Any) -> NDArray[Any]:
    """An array of ``shape`` holding ``value`` everywhere but the boxes
    ``dst`` (on dims ``first``...), which the caller then fills.

    Where ``dst`` steps by 1 only the border is written (a full fill first
    was a second pass over the whole array: 1-D 1M samples, 1 ms of a 19 ms
    FFT call); a strided ``dst`` (input dilation) leaves holes: filled whole.
    """
    if any(d.step not in (None, 1) or d.start == d.stop for d in dst):
        return np.full(shape, value, dtype=dtype)
    out = np.empty(shape, dtype=dtype)
    for i, d in enumerate(dst):
        ax = first + i
        lo: tuple[Any, ...] = (slice(None),) * ax + (slice(0, d.start),)
        hi: tuple[Any, ...] = (slice(None),) * ax + (slice(d.stop, None),)
        out[lo] = value
        out[hi] = value
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
    out = output_size(sizes, kernel_size, stride, ((0, 0),) * n, dilation)
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


def tap_slices(
    tap: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
    out_spatial: Sequence[int],
) -> tuple[slice, ...]:
    """Slices of the padded input that kernel tap ``tap`` reads for every output.

    Output position ``p`` reads ``p*stride + tap*dilation``: along each dim
    the slice ``tap*d : tap*d + s*(S_out - 1) + 1 : s``.
    """
    return tuple(
        slice(t * d, t * d + s * (o - 1) + 1, s)
        for t, d, s, o in zip(tap, dilation, stride, out_spatial)
    )


def source_index(
    p: ArrayLike, n: int, mode: str
) -> tuple[NDArray[np.intp], NDArray[np.bool_]]:
    """The input cells that padded positions ``p`` copy, under a boundary mode.

    The rules of ``torch.nn.functional.pad`` (and ``np.pad``'s ``edge``,
    ``wrap``, ``reflect``), in one place for every caller that maps padded
    positions back to the input instead of padding an array.

    Parameters
    ----------
    p : int or ndarray of int
        Positions in input coordinates: ``< 0`` or ``>= n`` lie in the padding.
    n : int
        The input's size along the dim.
    mode : {'zeros', 'reflect', 'replicate', 'circular'}

    Returns
    -------
    (index, inside) : ndarrays of the shape of ``p``
        ``index`` lies in ``[0, n)``; ``inside`` is False where the position
        reads a zero of the padding (``mode='zeros'`` only; ``index`` is then
        the clipped position, safe to gather with and to be masked out).
    """
    p = np.asarray(p)
    inside = (p >= 0) & (p < n)
    if mode == "zeros" or mode == "replicate":
        index = np.clip(p, 0, n - 1)
    elif mode == "circular":
        index = np.mod(p, n)
    elif mode == "reflect":  # mirror about the edge cells, which are not repeated
        period = 2 * (n - 1)
        q = np.mod(p, period) if period else np.zeros_like(p)
        index = np.where(q < n, q, period - q)
    else:
        raise ValueError(f"unknown boundary mode {mode!r}")
    if mode != "zeros":
        inside = np.ones_like(inside)
    return index, inside


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
    """Index of the source element that padded position ``i`` copies (one int)."""
    return int(source_index(i, size, mode)[0])



# --------------------------------------------------------------------------
# the same padding for arrays of any array-API library (torch, JAX, CuPy,
# dask, array_api_strict): out-of-place operations of the standard only, so
# autograd and jax.grad see through them


def _axis_slice(a: Any, axis: int, start: int, stop: int) -> Any:
    key = [slice(None)] * a.ndim
    key[axis] = slice(start, stop)
    return a[tuple(key)]


def _device(a: Any) -> Any:
    return getattr(a, "device", None)


def pad_portable(
    xp: Any,
    x: Any,
    pairs: Pairs,
    mode: str = "zeros",
    *,
    lhs_dilation: Sequence[int] | None = None,
    value: Any = 0,
) -> Any:
    """:func:`pad` written against the array API standard (namespace ``xp``).

    Same arguments and result as :func:`pad` (without ``channels_last``): the
    trailing spatial dims are dilated by ``lhs_dilation``, then cropped or
    padded by ``pairs``. The boundary modes concatenate the source cells that
    :func:`_source` names (see :func:`_cells`), so the rule has one home for
    every library; zeros (or ``value``) are concatenated on.
    """
    n = len(pairs)
    lead = x.ndim - n
    r = lhs_dilation or (1,) * n
    for i, ((lo, hi), ri) in enumerate(zip(pairs, r)):
        ax = lead + i
        if ri > 1:
            # Interleave r-1 zeros after every element: a new axis of length r
            # (the element and its zeros) merged into this one, minus the tail.
            size = x.shape[ax]
            e = xp.expand_dims(x, axis=ax + 1)
            zshape = list(e.shape)
            zshape[ax + 1] = ri - 1
            z = xp.zeros(tuple(zshape), dtype=x.dtype, device=_device(x))
            e = xp.concat([e, z], axis=ax + 1)
            merged = list(x.shape)
            merged[ax] = size * ri
            x = _axis_slice(xp.reshape(e, tuple(merged)), ax, 0, (size - 1) * ri + 1)
        size = x.shape[ax]
        if size + lo + hi <= 0:
            raise ValueError(f"padding {pairs} leaves an empty array")
        if lo < 0 or hi < 0:  # crop (a transposed convolution's large padding)
            # (the crop may take every cell and the other side's padding
            # still leave zeros, as in pad)
            start = min(max(0, -lo), size)
            x = _axis_slice(x, ax, start, max(start, size - max(0, -hi)))
            lo, hi, size = max(lo, 0), max(hi, 0), x.shape[ax]
        if not (lo or hi):
            continue
        if mode == "zeros":
            parts = []
            for width in (lo, hi):
                shape = list(x.shape)
                shape[ax] = width
                parts.append(xp.full(tuple(shape), value, dtype=x.dtype, device=_device(x)))
            x = xp.concat([parts[0], x, parts[1]], axis=ax)
        else:
            parts = [_cells(xp, x, ax, [_source(j, size, mode) for j in range(-lo, 0)]),
                     x,
                     _cells(xp, x, ax, [_source(j, size, mode) for j in range(size, size + hi)])]
            x = xp.concat([p for p in parts if p is not None], axis=ax)
    return x


def _cells(xp: Any, x: Any, axis: int, idx: list[int]) -> Any:
    """``x``'s cells ``idx`` along ``axis`` as slices, flips and broadcasts.

    The boundary modes' sources (:func:`_source`) are runs: one cell repeated
    (replicate), ascending (circular) or descending (reflect). Slices keep a
    chunked (dask) array's chunks, which a gather (``take``) would merge.
    """
    if not idx:
        return None
    n, first = len(idx), idx[0]
    if idx == [first] * n:
        one = _axis_slice(x, axis, first, first + 1)
        shape = list(one.shape)
        shape[axis] = n
        return xp.broadcast_to(one, tuple(shape))
    if idx == list(range(first, first + n)):
        return _axis_slice(x, axis, first, first + n)
    if idx == list(range(first, first - n, -1)):
        return xp.flip(_axis_slice(x, axis, first - n + 1, first + 1), axis=axis)
    return xp.take(x, xp.asarray(idx, device=_device(x)), axis=axis)


def fold_padding_portable(
    xp: Any, g: Any, spatial: Sequence[int], pairs: Pairs, mode: str
) -> Any:
    """:func:`fold_padding` (the adjoint of the padding) against the array API.

    Each padded cell's gradient is added to the source cell :func:`_source`
    names, out of place (the standard has no scatter-add): one small
    concatenation per padded cell, so its cost grows with the padding only.
    """
    n = len(spatial)
    lead = g.ndim - n
    for i, (size, (lo, hi)) in enumerate(zip(spatial, pairs)):
        ax = lead + i
        core = _axis_slice(g, ax, lo, lo + size)
        if mode != "zeros":
            padded = [(j, -lo + j) for j in range(lo)] + [
                (lo + size + j, size + j) for j in range(hi)
            ]
            for j, pos in padded:
                src = _source(pos, size, mode)
                cell = _axis_slice(core, ax, src, src + 1) + _axis_slice(g, ax, j, j + 1)
                core = xp.concat(
                    [_axis_slice(core, ax, 0, src), cell, _axis_slice(core, ax, src + 1, size)],
                    axis=ax,
                )
        g = core
    return g

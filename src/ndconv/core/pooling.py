"""N-d max and average pooling with their gradients, as ``torch.nn.functional``.

Pooling reads its windows through the same helper as the convolution
(:func:`ndconv.core._windows.pad` and :func:`ndconv.core._windows.windows`), so stride,
dilation and padding are handled in one place. The backward passes are a sum
over kernel taps of strided slices, like the direct convolution (or, when the
windows tile the input, as in 2x2 pooling with stride 2, one reshape): the max
pool sends each output gradient to the tap that won (its argmax), the average
pool shares it evenly among the taps it averaged over. Never a loop over pixels.

Arrays of other array-API libraries (PyTorch, JAX, CuPy, ...) take the same
steps written out of place against the standard (the section "any array-API
library" below), so autograd sees through them; the result is an array of
the input's library.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any, cast, overload

import numpy as np

from . import _args, _dtypes, _memory, _pool_jit
from ._backends import resolve
from ._windows import fold_padding, pad, pad_portable, tap_slices, windows
from .algorithms.threads import get_num_threads

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

    from ._backends import Backend
    from ._typing import (AnyArray, Array, ArrayLike, ArrayT, DTypeLike, IntOrTuple, NDArray,
                          Pairs, ScalarT, Shape)

__all__ = [
    "max_pool",
    "max_pool_backward",
    "avg_pool",
    "avg_pool_backward",
    "pool_output_shape",
]


#: ``{key: validated arguments}`` of the max pooling calls (see :func:`_plain_key`).
_PREPARED = _args.Memo()


def _plain_key(x: object, extra: object, *args: object) -> tuple[Any, ...] | None:
    """The memo key of a call on a plain NumPy float32/float64 array, or None.

    As :func:`ndconv.core.functional._plain_key`: the shape, the dtype,
    ``extra`` (the other arrays' shapes and dtypes) and the arguments
    (:func:`ndconv.core._args.exact_key`; ``ceil_mode`` as validation reads
    it, ``bool()``), so a key seen validated passes validation again.
    """
    if type(x) is not np.ndarray or x.dtype not in _dtypes.FLOAT:
        return None
    *rest, ceil_mode, ndim = args
    key = _args.exact_key(*rest, ndim)
    return None if key is None else (x.shape, x.dtype, extra, bool(ceil_mode), key)


# --------------------------------------------------------------------------
# validation


def _pool_args(
    be: Backend,
    x: Array,
    n: int | None,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None,
    padding: IntOrTuple,
    dilation: IntOrTuple,
    ceil_mode: bool,
    kind: str,
) -> tuple[AnyArray, bool, Shape, Shape, Shape, Shape, Shape]:
    """Validate a pooling call; return the batched input and plain tuples.

    ``n`` is the number of spatial dims, or None to take it from the length
    of ``kernel_size`` (which must then be a tuple).
    """
    a = be.array(x, "x", dtypes=_dtypes.real_floats())
    if n is None:
        if isinstance(kernel_size, (tuple, list)):
            n = len(kernel_size)
        else:
            raise TypeError(
                "`kernel_size` must be a tuple (one entry per spatial dim) when the "
                "number of spatial dims is not given"
            )
    if a.ndim not in (n + 1, n + 2):
        raise ValueError(
            f"`x` must have shape (B, C, *S) or (C, *S) with {n} spatial dims, so "
            f"ndim {n + 2} or {n + 1}; got shape {tuple(a.shape)}"
        )
    # PyTorch pools an empty batch, nothing else empty.
    _args.check_empty_dims(a.shape, "x", (0,) if a.ndim == n + 2 else (), "the batch dim")
    k = _args.ntuple(kernel_size, n, "kernel_size", minimum=1)
    s = k if stride is None else _args.ntuple(stride, n, "stride", minimum=1)
    p = _args.ntuple(padding, n, "padding", minimum=0)
    d = _args.ntuple(dilation, n, "dilation", minimum=1)
    _check_padding(k, p, d, kind, padding)
    unbatched = a.ndim == n + 1
    xb = be.batched(a) if unbatched else a
    out = _args.pool_output_size(tuple(xb.shape[2:]), k, s, tuple((pi, pi) for pi in p), d,
                                  bool(ceil_mode))
    return xb, unbatched, k, s, p, d, out


def _check_padding(k: Shape, p: Shape, d: Shape, kind: str, padding: IntOrTuple) -> None:
    """PyTorch's rule: padding at most half the (dilated) kernel, so no window is all padding."""
    for i, (ki, pi, di) in enumerate(zip(k, p, d)):
        half = (di * (ki - 1) + 1) // 2 if kind == "max" else ki // 2
        if pi > half:
            raise ValueError(
                f"`padding` (={padding!r}) must be at most half of the "
                f"{'dilated ' if kind == 'max' else ''}kernel size in every dim, as in "
                f"PyTorch; dim {i}: padding {pi}, kernel_size {ki}"
                f"{f', dilation {di}' if kind == 'max' else ''}, so at most {half}"
            )


def pool_output_shape(
    input_shape: Sequence[int],
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
) -> Shape:
    """Spatial output shape of a pooling layer, without computing anything.

    ``S_out = floor((S + 2*padding - dilation*(k-1) - 1) / stride) + 1`` (ceil
    instead of floor with ``ceil_mode``), as in PyTorch.
    """
    given = tuple(kernel_size) if isinstance(kernel_size, (tuple, list)) else None
    n = len(given) if given is not None else len(input_shape) - 2
    if n < 1 or len(input_shape) < n:
        raise ValueError(
            f"`input_shape` (={tuple(input_shape)!r}) must be (B, C, *S) with at least one "
            f"spatial dim (or hold the len(kernel_size) spatial dims last)"
        )
    k = _args.ntuple(kernel_size, n, "kernel_size", minimum=1)
    s = k if stride is None else _args.ntuple(stride, n, "stride", minimum=1)
    p = _args.ntuple(padding, n, "padding", minimum=0)
    d = _args.ntuple(dilation, n, "dilation", minimum=1)
    return _args.pool_output_size(tuple(input_shape[-n:]), k, s, tuple((pi, pi) for pi in p), d,
                                  bool(ceil_mode))


def _check_memory(
    be: Backend,
    xb: AnyArray,
    k: Shape,
    s: Shape,
    p: Shape,
    d: Shape,
    out: Shape,
    kind: str,
    backward: bool,
) -> int:
    """Refuse, before allocating, a pooling whose arrays cannot fit; return the bytes counted.

    Counts the padded copy of the input, the output-sized arrays (the result,
    the running maximum or sum, the divisor; in the max backward the winners'
    masks and each tap's share) and, backward, the padded gradient. For an
    array on an accelerator, the device's memory (never the host's).
    """
    it = be.numpy_dtype(xb.dtype).itemsize
    lead = xb.shape[0] * xb.shape[1]
    pairs = _pairs(tuple(xb.shape[2:]), k, s, p, d, out)
    padded = lead * math.prod(n + lo + hi for n, (lo, hi) in zip(xb.shape[2:], pairs))
    outs = lead * math.prod(out)
    nbytes = (padded if any(lo or hi for lo, hi in pairs) else 0) * it + 2 * outs * it
    if backward:
        nbytes += padded * it + outs * (2 * it + (3 if kind == "max" else 0))
    free = _memory.HOST if be.numpy else _memory.device_free_memory(be.name, xb)
    return _memory.guard(nbytes, f"{kind}_pool{'_backward' if backward else ''} of input "
                          f"{tuple(xb.shape)} (output {tuple(xb.shape[:2]) + tuple(out)})",
                  free)


# --------------------------------------------------------------------------
# computing cores (arguments validated)


def _pairs(
    spatial: Sequence[int], k: Shape, s: Shape, p: Shape, d: Shape, out: Sequence[int]
) -> Pairs:
    """``(lo, hi)`` padding per dim: ``p`` on both sides plus what ceil_mode needs."""
    return tuple(
        (pi, max(pi, (o - 1) * si + di * (ki - 1) + 1 - n - pi))
        for n, ki, si, pi, di, o in zip(spatial, k, s, p, d, out)
    )


def _padded(x: NDArray[Any], pairs: Pairs, value: float) -> NDArray[Any]:
    """``x`` padded by ``pairs`` (no copy when there is nothing to pad)."""
    return pad(x, pairs, value=value) if any(lo or hi for lo, hi in pairs) else x


@functools.lru_cache(maxsize=256)
def _tap_slice_list(k: Shape, s: Shape, d: Shape, out: Shape) -> tuple[tuple[Any, ...], ...]:
    """``(..., *slices)`` of every tap, in row-major order."""
    return tuple((Ellipsis, *tap_slices(tap, s, d, out)) for tap in np.ndindex(*k))


def _max_forward(
    x: NDArray[Any], k: Shape, s: Shape, p: Shape, d: Shape, out: Shape
) -> NDArray[Any]:
    if _pool_jit.applies(x, out, k):
        return _pool_jit.max_forward(x, k, s, p, d, out, get_num_threads())
    pairs = _pairs(x.shape[2:], k, s, p, d, out)
    return _running_max(_padded(x, pairs, -np.inf), _tap_slice_list(k, s, d, tuple(out)))


def _running_max(xp: NDArray[Any], taps: tuple[tuple[Any, ...], ...]) -> NDArray[Any]:
    """The maximum over the taps of the padded input ``xp``."""
    # Output-sized operations only, no copy of the windows. np.maximum
    # propagates NaN, as PyTorch does.
    y = np.array(xp[taps[0]])
    for at in taps[1:]:
        np.maximum(y, xp[at], out=y)
    return y


def _max_plan(xb: NDArray[Any], k: Shape, s: Shape, p: Shape, d: Shape,
              out: Shape) -> tuple[Any, ...]:
    """What a remembered max pooling call needs: its arguments, whether the windows
    tile the input, its padding (and whether there is any) and its tap slices."""
    pairs = _pairs(xb.shape[2:], k, s, p, d, out)
    return (k, s, p, d, out, _tiles(xb.shape[2:], k, s, p, d, out), pairs,
            any(lo or hi for lo, hi in pairs), _tap_slice_list(k, s, d, tuple(out)))


def _max_winners(
    x: NDArray[Any], y: NDArray[Any], k: Shape, s: Shape, p: Shape, d: Shape
) -> Iterator[NDArray[np.bool_]]:
    """Per tap (in row-major order), where that tap is its window's winner.

    The winner is the first maximum of the window, as in PyTorch; in a window
    holding NaN (whose maximum is NaN) it is the last NaN, as in PyTorch.
    """
    out = y.shape[2:]
    pairs = _pairs(x.shape[2:], k, s, p, d, out)
    win = windows(_padded(x, pairs, -np.inf), k, s, d)
    inside = None
    if any(lo or hi for lo, hi in pairs) and np.isneginf(y).any():
        # A window of -inf inputs ties with the -inf padding; the padding must
        # not win (PyTorch gives the gradient to the first input cell).
        inside = windows(pad(np.ones(x.shape[2:], bool), pairs, value=False), k, s, d)
    nan_y = np.isnan(y)
    last_nan = None
    if nan_y.any():
        last_nan = np.full(y.shape, -1)
        for t, tap in enumerate(np.ndindex(*k)):
            at = (Ellipsis, *tap)
            last_nan[np.isnan(win[at]) & nan_y] = t
    taken = np.zeros(y.shape, dtype=bool)
    hit = np.empty(y.shape, dtype=bool)
    for t, tap in enumerate(np.ndindex(*k)):
        at = (Ellipsis, *tap)
        np.equal(win[at], y, out=hit)
        if inside is not None:
            hit &= inside[at]
        np.greater(hit, taken, out=hit)  # hit and not taken, without a temporary
        taken |= hit
        if last_nan is not None:
            hit |= last_nan == t
        yield hit


def _scatter(
    lead: Shape,
    spatial: Shape,
    pairs: Pairs,
    shares: Iterable[NDArray[Any]],
    out: Shape,
    k: Shape,
    s: Shape,
    d: Shape,
    dtype: DTypeLike,
) -> NDArray[Any]:
    """Gradient of the input: each tap's share of the output gradient put in place.

    ``shares`` yields, tap by tap in row-major order, that tap's share of the
    output gradient, shape ``lead + S_out``. Returns shape ``lead + spatial``.
    """
    taps = _tap_slice_list(k, s, d, tuple(out))
    if _tiles(spatial, k, s, tuple(lo for lo, _ in pairs), d, out):
        # The windows tile the unpadded input exactly (2x2 pooling of an even
        # image): every input cell gets exactly one share, written in place.
        gx = np.empty((*lead, *spatial), dtype=dtype)
        for at, share in zip(taps, shares):
            gx[at] = share
        return gx
    gp = np.zeros((*lead, *(n + lo + hi for n, (lo, hi) in zip(spatial, pairs))), dtype=dtype)
    for at, share in zip(taps, shares):
        # Overlapping windows (stride < kernel) may send several gradients to
        # one input; the += over taps adds them, as autograd does.
        gp[at] += share
    return fold_padding(gp, spatial, pairs, "zeros")


def _max_backward(
    gy: NDArray[Any], x: NDArray[Any], y: NDArray[Any], k: Shape, s: Shape, p: Shape, d: Shape
) -> NDArray[Any]:
    pairs = _pairs(x.shape[2:], k, s, p, d, y.shape[2:])
    zero = gy.dtype.type(0)
    # np.where, not gy * hit: a NaN or Inf gradient times a loser's 0 is NaN,
    # and must reach only the winner, as in PyTorch.
    shares = (np.where(hit, gy, zero) for hit in _max_winners(x, y, k, s, p, d))
    return _scatter(gy.shape[:2], x.shape[2:], pairs, shares, y.shape[2:], k, s, d, gy.dtype)


def _tiles(spatial: Sequence[int], k: Shape, s: Shape, p: Shape, d: Shape,
           out: Sequence[int]) -> bool:
    """Whether the windows tile ``spatial`` exactly (2x2 pooling with stride 2 of an
    even image): no padding, no gaps, no overlap, so a window is a block of a reshape."""
    return all(ki == si and di == 1 and pi == 0 and o * ki == n
               for ki, si, pi, di, o, n in zip(k, s, p, d, out, spatial))


def _max_backward_tiled(
    gy: NDArray[Any], x: NDArray[Any], y: NDArray[Any], k: Shape, s: Shape, d: Shape
) -> NDArray[Any] | None:
    """:func:`_max_backward` where the windows tile ``x`` (:func:`_tiles`), or None
    where ``y`` holds NaN (whose winner, the last NaN, the general path finds).

    Each input cell is in one window, so each tap's share is written in
    place: the first tap equal to the maximum wins, as in :func:`_max_winners`.
    """
    if np.isnan(y).any():
        return None
    gx = np.empty(x.shape, dtype=gy.dtype)
    taken = np.zeros(y.shape, dtype=bool)
    hit = np.empty(y.shape, dtype=bool)
    zero = gy.dtype.type(0)
    for at in _tap_slice_list(k, s, d, y.shape[2:]):
        np.equal(x[at], y, out=hit)
        np.greater(hit, taken, out=hit)  # hit and not taken, without a temporary
        taken |= hit
        gx[at] = np.where(hit, gy, zero)
    return gx


def _max_backward_numpy(
    gy: NDArray[Any], x: NDArray[Any], y: NDArray[Any], k: Shape, s: Shape, p: Shape, d: Shape,
    tiled: bool,
) -> NDArray[Any]:
    """The max-pooling gradient of NumPy arrays: compiled (:mod:`._pool_jit`) where
    numba is installed, else :func:`_max_backward_tiled` or :func:`_max_backward`."""
    if _pool_jit.applies(x, y.shape[2:], k):
        return _pool_jit.max_backward(gy, x, y, k, s, p, d, get_num_threads())
    gx = _max_backward_tiled(gy, x, y, k, s, d) if tiled else None
    return _max_backward(gy, x, y, k, s, p, d) if gx is None else gx


def _avg_divisor(
    spatial: Shape,
    k: Shape,
    s: Shape,
    p: Shape,
    out: Shape,
    count_include_pad: bool,
    dtype: DTypeLike,
) -> NDArray[Any]:
    """How many elements each average divides by (PyTorch's rules), shape S_out."""
    n = len(spatial)
    ones = (1,) * n
    pairs = _pairs(spatial, k, s, p, ones, out)
    # Count the cells of each window that lie inside the input, or inside the
    # symmetrically padded input with count_include_pad; never the extra
    # cells that ceil_mode adds past the padding.
    if count_include_pad:
        mask = pad(np.ones(tuple(sz + 2 * pi for sz, pi in zip(spatial, p)), dtype),
                   tuple((0, hi - pi) for (lo, hi), pi in zip(pairs, p)))
    else:
        mask = pad(np.ones(spatial, dtype), pairs)
    return windows(mask, k, s, ones).reshape(*out, -1).sum(axis=-1)


def _avg_forward(
    x: NDArray[Any],
    k: Shape,
    s: Shape,
    p: Shape,
    out: Shape,
    count_include_pad: bool,
    divisor_override: int | None,
) -> NDArray[Any]:
    n = len(k)
    ones = (1,) * n
    pairs = _pairs(x.shape[2:], k, s, p, ones, out)
    win = windows(_padded(x, pairs, 0), k, s, ones)  # (B, C, *S_out, *k), a view
    # Sums of float16/bfloat16 run in float32, rounded once at the end.
    cdt = _dtypes.compute_dtype(x.dtype)
    acc = np.zeros((*x.shape[:2], *out), dtype=cdt)
    for tap in np.ndindex(*k):
        at = (Ellipsis, *tap)
        acc += win[at]
    if divisor_override is not None:
        return (acc / cdt.type(divisor_override)).astype(x.dtype, copy=False)
    div = _avg_divisor(x.shape[2:], k, s, p, out, count_include_pad, cdt)
    return (acc / div).astype(x.dtype, copy=False)


def _avg_backward(
    gy: NDArray[Any],
    spatial: Shape,
    k: Shape,
    s: Shape,
    p: Shape,
    count_include_pad: bool,
    divisor_override: int | None,
) -> NDArray[Any]:
    n = len(k)
    ones = (1,) * n
    out = gy.shape[2:]
    pairs = _pairs(spatial, k, s, p, ones, out)
    cdt = _dtypes.compute_dtype(gy.dtype)  # as the forward: float32 for halves
    if divisor_override is not None:
        share = gy.astype(cdt, copy=False) / cdt.type(divisor_override)
    else:
        share = gy.astype(cdt, copy=False) / _avg_divisor(spatial, k, s, p, out,
                                                          count_include_pad, cdt)
    gx = _scatter(gy.shape[:2], spatial, pairs, (share for _ in range(math.prod(k))),
                  out, k, s, ones, cdt)
    return gx.astype(gy.dtype, copy=False)


# --------------------------------------------------------------------------
# the same on any array-API library: out of place, standard operations only


def _padded_xp(xp: Any, x: AnyArray, pairs: Pairs, value: float) -> AnyArray:
    if not any(lo or hi for lo, hi in pairs):
        return x
    return pad_portable(xp, x, pairs, value=value)


def _taps_xp(xpad: AnyArray, k: Shape, s: Shape, d: Shape, out: Shape) -> Iterator[AnyArray]:
    """Per tap (row-major), the padded input it reads for every output position."""
    for tap in np.ndindex(*k):
        at = (Ellipsis, *tap_slices(tap, s, d, out))
        yield xpad[at]


def _max_forward_xp(
    xp: Any, x: AnyArray, k: Shape, s: Shape, p: Shape, d: Shape, out: Shape
) -> AnyArray:
    pairs = _pairs(tuple(x.shape[2:]), k, s, p, d, out)
    y = None
    for v in _taps_xp(_padded_xp(xp, x, pairs, -np.inf), k, s, d, out):
        y = v if y is None else xp.maximum(y, v)  # propagates NaN, as PyTorch
    return y


def _max_winners_xp(
    xp: Any, x: AnyArray, y: AnyArray, k: Shape, s: Shape, p: Shape, d: Shape
) -> Iterator[AnyArray]:
    """:func:`_max_winners` out of place: first maximum, else the last NaN."""
    out = tuple(y.shape[2:])
    spatial = tuple(x.shape[2:])
    pairs = _pairs(spatial, k, s, p, d, out)
    taps = list(_taps_xp(_padded_xp(xp, x, pairs, -np.inf), k, s, d, out))
    device = getattr(x, "device", None)
    inside = [None] * len(taps)
    if any(lo or hi for lo, hi in pairs) and bool(xp.any(xp.isinf(y) & (y < 0))):
        # The padding must not win a window of -inf inputs (a small mask of
        # shapes only, made by NumPy).
        mask = pad(np.ones(spatial, bool), pairs, value=False)
        inside = [xp.asarray(np.ascontiguousarray(mask[tap_slices(tap, s, d, out)]),
                             device=device) for tap in np.ndindex(*k)]
    nan_y = xp.isnan(y)
    last_nan = [None] * len(taps)
    if bool(xp.any(nan_y)):
        later = xp.zeros(y.shape, dtype=xp.bool, device=device)
        for t in reversed(range(len(taps))):
            last_nan[t] = xp.isnan(taps[t]) & nan_y & ~later
            later = later | last_nan[t]
    taken = xp.zeros(y.shape, dtype=xp.bool, device=device)
    for t, v in enumerate(taps):
        hit = (v == y) & ~taken
        if inside[t] is not None:
            hit = hit & inside[t]
        taken = taken | hit
        yield hit if last_nan[t] is None else hit | last_nan[t]


def _scatter_xp(
    xp: Any,
    spatial: Shape,
    pairs: Pairs,
    shares: Iterable[AnyArray],
    out: Shape,
    k: Shape,
    s: Shape,
    d: Shape,
) -> AnyArray:
    """:func:`_scatter` out of place: each share dilated by the stride and padded
    into its place in the padded input, summed, the padding cropped."""
    padded = tuple(n + lo + hi for n, (lo, hi) in zip(spatial, pairs))
    gp: AnyArray = None
    for tap, share in zip(np.ndindex(*k), shares):
        place = tuple(
            (t * di, sz - t * di - (o - 1) * si - 1)
            for t, di, si, o, sz in zip(tap, d, s, out, padded)
        )
        term = pad_portable(xp, share, place, lhs_dilation=s)
        gp = term if gp is None else gp + term
    crop = (Ellipsis, *[slice(lo, lo + n) for n, (lo, _) in zip(spatial, pairs)])
    return gp[crop]


def _max_backward_xp(
    xp: Any, gy: AnyArray, x: AnyArray, y: AnyArray, k: Shape, s: Shape, p: Shape, d: Shape
) -> AnyArray:
    out = tuple(y.shape[2:])
    pairs = _pairs(tuple(x.shape[2:]), k, s, p, d, out)
    # where, not gy * hit: a NaN gradient must reach only the winner (as NumPy's)
    zero = xp.zeros_like(gy)
    shares = (xp.where(hit, gy, zero) for hit in _max_winners_xp(xp, x, y, k, s, p, d))
    return _scatter_xp(xp, tuple(x.shape[2:]), pairs, shares, out, k, s, d)


def _avg_divisor_xp(
    be: Backend,
    spatial: Shape,
    k: Shape,
    s: Shape,
    p: Shape,
    out: Shape,
    count_include_pad: bool,
    like: AnyArray,
) -> AnyArray:
    """:func:`_avg_divisor` (shapes only, NumPy) moved to ``like``'s library and device."""
    div = _avg_divisor(spatial, k, s, p, out, count_include_pad,
                       be.numpy_dtype(like.dtype))
    return be.xp.asarray(np.ascontiguousarray(div), device=getattr(like, "device", None))


def _avg_forward_xp(
    be: Backend,
    x: AnyArray,
    k: Shape,
    s: Shape,
    p: Shape,
    out: Shape,
    count_include_pad: bool,
    divisor_override: int | None,
) -> AnyArray:
    ones = (1,) * len(k)
    spatial = tuple(x.shape[2:])
    pairs = _pairs(spatial, k, s, p, ones, out)
    acc: AnyArray = None
    for v in _taps_xp(_padded_xp(be.xp, x, pairs, 0), k, s, ones, out):
        acc = v if acc is None else acc + v
    if divisor_override is not None:
        return acc / divisor_override
    return acc / _avg_divisor_xp(be, spatial, k, s, p, out, count_include_pad, x)


def _avg_backward_xp(
    be: Backend,
    gy: AnyArray,
    spatial: Shape,
    k: Shape,
    s: Shape,
    p: Shape,
    count_include_pad: bool,
    divisor_override: int | None,
) -> AnyArray:
    ones = (1,) * len(k)
    out = tuple(gy.shape[2:])
    pairs = _pairs(spatial, k, s, p, ones, out)
    if divisor_override is not None:
        share = gy / divisor_override
    else:
        share = gy / _avg_divisor_xp(be, spatial, k, s, p, out, count_include_pad, gy)
    return _scatter_xp(be.xp, spatial, pairs, (share for _ in range(math.prod(k))),
                       out, k, s, ones)


# --------------------------------------------------------------------------
# public API


def _check_grad(be: Backend, grad_out: Array, expected: Shape, dtype: Any) -> AnyArray:
    gy = be.array(grad_out, "grad_out", dtypes=_dtypes.real_floats())
    if tuple(gy.shape) != tuple(expected):
        raise ValueError(
            f"`grad_out` must have the output's shape {tuple(expected)}, got "
            f"{tuple(gy.shape)}"
        )
    if gy.dtype != dtype:
        raise TypeError(f"`grad_out` (dtype {gy.dtype}) must have dtype {dtype}")
    return gy


@overload
def max_pool(
    x: NDArray[ScalarT],
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    *,
    ndim: int | None = None,
) -> NDArray[ScalarT]: ...

@overload
def max_pool(
    x: ArrayT,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    *,
    ndim: int | None = None,
) -> ArrayT: ...

@overload
def max_pool(
    x: ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    *,
    ndim: int | None = None,
) -> NDArray[Any]: ...


def max_pool(
    x: Array,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    *,
    ndim: int | None = None,
) -> AnyArray:
    """N-d max pooling, as ``torch.nn.functional.max_pool{1,2,3}d``.

    Parameters
    ----------
    x : ndarray, shape (B, C, *S) or (C, *S)
        float16, bfloat16, float32 or float64; ``B`` may be 0, as in PyTorch.
    kernel_size : int or tuple of N ints
        An int needs ``ndim``; a tuple gives N.
    stride : int or tuple of N ints, optional
        Defaults to ``kernel_size``.
    padding : int or tuple of N ints
        Implicit ``-inf`` on both sides; at most half the dilated kernel.
    dilation : int or tuple of N ints
    ceil_mode : bool
        Round the output size up instead of down (the last window may be partial).
    ndim : int, optional
        Number of spatial dims N when ``kernel_size`` is an int.

    Returns
    -------
    ndarray, shape (B, C, *S_out) or (C, *S_out)
        ``S_out = floor((S + 2*padding - dilation*(k-1) - 1) / stride) + 1``.
        A window holding NaN gives NaN, as in PyTorch.

    Examples
    --------
    >>> import numpy as np, ndconv
    >>> ndconv.max_pool(np.arange(9.0).reshape(1, 3, 3), (2, 2), stride=1)
    array([[[4., 5.],
            [7., 8.]]])
    """
    key = _plain_key(x, "max_pool", kernel_size, stride, padding, dilation, ceil_mode, ndim)
    hit = None if key is None else _PREPARED.get(key)
    if hit is not None and not _memory.has_explicit_limit():
        unbatched, (*_, pairs, padded, taps), compiled = hit
        xa = cast("NDArray[Any]", x)  # (the key says: a float ndarray)
        xn = xa[None] if unbatched else xa
        y = None if compiled is None else compiled(xn)
        if y is None:
            k, st, p, d, out = hit[1][:5]
            if _pool_jit.applies(xn, out, k):
                y = _pool_jit.max_forward(xn, k, st, p, d, out, get_num_threads())
            else:
                y = _running_max(pad(xn, pairs, value=-np.inf) if padded else xn, taps)
        return y[0, ...] if unbatched else y
    be = resolve(x=x)
    be.require("max_pool")
    xb, unbatched, k, s, p, d, out = _pool_args(be, x, ndim, kernel_size, stride, padding,
                                                dilation, ceil_mode, "max")
    nbytes = _check_memory(be, xb, k, s, p, d, out, "max", backward=False)
    if be.numpy:
        y = _max_forward(xb, k, s, p, d, out)
    else:
        y = _max_forward_xp(be.xp, xb, k, s, p, d, out)
    if key is not None and nbytes <= _memory.GUARD_BYTES:
        compiled = (_pool_jit.ForwardPlan(xb.shape, k, s, p, d, out)
                    if _pool_jit.applies(xb, out, k) else None)
        _PREPARED.put(key, (unbatched, _max_plan(xb, k, s, p, d, out), compiled))
    return y[0, ...] if unbatched else y


@overload
def max_pool_backward(
    grad_out: ArrayLike,
    x: NDArray[ScalarT],
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    *,
    out: ArrayLike | None = None,
    ndim: int | None = None,
) -> NDArray[ScalarT]: ...

@overload
def max_pool_backward(
    grad_out: ArrayT | ArrayLike,
    x: ArrayT,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    *,
    out: ArrayT | ArrayLike | None = None,
    ndim: int | None = None,
) -> ArrayT: ...

@overload
def max_pool_backward(
    grad_out: ArrayLike,
    x: ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    *,
    out: ArrayLike | None = None,
    ndim: int | None = None,
) -> NDArray[Any]: ...


def max_pool_backward(
    grad_out: Array,
    x: Array,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    *,
    out: Array | None = None,
    ndim: int | None = None,
) -> AnyArray:
    """Gradient of :func:`max_pool` with respect to ``x``.

    Each output's gradient goes to the element that won its window (the first
    maximum, as in PyTorch); an element that won several overlapping windows
    receives the sum.

    Parameters
    ----------
    grad_out : ndarray, shape of ``max_pool(x, ...)``
    x, kernel_size, stride, padding, dilation, ceil_mode, ndim
        As given to :func:`max_pool`.
    out : ndarray, optional
        ``max_pool(x, ...)`` if already computed (it is recomputed otherwise).
    """
    key = None
    if type(grad_out) is np.ndarray and (out is None or type(out) is np.ndarray):
        key = _plain_key(x, ("max_pool_backward", grad_out.shape, grad_out.dtype,
                             None if out is None else (out.shape, out.dtype)),
                         kernel_size, stride, padding, dilation, ceil_mode, ndim)
    hit = None if key is None else _PREPARED.get(key)
    if hit is not None and not _memory.has_explicit_limit():
        unbatched, (k, s, p, d, _, tiled, *_) = hit
        # (the key says: float ndarrays of validated shapes)
        xa, ga = cast("NDArray[Any]", x), cast("NDArray[Any]", grad_out)
        xn, gn = (xa[None], ga[None]) if unbatched else (xa, ga)
        if out is None:
            yn = _max_forward(xn, k, s, p, d, gn.shape[2:])
        else:
            ya = cast("NDArray[Any]", out)
            yn = ya[None] if unbatched else ya
        gx = _max_backward_numpy(gn, xn, yn, k, s, p, d, tiled)
        return gx[0, ...] if unbatched else gx
    be = resolve(grad_out=grad_out, x=x, out=out)
    be.require("max_pool_backward")
    xb, unbatched, k, s, p, d, shape = _pool_args(be, x, ndim, kernel_size, stride,
                                                  padding, dilation, ceil_mode, "max")
    expected = tuple(xb.shape[:2]) + shape
    gy = _check_grad(be, grad_out, expected[1:] if unbatched else expected, xb.dtype)
    nbytes = _check_memory(be, xb, k, s, p, d, shape, "max", backward=True)
    if key is not None and nbytes <= _memory.GUARD_BYTES and (
            out is None or tuple(cast("NDArray[Any]", out).shape) == tuple(gy.shape)):
        _PREPARED.put(key, (unbatched, _max_plan(xb, k, s, p, d, shape)))
    if out is None:
        y = (_max_forward(xb, k, s, p, d, shape) if be.numpy
             else _max_forward_xp(be.xp, xb, k, s, p, d, shape))
    else:
        y = np.asarray(out) if be.numpy else be.array(out, "out")
        if tuple(y.shape) != tuple(gy.shape):
            raise ValueError(f"`out` must have the output's shape {tuple(gy.shape)}, "
                             f"got {tuple(y.shape)}")
        y = be.batched(y) if unbatched else y
    if unbatched:
        gy = be.batched(gy)
    if be.numpy:
        gx = _max_backward_numpy(gy, xb, y, k, s, p, d, _tiles(xb.shape[2:], k, s, p, d, shape))
    else:
        gx = _max_backward_xp(be.xp, gy, xb, y, k, s, p, d)
    return gx[0, ...] if unbatched else gx


@overload
def avg_pool(
    x: NDArray[ScalarT],
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
    *,
    ndim: int | None = None,
) -> NDArray[ScalarT]: ...

@overload
def avg_pool(
    x: ArrayT,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
    *,
    ndim: int | None = None,
) -> ArrayT: ...

@overload
def avg_pool(
    x: ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
    *,
    ndim: int | None = None,
) -> NDArray[Any]: ...


def avg_pool(
    x: Array,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
    *,
    ndim: int | None = None,
) -> AnyArray:
    """N-d average pooling, as ``torch.nn.functional.avg_pool{1,2,3}d``.

    Parameters
    ----------
    x : ndarray, shape (B, C, *S) or (C, *S)
    kernel_size, stride, padding, ceil_mode, ndim
        As :func:`max_pool` (zero padding, at most half the kernel).
    count_include_pad : bool
        Divide by the window size including padded zeros (PyTorch's default).
    divisor_override : int, optional
        Divide every sum by this instead.

    Returns
    -------
    ndarray, shape (B, C, *S_out) or (C, *S_out)

    Examples
    --------
    >>> import numpy as np, ndconv
    >>> ndconv.avg_pool(np.arange(9.0).reshape(1, 3, 3), (2, 2), stride=1)
    array([[[2., 3.],
            [5., 6.]]])
    """
    be = resolve(x=x)
    be.require("avg_pool")
    xb, unbatched, k, s, p, _, out = _pool_args(be, x, ndim, kernel_size, stride, padding,
                                                1, ceil_mode, "avg")
    dov = _check_divisor(divisor_override)
    _check_memory(be, xb, k, s, p, (1,) * len(k), out, "avg", backward=False)
    if be.numpy:
        y = _avg_forward(xb, k, s, p, out, bool(count_include_pad), dov)
    else:
        y = _avg_forward_xp(be, xb, k, s, p, out, bool(count_include_pad), dov)
    return y[0, ...] if unbatched else y


@overload
def avg_pool_backward(
    grad_out: ArrayLike,
    x: NDArray[ScalarT],
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
    *,
    ndim: int | None = None,
) -> NDArray[ScalarT]: ...

@overload
def avg_pool_backward(
    grad_out: ArrayT | ArrayLike,
    x: ArrayT,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
    *,
    ndim: int | None = None,
) -> ArrayT: ...

@overload
def avg_pool_backward(
    grad_out: ArrayLike,
    x: ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
    *,
    ndim: int | None = None,
) -> NDArray[Any]: ...


def avg_pool_backward(
    grad_out: Array,
    x: Array,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
    *,
    ndim: int | None = None,
) -> AnyArray:
    """Gradient of :func:`avg_pool`: each output's gradient shared evenly by its window."""
    be = resolve(grad_out=grad_out, x=x)
    be.require("avg_pool_backward")
    xb, unbatched, k, s, p, _, out = _pool_args(be, x, ndim, kernel_size, stride, padding,
                                                1, ceil_mode, "avg")
    dov = _check_divisor(divisor_override)
    expected = tuple(xb.shape[:2]) + out
    gy = _check_grad(be, grad_out, expected[1:] if unbatched else expected, xb.dtype)
    _check_memory(be, xb, k, s, p, (1,) * len(k), out, "avg", backward=True)
    if unbatched:
        gy = be.batched(gy)
    spatial = tuple(xb.shape[2:])
    if be.numpy:
        gx = _avg_backward(gy, spatial, k, s, p, bool(count_include_pad), dov)
    else:
        gx = _avg_backward_xp(be, gy, spatial, k, s, p, bool(count_include_pad), dov)
    return gx[0, ...] if unbatched else gx


def _check_divisor(divisor_override: int | None) -> int | None:
    if divisor_override is None:
        return None
    return _args.positive_int(divisor_override, "divisor_override")

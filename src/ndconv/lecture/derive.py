"""The lecture's derivation as code: from a fully connected weight to a kernel, and back.

A fully connected layer from an image ``x`` to a hidden image ``h`` has a weight
with one entry per (output position, input position)::

    h[i, j] = sum_{k,l} w[i, j, k, l] x[k, l]                      (dense)
            = sum_{a,b} v[i, j, a, b] x[i+a, j+b],   v[i,j,a,b] = w[i,j,i+a,j+b]

:func:`reindex` turns ``w`` into ``v`` (and :func:`unreindex` back). Two
principles then remove weights:

- **translation invariance** (:func:`tie`): ``v[i, j, a, b] = v[a, b]``, the
  weight depends on the offset only, which makes ``h`` the cross-correlation
  of ``x`` with the kernel ``v``;
- **locality** (:func:`localize`): ``v[a, b] = 0`` when ``|a|`` or ``|b| > Delta``,
  which leaves a ``(2 Delta + 1)``-wide kernel.

Each step checks its principle and raises :class:`PrincipleError` (a
``ValueError``) naming the principle, the index and the value that violate it.

With channels and stride, padding and dilation, :func:`conv_to_dense` writes a
convolution as the dense weight ``W`` of shape ``(C_out, *S_out, C_in, *S)``
(the doubly block Toeplitz matrix in 2-D) so that
``np.tensordot(W, x, axes=x.ndim) == conv(x, weight, ...)``, and
:func:`dense_to_conv` recovers the kernel. Between the two sits the locally
connected layer (locality without translation invariance):
:func:`local_to_dense` and :func:`dense_to_local`, whose weight has shape
``(C_out, *S_out, C_in, *K)``, as :class:`ndconv.nn.LocallyConnected`.

Every function works in any number of spatial dims, with one implementation:
an output position ``p`` and a kernel tap ``t`` read the input position
``q = p * stride + t * dilation - pad_lo``; all positions and taps are indexed
at once with broadcast index arrays, never a Python loop over pixels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core import _args, _memory, _windows

if TYPE_CHECKING:
    from ..core._typing import ArrayLike, DTypeLike, IntOrTuple, NDArray, Padding, Pairs, Shape

    #: ``describe(o, p, c, t) -> (text, index)`` of one weight entry, for messages.
    _Describe = Callable[[int, Shape, int, Shape], tuple[str, tuple[int, ...]]]

__all__ = [
    "LOCALITY",
    "TRANSLATION_INVARIANCE",
    "PrincipleError",
    "conv_to_dense",
    "dense_to_conv",
    "dense_to_local",
    "local_to_dense",
    "localize",
    "reindex",
    "tie",
    "unreindex",
]

TRANSLATION_INVARIANCE = "translation invariance"
LOCALITY = "locality"

_WHY = {
    TRANSLATION_INVARIANCE: (
        "a shifted input must give a shifted output, so the weight may depend on "
        "the offset between input and output position only, never on the output "
        "position itself"
    ),
    LOCALITY: (
        "an output may only use inputs near its own position, so the weight must "
        "be zero outside the window"
    ),
}


class PrincipleError(ValueError):
    """A weight violates translation invariance or locality.

    Attributes
    ----------
    principle : {'translation invariance', 'locality'}
    index : tuple of int
        Index of an offending entry, in the array the caller passed.
    value : float
        Its value.
    """

    principle: str
    index: tuple[int, ...]
    value: Any

    def __init__(
        self,
        principle: str,
        where: str,
        index: Sequence[int],
        value: Any,
        detail: str = "",
    ) -> None:
        self.principle = principle
        self.index = tuple(int(i) for i in index)
        self.value = value.item() if isinstance(value, np.generic) else value
        msg = f"{principle} is violated: {where} = {self.value!r}"
        if detail:
            msg += f" {detail}"
        super().__init__(f"{msg} ({_WHY[principle]})")


# --------------------------------------------------------------------------
# the computing core: one N-d index map shared by every function
#
# Arrays are handled in an "inner" layout with positions first and channels
# last, so a single fancy index over all positions and taps does the work:
#   dense  W: outer (O, *S_out, C, *S)  <-> inner (*S_out, *S, O, C)
#   local  L: outer (O, *S_out, C, *K)  <-> inner (*S_out, *K, O, C)


def _inner(a: NDArray[Any], n: int) -> NDArray[Any]:
    """Outer (O, *A, C, *B) -> inner (*A, *B, O, C), a view."""
    return a.transpose(*range(1, n + 1), *range(n + 2, 2 * n + 2), 0, n + 1)


def _outer(a: NDArray[Any], n: int) -> NDArray[Any]:
    """Inner (*A, *B, O, C) -> outer (O, *A, C, *B), a view."""
    return a.transpose(2 * n, *range(n), 2 * n + 1, *range(n, 2 * n))


class _Grid:
    """Which input position each (output position, kernel tap) pair reads.

    ``P[d]`` and ``Q[d]`` broadcast to ``(*S_out, *K)``; ``valid_d[d]`` is the
    ``(S_out[d], K[d])`` mask of pairs that land inside the input (not in the
    zero padding) and ``valid`` their product over dims.
    """

    shape: Shape
    P: list[NDArray[np.intp]]
    Q: list[NDArray[np.intp]]
    valid_d: list[NDArray[np.bool_]]
    valid: NDArray[np.bool_]
    circular: bool

    def __init__(
        self,
        S_out: Sequence[int],
        S: Sequence[int],
        K: Sequence[int],
        stride: Sequence[int],
        dilation: Sequence[int],
        pairs: Pairs,
        circular: bool,
    ) -> None:
        n = len(K)
        self.shape = (*S_out, *K)
        self.P, self.Q, self.valid_d = [], [], []
        valid = np.ones((1,) * (2 * n), dtype=bool)
        for d in range(n):
            p = np.arange(S_out[d])
            t = np.arange(K[d])
            q = p[:, None] * stride[d] + t[None, :] * dilation[d] - pairs[d][0]
            q, ok = _windows.source_index(q, S[d], "circular" if circular else "zeros")
            shape = [1] * (2 * n)
            shape[d] = S_out[d]
            self.P.append(p.reshape(shape))
            shape[n + d] = K[d]
            self.Q.append(q.reshape(shape))
            self.valid_d.append(ok)
            valid = valid & ok.reshape(shape)
        self.valid = np.broadcast_to(valid, self.shape)
        self.circular = circular

    def index(self) -> tuple[NDArray[np.intp], ...]:
        """Fancy index of the valid pairs into an inner dense array."""
        return tuple(np.broadcast_to(a, self.shape)[self.valid] for a in self.P + self.Q)


def _gather(Wi: NDArray[Any], grid: _Grid) -> NDArray[Any]:
    """Inner dense (*S_out, *S, O, C) -> inner local (*S_out, *K, O, C)."""
    pq = (*grid.P, *grid.Q)
    Li = Wi[pq]
    Li[~grid.valid] = 0  # taps that read the zero padding carry no weight
    return Li


def _scatter(Li: NDArray[Any], S: Sequence[int], grid: _Grid) -> NDArray[Any]:
    """Inner local (*S_out, *K, O, C) -> inner dense (*S_out, *S, O, C)."""
    S_out = grid.shape[: len(S)]
    Wi = np.zeros((*S_out, *S, *Li.shape[-2:]), dtype=Li.dtype)
    idx = grid.index()
    vals = Li[grid.valid]
    if grid.circular:  # wrapped taps may land on the same input position
        np.add.at(Wi, idx, vals)
    else:  # q = p*s + t*d - lo is one-to-one in (p, t): plain assignment
        Wi[idx] = vals
    return Wi


def _covered(S: Sequence[int], grid: _Grid) -> NDArray[np.bool_]:
    """Boolean (*S_out, *S): which (output, input) pairs some tap connects."""
    S_out = grid.shape[: len(S)]
    cov = np.zeros((*S_out, *S), dtype=bool)
    cov[grid.index()] = True
    return cov


def _tie(Li: NDArray[Any], grid: _Grid, describe: _Describe, atol: float) -> NDArray[Any]:
    """The kernel (*K, O, C) shared by every output position, or PrincipleError."""
    n = len(grid.valid_d)
    K = grid.shape[n:]
    # The first output position at which each tap reads the input; the valid
    # mask is a product over dims, so it is found dim by dim.
    first = [ok.argmax(axis=0) for ok in grid.valid_d]
    some = np.ones(K, dtype=bool)
    for d, ok in enumerate(grid.valid_d):
        shape = [1] * n
        shape[d] = K[d]
        some = some & ok.any(axis=0).reshape(shape)
    taps = [np.arange(k).reshape([k if e == d else 1 for e in range(n)]) for d, k in enumerate(K)]
    at_first = (*[f[t] for f, t in zip(first, taps)], *taps)
    ref = Li[at_first]
    ref[~some] = 0
    bad = ~(np.abs(Li - ref) <= atol) & grid.valid[..., None, None]
    if bad.any():
        p_t_o_c = tuple(int(i) for i in np.argwhere(bad)[0])
        p, t, o, c = p_t_o_c[:n], p_t_o_c[n : 2 * n], p_t_o_c[2 * n], p_t_o_c[2 * n + 1]
        p0 = tuple(int(f[i]) for f, i in zip(first, t))
        where, index = describe(o, p, c, t)
        where0, _ = describe(o, p0, c, t)
        index0 = (*p0, *t, o, c)
        raise PrincipleError(
            TRANSLATION_INVARIANCE, where, index, Li[p_t_o_c],
            f"but {where0} = {Li[index0].item()!r}: output positions "
            f"{p} and {p0} use different weights for the same offset",
        )
    return ref


# --------------------------------------------------------------------------
# validation helpers


def _float_or_int(a: ArrayLike, name: str) -> NDArray[Any]:
    arr = _args.check_array(a, name, floating=False)
    _args.check_no_empty(arr, name)
    return arr


def _guard(shape: Sequence[int], dtype: DTypeLike, what: str) -> None:
    _memory.check(math.prod(shape) * np.dtype(dtype).itemsize, what)


def _geometry(
    S: Sequence[int],
    K: Sequence[int],
    stride: IntOrTuple,
    padding: Padding,
    dilation: IntOrTuple,
    padding_mode: str,
) -> tuple[Shape, Shape, Shape, Pairs]:
    n = len(K)
    stride = _args.ntuple(stride, n, "stride", minimum=1)
    dilation = _args.ntuple(dilation, n, "dilation", minimum=1)
    pairs = _args.padding_pairs(padding, K, dilation, stride)
    if padding_mode not in ("zeros", "circular"):
        raise ValueError(
            f"`padding_mode` (={padding_mode!r}) must be 'zeros' or 'circular': a "
            "dense weight cannot express the other modes' data-dependent copies "
            "without summing taps"
        )
    _args.check_mode_fits(S, pairs, padding_mode)
    S_out = _args.output_size(S, K, stride, pairs, dilation)
    return S_out, stride, dilation, pairs


def _input_shape(input_shape: Sequence[int], n: int, channels: int) -> Shape:
    shape = _args.ntuple(input_shape, n + 1, "input_shape", minimum=1, broadcast=False)
    if shape[0] != channels:
        raise ValueError(
            f"`input_shape` (={tuple(input_shape)!r}) must be (C_in, *S) with C_in "
            f"= {channels}, the weight's input channels"
        )
    return shape[1:]


def _dense_layout(W: NDArray[Any], n: int, name: str = "W") -> tuple[Shape, Shape]:
    """Check ``W`` is (C_out, *S_out, C_in, *S) with n spatial dims; return S_out, S."""
    if W.ndim != 2 * n + 2:
        raise ValueError(
            f"`{name}` must have shape (C_out, *S_out, C_in, *S) with {n} spatial "
            f"dims each, so ndim {2 * n + 2}; got shape {W.shape}"
        )
    return W.shape[1 : n + 1], W.shape[n + 2 :]


def _spatial_rank(a: NDArray[Any], channels: bool, name: str) -> int:
    extra = 2 if channels else 0
    if a.ndim < 2 + extra or (a.ndim - extra) % 2:
        form = "(C_out, *S_out, C_in, *S)" if channels else "(*S_out, *S)"
        raise ValueError(
            f"`{name}` must have shape {form}, the same number of dims for output "
            f"and input positions; got shape {a.shape} (channels={channels})"
        )
    return (a.ndim - extra) // 2


def _with_channels(a: NDArray[Any], n: int, channels: bool) -> NDArray[Any]:
    """Add the singleton channel axes of the lecture's one-channel form."""
    if channels:
        return a
    return a.reshape(1, *a.shape[:n], 1, *a.shape[n:])


def _reindex_grid(S_out: Sequence[int], S: Sequence[int]) -> tuple[Shape, _Grid]:
    """Reindexing as a local weight: offsets a = k - i in [-R, R], R = max(S_out, S) - 1.

    The full window ``K = 2R + 1`` with padding ``(R, S_out - S + R)`` and stride
    1 puts offset ``a`` at tap ``a + R`` and reaches every input from every output.
    """
    R = tuple(max(so, s) - 1 for so, s in zip(S_out, S))
    K = tuple(2 * r + 1 for r in R)
    pairs = tuple((r, so - s + r) for r, so, s in zip(R, S_out, S))
    n = len(S)
    return R, _Grid(S_out, S, K, (1,) * n, (1,) * n, pairs, circular=False)


def _offset_size(
    v: NDArray[Any], n: int, input_size: IntOrTuple | None
) -> tuple[Shape, Shape, Shape]:
    """S_out, the offset radius R and the input size S of a reindexed weight."""
    S_out = v.shape[1 : n + 1]
    A = v.shape[n + 2 :]
    if any(a % 2 == 0 for a in A):
        raise ValueError(
            f"the offset axes of a reindexed weight have odd length 2R + 1 (offsets "
            f"-R..R), got {A}"
        )
    R = tuple((a - 1) // 2 for a in A)
    S = tuple(r + 1 for r in R) if input_size is None else _args.ntuple(
        input_size, n, "input_size", minimum=1, broadcast=False)
    if any(r != max(so, s) - 1 for r, so, s in zip(R, S_out, S)):
        raise ValueError(
            f"offset radius R (={R}) must be max(S_out, S) - 1 with S_out = {S_out} "
            f"and S = `input_size` (={S}): pass the input size the weight came from"
        )
    return S_out, R, S


# --------------------------------------------------------------------------
# the lecture's steps


def reindex(w: ArrayLike, *, channels: bool = False) -> NDArray[Any]:
    """Re-index a fully connected weight by offset: ``v[i, a] = w[i, i + a]``.

    Parameters
    ----------
    w : array_like, shape (*S_out, *S), or (C_out, *S_out, C_in, *S) with ``channels``
        ``h[i] = sum_k w[i, k] x[k]`` for multi-indices ``i`` (output position)
        and ``k`` (input position).
    channels : bool
        Whether ``w`` has the channel axes.

    Returns
    -------
    v : ndarray, shape (*S_out, *(2R + 1)) or (C_out, *S_out, C_in, *(2R + 1))
        ``R = max(S_out, S) - 1`` per dim; offset ``a`` (from ``-R`` to ``R``)
        sits at index ``a + R``. Entries whose input ``i + a`` lies outside the
        input are 0, so ``h[i] = sum_a v[i, a] x[i + a]`` with ``x`` zero outside.

    Examples
    --------
    >>> import numpy as np
    >>> w = np.arange(9.0).reshape(3, 3)     # 1-D: h[i] = sum_k w[i, k] x[k]
    >>> reindex(w)                           # v[i, a + 2] = w[i, i + a]
    array([[0., 0., 0., 1., 2.],
           [0., 3., 4., 5., 0.],
           [6., 7., 8., 0., 0.]])
    """
    w = _float_or_int(w, "w")
    n = _spatial_rank(w, channels, "w")
    W = _with_channels(w, n, channels)
    S_out, S = W.shape[1 : n + 1], W.shape[n + 2 :]
    R, grid = _reindex_grid(S_out, S)
    _guard((*grid.shape, W.shape[0], W.shape[n + 1]), W.dtype, "the reindexed weight")
    v = np.ascontiguousarray(_outer(_gather(_inner(W, n), grid), n))
    return v if channels else v.reshape(v.shape[1 : n + 1] + v.shape[n + 2 :])


def unreindex(
    v: ArrayLike, input_size: IntOrTuple | None = None, *, channels: bool = False
) -> NDArray[Any]:
    """Inverse of :func:`reindex`: ``w[i, k] = v[i, k - i]``.

    Parameters
    ----------
    v : array_like, shape (*S_out, *(2R + 1)) or (C_out, *S_out, C_in, *(2R + 1))
    input_size : tuple of int, optional
        The input's spatial size ``S``; by default ``R + 1`` (right whenever
        ``S >= S_out``, as for the lecture's hidden image of the input's size).
    channels : bool

    Returns
    -------
    w : ndarray, shape (*S_out, *S) or (C_out, *S_out, C_in, *S)
        Entries of ``v`` that point outside the input are dropped (they would
        multiply zeros).
    """
    v = _float_or_int(v, "v")
    n = _spatial_rank(v, channels, "v")
    V = _with_channels(v, n, channels)
    S_out, R, S = _offset_size(V, n, input_size)
    _, grid = _reindex_grid(S_out, S)
    _guard((*S_out, *S, V.shape[0], V.shape[n + 1]), V.dtype, "the dense weight")
    w = np.ascontiguousarray(_outer(_scatter(_inner(V, n), S, grid), n))
    return w if channels else w.reshape(w.shape[1 : n + 1] + w.shape[n + 2 :])


def tie(
    v: ArrayLike,
    *,
    channels: bool = False,
    input_size: IntOrTuple | None = None,
    atol: float = 0.0,
) -> NDArray[Any]:
    """Apply translation invariance: ``v[i, a] = v[a]`` for every output position ``i``.

    Parameters
    ----------
    v : array_like
        A reindexed weight, as returned by :func:`reindex`.
    channels : bool
    input_size : tuple of int, optional
        As in :func:`unreindex`; only entries that reach inside the input are compared.
    atol : float
        Largest difference accepted as equal (0: exact).

    Returns
    -------
    kernel : ndarray, shape (*(2R + 1)) or (C_out, C_in, *(2R + 1))
        ``kernel[a + R]`` is the weight of offset ``a``: ``h[i] = sum_a
        kernel[a] x[i + a]``, the cross-correlation.

    Raises
    ------
    PrincipleError
        ``'translation invariance'``, with the first entry ``v[i, a]`` that
        differs from ``v[i0, a]`` at another output position ``i0``.
    """
    v = _float_or_int(v, "v")
    n = _spatial_rank(v, channels, "v")
    V = _with_channels(v, n, channels)
    S_out, R, S = _offset_size(V, n, input_size)
    _, grid = _reindex_grid(S_out, S)

    def describe(o: int, i: Shape, c: int, t: Shape) -> tuple[str, tuple[int, ...]]:
        a = tuple(tt - r for tt, r in zip(t, R))
        index = (o, *i, c, *t) if channels else (*i, *t)
        ch = f"o={o}, c={c}, " if channels else ""
        return f"v[{ch}i={i}, a={a}] (index {index})", index

    kernel = _outer_kernel(_tie(_inner(V, n), grid, describe, atol), n)
    return kernel if channels else kernel[0, 0]


def _outer_kernel(ref: NDArray[Any], n: int) -> NDArray[Any]:
    """(*K, O, C) -> (O, C, *K), contiguous."""
    return np.ascontiguousarray(np.moveaxis(ref, (n, n + 1), (0, 1)))


def localize(
    kernel: ArrayLike, delta: IntOrTuple, *, channels: bool = False, atol: float = 0.0
) -> NDArray[Any]:
    """Apply locality: keep offsets ``|a| <= delta``; everything outside must be zero.

    Parameters
    ----------
    kernel : array_like, shape (*(2R + 1)) or (C_out, C_in, *(2R + 1))
        A tied kernel with offset 0 in the middle, as returned by :func:`tie`.
    delta : int or tuple of int, >= 0
        The lecture's Delta, per spatial dim.
    channels : bool
    atol : float
        Largest magnitude accepted as zero (0: exact).

    Returns
    -------
    ndarray, shape (*(2 delta + 1)) or (C_out, C_in, *(2 delta + 1))
        The convolution kernel: ``h[i] = sum_{|a| <= delta} k[a + delta] x[i + a]``,
        i.e. ``conv(x, k, padding=delta)``. ``delta = 0`` leaves a per-pixel layer:
        one ``(C_out, C_in)`` matrix applied at every position (a 1x1 convolution).

    Raises
    ------
    PrincipleError
        ``'locality'``, with the first non-zero entry outside the window.
    """
    k = _float_or_int(kernel, "kernel")
    extra = 2 if channels else 0
    n = k.ndim - extra
    if n < 1:
        raise ValueError(
            f"`kernel` must have shape {'(C_out, C_in, *K)' if channels else '(*K)'} "
            f"with at least one spatial dim; got shape {k.shape}"
        )
    A = k.shape[extra:]
    if any(a % 2 == 0 for a in A):
        raise ValueError(
            f"`kernel` must have odd spatial sizes 2R + 1 with offset 0 in the "
            f"middle (as returned by tie), got spatial shape {A}"
        )
    delta = _args.ntuple(delta, n, "delta", minimum=0)
    R = tuple((a - 1) // 2 for a in A)
    outside = np.zeros(A, dtype=bool)
    for d, (r, dl) in enumerate(zip(R, delta)):
        shape = [1] * n
        shape[d] = A[d]
        outside = outside | (np.abs(np.arange(-r, r + 1)) > dl).reshape(shape)
    bad = ~(np.abs(k) <= atol) & outside
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        a = tuple(i - r for i, r in zip(index[extra:], R))
        ch = f"o={index[0]}, c={index[1]}, " if channels else ""
        raise PrincipleError(
            LOCALITY, f"kernel[{ch}a={a}] (index {index})", index, k[index],
            f"but |a| must be <= delta = {delta}",
        )
    # Crop to the window, padding with zeros where delta exceeds R.
    grow = tuple((max(dl - r, 0),) * 2 for r, dl in zip(R, delta))
    k = np.pad(k, ((0, 0),) * extra + grow)
    crop = tuple(slice(max(r - dl, 0), max(r - dl, 0) + 2 * dl + 1) for r, dl in zip(R, delta))
    return np.ascontiguousarray(k[(slice(None),) * extra + crop])


# --------------------------------------------------------------------------
# channels, stride, padding, dilation: dense <-> local <-> conv


def local_to_dense(
    weight: ArrayLike,
    input_shape: Sequence[int],
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    padding_mode: str = "zeros",
) -> NDArray[Any]:
    """The dense weight of a locally connected layer.

    Parameters
    ----------
    weight : array_like, shape (C_out, *S_out, C_in, *K)
        One kernel per output position, as :class:`ndconv.nn.LocallyConnected`.
    input_shape : tuple of int
        ``(C_in, *S)``, an unbatched input's shape.
    stride, padding, dilation
        As in :func:`ndconv.conv`; ``S_out`` must be the output size they give.
    padding_mode : {'zeros', 'circular'}

    Returns
    -------
    W : ndarray, shape (C_out, *S_out, C_in, *S)
        ``W[o, p, c, p*stride + t*dilation - pad_lo] = weight[o, p, c, t]``;
        taps that read the padding are dropped (zeros) or wrap (circular).
    """
    w = _float_or_int(weight, "weight")
    n = _spatial_rank(w, True, "weight")
    S = _input_shape(input_shape, n, w.shape[n + 1])
    K = w.shape[n + 2 :]
    S_out, stride, dilation, pairs = _geometry(S, K, stride, padding, dilation, padding_mode)
    if w.shape[1 : n + 1] != S_out:
        raise ValueError(
            f"`weight` has {w.shape[1 : n + 1]} output positions, but an input of "
            f"size {S} with kernel {K}, stride {stride}, padding {pairs} and "
            f"dilation {dilation} gives S_out = floor((S + lo + hi - d*(K-1) - 1)/s) "
            f"+ 1 = {S_out}"
        )
    _guard((w.shape[0], *S_out, w.shape[n + 1], *S), w.dtype, "the dense weight")
    grid = _Grid(S_out, S, K, stride, dilation, pairs, padding_mode == "circular")
    return np.ascontiguousarray(_outer(_scatter(_inner(w, n), S, grid), n))


def conv_to_dense(
    weight: ArrayLike,
    input_shape: Sequence[int],
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
) -> NDArray[Any]:
    """The dense weight ``W`` of a convolution (the doubly block Toeplitz matrix in 2-D).

    Parameters
    ----------
    weight : array_like, shape (C_out, C_in // groups, *K)
        As given to :func:`ndconv.conv`.
    input_shape : tuple of int
        ``(C_in, *S)``, an unbatched input's shape.
    stride, padding, dilation, groups
        As in :func:`ndconv.conv`.
    padding_mode : {'zeros', 'circular'}

    Returns
    -------
    W : ndarray, shape (C_out, *S_out, C_in, *S)
        ``np.tensordot(W, x, axes=x.ndim) == conv(x, weight, None, stride,
        padding, dilation, groups, padding_mode)`` for ``x`` of ``input_shape``.
        Its size is ``C_out * C_in * prod(S_out) * prod(S)``: checked against the
        memory limit before anything is allocated.

    Examples
    --------
    >>> import numpy as np
    >>> W = conv_to_dense(np.array([[[1.0, 2.0]]]), (1, 3))   # kernel [1, 2] on 3 inputs
    >>> W[0, :, 0, :]
    array([[1., 2., 0.],
           [0., 1., 2.]])
    """
    w = _float_or_int(weight, "weight")
    if w.ndim < 3:
        raise ValueError(
            f"`weight` must have shape (C_out, C_in // groups, *K) with at least one "
            f"spatial dim, got shape {w.shape}"
        )
    n = w.ndim - 2
    O, Cg, K = w.shape[0], w.shape[1], w.shape[2:]
    g = _args.positive_int(groups, "groups")
    if O % g:
        raise ValueError(f"`out_channels` (={O}) must be divisible by `groups` (={g})")
    C = Cg * g
    S = _input_shape(input_shape, n, C)
    S_out, stride, dilation, pairs = _geometry(S, K, stride, padding, dilation, padding_mode)
    _guard((O, *S_out, C, *S), w.dtype, "the dense weight")
    # Groups are a block-diagonal kernel over channels.
    full = np.zeros((O, C, *K), dtype=w.dtype)
    Og = O // g
    for j in range(g):
        full[j * Og : (j + 1) * Og, j * Cg : (j + 1) * Cg] = w[j * Og : (j + 1) * Og]
    # A convolution is a locally connected layer with one kernel for all positions.
    inner = np.broadcast_to(np.moveaxis(full, (0, 1), (n, n + 1)), (*S_out, *K, O, C))
    grid = _Grid(S_out, S, K, stride, dilation, pairs, padding_mode == "circular")
    return np.ascontiguousarray(_outer(_scatter(inner, S, grid), n))


def _dense_and_grid(
    W: ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple,
    padding: Padding,
    dilation: IntOrTuple,
    padding_mode: str,
) -> tuple[NDArray[Any], int, Shape, _Grid]:
    W = _float_or_int(W, "W")
    if isinstance(kernel_size, (int, np.integer)) and not isinstance(kernel_size, bool):
        n = _spatial_rank(W, True, "W")
    else:
        n = len(kernel_size) if isinstance(kernel_size, (tuple, list)) else 0
    K = _args.ntuple(kernel_size, max(n, 1), "kernel_size", minimum=1)
    S_out, S = _dense_layout(W, len(K))
    S_exp, stride, dilation, pairs = _geometry(S, K, stride, padding, dilation, padding_mode)
    if S_out != S_exp:
        raise ValueError(
            f"`W` has {S_out} output positions, but an input of size {S} with "
            f"kernel {K}, stride {stride}, padding {pairs} and dilation {dilation} "
            f"gives S_out = floor((S + lo + hi - d*(K-1) - 1)/s) + 1 = {S_exp}"
        )
    grid = _Grid(S_out, S, K, stride, dilation, pairs, padding_mode == "circular")
    if grid.circular:
        # A window wider than the input wraps two taps onto one input position;
        # W then holds their sum, which cannot be split back into taps.
        for d, (q, so, k) in enumerate(zip(grid.Q, S_out, K)):
            q = np.sort(q.reshape(so, k), axis=1)
            dup = np.argwhere(q[:, 1:] == q[:, :-1])
            if dup.size:
                raise ValueError(
                    f"with padding_mode='circular', the dilated kernel (size "
                    f"{dilation[d] * (K[d] - 1) + 1}) wraps around the input (size "
                    f"{S[d]}) in spatial dim {d}: two taps read the same input "
                    f"position {int(q[tuple(dup[0])])}, so `W` holds their sum and "
                    "cannot be split into taps"
                )
    return W, len(K), S, grid


def _local_checked(
    W: NDArray[Any],
    n: int,
    S: Sequence[int],
    grid: _Grid,
    atol: float,
    kernel_size: Sequence[int],
) -> NDArray[Any]:
    """Gather the local weight after checking locality."""
    Wi = _inner(W, n)
    _guard((*grid.shape, W.shape[0], W.shape[n + 1]), W.dtype, "the local weight")
    bad = ~(np.abs(Wi) <= atol) & ~_covered(S, grid)[..., None, None]
    if bad.any():
        p_q_o_c = tuple(int(i) for i in np.argwhere(bad)[0])
        p, q = p_q_o_c[:n], p_q_o_c[n : 2 * n]
        o, c = p_q_o_c[2 * n], p_q_o_c[2 * n + 1]
        index = (o, *p, c, *q)
        raise PrincipleError(
            LOCALITY, f"W{list(index)}", index, W[index],
            f"connects output position {p} to input position {q}, outside its "
            f"window (kernel_size {tuple(kernel_size)})",
        )
    return _gather(Wi, grid)


def dense_to_local(
    W: ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    padding_mode: str = "zeros",
    *,
    atol: float = 0.0,
) -> NDArray[Any]:
    """The locally connected weight of a dense weight that is local.

    Parameters
    ----------
    W : array_like, shape (C_out, *S_out, C_in, *S)
    kernel_size : int or tuple of int
    stride, padding, dilation, padding_mode
        As in :func:`local_to_dense`; ``S_out`` must match.
    atol : float
        Largest magnitude accepted as zero outside the windows (0: exact).

    Returns
    -------
    ndarray, shape (C_out, *S_out, C_in, *K)

    Raises
    ------
    PrincipleError
        ``'locality'``, naming the first entry of ``W`` that connects an output
        to an input outside its window.
    """
    W, n, S, grid = _dense_and_grid(W, kernel_size, stride, padding, dilation, padding_mode)
    Li = _local_checked(W, n, S, grid, atol, grid.shape[n:])
    return np.ascontiguousarray(_outer(Li, n))


def dense_to_conv(
    W: ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    padding_mode: str = "zeros",
    *,
    atol: float = 0.0,
) -> NDArray[Any]:
    """The convolution kernel of a dense weight that is local and tied.

    Parameters
    ----------
    W : array_like, shape (C_out, *S_out, C_in, *S)
    kernel_size : int or tuple of int
    stride, padding, dilation, padding_mode
        The convolution's (default: stride 1, no padding, so ``S_out = S - K + 1``).
    atol : float
        Tolerance of both checks (0: exact).

    Returns
    -------
    ndarray, shape (C_out, C_in, *K)
        ``conv_to_dense(result, (C_in, *S), stride, padding, ...) == W``.

    Raises
    ------
    PrincipleError
        ``'locality'`` for a non-zero entry outside every window, else
        ``'translation invariance'`` for a tap whose weight differs between two
        output positions; both name the entry of ``W`` and its value.
    """
    W, n, S, grid = _dense_and_grid(W, kernel_size, stride, padding, dilation, padding_mode)
    K = grid.shape[n:]
    Li = _local_checked(W, n, S, grid, atol, K)

    def describe(o: int, p: Shape, c: int, t: Shape) -> tuple[str, tuple[int, ...]]:
        pt = (*p, *t)
        q = tuple(int(np.broadcast_to(Qd, grid.shape)[pt]) for Qd in grid.Q)
        index = (o, *p, c, *q)
        return f"W{list(index)} (output position {p}, tap {t})", index

    return _outer_kernel(_tie(Li, grid, describe, atol), n)

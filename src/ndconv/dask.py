"""Convolution of arrays bigger than memory: :func:`conv`, :func:`correlate`
and :func:`convolve` on a ``dask.array.Array``, returning a lazy dask array.

``ndconv.conv(x, ...)`` (and ``correlate``/``convolve``) hand a dask ``x`` to
this module, so the same call works in memory and on a cluster; nothing is
computed until ``.compute()``, ``.store()`` or ``.to_zarr()`` asks.

How it is chunked
-----------------
The boundary is padded first, lazily, with the same rule as NumPy's ``np.pad``
('zeros', 'reflect', 'replicate', 'circular' = wrap): slices of the array's own
ends concatenated on, so a wrapped or reflected border reads the right cells
whatever the chunking (dask-image issue 242 was a periodic boundary that was
wrong at chunk edges). Then each output block is one task: it reads exactly
the padded input window its outputs need, ``[o0*s, (o1-1)*s + d*(k-1) + 1)``
per spatial dim, from as many input chunks as that window touches (so chunks
smaller than the kernel, and any stride, work), and runs the in-memory
algorithm on it (``method='auto'`` is resolved once, for the largest block).
This is ``map_overlap`` with the halo computed per output block instead of
per input chunk, which is what keeps the blocks on the stride grid. The parts
of a neighbouring chunk a window needs are cut out as copies by small tasks,
so each input chunk can be freed as soon as it has been cut, not held until
every window around it has run. Output blocks follow the input chunks
divided by the stride; batch chunks are kept, channels are made whole.

Dask is an optional extra (``pip install 'ndconv[dask]'``); ``import ndconv``
never imports it.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

try:
    import dask.array as da
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "ndconv.dask needs the optional dependency dask: pip install 'ndconv[dask]'"
    ) from exc

from . import _args, _dtypes
from . import functional as _f
from .algorithms import CorrSpec, _check_memory
from .algorithms import run as _run
from .algorithms.choose import choose

__all__ = ["conv", "correlate", "convolve", "store_by_slabs"]


# --------------------------------------------------------------------------
# validation of the lazy input (never computes it)


def _check_lazy(x, name, *, dtypes):
    """Check a dask array's dtype and shape without computing anything."""
    if not _f._is_dask(x):
        raise TypeError(f"`{name}` must be a dask array, got {type(x).__name__}")
    # The dtype rules (and their messages) are those of the NumPy path; an
    # empty array of the same dtype carries them without touching the data.
    _args.check_array(np.empty(0, dtype=x.dtype), name, dtypes=dtypes)
    if any(math.isnan(s) for s in x.shape):
        raise ValueError(
            f"`{name}` has unknown chunk sizes (shape {x.shape}); call "
            f"`{name}.compute_chunk_sizes()` first"
        )
    if any(s == 0 for s in x.shape):
        raise ValueError(f"`{name}` has an empty dimension (shape {x.shape})")
    return x


def _in_memory(a, name):
    if _f._is_dask(a):
        raise TypeError(
            f"`{name}` must be an in-memory array (NumPy), not a dask array; the "
            f"kernel is small: call `{name}.compute()`"
        )
    return a


# --------------------------------------------------------------------------
# lazy boundary padding, np.pad's rules


def _edge(x, axis, width, side, mode):
    """The ``width`` cells that ``mode`` puts on ``side`` of ``x`` along ``axis``."""
    n = x.shape[axis]

    def take(start, stop):
        key = [slice(None)] * x.ndim
        key[axis] = slice(start, stop)
        return x[tuple(key)]

    if mode == "zeros":
        shape = list(x.shape)
        shape[axis] = width
        chunks = list(x.chunks)
        chunks[axis] = (width,)
        return da.zeros(shape, dtype=x.dtype, chunks=tuple(chunks))
    if mode == "replicate":
        return da.repeat(take(0, 1) if side == "lo" else take(n - 1, n), width, axis=axis)
    if mode == "circular":
        return take(n - width, n) if side == "lo" else take(0, width)
    # reflect, without repeating the edge cell (width < n, validated upstream)
    part = take(1, width + 1) if side == "lo" else take(n - 1 - width, n - 1)
    return da.flip(part, axis=axis)


def _pad(x, pairs, mode):
    """Pad the trailing spatial dims of a dask array, one dim after the other as np.pad."""
    lead = x.ndim - len(pairs)
    for i, (lo, hi) in enumerate(pairs):
        ax = lead + i
        parts = []
        if lo:
            parts.append(_edge(x, ax, lo, "lo", mode))
        parts.append(x)
        if hi:
            parts.append(_edge(x, ax, hi, "hi", mode))
        if len(parts) > 1:
            x = da.concatenate(parts, axis=ax)
    return x


# --------------------------------------------------------------------------
# the one lazy correlation: per-output-block windows of a padded input


def _out_bounds(in_chunks, stride, out_size):
    """Output block edges: the input chunk edges divided by the stride."""
    edges = np.cumsum((0,) + tuple(in_chunks))
    out = {min(out_size, -(-int(e) // stride)) for e in edges}
    out |= {0, out_size}
    return sorted(out)


def _cut(chunk, index):
    """A copy of part of an input chunk, so the chunk can be freed once cut.

    A view would keep the whole chunk alive until the window that needs a
    thin halo of it runs; in 3-D that held several slabs of chunks at once.
    """
    return chunk[index].copy()


def _window_block(parts, w, bias, stride, dilation, groups, method):
    """Correlate one padded input window (given as nested pieces) with ``w``."""
    x = np.block(parts) if isinstance(parts, list) else parts
    n = len(stride)
    spec = CorrSpec(
        batch=x.shape[0], in_channels=x.shape[1], out_channels=w.shape[0],
        groups=groups, in_spatial=x.shape[2:], kernel_size=w.shape[2:],
        stride=stride, dilation=dilation, pairs=((0, 0),) * n,
        lhs_dilation=(1,) * n, padding_mode="zeros", dtype=x.dtype,
    )
    # As ndconv.conv: half precision computed with its bias in float32, rounded once.
    spec, (x, w, bias), dtype = _dtypes.to_compute(spec, x, w, bias)
    y = _run(np.ascontiguousarray(x), w, spec, method)
    if bias is not None:
        y += bias.reshape((-1,) + (1,) * n)
    return y.astype(dtype, copy=False)


def _windows(bounds, stride, dilation, kernel_size, chunks):
    """Per spatial dim, per output block: the input pieces its window reads.

    Output block ``[o0, o1)`` reads padded cells ``[o0*s, (o1-1)*s + d*(k-1) + 1)``;
    each piece is ``(chunk index, slice within the chunk, whole chunk?)``.
    """
    out = []
    for b, s, d, k, c in zip(bounds, stride, dilation, kernel_size, chunks):
        st = np.cumsum((0,) + tuple(c))
        blocks = []
        for o0, o1 in zip(b[:-1], b[1:]):
            lo, hi = o0 * s, (o1 - 1) * s + d * (k - 1) + 1
            j0 = int(np.searchsorted(st, lo, side="right")) - 1
            j1 = int(np.searchsorted(st, hi, side="left"))
            pieces = []
            for j in range(j0, j1):
                a, z = max(lo, int(st[j])) - int(st[j]), min(hi, int(st[j + 1])) - int(st[j])
                pieces.append((j, slice(a, z), a == 0 and z == c[j]))
            blocks.append((pieces, hi - lo))
        out.append(blocks)
    return out


def _nest(items, n):
    """Nested lists (outermost = first spatial dim, np.block's order) of a
    row-major flat list over an ``n``-dim grid whose shape ``items`` gives."""
    shape, flat = items
    if n == 0:
        return flat[0]
    step = len(flat) // shape[0]
    return [_nest((shape[1:], flat[i * step:(i + 1) * step]), n - 1) for i in range(shape[0])]


def _correlate_valid(xp, w, bias, stride, dilation, groups, out_spatial, in_chunks, method):
    """Lazy valid correlation of the padded ``xp`` (B, C, *Sp), C in one chunk.

    ``in_chunks`` are the unpadded input's spatial chunks, which set the
    output blocks (so the padding's small edge chunks do not).
    """
    n = len(stride)
    K = w.shape[2:]
    bounds = [_out_bounds(c, s, p) for c, s, p in zip(in_chunks, stride, out_spatial)]
    per_dim = _windows(bounds, stride, dilation, K, xp.chunks[2:])
    window = tuple(max(m for _, m in blocks) for blocks in per_dim)
    largest = CorrSpec(
        batch=max(xp.chunks[0]), in_channels=xp.shape[1], out_channels=w.shape[0],
        groups=groups, in_spatial=window, kernel_size=K, stride=stride,
        dilation=dilation, pairs=((0, 0),) * n, lhs_dilation=(1,) * n,
        padding_mode="zeros", dtype=xp.dtype,
    )
    # The halo makes a window as large as the dilated kernel (a huge dilation
    # with 'same'): refuse now, as the NumPy path does, not in a worker.
    _check_memory(largest)
    if method == "auto":
        # One algorithm for every block, chosen for the largest: the cost model
        # would otherwise pick by block size and blocks could differ in rounding.
        method = choose(largest)[0]
    token = tokenize(xp.name, w, bias, stride, dilation, groups, bounds, method)
    name, cut = f"ndconv-conv-{token}", f"ndconv-halo-{token}"
    dsk = {}
    for bi in range(len(xp.chunks[0])):
        for idx in itertools.product(*(range(len(b)) for b in per_dim)):
            chosen = [per_dim[i][j][0] for i, j in enumerate(idx)]
            keys = []
            for piece in itertools.product(*chosen):
                js = tuple(j for j, _, _ in piece)
                src = (xp.name, bi, 0, *js)
                if all(whole for _, _, whole in piece):
                    keys.append(src)
                else:
                    key = (cut, bi, *idx, *js)
                    index = (slice(None), slice(None), *(sl for _, sl, _ in piece))
                    dsk[key] = (_cut, src, index)
                    keys.append(key)
            parts = _nest((tuple(len(c) for c in chosen), keys), n)
            dsk[(name, bi, 0, *idx)] = (
                _window_block, parts, w, bias, stride, dilation, groups, method,
            )
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[xp])
    chunks = (xp.chunks[0], (w.shape[0],)) + tuple(
        tuple(np.diff(b).tolist()) for b in bounds
    )
    meta = np.empty((0,) * (n + 2), dtype=xp.dtype)
    return da.Array(graph, name, chunks, meta=meta)


# --------------------------------------------------------------------------
# public API


def conv(
    x,
    weight,
    bias=None,
    stride=1,
    padding=0,
    dilation=1,
    groups=1,
    padding_mode="zeros",
    *,
    method="auto",
):
    """Lazy :func:`ndconv.conv` of a dask array; same arguments, same values.

    Parameters
    ----------
    x : dask.array.Array, shape (B, C_in, *S) or (C_in, *S)
        float32 or float64. Any chunking of the batch and spatial dims; the
        channel dim is rechunked into one piece.
    weight : ndarray, shape (C_out, C_in // groups, *K)
        In memory (NumPy), same dtype as ``x``.
    bias, stride, padding, dilation, groups, padding_mode, method
        As :func:`ndconv.conv`.

    Returns
    -------
    dask.array.Array, shape (B, C_out, *S_out) or (C_out, *S_out)
        Lazy. Spatial blocks follow ``x``'s chunks divided by the stride.

    Examples
    --------
    >>> import dask.array as da, numpy as np, ndconv
    >>> x = da.ones((1, 1, 8, 8), chunks=(1, 1, 3, 3))
    >>> y = ndconv.conv(x, np.ones((1, 1, 3, 3)), padding=1, padding_mode="circular")
    >>> float(y.sum().compute())
    576.0
    """
    method = _f._check_method(method)
    w = _f._check_weight(_in_memory(weight, "weight"))
    x = _check_lazy(x, "x", dtypes=_dtypes.conv_dtypes())
    n = w.ndim - 2
    if x.ndim not in (n + 1, n + 2):
        raise ValueError(
            f"`x` must have shape (B, C, *S) or (C, *S) with {n} spatial dims "
            f"(the weight has {n}), so ndim {n + 2} or {n + 1}; got shape {x.shape}"
        )
    if x.dtype != w.dtype:
        raise TypeError(
            f"`x` (dtype {x.dtype}) and `weight` (dtype {w.dtype}) must have the "
            "same dtype; cast one of them with .astype()"
        )
    unbatched = x.ndim == n + 1
    xb = x[None] if unbatched else x
    # _conv_spec reads only shapes and dtypes, so it validates without computing.
    spec = _f._conv_spec(xb, w, stride, padding, dilation, groups, padding_mode)
    b = _f._check_bias(_in_memory(bias, "bias"), w.shape[0], w.dtype)
    xb = xb.rechunk({1: -1})
    xp = _pad(xb, spec.pairs, spec.padding_mode)
    out = _correlate_valid(
        xp, np.ascontiguousarray(w), b, spec.stride, spec.dilation, spec.groups,
        spec.out_spatial, xb.chunks[2:], method,
    )
    return out[0] if unbatched else out


def _plain(x, kernel, bias, mode, method, flip):
    """Lazy twin of :func:`ndconv.functional._plain` (same checks, same messages)."""
    method = _f._check_method(method)
    x = _check_lazy(x, "x", dtypes=_dtypes.numeric())
    k = _args.check_array(_in_memory(kernel, "kernel"), "kernel", floating=False)
    if x.ndim != k.ndim or x.ndim == 0:
        raise ValueError(
            f"`x` (ndim {x.ndim}) and `kernel` (ndim {k.ndim}) must have the same "
            "number of dims, at least 1"
        )
    if not isinstance(mode, str) or mode not in _f._MODES:
        raise ValueError(f"`mode` (={mode!r}) must be one of {_f._MODES}")
    _args.check_no_empty(k, "kernel")
    _dtypes.check_scalar_bias(bias)
    dtype = np.result_type(x.dtype, k.dtype)
    out_dtype = (np.zeros(1, dtype) + bias).dtype  # NumPy's rules for `+ bias`
    if mode == "valid":
        if all(m >= s for m, s in zip(k.shape, x.shape)) and k.shape != x.shape:
            # The kernel is the larger array, so scipy swaps the roles; then x is
            # the small one and fits in one task.
            shape = tuple(m - s + 1 for m, s in zip(k.shape, x.shape))
            return x.rechunk(-1).map_blocks(
                _f._plain, k, bias, mode, method, flip,
                chunks=tuple((s,) for s in shape), dtype=out_dtype,
            )
        if not all(s >= m for m, s in zip(k.shape, x.shape)):
            raise ValueError(
                f"mode='valid' needs `x` (shape {x.shape}) or `kernel` (shape "
                f"{k.shape}) to be at least as large as the other in every dim"
            )
        pairs = ((0, 0),) * x.ndim
    elif mode == "full":
        pairs = tuple((m - 1, m - 1) for m in k.shape)
    else:  # scipy centres 'same' on the full output
        pairs = tuple((m // 2, (m - 1) // 2) for m in k.shape)
    if flip:  # convolution = correlation with the flipped kernel
        k = np.flip(k)
    else:  # SciPy's rule: correlate conjugates a complex kernel
        k = _dtypes.conj(k)
    k = np.ascontiguousarray(k, dtype=dtype)
    n = x.ndim
    xb = x.astype(dtype)[None, None]
    out_spatial = tuple(
        s + lo + hi - m + 1 for s, (lo, hi), m in zip(x.shape, pairs, k.shape)
    )
    xp = _pad(xb, pairs, "zeros")
    out = _correlate_valid(
        xp, k[None, None], None, (1,) * n, (1,) * n, 1, out_spatial, x.chunks, method
    )[0, 0]
    return out + bias


def correlate(x, kernel, bias=0, mode="valid", *, method="auto"):
    """Lazy :func:`ndconv.correlate` of a dask array (``scipy.signal.correlate`` + bias).

    Parameters
    ----------
    x : dask.array.Array, N-d
        integer, float or complex; any chunking.
    kernel : ndarray, N-d
        In memory.
    bias, mode, method
        As :func:`ndconv.correlate`.

    Returns
    -------
    dask.array.Array
        Lazy; the dtype is the one the NumPy path returns.
    """
    return _plain(x, kernel, bias, mode, method, flip=False)


def convolve(x, kernel, bias=0, mode="valid", *, method="auto"):
    """Lazy :func:`ndconv.convolve` of a dask array (flipped kernel); see :func:`correlate`."""
    return _plain(x, kernel, bias, mode, method, flip=True)


def store_by_slabs(y, target, *, axis=0, scheduler=None):
    """Compute ``y`` and write it into ``target`` one slab of blocks at a time.

    Dask orders the tasks of the whole graph at once, and for a stencil in
    3-D its order can keep most of the input in memory (measured with
    ``benchmarks/dask_volume.py``, also for ``map_overlap``). Computing one
    row of blocks along ``axis`` at a time bounds the memory by a slab and
    its halo, at the price of reading the chunks next to each slab again.

    Parameters
    ----------
    y : dask.array.Array
    target : array-like supporting ``target[index] = block`` (Zarr, memmap)
        Same shape as ``y``.
    axis : int
        The axis cut into slabs (one of ``y``'s chunks thick).
    scheduler : str or distributed.Client, optional
        Passed to ``dask.compute`` (a client computes there).
    """
    if not _f._is_dask(y):
        raise TypeError(f"`y` must be a dask array, got {type(y).__name__}")
    if tuple(target.shape) != tuple(y.shape):
        raise ValueError(
            f"`target` (shape {tuple(target.shape)}) must have the shape of `y` ({y.shape})"
        )
    axis = _args.ntuple(axis, 1, "axis")[0] % y.ndim
    edges = np.cumsum((0,) + y.chunks[axis])
    for a, b in zip(edges[:-1], edges[1:]):
        index = (slice(None),) * axis + (slice(int(a), int(b)),)
        part = da.store(y[index], target, regions=index, lock=False, compute=False)
        if hasattr(scheduler, "compute"):  # a distributed.Client
            scheduler.compute(part).result()
        else:
            part.compute(scheduler=scheduler)

"""Convolution of arrays bigger than memory: :func:`conv`, :func:`correlate`
and :func:`convolve` on a ``dask.array.Array``, returning a lazy dask array.

Dask plugs into ndconv as one more array library: the public functions
resolve a dask ``x`` to :data:`BACKEND` (``ndconv.core._backends.PLUGINS`` names
this module; it is imported when the first dask array arrives), validate its
shape and dtype as for NumPy without computing anything, and hand the
correlation to :meth:`DaskBackend.correlate`. So ``ndconv.conv``,
``conv_transpose``, ``correlate``, ``convolve`` and the gradients work the same
in memory and on a cluster; nothing is computed until ``.compute()``,
``.store()`` or ``.to_zarr()`` asks.

How it is chunked
-----------------
The boundary is padded first, lazily, by the same portable padding as every
array library (:func:`ndconv.core._windows.pad_portable`: 'zeros', 'reflect',
'replicate', 'circular' = wrap): slices of the array's own ends concatenated
on, so a wrapped or reflected border reads the right cells
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

import dataclasses
import importlib
import itertools
import math
from typing import TYPE_CHECKING, Any

import numpy as np

try:
    import dask.array as da
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "ndconv.dask needs the optional dependency dask: pip install 'ndconv[dask]'"
    ) from exc

from .core import _args, _dtypes
from .core._backends import Backend, library_of
from .core._windows import pad_portable
from .core.algorithms import CorrSpec, check_memory
from .core.algorithms import run as _run
from .core.algorithms.choose import choose

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .core._typing import (AnyArray, ArrayLike, DTypeLike, IntOrTuple, NDArray, Padding,
                               Scalar, Shape)

    #: One piece of an output block's window: (input chunk index, slice of
    #: that chunk, whether it is the whole chunk).
    Piece = tuple[int, slice, bool]
    #: Per spatial dim, per output block: its pieces and its window's length.
    Windows = list[list[tuple[list[Piece], int]]]

__all__ = ["conv", "correlate", "convolve", "store_by_slabs"]


# --------------------------------------------------------------------------
# the one lazy correlation: per-output-block windows of a padded input


def _out_bounds(in_chunks: Sequence[int], stride: int, out_size: int) -> list[int]:
    """Output block edges: the input chunk edges divided by the stride."""
    edges = np.cumsum((0,) + tuple(in_chunks))
    out = {min(out_size, -(-int(e) // stride)) for e in edges}
    out |= {0, out_size}
    return sorted(out)


def _cut(chunk: NDArray[Any], index: tuple[slice, ...]) -> NDArray[Any]:
    """A copy of part of an input chunk, so the chunk can be freed once cut.

    A view would keep the whole chunk alive until the window that needs a
    thin halo of it runs; in 3-D that held several slabs of chunks at once.
    """
    return chunk[index].copy()


def _window_block(
    parts: Any,
    w: NDArray[Any],
    bias: NDArray[Any] | None,
    stride: Shape,
    dilation: Shape,
    groups: int,
    method: str,
) -> NDArray[Any]:
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
    spec, (xc, wc, bc), dtype = _dtypes.to_compute(spec, x, w, bias)
    y = _run(np.ascontiguousarray(xc), wc, spec, method)
    if bc is not None:
        y += bc.reshape((-1,) + (1,) * n)
    return y.astype(dtype, copy=False)


def _windows(
    bounds: Sequence[Sequence[int]],
    stride: Sequence[int],
    dilation: Sequence[int],
    kernel_size: Sequence[int],
    chunks: Sequence[Sequence[int]],
) -> Windows:
    """Per spatial dim, per output block: the input pieces its window reads.

    Output block ``[o0, o1)`` reads padded cells ``[o0*s, (o1-1)*s + d*(k-1) + 1)``;
    each piece is ``(chunk index, slice within the chunk, whole chunk?)``.
    """
    out: Windows = []
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


def _nest(items: tuple[Sequence[int], Sequence[Any]], n: int) -> Any:
    """Nested lists (outermost = first spatial dim, np.block's order) of a
    row-major flat list over an ``n``-dim grid whose shape ``items`` gives."""
    shape, flat = items
    if n == 0:
        return flat[0]
    step = len(flat) // shape[0]
    return [_nest((shape[1:], flat[i * step:(i + 1) * step]), n - 1) for i in range(shape[0])]


def _correlate_valid(
    xp: da.Array,
    w: NDArray[Any],
    bias: NDArray[Any] | None,
    stride: Shape,
    dilation: Shape,
    groups: int,
    out_spatial: Shape,
    in_chunks: Sequence[Sequence[int]],
    method: str,
) -> da.Array:
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
    check_memory(largest)
    if method == "auto":
        # One algorithm for every block, chosen for the largest: the cost model
        # would otherwise pick by block size and blocks could differ in rounding.
        method = choose(largest)[0]
    token = tokenize(xp.name, w, bias, stride, dilation, groups, bounds, method)
    name, cut = f"ndconv-conv-{token}", f"ndconv-halo-{token}"
    dsk: dict[Any, Any] = {}  # dask's keys: (name, *block index)
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
            block = (name, bi, 0, *idx)
            dsk[block] = (_window_block, parts, w, bias, stride, dilation, groups, method)
    deps: list[Any] = [xp]  # (dask's DaskCollection protocol does not match its Array)
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=deps)
    chunks = (xp.chunks[0], (w.shape[0],)) + tuple(
        tuple(np.diff(b).tolist()) for b in bounds
    )
    meta = np.empty((0,) * (n + 2), dtype=xp.dtype)
    return da.Array(graph, name, chunks, meta=meta)


# --------------------------------------------------------------------------
# the backend: how ndconv's public functions compute on dask arrays


def _is_dask(a: object) -> bool:
    return library_of(a) == "dask"


class DaskBackend(Backend):
    """ndconv's seam for dask arrays: validate without computing, correlate lazily.

    The public functions (:func:`ndconv.conv`, ``conv_transpose``,
    ``correlate``, ``convolve`` and the gradients) validate shapes and dtypes
    as for NumPy (the same messages) and hand the correlation to
    :meth:`correlate`, which builds the chunked graph. The kernel, weight and
    bias stay NumPy arrays in memory. Its operations are NumPy's functions,
    which dask arrays implement lazily.
    """

    name = "dask"
    numpy = False  # no in-place NumPy code on these arrays
    accepts_numpy = True  # the kernel, weight and bias are NumPy arrays
    spec_xp = np  # the algorithms compute on NumPy blocks

    def __init__(self) -> None:
        import array_api_compat.dask.array as xp  # the portable padding's namespace

        self.xp = xp

    def require(self, what: str) -> None:
        if what in ("max_pool", "max_pool_backward", "avg_pool", "avg_pool_backward"):
            raise TypeError(
                f"{what} takes in-memory arrays, not a dask array: compute it first, "
                "or pool each block with dask's map_overlap"
            )

    def array(
        self,
        a: Any,
        name: str,
        *,
        floating: bool = True,
        dtypes: Sequence[np.dtype[Any]] | None = None,
        kernel: bool = False,
    ) -> AnyArray:
        if not _is_dask(a):
            return _args.check_array(a, name, floating=floating, dtypes=dtypes)
        if kernel:
            raise TypeError(
                f"`{name}` must be an in-memory array (NumPy), not a dask array; the "
                f"kernel is small: call `{name}.compute()`"
            )
        # The dtype rules (and their messages) are those of the NumPy path; an
        # empty array of the same dtype carries them without touching the data.
        _args.check_array(np.empty(0, dtype=a.dtype), name, floating=floating, dtypes=dtypes)
        if any(math.isnan(n) for n in a.shape):
            raise ValueError(
                f"`{name}` has unknown chunk sizes (shape {a.shape}); call "
                f"`{name}.compute_chunk_sizes()` first"
            )
        return a

    def contiguous(self, a: AnyArray) -> AnyArray:
        return a if _is_dask(a) else np.ascontiguousarray(a)

    def add_bias(self, out: AnyArray, bias: AnyArray | None) -> AnyArray:
        if bias is None:
            return out
        return out + bias.reshape((-1,) + (1,) * (out.ndim - 2))

    def add_scalar(self, out: AnyArray, bias: Scalar, np_dtype: DTypeLike) -> AnyArray:
        # NumPy's rule for the dtype of `+ bias` (dask follows it), computed
        # from the dtypes: never from the lazy array's data.
        final = np.result_type(np.empty(0, np_dtype), bias)
        return (out + bias).astype(final)

    def sum_to(self, a: AnyArray, axes: tuple[int, ...], np_dtype: DTypeLike) -> AnyArray:
        return a.sum(axis=axes, dtype=_dtypes.compute_dtype(np_dtype)).astype(np_dtype)

    def correlate(
        self, x: AnyArray, w: AnyArray, spec: CorrSpec, method: str,
        bias: AnyArray | None = None,
    ) -> AnyArray:
        """Lazy correlation: per-output-block windows of the lazily padded input."""
        if _is_dask(w):
            return self._in_one_task(x, w, spec, method, bias)
        x = x.rechunk({1: -1})
        xp_ = pad_portable(self.xp, x, spec.pairs, spec.padding_mode,
                           lhs_dilation=spec.lhs_dilation)
        # Output blocks follow the (dilated) input's chunks.
        in_chunks = tuple(tuple(c * r for c in ch)
                          for ch, r in zip(x.chunks[2:], spec.lhs_dilation))
        return _correlate_valid(
            xp_, np.ascontiguousarray(w), bias, spec.stride, spec.dilation, spec.groups,
            spec.out_spatial, in_chunks, method,
        )

    def _in_one_task(
        self, x: AnyArray, w: da.Array, spec: CorrSpec, method: str, bias: AnyArray | None
    ) -> da.Array:
        """A lazy kernel (the weight gradient's, or correlate's smaller ``x``
        swapped in as the kernel): both whole, in one task."""
        xd = x.rechunk(-1) if _is_dask(x) else da.from_array(x, chunks=-1)
        block_spec = dataclasses.replace(spec, xp=np)

        def block(xb: NDArray[Any], wb: NDArray[Any]) -> NDArray[Any]:
            out = _run(np.ascontiguousarray(xb), np.ascontiguousarray(wb), block_spec,
                       method)
            return out if bias is None else out + bias.reshape((-1,) + (1,) * spec.ndim)

        return da.map_blocks(
            block, xd, w.rechunk(-1), chunks=tuple((n,) for n in spec.out_shape),
            dtype=spec.dtype, meta=np.empty((0,) * (spec.ndim + 2), spec.dtype),
        )


#: What :func:`ndconv.core._backends.resolve` hands the public functions for a dask array.
BACKEND = DaskBackend()


def conv(
    x: da.Array,
    weight: ArrayLike,
    bias: ArrayLike | None = None,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    *,
    method: str = "auto",
) -> da.Array:
    """Lazy :func:`ndconv.conv` of a dask array; same arguments, same values.

    :func:`ndconv.conv` itself takes dask arrays (this is it); see the module
    docstring for how the graph is chunked.

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
    _lazy(x)
    return _public("conv")(x, weight, bias, stride, padding, dilation, groups,
                           padding_mode, method=method)


def correlate(
    x: da.Array, kernel: ArrayLike, bias: Scalar = 0, mode: str = "valid", *,
    method: str = "auto",
) -> da.Array:
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
    _lazy(x)
    return _public("correlate")(x, kernel, bias, mode, method=method)


def convolve(
    x: da.Array, kernel: ArrayLike, bias: Scalar = 0, mode: str = "valid", *,
    method: str = "auto",
) -> da.Array:
    """Lazy :func:`ndconv.convolve` of a dask array (flipped kernel); see :func:`correlate`."""
    _lazy(x)
    return _public("convolve")(x, kernel, bias, mode, method=method)


def _lazy(x: object) -> None:
    if not _is_dask(x):
        raise TypeError(f"`x` must be a dask array, got {type(x).__name__}")


def _public(name: str) -> Callable[..., Any]:
    """The public function of the package (imported when called: ``ndconv``
    imports the functional API, which never imports this module)."""
    return getattr(importlib.import_module("ndconv"), name)


def store_by_slabs(y: da.Array, target: Any, *, axis: int = 0, scheduler: Any = None) -> None:
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
    if not _is_dask(y):
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

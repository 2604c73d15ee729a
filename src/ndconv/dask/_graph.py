"""The chunked graph of one lazy correlation: per-output-block windows of a padded input.

How it is chunked is described in :mod:`ndconv.dask`; :func:`_correlate_valid`
is what :meth:`ndconv.dask.backend.DaskBackend.correlate` hands the padded
input to.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from ..core import _dtypes
from ..core.algorithms import CorrSpec, check_memory
from ..core.algorithms import run as _run
from ..core.algorithms.choose import choose

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..core._typing import NDArray, Shape

    #: One piece of an output block's window: (input chunk index, slice of
    #: that chunk, whether it is the whole chunk).
    Piece = tuple[int, slice, bool]
    #: Per spatial dim, per output block: its pieces and its window's length.
    Windows = list[list[tuple[list[Piece], int]]]


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

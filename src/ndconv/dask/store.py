"""Store a lazy result one slab of chunks at a time (bounded memory for any volume)."""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np

from ..core import _args
from .backend import _is_dask


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

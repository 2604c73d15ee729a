"""The dask array library as an ndconv backend: validation without computing, lazy results.

:data:`BACKEND` is what :func:`ndconv.core._backends.resolve` hands the public
functions for a dask array (``PLUGINS`` names :mod:`ndconv.dask`, which
re-exports it).
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

import dask.array as da
import numpy as np

from ..core import _args, _dtypes
from ..core._backends import Backend, library_of
from ..core._windows import pad_portable
from ..core.algorithms import CorrSpec
from ..core.algorithms import run as _run
from ._graph import _correlate_valid

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..core._typing import AnyArray, DTypeLike, NDArray, Scalar


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

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

import importlib
from typing import TYPE_CHECKING, Any

try:
    import dask.array as da
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "ndconv.dask needs the optional dependency dask: pip install 'ndconv[dask]'"
    ) from exc

from .backend import BACKEND, DaskBackend, _is_dask
from .store import store_by_slabs

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..core._typing import ArrayLike, IntOrTuple, Padding, Scalar

__all__ = ["conv", "correlate", "convolve", "store_by_slabs", "BACKEND", "DaskBackend"]


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

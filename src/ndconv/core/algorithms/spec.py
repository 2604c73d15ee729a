"""The description of one correlation that every algorithm receives."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .._args import output_size
from .._windows import tap_slices

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .._typing import Pairs, Shape


@dataclass(frozen=True)
class CorrSpec:
    """A general N-d cross-correlation, the one primitive every algorithm computes.

    ``out[b, o, p] = sum_{c, t} w[o, c, t] * xd[b, g(o)*Cg + c, p*stride + t*dilation]``
    where ``xd`` is ``x`` dilated by ``lhs_dilation`` (zeros inserted between
    elements) and then padded by ``pairs`` (negative entries crop) with
    ``padding_mode``. The field ``xp`` says which array library holds the
    arrays. The convolution, both its gradients and the transposed
    convolution are all this primitive (JAX's ``conv_general_dilated``).
    """

    batch: int
    in_channels: int
    out_channels: int
    groups: int
    in_spatial: Shape
    kernel_size: Shape
    stride: Shape
    dilation: Shape
    pairs: Pairs
    lhs_dilation: Shape
    padding_mode: str
    dtype: np.dtype[Any]
    #: The array namespace of the arrays the algorithm receives: ``numpy``
    #: itself for NumPy arrays (every tuned algorithm), otherwise the
    #: library's array-API namespace (``array_api_compat.torch``, ``jax.numpy``,
    #: ...), for which only the portable and that library's native
    #: algorithms apply. ``dtype`` is always the NumPy counterpart, which
    #: the cost model reads.
    xp: Any = np

    @property
    def numpy(self) -> bool:
        """True when the arrays are NumPy arrays (every algorithm applies)."""
        return self.xp is np

    @property
    def library(self) -> str:
        """The arrays' library: ``'numpy'``, ``'torch'``, ``'jax'``, ``'cupy'``, ..."""
        if self.xp is np:
            return "numpy"
        name = self.xp.__name__.removeprefix("array_api_compat.")
        return name.partition(".")[0]

    @property
    def compute_dtype(self) -> np.dtype[Any]:
        """The dtype the arithmetic runs in (float32 for float16 and bfloat16).

        ``supports`` checks this, not ``dtype``: half-precision arrays reach the
        algorithms already cast (see :func:`ndconv.algorithms.run`).
        """
        from .._dtypes import compute_dtype

        return compute_dtype(self.dtype)

    @property
    def ndim(self) -> int:
        return len(self.kernel_size)

    # The derived shapes are computed once per spec (cached in the instance's
    # __dict__, beside the frozen fields): a call reads them 10-20 times, which
    # cost ~15 us of a 60 us correlation of a 256 x 512 image.
    @functools.cached_property
    def padded_spatial(self) -> Shape:
        return tuple(
            (n - 1) * r + 1 + lo + hi
            for n, r, (lo, hi) in zip(self.in_spatial, self.lhs_dilation, self.pairs)
        )

    @functools.cached_property
    def out_spatial(self) -> Shape:
        return output_size(self.padded_spatial, self.kernel_size, self.stride,
                           ((0, 0),) * self.ndim, self.dilation)

    @property
    def taps(self) -> int:
        return math.prod(self.kernel_size)

    @functools.cached_property
    def macs(self) -> int:
        """Multiply-adds of the direct formula (the FLOP count is twice this)."""
        return (
            self.batch
            * self.out_channels
            * math.prod(self.out_spatial)
            * (self.in_channels // self.groups)
            * self.taps
        )

    @functools.cached_property
    def out_shape(self) -> Shape:
        return (self.batch, self.out_channels, *self.out_spatial)

    def tap_slices(self, tap: Sequence[int]) -> tuple[slice, ...]:
        """Slices of the padded input that kernel tap ``tap`` multiplies."""
        return tap_slices(tap, self.stride, self.dilation, self.out_spatial)

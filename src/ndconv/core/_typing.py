"""Type aliases of the public API, for annotations only.

Modules import this under ``typing.TYPE_CHECKING`` (their annotations are
strings, ``from __future__ import annotations``), so nothing here costs at
import time. The aliases name the argument forms the README documents once:
an int or one int per spatial dim, every padding form, ``(lo, hi)`` pairs,
and the arrays of other libraries (:class:`ArrayAPIArray`), which the
functional API returns in kind: its overloads say that a NumPy array in
gives an ``NDArray`` out, a PyTorch tensor a tensor, a JAX array a JAX array.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, TypeVar, Union

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

__all__ = [
    "AnyArray", "Array", "ArrayAPIArray", "ArrayLike", "ArrayT", "DTypeLike", "NDArray",
    "IntOrTuple", "Loss", "Padding", "Pairs", "Scalar", "ScalarT", "Seed", "Shape",
]

#: One int for every spatial dim, or one per dim (``stride``, ``dilation``, ``kernel_size``).
IntOrTuple = Union[int, Sequence[int]]

#: A shape: a tuple of ints.
Shape = tuple[int, ...]

#: ``((lo, hi), ...)``: the padding of each spatial dim, as :func:`ndconv.core._args.padding_pairs` returns it.
Pairs = tuple[tuple[int, int], ...]

#: Every padding form: an int, one int per dim, a ``(lo, hi)`` pair per dim,
#: or ``"valid"``, ``"same"``, ``"full"``.
Padding = Union[str, int, Sequence[int], Sequence[Sequence[int]]]

#: A scalar operand (``correlate``'s bias): an int, float or complex, a NumPy
#: scalar (``np.int64(3)``), or a 0-d array.
Scalar = Union[complex, np.number[Any], NDArray[Any]]

#: A source of randomness: None (fresh entropy), a seed, or a Generator.
Seed = Union[None, int, np.random.Generator]


class ArrayAPIArray(Protocol):
    """An array of a library other than NumPy: PyTorch, JAX, CuPy, dask, ``array_api_strict``.

    What they share (the array API standard's attributes); Python lists and
    scalars have none of it, so an overload on this tells a library's array
    from a nested list. NumPy arrays match too: overloads list ``NDArray``
    first.
    """

    @property
    def shape(self) -> Any: ...  # a tuple of ints (or None where unknown: dask)

    @property
    def dtype(self) -> Any: ...

    @property
    def ndim(self) -> int: ...


#: What an array argument of the functional API accepts: NumPy arrays and
#: what NumPy converts (nested lists, scalars), or another library's array.
Array = Union[ArrayLike, ArrayAPIArray]

#: An array of whichever library a call's arrays belong to, inside the
#: implementation (the backends share no nominal type; the public
#: signatures are precise through their overloads).
AnyArray = Any

#: The array type of a call: an overload ``(x: ArrayT, ...) -> ArrayT``
#: returns the library's own array type (``torch.Tensor``, ``jax.Array``).
ArrayT = TypeVar("ArrayT", bound=ArrayAPIArray)

#: A NumPy scalar type, for results in their input's dtype
#: (``NDArray[ScalarT] -> NDArray[ScalarT]``).
ScalarT = TypeVar("ScalarT", bound=np.generic)


class Loss(Protocol):
    """What :func:`ndconv.train.fit` needs of a loss (:mod:`ndconv.losses`)."""

    def __call__(self, input: ArrayLike, target: ArrayLike) -> float: ...

    def backward(self, grad: float = 1.0) -> NDArray[Any]: ...

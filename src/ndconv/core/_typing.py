"""Type aliases of the public API, for annotations only.

Modules import this under ``typing.TYPE_CHECKING`` (their annotations are
strings, ``from __future__ import annotations``), so nothing here costs at
import time. The aliases name the argument forms the README documents once:
an int or one int per spatial dim, every padding form, ``(lo, hi)`` pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, Union

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

__all__ = [
    "ArrayLike", "DTypeLike", "NDArray", "IntOrTuple", "Loss", "Padding", "Pairs", "Seed",
    "Shape",
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

#: A source of randomness: None (fresh entropy), a seed, or a Generator.
Seed = Union[None, int, np.random.Generator]


class Loss(Protocol):
    """What :func:`ndconv.train.fit` needs of a loss (:mod:`ndconv.losses`)."""

    def __call__(self, input: ArrayLike, target: ArrayLike) -> float: ...

    def backward(self, grad: float = 1.0) -> NDArray[Any]: ...

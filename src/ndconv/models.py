"""The small CNNs that the examples, the CLI and the benchmarks train.

One definition each, so ``ndconv train``, ``examples/`` and
``benchmarks/train_throughput.py`` measure the same network.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import nn
from .nn.init import as_rng

if TYPE_CHECKING:
    from ._typing import DTypeLike, Seed

__all__ = ["digits_cnn", "faces_cnn"]


def digits_cnn(rng: Seed = 0, dtype: DTypeLike = np.float32) -> nn.Sequential:
    """CNN for scikit-learn's 8x8 digits.

    1x8x8 -> 16x8x8 -> 16x4x4 -> 32x4x4 -> 32x2x2 -> 128 -> 64 -> 10.

    Parameters
    ----------
    rng : None, int or numpy.random.Generator
        Source of the initial weights (PyTorch's default initialisation).
    dtype : float32 or float64
    """
    rng = as_rng(rng)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, dtype=dtype, rng=rng),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1, dtype=dtype, rng=rng),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 2 * 2, 64, dtype=dtype, rng=rng),
        nn.ReLU(),
        nn.Linear(64, 10, dtype=dtype, rng=rng),
    )


def faces_cnn(rng: Seed = 0, dtype: DTypeLike = np.float32) -> nn.Sequential:
    """CNN for scikit-image's 25x25 ``lfw_subset`` faces (face or not).

    1x25x25 -> 8x21x21 -> 8x10x10 -> 16x8x8 -> 16x4x4 -> 256 -> 32 -> 2, with
    dropout before the last layer (150 training images overfit quickly).
    """
    rng = as_rng(rng)
    return nn.Sequential(
        nn.Conv2d(1, 8, 5, dtype=dtype, rng=rng),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, dtype=dtype, rng=rng),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 32, dtype=dtype, rng=rng),
        nn.ReLU(),
        nn.Dropout(0.3, rng=rng),
        nn.Linear(32, 2, dtype=dtype, rng=rng),
    )

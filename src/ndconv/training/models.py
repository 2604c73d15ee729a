"""The small networks that the examples, the CLI, the report and the benchmarks train.

One definition each, so ``ndconv train``, ``examples/`` and
``benchmarks/train_throughput.py`` measure the same network, and the three
networks of :mod:`ndconv.experiments` (MLP, locally connected, CNN) are built
here too. :func:`train_digits` is what ``ndconv train`` runs.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core import _args
from .. import nn
from ..nn.init import as_rng

if TYPE_CHECKING:
    from ..core._typing import DTypeLike, Seed

__all__ = ["MODELS", "build_model", "digits_cnn", "faces_cnn", "train_digits"]

#: The kinds :func:`build_model` builds: no principle, locality only, both.
MODELS = ("mlp", "local", "cnn")


def _two_stages(first: nn.Module, second: nn.Module) -> list[nn.Module]:
    """``first`` - ReLU - 2x2 max-pool - ``second`` - ReLU - 2x2 max-pool - Flatten.

    The feature extractor every network here shares; the caller creates the
    two layers (and the head after them) in order, so the weights drawn from
    one Generator do not depend on how the network is assembled.
    """
    return [first, nn.ReLU(), nn.MaxPool2d(2), second, nn.ReLU(), nn.MaxPool2d(2), nn.Flatten()]


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
    features = _two_stages(nn.Conv2d(1, 16, 3, padding=1, dtype=dtype, rng=rng),
                           nn.Conv2d(16, 32, 3, padding=1, dtype=dtype, rng=rng))
    return nn.Sequential(
        *features,
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
    features = _two_stages(nn.Conv2d(1, 8, 5, dtype=dtype, rng=rng),
                           nn.Conv2d(8, 16, 3, dtype=dtype, rng=rng))
    return nn.Sequential(
        *features,
        nn.Linear(16 * 4 * 4, 32, dtype=dtype, rng=rng),
        nn.ReLU(),
        nn.Dropout(0.3, rng=rng),
        nn.Linear(32, 2, dtype=dtype, rng=rng),
    )


def build_model(
    kind: str,
    in_shape: Sequence[int],
    num_classes: int,
    *,
    channels: tuple[int, int] = (16, 32),
    hidden: int = 100,
    dtype: DTypeLike = np.float32,
    rng: Seed = 0,
) -> nn.Sequential:
    """One of the three networks of :mod:`ndconv.experiments` for images ``(C, H, W)``.

    - ``mlp``: :class:`~ndconv.nn.FullyConnected` into ``hidden`` units, ReLU,
      Linear (neither principle);
    - ``local``: two :class:`~ndconv.nn.LocallyConnected2d` stages (3x3, ReLU,
      2x2 max pooling), Linear (locality only);
    - ``cnn``: the same with :class:`~ndconv.nn.Conv2d` (locality and
      translation invariance).

    Parameters
    ----------
    kind : {'mlp', 'local', 'cnn'}
    in_shape : tuple of int
    num_classes : int
    channels : (int, int)
        Output channels of the two stages of ``local`` and ``cnn``.
    hidden : int
        Hidden units of ``mlp``.
    dtype : float32 or float64
    rng : int or numpy.random.Generator
        Initial weights.
    """
    if kind not in MODELS:
        raise ValueError(f"`kind` (={kind!r}) must be one of {MODELS}")
    C, H, W = _args.ntuple(in_shape, 3, "in_shape", minimum=1, broadcast=False)
    rng = as_rng(rng)
    if kind == "mlp":
        return nn.Sequential(
            nn.FullyConnected((C, H, W), (hidden,), dtype=dtype, rng=rng), nn.ReLU(),
            nn.Linear(hidden, num_classes, dtype=dtype, rng=rng))
    c1, c2 = channels
    S1 = (H, W)
    S2 = (H // 2, W // 2)
    if min(S2) < 2:
        raise ValueError(f"`in_shape` (={in_shape!r}) is too small for two 2x2 poolings")
    first: nn.Module
    second: nn.Module
    if kind == "local":
        first = nn.LocallyConnected2d(C, c1, 3, S1, padding=1, dtype=dtype, rng=rng)
        second = nn.LocallyConnected2d(c1, c2, 3, S2, padding=1, dtype=dtype, rng=rng)
    else:
        first = nn.Conv2d(C, c1, 3, padding=1, dtype=dtype, rng=rng)
        second = nn.Conv2d(c1, c2, 3, padding=1, dtype=dtype, rng=rng)
    flat = c2 * (S2[0] // 2) * (S2[1] // 2)
    return nn.Sequential(*_two_stages(first, second),
                         nn.Linear(flat, num_classes, dtype=dtype, rng=rng))


def train_digits(
    epochs: int = 20,
    *,
    seed: int = 0,
    lr: float = 3e-3,
    batch_size: int = 32,
    progress: bool = True,
    checkpoint: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Train :func:`digits_cnn` on scikit-learn's digits, as ``ndconv train`` does.

    Adam on the 1347 training images of :func:`ndconv.data.load_digits`
    (stratified split), cross-entropy, evaluated on the 450 held out after
    every epoch.

    Parameters
    ----------
    epochs : int, positive
    seed : int
        Seeds the split, the initial weights and the shuffling.
    lr : float, positive
        Adam's learning rate.
    batch_size : int, positive
    progress : bool
        A tqdm progress bar per epoch (needs the ``learn`` extra).
    checkpoint : str or os.PathLike, optional
        Written by :func:`ndconv.fit` after every epoch (atomically).

    Returns
    -------
    dict
        ``model``, ``history`` (:class:`ndconv.train.History`), ``accuracy`` (on
        the held-out images), ``seconds`` (training time) and ``split``.

    Raises
    ------
    ndconv.train.NonFiniteLossError
        When the loss becomes NaN or infinite (a too large ``lr``).
    """
    from . import data
    from .losses import CrossEntropyLoss
    from .optim import Adam
    from .train import evaluate, fit

    epochs = _args.positive_int(epochs, "epochs")
    if not (_args.is_number(lr) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"`lr` (={lr!r}) must be a positive number")
    split = data.load_digits(seed=seed)
    model = digits_cnn(seed)
    t0 = time.perf_counter()
    history = fit(model, split.x_train, split.y_train, loss=CrossEntropyLoss(),
                  optimizer=Adam(model.parameters(), lr=lr), epochs=epochs,
                  batch_size=batch_size, validation=(split.x_test, split.y_test),
                  rng=seed, progress=progress, checkpoint=checkpoint)
    seconds = time.perf_counter() - t0
    result = evaluate(model, split.x_test, split.y_test)
    return {"model": model, "history": history, "accuracy": result["accuracy"],
            "seconds": seconds, "split": split}

"""Real images bundled inside installed wheels (no download at run time).

* :func:`load_digits`: scikit-learn's 1797 handwritten digits, 8x8, 10 classes
  (``sklearn/datasets/data/digits.csv.gz``).
* :func:`load_faces`: scikit-image's ``lfw_subset``, 100 faces and 100
  non-faces, 25x25 (``skimage/data/lfw_subset.npy``).

Both need the ``data`` extra (``pip install 'ndconv[data]'``), imported only
when called.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from ..core._typing import ArrayLike, DTypeLike, NDArray, Seed

__all__ = ["Split", "load_digits", "load_faces", "stratified_split"]


class Split(NamedTuple):
    """A train/test split of images ``(N, 1, H, W)`` and integer labels ``(N,)``."""

    x_train: NDArray[Any]
    y_train: NDArray[np.int64]
    x_test: NDArray[Any]
    y_test: NDArray[np.int64]


def _require(module: str, extra: str = "data") -> ModuleType:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(
            f"this loader needs {module.split('.')[0]}: pip install 'ndconv[{extra}]'"
        ) from None


def stratified_split(
    y: ArrayLike, test_size: float = 0.25, rng: Seed = 0
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Indices ``(train, test)`` with each class split in the same proportion.

    Parameters
    ----------
    y : array_like of int, shape (N,)
    test_size : float in (0, 1)
    rng : int or numpy.random.Generator
        Seed of the shuffle within each class.

    Returns
    -------
    train, test : ndarray of int
        Sorted indices; ``round(test_size * n_c)`` of each class ``c`` go to test.
    """
    y = np.asarray(y)
    if not 0 < test_size < 1:
        raise ValueError(f"`test_size` (={test_size!r}) must be in (0, 1)")
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    picked = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        picked.append(rng.permutation(idx)[: int(round(test_size * idx.size))])
    test = np.sort(np.concatenate(picked))
    train = np.setdiff1d(np.arange(y.size), test)
    return train, test


def _split(
    x: NDArray[Any], y: NDArray[np.int64], test_size: float, seed: Seed, dtype: DTypeLike
) -> Split:
    train, test = stratified_split(y, test_size, seed)
    x = x.astype(dtype)[:, None]  # one channel: (N, 1, H, W)
    return Split(x[train], y[train], x[test], y[test])


def load_digits(test_size: float = 0.25, seed: int = 0, dtype: DTypeLike = np.float32) -> Split:
    """scikit-learn's handwritten digits as a stratified train/test split.

    Parameters
    ----------
    test_size : float
        Fraction of each class held out (75/25 by default).
    seed : int
        Seed of the split.
    dtype : float32 or float64

    Returns
    -------
    Split
        ``x_*`` of shape ``(N, 1, 8, 8)`` scaled to [0, 1] (the raw values are
        0..16), ``y_*`` int64 labels 0..9; 1347 training and 450 test images.
    """
    datasets = _require("sklearn.datasets")
    bunch = datasets.load_digits()
    return _split(bunch.images / 16.0, bunch.target.astype(np.int64), test_size, seed, dtype)


def load_faces(test_size: float = 0.25, seed: int = 0, dtype: DTypeLike = np.float32) -> Split:
    """scikit-image's ``lfw_subset``: face (1) or not a face (0), 25x25 grey images.

    The first 100 images are faces from Labeled Faces in the Wild, the other
    100 random crops of non-face scenes.

    Returns
    -------
    Split
        ``x_*`` of shape ``(N, 1, 25, 25)`` in [0, 1]; 150 training, 50 test.
    """
    skdata = _require("skimage.data")
    images = np.asarray(skdata.lfw_subset())
    y = np.zeros(images.shape[0], dtype=np.int64)
    y[:100] = 1
    return _split(images, y, test_size, seed, dtype)

"""The lecture's claim, measured: which layer keeps working when the input shifts.

Three networks that differ only in the principles their first layers obey are
trained with the same budget (optimizer, learning rate, epochs, batch size,
data, seeds) and evaluated on the test set and on the test set shifted by 1
and 2 pixels:

- ``mlp``: :class:`~ndconv.nn.FullyConnected` into ``hidden`` units, ReLU,
  Linear (neither principle);
- ``local``: two :class:`~ndconv.nn.LocallyConnected2d` stages (3x3, ReLU,
  2x2 max pooling), Linear (locality only);
- ``cnn``: the same with :class:`~ndconv.nn.Conv2d` (locality and translation
  invariance).

Shifts fill the vacated border with zeros (the digits' background) and are
averaged over the four axis-aligned directions. :func:`run` returns the rows;
:func:`format_table` and :func:`plot` present them.

:func:`learn_edge_kernel` is the book's smaller experiment: learning the edge
kernel ``[[1, -1]]`` back from one input/output pair.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core import _args
from ..training.models import MODELS, build_model  # the three networks (documented here, built there)

if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Iterable, Sequence

    from ..core._typing import ArrayLike, NDArray
    from ..nn.module import Module
    from ..training.data import Split
    from ..training.optim import Optimizer

    #: one row of :func:`run`: str, int and float values by column name
    _Row = dict[str, Any]

__all__ = ["DATASETS", "MODELS", "build_model", "compare", "fit_epochs", "format_table",
           "learn_edge_kernel", "plot", "run", "shift_images"]

DATASETS = ("digits", "faces")
_DIRECTIONS = ((1, 0), (-1, 0), (0, 1), (0, -1))


def shift_images(x: ArrayLike, dy: int, dx: int) -> NDArray[Any]:
    """Shift images ``(..., H, W)`` by ``dy`` rows and ``dx`` columns, zero-filled.

    Parameters
    ----------
    x : ndarray, shape (..., H, W)
    dy, dx : int
        Positive moves the content down / right.

    Returns
    -------
    ndarray
        Same shape and dtype; what leaves the frame is lost.
    """
    x = np.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"`x` must have shape (..., H, W), got {x.shape}")
    dy, dx = _args._as_int(dy, "dy"), _args._as_int(dx, "dx")
    H, W = x.shape[-2:]
    out = np.zeros_like(x)
    if abs(dy) >= H or abs(dx) >= W:
        return out
    src = (Ellipsis, slice(max(-dy, 0), H - max(dy, 0)), slice(max(-dx, 0), W - max(dx, 0)))
    dst = (Ellipsis, slice(max(dy, 0), H - max(-dy, 0)), slice(max(dx, 0), W - max(-dx, 0)))
    out[dst] = x[src]
    return out


def _load(dataset: str, seed: int, limit: int | None) -> Split:
    from ..training import data

    if dataset not in DATASETS:
        raise ValueError(f"`dataset` (={dataset!r}) must be one of {DATASETS}")
    split = (data.load_digits if dataset == "digits" else data.load_faces)(seed=seed)
    if limit is not None:
        limit = _args.positive_int(limit, "limit")
        split = type(split)(split.x_train[:limit], split.y_train[:limit],
                            split.x_test[:limit], split.y_test[:limit])
    return split


def run(dataset: str = "digits", *, models: Sequence[str] = MODELS, epochs: int = 30,
        batch_size: int = 32, lr: float = 1e-3, seed: int = 0,
        shifts: Sequence[int] = (1, 2), channels: tuple[int, int] = (16, 32),
        hidden: int = 100, limit: int | None = None, progress: bool = False,
        callback: Callable[[str, int], object] | None = None) -> list[_Row]:
    """Train each model with the same budget and measure shifted accuracy.

    Parameters
    ----------
    dataset : {'digits', 'faces'}
        scikit-learn's digits (8x8, 10 classes) or scikit-image's ``lfw_subset``
        (25x25, face or not).
    models : sequence of {'mlp', 'local', 'cnn'}
    epochs, batch_size, lr : training budget, the same for every model
        (Adam, cross-entropy).
    seed : int
        Seeds the train/test split, every model's initial weights (the same
        seed for each) and the shuffling.
    shifts : sequence of int
        Pixel shifts to evaluate (mean over the four directions).
    channels, hidden
        Sizes, see :func:`build_model`.
    limit : int, optional
        Use only the first ``limit`` training and test images (fast tests).
    progress : bool
        Progress bars while training.
    callback : callable, optional
        ``callback(model, epoch)`` after every epoch of every model (``model``
        is the kind, ``epoch`` counts from 1): a caller's progress display
        advances during training instead of freezing until the end.

    Returns
    -------
    list of dict
        One row per model: ``dataset``, ``model``, ``params``, ``test_accuracy``,
        ``shift_{k}_accuracy`` for each ``k`` in ``shifts``, ``train_accuracy``
        and ``train_loss`` (of the last epoch), ``seconds``, ``epochs``, ``seed``.
    """
    from ..training import optim, train

    split = _load(dataset, seed, limit)
    n_classes = int(max(split.y_train.max(), split.y_test.max())) + 1
    rows: list[_Row] = []
    for kind in models:
        model = build_model(kind, split.x_train.shape[1:], n_classes, channels=channels,
                            hidden=hidden, rng=seed)
        opt = optim.Adam(model.parameters(), lr=lr)
        t0 = time.perf_counter()
        hist = fit_epochs(model, split.x_train, split.y_train, optimizer=opt, epochs=epochs,
                          batch_size=batch_size, seed=seed, progress=progress,
                          callback=None if callback is None else
                          (lambda epoch, kind=kind: callback(kind, epoch)))  # type: ignore[misc]
        seconds = time.perf_counter() - t0
        model.eval()
        row = {
            "dataset": dataset, "model": kind, "params": model.num_parameters(),
            "test_accuracy": train.evaluate(model, split.x_test, split.y_test)["accuracy"],
        }
        for k in shifts:
            accs = [train.evaluate(model, shift_images(split.x_test, dy * k, dx * k),
                                   split.y_test)["accuracy"] for dy, dx in _DIRECTIONS]
            row[f"shift_{k}_accuracy"] = float(np.mean(accs))
        row.update(train_accuracy=hist["accuracy"][-1] if epochs else float("nan"),
                   train_loss=hist["loss"][-1] if epochs else float("nan"),
                   seconds=seconds, epochs=epochs, seed=seed)
        rows.append(row)
    return rows


def fit_epochs(model: Module, x: ArrayLike, y: ArrayLike, *, optimizer: Optimizer, epochs: int,
               batch_size: int = 32, seed: int = 0,
               validation: Sequence[ArrayLike] | None = None, progress: bool = False,
               callback: Callable[[int], object] | None = None) -> dict[str, list[float]]:
    """:func:`ndconv.fit` with cross-entropy, and ``callback(epoch)`` after every epoch.

    Without a callback this is one ``fit`` call. With one, ``fit`` runs one
    epoch at a time with a single shared Generator, so the shuffles and the
    optimizer's state, and hence the result, are those of one call for all
    epochs; the caller's progress display advances meanwhile.

    Returns
    -------
    dict of lists
        ``fit``'s history: ``loss``, ``accuracy``, and ``val_loss`` /
        ``val_accuracy`` with ``validation``, one entry per epoch.
    """
    from ..training import losses, train

    def one(n: int, rng: int | np.random.Generator) -> dict[str, list[float]]:
        return train.fit(model, x, y, loss=losses.CrossEntropyLoss(), optimizer=optimizer,
                         epochs=n, batch_size=batch_size, rng=rng, progress=progress,
                         validation=validation)

    if callback is None:
        return {k: list(v) for k, v in one(epochs, seed).items()}
    hist: dict[str, list[float]]
    gen, hist = np.random.default_rng(seed), {}
    for epoch in range(1, epochs + 1):
        for k, v in one(1, gen).items():
            hist.setdefault(k, []).extend(v)
        callback(epoch)
    return hist


def compare(quick: bool = False, seed: int = 0, datasets: Sequence[str] | None = None,
            progress: bool = False) -> list[_Row]:
    """The experiment as reported: both datasets, 30 epochs (``quick``: digits, 3 epochs).

    Returns the concatenated rows of :func:`run` for each dataset.
    """
    if datasets is None:
        datasets = ("digits",) if quick else DATASETS
    epochs = 3 if quick else 30
    rows: list[_Row] = []
    for ds in datasets:
        rows += run(ds, epochs=epochs, seed=seed, progress=progress)
    return rows


_NAMES = {"mlp": "MLP (FullyConnected)", "local": "LocallyConnected", "cnn": "CNN (Conv)"}


def format_table(rows: Iterable[_Row]) -> str:
    """The rows as a Markdown table: parameters, test and shifted accuracy, seeds."""
    rows = list(rows)
    if not rows:
        raise ValueError("`rows` is empty")
    shift_keys = [k for k in rows[0] if k.startswith("shift_")]
    head = ["dataset", "model", "params", "test acc",
            *[f"shift {k.split('_')[1]} px" for k in shift_keys], "train acc", "epochs",
            "seed", "seconds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["dataset"], _NAMES.get(r["model"], r["model"]), f"{r['params']:,}",
                 f"{100 * r['test_accuracy']:.1f}%",
                 *[f"{100 * r[k]:.1f}%" for k in shift_keys],
                 f"{100 * r['train_accuracy']:.1f}%", str(r["epochs"]), str(r["seed"]),
                 f"{r['seconds']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: Iterable[_Row], path: str | os.PathLike[str]) -> str | os.PathLike[str]:
    """Accuracy against shift, one line per model and dataset, saved to ``path``.

    Needs matplotlib (the ``cli`` extra); uses the Agg backend, no display.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("plot needs matplotlib: pip install 'ndconv[cli]'") from None
    rows = list(rows)
    if not rows:
        raise ValueError("`rows` is empty")
    shift_keys = [k for k in rows[0] if k.startswith("shift_")]
    xs = [0] + [int(k.split("_")[1]) for k in shift_keys]
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 4), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        for r in rows:
            if r["dataset"] != ds:
                continue
            ys = [r["test_accuracy"]] + [r[k] for k in shift_keys]
            ax.plot(xs, [100 * y for y in ys], marker="o",
                    label=f"{_NAMES.get(r['model'], r['model'])} ({r['params']:,} params)")
        ax.set_xticks(xs)
        ax.set_xlabel("test images shifted by (pixels)")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"{ds} (seed {rows[0]['seed']})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def learn_edge_kernel(iterations: int = 10, lr: float = 3e-2, seed: int = 0,
                      ) -> tuple[list[float], NDArray[Any], NDArray[Any], NDArray[Any]]:
    """The book's experiment: learn the edge kernel ``[[1, -1]]`` back from data.

    ``X`` is ``ones(6, 8)`` with columns 2..5 set to 0 and ``Y = X * [[1, -1]]``;
    a ``Conv2d(1, 1, kernel_size=(1, 2), bias=False)`` starts from a random
    kernel and takes ``iterations`` plain gradient-descent steps on the sum of
    squared errors.

    Parameters
    ----------
    iterations : int, 1 to 100000
    lr : float, positive
    seed : int
        Seed of the initial kernel.

    Returns
    -------
    (losses, kernel, X, Y)
        ``losses[i]`` is the summed squared error before step ``i + 1`` is
        applied, as the book prints it; ``kernel`` is the learnt (1, 2) kernel.
        (The book says the loss falls about 10x every 2 iterations; measured
        here with lr 0.03 it falls 2.5x to 5.7x per 2 iterations over seeds 0
        to 9, and the kernel ends within 0.06 of [1, -1].)
    """
    from .. import correlate
    from ..nn import Conv2d

    iterations = _args._as_int(iterations, "iterations")
    if not 1 <= iterations <= 100_000:
        raise ValueError(f"`iterations` (={iterations}) must be between 1 and 100000")
    if not (np.isfinite(lr) and lr > 0):
        raise ValueError(f"`lr` (={lr}) must be a positive number")
    X = np.ones((6, 8))
    X[:, 2:6] = 0
    Y = correlate(X, [[1.0, -1.0]])
    conv = Conv2d(1, 1, kernel_size=(1, 2), bias=False, dtype=np.float64,
                  rng=np.random.default_rng(seed))
    x, y = X[None, None], Y[None, None]
    losses = []
    for _ in range(iterations):
        err = conv(x) - y
        losses.append(float((err ** 2).sum()))
        conv.zero_grad()
        conv.backward(2 * err)  # d(sum err^2)/d y_hat
        assert conv.weight.grad is not None  # backward set it
        conv.weight.data -= lr * conv.weight.grad
    return losses, conv.weight.data.reshape(1, 2).copy(), X, Y

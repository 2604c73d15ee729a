"""A training loop with the habits of a PyTorch user: ``fit``, ``evaluate``, ``predict``.

``fit`` runs mini-batch epochs (``forward``, loss, ``backward``, optimizer
step), shuffles with a seeded NumPy Generator, shows a tqdm progress bar that
can be turned off, records a per-epoch history and evaluates on held-out data.
A loss that turns NaN or infinite stops training with
:class:`NonFiniteLossError`, naming the epoch and step, after restoring the
model and optimizer to the last good checkpoint.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from ..core import _args

if TYPE_CHECKING:
    from tqdm.auto import tqdm

    from ..core._typing import ArrayLike, Loss, NDArray, Seed
    from ..nn.module import Module
    from .optim import Optimizer

    _Snapshot = tuple[dict[str, Any], dict[str, Any] | None]

__all__ = ["History", "NonFiniteLossError", "fit", "evaluate", "predict"]


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; ``epoch`` and ``step`` say where (1-based)."""

    epoch: int
    step: int

    def __init__(self, message: str, epoch: int, step: int) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.step = step


class History(dict[str, list[float]]):
    """Per-epoch metrics: ``history["loss"][e]``, ``history["val_accuracy"][e]``, ...

    A dict of lists (keys ``loss``, ``accuracy``, ``val_loss``,
    ``val_accuracy``, ``seconds``, as far as they apply).
    """

    def append(self, row: Mapping[str, float]) -> None:
        """Add one epoch's metrics, each to its list."""
        for k, v in row.items():
            self.setdefault(k, []).append(v)

    @property
    def epochs(self) -> int:
        """Number of epochs recorded."""
        return len(self.get("loss", []))


# --------------------------------------------------------------------------
# helpers


@overload
def _check_data(x: ArrayLike, y: None, name: str = "x") -> tuple[NDArray[Any], None]: ...
@overload
def _check_data(
    x: ArrayLike, y: ArrayLike, name: str = "x"
) -> tuple[NDArray[Any], NDArray[Any]]: ...
def _check_data(
    x: ArrayLike, y: ArrayLike | None, name: str = "x"
) -> tuple[NDArray[Any], NDArray[Any] | None]:
    x = np.asarray(x)
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(
            f"`{name}` must hold at least one example along its first dim; got shape {x.shape}"
        )
    if y is not None:
        y = np.asarray(y)
        if y.ndim < 1 or y.shape[0] != x.shape[0]:
            raise ValueError(
                f"`{name}` and its targets must have the same number of examples (first "
                f"dim); got shapes {x.shape} and {y.shape}"
            )
    return x, y


def _batches(n: int, batch_size: int, order: NDArray[np.intp]) -> Iterator[NDArray[np.intp]]:
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


def _correct(out: NDArray[Any], y: NDArray[Any]) -> int | None:
    """Number of correct argmax predictions, or None when ``y`` is not class labels."""
    if y.dtype.kind not in "iu" or out.ndim != y.ndim + 1:
        return None
    return int(np.count_nonzero(out.argmax(axis=1) == y))


def _snapshot(model: Module, optimizer: Optimizer | None) -> _Snapshot:
    return (model.state_dict(), copy.deepcopy(optimizer.state_dict()) if optimizer else None)


def _restore(model: Module, optimizer: Optimizer | None, snap: _Snapshot) -> None:
    model.load_state_dict(snap[0])
    if optimizer is not None and snap[1] is not None:
        optimizer.load_state_dict(snap[1])


def _is_training(model: Module) -> bool:
    # Module sets `training` through object.__setattr__, which mypy cannot see.
    return bool(getattr(model, "training"))


def _progress(progress: bool, total: int, desc: str) -> tqdm[Any] | None:
    if not progress:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        raise ImportError(
            "progress=True needs tqdm: pip install 'ndconv[learn]', or pass progress=False"
        ) from None
    return tqdm(total=total, desc=desc, leave=False, unit="batch")


# --------------------------------------------------------------------------
# public API


def fit(
    model: Module,
    x: ArrayLike,
    y: ArrayLike,
    *,
    loss: Loss,
    optimizer: Optimizer,
    epochs: int = 10,
    batch_size: int = 32,
    validation: Sequence[ArrayLike] | None = None,
    shuffle: bool = True,
    rng: Seed = None,
    progress: bool = True,
    checkpoint: str | os.PathLike[str] | None = None,
) -> History:
    """Train ``model`` on ``(x, y)`` with mini-batches.

    Parameters
    ----------
    model : Module
    x : array_like, shape (N, ...)
    y : array_like, shape (N, ...)
        Class labels (ints) for a classifier, or targets of the output's shape.
    loss : callable loss with ``backward()`` (:mod:`ndconv.losses`)
    optimizer : Optimizer (:mod:`ndconv.optim`)
    epochs : int
    batch_size : int
    validation : (x_val, y_val), optional
        Evaluated after every epoch (``val_loss``, ``val_accuracy``).
    shuffle : bool
        Reshuffle the examples every epoch.
    rng : None, int or numpy.random.Generator
        Seed of the shuffling, so a run can be repeated exactly.
    progress : bool
        Show a tqdm progress bar (needs the ``learn`` extra).
    checkpoint : str or os.PathLike, optional
        Save ``{"model", "optimizer", "epoch", "history"}`` there (atomically,
        with :func:`ndconv.save`) after every epoch whose losses were finite.

    Returns
    -------
    History
        ``loss`` (the mean over examples, or the total for a ``'sum'`` loss,
        as :func:`evaluate`) and, for class labels, ``accuracy`` (running over
        the epoch's batches, in training mode), ``val_loss`` / ``val_accuracy``,
        and ``seconds`` per epoch. The model is left in the mode it had before,
        also when training stops with an error (``fit`` trains in training mode
        and evaluates in evaluation mode).

    Raises
    ------
    NonFiniteLossError
        When the loss is NaN or infinite. The model and optimizer are first
        restored to their state at the end of the last complete epoch (the
        checkpoint file, if any, is left as it was then).
    """
    x, y = _check_data(x, y)
    epochs = _args._as_int(epochs, "epochs")
    if epochs < 0:
        raise ValueError(f"`epochs` (={epochs}) must be >= 0")
    batch_size = _args.positive_int(batch_size, "batch_size")
    if validation is not None:
        if not (isinstance(validation, (tuple, list)) and len(validation) == 2):
            raise ValueError("`validation` must be a pair (x_val, y_val)")
        validation = _check_data(validation[0], validation[1], name="validation x")
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(rng)
    from ..io import save  # here: io is only needed when checkpointing

    history = History()
    was_training = _is_training(model)
    summed = getattr(loss, "reduction", "mean") == "sum"
    try:
        _epochs(model, x, y, loss, optimizer, epochs, batch_size, validation, shuffle,
                rng, progress, checkpoint, history, summed, save)
    finally:
        # Also after a NonFiniteLossError: the caller's mode comes back.
        model.train(was_training)
    return history


def _epochs(
    model: Module,
    x: NDArray[Any],
    y: NDArray[Any],
    loss: Loss,
    optimizer: Optimizer,
    epochs: int,
    batch_size: int,
    validation: tuple[NDArray[Any], NDArray[Any]] | None,
    shuffle: bool,
    rng: np.random.Generator,
    progress: bool,
    checkpoint: str | os.PathLike[str] | None,
    history: History,
    summed: bool,
    save: Callable[..., Any],
) -> None:
    """The epoch loop of :func:`fit` (arguments validated), filling ``history``."""
    if validation is not None:
        xv, yv = validation
    n = x.shape[0]
    steps = math.ceil(n / batch_size)
    last_good = _snapshot(model, optimizer)
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        model.train()
        order = rng.permutation(n) if shuffle else np.arange(n)
        total, correct, counted = 0.0, 0, True
        bar = _progress(progress, steps, f"epoch {epoch}/{epochs}")
        try:
            for step, idx in enumerate(_batches(n, batch_size, order), 1):
                xb, yb = x[idx], y[idx]
                out = model(xb)
                value = loss(out, yb)
                if not math.isfinite(value):
                    _restore(model, optimizer, last_good)
                    where = f" (saved in {checkpoint!r})" if checkpoint is not None else ""
                    raise NonFiniteLossError(
                        f"loss is {value} at epoch {epoch}, step {step} of {steps}; "
                        f"training stopped and the model and optimizer were restored to "
                        f"the last good checkpoint, the end of epoch {epoch - 1}{where}. "
                        "Try a smaller learning rate.",
                        epoch, step,
                    )
                optimizer.zero_grad()
                # The input needs no gradient: the first layer skips its correlation.
                model.backward_params(loss.backward())
                optimizer.step()
                # A 'mean' loss weighs each batch by its size; a 'sum' loss
                # adds up to the epoch's total (as evaluate reports it).
                total += value if summed else value * len(idx)
                c = _correct(out, yb)
                if c is None:
                    counted = False
                else:
                    correct += c
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{value:.4f}", refresh=False)
        finally:
            if bar is not None:
                bar.close()
        row = {"loss": total if summed else total / n}
        if counted:
            row["accuracy"] = correct / y.size  # per label: (B,) or per pixel (B, *d)
        if validation is not None:
            ev = evaluate(model, xv, yv, loss=loss, batch_size=max(batch_size, 256))
            row.update({f"val_{k}": v for k, v in ev.items()})
        row["seconds"] = time.perf_counter() - t0
        history.append(row)
        last_good = _snapshot(model, optimizer)
        if checkpoint is not None:
            save({"model": last_good[0], "optimizer": last_good[1], "epoch": epoch,
                  "history": {k: list(v) for k, v in history.items()}}, checkpoint)


def predict(model: Module, x: ArrayLike, batch_size: int = 256) -> NDArray[Any]:
    """Outputs of ``model`` on ``x`` in evaluation mode, batch by batch.

    The model's training/evaluation mode is restored afterwards.
    """
    x, _ = _check_data(x, None)
    batch_size = _args.positive_int(batch_size, "batch_size")
    was_training = _is_training(model)
    model.eval()
    try:
        outs = [model(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)]
    finally:
        model.train(was_training)
    return np.concatenate(outs, axis=0)


def evaluate(
    model: Module,
    x: ArrayLike,
    y: ArrayLike,
    *,
    loss: Loss | None = None,
    batch_size: int = 256,
) -> dict[str, float]:
    """Loss and (for class labels) accuracy of ``model`` on ``(x, y)``.

    Returns
    -------
    dict
        ``{"loss": float}`` if ``loss`` is given (the mean over examples for a
        ``'mean'`` loss, the total for ``'sum'``) and ``{"accuracy": float}``
        when ``y`` holds class labels.
    """
    x, y = _check_data(x, y)
    out = predict(model, x, batch_size)
    res = {}
    if loss is not None:
        res["loss"] = float(loss(out, y))
    c = _correct(out, y)
    if c is not None:
        res["accuracy"] = c / y.size  # per label: (B,) or per pixel (B, *d)
    return res

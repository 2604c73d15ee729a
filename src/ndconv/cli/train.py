"""``ndconv train``: a CNN on scikit-learn's bundled digits, with a checkpoint."""

from __future__ import annotations

import os
import time

import numpy as np

from . import _io, _parse
from ._errors import Unavailable, UsageError

HELP = "train a small CNN on the bundled 8x8 digits (progress bar, checkpoint)"

EXAMPLES = """\
The model: Conv2d(1, 16, 3, padding=1) - ReLU - MaxPool2d(2) - Conv2d(16, 32, 3,
padding=1) - ReLU - MaxPool2d(2) - Flatten - Linear(128, 64) - ReLU -
Linear(64, 10), trained with Adam on 1347 images, tested on 450 (stratified
split). The checkpoint (ndconv.save, an .npz without pickle) is written after
every epoch, atomically; an existing file is refused unless --force.

examples:
  ndconv train                              20 epochs, checkpoint digits-cnn.npz
  ndconv train --epochs 3 --checkpoint run.npz --force
  ndconv train --no-checkpoint --seed 1
"""


def add_arguments(p):
    p.add_argument("--epochs", type=int, default=20, help="epochs (default 20)")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (default 0.003)")
    p.add_argument("--batch-size", type=int, default=32, help="mini-batch size (default 32)")
    p.add_argument("--seed", type=_parse.seed, default=0, help="seed of split, weights, shuffling")
    p.add_argument("--checkpoint", default="digits-cnn.npz", metavar="FILE.npz",
                   help="checkpoint path (default digits-cnn.npz)")
    p.add_argument("--no-checkpoint", action="store_true", help="do not write a checkpoint")
    p.add_argument("--force", action="store_true", help="replace an existing checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def train_digits(epochs=20, seed=0, lr=3e-3, batch_size=32, progress=True, checkpoint=None):
    """Train the digits CNN; return a dict with model, history, accuracy, seconds, split."""
    from .. import data, evaluate, fit
    from ..losses import CrossEntropyLoss
    from ..models import digits_cnn
    from ..optim import Adam

    if not 1 <= epochs <= 10_000:
        raise UsageError(f"--epochs (={epochs}) must be between 1 and 10000")
    if not (np.isfinite(lr) and lr > 0):
        raise UsageError(f"--lr (={lr}) must be a positive number")
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


def run(args):
    ckpt = None
    if not args.no_checkpoint:
        ckpt = _io.check_output(args.checkpoint, force=args.force, what="checkpoint")
        if not ckpt.endswith(".npz"):
            raise UsageError(f"checkpoint {ckpt!r} must end in .npz")
    try:
        from .. import fit  # noqa: F401  (the training loop of ndconv.train)
        from ..train import NonFiniteLossError
    except ImportError as exc:
        raise Unavailable(f"ndconv.train is not installed ({exc})") from None
    try:
        # A diverging run (too large --lr) is reported once, by fit's
        # NonFiniteLossError, not by NumPy's overflow warnings on the way.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            r = train_digits(args.epochs, args.seed, args.lr, args.batch_size,
                             progress=not args.no_progress, checkpoint=ckpt)
    except NonFiniteLossError as exc:
        raise UsageError(str(exc)) from None
    h = r["history"]
    for e in range(len(h["loss"])):
        print(f"epoch {e + 1:3d}  loss {h['loss'][e]:.4f}  train accuracy "
              f"{h['accuracy'][e]:.3f}  test accuracy {h['val_accuracy'][e]:.3f}")
    n = r["split"].y_test.size
    print(f"test accuracy {r['accuracy']:.4f} ({round(r['accuracy'] * n)}/{n}), "
          f"{r['seconds']:.1f} s" + (f"; checkpoint {os.path.abspath(ckpt)}" if ckpt else ""))

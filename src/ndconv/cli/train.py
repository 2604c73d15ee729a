"""``ndconv train``: a CNN on scikit-learn's bundled digits, with a checkpoint.

The command only: it checks the flags and the checkpoint path and prints the
history; the training is :func:`ndconv.models.train_digits`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

from ..training.models import train_digits
from ..training.train import NonFiniteLossError
from . import _io, _parse
from ._errors import UsageError

if TYPE_CHECKING:
    import argparse

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


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=int, default=20, help="epochs (default 20)")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (default 0.003)")
    p.add_argument("--batch-size", type=int, default=32, help="mini-batch size (default 32)")
    p.add_argument("--seed", type=_parse.seed, default=0, help="seed of split, weights, shuffling")
    p.add_argument("--checkpoint", default="digits-cnn.npz", metavar="FILE.npz",
                   help="checkpoint path (default digits-cnn.npz)")
    p.add_argument("--no-checkpoint", action="store_true", help="do not write a checkpoint")
    p.add_argument("--force", action="store_true", help="replace an existing checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> None:
    ckpt = None
    if not args.no_checkpoint:
        ckpt = _io.check_output(args.checkpoint, force=args.force, what="checkpoint")
        if not ckpt.endswith(".npz"):
            raise UsageError(f"checkpoint {ckpt!r} must end in .npz")
    # The flags are checked here, named as the user typed them; the 10000
    # epochs cap is the command's (a typo must not start a day-long run).
    if not 1 <= args.epochs <= 10_000:
        raise UsageError(f"--epochs (={args.epochs}) must be between 1 and 10000")
    if not (np.isfinite(args.lr) and args.lr > 0):
        raise UsageError(f"--lr (={args.lr}) must be a positive number")
    try:
        # A diverging run (too large --lr) is reported once, by fit's
        # NonFiniteLossError, not by NumPy's overflow warnings on the way.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            r = train_digits(args.epochs, seed=args.seed, lr=args.lr,
                             batch_size=args.batch_size, progress=not args.no_progress,
                             checkpoint=ckpt)
    except NonFiniteLossError as exc:
        raise UsageError(str(exc)) from None
    h = r["history"]
    for e in range(len(h["loss"])):
        print(f"epoch {e + 1:3d}  loss {h['loss'][e]:.4f}  train accuracy "
              f"{h['accuracy'][e]:.3f}  test accuracy {h['val_accuracy'][e]:.3f}")
    n = r["split"].y_test.size
    print(f"test accuracy {r['accuracy']:.4f} ({round(r['accuracy'] * n)}/{n}), "
          f"{r['seconds']:.1f} s" + (f"; checkpoint {os.path.abspath(ckpt)}" if ckpt else ""))

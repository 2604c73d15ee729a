"""``ndconv learn-kernel``: learn the edge kernel [1, -1] back from data (the book)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..lecture.experiments import learn_edge_kernel
from . import _parse
from ._errors import UsageError

if TYPE_CHECKING:
    import argparse

HELP = "learn the edge-detection kernel [1, -1] back from input/output pairs"

EXAMPLES = """\
The book's experiment: X = ones(6, 8) with columns 2..5 set to 0, Y = X * [[1, -1]];
a Conv2d(1, 1, kernel_size=(1, 2), bias=False) starting from a random kernel,
loss = sum of squared errors, plain gradient descent. With the defaults the
loss falls 2.5x to 5.7x every 2 iterations (measured over seeds 0 to 9; the
book says about 10x) and the kernel ends within 0.06 of [1, -1].

examples:
  ndconv learn-kernel
  ndconv learn-kernel --iterations 20 --lr 0.01 --seed 3
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--iterations", type=int, default=10, help="gradient steps (default 10)")
    p.add_argument("--lr", type=float, default=3e-2, help="learning rate (default 0.03)")
    p.add_argument("--seed", type=_parse.seed, default=0, help="seed of the initial kernel (default 0)")


def run(args: argparse.Namespace) -> None:
    # A too large --lr diverges: the printed losses (inf, nan) say so, without
    # NumPy's overflow warnings on stderr.
    if not 1 <= args.iterations <= 100_000:
        raise UsageError(f"--iterations (={args.iterations}) must be between 1 and 100000")
    if not (np.isfinite(args.lr) and args.lr > 0):
        raise UsageError(f"--lr (={args.lr}) must be a positive number")
    with np.errstate(over="ignore", invalid="ignore"):
        losses, kernel, _, _ = learn_edge_kernel(args.iterations, args.lr, args.seed)
    for i, loss in enumerate(losses, 1):
        if i % 2 == 0 or i == len(losses):
            print(f"iteration {i}, loss {loss:.3f}")
    k = kernel.ravel()
    print(f"learnt kernel: [[{k[0]:.4f}, {k[1]:.4f}]]  (the true kernel is [[1, -1]])")

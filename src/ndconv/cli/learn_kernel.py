"""``ndconv learn-kernel``: learn the edge kernel [1, -1] back from data (the book)."""

from __future__ import annotations

import numpy as np

from . import _parse

HELP = "learn the edge-detection kernel [1, -1] back from input/output pairs"

EXAMPLES = """\
The book's experiment: X = ones(6, 8) with columns 2..5 set to 0, Y = X * [[1, -1]];
a Conv2d(1, 1, kernel_size=(1, 2), bias=False) starting from a random kernel,
loss = sum of squared errors, plain gradient descent. The loss falls about 10x
every 2 iterations and the kernel ends near [1, -1].

examples:
  ndconv learn-kernel
  ndconv learn-kernel --iterations 20 --lr 0.01 --seed 3
"""


def add_arguments(p):
    p.add_argument("--iterations", type=int, default=10, help="gradient steps (default 10)")
    p.add_argument("--lr", type=float, default=3e-2, help="learning rate (default 0.03)")
    p.add_argument("--seed", type=_parse.seed, default=0, help="seed of the initial kernel (default 0)")


def learn_edge_kernel(iterations=10, lr=3e-2, seed=0):
    """Run the book's experiment; return ``(losses, kernel, X, Y)``.

    ``losses[i]`` is the summed squared error before step ``i + 1`` is applied,
    as the book prints it; ``kernel`` is the learnt (1, 2) kernel.
    """
    from .. import correlate
    from ..nn import Conv2d

    if not 1 <= iterations <= 100_000:
        raise ValueError(f"--iterations (={iterations}) must be between 1 and 100000")
    if not (np.isfinite(lr) and lr > 0):
        raise ValueError(f"--lr (={lr}) must be a positive number")
    X = np.ones((6, 8))
    X[:, 2:6] = 0
    Y = correlate(X, [[1.0, -1.0]])
    conv = Conv2d(1, 1, kernel_size=(1, 2), bias=False, dtype=np.float64,
                  rng=np.random.default_rng(seed))
    x, y = X[None, None], Y[None, None]
    losses = []
    for _ in range(iterations):
        y_hat = conv(x)
        err = y_hat - y
        losses.append(float((err ** 2).sum()))
        conv.zero_grad()
        conv.backward(2 * err)  # d(sum err^2)/d y_hat
        conv.weight.data -= lr * conv.weight.grad
    return losses, conv.weight.data.reshape(1, 2).copy(), X, Y


def run(args):
    # A too large --lr diverges: the printed losses (inf, nan) say so, without
    # NumPy's overflow warnings on stderr.
    with np.errstate(over="ignore", invalid="ignore"):
        losses, kernel, _, _ = learn_edge_kernel(args.iterations, args.lr, args.seed)
    for i, loss in enumerate(losses, 1):
        if i % 2 == 0 or i == len(losses):
            print(f"iteration {i}, loss {loss:.3f}")
    k = kernel.ravel()
    print(f"learnt kernel: [[{k[0]:.4f}, {k[1]:.4f}]]  (the true kernel is [[1, -1]])")

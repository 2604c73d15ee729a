"""Learn the edge-detection kernel [[1, -1]] from data, as in the book.

X is a 6x8 image of ones with a dark band (columns 2..5 are zero); Y = X * K
with K = [[1, -1]] marks its two vertical edges. A ``Conv2d(1, 1, (1, 2),
bias=False)`` starting from PyTorch's default random initialisation learns K
back by plain gradient descent on the sum of squared errors, lr 3e-2.

    python examples/learn_kernel.py [--steps 10] [--seed 0]
"""

from __future__ import annotations

import argparse

import numpy as np

import ndconv
from ndconv import nn
from ndconv.losses import MSELoss
from ndconv.optim import SGD


def book_data():
    """``(X, Y)`` of shape (1, 1, 6, 8) and (1, 1, 6, 7): the band image and its edges."""
    X = np.ones((6, 8))
    X[:, 2:6] = 0
    Y = ndconv.correlate(X, [[1.0, -1.0]])
    return X[None, None], Y[None, None]


def learn(steps=10, seed=0, lr=3e-2, dtype=np.float64):
    """Run ``steps`` gradient steps; return ``(kernel, losses)`` (loss before each step)."""
    X, Y = book_data()
    X, Y = X.astype(dtype), Y.astype(dtype)
    conv = nn.Conv2d(1, 1, kernel_size=(1, 2), bias=False, dtype=dtype, rng=seed)
    loss_fn = MSELoss(reduction="sum")  # the book's sum of squared errors
    opt = SGD(conv.parameters(), lr=lr)  # plain gradient steps: w -= lr * grad
    losses = []
    for _ in range(steps):
        losses.append(loss_fn(conv(X), Y))
        opt.zero_grad()
        conv.backward(loss_fn.backward())
        opt.step()
    return conv.weight.data.reshape(2), losses


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    kernel, losses = learn(args.steps, args.seed)
    for i, loss in enumerate(losses, 1):
        if i % 2 == 0 or i == 1:
            print(f"step {i:3d}, loss {loss:.4f}")
    print(f"learned kernel {np.round(kernel, 4)} (target [1, -1])")


if __name__ == "__main__":
    main()

"""Train a LeNet-style CNN on scikit-learn's bundled handwritten digits.

1797 real 8x8 images, stratified 75/25 split; two convolution + max-pool
stages, then two fully connected layers, trained with Adam. Prints the test
accuracy (>= 97% expected) and the training time.

    python examples/train_digits.py [--epochs 20] [--seed 0] [--no-progress] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import ndconv
from ndconv.losses import CrossEntropyLoss
from ndconv.models import digits_cnn
from ndconv.optim import Adam


def train(epochs=20, seed=0, batch_size=32, lr=3e-3, progress=False):
    """Train from scratch; return ``(model, history, test_accuracy, seconds)``."""
    split = ndconv.data.load_digits(seed=seed)
    model = digits_cnn(rng=seed)
    t0 = time.perf_counter()
    history = ndconv.fit(
        model, split.x_train, split.y_train, loss=CrossEntropyLoss(),
        optimizer=Adam(model.parameters(), lr=lr), epochs=epochs,
        batch_size=batch_size, rng=seed, progress=progress,
    )
    seconds = time.perf_counter() - t0
    acc = ndconv.evaluate(model, split.x_test, split.y_test)["accuracy"]
    return model, history, acc, seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--threads", type=int, default=1,
                    help="BLAS threads (default 1: see below)")
    args = ap.parse_args()
    # This model's matrix products are tiny (a few thousand rows by 9..288
    # columns): BLAS threads cost more than they save, and on a busy 2-core
    # machine they made training about 10x slower (measured: 34 s vs 3 s).
    ndconv.set_num_threads(args.threads)
    model, history, acc, seconds = train(args.epochs, args.seed, progress=not args.no_progress)
    print(model)
    for e, (loss, tacc) in enumerate(zip(history["loss"], history["accuracy"]), 1):
        print(f"epoch {e:2d}  loss {loss:.4f}  train accuracy {tacc:.3f}")
    print(f"test accuracy {acc:.4f} ({acc * 450:.0f}/450), training took {seconds:.1f} s")


if __name__ == "__main__":
    main()

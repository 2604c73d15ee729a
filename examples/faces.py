"""Face or not a face: the lecture's "cat or dog" task in miniature.

scikit-image bundles ``lfw_subset``: 100 real 25x25 faces (Labeled Faces in
the Wild) and 100 non-face crops. A small CNN with max pooling, dropout and
AdamW learns to tell them apart from 150 training images; the other 50
(stratified) measure it.

    python examples/faces.py [--epochs 30] [--seed 0] [--no-progress] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import ndconv
from ndconv.losses import CrossEntropyLoss
from ndconv.models import faces_cnn
from ndconv.optim import AdamW


def train(epochs=30, seed=0, batch_size=16, lr=3e-3, progress=False):
    """Train from scratch; return ``(model, history, test_accuracy, seconds)``."""
    split = ndconv.data.load_faces(seed=seed)
    model = faces_cnn(rng=seed)
    t0 = time.perf_counter()
    history = ndconv.fit(
        model, split.x_train, split.y_train, loss=CrossEntropyLoss(),
        optimizer=AdamW(model.parameters(), lr=lr), epochs=epochs,
        batch_size=batch_size, rng=seed, progress=progress,
        validation=(split.x_test, split.y_test),
    )
    seconds = time.perf_counter() - t0
    acc = ndconv.evaluate(model, split.x_test, split.y_test)["accuracy"]
    return model, history, acc, seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30)
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
    for e in range(0, history.epochs, 5):
        print(f"epoch {e + 1:2d}  loss {history['loss'][e]:.4f}  "
              f"test accuracy {history['val_accuracy'][e]:.2f}")
    print(f"test accuracy {acc:.2f} ({round(acc * 50)}/50 faces and non-faces), "
          f"training took {seconds:.1f} s")


if __name__ == "__main__":
    main()

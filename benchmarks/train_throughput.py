"""Training throughput (images/s) of the digits CNN: ndconv against PyTorch.

The same model (examples/train_digits.py), the same data (1347 training
digits), batch size, optimizer (Adam) and shuffling; PyTorch limited to the
same number of threads. Epochs alternate between the two libraries so that
both see the same machine load; the median over repeats is reported, with the
ratio ndconv / PyTorch (above 1: ndconv is faster).

    python benchmarks/train_throughput.py [--repeats 5] [--threads 2] [--batch-size 32]
    python benchmarks/train_throughput.py --profile   # where ndconv's time goes
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import numpy as np

import ndconv
from ndconv.losses import CrossEntropyLoss
from ndconv.optim import Adam
from ndconv.bench.cases import torch_digits_cnn
from ndconv.models import digits_cnn


def torch_model(model):
    """The PyTorch twin of ``digits_cnn()``, with the same initial weights."""
    import torch

    return torch_digits_cnn(torch, model)


def epoch_ndconv(model, opt, loss, x, y, order, bs):
    for i in range(0, len(order), bs):
        idx = order[i:i + bs]
        loss(model(x[idx]), y[idx])
        opt.zero_grad()
        model.backward(loss.backward())
        opt.step()


def epoch_torch(model, opt, x, y, order, bs):
    import torch

    lf = torch.nn.CrossEntropyLoss()
    for i in range(0, len(order), bs):
        idx = order[i:i + bs]
        opt.zero_grad()
        lf(model(x[idx]), y[idx]).backward()
        opt.step()


def blas_limit(n):
    """ndconv's threads (BLAS, FFT workers, depthwise kernels) limited to ``n``."""

    @contextlib.contextmanager
    def limit():
        ndconv.set_num_threads(n)
        try:
            yield
        finally:
            ndconv.set_num_threads(None)

    return limit()


def profile(x, y, bs, steps=100):
    """Seconds per step spent in each layer's forward and backward, and the rest."""
    model = digits_cnn()
    loss = CrossEntropyLoss()
    opt = Adam(model.parameters(), lr=3e-3)
    layers = list(model)
    fwd = [0.0] * len(layers)
    bwd = [0.0] * len(layers)
    other = 0.0
    order = np.random.default_rng(0).permutation(len(x))
    epoch_ndconv(model, opt, loss, x, y, order[:5 * bs], bs)  # warm-up: first-call costs
    for s in range(steps):
        idx = order[(s * bs) % len(x):][:bs]
        h = x[idx]
        for i, layer in enumerate(layers):
            t = time.perf_counter()
            h = layer(h)
            fwd[i] += time.perf_counter() - t
        t = time.perf_counter()
        loss(h, y[idx])
        g = loss.backward()
        opt.zero_grad()
        other += time.perf_counter() - t
        for i in reversed(range(len(layers))):
            t = time.perf_counter()
            g = layers[i].backward(g)
            bwd[i] += time.perf_counter() - t
        t = time.perf_counter()
        opt.step()
        other += time.perf_counter() - t
    total = sum(fwd) + sum(bwd) + other
    print(f"ndconv, {total / steps * 1e3:.2f} ms per step of {bs} images:")
    for i, layer in enumerate(layers):
        print(f"  {i} {type(layer).__name__:10s} forward {fwd[i] / steps * 1e3:6.3f} ms  "
              f"backward {bwd[i] / steps * 1e3:6.3f} ms  ({(fwd[i] + bwd[i]) / total:5.1%})")
    print(f"  loss + optimizer        {other / steps * 1e3:6.3f} ms  ({other / total:5.1%})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2, help="PyTorch threads and ndconv threads")
    ap.add_argument("--blas-threads", type=int, default=None,
                    help="ndconv's threads (BLAS and its own), default: --threads")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()

    split = ndconv.data.load_digits()
    x, y = split.x_train, split.y_train
    bs = args.batch_size
    blas = args.blas_threads or args.threads
    if args.profile:
        with blas_limit(blas):
            profile(x, y, bs)
        return

    import torch

    torch.set_num_threads(args.threads)
    model = digits_cnn()
    opt = Adam(model.parameters(), lr=3e-3)
    loss = CrossEntropyLoss()
    tm = torch_model(model)
    topt = torch.optim.Adam(tm.parameters(), lr=3e-3)
    xt, yt = torch.tensor(x), torch.tensor(y)
    rng = np.random.default_rng(0)
    # Warm-up epoch each (first-call costs: BLAS, torch's allocator).
    order = rng.permutation(len(x))
    with blas_limit(blas):
        epoch_ndconv(model, opt, loss, x, y, order, bs)
    epoch_torch(tm, topt, xt, yt, torch.tensor(order), bs)
    ours, theirs = [], []
    for _ in range(args.repeats):
        order = rng.permutation(len(x))
        with blas_limit(blas):
            t = time.perf_counter()
            epoch_ndconv(model, opt, loss, x, y, order, bs)
            ours.append(len(x) / (time.perf_counter() - t))
        t = time.perf_counter()
        epoch_torch(tm, topt, xt, yt, torch.tensor(order), bs)
        theirs.append(len(x) / (time.perf_counter() - t))
    mo, mt = statistics.median(ours), statistics.median(theirs)
    print(f"digits CNN, batch {bs}, {len(x)} images per epoch, {args.repeats} epochs each, "
          f"interleaved; torch {torch.__version__} with {args.threads} threads, ndconv with "
          f"{blas} threads")
    print(f"ndconv  {mo:8.0f} images/s  (epochs: {', '.join(f'{v:.0f}' for v in ours)})")
    print(f"PyTorch {mt:8.0f} images/s  (epochs: {', '.join(f'{v:.0f}' for v in theirs)})")
    print(f"ratio ndconv / PyTorch = {mo / mt:.2f}")


if __name__ == "__main__":
    main()

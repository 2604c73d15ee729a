"""What the array-API seam costs: NumPy path, portable path, native conv.

For a few float32 layers, times (interleaved, one warm-up call each,
``--repeats`` rounds, median) on the same numbers:

- ``numpy``: ``ndconv.conv`` on NumPy arrays (``method='auto'``: the tuned path);
- ``portable-direct`` / ``portable-gemm``: ``ndconv.conv`` on torch CPU tensors
  with the methods written against the array API standard;
- ``ndconv-torch``: ``ndconv.conv`` on torch tensors with ``method='torch'``
  (torch's own convolution behind ndconv's validation);
- ``torch``: ``torch.nn.functional.conv2d/3d`` called directly;

each forward only and forward + backward (``ndconv.conv_backward`` /
``torch.autograd``), on 1 and 2 threads (torch and BLAS both). Ratios are
against the NumPy path and against torch's own conv. A last table measures
what resolving the array library costs a NumPy call (``_backends.resolve``
against a small ``ndconv.conv``).

Usage::

    python benchmarks/array_api.py               # about two minutes
    python benchmarks/array_api.py --repeats 9 --markdown
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

import ndconv
from ndconv.core import _backends
from ndconv.bench.timing import set_threads, time_interleaved

#: (name, x shape, weight shape, conv keyword arguments)
CASES = [
    ("cnn 3x3 16->32 @32x32, B=8", (8, 16, 32, 32), (32, 16, 3, 3), dict(padding=1)),
    ("stem 7x7/2 3->16 @96x96", (1, 3, 96, 96), (16, 3, 7, 7), dict(stride=2, padding=3)),
    ("depthwise 3x3 32 @48x48, B=4", (4, 32, 48, 48), (32, 1, 3, 3), dict(padding=1, groups=32)),
    ("3-D 3^3 4->8 @24^3", (1, 4, 24, 24, 24), (8, 4, 3, 3, 3), dict(padding=1)),
]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5, help="timed rounds (default 5)")
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    p.add_argument("--markdown", action="store_true", help="print Markdown tables")
    args = p.parse_args(argv)
    args.threads = [int(t) for t in args.threads.split(",")]
    return args


def impls(case):
    import torch
    import torch.nn.functional as F

    _, xs, ws, kw = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    y = ndconv.conv(x, w, **kw)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    xt, wt, gyt = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(gy)
    tconv = getattr(F, f"conv{len(ws) - 2}d")

    def nd(xa, wa, ga, method):
        return (lambda: ndconv.conv(xa, wa, **kw, method=method),
                lambda: (ndconv.conv(xa, wa, **kw, method=method),
                         ndconv.conv_backward(ga, xa, wa, **kw, method=method)))

    def th():
        def fb():
            a, b = xt.clone().requires_grad_(), wt.clone().requires_grad_()
            tconv(a, b, None, **kw).backward(gyt)
        return (lambda: tconv(xt, wt, None, **kw)), fb

    return {
        "numpy": nd(x, w, gy, "auto"),
        "portable-direct": nd(xt, wt, gyt, "direct"),
        "portable-gemm": nd(xt, wt, gyt, "gemm"),
        "ndconv-torch": nd(xt, wt, gyt, "torch"),
        "torch": th(),
    }


def resolve_overhead(repeats):
    """Seconds per ``resolve`` of NumPy arguments, and per small NumPy ``conv``."""
    x = np.ones((1, 1, 8, 8), np.float32)
    w = np.ones((1, 1, 3, 3), np.float32)
    n = 20000
    res, small = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            _backends.resolve(x=x, weight=w, bias=None)
        res.append((time.perf_counter() - t0) / n)
        t0 = time.perf_counter()
        for _ in range(n // 20):
            ndconv.conv(x, w)
        small.append((time.perf_counter() - t0) / (n // 20))
    return statistics.median(res), statistics.median(small)


def table(rows, headers, markdown):
    if markdown:
        out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    else:
        widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows)]
        out = ["  ".join(str(c).ljust(wd) for c, wd in zip(headers, widths))]
        out += ["  ".join(str(c).ljust(wd) for c, wd in zip(r, widths)) for r in rows]
    return "\n".join(out)


def main(argv=None):
    args = parse_args(argv)
    import torch

    print(f"# numpy {np.__version__}, torch {torch.__version__}, repeats {args.repeats}, "
          f"{os.cpu_count()} cores; {os.popen('uptime').read().strip()}")
    headers = ["case", "threads", "pass", "impl", "ms", "/ numpy", "/ torch"]
    rows = []
    for threads in args.threads:
        set_threads(threads)
        for case in CASES:
            fns = impls(case)
            for k, label in ((0, "fwd"), (1, "fwd+bwd")):
                t = time_interleaved([(name, pair[k]) for name, pair in fns.items()],
                                     args.repeats)
                for name, sec in t.items():
                    rows.append([case[0], threads, label, name, f"{sec * 1e3:.3g}",
                                 f"{sec / t['numpy']:.2f}", f"{sec / t['torch']:.2f}"])
                print(f"  {case[0]}, {threads} thread(s), {label}: done", file=sys.stderr)
    print(table(rows, headers, args.markdown))
    r, small = resolve_overhead(args.repeats)
    print()
    print(table([[f"{r * 1e6:.2f}", f"{small * 1e6:.1f}", f"{100 * r / small:.1f}%"]],
                ["resolve (us)", "conv 1x1x8x8 * 3x3, NumPy (us)", "share"], args.markdown))


if __name__ == "__main__":
    main()

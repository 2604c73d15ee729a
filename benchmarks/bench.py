"""Time ndconv against the tools users would pick instead, in one process.

Every case runs ndconv and its peers interleaved (one call of each in turn,
``--repeats`` rounds after one warm-up call each), and reports the median.
Peers get the same thread count (``--threads``, default: all usable cores):
PyTorch via ``torch.set_num_threads``, OpenCV via ``cv2.setNumThreads``,
NumPy's BLAS via threadpoolctl, SciPy's FFT via ``workers``.

The table lists, per case and implementation: the median time, GFLOP/s
(the direct formula's 2 * multiply-adds, whatever the algorithm), the
fraction of this machine's measured float32 GEMM peak (NumPy ``A @ B``), and
the ratio ndconv / peer (below 1: ndconv is faster). A summary gives the
geometric means the targets in BENCHMARKS.md refer to.

Usage::

    python benchmarks/bench.py            # the full suite (several minutes)
    python benchmarks/bench.py --quick    # scaled-down shapes, 3 repeats
    python benchmarks/bench.py --only cnn,large --repeats 7
    ndconv bench -- --quick               # the same through the CLI
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import platform
import statistics
import sys
import time
import tracemalloc

import numpy as np

import ndconv

GROUPS = ("cnn", "large", "image", "memory")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="scaled-down shapes and 3 repeats (about a minute)")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds (default 5; 3 with --quick)")
    p.add_argument("--threads", type=int, default=None, help="threads for every library (default: all cores)")
    p.add_argument("--only", default=",".join(GROUPS),
                   help=f"comma-separated groups among {', '.join(GROUPS)}")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = p.parse_args(argv)
    args.only = [g.strip() for g in args.only.split(",") if g.strip()]
    bad = [g for g in args.only if g not in GROUPS]
    if bad:
        p.error(f"--only: unknown group(s) {bad}; choose among {GROUPS}")
    if args.repeats is None:
        args.repeats = 3 if args.quick else 5
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    return args


def set_threads(n):
    ndconv.set_num_threads(n)
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:
        pass
    try:
        import cv2

        cv2.setNumThreads(n)
    except ImportError:
        pass


def sgemm_peak(quick):
    """Measured float32 GEMM GFLOP/s of NumPy's BLAS (median of 5)."""
    n = 1024 if quick else 2048
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(np.float32)
    b = rng.standard_normal((n, n)).astype(np.float32)
    a @ b
    ts = []
    for _ in range(5):
        t0 = time.perf_counter()
        a @ b
        ts.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(ts) / 1e9


#: A peer slower than this per call (warm-up) is timed in one round only.
SLOW_S = 3.0


def time_interleaved(impls, repeats):
    """Median seconds of each callable, calls interleaved round by round.

    Each callable is called once untimed first (first-call costs: plans,
    caches, JIT, page faults). One slower than :data:`SLOW_S` then runs in the
    first round only (PyTorch's direct 63x63 kernel takes tens of seconds).
    """
    rounds = {}
    for name, fn in impls:
        t0 = time.perf_counter()
        fn()
        rounds[name] = 1 if time.perf_counter() - t0 > SLOW_S else repeats
    times = {name: [] for name, _ in impls}
    for r in range(repeats):
        for name, fn in impls:
            if r >= rounds[name]:
                continue
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(v) for name, v in times.items()}


# --------------------------------------------------------------------------
# the suite


def _rng():
    return np.random.default_rng(0)


def cnn_cases(quick):
    """(name, x shape, weight shape, stride, padding, groups)."""
    layers = [
        ("conv 64->64 k3 56x56 b32", (32, 64, 56, 56), (64, 64, 3, 3), 1, 1, 1),
        ("conv 128->128 k3 28x28 b8", (8, 128, 28, 28), (128, 128, 3, 3), 1, 1, 1),
        ("conv 256->256 k3 14x14 b16", (16, 256, 14, 14), (256, 256, 3, 3), 1, 1, 1),
        ("conv 3->64 k7 s2 224x224", (1, 3, 224, 224), (64, 3, 7, 7), 2, 3, 1),
        ("conv 1->6 k5 28x28 b64", (64, 1, 28, 28), (6, 1, 5, 5), 1, 2, 1),
        ("depthwise 128 k3 56x56 b8", (8, 128, 56, 56), (128, 1, 3, 3), 1, 1, 128),
        ("conv1d 64->64 k9 4096 b16", (16, 64, 4096), (64, 64, 9), 1, 0, 1),
        ("conv3d 16->32 k3 32x64x64 b2", (2, 16, 32, 64, 64), (32, 16, 3, 3, 3), 1, 1, 1),
    ]
    if quick:  # a quarter of the batch (at least 1)
        layers = [(n, (max(1, x[0] // 4),) + x[1:], w, s, p, g) for n, x, w, s, p, g in layers]
    return layers


def bench_cnn(args, peak, rows):
    import torch
    import torch.nn.functional as tF

    tconv = {1: tF.conv1d, 2: tF.conv2d, 3: tF.conv3d}
    for name, xs, ws, s, p, g in cnn_cases(args.quick):
        rng = _rng()
        x = rng.standard_normal(xs).astype(np.float32)
        w = (rng.standard_normal(ws) / math.sqrt(math.prod(ws[1:]))).astype(np.float32)
        b = np.zeros(ws[0], np.float32)
        y = ndconv.conv(x, w, b, s, p, 1, g)
        gy = rng.standard_normal(y.shape).astype(np.float32)
        method = ndconv.choose_method(x, w, stride=s, padding=p, groups=g)[0]
        flops = 2 * y.size * math.prod(ws[1:])
        xt, wt, bt, gyt = (torch.from_numpy(a) for a in (x, w, b, gy))
        xg, wg, bg = (a.clone().requires_grad_(True) for a in (xt, wt, bt))
        f = tconv[len(ws) - 2]

        def nd_fwd():
            ndconv.conv(x, w, b, s, p, 1, g)

        def nd_fb():
            ndconv.conv(x, w, b, s, p, 1, g)
            ndconv.conv_backward(gy, x, w, s, p, 1, g)

        def th_fwd():
            with torch.no_grad():
                f(xt, wt, bt, s, p, 1, g)

        def th_fb():
            xg.grad = wg.grad = bg.grad = None
            f(xg, wg, bg, s, p, 1, g).backward(gyt)

        t = time_interleaved([("ndconv", nd_fwd), ("torch", th_fwd)], args.repeats)
        rows.append(row("cnn-fwd", name, f"ndconv ({method})", t["ndconv"], flops, peak))
        rows.append(row("cnn-fwd", name, "torch", t["torch"], flops, peak, t["ndconv"]))
        t = time_interleaved([("ndconv", nd_fb), ("torch", th_fb)], args.repeats)
        rows.append(row("cnn-fwdbwd", name, "ndconv", t["ndconv"], 3 * flops, peak))
        rows.append(row("cnn-fwdbwd", name, "torch", t["torch"], 3 * flops, peak, t["ndconv"]))
        progress(rows)


def _torch_same(torch, x, k):
    """torch's 'same' correlation of one channel, as a timed callable."""
    import warnings

    import torch.nn.functional as tF

    # even kernels: torch pads the extra element at the end (a copy), SciPy
    # centres differently; both are timed as the library does 'same'
    warnings.filterwarnings("ignore", message="Using padding='same'")

    n = x.ndim
    f = tF.conv1d if n == 1 else tF.conv2d
    xt = torch.from_numpy(x)[None, None]
    kt = torch.from_numpy(np.ascontiguousarray(k))[None, None]

    def run():
        with torch.no_grad():
            f(xt, kt, padding="same")

    return run


def bench_large(args, peak, rows):
    import scipy.signal as ss
    import torch

    size = 512 if args.quick else 1024
    n1, taps = (200_000, 2048) if args.quick else (1_000_000, 2048)
    rng = _rng()
    cases = [(f"2-D {size}x{size} k{k}", rng.standard_normal((size, size)).astype(np.float32),
              rng.standard_normal((k, k)).astype(np.float32)) for k in (15, 31, 63)]
    cases.append((f"1-D {n1} samples, {taps} taps", rng.standard_normal(n1).astype(np.float32),
                  rng.standard_normal(taps).astype(np.float32)))
    for name, x, k in cases:
        kf = np.ascontiguousarray(np.flip(k))  # scipy convolves: flip once, untimed
        method = ndconv.choose_method(x[None, None], k[None, None], padding="same")[0]
        flops = 2 * x.size * k.size
        impls = [
            ("ndconv", lambda: ndconv.correlate(x, k, mode="same")),
            ("torch", _torch_same(torch, x, k)),
            ("scipy fftconvolve", lambda: ss.fftconvolve(x, kf, mode="same")),
            ("scipy oaconvolve", lambda: ss.oaconvolve(x, kf, mode="same")),
            ("scipy correlate (auto)", lambda: ss.correlate(x, k, mode="same")),
        ]
        t = time_interleaved(impls, args.repeats)
        rows.append(row("large", name, f"ndconv ({method})", t["ndconv"], flops, peak))
        for label, _ in impls[1:]:
            rows.append(row("large", name, label, t[label], flops, peak, t["ndconv"]))
        progress(rows)


def bench_image(args, peak, rows):
    import torch

    shape = (1500, 2000) if args.quick else (3000, 4000)
    rng = _rng()
    img = rng.random(shape, dtype=np.float32)
    for k in (3, 15):
        ker = rng.standard_normal((k, k)).astype(np.float32)
        name = f"{shape[0]}x{shape[1]} 'same' k{k}"
        method = ndconv.choose_method(img[None, None], ker[None, None], padding="same")[0]
        impls = [("ndconv", lambda: ndconv.correlate(img, ker, mode="same"))]
        try:
            import cv2

            impls.append(("opencv filter2D",
                          lambda: cv2.filter2D(img, -1, ker, borderType=cv2.BORDER_CONSTANT)))
        except ImportError:
            pass
        import scipy.ndimage as ndi

        impls.append(("scipy.ndimage.correlate", lambda: ndi.correlate(img, ker, mode="constant")))
        impls.append(("torch", _torch_same(torch, img, ker)))
        flops = 2 * img.size * ker.size
        t = time_interleaved(impls, args.repeats)
        rows.append(row("image", name, f"ndconv ({method})", t["ndconv"], flops, peak))
        for label, _ in impls[1:]:
            rows.append(row("image", name, label, t[label], flops, peak, t["ndconv"]))
        progress(rows)


def bench_memory(args, rows):
    """Peak extra memory of Conv2d(3, 16, 3, padding=1) forward on the photo."""
    from ndconv.nn import Conv2d

    shape = (1, 3, 1500, 2000) if args.quick else (1, 3, 3000, 4000)
    x = _rng().random(shape, dtype=np.float32)
    layer = Conv2d(3, 16, 3, padding=1, dtype=np.float32)
    gc.collect()
    tracemalloc.start()  # NumPy reports its buffers to tracemalloc
    base = tracemalloc.get_traced_memory()[0]
    y = layer(x)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    io = x.nbytes + y.nbytes
    rows.append({
        "group": "memory", "case": f"Conv2d(3,16,3,p=1) on {shape}", "impl": "ndconv",
        "ms": None, "gflops": None, "peak": None, "ratio": None,
        "note": f"peak extra {peak / 2**20:.0f} MiB = {peak / io:.2f} x (input + output "
                f"{io / 2**20:.0f} MiB); output alone {y.nbytes / 2**20:.0f} MiB",
        "mem_ratio": peak / io,
    })
    progress(rows)


# --------------------------------------------------------------------------
# reporting


def row(group, case, impl, seconds, flops, peak, nd_seconds=None):
    g = flops / seconds / 1e9
    return {
        "group": group, "case": case, "impl": impl, "ms": seconds * 1e3, "gflops": g,
        "peak": g / peak, "ratio": None if nd_seconds is None else nd_seconds / seconds,
        "note": "",
    }


def progress(rows):
    print(f"  ... {rows[-1]['group']}: {rows[-1]['case']} done", file=sys.stderr, flush=True)


def fmt_table(rows, markdown):
    head = ["group", "case", "implementation", "median ms", "GFLOP/s", "% SGEMM peak",
            "ndconv / this"]
    body = []
    for r in rows:
        if r["ms"] is None:
            body.append([r["group"], r["case"], r["impl"], "see summary", "", "", ""])
            continue
        body.append([
            r["group"], r["case"], r["impl"], f"{r['ms']:.2f}", f"{r['gflops']:.1f}",
            f"{100 * r['peak']:.1f}", "" if r["ratio"] is None else f"{r['ratio']:.2f}",
        ])
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(b) + " |" for b in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(b) for b in body])


def geomean(values):
    values = [v for v in values if v]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else float("nan")


def summary(rows):
    out = []

    def ratios(group, impl_prefix):
        return [r["ratio"] for r in rows if r["group"] == group and r["impl"].startswith(impl_prefix)]

    for group, peer, target in [
        ("cnn-fwd", "torch", "<= 1.0"),
        ("cnn-fwdbwd", "torch", "<= 1.0"),
        ("large", "torch", "<= 0.33"),
    ]:
        rs = ratios(group, peer)
        if rs:
            out.append(f"{group}: geomean ndconv/{peer} = {geomean(rs):.2f} (target {target})")
    large = [r for r in rows if r["group"] == "large"]
    for case in dict.fromkeys(r["case"] for r in large):
        best = min((r for r in large if r["case"] == case and r["impl"].startswith("scipy")),
                   key=lambda r: r["ms"], default=None)
        nd = next(r for r in large if r["case"] == case and r["impl"].startswith("ndconv"))
        if best:
            out.append(f"large {case}: ndconv / best SciPy ({best['impl']}) = "
                       f"{nd['ms'] / best['ms']:.2f} (target <= 1.0)")
    for r in rows:
        if r["group"] == "image" and r["impl"] == "opencv filter2D":
            out.append(f"image {r['case']}: ndconv / OpenCV = {r['ratio']:.2f}"
                       + (" (target <= 1.0)" if r["case"].endswith("k3") else ""))
        if r["group"] == "memory":
            out.append(f"memory: {r['note']} (target <= 2.0 x)")
    return "\n".join(out)


def machine(threads, peak):
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for ln in fh:
                if ln.startswith("model name"):
                    cpu = ln.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    import scipy
    versions = f"numpy {np.__version__}, scipy {scipy.__version__}"
    try:
        import torch
        versions += f", torch {torch.__version__}"
    except ImportError:
        pass
    try:
        import cv2
        versions += f", opencv {cv2.__version__}"
    except ImportError:
        pass
    return (f"{cpu}; {threads} threads; measured SGEMM peak {peak:.0f} GFLOP/s; "
            f"load average at start {load:.2f}; Python {platform.python_version()}, {versions}")


def main(argv=None):
    args = parse_args(argv)
    threads = args.threads or ndconv.get_num_threads()
    set_threads(threads)
    peak = sgemm_peak(args.quick)
    print(machine(threads, peak))
    print(f"command: {' '.join([os.path.basename(sys.argv[0] or 'bench.py')] + (argv or sys.argv[1:]))}")
    rows = []
    if "cnn" in args.only:
        bench_cnn(args, peak, rows)
    if "large" in args.only:
        bench_large(args, peak, rows)
    if "image" in args.only:
        bench_image(args, peak, rows)
    if "memory" in args.only:
        bench_memory(args, rows)
    print(fmt_table(rows, args.markdown))
    print()
    print(summary(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

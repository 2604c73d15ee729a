"""The benchmark's groups: each appends rows timed against the installed peers.

``cnn``: convolution layers of real CNNs, forward and forward + backward,
against PyTorch. ``small``: a small trained network (the digits CNN): inference
latency at batch 1 and 64, and a training epoch, against PyTorch. ``large``:
large kernels against PyTorch and SciPy. ``image``: a 12-megapixel photo
filtered in memory against OpenCV, SciPy and PyTorch. ``filter``: ``ndconv
filter`` itself (read, filter, write) on a 12 MP RGB photo for every kernel of
the bank, against its library call. ``memory``: the peak memory of a layer on
the photo.
"""

from __future__ import annotations

import gc
import math
import os
import tempfile
import time
import tracemalloc
from argparse import Namespace
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

import ndconv

from .timing import Row, peer, progress, row, time_interleaved

if TYPE_CHECKING:
    from ..core._typing import NDArray

#: A group: ``bench(args, peak, rows, skipped)`` appends its rows and notes absent peers.
Group = Callable[[Namespace, float, list[Row], dict[str, str]], None]
#: The callables one case times, by label (ndconv first).
Impls = list[tuple[str, Callable[[], object]]]
#: One layer of ``cnn``: name, x shape, weight shape, stride, padding, groups.
Case = tuple[str, tuple[int, ...], tuple[int, ...], int, int, int]


def _rng() -> np.random.Generator:
    return np.random.default_rng(0)


def cnn_cases(quick: bool) -> list[Case]:
    """(name, x shape, weight shape, stride, padding, groups)."""
    layers: list[Case] = [
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


def bench_cnn(args: Namespace, peak: float, rows: list[Row], skipped: dict[str, str]) -> None:
    torch = peer("torch", skipped)
    if torch is None:
        return
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

        def nd_fwd() -> None:
            ndconv.conv(x, w, b, s, p, 1, g)

        def nd_fb() -> None:
            ndconv.conv(x, w, b, s, p, 1, g)
            ndconv.conv_backward(gy, x, w, s, p, 1, g)

        def th_fwd() -> None:
            with torch.no_grad():
                f(xt, wt, bt, s, p, 1, g)

        def th_fb() -> None:
            xg.grad = wg.grad = bg.grad = None
            f(xg, wg, bg, s, p, 1, g).backward(gyt)

        # Page faults per call beside the times: a library whose buffers come
        # from fresh pages pays ~6 us a page (see time_interleaved).
        for group, impls, fl in (("cnn-fwd", (nd_fwd, th_fwd), flops),
                                 ("cnn-fwdbwd", (nd_fb, th_fb), 3 * flops)):
            t = time_interleaved([("ndconv", impls[0]), ("torch", impls[1])], args.repeats)
            nd_name = f"ndconv ({method})" if group == "cnn-fwd" else "ndconv"
            rows.append(row(group, name, nd_name, t["ndconv"], fl, peak,
                            faults=t.faults["ndconv"]))
            rows.append(row(group, name, "torch", t["torch"], fl, peak, t["ndconv"],
                            faults=t.faults["torch"]))
        progress(rows)


def torch_digits_cnn(torch: Any, model: ndconv.nn.Module) -> Any:
    """The PyTorch twin of :func:`ndconv.models.digits_cnn`, same weights."""
    t = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(128, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10),
    )
    t.load_state_dict({k: torch.tensor(v) for k, v in model.state_dict().items()})
    return t


def bench_small(args: Namespace, peak: float, rows: list[Row], skipped: dict[str, str]) -> None:
    """Inference latency (batch 1, 64) and one training epoch of the digits CNN."""
    torch = peer("torch", skipped)
    if torch is None:
        return
    from ..training.losses import CrossEntropyLoss
    from ..training.models import digits_cnn
    from ..training.optim import Adam

    model = digits_cnn().eval()
    tm = torch_digits_cnn(torch, model).eval()
    rng = _rng()
    # flops of one image: the two convs and the two linear layers
    flops1 = 2 * (16 * 64 * 9 + 32 * 16 * 16 * 9 + 128 * 64 + 64 * 10)
    for batch in (1, 64):
        x = rng.standard_normal((batch, 1, 8, 8)).astype(np.float32)
        xt = torch.from_numpy(x)

        def th() -> None:
            with torch.no_grad():
                tm(xt)

        reps = args.repeats * (20 if batch == 1 else 5)
        t = time_interleaved([("ndconv", lambda: model(x)), ("torch", th)], reps)
        name = f"digits CNN inference, batch {batch}"
        rows.append(row("small", name, "ndconv", t["ndconv"], flops1 * batch, peak))
        rows.append(row("small", name, "torch", t["torch"], flops1 * batch, peak, t["ndconv"]))
    # one training epoch on 1344 random 8x8 images (42 steps of 32), same loop shape
    n, bs = 1344, 32
    x = rng.standard_normal((n, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 10, n)
    model.train()
    tm.train()
    opt, loss = Adam(model.parameters(), lr=1e-3), CrossEntropyLoss()
    topt, tloss = torch.optim.Adam(tm.parameters(), lr=1e-3), torch.nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def nd_epoch() -> None:
        for i in range(0, n, bs):
            loss(model(x[i:i + bs]), y[i:i + bs])
            opt.zero_grad()
            model.backward_params(loss.backward())  # as fit(): no input gradient
            opt.step()

    def th_epoch() -> None:
        for i in range(0, n, bs):
            topt.zero_grad()
            tloss(tm(xt[i:i + bs]), yt[i:i + bs]).backward()
            topt.step()

    t = time_interleaved([("ndconv", nd_epoch), ("torch", th_epoch)], args.repeats)
    name = f"digits CNN training epoch ({n} images, batch {bs}, Adam)"
    rows.append(row("small", name, "ndconv", t["ndconv"], 3 * flops1 * n, peak))
    rows.append(row("small", name, "torch", t["torch"], 3 * flops1 * n, peak, t["ndconv"]))
    progress(rows)


def _torch_same(torch: Any, x: NDArray[Any], k: NDArray[Any]) -> Callable[[], None]:
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

    def run() -> None:
        with torch.no_grad():
            f(xt, kt, padding="same")

    return run


def bench_large(args: Namespace, peak: float, rows: list[Row], skipped: dict[str, str]) -> None:
    torch = peer("torch", skipped)
    signal = peer("scipy.signal", skipped)
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
        impls: Impls = [("ndconv", lambda: ndconv.correlate(x, k, mode="same"))]
        if torch is not None:
            impls.append(("torch", _torch_same(torch, x, k)))
        if signal is not None:
            impls += [
                ("scipy fftconvolve", lambda: signal.fftconvolve(x, kf, mode="same")),
                ("scipy oaconvolve", lambda: signal.oaconvolve(x, kf, mode="same")),
                ("scipy correlate (auto)", lambda: signal.correlate(x, k, mode="same")),
            ]
        t = time_interleaved(impls, args.repeats)
        rows.append(row("large", name, f"ndconv ({method})", t["ndconv"], flops, peak))
        for label, _ in impls[1:]:
            rows.append(row("large", name, label, t[label], flops, peak, t["ndconv"]))
        progress(rows)


def bench_image(args: Namespace, peak: float, rows: list[Row], skipped: dict[str, str]) -> None:
    cv2 = peer("cv2", skipped)
    ndi = peer("scipy.ndimage", skipped)
    torch = peer("torch", skipped)
    shape = (1500, 2000) if args.quick else (3000, 4000)
    rng = _rng()
    img = rng.random(shape, dtype=np.float32)
    for k in (3, 15):
        ker = rng.standard_normal((k, k)).astype(np.float32)
        name = f"{shape[0]}x{shape[1]} 'same' k{k}"
        method = ndconv.choose_method(img[None, None], ker[None, None], padding="same")[0]
        impls: Impls = [("ndconv", lambda: ndconv.correlate(img, ker, mode="same"))]
        if cv2 is not None:
            impls.append(("opencv filter2D",
                          lambda: cv2.filter2D(img, -1, ker, borderType=cv2.BORDER_CONSTANT)))
        if ndi is not None:
            impls.append(("scipy.ndimage.correlate",
                          lambda: ndi.correlate(img, ker, mode="constant")))
        if torch is not None:
            impls.append(("torch", _torch_same(torch, img, ker)))
        flops = 2 * img.size * ker.size
        t = time_interleaved(impls, args.repeats)
        rows.append(row("image", name, f"ndconv ({method})", t["ndconv"], flops, peak))
        for label, _ in impls[1:]:
            rows.append(row("image", name, label, t[label], flops, peak, t["ndconv"]))
        progress(rows)


#: Kernels of the ``filter`` group: the bank's names plus two large ones.
FILTER_KERNELS = ("identity", "box:3", "gaussian", "sharpen", "edge", "diff", "sobel-x",
                  "sobel-y", "laplacian", "emboss", "motion:9", "gaussian:2", "box:31",
                  "gaussian:8")


def bench_filter(args: Namespace, peak: float, rows: list[Row], skipped: dict[str, str]) -> None:
    """``ndconv filter`` on a 12 MP RGB photo against its library call.

    The command reads an uncompressed TIFF, filters in bands and writes an
    uncompressed TIFF (PNG's deflate alone takes seconds at 12 MP and would
    say nothing about ndconv); the library call is
    :func:`ndconv.images.filter_image` on the array already in memory, and
    OpenCV's ``filter2D`` on it where installed. All three run in this
    process with the thread count of the run (``--threads``); the command
    runs through :func:`ndconv.cli.main` as typed (its argument parsing
    included), and writes the TIFF from one more thread while it filters.
    """
    pil = peer("PIL.Image", skipped)
    if pil is None:
        return
    cv2 = peer("cv2", skipped)
    from .. import images
    from ..images import kernels
    from ..cli import main as cli_main

    shape = (1500, 2000, 3) if args.quick else (3000, 4000, 3)
    # Random uint8 pixels: the time of filtering does not depend on the values.
    rng = _rng()
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "photo.tif")
        pil.fromarray(img).save(src)
        for name in FILTER_KERNELS:
            k = kernels.get(name)
            written: list[str] = []

            def cli() -> None:
                # A new output each call, as the command is typed by default
                # (without --force it refuses an existing one); replacing an
                # existing 36 MB output with --force costs the file system
                # 7-10 ms more (dropping the old file), not measured here.
                dst = os.path.join(tmp, f"out-{len(written)}.tif")
                written.append(dst)
                rc = cli_main(["filter", src, dst, "--kernel", name])
                if rc != 0:
                    raise RuntimeError(f"ndconv filter --kernel {name} exited {rc}")

            impls = [("ndconv filter (CLI)", cli),
                     ("filter_image", lambda: images.filter_image(img, k))]
            if cv2 is not None:
                kf = np.asarray(k, np.float32)
                impls.append(("opencv filter2D",
                              lambda: cv2.filter2D(img, -1, kf, borderType=cv2.BORDER_CONSTANT)))
            t = time_interleaved(impls, args.repeats)
            for dst in written:  # untimed: 36 MB each
                os.unlink(dst)
            flops = 2 * img.size * np.size(k)
            case = f"{shape[1]}x{shape[0]} RGB, {name}"
            rows.append(row("filter", case, "ndconv filter (CLI)", t["ndconv filter (CLI)"],
                            flops, peak))
            for label, _ in impls[1:]:
                rows.append(row("filter", case, label, t[label], flops, peak,
                                t["ndconv filter (CLI)"]))
            progress(rows)


def bench_memory(args: Namespace, peak: float, rows: list[Row], skipped: dict[str, str]) -> None:
    """Peak extra memory of Conv2d(3, 16, 3, padding=1) forward on the photo."""
    from ..nn import Conv2d

    shape = (1, 3, 1500, 2000) if args.quick else (1, 3, 3000, 4000)
    x = _rng().random(shape, dtype=np.float32)
    layer = Conv2d(3, 16, 3, padding=1, dtype=np.float32)
    gc.collect()
    tracemalloc.start()  # NumPy reports its buffers to tracemalloc
    base = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    y = layer(x)
    seconds = time.perf_counter() - t0
    peak_bytes = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    io = x.nbytes + y.nbytes
    rows.append({
        "group": "memory", "case": f"Conv2d(3,16,3,p=1) on {shape}", "impl": "ndconv",
        "ms": None, "gflops": None, "peak": None, "ratio": None,
        "note": f"peak extra {peak_bytes / 2**20:.0f} MiB = {peak_bytes / io:.2f} x (input + "
                f"output {io / 2**20:.0f} MiB); output alone {y.nbytes / 2**20:.0f} MiB "
                f"({seconds:.2f} s under tracemalloc)",
        "mem_ratio": peak_bytes / io,
    })
    progress(rows)


GROUPS: dict[str, Group] = {"cnn": bench_cnn, "small": bench_small, "large": bench_large,
          "image": bench_image, "filter": bench_filter, "memory": bench_memory}

"""``ndconv tour``: the whole lecture on real bundled data, as an HTML report.

Each section is a function ``(Tour) -> None`` that first imports the library
parts it needs (a missing part, ImportError or AttributeError there, skips the
section with a line saying so) and then computes, prints a short summary and
adds text, tables and figures to the report. Sections never download anything:
the data ship inside installed packages (scikit-image, PyWavelets, nibabel,
scikit-learn).

The report goes to ``--out DIR`` (refused if ``DIR/index.html`` exists, unless
``--force``) or, by default, to a fresh folder ``./ndconv-tour`` (then
``./ndconv-tour-2``, ``-3``, ... when that exists): earlier reports are never
overwritten. It is built in a temporary folder beside the target and moved
into place at the end, so a failed run leaves no half-written report.
"""

from __future__ import annotations

import html
import os
import shutil
import sys
import time

import numpy as np

from . import _parse
from ._errors import UsageError

HELP = "run the lecture on real bundled data and write an HTML report with figures"

EXAMPLES = """\
sections:
  1 why not an MLP (parameter counts)      5 1-D: an ECG (PyWavelets)
  2 the 2-D layer: 19 and the edge example 6 3-D: an MRI volume (nibabel)
  3 kernels on a photo (scikit-image)      7 invariance, locality; MLP vs CNN
  4 learning the kernel [1, -1] back       8 a CNN on the digits (scikit-learn)
Sections whose library parts are missing are skipped with a line saying so.

examples:
  ndconv tour                       report in ./ndconv-tour/ (or -2, -3, ... if taken)
  ndconv tour --quick               smaller data and training, under a minute
  ndconv tour --out report --force  replace report/index.html and its figures
"""

DEFAULT_OUT = "ndconv-tour"


class Skip(Exception):
    """A section's library parts are not available."""


def add_arguments(p):
    p.add_argument("--out", metavar="DIR", default=None,
                   help=f"report folder (default: a fresh ./{DEFAULT_OUT}, ./{DEFAULT_OUT}-2, ...)")
    p.add_argument("--quick", action="store_true",
                   help="smaller data and shorter training (under a minute)")
    p.add_argument("--force", action="store_true",
                   help="write into --out DIR even if it holds a report")
    p.add_argument("--sections", default=None, metavar="1,2,...",
                   help="run only these sections (default: all)")
    p.add_argument("--seed", type=_parse.seed, default=0, help="random seed (default 0)")


# --------------------------------------------------------------------------
# the report


class Tour:
    """What a section writes to: figures, text and the printed summary."""

    def __init__(self, folder, quick, seed, write):
        self.folder = folder
        self.quick = quick
        self.seed = seed
        self.write = write  # prints a line without breaking the progress bar
        self.blocks = []    # (kind, payload) for the current section
        self.figures = []

    def say(self, text):
        """A paragraph in the report, and a line on stdout."""
        self.blocks.append(("p", text))
        self.write("  " + text)

    def table(self, text):
        """Preformatted text (tables, sums) in the report and on stdout."""
        self.blocks.append(("pre", text))
        for line in text.splitlines():
            self.write("    " + line)

    def figure(self, fig, name, caption):
        """Save a matplotlib figure as NAME.png and add it to the report."""
        import matplotlib.pyplot as plt

        path = os.path.join(self.folder, name + ".png")
        fig.savefig(path, dpi=90, bbox_inches="tight")
        plt.close(fig)
        self.add_image(name + ".png", caption)

    def add_image(self, filename, caption):
        """Add an image already written into the report folder."""
        self.blocks.append(("img", (filename, caption)))
        self.figures.append(filename)
        self.write(f"  figure: {filename} ({caption})")


def _html(results, quick, total):
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<title>ndconv tour: from MLP to convolution</title>",
        "<style>body{font-family:sans-serif;max-width:62em;margin:auto;padding:1em}"
        "pre{background:#f4f4f4;padding:.5em;overflow-x:auto}img{max-width:100%}"
        ".skip{color:#a60}.fail{color:#b00}</style></head><body>",
        "<h1>ndconv tour: from MLP to convolution</h1>",
        f"<p>{'Quick' if quick else 'Full'} run, {total:.1f} s in all, on real data "
        "bundled in installed packages (nothing downloaded).</p>",
    ]
    for title, status, seconds, blocks in results:
        parts.append(f"<h2>{html.escape(title)}</h2>")
        if status != "ok":
            cls = "skip" if status.startswith("skipped") else "fail"
            parts.append(f"<p class='{cls}'>{html.escape(status)}</p>")
        for kind, payload in blocks:
            if kind == "p":
                parts.append(f"<p>{html.escape(payload)}</p>")
            elif kind == "pre":
                parts.append(f"<pre>{html.escape(payload)}</pre>")
            else:
                src, caption = payload
                parts.append(
                    f"<figure><img src='{html.escape(src)}' alt='{html.escape(caption)}'>"
                    f"<figcaption>{html.escape(caption)}</figcaption></figure>"
                )
        if status == "ok":
            parts.append(f"<p><small>{seconds:.1f} s</small></p>")
    parts.append("</body></html>")
    return "\n".join(parts)


# --------------------------------------------------------------------------
# helpers for figures


def _annotated(ax, a, title):
    """A small matrix as an image with its numbers written in."""
    a = np.atleast_2d(a)
    ax.imshow(a, cmap="viridis")
    if a.size <= 64:
        bright = (a.min() + a.max()) / 2  # viridis is light at the top: dark text there
        for (i, j), v in np.ndenumerate(a):
            ax.text(j, i, f"{v:g}", ha="center", va="center", fontsize=9,
                    color="k" if v > bright else "w")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def _gaussian_1d(sigma):
    r = int(np.ceil(3 * sigma))
    t = np.arange(-r, r + 1, dtype=np.float64)
    g = np.exp(-t * t / (2 * sigma * sigma))
    return g / g.sum()


# --------------------------------------------------------------------------
# the sections


def section_params(t):
    """1. Why not an MLP: parameter counts for a 12-megapixel photo."""
    try:
        from .. import plan
        from .params import parameter_table

        plan.lecture_table, plan.format_table  # noqa: B018  (present on main?)
    except (ImportError, AttributeError) as exc:
        raise Skip(f"ndconv.plan is not on main yet ({type(exc).__name__}: {exc})")
    text, rows = parameter_table()
    t.say("A 12-megapixel RGB photo has 36 million input values. A fully connected "
          "layer with 100 hidden units needs 3.6 billion weights; translation "
          "invariance and locality cut that to a few kernel weights.")
    t.table(text)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3))
    names = [r[0] for r in rows]
    counts = [max(r[1], 1) for r in rows]
    ax.barh(names, counts, color="tab:blue")
    ax.set_xscale("log")
    ax.set_xlabel("parameters (log scale)")
    ax.invert_yaxis()
    t.figure(fig, "1-params", "parameters of one layer on a 36M-element photo")


def section_layer(t):
    """2. The 2-D layer: the worked example (19) and the edge example."""
    from .. import correlate
    from .explain import Explainer

    X = np.arange(9.0).reshape(3, 3)
    K = np.array([[0.0, 1.0], [2.0, 3.0]])
    Y = correlate(X, K)
    ex = Explainer(X, K, 1, 0, 1, "zeros", 0.0)
    sums = "\n".join(ex.line(o) for o in np.ndindex(*ex.out_shape))
    t.say("The lecture's worked example: input [[0,1,2],[3,4,5],[6,7,8]], kernel "
          "[[0,1],[2,3]]. Each output is a sum of products (ndconv explain):")
    t.table(sums)
    E = np.ones((6, 8))
    E[:, 2:6] = 0
    D = correlate(E, [[1.0, -1.0]])
    DT = correlate(E.T, [[1.0, -1.0]])
    t.say(f"Edge detection: ones(6, 8) with columns 2..5 at 0, kernel [[1, -1]]: "
          f"every row of the 6x7 output is {D[0].astype(int).tolist()}; on the "
          f"transposed input the output is all zeros: {bool(np.all(DT == 0))} "
          "(this kernel only sees vertical edges).")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(9, 5.5))
    _annotated(axes[0, 0], X, "X (3x3)")
    _annotated(axes[0, 1], K, "K (2x2)")
    _annotated(axes[0, 2], Y, "Y = X * K (2x2)")
    _annotated(axes[1, 0], E, "X: a dark band (6x8)")
    _annotated(axes[1, 1], np.array([[1.0, -1.0]]), "K = [[1, -1]]")
    _annotated(axes[1, 2], D, "Y: +1 / -1 at the edges (6x7)")
    t.figure(fig, "2-layer", "the worked example and the edge example")


def section_photo(t):
    """3. Kernels on a real photo."""
    import skimage.data

    from .. import images, kernels

    cat = skimage.data.chelsea()
    coffee = skimage.data.coffee()
    if t.quick:  # every second pixel: a quarter of the work
        cat, coffee = cat[::2, ::2].copy(), coffee[::2, ::2].copy()
    gray = np.rint(cat @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
    t.say(f"scikit-image's chelsea ({cat.shape[1]}x{cat.shape[0]} RGB) filtered with "
          "the kernel bank (padding 'same', reflect border); colour kernels act on "
          "each channel alone, edge kernels on the gray image, shown as |y|.")
    same = images.filter_image(cat, kernels.get("identity"))
    t.say(f"Check: the identity kernel returns the photo exactly (max |difference| = "
          f"{int(np.abs(same.astype(int) - cat).max())}).")
    panels = [("original", cat, None, "clip")]
    for name in ("gaussian", "gaussian:3", "box:7", "motion:15", "sharpen", "emboss"):
        panels.append((name, cat, name, "rescale" if name == "emboss" else "clip"))
    for name in ("edge", "sobel-x", "sobel-y", "laplacian"):
        panels.append((name + " (gray, |y|)", gray, name, "abs"))
    rows = []
    out = []
    for title, img, name, rng in panels:
        if name is None:
            out.append((title, img))
            continue
        k = kernels.get(name)
        t0 = time.perf_counter()
        y = images.filter_image(img, k, padding="same", padding_mode="reflect",
                                value_range=rng)
        rows.append(f"{name:<12} {k.shape[0]:>2}x{k.shape[1]:<2} {rng:<8} "
                    f"{(time.perf_counter() - t0) * 1e3:7.1f} ms")
        out.append((title, y))
    # A 3 -> 3 colour-mixing kernel (1x1 spatial): the sepia matrix, on coffee.
    sepia = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168],
                      [0.272, 0.534, 0.131]])[:, :, None, None]
    y = images.filter_image(coffee, sepia)
    out.append(("coffee, 3->3 sepia mix", y))
    rows.append(f"{'sepia 3->3':<12}  1x1  clip     (coffee, mixing channels)")
    t.table("kernel        size  range     time\n" + "\n".join(rows))
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 4, figsize=(12, 7))
    for ax, (title, img) in zip(axes.flat, out):
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    t.figure(fig, "3-kernels", "the kernel bank on scikit-image's chelsea and coffee")


def section_learn(t):
    """4. Learning the edge kernel back from data."""
    from .learn_kernel import learn_edge_kernel

    losses, k, _, _ = learn_edge_kernel(iterations=10, lr=3e-2, seed=t.seed)
    t.say("Conv2d(1, 1, kernel_size=(1, 2), bias=False) from a random start, sum of "
          "squared errors, gradient descent with lr 0.03 for 10 iterations (the book):")
    t.table("\n".join(f"iteration {i}: loss {v:.4f}" for i, v in enumerate(losses, 1)
                      if i % 2 == 0))
    t.say(f"Learnt kernel [[{k[0, 0]:.4f}, {k[0, 1]:.4f}]]; the true one is [[1, -1]] "
          "(the book's reference run printed [[0.9895, -0.9874]]).")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3))
    a.semilogy(range(1, len(losses) + 1), losses, "o-")
    a.set_xlabel("iteration")
    a.set_ylabel("loss (sum of squares)")
    a.set_title("the loss falls ~10x every 2 iterations", fontsize=9)
    b.bar(["k[0]", "k[1]"], k.ravel(), color="tab:orange", label="learnt")
    b.plot(["k[0]", "k[1]"], [1, -1], "kx", ms=12, label="true")
    b.axhline(0, color="k", lw=0.5)
    b.legend()
    b.set_title("the learnt kernel", fontsize=9)
    t.figure(fig, "4-learn", "learning the kernel [1, -1] back")


def section_ecg(t):
    """5. 1-D: convolution on a real ECG."""
    import pywt.data

    from .. import conv1d

    ecg = np.asarray(pywt.data.ecg(), dtype=np.float64)
    x = ecg[None]  # (C=1, L)
    g = _gaussian_1d(4.0)
    smooth = conv1d(x, g[None, None], padding="same", padding_mode="replicate")[0]
    d = conv1d(smooth[None], np.array([[[-0.5, 0.0, 0.5]]]), padding="same",
               padding_mode="replicate")[0]
    ref = np.correlate(np.pad(ecg, len(g) // 2, mode="edge"), g, mode="valid")
    t.say(f"PyWavelets' ECG ({ecg.size} samples) smoothed with a Gaussian "
          f"(sigma 4 samples, {g.size} taps, replicate border) and differentiated with "
          "[-1/2, 0, 1/2] (a central difference), both with ndconv.conv1d.")
    t.say(f"Check against numpy.correlate: max |difference| = "
          f"{np.abs(smooth - ref).max():.2e}. Smoothing removes high-frequency noise of std "
          f"{np.std(ecg - smooth):.2f}; the steepest slope (the R waves) is "
          f"{np.abs(d).max():.2f} per sample.")
    import matplotlib.pyplot as plt

    time_s = np.arange(ecg.size)
    fig, axes = plt.subplots(3, 1, figsize=(10, 5.5), sharex=True)
    axes[0].plot(time_s, ecg, lw=0.8)
    axes[0].set_title("ECG (pywt.data.ecg)", fontsize=9)
    axes[1].plot(time_s, smooth, lw=0.8, color="tab:green")
    axes[1].set_title("smoothed: Gaussian kernel, sigma 4", fontsize=9)
    axes[2].plot(time_s, d, lw=0.8, color="tab:red")
    axes[2].set_title("derivative: kernel [-1/2, 0, 1/2]", fontsize=9)
    axes[2].set_xlabel("sample")
    t.figure(fig, "5-ecg", "1-D convolution on an ECG")


def section_mri(t):
    """6. 3-D: convolution on a real MRI volume."""
    import nibabel

    from .. import conv3d

    path = os.path.join(os.path.dirname(nibabel.__file__), "tests", "data", "anatomical.nii")
    if not os.path.exists(path):
        raise Skip(f"nibabel's bundled anatomical.nii is missing ({path})")
    vol = np.asarray(nibabel.load(path).get_fdata(), dtype=np.float64)
    g = _gaussian_1d(1.0)
    blur_k = g[:, None, None] * g[None, :, None] * g[None, None, :]
    lap = np.zeros((3, 3, 3))
    lap[1, 1, :] = lap[1, :, 1] = lap[:, 1, 1] = 1
    lap[1, 1, 1] = -6
    x = vol[None]
    blur = conv3d(x, blur_k[None, None], padding="same", padding_mode="replicate")[0]
    edges = np.abs(conv3d(blur[None], lap[None, None], padding="same",
                          padding_mode="replicate")[0])
    t.say(f"nibabel's bundled MRI volume anatomical.nii, shape {vol.shape}, blurred "
          f"with a 3-D Gaussian ({blur_k.shape[0]}x{blur_k.shape[1]}x{blur_k.shape[2]}, "
          "sigma 1) and then a 3-D Laplacian (the 7-point stencil), with ndconv.conv3d.")
    try:
        from scipy import ndimage

        ref = ndimage.correlate(vol, blur_k, mode="nearest")
        t.say(f"Check against scipy.ndimage.correlate: max |difference| = "
              f"{np.abs(ref - blur).max():.2e}.")
    except ImportError:
        t.say("(SciPy is not installed; the check against scipy.ndimage is skipped.)")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 3, figsize=(8, 8))
    mid = [s // 2 for s in vol.shape]
    for r, (name, v) in enumerate([("volume", vol), ("3-D Gaussian", blur),
                                   ("|3-D Laplacian|", edges)]):
        for c in range(3):
            sl = np.take(v, mid[c], axis=c)
            axes[r, c].imshow(np.rot90(sl), cmap="gray")
            axes[r, c].set_title(f"{name}, axis {c} slice {mid[c]}", fontsize=8)
            axes[r, c].axis("off")
    t.figure(fig, "6-mri", "3-D convolution on an MRI volume, middle slices")


def section_properties(t):
    """7. Translation invariance and locality; MLP vs locally connected vs CNN."""
    try:
        from .. import nn, properties
        from ..nn import Conv2d, FullyConnected, LocallyConnected2d  # noqa: F401
        check_tr = properties.translation_equivariance
        check_loc = properties.locality
    except (ImportError, AttributeError) as exc:
        raise Skip(f"ndconv.properties / the layers are not on main yet "
                   f"({type(exc).__name__}: {exc})")
    import skimage.data

    n = 12 if t.quick else 16
    cam = skimage.data.camera()
    x = (cam[200:200 + 4 * n:4, 220:220 + 4 * n:4] / 255.0)[None, None]  # (1, 1, n, n)
    rng = np.random.default_rng(t.seed)
    f64 = np.float64
    layers = [
        ("fully connected", nn.FullyConnected((1, n, n), (4, n, n), dtype=f64, rng=rng)),
        ("locally connected 3x3",
         nn.LocallyConnected2d(1, 4, 3, input_size=(n, n), padding=1, dtype=f64, rng=rng)),
        ("convolution 3x3, zeros", nn.Conv2d(1, 4, 3, padding=1, dtype=f64, rng=rng)),
        ("convolution 3x3, circular",
         nn.Conv2d(1, 4, 3, padding=1, padding_mode="circular", dtype=f64, rng=rng)),
    ]
    rows = [f"{'layer':<26} {'params':>8}  {'shift (2, 3): f(shift x) = shift f(x)':<40} locality (3x3)"]
    grads = []
    mid = (n // 2, n // 2)
    window = tuple(np.arange(m - 1, m + 2) for m in mid)
    for name, layer in layers:
        # A fully connected layer has no interior away from the border (its
        # field is the whole input), so it is checked with circular shifts.
        boundary = "circular" if ("circular" in name or "fully" in name) else "zeros"
        tr = check_tr(layer, x, shift=(2, 3), boundary=boundary)
        # Locality against the 3x3 window the principle allows (the layer's own
        # receptive field would make a fully connected layer pass trivially).
        loc = check_loc(layer, x, out_index=mid, region=window)
        verdict = lambda r: f"{'holds' if r else 'FAILS'} (max error {r.max_error:.2g})"
        rows.append(f"{name:<26} {layer.num_parameters():>8,}  "
                    f"{verdict(tr) + ', ' + boundary:<40} {verdict(loc)}")
        # |d y[0, mid] / d x|: which inputs one output element depends on.
        y = layer(x)
        g = np.zeros_like(y)
        g[(0, 0) + mid] = 1.0
        layer.zero_grad()
        grads.append((name, np.abs(layer.backward(g))[0, 0]))
        layer.zero_grad()
    t.say(f"Both principles checked on a {n}x{n} patch of scikit-image's camera "
          "image (ndconv.properties): translation equivariance (circular shifts "
          "everywhere, or the interior with zero padding) and locality (the gradient "
          "of the middle output is exactly zero outside the 3x3 window around it).")
    t.table("\n".join(rows))
    try:
        from .. import experiments

        plot_experiment, table = experiments.plot, experiments.format_table
    except (ImportError, AttributeError) as exc:
        t.say(f"The MLP vs locally connected vs CNN experiment is skipped: "
              f"ndconv.experiments is not on main yet ({type(exc).__name__}: {exc}).")
    else:
        # The same budget for the three networks. The full tour runs the
        # experiment as its module reports it (compare: digits and faces, 30
        # epochs); --quick trains 2 epochs on the first 500 digits.
        if t.quick:
            rows = experiments.run("digits", epochs=2, limit=500, seed=t.seed)
            what = "2 epochs on the first 500 digits"
        else:
            rows = experiments.compare(quick=False, seed=t.seed)
            what = (f"{rows[0]['epochs']} epochs on "
                    + " and ".join(dict.fromkeys(r["dataset"] for r in rows)))
        t.say("MLP vs locally connected vs CNN (ndconv.experiments): the same optimizer, "
              f"learning rate and budget, {what}, tested on the test set and on it "
              "shifted by 1 and 2 pixels:")
        t.table(table(rows))
        path = os.path.join(t.folder, "7-experiment.png")
        plot_experiment(rows, path)
        t.add_image("7-experiment.png", "accuracy against shift: MLP, locally connected, CNN")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(grads) + 1, figsize=(3 * (len(grads) + 1), 3))
    axes[0].imshow(x[0, 0], cmap="gray")
    axes[0].set_title("input patch", fontsize=9)
    for ax, (name, gmap) in zip(axes[1:], grads):
        ax.imshow(gmap, cmap="magma")
        ax.plot(mid[1], mid[0], "c+", ms=10)
        ax.set_title(f"{name}:\n|d y[mid] / d x|", fontsize=9)
    for ax in axes:
        ax.axis("off")
    t.figure(fig, "7-properties", "which inputs the middle output depends on (locality)")


def section_digits(t):
    """8. A CNN trained on the digits."""
    try:
        from .. import data, evaluate, fit  # noqa: F401
        from ..nn import Conv2d, Linear, MaxPool2d  # noqa: F401
        from .train import train_digits
    except (ImportError, AttributeError) as exc:
        raise Skip(f"ndconv.train / ndconv.data / the layers are not on main yet "
                   f"({type(exc).__name__}: {exc})")
    epochs = 2 if t.quick else 20  # as `ndconv train` and examples/train_digits.py
    r = train_digits(epochs=epochs, seed=t.seed, progress=sys.stderr.isatty())
    h, model, split = r["history"], r["model"], r["split"]
    n = split.y_test.size
    t.say(f"scikit-learn's 1797 handwritten 8x8 digits, {split.y_train.size} for training "
          f"and {n} held out; the CNN {model[0]} - ReLU - MaxPool - {model[3]} - ReLU - "
          f"MaxPool - Linear - ReLU - Linear ({model.num_parameters():,} parameters), "
          f"Adam, {epochs} epochs in {r['seconds']:.1f} s.")
    t.table("\n".join(
        f"epoch {e + 1:2d}  loss {h['loss'][e]:.4f}  train acc {h['accuracy'][e]:.3f}  "
        f"test acc {h['val_accuracy'][e]:.3f}" for e in range(len(h["loss"]))))
    t.say(f"Test accuracy {r['accuracy']:.4f} ({round(r['accuracy'] * n)}/{n}).")
    import matplotlib.pyplot as plt

    ep = np.arange(1, len(h["loss"]) + 1)
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3))
    a.plot(ep, h["loss"], "o-", label="train")
    a.plot(ep, h["val_loss"], "s--", label="test")
    a.set_xlabel("epoch")
    a.set_ylabel("cross-entropy")
    a.legend()
    b.plot(ep, h["accuracy"], "o-", label="train")
    b.plot(ep, h["val_accuracy"], "s--", label="test")
    b.set_xlabel("epoch")
    b.set_ylabel("accuracy")
    b.legend()
    t.figure(fig, "8-curves", "learning curves of the digits CNN")
    w = model[0].weight.data[:, 0]  # (16, 3, 3)
    digit = split.x_test[:1]
    maps = model[1](model[0](digit))[0]  # after the first convolution and ReLU
    fig, axes = plt.subplots(3, 16, figsize=(16, 3.4))
    for i in range(16):
        axes[0, i].imshow(w[i], cmap="bwr", vmin=-abs(w).max(), vmax=abs(w).max())
        axes[1, i].imshow(maps[i], cmap="viridis")
        axes[2, i].axis("off")
        axes[0, i].axis("off")
        axes[1, i].axis("off")
    axes[2, 0].imshow(digit[0, 0], cmap="gray_r")
    axes[2, 0].set_title(f"input: {split.y_test[0]}", fontsize=8)
    axes[0, 0].set_title("learnt 3x3 kernels", fontsize=8, loc="left")
    axes[1, 0].set_title("feature maps", fontsize=8, loc="left")
    t.figure(fig, "8-kernels", "first-layer kernels and their feature maps on a test digit")


SECTIONS = [
    ("1. Why not an MLP", section_params),
    ("2. The 2-D convolutional layer", section_layer),
    ("3. Kernels on a real photo", section_photo),
    ("4. Learning a kernel back from data", section_learn),
    ("5. 1-D: an ECG", section_ecg),
    ("6. 3-D: an MRI volume", section_mri),
    ("7. Translation invariance, locality, and MLP vs CNN", section_properties),
    ("8. A CNN on the digits", section_digits),
]


# --------------------------------------------------------------------------
# the command


def _target(args):
    """The report folder, checked before any work; ``(path, exists)``."""
    if args.out is None:
        path, i = DEFAULT_OUT, 1
        while os.path.lexists(path):  # a fresh name: never touch an old report
            i += 1
            path = f"{DEFAULT_OUT}-{i}"
        exists = False
    else:
        path = args.out
        exists = os.path.isdir(path)
        if os.path.lexists(path) and not exists:
            raise UsageError(f"--out {path!r} exists and is not a folder")
        if os.path.exists(os.path.join(path, "index.html")) and not args.force:
            raise UsageError(
                f"--out {path!r} already holds a report (index.html); use --force to "
                "replace it or choose another folder"
            )
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UsageError(f"the folder above --out {path!r} does not exist: {parent!r}")
    if not os.access(exists and path or parent, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write the report: {path if exists else parent!r} is not writable")
    return path, exists


def _select(text):
    if text is None:
        return list(range(1, len(SECTIONS) + 1))
    try:
        chosen = sorted({int(p) for p in text.split(",") if p.strip()})
    except ValueError:
        chosen = []
    if not chosen or any(not 1 <= c <= len(SECTIONS) for c in chosen):
        raise UsageError(f"--sections {text!r} must be numbers from 1 to {len(SECTIONS)}, "
                         "comma-separated")
    return chosen


def run(args):
    chosen = _select(args.sections)
    path, exists = _target(args)
    import matplotlib

    matplotlib.use("Agg")
    from tqdm import tqdm

    from .._files import temp_dir

    tmp = temp_dir(path)  # .NAME.ndconv-HOST-PID-RANDOM.part: stale ones are cleaned
    try:
        status = _run_sections(args, chosen, tmp, tqdm)
        results, failed, total = status
        with open(os.path.join(tmp, "index.html"), "w", encoding="utf-8") as f:
            f.write(_html(results, args.quick, total))
        _publish(tmp, path, exists)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    ran = sum(1 for _, s, _, _ in results if s == "ok")
    skipped = sum(1 for _, s, _, _ in results if s.startswith("skipped"))
    print(f"tour: {ran} sections ran, {skipped} skipped, {failed} failed in "
          f"{total:.1f} s; report: {os.path.join(path, 'index.html')}")
    return 1 if failed else 0


def _run_sections(args, chosen, folder, tqdm):
    write = tqdm.write
    t = Tour(folder, args.quick, args.seed, lambda s: write(s, file=sys.stdout))
    results = []
    failed = 0
    start = time.perf_counter()
    bar = tqdm(chosen, desc="tour", unit="section", file=sys.stderr, leave=False,
               disable=None)  # a bar on a terminal only, not in logs
    for i in bar:
        title, fn = SECTIONS[i - 1]
        bar.set_postfix_str(title.split(". ", 1)[1][:30])
        write(title, file=sys.stdout)
        t.blocks = []
        t0 = time.perf_counter()
        try:
            fn(t)
            status = "ok"
        except Skip as exc:
            status = f"skipped: {exc}"
            write(f"  {status}", file=sys.stdout)
        except Exception as exc:  # one broken section must not lose the others
            if getattr(args, "debug", False):
                raise
            failed += 1
            status = f"failed: {type(exc).__name__}: {exc}"
            write(f"  {status}", file=sys.stdout)
        seconds = time.perf_counter() - t0
        if status == "ok":
            write(f"  ({seconds:.1f} s)", file=sys.stdout)
        results.append((title, status, seconds, list(t.blocks)))
    bar.close()
    return results, failed, time.perf_counter() - start


def _publish(tmp, path, exists):
    """Move the finished report from the temporary folder into ``path``
    (synced first; a new folder never replaces one that appeared meanwhile)."""
    from .._files import OutputExistsError, publish_dir

    try:
        publish_dir(tmp, path, merge=exists)
    except OutputExistsError as exc:
        raise UsageError(str(exc)) from None

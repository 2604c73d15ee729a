"""6. Kernels on a photo: the lecture's edge, sharpen and blur, and a few from the bank."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from ._figures import pyplot
from ._page import esc

if TYPE_CHECKING:
    from ._page import Section


TITLE = "Kernels on a photo"

#: (kernel name, what it is, on the grey image?, output range)
PANELS = [
    ("edge", "the lecture's edge detector", True, "abs"),
    ("sharpen", "the lecture's sharpen", False, "clip"),
    ("gaussian", "the lecture's Gaussian blur, 1/16", False, "clip"),
    ("gaussian:3", "Gaussian, σ = 3 pixels (19×19)", False, "clip"),
    ("sobel-x", "Sobel x: brighter to the right", True, "abs"),
    ("emboss", "emboss", True, "rescale"),
    ("motion:15", "motion blur, 15 px diagonal", False, "clip"),
]


def steps(quick: bool) -> int:
    return len(PANELS) + 1


def run(s: Section) -> None:
    import skimage.data

    from .. import images
    from ..images import kernels

    cat = skimage.data.chelsea()
    if s.quick:  # every second pixel: a quarter of the work
        cat = cat[::2, ::2].copy()
    gray = np.rint(cat @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
    s.p(f"The lecture shows three kernels on a photo. Here they are, and a few more from "
        f"<code>ndconv.kernels</code>, on scikit-image's <em>chelsea</em> "
        f"({cat.shape[1]}&times;{cat.shape[0]} pixels, RGB), filtered by "
        "<code>ndconv.images.filter_image</code> with padding 'same' and a <b>reflect</b> "
        "border (the image mirrored at its edge, so no dark frame appears). Colour kernels "
        "act on each channel alone; the edge kernels act on the grey image and show |y|.")
    rows, out = [], [("original", cat)]
    for name, what, on_gray, rng in PANELS:
        k = kernels.get(name)
        t0 = time.perf_counter()
        y = images.filter_image(gray if on_gray else cat, k, padding="same",
                                padding_mode="reflect", value_range=rng)
        ms = (time.perf_counter() - t0) * 1e3
        shown = (str([[float(f"{v:.4g}") for v in r] for r in k]).replace(".0,", ",")
                 .replace(".0]", "]") if k.size <= 9
                 else f"{k.shape[0]}×{k.shape[1]}, sums to {k.sum():.3g}")
        rows.append([name, what, shown, "grey, |y|" if rng == "abs" else
                     "grey, min..max" if rng == "rescale" else "RGB", f"{ms:.0f} ms"])
        out.append((name, y))
        s.step(name)
    s.table(["kernel", "what", "weights", "on", "time"], rows, numeric={4},
            caption="The kernels (ndconv.kernels.get) and the time each took in this run "
                    "(the first includes compiling the numba kernel, where installed)",
            testid="kernels-table")
    plt = pyplot()
    fig, axes = plt.subplots(2, 4, figsize=(8.8, 3.9))
    for ax, (title, img) in zip(axes.flat, out):
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255,
                  interpolation="antialiased")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.subplots_adjust(wspace=0.04, hspace=0.18)
    s.figure(fig, "kernels",
             "Eight versions of a photo of a cat: the original, edges (white outlines on "
             "black), sharpened, slightly and strongly blurred, horizontal Sobel edges, "
             "embossed grey relief and a diagonal motion blur.",
             f"chelsea filtered with each kernel ({esc(cat.shape[1])}×{esc(cat.shape[0])}, "
             "reflect border).")
    s.step("figure")

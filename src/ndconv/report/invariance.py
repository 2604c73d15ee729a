"""3. Translation invariance, seen: shift the input, compare the outputs (``ndconv.properties``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..images import kernels
from ..lecture import properties
from ._figures import camera_crop, pyplot
from ._page import esc, num

if TYPE_CHECKING:
    from ..core._typing import NDArray
    from ..nn.module import Module
    from ._page import Section


TITLE = "Translation invariance, seen"

CROP = (slice(96, 224, 4), slice(200, 328, 4))  # camera, every 4th pixel: the man's head
SHIFT = (3, 5)


def steps(quick: bool) -> int:
    return 3


def _layers(n: int, kernel: NDArray[Any], rng: np.random.Generator,
            ) -> list[tuple[str, Module, str]]:
    """Three layers that all compute 'the edge kernel', obeying fewer principles."""
    from ..lecture import derive
    from .. import nn

    f64 = np.float64
    conv = nn.Conv2d(1, 1, 3, padding=1, padding_mode="circular", bias=False, dtype=f64)
    conv.weight.data[...] = kernel
    conv_z = nn.Conv2d(1, 1, 3, padding=1, bias=False, dtype=f64)
    conv_z.weight.data[...] = kernel
    # Locality only: a 3x3 kernel per position, each the edge kernel with its own
    # gains (what training leaves when nothing ties the positions together).
    local = nn.LocallyConnected2d(1, 1, 3, input_size=(n, n), padding=1, bias=False, dtype=f64)
    gain = 1 + 0.5 * rng.standard_normal((n, n, 1, 1))
    local.weight.data[...] = (kernel[None, None, None] * gain[None, :, :, None])
    # Neither principle: the conv's dense weight plus small weights everywhere.
    fc = nn.FullyConnected((1, n, n), (1, n, n), bias=False, dtype=f64)
    dense = derive.conv_to_dense(kernel[None, None], (1, n, n), padding=1,
                                 padding_mode="circular")
    fc.weight.data[...] = dense + 0.02 * rng.standard_normal(dense.shape)
    return [("convolution, circular padding", conv, "circular"),
            ("convolution, zero padding", conv_z, "zeros"),
            ("locally connected 3×3", local, "circular"),
            ("fully connected", fc, "circular")]


def run(s: Section) -> None:
    x = camera_crop(*CROP)[None, None]
    n = x.shape[-1]
    kernel = kernels.get("edge")
    layers = _layers(n, kernel, np.random.default_rng(s.seed))
    s.p(f"Translation invariance says: move the input, and the output moves with it. "
        f"Take a {n}&times;{n} thumbnail of scikit-image's <em>camera</em> photo, shift it "
        f"by {SHIFT[0]} rows and {SHIFT[1]} columns (wrapping around), and compare "
        "<i>layer</i>(<i>shift</i>(<i>x</i>)) with <i>shift</i>(<i>layer</i>(<i>x</i>)) for "
        "layers that all apply the lecture's edge kernel "
        f"{esc(kernel.astype(int).tolist())}: a convolution; a locally connected layer whose "
        "kernel at each position is that kernel with its own gain (mean 1, spread 0.5), "
        "as it could come out of training; and a fully connected layer that is the "
        "convolution's dense weight plus small weights (0.02) from every pixel.")
    s.step("layers")
    rows, panels = [], []
    for name, layer, boundary in layers:
        r: Any  # a CheckResult here, a row number below
        r = properties.translation_equivariance(layer, x, shift=SHIFT, boundary=boundary)
        y = layer(x)[0, 0]
        if boundary == "circular":
            ys = layer(np.roll(x, SHIFT, axis=(2, 3)))[0, 0]
            sy = np.roll(y, SHIFT, axis=(0, 1))
        else:
            xs = np.zeros_like(x)
            xs[..., SHIFT[0]:, SHIFT[1]:] = x[..., :n - SHIFT[0], :n - SHIFT[1]]
            ys = layer(xs)[0, 0]
            sy = np.zeros_like(y)
            sy[SHIFT[0]:, SHIFT[1]:] = y[:n - SHIFT[0], :n - SHIFT[1]]
        where = "every output" if boundary == "circular" else (
            f"the interior ({r.compared} of {y.size} outputs, away from the zero border)")
        rows.append([name, num(layer.num_parameters()),
                     "circular shift" if boundary == "circular" else "shift with zero fill",
                     where, f"{r.max_error:.3g}", "holds" if r else "fails"])
        panels.append((name, y, ys, sy, ys - sy))
    s.step("measured")
    s.table(["layer", "parameters", "shift", "compared on", "worst |layer(shift x) − "
             "shift(layer x)|", "equivariance"], rows, numeric={1, 4},
            caption=f"Measured with ndconv.properties.translation_equivariance, shift "
                    f"{SHIFT}", testid="invariance-table")
    conv_err = float(rows[0][4])
    s.p(f"For the convolution with circular padding the two agree <strong>exactly</strong> "
        f"(worst difference {conv_err:g}): every output uses the same weights, so moving the "
        "input only moves which output sees which pixels. With zero padding they agree "
        "exactly away from the border, where the shifted-in zeros enter. The other two "
        "layers produce outputs that look much the same, but they do not move with the "
        "input: what they compute depends on where in the image it happens.")
    plt = pyplot()
    rows_n = len(panels) + 1
    fig, axes = plt.subplots(rows_n, 5, figsize=(8.8, 1.75 * rows_n),
                             gridspec_kw={"width_ratios": [0.9, 1, 1, 1, 1]})
    ylim = max(np.abs(p[k]).max() for p in panels for k in (1, 2, 3))
    dlim = max(max(np.abs(p[4]).max() for p in panels), 1e-12)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for c in (0, 3, 4):
        axes[0, c].set_visible(False)
    axes[0, 1].imshow(x[0, 0], cmap="gray", vmin=0, vmax=1)
    axes[0, 1].set_title("input x")
    axes[0, 2].imshow(np.roll(x[0, 0], SHIFT, axis=(0, 1)), cmap="gray", vmin=0, vmax=1)
    axes[0, 2].set_title(f"shift(x), by {SHIFT}")
    for r, (name, y, ys, sy, d) in enumerate(panels, 1):
        axes[r, 0].axis("off")
        axes[r, 0].text(1.0, 0.5, name.replace(", ", ",\n"), ha="right", va="center",
                        fontsize=9, transform=axes[r, 0].transAxes)
        for c, (a, t) in enumerate([(y, "layer(x)"), (ys, "layer(shift x)"),
                                    (sy, "shift(layer x)")], 1):
            im = axes[r, c].imshow(a, cmap="RdBu_r", vmin=-ylim, vmax=ylim)
            if r == 1:
                axes[r, c].set_title(t)
        imd = axes[r, 4].imshow(d, cmap="PuOr", vmin=-dlim, vmax=dlim)
        if r == 1:
            axes[r, 4].set_title("difference")
        axes[r, 4].set_xlabel(f"worst {np.abs(d).max():.2g}", fontsize=9)
    fig.subplots_adjust(wspace=0.06, hspace=0.32, right=0.88)
    cax = fig.add_axes([0.9, 0.42, 0.014, 0.3])
    fig.colorbar(im, cax=cax).set_label("output")
    cax = fig.add_axes([0.9, 0.08, 0.014, 0.3])
    fig.colorbar(imd, cax=cax).set_label("difference")
    s.figure(fig, "shift",
             "A grid of images: for each of four layers (rows), its output on the input, "
             "on the shifted input, the shifted output, and the difference of the last two. "
             "The difference is blank (zero) for the circular convolution, zero except at the "
             "border for the zero-padded one, and speckled for the locally and fully "
             "connected layers.",
             f"Shift by {SHIFT}: one colour scale for all outputs, one for all differences, "
             "so a blank difference panel is exactly zero.")
    s.step("figure")

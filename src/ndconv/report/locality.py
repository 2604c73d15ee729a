"""4. Locality, seen: which inputs one output depends on (``ndconv.properties.locality``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .. import nn
from ..lecture import plan, properties
from ._figures import camera_crop, colorbar, pyplot
from ._page import num

if TYPE_CHECKING:
    from ._page import Section


TITLE = "Locality, seen"

CROP = (slice(96, 224, 8), slice(200, 328, 8))  # camera, 16x16


def steps(quick: bool) -> int:
    return 3


def run(s: Section) -> None:
    x = camera_crop(*CROP)[None, None]
    n = x.shape[-1]
    rng = np.random.default_rng(s.seed)
    f64 = np.float64
    layers = [
        ("convolution 3×3", nn.Conv2d(1, 1, 3, padding=1, dtype=f64, rng=rng)),
        ("two 3×3 convolutions", nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1, dtype=f64, rng=rng), nn.ReLU(),
            nn.Conv2d(4, 1, 3, padding=1, dtype=f64, rng=rng))),
        ("locally connected 3×3",
         nn.LocallyConnected2d(1, 1, 3, input_size=(n, n), padding=1, dtype=f64, rng=rng)),
        ("fully connected", nn.FullyConnected((1, n, n), (1, n, n), dtype=f64, rng=rng)),
    ]
    mid = (n // 2, n // 2)
    window = tuple(np.arange(i - 1, i + 2) for i in mid)
    s.p(f"Locality says: an output looks only at inputs near its own position. Measure it: "
        f"on a {n}&times;{n} thumbnail of the <em>camera</em> photo, take the middle output "
        f"<i>y</i>[{mid[0]}, {mid[1]}] of four layers (random initial weights) and compute its "
        "gradient with respect to every input pixel by backpropagation (the layer's own "
        "<code>backward</code>). An input outside the receptive field cannot change the "
        "output, so its gradient must be exactly zero.")
    s.step("layers")
    rows, maps = [], []
    for name, layer in layers:
        field = plan.receptive_region(layer, x.shape[1:], mid)
        r = properties.locality(layer, x, mid, region=field)
        # The principle with Delta = 1: nothing outside the 3x3 window around the output.
        r3 = properties.locality(layer, x, mid, region=window)
        y = layer(x)
        g = np.zeros_like(y)
        g[(0, 0) + tuple(mid)] = 1.0  # (mypy reads (0, 0, *mid) in [] as 3.11-only syntax)
        grad = np.abs(layer.backward(g)[0, 0])
        layer.zero_grad()
        size = "×".join(str(len(f)) for f in field)
        inside = np.zeros((n, n), bool)
        inside[np.ix_(*field)] = True
        rows.append([name, num(layer.num_parameters()), size,
                     f"{int(np.count_nonzero(grad))} of {n * n}",
                     f"{r.max_error:g}", f"{r3.max_error:.3g}", "holds" if r3 else "fails"])
        maps.append((name, grad, field, size))
    s.step("gradients")
    s.table(["layer", "parameters", "receptive field (ndconv.plan)",
             "inputs with non-zero gradient", "max |gradient| outside the field",
             "max |gradient| outside the 3×3 window", "local with Δ = 1"],
            rows, numeric={1, 3, 4, 5}, caption="Measured with ndconv.properties.locality",
            testid="locality-table")
    s.p("Every layer's gradient is exactly zero outside its receptive field, as computed "
        "by <code>ndconv.plan</code> from the hyper-parameters. The lecture's locality with "
        "&Delta; = 1 asks more: nothing outside the 3&times;3 window. The convolution and "
        "the locally connected layer meet it (locality does not need tied weights); "
        "stacking two 3&times;3 layers grows the field to 5&times;5; the fully connected "
        "layer's field is the whole image, so every pixel moves the output.")
    plt = pyplot()
    fig, axes = plt.subplots(1, len(maps) + 1, figsize=(8.8, 2.3))
    axes[0].imshow(x[0, 0], cmap="gray", vmin=0, vmax=1)
    axes[0].plot(mid[1], mid[0], "r+", ms=10, mew=1.5)
    axes[0].set_title("input")
    for ax, (name, grad, field, size) in zip(axes[1:], maps):
        im = ax.imshow(grad, cmap="magma", vmin=0)
        r0, c0 = field[0][0], field[1][0]
        ax.add_patch(plt.Rectangle((c0 - 0.5, r0 - 0.5), len(field[1]), len(field[0]),
                                   fill=False, ec="cyan", lw=1))
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(f"field {size}", fontsize=9)
        colorbar(fig, im, ax).ax.tick_params(labelsize=7)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.subplots_adjust(wspace=0.5)
    s.figure(fig, "gradient",
             "Five small images: the input thumbnail with a red cross at the middle, then "
             "for each of four layers a heat map of the absolute gradient of the middle "
             "output with respect to each input pixel, with a cyan box around the receptive "
             "field: a 3x3 and a 5x5 patch for the convolutions, 3x3 for the locally "
             "connected layer, the whole image for the fully connected one.",
             "|∂y[mid] / ∂x| per input pixel (black = exactly zero); the cyan box is the "
             "receptive field that ndconv.plan computes from the layer's hyper-parameters.")
    s.step("figure")

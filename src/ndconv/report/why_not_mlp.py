"""1. Why not an MLP: what one fully connected layer on a photo costs (``ndconv.plan``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..lecture import plan
from ._figures import pyplot
from ._page import esc, num

if TYPE_CHECKING:
    from ._page import Section


TITLE = "Why not an MLP"


def steps(quick: bool) -> int:
    return 2


def run(s: Section) -> None:
    rows = plan.lecture_table()
    C, H, W = plan.LECTURE_INPUT
    fc = rows[0]
    s.p(f"A camera photo of 12 megapixels in colour is {C} &times; {num(H)} &times; "
        f"{num(W)} = <strong>{num(C * H * W)}</strong> numbers. An MLP treats it as one long "
        f"vector: a fully connected layer into {num(plan.LECTURE_HIDDEN)} hidden units "
        f"needs one weight per (input, hidden unit) pair, <strong>{num(fc.weights)}</strong> "
        f"weights, {esc(plan.format_bytes(fc.nbytes('float32')))} in float32 for this one "
        "layer. The lecture's two principles, translation invariance and locality, bring "
        "that down to a handful of kernel weights:")
    names = {0: "fully connected, 100 hidden units",
             1: "fully connected, into a 100-channel image",
             2: "locally connected, 100 channels, 3×3 (locality)",
             3: "convolution, 100 channels, 3×3 (both principles)"}
    body = []
    for i, r in enumerate(rows):
        rf = "×".join(map(str, r.receptive_field)) if r.receptive_field else "?"
        body.append([names.get(i, r.name), "×".join(map(str, r.out_shape)), num(r.weights),
                     num(r.params), plan.format_bytes(r.nbytes("float32")), rf])
    s.table(["layer on a 3×3000×4000 photo", "output", "weights", "parameters",
             "float32", "receptive field"], body, numeric={2, 3, 4},
            caption="One layer's cost, computed from the hyper-parameters by ndconv.plan "
                    "(nothing allocated)", testid="params-table")
    s.step("parameter table")
    ratio = rows[0].params / rows[-1].params
    s.p(f"The convolution has {num(rows[-1].params)} parameters: {ratio:,.0f} times fewer "
        "than the MLP's first layer, although it outputs a whole 100-channel image "
        "rather than 100 numbers. Even the locally connected layer, which keeps one "
        f"3×3 kernel per pixel, needs {esc(plan.format_bytes(rows[2].nbytes('float32')))}.")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8.6, 2.6))
    labels = [names.get(i, r.name) for i, r in enumerate(rows)]
    counts = np.array([r.params for r in rows], dtype=float)
    colors = ["#c0392b", "#e67e22", "#8e44ad", "#1f77b4"]
    ax.barh(range(len(rows)), counts, color=colors[:len(rows)])
    ax.set_yticks(range(len(rows)), labels)
    ax.set_xscale("log")
    ax.set_xlim(1e2, counts.max() * 3e3)
    ax.invert_yaxis()
    ax.set_xlabel("parameters of the layer (log scale)")
    for i, (c, r) in enumerate(zip(counts, rows)):
        ax.text(c * 1.5, i, f"{num(c)}  ({plan.format_bytes(r.nbytes('float32'))})",
                va="center", fontsize=9)
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title("One layer on a 12-megapixel RGB photo: parameters and float32 bytes")
    s.figure(fig, "params",
             "Horizontal bar chart on a log scale of the parameters of four layers on a "
             f"3x3000x4000 photo: fully connected {num(rows[0].params)}, fully connected "
             f"into an image {num(rows[1].params)}, locally connected {num(rows[2].params)}, "
             f"convolution {num(rows[3].params)}.",
             "Each bar is one layer; the numbers are its parameters and their float32 size.")
    s.step("bar chart")

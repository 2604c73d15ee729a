"""7. Learning the kernel back: the book's experiment, with the fall of the loss measured."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ._figures import pyplot
from ._page import esc

if TYPE_CHECKING:
    from ..core._typing import ArrayLike
    from ._page import Section


TITLE = "Learning the kernel back"

ITERATIONS, LR = 10, 3e-2


def steps(quick: bool) -> int:
    return 2


def fall_per_two(losses: ArrayLike) -> float:
    """The loss's geometric-mean fall factor per 2 iterations: ``(l0 / l_last) ** (2 / n)``."""
    losses = np.asarray(losses, dtype=float)
    return float((losses[0] / losses[-1]) ** (2.0 / (len(losses) - 1)))


def run(s: Section) -> None:
    from ..lecture.experiments import learn_edge_kernel

    losses, k, X, Y = learn_edge_kernel(iterations=ITERATIONS, lr=LR, seed=s.seed)
    falls = [losses[i] / losses[i + 2] for i in range(len(losses) - 2)]
    f2 = fall_per_two(losses)
    s.p("Can the edge kernel be learnt from examples? The book's experiment: the input "
        "<i>X</i> with the dark band, the target <i>Y</i> = <i>X</i> &#8902; [[1, &minus;1]], "
        "a <code>Conv2d(1, 1, kernel_size=(1, 2), bias=False)</code> from a random start, "
        f"the sum of squared errors as the loss, and plain gradient descent with learning "
        f"rate {LR} for {ITERATIONS} iterations (the gradient from the layer's "
        "<code>backward</code>).")
    s.step("trained")
    s.p(f"Measured in this run: the loss fell from {losses[0]:.3g} to {losses[-1]:.3g}, by "
        f"a factor of <strong>{f2:.1f} every 2 iterations</strong> on average (between "
        f"{min(falls):.1f} and {max(falls):.1f} for the individual pairs), and the learnt "
        f"kernel is <strong>[[{k[0, 0]:.4f}, {k[0, 1]:.4f}]]</strong> against the true [[1, "
        "&minus;1]] (the book's reference run printed [[0.9895, &minus;0.9874]]).")
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(8.8, 2.8), gridspec_kw={"width_ratios": [1.6, 1]})
    it = np.arange(1, len(losses) + 1)
    a.semilogy(it, losses, "o-")
    for i, v in zip(it, losses):
        a.annotate(f"{v:.3g}", (i, v), textcoords="offset points", xytext=(4, 5), fontsize=7)
    a.set_xlabel("iteration")
    a.set_ylabel("loss: sum of squared errors (log)")
    a.set_xticks(it)
    a.set_title(f"measured: the loss falls {f2:.1f}× per 2 iterations (mean)")
    a.grid(alpha=0.3)
    b.bar([0, 1], k.ravel(), color="tab:orange", width=0.5, label="learnt")
    b.scatter([0, 1], [1, -1], marker="_", s=900, color="k", label="true [1, −1]", zorder=3)
    for j, v in enumerate(k.ravel()):
        b.text(j + 0.3, v, f"{v:.4f}", va="center", fontsize=9)
    b.set_xticks([0, 1], ["k[0, 0]", "k[0, 1]"])
    b.set_xlim(-0.5, 1.9)
    b.axhline(0, color="k", lw=0.5)
    b.legend(fontsize=8, loc="lower left")
    b.set_title("the learnt kernel")
    fig.tight_layout()
    s.figure(fig, "learn",
             f"Left: the loss on a log scale over {ITERATIONS} iterations, falling from "
             f"{losses[0]:.3g} to {losses[-1]:.3g}. Right: bars of the learnt kernel, "
             f"{k[0, 0]:.3f} and {k[0, 1]:.3f}, next to the true values 1 and -1.",
             f"Gradient descent, lr {esc(LR)}: the kernel comes back close to [1, −1].")
    s.step("figure")

"""5. The 2-D convolutional layer: the formula, the worked example as a widget, the edge example."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import _math as m
from ._figures import matrix, pyplot
from ._page import esc

if TYPE_CHECKING:
    from ._page import Section


TITLE = "The 2-D convolutional layer"

WIDGET = """
<div class="explorer" data-testid="explorer">
  <div class="controls">
    <label>input rows n<sub>h</sub> <input type="number" data-testid="n-h" min="1" max="10" value="3"></label>
    <label>columns n<sub>w</sub> <input type="number" data-testid="n-w" min="1" max="10" value="3"></label>
    <label>kernel rows k<sub>h</sub> <input type="number" data-testid="k-h" min="1" max="5" value="2"></label>
    <label>columns k<sub>w</sub> <input type="number" data-testid="k-w" min="1" max="5" value="2"></label>
    <label>stride s <input type="number" data-testid="stride" min="1" max="4" value="1"></label>
    <label>padding p <input type="number" data-testid="padding" min="0" max="3" value="0"></label>
    <label>dilation d <input type="number" data-testid="dilation" min="1" max="3" value="1"></label>
  </div>
  <div class="grids">
    <div><div class="gtitle">input X (grey: zero padding)</div><table class="grid gx"></table></div>
    <div><div class="gtitle">kernel K</div><table class="grid gk"></table></div>
    <div><div class="gtitle">output Y = X &#8902; K (click a cell)</div><table class="grid gy"></table></div>
  </div>
  <p class="sum" data-testid="sum" aria-live="polite"></p>
  <p class="shape"></p>
</div>
<noscript><p class="note">The worked example below is interactive and needs JavaScript;
without it: [[0,1,2],[3,4,5],[6,7,8]] &#8902; [[0,1],[2,3]] = [[19,25],[37,43]].</p></noscript>
"""


def steps(quick: bool) -> int:
    return 3


def run(s: Section) -> None:
    from .. import conv_output_shape, correlate

    X = np.arange(9.0).reshape(3, 3)
    K = np.array([[0.0, 1.0], [2.0, 3.0]])
    Y = correlate(X, K)
    s.p("Both principles together leave the convolutional layer. For an input <i>X</i> of "
        "<i>n<sub>h</sub></i>&times;<i>n<sub>w</sub></i>, a kernel <i>W</i> of "
        "<i>k<sub>h</sub></i>&times;<i>k<sub>w</sub></i> and a bias <i>b</i> (the two "
        "learnable parameters), the output <i>Y</i> = <i>X</i> &#8902; <i>W</i> + <i>b</i> "
        "is (indices from 0):")
    kh1 = m.row(m.sub("k", m.i("h")), m.o("−"), m.n(1))
    kw1 = m.row(m.sub("k", m.i("w")), m.o("−"), m.n(1))
    s.math(m.row(m.sub("y", *m.idx("i", "j")), m.o("="),
                 m.sum_(m.row(m.i("a"), m.o("="), m.n(0)), kh1),
                 m.sum_(m.row(m.i("b"), m.o("="), m.n(0)), kw1),
                 m.sub("w", *m.idx("a", "b")), m.sub("x", *m.idx("i+a", "j+b")), m.o("+"),
                 m.i("b")), "cross-correlation plus bias")
    s.math(m.row(m.text("output size: "), m.row(m.o("("), m.sub("n", m.i("h")), m.o("−"),
                 m.sub("k", m.i("h")), m.o("+"), m.n(1), m.o(")")), m.o("×"),
                 m.row(m.o("("), m.sub("n", m.i("w")), m.o("−"), m.sub("k", m.i("w")),
                       m.o("+"), m.n(1), m.o(")"))))
    s.p(f"The lecture's worked example is below, live: <i>X</i> = 0&hellip;8, <i>K</i> = "
        f"[[0, 1], [2, 3]] gives {esc(Y.astype(int).tolist())}. Click an output cell to see "
        "its window and its sum of products; edit any number in <i>X</i> or <i>K</i>, or "
        "change the sizes, the stride, the padding or the dilation. The arithmetic is the "
        "page's own JavaScript; the tests check it against <code>ndconv.conv</code> over a "
        "grid of settings.", quiet=True)
    from ..lecture.explain import Explainer  # the sums as `ndconv explain` prints them

    ex = Explainer(X, K)
    for o in np.ndindex(*Y.shape):
        s.log(ex.line(o))
    s.html(WIDGET)
    s.step("worked example")
    # Padding, stride, dilation: the general output size, on the book's cases.
    s.h3("Padding, stride and dilation")
    s.p("Padding <i>p</i> adds <i>p</i> zeros on every side, stride <i>s</i> moves the window "
        "<i>s</i> cells at a time and dilation <i>d</i> spreads the kernel's taps <i>d</i> "
        "cells apart. Per dimension the output size becomes (with <i>p</i> on both sides):",
        quiet=True)
    s.math(m.row(m.i("o"), m.o("="),
                 m.floor(m.frac(m.row(m.i("n"), m.o("+"), m.n(2), m.i("p"), m.o("−"), m.i("d"),
                                      m.o("("), m.i("k"), m.o("−"), m.n(1), m.o(")"), m.o("−"),
                                      m.n(1)), m.i("s"))),
                 m.o("+"), m.n(1)), "output size")
    cases = [((3, 3), (1, 1), (1, 1), (1, 1)), ((5, 3), (2, 1), (1, 1), (1, 1)),
             ((3, 3), (1, 1), (2, 2), (1, 1)), ((3, 5), (0, 1), (3, 4), (1, 1)),
             ((3, 3), (2, 2), (1, 1), (2, 2))]
    rows = []
    for k, p, st, d in cases:
        out = conv_output_shape((8, 8), (1, 1, *k), stride=st, padding=p, dilation=d)
        calc = " , ".join(f"⌊({8} + 2·{pi} − {di}·({ki} − 1) − 1) / {si}⌋ + 1 = {oi}"
                          for ki, pi, si, di, oi in zip(k, p, st, d, out))
        rows.append(["×".join(map(str, k)), esc_t(p), esc_t(st), esc_t(d),
                     "×".join(map(str, out)), calc])
    s.table(["kernel", "padding", "stride", "dilation", "output", "rows , columns"], rows,
            caption="An 8×8 input (the book's cases, and one dilated); output sizes from "
                    "ndconv.conv_output_shape", testid="sizes-table")
    s.step("output sizes")
    # The edge example.
    s.h3("Detecting an edge")
    E = np.ones((6, 8))
    E[:, 2:6] = 0
    D = correlate(E, [[1.0, -1.0]])
    DT = correlate(E.T, [[1.0, -1.0]])
    s.p(f"The book's first use of a kernel: an image of ones with a dark band (columns 2 to "
        f"5 are 0) and the kernel [[1, &minus;1]], which subtracts each pixel's right "
        f"neighbour. Every row of the 6&times;7 output is "
        f"{esc(D[0].astype(int).tolist())}: +1 where white turns black, &minus;1 where black "
        f"turns white, 0 elsewhere. On the transposed image the output is all zeros "
        f"({esc(bool(np.all(DT == 0)))}): this kernel sees vertical edges only.")
    s.log(f"every row of the 6x7 output is {D[0].astype(int).tolist()}")
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(8.8, 2.2),
                             gridspec_kw={"width_ratios": [8, 2.2, 7]})
    matrix(axes[0], E, "X: a dark band (6×8)", cmap="gray", vmin=0, vmax=1, fontsize=8)
    matrix(axes[1], [[1.0, -1.0]], "K", cmap="RdBu_r", vmin=-1.5, vmax=1.5)
    matrix(axes[2], D, "Y = X ⋆ K (6×7)", cmap="RdBu_r", vmin=-1.5, vmax=1.5, fontsize=8)
    s.figure(fig, "edge",
             "Three grids of numbers: a 6x8 image of ones with four columns of zeros, the "
             "1x2 kernel [1, -1], and the 6x7 output with a column of 1 at the left edge of "
             "the band and a column of -1 at its right edge.",
             "The edge example: the output marks the two vertical edges of the band.")
    s.step("edge example")


def esc_t(t: tuple[object, ...]) -> str:
    return ", ".join(map(str, t)) if len(set(t)) > 1 else str(t[0])

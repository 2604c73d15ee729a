"""2. The derivation, step by step, on a crop of a real photo (``ndconv.derive``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .. import correlate
from ..lecture import derive
from ..images import kernels
from . import _math as m
from ._figures import camera_crop, colorbar, matrix, pyplot
from ._page import Raw, esc

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType

    from ..core._typing import NDArray
    from ._page import Section


TITLE = "The derivation: from a fully connected layer to a convolution"

#: The crop of scikit-image's camera photo the derivation runs on (rows, cols).
CROP = (slice(180, 186), slice(236, 242))


def steps(quick: bool) -> int:
    return 5


def _grid_table(s: Section, a: NDArray[Any], testid: str, caption: str,
                fmt: str = "{:.3f}") -> str:
    """A small 2-D array as an HTML table (row and column indices in bold)."""
    rows = [[Raw(f"<b>{r}</b>")] + [fmt.format(v) for v in a[r]] for r in range(a.shape[0])]
    return s.table([""] + [str(c) for c in range(a.shape[1])], rows,
                   numeric=set(range(1, a.shape[1] + 1)), caption=caption, testid=testid,
                   quiet=True, inline=True)


def _refusal(derive: ModuleType, step: Callable[[], object]) -> str:
    """The message of the PrincipleError that ``step()`` raises (it must raise one)."""
    try:
        step()
    except derive.PrincipleError as exc:
        return str(exc)
    raise AssertionError("derive accepted a weight that breaks a principle")


def run(s: Section) -> None:
    x = camera_crop(*CROP)
    S = x.shape
    k = kernels.get("sobel-x")
    r0, c0 = CROP[0].start, CROP[1].start
    s.html(f"<div data-testid='derive-crop' data-rows='{CROP[0].start}:{CROP[0].stop}' "
           f"data-cols='{CROP[1].start}:{CROP[1].stop}' data-kernel='sobel-x'></div>")
    s.p(f"The lecture derives the convolution from a fully connected layer. Here the "
        f"derivation runs, with <code>ndconv.derive</code>, on a real {S[0]}&times;{S[1]} "
        f"crop of scikit-image's <em>camera</em> photo (rows {r0}&ndash;{CROP[0].stop - 1}, "
        f"columns {c0}&ndash;{CROP[1].stop - 1}, grey values scaled to 0&hellip;1). A fully "
        "connected layer from an image <i>x</i> to a hidden image <i>h</i> of the same size "
        "has one weight for every pair (output position (<i>i</i>, <i>j</i>), input position "
        "(<i>k</i>, <i>l</i>)), a 4-D array <i>W</i>:")
    s.math(m.row(m.sub("h", *m.idx("i", "j")), m.o("="),
                 m.sum_(m.row(m.i("k"), m.o(","), m.i("l"))),
                 m.sub("w", *m.idx("i", "j", "k", "l")), m.sub("x", *m.idx("k", "l"))),
           "(1) fully connected")
    # Step 1: a dense weight that happens to be a 3x3 correlation.
    W = derive.conv_to_dense(k[None, None], (1, *S), padding=1)[0, :, :, 0]  # (6, 6, 6, 6)
    h = np.tensordot(W, x, axes=2)
    s.p(f"Take the <i>W</i> that <code>derive.conv_to_dense</code> writes for the 3&times;3 "
        f"Sobel kernel (zero padding 1, so <i>h</i> is {S[0]}&times;{S[1]}): "
        f"{W.size:,} weights, of which {np.count_nonzero(W)} are non-zero. Flattened to a "
        f"{x.size}&times;{x.size} matrix (row = output pixel, column = input pixel) it has "
        "the famous <em>doubly block Toeplitz</em> pattern: blocks of rows for the output "
        "rows, each block a banded matrix, the same bands repeated along the diagonal.")
    s.row(_grid_table(s, x, "derive-x", f"the input x, a {S[0]}×{S[1]} crop of camera"))
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.2, 5.0))
    lim = np.abs(W).max()
    im = ax.imshow(W.reshape(x.size, x.size), cmap="RdBu_r", vmin=-lim, vmax=lim,
                   interpolation="nearest")
    for b in range(1, S[0]):
        ax.axhline(b * S[1] - 0.5, color="0.7", lw=0.5)
        ax.axvline(b * S[1] - 0.5, color="0.7", lw=0.5)
    ax.set_title(f"the fully connected weight W as a {x.size}×{x.size} matrix")
    ax.set_xlabel(f"input pixel k·{S[1]} + l")
    ax.set_ylabel(f"output pixel i·{S[1]} + j")
    ax.set_xticks(range(0, x.size, S[1]))
    ax.set_yticks(range(0, x.size, S[1]))
    colorbar(fig, im, ax, "weight")
    s.figure(fig, "dense",
             f"The dense weight W drawn as a {x.size}x{x.size} matrix in red and blue, "
             "non-zero only on three bands in each block on and beside the block diagonal.",
             "A fully connected layer whose weight happens to be a convolution: the grey "
             "lines separate the blocks (one block per pair of output row and input row).")
    s.step("dense weight")
    # Step 2: re-index by offset.
    V = derive.reindex(W)
    R = (V.shape[2] - 1) // 2
    s.p(f"<b>Re-index.</b> Write the input position as an offset from the output position, "
        f"<i>k</i> = <i>i</i> + <i>a</i>, <i>l</i> = <i>j</i> + <i>b</i>. "
        f"<code>derive.reindex(W)</code> gives <i>V</i> of shape {esc(V.shape)}: for each "
        f"output position a {V.shape[2]}&times;{V.shape[3]} map of the offsets "
        f"&minus;{R}&hellip;{R}. Nothing is lost: <code>derive.unreindex(V)</code> gives "
        f"back <i>W</i> exactly (max |difference| "
        f"{np.abs(derive.unreindex(V) - W).max():.1g}).")
    s.math(m.row(m.sub("h", *m.idx("i", "j")), m.o("="),
                 m.sum_(m.row(m.i("a"), m.o(","), m.i("b"))),
                 m.sub("v", *m.idx("i", "j", "a", "b")), m.sub("x", *m.idx("i+a", "j+b")),
                 m.o(","), m.o("&#x2003;"), m.sub("v", *m.idx("i", "j", "a", "b")), m.o("="),
                 m.sub("w", *m.idx("i", "j", "i+a", "j+b"))),
           "(2) re-indexed")
    s.step("reindex")
    # Step 3: tie (translation invariance) and step 4: localize.
    tied = derive.tie(V)
    kernel = derive.localize(tied, 1)
    s.p("<b>Translation invariance.</b> A shifted input must give a shifted output, so the "
        "weight may not depend on where the output is: <i>v</i><sub><i>i,j,a,b</i></sub> = "
        "<i>v</i><sub><i>a,b</i></sub>. <code>derive.tie(V)</code> checks that every output "
        f"position holds the same offset map (where it reaches inside the input) and returns "
        f"that one {tied.shape[0]}&times;{tied.shape[1]} map. What is left is a "
        "cross-correlation:")
    s.math(m.row(m.sub("h", *m.idx("i", "j")), m.o("="),
                 m.sum_(m.row(m.i("a"), m.o(","), m.i("b"))),
                 m.sub("v", *m.idx("a", "b")), m.sub("x", *m.idx("i+a", "j+b"))),
           "(3) translation invariance")
    s.p(f"<b>Locality.</b> An output may only look near itself: <i>v</i><sub><i>a,b</i></sub> "
        f"= 0 when |<i>a</i>| or |<i>b</i>| &gt; &Delta;. <code>derive.localize(tied, 1)</code> "
        f"checks that the {tied.size - 9} entries outside the 3&times;3 window are zero and "
        "crops them away:")
    D = m.i("Δ")
    s.math(m.row(m.sub("h", *m.idx("i", "j")), m.o("="),
                 m.sum_(m.row(m.i("a"), m.o("="), m.o("−"), D), D),
                 m.sum_(m.row(m.i("b"), m.o("="), m.o("−"), D), D),
                 m.sub("v", *m.idx("a", "b")), m.sub("x", *m.idx("i+a", "j+b"))),
           "(4) locality: the convolutional layer")
    fig, axes = plt.subplots(1, 4, figsize=(8.8, 2.6),
                             gridspec_kw={"width_ratios": [1, 1, 1, 0.55]})
    lim = np.abs(k).max()
    for ax, (a, title) in zip(axes, [(V[0, 0], "V[i=0, j=0] (a corner)"),
                                     (V[2, 3], "V[i=2, j=3] (inside)"),
                                     (tied, "tie(V): one map")]):
        ax.imshow(a, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
        ax.set_title(title)
        ax.set_xticks([0, R, 2 * R], [f"b={-R}", "0", f"{R}"])
        ax.set_yticks([0, R, 2 * R], [f"a={-R}", "0", f"{R}"])
        ax.add_patch(plt.Rectangle((R - 1.5, R - 1.5), 3, 3, fill=False, ec="k", lw=0.8, ls="--"))
    im = matrix(axes[3], kernel, "localize: K", cmap="RdBu_r", vmin=-lim, vmax=lim, fmt="{:g}")
    colorbar(fig, im, axes[3], "weight")
    fig.subplots_adjust(wspace=0.45)
    s.figure(fig, "tie",
             f"Three {tied.shape[0]}x{tied.shape[1]} offset maps: V at the corner output "
             "(0, 0), where offsets that leave the input are zero, V at output (2, 3), and "
             "the tied map; all are zero outside the dashed 3x3 window. Right: the 3x3 "
             "kernel left after localizing, the Sobel kernel.",
             "Re-indexed by offset, every output position holds the same map (up to the "
             "offsets that leave the input): tying gives one map, localizing gives the kernel.")
    s.step("tie and localize")
    ref = correlate(x, kernel, mode="same")
    diff = float(np.abs(ref - h).max())
    s.p(f"The result: the kernel is {esc(kernel.astype(int).tolist())} (the Sobel kernel we "
        f"started from), and <code>ndconv.correlate(x, K, mode='same')</code> equals the "
        f"fully connected layer's <i>h</i> = <i>W x</i> with a max |difference| of "
        f"<strong data-testid='derive-maxdiff'>{diff:.3g}</strong>. {W.size:,} weights "
        f"became {kernel.size}.")
    s.row(_grid_table(s, kernel, "derive-kernel", "K = localize(tie(reindex(W)), 1)", "{:g}"),
          _grid_table(s, h, "derive-h", "h = W x, the fully connected layer's output"))
    s.step("check against correlate")
    # A weight that breaks each principle, and what derive says about it.
    s.h3("Weights that break a principle")
    W_bad = W.copy()
    W_bad[2, 3, 2, 4] += 0.5
    msg_t = _refusal(derive, lambda: derive.tie(derive.reindex(W_bad)))
    s.p("Change one weight of <i>W</i>, the one from input (2, 4) to output (2, 3), by 0.5: "
        "the output at (2, 3) now weighs its right neighbour differently from every other "
        "output. <code>derive.tie</code> refuses it:")
    s.pre(msg_t, "error")
    k7 = np.zeros((7, 7))
    k7[2:5, 2:5] = k
    k7[6, 3] = 0.25  # every output also reads the pixel three rows below it
    tied7 = derive.tie(derive.reindex(derive.conv_to_dense(k7[None, None], (1, *S),
                                                           padding=3)[0, :, :, 0]))
    msg_l = _refusal(derive, lambda: derive.localize(tied7, 1))
    s.p("A weight that is the same at every position (it ties) but also reads the pixel "
        "three rows below each output, with weight 0.25, is not local for &Delta; = 1. "
        "<code>derive.localize</code> refuses it:")
    s.pre(msg_l, "error")
    s.step("principle errors")

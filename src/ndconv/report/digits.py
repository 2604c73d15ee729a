"""10. A CNN on the digits: learning curves, the kernels it learnt, its feature maps."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, cast

import numpy as np

from ..training import data, optim
from .. import evaluate
from ..lecture import experiments
from ..training.models import digits_cnn
from ._figures import pyplot
from ._page import num

if TYPE_CHECKING:
    from ..nn import Conv2d
    from ._page import Section


TITLE = "A CNN on the digits"

LR, BATCH = 3e-3, 32  # as `ndconv train`


def epochs_for(quick: bool) -> int:
    return 6 if quick else 20


def steps(quick: bool) -> int:
    return epochs_for(quick) + 2


def run(s: Section) -> None:
    epochs = epochs_for(s.quick)
    split = data.load_digits(seed=s.seed)
    model = digits_cnn(s.seed)
    conv1, conv2 = cast("Conv2d", model[0]), cast("Conv2d", model[3])  # Sequential gives Modules
    t0 = time.perf_counter()
    h = experiments.fit_epochs(model, split.x_train, split.y_train,
                               optimizer=optim.Adam(model.parameters(), lr=LR), epochs=epochs,
                               batch_size=BATCH, seed=s.seed,
                               validation=(split.x_test, split.y_test),
                               callback=lambda e: s.step(f"epoch {e}/{epochs}"))
    seconds = time.perf_counter() - t0
    acc = evaluate(model, split.x_test, split.y_test)["accuracy"]
    n = split.y_test.size
    s.p(f"Finally a CNN that learns: scikit-learn's 1797 handwritten 8&times;8 digits, "
        f"{num(split.y_train.size)} for training and {num(n)} held out (stratified). The "
        f"network is the one <code>ndconv train</code> trains: a 3&times;3 convolution "
        f"from 1 to {conv1.out_channels} channels &ndash; ReLU &ndash; 2&times;2 max-pool "
        f"&ndash; a 3&times;3 convolution to {conv2.out_channels} channels &ndash; ReLU "
        f"&ndash; max-pool &ndash; Linear &ndash; ReLU &ndash; Linear, "
        f"{num(model.num_parameters())} parameters, Adam "
        f"with learning rate {LR}, {epochs} epochs in {seconds:.1f} s. Test accuracy: "
        f"<strong>{100 * acc:.1f}%</strong> ({round(acc * n)} of {n}).")
    if h["accuracy"][-1] < 0.95:
        s.html(f"<p class='note'><b>Not converged:</b> after {epochs} epochs the training "
               f"accuracy is {100 * h['accuracy'][-1]:.1f}%; the full run trains "
               f"{epochs_for(False)} epochs.</p>")
    plt = pyplot()
    ep = np.arange(1, epochs + 1)
    fig, (a, b) = plt.subplots(1, 2, figsize=(8.8, 2.8))
    a.plot(ep, h["loss"], "o-", ms=3, label="training")
    a.plot(ep, h["val_loss"], "s--", ms=3, label="held out")
    a.set_ylabel("cross-entropy loss")
    b.plot(ep, 100 * np.array(h["accuracy"]), "o-", ms=3, label="training")
    b.plot(ep, 100 * np.array(h["val_accuracy"]), "s--", ms=3, label="held out")
    b.set_ylabel("accuracy (%)")
    b.set_ylim(0, 100)
    for ax in (a, b):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    a.set_ylim(bottom=0)
    fig.tight_layout()
    s.figure(fig, "curves",
             f"Two line charts over {epochs} epochs: the loss falls for training and "
             f"held-out digits; the accuracy rises to {100 * h['accuracy'][-1]:.0f}% "
             f"(training) and {100 * h['val_accuracy'][-1]:.0f}% (held out).",
             f"Learning curves; after the last epoch the training accuracy is "
             f"{100 * h['accuracy'][-1]:.1f}% and the held-out {100 * h['val_accuracy'][-1]:.1f}%.")
    s.step("curves")
    w = conv1.weight.data[:, 0]  # (16, 3, 3)
    digit = split.x_test[:1]
    maps = model[1](model[0](digit))[0]  # after the first convolution and its ReLU
    fig = plt.figure(figsize=(8.8, 3.3))
    gs = fig.add_gridspec(2, 10, width_ratios=[1.4] + [1] * 8 + [0.12], wspace=0.15,
                          hspace=0.35)
    ax = fig.add_subplot(gs[:, 0])
    ax.imshow(digit[0, 0], cmap="gray_r")
    ax.set_title(f"input: a {split.y_test[0]}")
    ax.axis("off")
    lim = float(np.abs(w).max())
    mlim = float(maps.max())
    for i in range(8):
        ax = fig.add_subplot(gs[0, 1 + i])
        imk = ax.imshow(w[i], cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(f"kernel {i}", fontsize=8)
        ax.axis("off")
        ax = fig.add_subplot(gs[1, 1 + i])
        imm = ax.imshow(maps[i], cmap="viridis", vmin=0, vmax=mlim)
        ax.set_title(f"map {i}", fontsize=8)
        ax.axis("off")
    fig.colorbar(imk, cax=fig.add_subplot(gs[0, 9])).set_label("weight", fontsize=8)
    fig.colorbar(imm, cax=fig.add_subplot(gs[1, 9])).set_label("activation", fontsize=8)
    s.figure(fig, "kernels",
             f"A test digit {split.y_test[0]}, eight of the sixteen learnt 3x3 kernels in "
             "red and blue, and below each the feature map it produces on the digit: "
             "bright where the digit has a stroke of that orientation.",
             "First-layer kernels (one colour scale for all) and their feature maps after "
             "ReLU (one scale for all): what each learnt kernel picks out of this digit.")
    s.step("kernels")

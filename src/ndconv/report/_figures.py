"""Small matplotlib helpers shared by the sections (Agg backend, no display)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..core._typing import ArrayLike, NDArray

# matplotlib's objects (pyplot, figures, axes, images) are typed Any here: the
# report needs only their documented calls.


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend, with the report's defaults."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 10, "axes.titlesize": 10, "axes.labelsize": 10,
                         "figure.dpi": 100, "savefig.dpi": 200})
    return plt


def matrix(ax: Any, a: ArrayLike, title: str | None = None, *, cmap: str = "Blues",
           vmin: float | None = None, vmax: float | None = None, fmt: str = "{:g}",
           fontsize: float = 10) -> Any:
    """A small matrix as coloured cells with its numbers written in.

    The text is dark on light cells and white on dark ones, whatever the colour map.
    """
    a = np.atleast_2d(np.asarray(a, dtype=float))
    vmin = float(a.min()) if vmin is None else vmin
    vmax = float(a.max()) if vmax is None else vmax
    im = ax.imshow(a, cmap=cmap, vmin=vmin, vmax=vmax if vmax > vmin else vmin + 1)
    for (i, j), v in np.ndenumerate(a):
        r, g, b, _ = im.cmap(im.norm(v))
        light = 0.299 * r + 0.587 * g + 0.114 * b > 0.55
        ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=fontsize,
                color="black" if light else "white")
    ax.set_xticks(range(a.shape[1]))
    ax.set_yticks(range(a.shape[0]))
    ax.tick_params(length=0, labelsize=8)
    if title:
        ax.set_title(title)
    return im


def colorbar(fig: Any, im: Any, ax: Any, label: str | None = None, **kw: Any) -> Any:
    """A colour bar beside ``ax`` with a label."""
    cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03, **kw)
    if label:
        cb.set_label(label)
    return cb


def gaussian_1d(sigma: float) -> NDArray[np.float64]:
    """A sampled Gaussian of radius ``ceil(3 sigma)``, summing to 1."""
    r = int(np.ceil(3 * sigma))
    t = np.arange(-r, r + 1, dtype=np.float64)
    g = np.exp(-t * t / (2 * sigma * sigma))
    return g / g.sum()


def camera_crop(rows: slice, cols: slice) -> NDArray[np.float64]:
    """A crop of scikit-image's ``camera`` photo, scaled to 0..1 (float64)."""
    import skimage.data

    return skimage.data.camera()[rows, cols] / 255.0

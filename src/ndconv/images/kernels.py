"""A bank of named 2-D kernels: the lecture's edge, sharpen and blur, and friends.

Every kernel is meant for :func:`ndconv.correlate` / :func:`ndconv.conv`, which
cross-correlate (no flip), so ``sobel-x`` is positive where the image gets
brighter from left to right.

A kernel is named by a string ``"NAME"`` or ``"NAME:ARG"``:

============== ============================================================
name           kernel
============== ============================================================
identity       3x3, a single 1 in the centre (the output equals the input)
box:K          K x K mean filter (K odd or even, default 3)
gaussian       the lecture's 3x3 blur, 1/16 [[1,2,1],[2,4,2],[1,2,1]]
gaussian:SIGMA sampled Gaussian, radius ceil(3*SIGMA), normalised to sum 1
sharpen        the lecture's [[0,-1,0],[-1,5,-1],[0,-1,0]]
edge           the lecture's [[-1,-1,-1],[-1,8,-1],[-1,-1,-1]]
diff           the book's vertical-edge kernel [[1, -1]]
sobel-x        [[-1,0,1],[-2,0,2],[-1,0,1]]
sobel-y        sobel-x transposed
laplacian      [[0,1,0],[1,-4,1],[0,1,0]]
emboss         [[-2,-1,0],[-1,1,1],[0,1,2]]
motion:K       K x K diagonal motion blur, eye(K)/K (default 9)
============== ============================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..core._typing import ArrayLike, NDArray

    #: builds a kernel from the text after ':' (None when there is none)
    _Builder = Callable[[str | None], ArrayLike]

__all__ = ["get", "names", "describe", "MAX_SIZE"]

# Keeps a typo like "box:30000" from allocating gigabytes before anything runs.
MAX_SIZE = 255


def _fixed(rows: ArrayLike, scale: float = 1.0) -> _Builder:
    def build(arg: str | None) -> NDArray[np.float64]:
        return np.array(rows, dtype=np.float64) * scale

    return build


def _size_arg(name: str, default: int) -> Callable[[str | None], int]:
    def parse(arg: str | None) -> int:
        if arg is None:
            return default
        try:
            k = int(arg)
        except ValueError:
            raise ValueError(
                f"kernel {name!r}: the size after ':' (={arg!r}) must be an integer, "
                f"e.g. '{name}:{default}'"
            ) from None
        if not 1 <= k <= MAX_SIZE:
            raise ValueError(
                f"kernel {name!r}: the size (={k}) must be between 1 and {MAX_SIZE}"
            )
        return k

    return parse


def _box(arg: str | None) -> NDArray[np.float64]:
    k = _size_arg("box", 3)(arg)
    return np.full((k, k), 1.0 / (k * k))


def _motion(arg: str | None) -> NDArray[np.float64]:
    k = _size_arg("motion", 9)(arg)
    return np.eye(k) / k


def _gaussian(arg: str | None) -> NDArray[np.float64]:
    if arg is None:  # the lecture's binomial blur
        return np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=np.float64) / 16
    try:
        sigma = float(arg)
    except ValueError:
        raise ValueError(
            f"kernel 'gaussian': sigma after ':' (={arg!r}) must be a number, e.g. "
            "'gaussian:1.5'"
        ) from None
    radius_max = (MAX_SIZE - 1) // 2
    # 3 * sigma <= radius_max is ceil(3 * sigma) <= radius_max for an integer bound,
    # without math.ceil's OverflowError on 3 * 1e308 = inf.
    if not (math.isfinite(sigma) and sigma > 0 and 3 * sigma <= radius_max):
        raise ValueError(
            f"kernel 'gaussian': sigma (={arg}) must be positive and at most "
            f"{radius_max / 3:g} (the kernel is 2*ceil(3*sigma)+1 wide, at most "
            f"{MAX_SIZE})"
        )
    r = math.ceil(3 * sigma)
    t = np.arange(-r, r + 1, dtype=np.float64)
    # t / sigma, not t*t / sigma**2: a tiny sigma squared underflows to 0 (0/0 = NaN);
    # (t / sigma)**2 overflows to inf instead, and exp(-inf) = 0 is the limit.
    with np.errstate(over="ignore"):
        g = np.exp(-0.5 * (t / sigma) ** 2)
    k = np.outer(g, g)
    return k / k.sum()


_SOBEL_X = [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]

# name -> (builder(arg or None), takes an argument, one-line description)
_BANK: dict[str, tuple[_Builder, bool, str]] = {
    "identity": (_fixed([[0, 0, 0], [0, 1, 0], [0, 0, 0]]), False,
                 "3x3, 1 in the centre: output = input"),
    "box": (_box, True, "box:K, K x K mean (default 3)"),
    "gaussian": (_gaussian, True,
                 "the lecture's 1/16 [[1,2,1],[2,4,2],[1,2,1]]; gaussian:SIGMA samples "
                 "a Gaussian"),
    "sharpen": (_fixed([[0, -1, 0], [-1, 5, -1], [0, -1, 0]]), False,
                "the lecture's sharpen"),
    "edge": (_fixed([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]]), False,
             "the lecture's edge detection"),
    "diff": (_fixed([[1, -1]]), False, "the book's [[1, -1]] (vertical edges)"),
    "sobel-x": (_fixed(_SOBEL_X), False, "horizontal gradient (vertical edges)"),
    "sobel-y": (_fixed(np.transpose(_SOBEL_X)), False,
                "vertical gradient (horizontal edges)"),
    "laplacian": (_fixed([[0, 1, 0], [1, -4, 1], [0, 1, 0]]), False,
                  "second derivative, 4-neighbour"),
    "emboss": (_fixed([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]), False, "relief effect"),
    "motion": (_motion, True, "motion:K, K x K diagonal blur eye(K)/K (default 9)"),
}


def names() -> list[str]:
    """Return the kernel names, sorted."""
    return sorted(_BANK)


def describe() -> list[tuple[str, str]]:
    """Return ``[(name, description), ...]`` for help texts."""
    return [(n, _BANK[n][2]) for n in names()]


def get(spec: str) -> NDArray[np.float64]:
    """Return the kernel named by ``spec`` as a float64 2-D array.

    Parameters
    ----------
    spec : str
        ``"NAME"`` or ``"NAME:ARG"``, e.g. ``"sobel-x"``, ``"box:5"``,
        ``"gaussian:2"``. See the module docstring for the bank.

    Returns
    -------
    ndarray, shape (k_h, k_w), float64
        A new array (safe to modify).

    Raises
    ------
    ValueError
        For an unknown name, an argument given to a kernel that takes none, or
        an argument out of range.

    Examples
    --------
    >>> from ndconv import kernels
    >>> kernels.get("box:2")
    array([[0.25, 0.25],
           [0.25, 0.25]])
    """
    if not isinstance(spec, str):
        raise TypeError(f"kernel name must be a str, got {type(spec).__name__}")
    name, sep, arg = spec.strip().partition(":")
    name = name.strip().lower()
    if name not in _BANK:
        raise ValueError(
            f"unknown kernel {spec!r}: must be one of {', '.join(names())} "
            "(with ':ARG' for box, gaussian, motion) or a .npy file"
        )
    build, takes_arg, _ = _BANK[name]
    if sep and not takes_arg:
        raise ValueError(f"kernel {name!r} takes no argument, got {spec!r}")
    if sep and not arg.strip():
        raise ValueError(f"kernel {spec!r}: nothing after ':'")
    return np.array(build(arg.strip() if sep else None), dtype=np.float64)

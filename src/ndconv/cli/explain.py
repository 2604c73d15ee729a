"""``ndconv explain X KERNEL --at I,J``: the sum behind one output element.

The sums themselves come from :class:`ndconv.explain.Explainer`; this module
parses the arrays and options and keeps ``explain`` to small arrays.
"""

from __future__ import annotations

import ast
import itertools
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core._args import PADDING_MODES
from ..lecture.explain import Explainer
from . import _parse
from ._errors import UsageError

if TYPE_CHECKING:
    import argparse

    from ..core._typing import NDArray

HELP = "print the sum that produces an output element of a small correlation"

EXAMPLES = """\
X and KERNEL are inline nested lists (1-D, 2-D or 3-D, same number of dims) or
.npy files. The output is the lecture's cross-correlation y = x * k + b:
y[i] = sum over taps a of x_padded[i*stride + a*dilation] * k[a] + b.

examples:
  ndconv explain "[[0,1,2],[3,4,5],[6,7,8]]" "[[0,1],[2,3]]" --at 0,0
      y[0, 0] = 0x0 + 1x1 + 3x2 + 4x3 = 19
  ndconv explain "[[0,1,2],[3,4,5],[6,7,8]]" "[[0,1],[2,3]]" --all
  ndconv explain "[1,2,3,4,5]" "[1,0,-1]" --padding 1 --stride 2 --all
  ndconv explain x.npy k.npy --at 1,2,0 --dilation 2 --mode reflect --padding same
"""

MAX_X = 4096
MAX_TAPS = 343  # 7x7x7
MAX_PADDED = 1 << 20  # elements of the padded X (a huge padding or dilation)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("x", metavar="X", help='input, e.g. "[[0,1,2],[3,4,5],[6,7,8]]" or x.npy')
    p.add_argument("kernel", metavar="KERNEL", help='kernel, e.g. "[[0,1],[2,3]]" or k.npy')
    g = p.add_mutually_exclusive_group()
    g.add_argument("--at", metavar="I,J", help="output index to explain (default: the first)")
    g.add_argument("--all", action="store_true",
                   help="print the shapes, the output-size formula, the output grid and "
                        "every element's sum")
    p.add_argument("--stride", type=_parse.int_tuple, default=1, help="S or per dim S0,S1")
    p.add_argument("--padding", type=_parse.padding, default=0,
                   help="P, per dim P0,P1, or same / valid / full (default 0)")
    p.add_argument("--dilation", type=_parse.int_tuple, default=1, help="D or per dim D0,D1")
    p.add_argument("--mode", default="zeros", choices=PADDING_MODES,
                   help="how the padding is filled (default zeros)")
    p.add_argument("--bias", type=float, default=0.0, help="b added to every output (default 0)")


def parse_array(text: str, what: str) -> NDArray[np.float64]:
    """An inline nested list or a .npy path -> float64 array of 1 to 3 dims."""
    if text.strip().lower().endswith(".npy"):
        a = _parse.load_npy(text, what)
    else:
        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise UsageError(
                f"{what} {text!r} must be a nested list of numbers like [[0,1],[2,3]] "
                "or a .npy file"
            ) from None
        try:
            a = np.array(value, dtype=np.float64)
        except (ValueError, TypeError):
            raise UsageError(
                f"{what} {text!r} must be a rectangular nested list of numbers"
            ) from None
        if not np.isfinite(a).all():
            raise UsageError(f"{what} {text!r} contains NaN or infinity")
    if not 1 <= a.ndim <= 3:
        raise UsageError(f"{what} must have 1, 2 or 3 dims, got shape {a.shape}")
    if a.size == 0:
        raise UsageError(f"{what} is empty (shape {a.shape})")
    return a


def _explainer(x: NDArray[Any], k: NDArray[Any], args: argparse.Namespace) -> Explainer:
    """The library's :class:`ndconv.explain.Explainer`, after the CLI's size caps."""
    if not np.isfinite(args.bias):
        raise UsageError(f"--bias (={args.bias}) must be a finite number")
    if x.size > MAX_X or k.size > MAX_TAPS:
        raise UsageError(
            f"explain is for small arrays: X may have at most {MAX_X} elements "
            f"(has {x.size}), KERNEL at most {MAX_TAPS} (has {k.size})"
        )
    ex = Explainer(x, k, stride=args.stride, padding=args.padding, dilation=args.dilation,
                   padding_mode=args.mode, bias=args.bias)
    padded = [s + lo + hi for s, (lo, hi) in zip(x.shape, ex.pairs)]
    if np.prod(padded, dtype=float) > MAX_PADDED:
        # Checked before the padded X and the output are allocated (--padding
        # 100000 would need GBs).
        raise UsageError(
            f"explain is for small arrays: the padded X would have shape "
            f"{tuple(padded)}, at most {MAX_PADDED} elements are accepted; "
            "use a smaller --padding or --dilation"
        )
    return ex


def _parse_index(text: str, ex: Explainer) -> tuple[int, ...]:
    parts = [p for p in text.strip("()[] ").replace(" ", ",").split(",") if p]
    try:
        idx = tuple(int(p) for p in parts)
    except ValueError:
        raise UsageError(f"--at {text!r} must be comma-separated ints like 0,1") from None
    try:
        return ex.check_index(idx)
    except ValueError as exc:
        raise UsageError(f"--at {text!r}: {exc}") from None


def run(args: argparse.Namespace) -> None:
    x = parse_array(args.x, "X")
    k = parse_array(args.kernel, "KERNEL")
    ex = _explainer(x, k, args)
    if args.all:
        print("\n".join(ex.header()))
        for o in itertools.product(*(range(s) for s in ex.out_shape)):
            print(ex.line(o))
        return
    o = _parse_index(args.at, ex) if args.at is not None else (0,) * x.ndim
    line = ex.line(o)
    print(line)
    pad = line.index("=")
    print(" " * pad + "= " + ex.where(o))

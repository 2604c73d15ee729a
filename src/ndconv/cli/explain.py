"""``ndconv explain X KERNEL --at I,J``: the sum behind one output element."""

from __future__ import annotations

import ast
import itertools

import numpy as np

from . import _parse
from ._errors import UsageError

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


def add_arguments(p):
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
    p.add_argument("--mode", default="zeros",
                   choices=("zeros", "reflect", "replicate", "circular"),
                   help="how the padding is filled (default zeros)")
    p.add_argument("--bias", type=float, default=0.0, help="b added to every output (default 0)")


def parse_array(text, what):
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


def _fmt_factory(*arrays):
    integral = all(np.all(np.mod(a, 1) == 0) for a in arrays)

    def fmt(v, paren=False):
        # An overflowed sum (1e308 + 1e308) is inf, which has no int form.
        s = f"{int(round(v))}" if integral and np.isfinite(v) else f"{v:.6g}"
        return f"({s})" if paren and s.startswith("-") else s

    return fmt


def _idx(t):
    return "[" + ", ".join(str(i) for i in t) + "]"


class Explainer:
    """Everything about one small correlation: validated once, explained per index."""

    def __init__(self, x, k, stride, padding, dilation, mode, bias):
        from .. import _args

        if x.ndim != k.ndim:
            raise UsageError(
                f"X has {x.ndim} dims (shape {x.shape}) but KERNEL has {k.ndim} "
                f"(shape {k.shape}); they must match"
            )
        if x.size > MAX_X or k.size > MAX_TAPS:
            raise UsageError(
                f"explain is for small arrays: X may have at most {MAX_X} elements "
                f"(has {x.size}), KERNEL at most {MAX_TAPS} (has {k.size})"
            )
        if not np.isfinite(bias):
            raise UsageError(f"--bias (={bias}) must be a finite number")
        n = x.ndim
        self.x, self.k, self.bias, self.mode = x, k, bias, mode
        self.stride = _args.ntuple(stride, n, "stride", minimum=1)
        self.dilation = _args.ntuple(dilation, n, "dilation", minimum=1)
        self.pairs = _args.padding_pairs(padding, k.shape, self.dilation, self.stride)
        _args.check_padding_mode(mode)
        _args.check_mode_fits(x.shape, self.pairs, mode)
        padded = [s + lo + hi for s, (lo, hi) in zip(x.shape, self.pairs)]
        if np.prod(padded, dtype=float) > MAX_PADDED:
            # Checked before np.pad allocates it (--padding 100000 would need GBs).
            raise UsageError(
                f"explain is for small arrays: the padded X would have shape "
                f"{tuple(padded)}, at most {MAX_PADDED} elements are accepted; "
                "use a smaller --padding or --dilation"
            )
        self.out_shape = _args.output_size(x.shape, k.shape, self.stride, self.pairs,
                                           self.dilation)
        np_mode = {"zeros": "constant", "reflect": "reflect", "replicate": "edge",
                   "circular": "wrap"}[mode]
        self.xp = np.pad(x, self.pairs, mode=np_mode)
        # Where each padded cell comes from: -1 for a zero pad, else a flat index of x.
        src = np.arange(x.size).reshape(x.shape)
        self.src = (np.pad(src, self.pairs, constant_values=-1) if mode == "zeros"
                    else np.pad(src, self.pairs, mode=np_mode))
        self.fmt = _fmt_factory(x, k, np.array([bias]))
        self.y = self._library_output()

    def _library_output(self):
        """The output computed by ndconv.conv, which every printed sum must match."""
        from .. import conv

        return conv(self.x[None, None], self.k[None, None], bias=np.array([self.bias]),
                    stride=self.stride, padding=self.pairs, dilation=self.dilation,
                    padding_mode=self.mode)[0, 0]

    def parse_index(self, text):
        parts = [p for p in text.strip("()[] ").replace(" ", ",").split(",") if p]
        try:
            idx = tuple(int(p) for p in parts)
        except ValueError:
            raise UsageError(f"--at {text!r} must be comma-separated ints like 0,1") from None
        if len(idx) != self.x.ndim:
            raise UsageError(
                f"--at {text!r} has {len(idx)} indices but the output has "
                f"{self.x.ndim} dims (shape {self.out_shape})"
            )
        for d, (i, s) in enumerate(zip(idx, self.out_shape)):
            if not 0 <= i < s:
                raise UsageError(
                    f"--at {text!r}: index {i} in dim {d} is outside the output "
                    f"(shape {self.out_shape}, so 0..{s - 1})"
                )
        return idx

    def terms(self, o):
        """[(padded position, x value, kernel tap, k value)] for output index o."""
        out = []
        for a in itertools.product(*(range(s) for s in self.k.shape)):
            p = tuple(oi * s + ai * d for oi, ai, s, d in zip(o, a, self.stride, self.dilation))
            out.append((p, float(self.xp[p]), a, float(self.k[a])))
        return out

    def line(self, o):
        """``y[o] = x0xk0 + ... = value``, checked against ndconv.conv."""
        f = self.fmt
        terms = self.terms(o)
        total = sum(xv * kv for _, xv, _, kv in terms) + self.bias
        expected = float(self.y[o])
        if not np.isclose(total, expected, rtol=1e-9, atol=1e-9):
            raise RuntimeError(f"explained sum {total} differs from ndconv.conv's {expected}")
        s = " + ".join(f"{f(xv, True)}x{f(kv, True)}" for _, xv, _, kv in terms)
        if self.bias:
            s += f" + {f(self.bias, True)} (bias)"
        return f"y{_idx(o)} = {s} = {f(expected)}"

    def where(self, o):
        """Which input cell and kernel tap each product uses."""
        parts = []
        for p, _, a, _ in self.terms(o):
            flat = int(self.src[p])
            if flat < 0:
                xs = "pad"
            else:
                xs = "x" + _idx(np.unravel_index(flat, self.x.shape))
            parts.append(f"{xs}*k{_idx(a)}")
        return " + ".join(parts)

    def header(self):
        f = self.fmt
        lines = [
            f"x: shape {self.x.shape}, kernel: shape {self.k.shape}",
            f"stride {self.stride}, dilation {self.dilation}, padding (lo, hi) per dim "
            f"{self.pairs}, mode {self.mode}, bias {f(self.bias)}",
            "output size per dim = floor((S + lo + hi - d*(k-1) - 1) / s) + 1",
        ]
        for i, (S, k, s, (lo, hi), d, o) in enumerate(zip(
                self.x.shape, self.k.shape, self.stride, self.pairs, self.dilation,
                self.out_shape)):
            lines.append(f"  dim {i}: floor(({S} + {lo} + {hi} - {d}*({k}-1) - 1) / {s}) + 1 = {o}")
        fmt = {"float_kind": lambda v: f(v)}
        if any(lo or hi for lo, hi in self.pairs):
            lines.append(f"padded x: shape {self.xp.shape}")
            lines.append(np.array2string(self.xp, formatter=fmt))
        lines.append(f"y: shape {self.out_shape}")
        lines.append(np.array2string(self.y, formatter=fmt))
        return lines


def run(args):
    x = parse_array(args.x, "X")
    k = parse_array(args.kernel, "KERNEL")
    ex = Explainer(x, k, args.stride, args.padding, args.dilation, args.mode, args.bias)
    if args.all:
        print("\n".join(ex.header()))
        for o in itertools.product(*(range(s) for s in ex.out_shape)):
            print(ex.line(o))
        return
    o = ex.parse_index(args.at) if args.at is not None else (0,) * x.ndim
    line = ex.line(o)
    print(line)
    pad = line.index("=")
    print(" " * pad + "= " + ex.where(o))

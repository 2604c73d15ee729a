"""The sum behind one output element of a correlation, written out.

The lecture's cross-correlation with stride ``s``, dilation ``d``, padding and
bias ``b`` computes, for every output index ``o``,

    y[o] = sum over kernel taps a of x_padded[o*s + a*d] * k[a] + b

:class:`Explainer` lists those products for one ``o`` (which input element,
or a padded cell, meets which kernel tap) and checks their sum against
:func:`ndconv.conv`, so what is printed is what the library computes. Both
``ndconv explain`` and ``ndconv explore`` (clicking an output pixel) use it.

Examples
--------
>>> import numpy as np
>>> from ndconv.explain import Explainer
>>> ex = Explainer(np.arange(9.0).reshape(3, 3), [[0, 1], [2, 3]])
>>> ex.line((0, 0))
'y[0, 0] = 0x0 + 1x1 + 3x2 + 4x3 = 19'
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ..core import _args, _windows

if TYPE_CHECKING:
    from ..core._typing import ArrayLike, IntOrTuple, NDArray, Padding, Pairs, Shape

__all__ = ["Explainer", "Term"]


class Term(NamedTuple):
    """One product of an output element's sum.

    ``position`` is the index into the padded input, ``source`` the index of
    the input element that the padded cell holds (``None`` for a zero pad),
    ``tap`` the kernel index, ``x`` and ``k`` the two factors.
    """

    position: tuple[int, ...]
    source: tuple[int, ...] | None
    tap: tuple[int, ...]
    x: float
    k: float


def _as_real(a: ArrayLike, name: str) -> NDArray[np.float64]:
    arr = _args.check_array(a, name, floating=False).astype(np.float64)
    if arr.ndim < 1:
        raise ValueError(f"`{name}` must have at least 1 dim, got a scalar")
    _args.check_no_empty(arr, name)
    if not np.isfinite(arr).all():
        raise ValueError(f"`{name}` contains NaN or infinity")
    return arr


def _idx(t: Sequence[int]) -> str:
    return "[" + ", ".join(str(i) for i in t) + "]"


class Explainer:
    """One single-channel correlation, validated once, explained per output index.

    Parameters
    ----------
    x : array_like, shape S (any number of dims)
        Int or float; used as float64.
    kernel : array_like, shape K, with ``len(K) == len(S)``
    stride, dilation : int or tuple of int, positive
    padding : int, tuple, ``(lo, hi)`` pairs, or {'valid', 'same', 'full'}
        As :func:`ndconv.conv`.
    padding_mode : {'zeros', 'reflect', 'replicate', 'circular'}
    bias : float
        Added to every output element.

    Attributes
    ----------
    stride, dilation : tuple of int
    pairs : tuple of (int, int)
        The padding as ``(lo, hi)`` per dim.
    out_shape : tuple of int
        ``floor((S + lo + hi - d*(k-1) - 1) / s) + 1`` per dim.

    Raises
    ------
    ValueError, TypeError
        Naming the argument, its value and the rule (ndconv's own checks), before
        anything proportional to the output is allocated.
    """

    x: NDArray[np.float64]
    k: NDArray[np.float64]
    bias: float
    mode: str
    stride: Shape
    dilation: Shape
    pairs: Pairs
    out_shape: Shape

    def __init__(
        self,
        x: ArrayLike,
        kernel: ArrayLike,
        stride: IntOrTuple = 1,
        padding: Padding = 0,
        dilation: IntOrTuple = 1,
        padding_mode: str = "zeros",
        bias: float = 0.0,
    ) -> None:
        x = _as_real(x, "x")
        k = _as_real(kernel, "kernel")
        if x.ndim != k.ndim:
            raise ValueError(
                f"`x` has {x.ndim} dims (shape {x.shape}) but `kernel` has {k.ndim} "
                f"(shape {k.shape}); they must match"
            )
        try:  # math, not np.isfinite: NumPy refuses an int beyond int64 with a TypeError
            finite = _args.is_number(bias) and math.isfinite(bias)
        except OverflowError:  # an int beyond float64
            finite = False
        if not finite:
            raise ValueError(f"`bias` (={bias!r}) must be a finite number")
        n = x.ndim
        self.x, self.k, self.bias = x, k, float(bias)
        self.mode = _args.check_padding_mode(padding_mode)
        self.stride = _args.ntuple(stride, n, "stride", minimum=1)
        self.dilation = _args.ntuple(dilation, n, "dilation", minimum=1)
        self.pairs = _args.padding_pairs(padding, k.shape, self.dilation, self.stride)
        _args.check_mode_fits(x.shape, self.pairs, self.mode)
        self.out_shape = _args.output_size(x.shape, k.shape, self.stride, self.pairs,
                                           self.dilation)
        # Integers print as integers ("0x0 + 1x1 = 1"), anything else with 6 digits.
        self._integral = all(np.all(np.mod(a, 1) == 0) for a in (x, k, np.array([bias])))
        self._y: NDArray[Any] | None = None

    # --- the numbers ------------------------------------------------------

    def output(self) -> NDArray[Any]:
        """The whole output, computed by :func:`ndconv.conv` (once, then kept)."""
        if self._y is None:
            from ..core.functional import conv

            self._y = conv(self.x[None, None], self.k[None, None],
                           bias=np.array([self.bias]), stride=self.stride,
                           padding=self.pairs, dilation=self.dilation,
                           padding_mode=self.mode)[0, 0]
        return self._y

    def check_index(self, index: Sequence[int]) -> tuple[int, ...]:
        """Return ``index`` as a tuple of ints inside the output, or raise ValueError."""
        if isinstance(index, (str, bytes)) or not hasattr(index, "__len__"):
            raise TypeError(f"`index` must be a sequence of ints, got {index!r}")
        idx = tuple(_args.ntuple(i, 1, "index")[0] for i in index)
        if len(idx) != self.x.ndim:
            raise ValueError(
                f"`index` (={idx}) has {len(idx)} indices but the output has "
                f"{self.x.ndim} dims (shape {self.out_shape})"
            )
        for d, (i, s) in enumerate(zip(idx, self.out_shape)):
            if not 0 <= i < s:
                raise ValueError(
                    f"`index` (={idx}): index {i} in dim {d} is outside the output "
                    f"(shape {self.out_shape}, so 0..{s - 1})"
                )
        return idx

    def terms(self, index: Sequence[int]) -> list[Term]:
        """The products behind ``y[index]``, one :class:`Term` per kernel tap."""
        o = self.check_index(index)
        out = []
        for a in itertools.product(*(range(s) for s in self.k.shape)):
            pos = tuple(oi * s + ai * d for oi, ai, s, d in zip(o, a, self.stride, self.dilation))
            src: list[int] = []
            zero_pad = False
            for p, size, (lo, _) in zip(pos, self.x.shape, self.pairs):
                i = p - lo  # in input coordinates: < 0 or >= size in the padding
                if 0 <= i < size:
                    src.append(i)
                elif self.mode == "zeros":
                    zero_pad = True
                    break
                else:
                    src.append(int(_windows.source_index(i, size, self.mode)[0]))
            source = None if zero_pad else tuple(src)
            xv = 0.0 if source is None else float(self.x[source])
            out.append(Term(pos, source, a, xv, float(self.k[a])))
        return out

    def value(self, index: Sequence[int]) -> float:
        """``y[index]`` as computed by :func:`ndconv.conv`."""
        return float(self.output()[self.check_index(index)])

    def total(self, index: Sequence[int]) -> tuple[float, list[Term]]:
        """The written-out sum (bias included), checked against :meth:`value`.

        Raises
        ------
        RuntimeError
            If the two differ: a bug in ndconv, never the user's input.
        """
        terms = self.terms(index)
        with np.errstate(over="ignore", invalid="ignore"):
            total = sum(t.x * t.k for t in terms) + self.bias
        expected = self.value(index)
        if not np.isclose(total, expected, rtol=1e-9, atol=1e-9, equal_nan=True):
            raise RuntimeError(f"explained sum {total} differs from ndconv.conv's {expected}")
        return expected, terms

    # --- the words --------------------------------------------------------

    def fmt(self, v: float, paren: bool = False) -> str:
        """A number as the lines print it: ``-1`` as ``(-1)`` inside a sum."""
        # An overflowed sum (1e308 + 1e308) is inf, which has no int form.
        s = f"{int(round(v))}" if self._integral and np.isfinite(v) else f"{v:.6g}"
        return f"({s})" if paren and s.startswith("-") else s

    def line(self, index: Sequence[int]) -> str:
        """``y[o] = x0xk0 + ... = value``, checked against ndconv.conv."""
        f = self.fmt
        expected, terms = self.total(index)
        s = " + ".join(f"{f(t.x, True)}x{f(t.k, True)}" for t in terms)
        if self.bias:
            s += f" + {f(self.bias, True)} (bias)"
        return f"y{_idx(self.check_index(index))} = {s} = {f(expected)}"

    def where(self, index: Sequence[int]) -> str:
        """Which input element (or ``pad``) and kernel tap each product uses."""
        return " + ".join(
            ("pad" if t.source is None else "x" + _idx(t.source)) + "*k" + _idx(t.tap)
            for t in self.terms(index))

    def padded(self) -> NDArray[np.float64]:
        """The padded input (allocates it: for small arrays)."""
        return _windows.pad(self.x[None, None], self.pairs, self.mode)[0, 0]

    def header(self) -> list[str]:
        """Shapes, the output-size formula per dim, the padded input and the output."""
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
        if any(lo or hi for lo, hi in self.pairs):
            xp = self.padded()
            lines.append(f"padded x: shape {xp.shape}")
            lines.append(np.array2string(xp, formatter={"float_kind": lambda v: f(float(v))}))
        lines.append(f"y: shape {self.out_shape}")
        lines.append(np.array2string(self.output(), formatter={"float_kind": lambda v: f(float(v))}))
        return lines

"""Argument normalisation and validation, shared by every public function.

Public functions validate here, once, and hand plain tuples to the private
computing code; nothing in this module allocates anything proportional to an
array's size, so a bad call fails before any large allocation.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _dtypes

if TYPE_CHECKING:
    from ._typing import ArrayLike, NDArray, Padding, Pairs, Shape

PADDING_STRINGS = ("valid", "same", "full")
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
FLOAT_DTYPES = _dtypes.FLOAT

#: Most elements an array may have: its bytes, at 16 per element (complex128,
#: the widest dtype), must be addressable by ``np.intp``.
MAX_ELEMENTS = int(np.iinfo(np.intp).max) // 16


def _as_int(value: Any, name: str) -> int:
    """``operator.index(value)`` with an error that names the argument."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be an int or a tuple of ints, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(
            f"`{name}` must be an int or a tuple of ints, got {value!r}"
        ) from None


def ntuple(
    value: Any, n: int, name: str, *, minimum: int | None = None, broadcast: bool = True
) -> Shape:
    """Return ``value`` as a tuple of ``n`` ints.

    Parameters
    ----------
    value : int or sequence of int
        One int (repeated ``n`` times), exactly ``n`` ints, or (with
        ``broadcast``) a one-element sequence, repeated as PyTorch's
        ``F.conv2d(..., stride=(2,))`` does.
    n : int
        Required length.
    name : str
        Argument name, for the error message.
    minimum : int, optional
        Smallest allowed value of every entry.
    broadcast : bool
        Expand a one-element sequence to ``n`` entries (hyper-parameters);
        False for indices and shapes, where ``(3,)`` in 2-D is a mistake.
    """
    if isinstance(value, (str, bytes)):
        raise TypeError(f"`{name}` must be an int or a tuple of ints, got {value!r}")
    if isinstance(value, (tuple, list)) or (isinstance(value, np.ndarray) and value.ndim):
        items = tuple(_as_int(v, name) for v in value)
        if broadcast and len(items) == 1:
            items = items * n
        elif len(items) != n:
            one = " (or a single entry for all)" if broadcast else ""
            raise ValueError(
                f"`{name}` (={tuple(value)!r}) must have one entry per spatial "
                f"dimension ({n}), got {len(items)}{one}"
            )
    else:
        items = (_as_int(value, name),) * n
    if minimum is not None and any(v < minimum for v in items):
        rule = "positive" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"`{name}` (={_show(value)}) must be {rule}")
    return items


def _show(value: Any) -> str:
    return repr(tuple(value)) if isinstance(value, (list, np.ndarray)) else repr(value)


def shape_tuple(value: Any, name: str, *, empty_ok: Collection[int] = ()) -> Shape:
    """A shape as a non-empty tuple of positive ints (an int is a 1-D shape).

    Entries at the indices in ``empty_ok`` may also be 0.
    """
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value,)
    if not isinstance(value, (tuple, list)) or not value:
        raise TypeError(f"`{name}` must be an int or a non-empty tuple of ints, got {value!r}")
    items = ntuple(value, len(value), name)
    if any(v < (0 if i in empty_ok else 1) for i, v in enumerate(items)):
        raise ValueError(f"`{name}` (={_show(value)}) must be positive")
    return items


def positive_int(value: Any, name: str) -> int:
    """Validate one positive int (``groups``, channel counts)."""
    v = _as_int(value, name)
    if v < 1:
        raise ValueError(f"`{name}` (={value!r}) must be a positive int")
    return v


def nonnegative_int(value: Any, name: str) -> int:
    """Validate one int >= 0 (a channel count that may be empty)."""
    v = _as_int(value, name)
    if v < 0:
        raise ValueError(f"`{name}` (={value!r}) must be a non-negative int")
    return v


def padding_pairs(
    padding: Padding,
    kernel_size: Sequence[int],
    dilation: Sequence[int],
    stride: Sequence[int] | None = None,
) -> Pairs:
    """Turn every padding form into ``((lo, hi), ...)``, one pair per spatial dim.

    Parameters
    ----------
    padding : int, sequence, or {'valid', 'same', 'full'}
        An int (all sides), one int per dim, a ``(lo, hi)`` pair per dim, or a
        string. ``'same'`` pads ``d*(k-1)`` in total with the extra element at
        the end, as PyTorch; ``'full'`` pads ``d*(k-1)`` on both sides.
    kernel_size, dilation : tuple of int
        Used by the string forms.
    stride : tuple of int, optional
        ``'same'`` is refused with a stride above 1, as in PyTorch.

    Returns
    -------
    tuple of (int, int)
    """
    n = len(kernel_size)
    if isinstance(padding, str):
        if padding not in PADDING_STRINGS:
            raise ValueError(
                f"`padding` (={padding!r}) must be an int, a tuple, or one of "
                f"{PADDING_STRINGS}"
            )
        total = [d * (k - 1) for k, d in zip(kernel_size, dilation)]
        if padding == "valid":
            return ((0, 0),) * n
        if padding == "full":
            return tuple((t, t) for t in total)
        if stride is not None and any(s != 1 for s in stride):
            raise ValueError(
                f"`padding`='same' is not supported with `stride` (={stride}) "
                "above 1: the output cannot have the input's size"
            )
        return tuple((t // 2, t - t // 2) for t in total)
    if isinstance(padding, (tuple, list)) and any(
        isinstance(p, (tuple, list)) for p in padding
    ):
        if len(padding) != n or not all(
            isinstance(p, (tuple, list)) and len(p) == 2 for p in padding
        ):
            raise ValueError(
                f"`padding` (={padding!r}) given as pairs must hold one (lo, hi) "
                f"pair per spatial dimension ({n})"
            )
        pairs = tuple((_as_int(lo, "padding"), _as_int(hi, "padding")) for lo, hi in padding)
    else:
        pairs = tuple((p, p) for p in ntuple(padding, n, "padding"))
    if any(v < 0 for pair in pairs for v in pair):
        raise ValueError(f"`padding` (={padding!r}) must be non-negative")
    return pairs


def check_padding_mode(padding_mode: str) -> str:
    if padding_mode not in PADDING_MODES:
        raise ValueError(
            f"`padding_mode` (={padding_mode!r}) must be one of {PADDING_MODES}"
        )
    return padding_mode


def check_mode_fits(spatial: Sequence[int], pairs: Pairs, padding_mode: str) -> None:
    """Refuse padding that the boundary mode cannot produce (PyTorch's rules)."""
    for i, (n, (lo, hi)) in enumerate(zip(spatial, pairs)):
        if padding_mode == "reflect" and max(lo, hi) >= n:
            raise ValueError(
                f"`padding_mode`='reflect' needs padding < input size in every "
                f"dim; dim {i} has size {n} and padding {(lo, hi)}"
            )
        if padding_mode == "circular" and max(lo, hi) > n:
            raise ValueError(
                f"`padding_mode`='circular' needs padding <= input size in every "
                f"dim (it wraps around once); dim {i} has size {n} and padding "
                f"{(lo, hi)}"
            )


def output_size(
    spatial: Sequence[int],
    kernel_size: Sequence[int],
    stride: Sequence[int],
    pairs: Pairs,
    dilation: Sequence[int],
) -> Shape:
    """Output size per dim, ``floor((S + lo + hi - d*(k-1) - 1) / s) + 1``.

    Raises ``ValueError`` naming the dim and showing the formula when the dilated
    kernel does not fit in the padded input.
    """
    out = []
    for i, (n, k, s, (lo, hi), d) in enumerate(
        zip(spatial, kernel_size, stride, pairs, dilation)
    ):
        span = n + lo + hi - d * (k - 1) - 1
        if span < 0:
            raise ValueError(
                f"kernel (dilated size {d * (k - 1) + 1}) is larger than the padded "
                f"input (size {n + lo + hi}) in spatial dim {i}: output size = "
                f"floor((S + lo + hi - d*(k-1) - 1)/s) + 1 = "
                f"floor(({n} + {lo} + {hi} - {d}*({k}-1) - 1)/{s}) + 1 = "
                f"{span // s + 1} (must be >= 1)"
            )
        out.append(span // s + 1)
    return tuple(out)


def pool_output_size(
    spatial: Sequence[int],
    kernel_size: Sequence[int],
    stride: Sequence[int],
    pairs: Pairs,
    dilation: Sequence[int],
    ceil_mode: bool,
) -> Shape:
    """Pooling's output size per dim (PyTorch's ``pooling_output_shape``, ONNX's pools).

    ``floor((S + lo + hi - d*(k-1) - 1) / s) + 1``, or ceil with ``ceil_mode``,
    where the last window must start inside the input or the left padding,
    never in the right padding. Raises ``ValueError`` naming the dim and
    showing the formula when the window does not fit.
    """
    out = []
    for i, (n, ki, si, (lo, hi), di) in enumerate(
        zip(spatial, kernel_size, stride, pairs, dilation)
    ):
        span = n + lo + hi - di * (ki - 1) - 1
        o = (span + (si - 1 if ceil_mode else 0)) // si + 1
        if ceil_mode and (o - 1) * si >= n + lo:
            o -= 1
        if o < 1:
            r = "ceil" if ceil_mode else "floor"
            raise ValueError(
                f"pooling window (dilated size {di * (ki - 1) + 1}) is larger than the "
                f"padded input (size {n + lo + hi}) in spatial dim {i}: output size = "
                f"{r}((S + lo + hi - d*(k-1) - 1)/s) + 1 = "
                f"{r}(({n} + {lo} + {hi} - {di}*({ki}-1) - 1)/{si}) + 1 = {o} (must be >= 1)"
            )
        out.append(o)
    return tuple(out)


def transposed_output_size(
    spatial: Sequence[int],
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    output_padding: Sequence[int],
    dilation: Sequence[int],
) -> Shape:
    """Output size per dim of a transposed convolution (PyTorch's ``ConvTranspose``).

    ``(S - 1)*s - 2*p + d*(k - 1) + output_padding + 1``; raises ``ValueError``
    naming the dim and showing the formula when it is not positive.
    """
    out = []
    for i, (n, k, s, p, op, d) in enumerate(
        zip(spatial, kernel_size, stride, padding, output_padding, dilation)
    ):
        size = (n - 1) * s - 2 * p + d * (k - 1) + op + 1
        if size < 1:
            raise ValueError(
                f"transposed convolution output size is not positive in spatial dim "
                f"{i}: (S-1)*s - 2*p + d*(k-1) + output_padding + 1 = "
                f"({n}-1)*{s} - 2*{p} + {d}*({k}-1) + {op} + 1 = {size}"
            )
        out.append(size)
    return tuple(out)


def check_padded_size(spatial: Sequence[int], pairs: Pairs) -> None:
    """Refuse a padding whose padded input no array could hold.

    For the functions that compute (``ndconv.plan`` and ``conv_output_shape``
    answer for hypothetical sizes too). The input exists, so only the padding
    can make it this large; an absurd padding would otherwise surface as a
    memory error or an index overflow far from the argument.
    """
    padded = [n + lo + hi for n, (lo, hi) in zip(spatial, pairs)]
    if math.prod(padded) > MAX_ELEMENTS:
        raise ValueError(
            f"`padding` {tuple(pairs)} is too large: the padded input would have "
            f"spatial shape {tuple(padded)}, {math.prod(padded):.3g} elements per "
            f"channel, more than an array can hold ({MAX_ELEMENTS:,}, so that its "
            "bytes are addressable)"
        )


def check_array(
    a: ArrayLike,
    name: str,
    *,
    floating: bool = True,
    dtypes: Sequence[np.dtype[Any]] | None = None,
    int_lists_as_float: bool | None = None,
) -> NDArray[Any]:
    """Return ``a`` as an ndarray of a supported dtype.

    ``floating=True`` (the default) accepts float32 and float64; otherwise
    every dtype of :func:`ndconv.core._dtypes.numeric` (``correlate``). ``dtypes``,
    if given, is the tuple of accepted dtypes instead. A Python list (not an
    ndarray) of ints becomes float64 when ``int_lists_as_float`` (default:
    ``floating``), a convenience as in NumPy; ndarrays keep their dtype.
    """
    if dtypes is None:
        dtypes = FLOAT_DTYPES if floating else _dtypes.numeric()
    if int_lists_as_float is None:
        int_lists_as_float = floating
    if isinstance(a, np.ndarray):
        arr = a
    else:
        if isinstance(a, (str, bytes)) or a is None:
            raise TypeError(f"`{name}` must be a numeric array, got {type(a).__name__}")
        try:
            arr = np.asarray(a)
        except (ValueError, TypeError) as exc:
            raise TypeError(f"`{name}` must be a numeric array: {exc}") from None
        if arr.dtype.kind in "iu" and int_lists_as_float and np.dtype(np.float64) in dtypes:
            arr = arr.astype(np.float64)
    if arr.dtype not in dtypes:
        raise TypeError(f"`{name}` must be {_dtypes.names(dtypes)}, got dtype {arr.dtype}")
    return arr


def check_no_empty(a: Any, name: str) -> None:
    # (the shape, not .size: a torch tensor's .size is a method)
    if any(n == 0 for n in a.shape):
        raise ValueError(f"`{name}` has an empty dimension (shape {tuple(a.shape)})")


def check_empty_dims(
    shape: Sequence[int], name: str, allowed: Collection[int], what: str
) -> None:
    """Refuse a zero-size dim of ``shape`` other than those in ``allowed``.

    PyTorch's rule for convolutions: the batch and the channels may be empty
    (the result is empty, or an empty sum), the spatial dims and the kernel may
    not. ``what`` names the allowed dims for the message.
    """
    for i, s in enumerate(shape):
        if s == 0 and i not in allowed:
            raise ValueError(
                f"`{name}` (shape {tuple(shape)}) is empty in dim {i}: only {what} may "
                "have size 0, as in PyTorch"
            )


def is_number(x: object) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


# --------------------------------------------------------------------------
# memos of validated calls (layers call the same shapes every step)

def exact_key(*values: Any) -> tuple[Any, ...] | None:
    """``values`` as a dict key, or None where equal keys could validate differently.

    Only exact ints (not bools: ``True == 1`` but ``True`` is refused), strs,
    None, tuples of them and tuples of tuples of ints (``(lo, hi)`` pairs)
    qualify; a float, NumPy scalar, list or array gives None, and such a
    call is validated afresh every time. A memo keyed by this (and by the
    arrays' shapes and dtypes) may therefore skip the validation of a call
    whose key it has seen validated: the same key would raise the same
    error, or none.
    """
    for v in values:
        t = type(v)
        if t is int or t is str or v is None:
            continue
        if t is not tuple:
            return None
        for e in v:
            te = type(e)
            if te is int:
                continue
            if te is not tuple:
                return None
            for f in e:
                if type(f) is not int:
                    return None
    return values


class Memo(dict):  # type: ignore[type-arg]
    """A small dict of prepared calls: cleared when full, so it stays bounded.

    Entries are immutable and written whole, so threads may share it (a dict
    read or write is atomic under the GIL).
    """

    #: Most entries before the memo starts afresh.
    SIZE = 256

    def put(self, key: Any, value: Any) -> None:
        if len(self) >= self.SIZE:
            self.clear()
        self[key] = value

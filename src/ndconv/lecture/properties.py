"""The two principles as measurable properties of a layer.

- :func:`translation_equivariance`: shifting the input shifts the output,
  ``f(shift(x)) == shift(f(x))``. With circular padding it holds exactly
  everywhere for a convolution; with zero padding it holds exactly on the
  interior, the outputs whose receptive field stays away from the border.
  Fully connected and locally connected layers fail it (their weights depend
  on the output position).
- :func:`locality`: the gradient of one output element with respect to every
  input outside its receptive field is exactly zero (the field comes from
  :func:`ndconv.plan.receptive_region`, or is given).

Both return a :class:`CheckResult` (truthy when the property holds) that says
how large the worst violation is and where.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from ..core import _args
from . import plan
from ..nn import Module

if TYPE_CHECKING:
    from ..core._typing import ArrayLike, IntOrTuple, NDArray, Pairs, Shape

    #: A layer to check: an ndconv Module, or any callable on (B, C, *S) arrays.
    Layer = Union[Module, Callable[[NDArray[Any]], ArrayLike]]

__all__ = ["CheckResult", "locality", "translation_equivariance"]


@dataclass(frozen=True)
class CheckResult:
    """The outcome of a property check.

    Attributes
    ----------
    holds : bool
    name : str
        The property checked.
    max_error : float
        Largest violation (0.0 when it holds exactly).
    where : tuple of int or None
        Index (in the output, or the input for locality) of the largest violation.
    compared : int
        Number of elements compared.
    tolerance : float
    """

    holds: bool
    name: str
    max_error: float
    where: tuple[int, ...] | None
    compared: int
    tolerance: float

    def __bool__(self) -> bool:
        return self.holds

    def __str__(self) -> str:
        verdict = "holds" if self.holds else "fails"
        s = (f"{self.name} {verdict}: max error {self.max_error:.3g} over {self.compared} "
             f"elements (tolerance {self.tolerance:.3g})")
        return s if self.holds else s + f", worst at {self.where}"


def _apply(f: Layer, x: NDArray[Any]) -> NDArray[Any]:
    y = f(x)
    y = np.asarray(y)
    if y.ndim != x.ndim:
        raise ValueError(
            f"the layer must map (B, C, *S) to (B, C', *S') with the same number of "
            f"dims; it mapped {x.shape} to {y.shape}"
        )
    return y


def _shift(a: NDArray[Any], shift: Sequence[int], circular: bool) -> NDArray[Any]:
    """Shift the trailing spatial dims by ``shift``; zero-fill unless circular."""
    n = len(shift)
    axes = tuple(range(a.ndim - n, a.ndim))
    out = np.roll(a, shift, axis=axes)
    if not circular:
        for ax, s in zip(axes, shift):
            band = [slice(None)] * a.ndim
            band[ax] = slice(0, s) if s >= 0 else slice(s, None)
            out[tuple(band)] = 0
    return out


def _check_x(x: ArrayLike, f: Layer) -> NDArray[Any]:
    x = _args.check_array(x, "x")
    if x.ndim < 3:
        raise ValueError(
            f"`x` must be a batch (B, C, *S) with at least one spatial dim, got shape {x.shape}"
        )
    if isinstance(f, Module):
        dt = next((p.dtype for p in f.parameters()), x.dtype)
        x = x.astype(dt, copy=False)
    elif not callable(f):
        raise TypeError(f"`layer` must be an ndconv.nn.Module or a callable, got {type(f).__name__}")
    return x


def _tol(y: NDArray[Any], atol: float | None) -> float:
    if atol is not None:
        return float(atol)
    eps = np.finfo(y.dtype).eps if y.dtype.kind == "f" else 0.0
    # Summation order may differ between positions (BLAS tiles): allow rounding.
    return float(64 * eps * (np.abs(y).max() + 1.0))


def _default_margin(layer: Module, in_shape: Shape, shift: Sequence[int]) -> Pairs:
    """``(lo, hi)`` per dim: the shift on its side, plus the field's reach.

    An output ``i`` is compared only if every layer's window around it sees the
    same values in ``shift(x)`` as around ``i - shift`` in ``x``; the field
    reaches ``below`` positions before ``i`` and ``above`` after it.
    """
    fld = plan.layer_rows(layer, in_shape)[-1]._state
    if not fld.known:
        raise ValueError("the layer's receptive field is unknown to plan: pass `margin`")
    if fld.whole:
        return tuple((n, n) for n in in_shape[1:])  # no interior: reported by the caller
    pairs = []
    for s, st, sz in zip(shift, fld.start, fld.size):
        below, above = max(-st, 0), max(st + sz - 1, 0)
        pairs.append((s + below, above) if s > 0 else (below, -s + above) if s < 0 else (0, 0))
    return tuple(pairs)


def translation_equivariance(
    layer: Layer,
    x: ArrayLike,
    shift: IntOrTuple = 1,
    *,
    boundary: str = "circular",
    margin: IntOrTuple | None = None,
    atol: float | None = None,
) -> CheckResult:
    """Check ``layer(shift(x)) == shift(layer(x))``.

    Parameters
    ----------
    layer : ndconv.nn.Module or callable
        Maps ``(B, C, *S)`` to ``(B, C', *S)`` (stride 1: the output has the
        input's spatial grid, as with ``padding='same'``).
    x : array_like, shape (B, C, *S)
    shift : int or tuple of int
        Shift per spatial dim.
    boundary : {'circular', 'zeros'}
        ``'circular'``: shifts wrap around (``np.roll``), compare everywhere.
        ``'zeros'``: shifted-in values are zero; compare only the interior,
        ``margin`` positions away from every border.
    margin : int or tuple of int, optional
        For ``'zeros'``: outputs this close to a border are not compared. By
        default, per side, the shift (on the side it enters) plus how far the
        receptive field (:func:`ndconv.plan.layer_rows`) reaches from the
        output's own position, which needs a Module. Within it, a shifted-in
        zero or a zero-padded border enters some layer's window differently.
    atol : float, optional
        Default: a few ulps of the output's magnitude.

    Returns
    -------
    CheckResult
    """
    x = _check_x(x, layer)
    n = x.ndim - 2
    shift = _args.ntuple(shift, n, "shift", broadcast=False)
    if boundary not in ("circular", "zeros"):
        raise ValueError(f"`boundary` (={boundary!r}) must be 'circular' or 'zeros'")
    circular = boundary == "circular"
    y = _apply(layer, x)
    if y.shape[2:] != x.shape[2:]:
        raise ValueError(
            f"the output's spatial shape {y.shape[2:]} must equal the input's "
            f"{x.shape[2:]} to compare shifts (use stride 1 and padding 'same')"
        )
    y_shifted_in = _apply(layer, _shift(x, shift, circular))
    y_then_shift = _shift(y, shift, circular)
    S = y.shape[2:]
    region: tuple[Any, ...]
    if circular:
        region = (Ellipsis,)
    else:
        if margin is None:
            if not isinstance(layer, Module):
                raise ValueError("`margin` is required with boundary='zeros' for a plain callable")
            sides = _default_margin(layer, x.shape[1:], shift)
        else:
            sides = tuple((m, m) for m in _args.ntuple(margin, n, "margin", minimum=0))
        if any(lo + hi >= s for (lo, hi), s in zip(sides, S)):
            raise ValueError(
                f"no interior is left: margins {sides} (lo, hi) of an output of "
                f"spatial size {S} (a receptive field as large as the input, as a "
                "fully connected layer's, has none: use boundary='circular')"
            )
        region = (Ellipsis, *[slice(lo, s - hi) for (lo, hi), s in zip(sides, S)])
    a, b = y_shifted_in[region], y_then_shift[region]
    err = np.abs(a - b)
    tol = _tol(y, atol)
    worst = np.unravel_index(int(np.argmax(err)), err.shape)
    offset = (0, 0) + (() if circular else tuple(sl.start for sl in region[1:]))
    where = tuple(int(i) + o for i, o in zip(worst, offset + (0,) * len(worst)))
    max_err = float(err.max())
    return CheckResult(bool(max_err <= tol), "translation equivariance", max_err, where,
                       int(err.size), tol)


def locality(
    layer: Module,
    x: ArrayLike,
    out_index: Sequence[int] | None = None,
    *,
    channel: int = 0,
    region: Sequence[ArrayLike] | None = None,
) -> CheckResult:
    """Check that an output element's gradient is exactly zero outside its receptive field.

    Parameters
    ----------
    layer : ndconv.nn.Module
        Needs ``forward`` and ``backward``. Parameter gradients it accumulates
        are restored afterwards.
    x : array_like, shape (B, C, *S)
    out_index : tuple of int, optional
        Spatial index of the output element (default: the middle of the output).
    channel : int
        Output channel of that element (of batch item 0).
    region : tuple of array_like, optional
        Input indices per spatial dim that may influence it; default
        :func:`ndconv.plan.receptive_region`.

    Returns
    -------
    CheckResult
        ``max_error`` is the largest ``|d y / d x|`` outside the field, over
        every input channel and batch item (other batch items are all outside).
    """
    if not isinstance(layer, Module):
        raise TypeError(f"`layer` must be an ndconv.nn.Module (it needs backward), got {type(layer).__name__}")
    x = _check_x(x, layer)
    n = x.ndim - 2
    y = _apply(layer, x)
    S_out = y.shape[2:]
    if out_index is None:
        out_index = tuple(s // 2 for s in S_out)
    out_index = _args.ntuple(out_index, len(S_out), "out_index", minimum=0, broadcast=False)
    if any(i >= s for i, s in zip(out_index, S_out)):
        raise ValueError(f"`out_index` (={out_index}) must lie in the output's spatial shape {S_out}")
    channel = _args._as_int(channel, "channel")
    if not 0 <= channel < y.shape[1]:
        raise ValueError(
            f"`channel` (={channel!r}) must be an output channel, 0..{y.shape[1] - 1}")
    if region is None:
        region = plan.receptive_region(layer, x.shape[1:], out_index)
    if len(region) != n:
        raise ValueError(f"`region` must hold one index array per spatial dim ({n}), got {len(region)}")
    g = np.zeros_like(y)
    g[(0, channel) + tuple(out_index)] = 1
    # Copies: Parameter.accumulate adds into an existing .grad in place.
    saved = [(p, None if p.grad is None else p.grad.copy()) for p in layer.parameters()]
    try:
        gx = layer.backward(g)
    finally:
        for p, grad in saved:
            p.grad = grad
    inside = np.ones((1,) * n, dtype=bool)
    for d, r in enumerate(region):
        m = np.zeros(x.shape[2 + d], dtype=bool)
        m[np.asarray(r, dtype=int)] = True
        shape = [1] * n
        shape[d] = m.size
        inside = inside & m.reshape(shape)
    outside = np.broadcast_to(~inside, x.shape[2:])
    mask = np.zeros(gx.shape, dtype=bool)
    mask[0] = outside  # batch item 0: outside the field
    mask[1:] = True  # other batch items: entirely outside
    vals = np.where(mask, np.abs(gx), 0)
    where = tuple(int(i) for i in np.unravel_index(int(np.argmax(vals)), vals.shape))
    max_err = float(vals.max())
    return CheckResult(max_err == 0.0, "locality", max_err, where if max_err else None,
                       int(mask.sum()), 0.0)

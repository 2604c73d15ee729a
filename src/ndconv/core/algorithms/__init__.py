"""Algorithms that compute one general cross-correlation (:class:`CorrSpec`).

Each algorithm is one :class:`~ndconv.algorithms.record.Algorithm` record at
the end of its own module (what it supports, how it runs, its cost estimate,
its error and NaN behaviour, its memory); :data:`ALGORITHMS` registers them.
:func:`run` dispatches to the chosen one; ``method='auto'`` asks
:func:`ndconv.algorithms.choose.choose` which. Nothing here names a method.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import _dtypes, _memory
from . import (depthwise, direct, fft, gemm, implicit, jax, scatter, separable, torch,
               winograd)
from .record import ARRAY_API, Algorithm, add_bias, padded_and_output_bytes, register
from .spec import CorrSpec

if TYPE_CHECKING:
    from .._typing import AnyArray, NDArray
    from .survey import Survey

#: ``{name: Algorithm}``, in the order the README's method table lists them.
ALGORITHMS = register(
    direct.ALGORITHM, gemm.ALGORITHM, fft.ALGORITHM, winograd.ALGORITHM,
    depthwise.ALGORITHM, implicit.ALGORITHM, scatter.ALGORITHM, separable.ALGORITHM,
    torch.ALGORITHM, jax.ALGORITHM,
)


def methods_for(library: str = "numpy") -> list[str]:
    """Names of the algorithms that compute on ``library``'s arrays, in table order.

    ``'numpy'``: every CPU algorithm; another library (``'torch'``, ``'jax'``,
    ``'cupy'``, ...): the portable ones and that library's native one.
    """
    return [name for name, algo in ALGORITHMS.items()
            if library in algo.arrays or (library != "numpy" and ARRAY_API in algo.arrays)]


#: Below this many bytes of input and output, skip the check against the
#: available memory (reading it costs more than a small convolution); a limit
#: the user set is always checked.
GUARD_BYTES: int = _memory.GUARD_BYTES


def check_memory(spec: CorrSpec, algo: Algorithm | None = None, x: AnyArray = None) -> None:
    """Refuse, before allocating, a correlation whose arrays cannot fit.

    Without ``algo``, counts the padded input and the output (the least any
    method holds at once), so a valid but enormous padding or input dilation
    is caught here rather than by the operating system; with ``algo``, what
    that method holds (its record's ``workspace_bytes``). Arrays on an
    accelerator (``x`` of a non-NumPy spec) are compared with the device's
    memory, never the host's.
    """
    free: _memory.Free = _memory.HOST
    if not spec.numpy and x is not None:
        free = _memory.device_free_memory(spec.library, x)
    if algo is None:
        _memory.guard(padded_and_output_bytes(spec),
                      f"a correlation of padded input {spec.padded_spatial} "
                      f"and output {spec.out_shape}", free)
    else:
        _memory.guard(algo.workspace_bytes(spec),
                      f"method {algo.name!r} on a correlation of padded input "
                      f"{spec.padded_spatial} and output {spec.out_shape}", free)


def execute(
    algo: Algorithm,
    x: NDArray[Any],
    w: NDArray[Any],
    spec: CorrSpec,
    data: Survey | None = None,
    bias: NDArray[Any] | None = None,
) -> NDArray[Any]:
    """``algo.run(x, w, spec)``, scaled by powers of two where its intermediates
    would overflow although the direct sum need not.

    ``data`` (a :class:`~ndconv.algorithms.survey.Survey`) supplies ``max|x|``
    when ``'auto'`` has already read it. Scaling by ``2**-e`` is exact (barring
    values below the dtype's normal range, far below the method's own
    rounding), so the result is the unscaled one's, times ``2**e`` back.
    ``bias`` (C_out,), if given, is added per output channel (by the
    algorithm's ``run_bias`` where it has one).
    """
    # NaN, Inf and overflow are values here, as in PyTorch: no RuntimeWarning.
    with np.errstate(invalid="ignore", over="ignore"):
        return _scaled_run(algo, x, _kernel_for(algo, w), spec, data, bias)


def _kernel_for(algo: Algorithm, w: AnyArray) -> AnyArray:
    """``w`` as ``algo`` reads it: C-contiguous unless it takes any layout."""
    if type(w) is np.ndarray and not (algo.any_kernel_layout or w.flags.c_contiguous):
        return np.ascontiguousarray(w)
    return w


def _unscaled_run(algo: Algorithm, x: NDArray[Any], w: NDArray[Any], spec: CorrSpec,
                  bias: NDArray[Any] | None) -> NDArray[Any]:
    """``algo``'s correlation plus ``bias`` (None: none), by its ``run_bias`` if any."""
    if bias is None:
        return algo.run(x, w, spec)
    if algo.run_bias is not None:
        return algo.run_bias(x, w, spec, bias)
    return add_bias(algo.run(x, w, spec), bias)


def _scaled_run(algo: Algorithm, x: NDArray[Any], w: NDArray[Any], spec: CorrSpec,
                data: Survey | None, bias: NDArray[Any] | None) -> NDArray[Any]:
    """The body of :func:`execute` (inside its ``errstate``)."""
    if algo.magnitude_growth is None or spec.dtype.kind != "f":
        return _unscaled_run(algo, x, w, spec, bias)
    from .survey import max_abs

    mx = data.max_abs if data is not None else max_abs(x)
    mw = data.w_max_abs if data is not None else max_abs(w)
    if not (math.isfinite(mx) and math.isfinite(mw)) or mx == 0 or mw == 0:
        return _unscaled_run(algo, x, w, spec, bias)
    if mx * mw * algo.magnitude_growth(spec) <= np.finfo(spec.dtype).max / 4:
        return _unscaled_run(algo, x, w, spec, bias)
    # (the bias after scaling back: scaled, it could fall below the normal range)
    ex, ew = math.frexp(mx)[1], math.frexp(mw)[1]
    out = algo.run(np.ldexp(x, -ex).astype(spec.dtype, copy=False),
                   np.ldexp(w, -ew).astype(spec.dtype, copy=False), spec)
    out = np.ldexp(out, ex + ew, out=out)
    return out if bias is None else add_bias(out, bias)


def run(x: AnyArray, w: AnyArray, spec: CorrSpec, method: str = "auto",
        bias: AnyArray | None = None) -> AnyArray:
    """Compute the correlation described by ``spec`` with ``method``.

    Half-precision arrays (float16, bfloat16) are computed in float32 and the
    result rounded back once (:func:`ndconv.core._dtypes.compute_dtype`); every
    algorithm therefore sees float32, float64, complex or integer specs only.
    ``bias`` (C_out,), NumPy arrays only: added per output channel, by the
    algorithm's ``run_bias`` where it has one (see :func:`execute`).
    """
    if bias is not None and not spec.numpy:
        raise TypeError("`bias` is added here for NumPy arrays only")
    cdt = _dtypes.compute_dtype(spec.dtype)
    if cdt != spec.dtype:
        if spec.numpy:
            out = run(x.astype(cdt), w.astype(cdt), dataclasses.replace(spec, dtype=cdt),
                      method, None if bias is None else bias.astype(cdt))
            return out.astype(spec.dtype)
        xp, lib_cdt = spec.xp, getattr(spec.xp, cdt.name)
        out = run(xp.astype(x, lib_cdt), xp.astype(w, lib_cdt),
                  dataclasses.replace(spec, dtype=cdt), method)
        return xp.astype(out, x.dtype)
    return _run(x, w, spec, method, bias)


def _run(x: AnyArray, w: AnyArray, spec: CorrSpec, method: str,
         bias: AnyArray | None) -> AnyArray:
    from .choose import choose_for

    check_memory(spec, x=x)
    # An empty batch or channel set (PyTorch accepts both): nothing to
    # compute, and a sum over no input channels is 0.
    empty = 0 in (spec.batch, spec.in_channels, spec.out_channels)
    data = None
    if method == "auto":
        if empty:
            return add_bias(_zeros(spec, x), bias)
        method, _, data = choose_for(spec, x, w)
    algo = ALGORITHMS.get(method)
    if algo is None:
        raise ValueError(
            f"`method` (={method!r}) must be 'auto' or one of {tuple(ALGORITHMS)}"
        )
    ok, why = algo.accepts(spec)
    if not ok:
        raise ValueError(f"`method`={method!r} cannot compute this correlation: {why}")
    if empty:
        return add_bias(_zeros(spec, x), bias)
    if algo.applies is not None:
        note = algo.applies(spec, w)
        if note:
            raise ValueError(f"`method`={method!r} cannot compute this correlation: {note}")
    check_memory(spec, algo, x)
    return execute(algo, x, w, spec, data, bias)


class Prepared:
    """What :func:`run` decides from a spec alone, kept for the calls that repeat it.

    A layer calls the same correlation every step; the memory checks, the
    chooser's ranking and the method's acceptance depend on the spec only
    (and on the memory limit in force), never on the arrays' values, so
    :func:`prepare` does them once and :func:`run_prepared` only computes.
    Whatever does depend on the values stays per call: a choice that the
    survey of the arrays could change (a method that mixes NaN/Inf or has
    its own error growth, a kernel-dependent method) is not prepared, and
    :func:`run_prepared` then takes the full path of :func:`run`.

    Attributes
    ----------
    spec : CorrSpec
    method : str
        The ``method`` asked for (``'auto'`` or a name).
    algo : Algorithm or None
        The algorithm that runs whatever the values; None: decide per call.
    """

    __slots__ = ("spec", "method", "algo", "call")

    def __init__(self, spec: CorrSpec, method: str, algo: Algorithm | None) -> None:
        self.spec, self.method, self.algo = spec, method, algo
        #: ``algo.prepared(spec)``: the call that computes without the dispatcher, or None.
        self.call = (None if algo is None or algo.prepared is None or algo.magnitude_growth
                     else algo.prepared(spec))


def _value_independent(algo: Algorithm, spec: CorrSpec) -> bool:
    """Whether ``'auto'`` would accept ``algo`` for ``spec`` on any arrays' values."""
    return (algo.applies is None and algo.error_growth is None
            and not algo.mixes_nonfinite(spec))


def prepare(spec: CorrSpec, method: str = "auto") -> Prepared:
    """The :class:`Prepared` decision for ``spec`` (NumPy arrays, no half precision).

    Only correlations small enough that no memory check applies without a
    user's limit (input, output and the method's workspace under
    :data:`GUARD_BYTES`) are prepared; others get ``algo=None``.
    """
    from .choose import _ranked

    if (not spec.numpy or _dtypes.compute_dtype(spec.dtype) != spec.dtype
            or 0 in (spec.batch, spec.in_channels, spec.out_channels)
            or padded_and_output_bytes(spec) > GUARD_BYTES):
        return Prepared(spec, method, None)
    if method == "auto":
        algo: Algorithm | None = ALGORITHMS[_ranked(spec)[0][0][0]]  # the cost model's pick
        if algo is not None and not _value_independent(algo, spec):
            algo = None
    else:
        algo = ALGORITHMS.get(method)
        if algo is not None and (not algo.accepts(spec)[0] or algo.applies is not None):
            algo = None  # run() raises (or checks the kernel) every call
    if algo is not None and algo.workspace_bytes(spec) > GUARD_BYTES:
        algo = None
    return Prepared(spec, method, algo)


def run_prepared(prepared: Prepared, x: AnyArray, w: AnyArray,
                 bias: AnyArray | None = None) -> AnyArray:
    """``run(x, w, prepared.spec, prepared.method)`` plus ``bias`` (C_out,) per
    output channel, skipping what ``prepare`` decided.

    The memory checks are skipped only while no limit is set (a limit set
    since, by :func:`ndconv.plan.memory_limit` or the environment, is
    checked as :func:`run` would).
    """
    algo = prepared.algo
    if algo is None or _memory.has_explicit_limit():
        return run(x, w, prepared.spec, prepared.method, bias)
    if prepared.call is not None:
        out = prepared.call(x, _kernel_for(algo, w), bias)
        if out is not None:
            return out
    return execute(algo, x, w, prepared.spec, bias=bias)


def _zeros(spec: CorrSpec, x: AnyArray) -> AnyArray:
    """The (empty or all-zero) result, in ``x``'s library and on its device."""
    if spec.numpy:
        return np.zeros(spec.out_shape, dtype=spec.dtype)
    return spec.xp.zeros(spec.out_shape, dtype=x.dtype, device=getattr(x, "device", None))


__all__ = ["ALGORITHMS", "Algorithm", "CorrSpec", "Prepared", "check_memory", "methods_for",
           "prepare", "run", "run_prepared"]

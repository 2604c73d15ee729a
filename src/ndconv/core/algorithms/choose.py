"""Pick an algorithm for a correlation, and say why.

A cost model estimates each supported algorithm's time from the arguments
alone (each record's ``estimate``), with rates calibrated on the development
machine (2 cores of an AVX-512 Xeon, OpenBLAS; see
:data:`ndconv.algorithms.cost.RATES`); ``measure=True`` times the
plausible candidates on the actual arrays instead, as
``scipy.signal.choose_conv_method(measure=True)``. An algorithm whose
``supports(spec)`` says no is never chosen.
"""

from __future__ import annotations

import functools
import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import _memory
from . import ALGORITHMS, survey
from .cost import RATES  # noqa: F401  (re-exported: documented here before)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from .._typing import NDArray
    from .record import Algorithm
    from .spec import CorrSpec

    #: ``((method, seconds), ...)`` fastest first, and ``((method, why unsupported), ...)``.
    Ranked = tuple[tuple[tuple[str, float], ...], tuple[tuple[str, str], ...]]


def estimate(method: str, spec: CorrSpec) -> float:
    """Estimated seconds of ``method`` for ``spec`` on the calibrated machine."""
    return ALGORITHMS[method].estimate(spec)


def candidates(spec: CorrSpec) -> tuple[dict[str, float], dict[str, str]]:
    """``({method: estimated seconds}, {method: reason unsupported})``."""
    est: dict[str, float] = {}
    no: dict[str, str] = {}
    for name, algo in ALGORITHMS.items():
        ok, why = algo.accepts(spec)
        if not ok:
            no[name] = why
        else:
            est[name] = algo.estimate(spec)
    return est, no


def _fmt(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms"


@functools.lru_cache(maxsize=512)
def _ranked(spec: CorrSpec) -> Ranked:
    """``(((method, seconds), ...) fastest first, ((method, why unsupported), ...))``.

    Specs repeat (a layer per step), so the estimates are remembered.
    """
    est, no = candidates(spec)
    return tuple(sorted(est.items(), key=lambda kv: kv[1])), tuple(no.items())


def _fits(algo: Algorithm, spec: CorrSpec) -> bool:
    """Whether the memory ``algo`` holds for ``spec`` is within the limit in force."""
    nbytes = algo.workspace_bytes(spec)
    if nbytes <= _memory.GUARD_BYTES and not _memory.has_explicit_limit():
        return True
    if not spec.numpy and not _memory.has_explicit_limit():
        return True  # not the host's memory: the device's is checked when it runs
    limit, _ = _memory.get_memory_limit()
    return limit is None or nbytes <= limit


def _refuse_memory(spec: CorrSpec, names: Iterable[str]) -> None:
    """Raise MemoryLimitError for the method among ``names`` holding the least."""
    least = min(names, key=lambda k: ALGORITHMS[k].workspace_bytes(spec))
    _memory.check(ALGORITHMS[least].workspace_bytes(spec),
                  f"the correlation with output {spec.out_shape} (method {least!r}, "
                  "the least memory of the methods that support it)")


def skip_note(algo: Algorithm, spec: CorrSpec, data: survey.Survey | None) -> str | None:
    """Why ``'auto'`` must not run ``algo`` on these arrays (None: it may)."""
    if data is None:
        # Without the arrays, a method that depends on the kernel's values
        # cannot be known to apply.
        return None if algo.applies is None else "it depends on the kernel's values"
    return (survey.nonfinite_note(algo, spec, data) or survey.error_note(algo, spec, data)
            or (algo.applies(spec, data.w) if algo.applies is not None else None))


def choose_for(
    spec: CorrSpec, x: NDArray[Any] | None, w: NDArray[Any] | None
) -> tuple[str, dict[str, str], survey.Survey | None]:
    """The method ``'auto'`` runs on ``x`` and ``w``, and what it left out.

    The fastest estimated method that fits the memory limit, keeps NaN/Inf
    where the windows see them, and keeps every output within the direct
    formula's error bound (:mod:`ndconv.algorithms.survey`; the arrays are
    read only if the cost model's pick needs it).

    Returns
    -------
    method : str
    skipped : dict
        ``{method: why}`` for the faster methods left out.
    data : Survey
        What was read from the arrays (reused to scale them, see ``run``).

    Raises
    ------
    MemoryLimitError
        No supported method fits the memory limit.
    """
    ranked, _ = _ranked(spec)
    data = survey.Survey(x, w, spec) if x is not None and w is not None else None
    skipped: dict[str, str] = {}
    for name, _ in ranked:
        algo = ALGORITHMS[name]
        if not _fits(algo, spec):
            skipped[name] = (f"it would hold {_memory.format_bytes(algo.workspace_bytes(spec))}, "
                             "over the memory limit")
            continue
        note = skip_note(algo, spec, data)
        if note:
            skipped[name] = note
            continue
        return name, skipped, data
    _refuse_memory(spec, [k for k, _ in ranked])
    raise AssertionError("unreachable: the direct sum fits wherever its memory does")


def _random_arrays(spec: CorrSpec) -> tuple[NDArray[Any], NDArray[Any]]:
    """Gaussian arrays of the spec's shapes, refused first if they cannot fit."""
    xs = (spec.batch, spec.in_channels, *spec.in_spatial)
    ws = (spec.out_channels, spec.in_channels // spec.groups, *spec.kernel_size)
    _memory.guard((math.prod(xs) + math.prod(ws)) * (8 + spec.dtype.itemsize),
                  f"random arrays of shapes {xs} and {ws} to time the methods on")
    rng = np.random.default_rng(0)
    return (rng.standard_normal(xs).astype(spec.dtype),
            rng.standard_normal(ws).astype(spec.dtype))


def _timed(algo: Algorithm, x: NDArray[Any], w: NDArray[Any], spec: CorrSpec) -> float:
    from . import execute

    best = math.inf
    for _ in range(2):
        t0 = time.perf_counter()
        execute(algo, x, w, spec)
        best = min(best, time.perf_counter() - t0)
    return best


def _notes(no: Iterable[tuple[str, str]], skipped: Mapping[str, str]) -> str:
    parts = [f"{k} ruled out: {v}" for k, v in no]
    parts += [f"{k} left out: {v}" for k, v in skipped.items()]
    return "".join(f"; {p}" for p in parts)


def choose(
    spec: CorrSpec,
    measure: bool = False,
    x: NDArray[Any] | None = None,
    w: NDArray[Any] | None = None,
) -> tuple[str, str]:
    """Return ``(method, reason)`` for the correlation ``spec``.

    Parameters
    ----------
    spec : CorrSpec
    measure : bool
        Time the candidates whose estimate is within 10x of the best (each
        run twice, the faster kept) instead of trusting the estimates.
    x, w : ndarray, optional
        The arrays: with them the choice is the one ``method='auto'`` makes on
        them (methods that would spread their NaN/Inf, break the direct
        formula's error bound or exceed the memory limit are left out, and
        the reason says why); ``measure`` times on them, or on random arrays
        of the spec's shapes without them.

    Returns
    -------
    method : str
    reason : str
        The winner's estimated (or measured) time, the others', and why
        any algorithm was ruled out or left out.
    """
    if not measure:
        if x is None or w is None:
            return _choose_cached(spec)
        method, skipped, _ = choose_for(spec, x, w)
        return method, _reason(spec, method) + _notes(_ranked(spec)[1], skipped)
    from . import check_memory

    check_memory(spec, x=x)
    ranked, no = _ranked(spec)
    data = survey.Survey(x, w, spec) if x is not None and w is not None else None
    best_est = ranked[0][1]
    pool: list[str] = []
    skipped = {}
    for k, v in ranked:
        if v > 10 * best_est:
            continue
        if not _fits(ALGORITHMS[k], spec):
            skipped[k] = "over the memory limit"
        elif note := skip_note(ALGORITHMS[k], spec, data):
            skipped[k] = note
        else:
            pool.append(k)
    if not pool:
        _refuse_memory(spec, [k for k, _ in ranked])
    if x is None or w is None:
        x, w = _random_arrays(spec)
    times = {k: _timed(ALGORITHMS[k], x, w, spec) for k in pool}
    method = min(times, key=times.__getitem__)
    others = ", ".join(
        f"{k} {_fmt(v)}" for k, v in sorted(times.items(), key=lambda kv: kv[1]) if k != method
    )
    reason = f"measured {_fmt(times[method])}, fastest of: {others or 'no other'}"
    slow = [k for k, v in ranked if v > 10 * best_est]
    if slow:
        reason += f" (not timed, estimated >10x slower: {', '.join(slow)})"
    return method, reason + _notes(no, skipped)


def _reason(spec: CorrSpec, method: str) -> str:
    ranked, _ = _ranked(spec)
    est = dict(ranked)
    others = ", ".join(f"{k} {_fmt(v)}" for k, v in ranked if k != method)
    return (
        f"estimated {_fmt(est[method])} ({ALGORITHMS[method].reason(spec)}); others "
        f"estimated: {others or 'none'}"
    )


@functools.lru_cache(maxsize=512)
def _choose_cached(spec: CorrSpec) -> tuple[str, str]:
    """The cost-model choice from the arguments alone."""
    ranked, no = _ranked(spec)
    method = ranked[0][0]
    return method, _reason(spec, method) + _notes(no, {})

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

import numpy as np

from . import ALGORITHMS
from .cost import RATES  # noqa: F401  (re-exported: documented here before)


def estimate(method, spec):
    """Estimated seconds of ``method`` for ``spec`` on the calibrated machine."""
    return ALGORITHMS[method].estimate(spec)


def candidates(spec):
    """``({method: estimated seconds}, {method: reason unsupported})``."""
    est, no = {}, {}
    for name, algo in ALGORITHMS.items():
        ok, why = algo.accepts(spec)
        if not ok:
            no[name] = why
        else:
            est[name] = algo.estimate(spec)
    return est, no


def _fmt(seconds):
    return f"{seconds * 1e3:.3g} ms"


def _timed(algo, x, w, spec):
    best = math.inf
    for _ in range(2):
        t0 = time.perf_counter()
        algo.run(x, w, spec)
        best = min(best, time.perf_counter() - t0)
    return best


def choose(spec, measure=False, x=None, w=None):
    """Return ``(method, reason)`` for the correlation ``spec``.

    Parameters
    ----------
    spec : CorrSpec
    measure : bool
        Time the candidates whose estimate is within 10x of the best (each
        run twice, the faster kept) instead of trusting the estimates.
    x, w : ndarray, optional
        Arrays to time with; random ones of the spec's shapes otherwise.

    Returns
    -------
    method : str
    reason : str
        The winner's estimated (or measured) time, the others', and why
        any algorithm was ruled out.
    """
    if not measure:
        return _choose_cached(spec)
    est, no = candidates(spec)
    best_est = min(est.values())
    pool = [k for k, v in est.items() if v <= 10 * best_est]
    if x is None or w is None:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((spec.batch, spec.in_channels, *spec.in_spatial))
        w = rng.standard_normal(
            (spec.out_channels, spec.in_channels // spec.groups, *spec.kernel_size)
        )
        x, w = x.astype(spec.dtype), w.astype(spec.dtype)
    times = {k: _timed(ALGORITHMS[k], x, w, spec) for k in pool}
    method = min(times, key=times.get)
    others = ", ".join(
        f"{k} {_fmt(v)}" for k, v in sorted(times.items(), key=lambda kv: kv[1]) if k != method
    )
    reason = f"measured {_fmt(times[method])}, fastest of: {others or 'no other'}"
    skipped = [k for k in est if k not in pool]
    if skipped:
        reason += f" (not timed, estimated >10x slower: {', '.join(skipped)})"
    ruled = "; ".join(f"{k} ruled out: {v}" for k, v in no.items())
    return method, reason + (f"; {ruled}" if ruled else "")


@functools.lru_cache(maxsize=512)
def _choose_cached(spec):
    """The cost-model choice; specs repeat (a layer per step), so remember it."""
    est, no = candidates(spec)
    method = min(est, key=est.get)
    others = ", ".join(
        f"{k} {_fmt(v)}" for k, v in sorted(est.items(), key=lambda kv: kv[1]) if k != method
    )
    reason = (
        f"estimated {_fmt(est[method])} ({ALGORITHMS[method].reason(spec)}); others estimated: "
        f"{others or 'none'}"
    )
    ruled = "; ".join(f"{k} ruled out: {v}" for k, v in no.items())
    return method, reason + (f"; {ruled}" if ruled else "")

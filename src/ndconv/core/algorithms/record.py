"""What ndconv knows about one algorithm, in one record, and the registry of them.

Each algorithm module ends with ``ALGORITHM = Algorithm(...)``: what it
supports, how to run it, what it costs, why it is fast where it is chosen, how
its rounding error and intermediate magnitudes grow, whether it lets a NaN or
Inf reach outputs whose window misses it, what memory it holds and which array
library it computes on. The chooser (:mod:`ndconv.algorithms.choose`) and the
dispatcher (:func:`ndconv.algorithms.run`) read only these fields, so adding
an algorithm is adding a module and one line to the registry, and no code
anywhere else names a method.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from .spec import CorrSpec


#: In :attr:`Algorithm.arrays`: runs on the arrays of any array-API library.
ARRAY_API = "array-api"


def never(spec: CorrSpec) -> bool:
    """For :attr:`Algorithm.mixes_nonfinite`: each output sums only its own window."""
    return False


def always(spec: CorrSpec) -> bool:
    """For :attr:`Algorithm.mixes_nonfinite`: a transform mixes a whole block."""
    return True


def add_bias(out: Any, bias: Any) -> Any:
    """``out`` (B, C, *S) plus ``bias`` (C,) per channel, in place (None: nothing)."""
    if bias is not None:
        out += bias.reshape((-1,) + (1,) * (out.ndim - 2))  # in place: out is ours
    return out


def padded_and_output_bytes(spec: CorrSpec) -> int:
    """Bytes of the padded input and of the output: what every method holds at least."""
    return spec.dtype.itemsize * (
        spec.batch * spec.in_channels * math.prod(spec.padded_spatial)
        + spec.batch * spec.out_channels * math.prod(spec.out_spatial)
    )


@dataclass(frozen=True)
class Algorithm:
    """One algorithm computing a :class:`~ndconv.algorithms.CorrSpec`.

    Parameters
    ----------
    name : str
        The ``method=`` name.
    supports : callable
        ``supports(spec) -> (bool, reason)``; the reason is a sentence either way.
    run : callable
        ``run(x, w, spec) -> ndarray`` of ``spec.out_shape``.
    estimate : callable
        ``estimate(spec) -> seconds`` on the calibrated machine
        (:data:`ndconv.algorithms.cost.RATES`). Required: a method without an
        estimate could never be chosen by ``'auto'``, so registering one is an
        error.
    reason : callable
        ``reason(spec) -> str``: why this method is fast for ``spec``, quoted by
        :func:`ndconv.choose_method` when it wins.
    mixes_nonfinite : callable
        ``mixes_nonfinite(spec) -> bool``: True when a NaN or Inf in the input
        can reach outputs whose window does not contain it (a transform or a
        kernel laid on a grid with zeros, ``0 * Inf = NaN``). ``'auto'`` avoids
        such a method when the arrays hold NaN or Inf.
    error_growth : callable or None
        None when every output's rounding error is bounded as the direct sum's,
        ``~ n * eps * sum|x||w|`` over that output's own window (``n`` terms).
        Otherwise ``error_growth(spec) -> g``: an output's error is about
        ``g * eps * max|x| * ||w||_2``, with ``max|x|`` over the block the
        method mixes. ``'auto'`` uses such a method only when
        ``g * R * spread <= n``, ``R`` being the input's dynamic range and
        ``spread`` the kernel's ``||w||_2 / sum|w|``
        (:mod:`ndconv.algorithms.survey`).
    magnitude_growth : callable or None
        None when intermediate values are partial sums of the direct formula's
        terms (they overflow only where the direct sum may). Otherwise
        ``magnitude_growth(spec) -> G``: intermediates stay below
        ``G * max|x| * max|w|``; where that would overflow the dtype, the
        dispatcher scales ``x`` and ``w`` by powers of two (exact) first.
    workspace_bytes : callable
        ``workspace_bytes(spec) -> int``: peak bytes the method holds while it
        runs, inputs excluded (padded copies, buffers, the output). The memory
        guard checks this for the method that will run, and ``'auto'`` skips
        methods that would not fit.
    applies : callable or None
        None when the method computes every correlation its ``supports``
        accepts. Otherwise ``applies(spec, w) -> None or why not``: the method
        depends on the kernel's values too (a separable kernel); ``'auto'``
        asks it with the arrays in hand, and a forced method that does not
        apply is refused.
    run_bias : callable or None
        ``run_bias(x, w, spec, bias) -> ndarray``: ``run`` plus ``bias`` (C_out,)
        per output channel, added as the output is written (a compiled kernel:
        no second pass over the output). None: the bias is added after ``run``.
    prepared : callable or None
        ``prepared(spec) -> call or None``: for a correlation that repeats
        (a layer's, every step), ``call(x, w, bias) -> ndarray`` computes
        ``run_bias`` (``bias`` may be None) with whatever depends on ``spec``
        alone found once (a compiled kernel and its index), and without the
        dispatcher's NumPy error state (the call raises no floating-point
        warnings); ``call`` returns None to decline (numba hidden since).
        None: the prepared call goes through :func:`ndconv.algorithms.execute`.
    any_kernel_layout : bool
        True when ``run`` reads a NumPy kernel of any memory layout in place
        (the weight gradient's kernel is ``grad_out`` with its batch and
        channel axes swapped, a view). False: the dispatcher hands it a
        C-contiguous kernel, copying one that is not.
    arrays : tuple of str
        The array libraries ``run`` computes on: ``("numpy",)`` for the CPU
        algorithms (BLAS, SciPy, numba, ``as_strided``), which need NumPy
        arrays; :data:`ARRAY_API` for code written against the array API
        standard (any library's arrays, through ``spec.xp``); a library's
        name (``"torch"``, ``"jax"``) for its native convolution.
    """

    name: str
    supports: Callable[[CorrSpec], tuple[bool, str]]
    run: Callable[[Any, Any, CorrSpec], Any]
    estimate: Callable[[CorrSpec], float]
    reason: Callable[[CorrSpec], str]
    mixes_nonfinite: Callable[[CorrSpec], bool] = never
    error_growth: Optional[Callable[[CorrSpec], float]] = None
    magnitude_growth: Optional[Callable[[CorrSpec], float]] = None
    workspace_bytes: Callable[[CorrSpec], int] = padded_and_output_bytes
    applies: Optional[Callable[[CorrSpec, Any], Optional[str]]] = None
    run_bias: Optional[Callable[[Any, Any, CorrSpec, Any], Any]] = None
    any_kernel_layout: bool = False
    arrays: tuple[str, ...] = ("numpy",)
    prepared: Optional[Callable[[CorrSpec], Optional[Callable[[Any, Any, Any], Any]]]] = None

    @property
    def needs_numpy(self) -> bool:
        """True for an algorithm that computes on NumPy arrays only."""
        return self.arrays == ("numpy",)

    def accepts(self, spec: CorrSpec) -> tuple[bool, str]:
        """``supports(spec)``, after checking that it computes on ``spec``'s library.

        The chooser and the dispatcher ask this; ``supports`` itself need
        not know about array libraries.
        """
        lib = spec.library
        if lib not in self.arrays and (lib == "numpy" or ARRAY_API not in self.arrays):
            if self.needs_numpy:
                return False, f"needs NumPy arrays (CPU code), not {lib} arrays"
            return False, f"computes on {' or '.join(self.arrays)} arrays, not {lib} arrays"
        return self.supports(spec)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"algorithm `name` (={self.name!r}) must be an identifier")
        for field in ("supports", "run", "estimate", "reason", "mixes_nonfinite",
                      "workspace_bytes"):
            if not callable(getattr(self, field)):
                raise TypeError(
                    f"algorithm {self.name!r}: `{field}` (={getattr(self, field)!r}) must "
                    "be callable" + (" (a method without a cost estimate could never be "
                                     "chosen by 'auto')" if field == "estimate" else "")
                )
        for field in ("error_growth", "magnitude_growth", "applies", "prepared"):
            value = getattr(self, field)
            if value is not None and not callable(value):
                raise TypeError(
                    f"algorithm {self.name!r}: `{field}` (={value!r}) must be callable or None"
                )
        if not isinstance(self.arrays, tuple) or not self.arrays:
            raise TypeError(
                f"algorithm {self.name!r}: `arrays` (={self.arrays!r}) must be a non-empty tuple"
            )


def register(*algorithms: Algorithm) -> dict[str, Algorithm]:
    """``{name: Algorithm}`` from records, refusing anything that is not a full record.

    Raises
    ------
    TypeError
        An entry is not an :class:`Algorithm` (a module without ``ALGORITHM``,
        or a record missing its estimate, fails here, at import).
    ValueError
        Two records share a name.
    """
    table: dict[str, Algorithm] = {}
    for algo in algorithms:
        if not isinstance(algo, Algorithm):
            raise TypeError(f"{algo!r} is not an Algorithm record")
        if algo.name in table:
            raise ValueError(f"two algorithms are named {algo.name!r}")
        table[algo.name] = algo
    return table

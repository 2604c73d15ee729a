"""The lecture as an explorable report: what ``ndconv tour`` writes.

Ten sections in the lecture's order, one module each; every number, table and
figure is computed by ndconv while the report is built, on real data bundled
with installed packages (scikit-image, scikit-learn, PyWavelets, nibabel):

 1. :mod:`~ndconv.report.why_not_mlp`  the cost of a fully connected layer
 2. :mod:`~ndconv.report.derivation`   fully connected -> re-index -> tie -> localize
 3. :mod:`~ndconv.report.invariance`   translation invariance, seen
 4. :mod:`~ndconv.report.locality`     locality, seen
 5. :mod:`~ndconv.report.layer`        the 2-D layer, with the interactive worked example
 6. :mod:`~ndconv.report.photo`        kernels on a photo
 7. :mod:`~ndconv.report.learn`        learning the kernel back
 8. :mod:`~ndconv.report.dims`         1-D (an ECG) and 3-D (an MRI volume)
 9. :mod:`~ndconv.report.claim`        MLP vs locally connected vs CNN, measured
10. :mod:`~ndconv.report.digits`       a CNN on the digits

:func:`build` runs the chosen sections into a folder and writes
``index.html`` (self-contained: style and script inline, MathML equations,
figures as 2x PNGs in ``figures/``). It needs the ``cli`` extra (matplotlib,
Pillow, the data packages); a section whose third-party library is missing is
skipped with a line that names the extra to install.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable, Iterable
from types import ModuleType

from ..core._extras import missing_message
from ._page import Section, Skip, render

__all__ = ["SECTIONS", "Skip", "build", "section_steps", "section_title"]

#: The section modules, in the lecture's order (section i is SECTIONS[i - 1]).
SECTIONS = ("why_not_mlp", "derivation", "invariance", "locality", "layer", "photo", "learn",
            "dims", "claim", "digits")


def _module(number: int) -> ModuleType:
    return importlib.import_module(f"{__name__}.{SECTIONS[number - 1]}")


def section_title(number: int) -> str:
    """``"3. Translation invariance, seen"``."""
    return f"{number}. {_module(number).TITLE}"


def section_steps(numbers: Iterable[int], quick: bool) -> int:
    """Progress steps the chosen sections will take (the progress display's total)."""
    return sum(_module(i).steps(quick) for i in numbers)


def build(folder: str, numbers: Iterable[int] | None = None, *, quick: bool = False,
          seed: int = 0, log: Callable[[str], object] = print,
          step: Callable[[int, str], object] | None = None,
          debug: bool = False) -> list[tuple[Section, str, float]]:
    """Run the sections ``numbers`` (default all) and write ``folder/index.html``.

    Parameters
    ----------
    folder : str
        An existing, empty folder (the caller makes it and moves it into place).
    numbers : sequence of int, optional
        Section numbers, 1 to 10.
    quick : bool
        Less data and shorter training; results that have not converged say so.
    seed : int
        Seeds the data splits, weights and shuffling.
    log : callable
        ``log(line)`` for the console summary.
    step : callable, optional
        ``step(section_number, what)``, called after every step of a section
        (the progress display); :func:`section_steps` is their total.
    debug : bool
        Re-raise a failing section's exception instead of reporting it.

    Returns
    -------
    list of (Section, status, seconds)
        ``status`` is ``'ok'``, ``'skipped: why'`` or ``'failed: Error: message'``:
        one broken section never loses the others.
    """
    numbers = list(range(1, len(SECTIONS) + 1)) if numbers is None else list(numbers)
    results: list[tuple[Section, str, float]] = []
    start = time.perf_counter()
    for number in numbers:
        mod = _module(number)
        title = section_title(number)
        log(title)
        s = Section(number, title, folder, quick, seed, log,
                    (lambda what, n=number: step(n, what))  # type: ignore[misc]
                    if step else (lambda what: None))
        t0 = time.perf_counter()
        try:
            mod.run(s)
            status = "ok"
        except Skip as exc:
            status = f"skipped: {exc}"
        except Exception as exc:  # one broken section must not lose the others
            # A third-party library that is not installed skips the section and
            # names the extra; anything else, an ndconv module that does not
            # import included, is a failure (a bug, never hidden as "skipped").
            missing = missing_message(exc) if isinstance(exc, ImportError) else None
            if missing is not None:
                status = f"skipped: {missing}"
            elif debug:
                raise
            else:
                status = f"failed: {type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - t0
        log(f"  {status}" if status != "ok" else f"  ({seconds:.1f} s)")
        results.append((s, status, seconds))
    total = time.perf_counter() - start
    what = (f"all {len(SECTIONS)} sections" if numbers == list(range(1, len(SECTIONS) + 1))
            else "section" + ("s " if len(numbers) > 1 else " ") + ", ".join(map(str, numbers)))
    page = render(results, quick=quick, seconds=total, sections_run=what)
    with open(os.path.join(folder, "index.html"), "w", encoding="utf-8") as f:
        f.write(page)
    return results

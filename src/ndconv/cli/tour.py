"""``ndconv tour``: the lecture as an explorable HTML report (:mod:`ndconv.report`).

This module is the command only: it checks the arguments and the target
folder, shows the progress (one step at a time, also while networks train)
and moves the finished report into place. The sections themselves, and the
page, live in :mod:`ndconv.report`.

The report goes to ``--out DIR`` (refused if ``DIR/index.html`` exists, unless
``--force``) or, by default, to a fresh folder ``./ndconv-tour`` (then
``./ndconv-tour-2``, ``-3``, ... when that exists): earlier reports are never
overwritten. It is built in a temporary folder beside the target and moved
into place at the end, so a failed run leaves no half-written report; with
``--force`` the old ``index.html`` and ``figures/`` are replaced as a whole,
so no figure of an earlier run is left behind.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from typing import TYPE_CHECKING

from . import _parse
from ._errors import UsageError

if TYPE_CHECKING:
    import argparse

HELP = "the lecture as an explorable HTML report, computed on real bundled data"

EXAMPLES = """\
sections (the lecture's order):
  1 why not an MLP (parameter counts)    6 kernels on a photo (scikit-image)
  2 the derivation (ndconv.derive)       7 learning the kernel [1, -1] back
  3 translation invariance, seen         8 1-D: an ECG, 3-D: an MRI volume
  4 locality, seen                       9 the claim: MLP vs locally connected vs CNN
  5 the 2-D layer, interactive example  10 a CNN on the digits (scikit-learn)
Sections whose third-party library is missing are skipped with a line naming the extra.
The report is index.html (open it in a browser; it loads nothing from the
network) with its figures in figures/.

examples:
  ndconv tour                       report in ./ndconv-tour/ (or -2, -3, ... if taken)
  ndconv tour --quick               fewer seeds and epochs, a third of the time
  ndconv tour --sections 2,5        only the derivation and the 2-D layer
  ndconv tour --out report --force  replace report/index.html and its figures
"""

DEFAULT_OUT = "ndconv-tour"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", metavar="DIR", default=None,
                   help=f"report folder (default: a fresh ./{DEFAULT_OUT}, ./{DEFAULT_OUT}-2, ...)")
    p.add_argument("--quick", action="store_true",
                   help="fewer seeds, epochs and pixels (about a third of the full run's time); "
                        "results that did not converge say so")
    p.add_argument("--force", action="store_true",
                   help="write into --out DIR even if it holds a report")
    p.add_argument("--sections", default=None, metavar="1,2,...",
                   help="run only these sections (default: all)")
    p.add_argument("--seed", type=_parse.seed, default=0, help="random seed (default 0)")


# --------------------------------------------------------------------------
# the command


def _target(args: argparse.Namespace) -> tuple[str, bool]:
    """The report folder, checked before any work; ``(path, exists)``."""
    if args.out is None:
        path, i = DEFAULT_OUT, 1
        while os.path.lexists(path):  # a fresh name: never touch an old report
            i += 1
            path = f"{DEFAULT_OUT}-{i}"
        exists = False
    else:
        path = args.out
        exists = os.path.isdir(path)
        if os.path.lexists(path) and not exists:
            raise UsageError(f"--out {path!r} exists and is not a folder")
        if os.path.exists(os.path.join(path, "index.html")) and not args.force:
            raise UsageError(
                f"--out {path!r} already holds a report (index.html); use --force to "
                "replace it or choose another folder"
            )
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UsageError(f"the folder above --out {path!r} does not exist: {parent!r}")
    if not os.access(exists and path or parent, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write the report: {path if exists else parent!r} is not writable")
    return path, exists


def _select(text: str | None) -> list[int]:
    from ..report import SECTIONS

    if text is None:
        return list(range(1, len(SECTIONS) + 1))
    try:
        chosen = sorted({int(p) for p in text.split(",") if p.strip()})
    except ValueError:
        chosen = []
    if not chosen or any(not 1 <= c <= len(SECTIONS) for c in chosen):
        raise UsageError(f"--sections {text!r} must be numbers from 1 to {len(SECTIONS)}, "
                         "comma-separated")
    return chosen


def run(args: argparse.Namespace) -> int:
    chosen = _select(args.sections)
    path, exists = _target(args)
    from tqdm import tqdm

    from .. import report
    from ..io._files import temp_dir

    # Every chosen section is imported here, before the temporary folder
    # exists: one that does not import leaves nothing behind.
    total = report.section_steps(chosen, args.quick)
    tmp = temp_dir(path)  # .NAME.ndconv-HOST-PID-RANDOM.part: stale ones are cleaned
    start = time.perf_counter()
    # One bar over every step of every section (a terminal only, not in logs).
    bar = tqdm(total=total, desc="tour", unit="step", file=sys.stderr, leave=False,
               disable=None)

    def step(number: int, what: str) -> None:
        bar.set_postfix_str(f"{number}: {what}"[:40], refresh=False)
        bar.update(1)

    try:
        results = report.build(tmp, chosen, quick=args.quick, seed=args.seed,
                               log=lambda line: tqdm.write(line, file=sys.stdout),
                               step=step, debug=getattr(args, "debug", False))
        bar.close()
        _publish(tmp, path, exists)
    except BaseException:
        bar.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    ran = sum(1 for _, st, _ in results if st == "ok")
    skipped = sum(1 for _, st, _ in results if st.startswith("skipped"))
    failed = len(results) - ran - skipped
    print(f"tour: {ran} sections ran, {skipped} skipped, {failed} failed in "
          f"{time.perf_counter() - start:.1f} s; report: {os.path.join(path, 'index.html')}")
    return 1 if failed else 0


def _publish(tmp: str, path: str, exists: bool) -> None:
    """Move the finished report from the temporary folder into ``path``.

    Synced first; a new folder never replaces one that appeared meanwhile.
    Into an existing folder (``--force``), the old ``figures/`` is swapped
    out as a whole and ``index.html`` replaced last; nothing else there is
    touched (:func:`ndconv.io._files.publish_dir` with ``merge``).
    """
    from ..io._files import OutputExistsError, publish_dir

    try:
        publish_dir(tmp, path, merge=exists)
    except OutputExistsError as exc:
        raise UsageError(str(exc)) from None

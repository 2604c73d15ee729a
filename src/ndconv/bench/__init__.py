"""Time ndconv against the tools users would pick instead, in one process.

Every case runs ndconv and its peers interleaved (one call of each in turn,
``--repeats`` rounds after one warm-up call each), and reports the median.
Peers get the same thread count (``--threads``, default: all usable cores):
PyTorch via ``torch.set_num_threads``, OpenCV via ``cv2.setNumThreads``,
NumPy's BLAS via threadpoolctl, SciPy's FFT via ``workers``.

Each group runs in a fresh Python process of its own (``--same-process`` to
turn that off): PyTorch's small-network times grew 20-250x in a process that
had run the ``cnn`` group first (its OpenMP pool and allocator caches), so a
group never inherits another's state.

The table lists, per case and implementation: the median time, GFLOP/s
(the direct formula's 2 * multiply-adds, whatever the algorithm), the
fraction of this machine's measured float32 GEMM peak (NumPy ``A @ B``), and
the ratio ndconv / peer (below 1: ndconv is faster). A summary gives the
geometric means the targets in BENCHMARKS.md refer to.

Usage::

    ndconv bench                          # the full suite, 1 and all threads (long)
    ndconv bench --quick                  # scaled-down shapes, 3 repeats
    ndconv bench --only cnn,small --repeats 7 --threads 2
    python -m ndconv.bench --quick        # the same without the CLI
    python benchmarks/bench.py --quick    # the same from a source tree
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from typing import TextIO

import ndconv

from .cases import GROUPS
from .report import fmt_table, machine, summary
from .timing import Row, set_threads, sgemm_peak

__all__ = ["main"]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="ndconv bench", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        return finish_args(args)
    except ValueError as exc:
        p.error(str(exc))


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The benchmark's options (shared with ``ndconv bench``)."""
    p.add_argument("--quick", action="store_true",
                   help="scaled-down shapes and 3 repeats (a few minutes)")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds (default 5; 3 with --quick)")
    p.add_argument("--threads", default=None,
                   help="comma-separated thread counts for every library (default: 1 and all cores)")
    p.add_argument("--only", default=",".join(GROUPS),
                   help=f"comma-separated groups among {', '.join(GROUPS)}")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    p.add_argument("--same-process", action="store_true",
                   help="run every group in this process (default: each in a fresh one)")
    # Internal: a child process runs one group and writes its rows here as JSON.
    p.add_argument("--rows-json", default=None, help=argparse.SUPPRESS)


def finish_args(args: argparse.Namespace) -> argparse.Namespace:
    """Validate and normalise parsed options; ValueError names a bad one."""
    args.only = [g.strip() for g in args.only.split(",") if g.strip()]
    bad = [g for g in args.only if g not in GROUPS]
    if bad:
        raise ValueError(f"--only: unknown group(s) {bad}; choose among {tuple(GROUPS)}")
    if args.repeats is None:
        args.repeats = 3 if args.quick else 5
    if args.repeats < 1:
        raise ValueError(f"--repeats (={args.repeats}) must be >= 1")
    if args.threads is None:
        args.threads = sorted({1, ndconv.get_num_threads()})
        return args
    try:
        threads = [int(t) for t in str(args.threads).split(",") if t.strip()]
    except ValueError:
        threads = []
    if not threads or min(threads) < 1:
        raise ValueError(f"--threads (={args.threads!r}) must be comma-separated positive ints")
    args.threads = threads
    return args


def _child(args: argparse.Namespace, group: str, threads: int) -> tuple[list[Row], dict[str, str], float]:
    """Run one group in a fresh process; its rows, skipped peers and GEMM peak."""
    with tempfile.TemporaryDirectory(prefix="ndconv-bench-") as tmp:
        path = os.path.join(tmp, "rows.json")
        cmd = [sys.executable, "-m", "ndconv.bench", "--only", group, "--threads", str(threads),
               "--repeats", str(args.repeats), "--rows-json", path]
        if args.quick:
            cmd.append("--quick")
        done = subprocess.run(cmd, stdout=subprocess.DEVNULL)
        if done.returncode != 0 or not os.path.exists(path):
            raise RuntimeError(f"the benchmark group {group!r} ({threads} threads) failed in its "
                               f"process (exit status {done.returncode})")
        with open(path, encoding="utf-8") as f:
            got = json.load(f)
    return got["rows"], got["skipped"], got["peak"]


def _in_process(args: argparse.Namespace, group: str, threads: int,
                peak: float | None) -> tuple[list[Row], dict[str, str], float]:
    set_threads(threads)
    peak = sgemm_peak(args.quick) if peak is None else peak
    rows: list[Row] = []
    skipped: dict[str, str] = {}
    GROUPS[group](args, peak, rows, skipped)
    return rows, skipped, peak


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run the groups of ``args`` for each thread count; print tables and summaries.

    ``out`` defaults to ``sys.stdout`` at call time (not at import, so that a
    redirected stdout is honoured).
    """
    out = sys.stdout if out is None else out
    args = finish_args(args) if isinstance(args.only, str) else args
    if args.rows_json:  # a child: one group, one thread count, rows to the file
        got = _in_process(args, args.only[0], args.threads[0], None)
        with open(args.rows_json, "w", encoding="utf-8") as f:
            json.dump({"rows": got[0], "skipped": got[1], "peak": got[2]}, f)
        return 0
    # The options in effect (defaults filled in), whichever way the run was started.
    print(f"command: ndconv bench --only {','.join(args.only)} "
          f"--threads {','.join(map(str, args.threads))} --repeats {args.repeats}"
          f"{' --quick' if args.quick else ''}{' --same-process' if args.same_process else ''}"
          f"{' --markdown' if args.markdown else ''}", file=out)
    for threads in args.threads:
        rows: list[Row] = []
        skipped: dict[str, str] = {}
        peaks: list[float] = []
        for group in args.only:
            if args.same_process:
                got = _in_process(args, group, threads, peaks[0] if peaks else None)
            else:
                got = _child(args, group, threads)
            rows += got[0]
            skipped.update(got[1])
            peaks.append(got[2])
        print(file=out)
        print(f"## {threads} thread{'s' if threads > 1 else ''}", file=out)
        # The peak of the first group's process; the others' spread says how steady
        # the machine was during the run.
        print(machine(threads, peaks[0]), file=out)
        if len(peaks) > 1:
            print(f"GEMM peak per group's process: {', '.join(f'{p:.0f}' for p in peaks)} "
                  f"GFLOP/s", file=out)
        for line in skipped.values():
            print(f"skipped: {line}", file=out)
        print(fmt_table(rows, args.markdown), file=out)
        print(file=out)
        print(summary(rows), file=out)
    set_threads(None)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_args(argv))

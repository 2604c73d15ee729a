"""``ndconv bench``: the benchmark (:mod:`ndconv.bench`), shipped in the package.

Peers that are not installed (PyTorch, SciPy, OpenCV) are left out with one
line saying so; ``pip install 'ndconv[bench]'`` brings them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse

HELP = "time ndconv against PyTorch, SciPy and OpenCV (ratios on 1 and all threads)"

EXAMPLES = """\
examples:
  ndconv bench --quick                     scaled-down shapes, a few minutes
  ndconv bench --only cnn,small --threads 2 --repeats 7
  ndconv bench --only filter --markdown    the ndconv filter rows, as Markdown
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..bench import add_arguments as bench_arguments

    bench_arguments(p)


def run(args: argparse.Namespace) -> int | None:
    from ..bench import run as bench_run

    return bench_run(args)

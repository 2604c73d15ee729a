"""``ndconv bench [ARGS...]``: run the benchmark script ``benchmarks/bench.py``.

The benchmark lives beside the package in the source tree (it compares ndconv
with SciPy, OpenCV, PyTorch and dask-image, which the package itself does not
need), so this command works from a source checkout or an editable install;
the arguments after ``bench`` go to the script unchanged.
"""

from __future__ import annotations

import argparse
import os

from ._errors import Unavailable

HELP = "run the benchmark (benchmarks/bench.py in the source tree); extra args pass through"

EXAMPLES = """\
examples:
  ndconv bench                 the default benchmark
  ndconv bench -- --help       the benchmark script's own options
  ndconv bench --script path/to/bench.py -- --quick
"""


def add_arguments(p):
    p.add_argument("--script", default=None, metavar="PATH",
                   help="the benchmark script (default: benchmarks/bench.py of the source tree)")
    p.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS",
                   help="arguments for the script (put them after --)")


def find_script():
    """``benchmarks/bench.py`` two folders above the package (src layout), or None."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # src/ndconv
    for root in (os.path.dirname(os.path.dirname(here)), os.getcwd()):
        path = os.path.join(root, "benchmarks", "bench.py")
        if os.path.isfile(path):
            return path
    return None


def run(args):
    import runpy
    import sys

    script = args.script or find_script()
    if script is None or not os.path.isfile(script):
        raise Unavailable(
            "benchmarks/bench.py was not found (it ships with the source tree, not the "
            "wheel: run from a checkout, or give --script PATH)"
        )
    rest = list(args.args)
    if rest[:1] == ["--"]:
        rest = rest[1:]
    old = sys.argv
    sys.argv = [script, *rest]
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:  # the script's own exit code
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    finally:
        sys.argv = old
    return 0

"""The ``ndconv`` command line: ``ndconv COMMAND [options]``.

One module per command, each with ``HELP`` (one line), ``EXAMPLES``,
``add_arguments(parser)`` and ``run(args)``. Modules import their heavy
dependencies (matplotlib, Pillow, scikit-learn) inside ``run`` so that
``ndconv --help`` starts fast. Errors follow :mod:`ndconv.cli._errors`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ._errors import ArgumentParser, run_command

__all__ = ["main"]

# command name -> module (relative to this package)
COMMANDS = {
    "tour": "tour",
    "explore": "explore",
    "filter": "filter",
    "explain": "explain",
    "params": "params",
    "learn-kernel": "learn_kernel",
    "train": "train",
    "bench": "bench",
    "summary": "summary",
    "run": "run",
}

EXAMPLES = """\
examples:
  ndconv tour                       the lecture on real data, report in ./ndconv-tour/
  ndconv tour --quick --out report  a smaller, faster tour (under a minute)
  ndconv explore                    a local page: kernels on photos, ECG, MRI
  ndconv filter cat.png edges.png --kernel edge
  ndconv explain "[[0,1,2],[3,4,5],[6,7,8]]" "[[0,1],[2,3]]" --at 0,0
  ndconv params                     why not an MLP: the parameter counts
  ndconv learn-kernel               learn the edge kernel [1, -1] back from data
  ndconv train --epochs 2           a CNN on the digits, with a checkpoint
  ndconv bench --quick              the benchmark against PyTorch, SciPy, OpenCV

Run 'ndconv COMMAND --help' for a command's options. Bad input gives one line on
stderr and exit code 2; add --debug for the traceback.
"""


def _version() -> str:
    from .. import __version__

    return __version__


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Return the top-level parser with every command's subparser (``only``:
    that command's alone, as :func:`main` builds it for a command given)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback on errors")
    parser = ArgumentParser(
        prog="ndconv",
        description="N-d convolution from the lecture 'From MLP to convolution'.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"ndconv {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    for name, modname in COMMANDS.items():
        if only is not None and name != only:
            continue
        mod = importlib.import_module(f".{modname}", __name__)
        p = sub.add_parser(
            name,
            help=mod.HELP,
            description=mod.HELP,
            epilog=mod.EXAMPLES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            # (typeshed wants the parents of the subparsers' class; any parser works)
            parents=[common],  # type: ignore[list-item]
        )
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run, _prog=f"ndconv {name}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (0 ok, 2 bad input, 1 bug)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # A command named first: only its parser is built (all ten imported and
    # built took ~8 ms of every `ndconv filter`); anything else (--help, a
    # typo, options first) gets the whole parser and its messages.
    parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else None)
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    return run_command(args._run, args, args._prog)

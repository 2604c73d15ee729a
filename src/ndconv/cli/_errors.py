"""One line on stderr and exit code 2 for bad input; a traceback only with --debug.

Every command runs inside :func:`run_command`. Problems with what the user gave
(a missing or corrupt file, an unknown kernel, an invalid stride, an output
that would overwrite something) surface as :class:`UsageError`, ``ValueError``,
``TypeError`` or ``OSError`` and become ``ndconv CMD: error: MESSAGE`` with exit
code 2. Anything else is a bug in ndconv: one line saying so, exit code 1.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable
from typing import NoReturn

from ..core._extras import missing_message
from ..core._memory import MemoryLimitError

EXIT_OK = 0
EXIT_BUG = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_SIGPIPE = 141


class UsageError(Exception):
    """A problem with the command's input, reported as one line (exit code 2)."""


class Unavailable(Exception):
    """A part the command needs is not installed or not present (exit code 1)."""


def one_line(message: object) -> str:
    """Collapse a message onto one line (library messages may span several)."""
    return re.sub(r"\s*\n\s*", " ", str(message)).strip()


def _describe_oserror(exc: OSError) -> str:
    # OSError's str() is "[Errno 13] Permission denied: 'x'"; keep the words.
    if exc.strerror and exc.filename is not None:
        return f"{exc.strerror}: {exc.filename!r}"
    return str(exc)


def run_command(func: Callable[[argparse.Namespace], int | None], args: argparse.Namespace,
                prog: str) -> int:
    """Run ``func(args)``; turn failures into one stderr line and an exit code."""
    try:
        rc = func(args)
    except BrokenPipeError:
        # The reader went away (``ndconv explain ... | head``): not an error of
        # the input; stop quietly, as other Unix tools do on SIGPIPE.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_SIGPIPE
    except (KeyboardInterrupt, Exception) as exc:
        if getattr(args, "debug", False):
            raise
        line, code = _report(exc)
        print(f"{prog}: {line}", file=sys.stderr)
        return code
    return EXIT_OK if rc is None else rc


def _report(exc: BaseException) -> tuple[str, int]:
    """The stderr line (after ``prog: ``) and the exit code for ``exc``."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", EXIT_INTERRUPTED
    if isinstance(exc, Unavailable):
        return f"not available: {one_line(exc)}", EXIT_BUG
    if isinstance(exc, (UsageError, ValueError, TypeError, MemoryLimitError)):
        # MemoryLimitError: refused before allocating what the input asks for
        # (a huge dilation, a huge photo), a usage error, not a bug.
        return f"error: {one_line(exc)}", EXIT_USAGE
    if isinstance(exc, OSError):
        return f"error: {one_line(_describe_oserror(exc))}", EXIT_USAGE
    # A core install (no extras) lacks matplotlib, SciPy, ...: name the extra
    # that brings the missing library instead of an internal error.
    message = missing_message(exc) if isinstance(exc, ImportError) else None
    if message is not None:
        return f"not available: {one_line(message)}", EXIT_BUG
    # a bug in ndconv, not the user's fault
    return (f"internal error: {type(exc).__name__}: {one_line(exc)} "
            "(run again with --debug for the traceback)"), EXIT_BUG


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(
            EXIT_USAGE,
            f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n",
        )

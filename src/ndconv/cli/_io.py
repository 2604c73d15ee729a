"""Safe output: check first, write to a temporary file, then rename.

The rules of every command that writes a file:

* the output's folder must exist and be writable;
* an existing output is refused unless ``--force``;
* the output may never be one of the inputs, even with ``--force`` (the same
  path, a symlink to it or a hard link to it);
* the data goes to a temporary file in the output's folder, checked, synced
  and verified, and published only then (:func:`ndconv.io._files.atomic_write`):
  an interrupted or failed run leaves no half-written file and the old file
  intact, and without ``--force`` a file that appeared meanwhile (another run
  to the same output) is never replaced: the later run fails with one line.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

from ..io._files import OutputExistsError, atomic_write
from ._errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from ..io._files import CheckedFile

    _Path = str | os.PathLike[str]


def _same_file(a: _Path, b: _Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def check_output(out: _Path, inputs: Iterable[_Path | None] = (), force: bool = False,
                 what: str = "output") -> str:
    """Validate an output path before any work is done; return it as a str.

    Raises
    ------
    UsageError
        With the reason, naming the path.
    """
    out = os.fspath(out)
    for src in inputs:
        if src is not None and os.path.exists(os.fspath(src)) and _same_file(out, src):
            raise UsageError(
                f"{what} {out!r} is the input file; refusing to overwrite the input "
                "(even with --force): choose another output path"
            )
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise UsageError(f"the folder of {what} {out!r} does not exist: {folder!r}")
    if os.path.isdir(out):
        raise UsageError(f"{what} {out!r} is a folder; give a file name")
    if os.path.lexists(out) and not force:
        raise UsageError(f"{what} {out!r} already exists; use --force to replace it")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"the folder of {what} {out!r} is not writable: {folder!r}")
    return out


@contextlib.contextmanager
def atomic_output(out: _Path, force: bool = False,
                  verify: Callable[[str], object] | None = None) -> Iterator[CheckedFile]:
    """Yield a binary file object; on success it atomically becomes ``out``.

    On any exception the temporary file is removed and ``out`` is untouched;
    a folder that cannot take the temporary file is a usage error, and so is
    an ``out`` that exists by the time the data is published (unless
    ``force``). ``verify(tmp_path)`` checks the finished file first.
    """
    out = os.fspath(out)
    try:
        cm = _published(out, force, verify)
        f = cm.__enter__()
    except OSError as exc:
        folder = os.path.dirname(os.path.abspath(out))
        raise UsageError(f"cannot write in the folder {folder!r}: {exc.strerror}") from None
    # Only the temporary file's creation is a usage error; from here on the
    # context manager's own exit (cleanup on failure, rename on success) runs.
    with contextlib.ExitStack() as stack:
        stack.push(cm)
        yield f


@contextlib.contextmanager
def _published(out: str, force: bool,
               verify: Callable[[str], object] | None) -> Iterator[CheckedFile]:
    try:
        with atomic_write(out, overwrite=force, verify=verify) as f:
            yield f
    except OutputExistsError as exc:
        raise UsageError(str(exc)) from None


def write_bytes(out: _Path, data: bytes, force: bool = False) -> None:
    """Write ``data`` to ``out`` atomically."""
    with atomic_output(out, force) as f:
        f.write(data)

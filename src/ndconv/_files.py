"""Atomic file output, shared by checkpoints (``ndconv.io``) and the CLI.

A file is written under a temporary name in its own folder and renamed over
the target only once complete, so an interrupted write never leaves a
half-written file and never damages what was there before.
"""

from __future__ import annotations

import contextlib
import os
import tempfile


def current_umask():
    """The process umask (read without changing it for long)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path):
    """Yield a binary file object that becomes ``path`` when the block succeeds.

    On any exception the temporary file is removed and ``path`` is untouched.
    ``OSError`` from creating the temporary file (missing or read-only folder)
    propagates before anything is written.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates the file private (0600); give it the usual permissions.
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def open_regular(path, what="file"):
    """Open ``path`` for binary reading, refusing anything but a regular file.

    A FIFO would block ``open`` until a writer comes, and ``/dev/zero`` reads
    forever: the file is opened without blocking and checked with ``fstat``
    before a byte is read. Raises ``ValueError`` naming the path.
    """
    import stat

    fd = os.open(os.fspath(path), os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"{what} {os.fspath(path)!r} is not a regular file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise

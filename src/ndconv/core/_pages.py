"""Large output arrays that start on a huge-page boundary.

NumPy asks Linux for transparent huge pages (``madvise(MADV_HUGEPAGE)``)
on every allocation of 4 MiB or more, but the block ``malloc`` maps for it
starts wherever ``mmap`` put it: the stretch up to the first 2 MiB boundary
and the stretch after the last one are backed by 4 KiB pages, each its own
page fault on first write. For a 12 MP float32 image (48 MB) that was 477
faults per fresh output against 24 when the array starts on a boundary, and
the compiled 3x3 filter took 7.45 ms against 6.82 (1 thread, AMD EPYC VM;
OpenCV's ``filter2D``, whose Python binding allocates a NumPy array too,
7.35). :func:`empty` over-allocates by one huge page and returns the
aligned view: the stretch skipped is never written, so it never takes
memory.
"""

from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import DTypeLike

    from ._typing import NDArray

#: The huge-page size the alignment is for (x86-64 and most arm64 Linux).
HUGE_PAGE = 2 << 20

#: Arrays from this many bytes are aligned; smaller ones cannot hold a
#: whole huge page past the boundary to gain from it (and NumPy's
#: ``madvise`` starts at 4 MiB).
MIN_BYTES = 8 << 20


def _thp_available() -> bool:
    """Whether transparent huge pages can back a NumPy array here."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            mode = f.read()
    except OSError:
        return False
    if "[never]" in mode:
        return False
    # 'madvise' needs NumPy's madvise, which it can turn off
    try:
        return "[always]" in mode or bool(np._core.multiarray._get_madvise_hugepage())
    except AttributeError:  # a NumPy without the switch: it madvises on Linux
        return True


#: :func:`_thp_available`, read on the first large allocation (not at import).
_THP: bool | None = None


def empty(shape: tuple[int, ...], dtype: DTypeLike) -> NDArray[Any]:
    """``np.empty(shape, dtype)``, starting on a huge-page boundary when large.

    The result is C-contiguous, writeable and aligned as NumPy aligns; for
    :data:`MIN_BYTES` or more on Linux with transparent huge pages it is a
    view of a block one huge page larger (its ``base``).
    """
    global _THP
    dt = np.dtype(dtype)
    nbytes = math.prod(shape) * dt.itemsize
    if nbytes < MIN_BYTES or dt.hasobject:
        return np.empty(shape, dt)
    if _THP is None:
        _THP = _thp_available()
    if not _THP:
        return np.empty(shape, dt)
    raw = np.empty(nbytes + HUGE_PAGE, np.uint8)
    start = -raw.ctypes.data % HUGE_PAGE
    return raw[start:start + nbytes].view(dt).reshape(shape)

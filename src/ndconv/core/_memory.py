"""The memory guard: refuse an allocation that cannot fit, before attempting it.

A fully connected layer on one 12-megapixel photo needs 14.4 GB of float32
weights; NumPy would try to allocate them and the machine would swap or the
process would be killed. Layers and :mod:`ndconv.derive` call :func:`check`
with the bytes they are about to allocate, and get a
:class:`MemoryLimitError` stating the bytes needed instead.

The limit is, in order of precedence: the innermost :func:`memory_limit`
context of the current thread or task (a context variable), the process-wide
:func:`set_memory_limit`, the environment variable
``NDCONV_MEMORY_LIMIT`` (bytes, or a number with a unit such as ``"2GB"`` or
``"512MiB"``), and otherwise the memory the operating system reports as
available (``MemAvailable`` in ``/proc/meminfo``), read at each check.

Arrays on an accelerator (a CUDA tensor, a CuPy or JAX GPU array) are not in
host memory, so the host's is never read for them: their bytes are compared
with a limit that was set, else with the device's free memory where the
library reports it (:func:`device_free_memory`), else not at all.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
from typing import TYPE_CHECKING, Any, Final, cast

if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Literal, Union

    #: What :func:`device_free_memory` says: :data:`HOST`, a device's free
    #: bytes, or None (the device does not say).
    Free = Union[Literal["host"], int, None]

__all__ = [
    "MemoryLimitError",
    "available_memory",
    "check",
    "device_free_memory",
    "format_bytes",
    "get_memory_limit",
    "memory_limit",
    "parse_bytes",
    "set_memory_limit",
]

_UNITS = {
    "": 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}

_limit: int | None = None  # set by set_memory_limit for the whole process; None means "not set"

#: The :func:`memory_limit` contexts open in this thread or task, innermost
#: last. A context variable, not a module list: a limit set in one thread (or
#: asyncio task) must not refuse another's allocations, and exits that overlap
#: across threads must each remove their own limit.
_stack: contextvars.ContextVar[tuple[int, ...]] = contextvars.ContextVar(
    "ndconv_memory_limits", default=())


class MemoryLimitError(MemoryError):
    """An allocation was refused before it was attempted.

    Attributes
    ----------
    what : str
        What was about to be allocated.
    nbytes : int
        Bytes it needs.
    limit : int
        The limit in force.
    """

    def __init__(self, what: str, nbytes: int, limit: int, source: str) -> None:
        self.what = what
        self.nbytes = int(nbytes)
        self.limit = int(limit)
        super().__init__(
            f"{what} would need {self.nbytes:,} bytes ({format_bytes(self.nbytes)}), "
            f"more than the memory limit of {self.limit:,} bytes "
            f"({format_bytes(self.limit)}, {source}); nothing was allocated. Raise "
            "the limit with ndconv.plan.memory_limit(...) or NDCONV_MEMORY_LIMIT if "
            "the memory really is there"
        )


def format_bytes(n: float) -> str:
    """``14400000000 -> '14.4 GB'`` (decimal units, as disk and RAM are sold)."""
    n = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def parse_bytes(value: int | float | str, name: str = "limit") -> int:
    """An int number of bytes from an int or a string like ``"2GB"``, ``"512 MiB"``."""
    if isinstance(value, bool):
        raise TypeError(f"`{name}` must be a number of bytes, got {value!r}")
    nbytes: float
    if isinstance(value, (int, float)):
        nbytes = value
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][0-9]+)?)\s*([A-Za-z]*)\s*", value)
        if not m or m.group(2).lower() not in _UNITS:
            raise ValueError(
                f"`{name}` (={value!r}) must be a number of bytes, optionally with a "
                "unit: B, kB, MB, GB, TB, KiB, MiB, GiB, TiB"
            )
        nbytes = float(m.group(1)) * _UNITS[m.group(2).lower()]
    else:
        raise TypeError(f"`{name}` must be a number of bytes, got {type(value).__name__}")
    if nbytes < 0:
        raise ValueError(f"`{name}` (={value!r}) must be non-negative")
    return int(nbytes)


def available_memory() -> int | None:
    """Bytes the OS reports as available, or None where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _explicit_limit() -> tuple[int, str] | None:
    """``(limit, where it comes from)`` of a limit that was set, or None."""
    stack = _stack.get()
    if stack:
        return stack[-1], "set by ndconv.plan.memory_limit()"
    if _limit is not None:
        return _limit, "set by ndconv.plan.set_memory_limit()"
    env = os.environ.get("NDCONV_MEMORY_LIMIT")
    if env:
        return parse_bytes(env, "NDCONV_MEMORY_LIMIT"), "from NDCONV_MEMORY_LIMIT"
    return None


def get_memory_limit() -> tuple[int | None, str]:
    """``(limit in bytes or None, where it comes from)``."""
    explicit = _explicit_limit()
    if explicit is not None:
        return explicit
    avail = available_memory()
    return avail, "the memory available now"


#: ``os.environ`` and, on CPython, the dict behind it with the variable's key
#: in it: every remembered small call asks :func:`has_explicit_limit`, and
#: ``os.environ.get`` of an unset variable raises and catches a KeyError
#: inside (1-2 us, as much as a small layer's arithmetic). The same dict, so
#: a variable set since (``os.environ[...] = ...``) is seen at once.
_ENVIRON = os.environ
_ENV_DATA: dict[Any, Any] | None = getattr(os.environ, "_data", None)
try:
    _ENV_KEY: Any = os.environ.encodekey("NDCONV_MEMORY_LIMIT")
except AttributeError:
    _ENV_DATA = None


def has_explicit_limit() -> bool:
    """True when a limit was set (context, process-wide or environment)."""
    if _stack.get() or _limit is not None:
        return True
    if _ENV_DATA is not None and os.environ is _ENVIRON:
        return bool(_ENV_DATA.get(_ENV_KEY))
    return bool(os.environ.get("NDCONV_MEMORY_LIMIT"))


def set_memory_limit(limit: int | float | str | None) -> None:
    """Set the limit for the whole process, every thread (``None`` restores the default).

    A :func:`memory_limit` context, in the thread or task where it is open,
    takes precedence.
    """
    global _limit
    _limit = None if limit is None else parse_bytes(limit)


@contextlib.contextmanager
def memory_limit(limit: int | float | str) -> Iterator[None]:
    """Context manager: allocations checked inside it may use at most ``limit`` bytes.

    The limit holds in the thread (or asyncio task) that opened the context,
    and in what it starts with a copy of its context
    (``contextvars.copy_context().run``); other threads keep their own limits.
    """
    token = _stack.set(_stack.get() + (parse_bytes(limit),))
    try:
        yield
    finally:
        _stack.reset(token)


#: :func:`device_free_memory`'s answer for arrays in host memory.
HOST: Final = "host"


#: Below this many bytes, :func:`guard` skips the check against the available
#: memory (reading it costs more than a small array); a limit the user set is
#: always checked.
GUARD_BYTES: Final = 256 * 2**20


def guard(nbytes: int, what: str, free: Free = HOST) -> int:
    """:func:`check` for the hot paths: always under a user's limit, otherwise
    only above :data:`GUARD_BYTES`; ``free`` as for :func:`check`."""
    if nbytes > GUARD_BYTES or has_explicit_limit():
        check(nbytes, what, free)
    return nbytes


def device_free_memory(library: str, x: Any) -> Free:
    """Free bytes on the device holding ``x``, :data:`HOST` for host memory, or None.

    None means the library does not say (the bytes are then compared with a
    limit that was set, and nothing else). Only the library that made ``x``
    is asked, and only for an array not in host memory.
    """
    device: Any = getattr(x, "device", None)
    kind = getattr(device, "type", None) or getattr(device, "platform", None)
    if library in ("numpy", "array_api_strict", "dask") or kind == "cpu":
        return HOST
    try:
        if library == "torch" and kind == "cuda":
            import torch

            return int(torch.cuda.mem_get_info(device)[0])
        if library == "cupy":
            import cupy

            with cupy.cuda.Device(getattr(device, "id", None)):
                return int(cupy.cuda.runtime.memGetInfo()[0])
        if library == "jax":
            stats = device.memory_stats() or {}
            if "bytes_limit" in stats:
                return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    except Exception:  # noqa: BLE001 - a library that cannot say is one that does not
        return None
    return None


def check(nbytes: int, what: str, free: Free = HOST) -> int:
    """Raise :class:`MemoryLimitError` if ``nbytes`` exceeds the limit in force.

    ``free`` is :data:`HOST` (compare with the host's available memory unless
    a limit was set), a device's free bytes, or None (a device that does not
    say: compare with a limit only when one was set).
    """
    if free is HOST:
        limit, source = get_memory_limit()
    else:
        explicit = _explicit_limit()
        # (``free is HOST`` is the one str; mypy does not narrow by identity)
        limit, source = explicit or (cast("int | None", free), "the device's free memory")
    if limit is not None and nbytes > limit:
        raise MemoryLimitError(what, nbytes, limit, source)
    return nbytes

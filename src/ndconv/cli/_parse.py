"""argparse types shared by the commands: int tuples, padding, kernels from .npy."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

import numpy as np

from ._errors import UsageError

if TYPE_CHECKING:
    import os

    from ..core._typing import NDArray

# A .npy kernel or small explain array larger than this is refused before loading.
MAX_NPY_ELEMENTS = 1 << 20


def _ints(spec: str, minimum: int, not_ints: str, too_small: str) -> int | tuple[int, ...]:
    """Ints of a list separated by commas or spaces: one int alone, else a tuple.

    ``not_ints`` / ``too_small`` are the messages for a non-int part and for an
    empty list or a value below ``minimum``.
    """
    parts = [p for p in spec.replace(" ", ",").split(",") if p]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(not_ints) from None
    if not values or any(v < minimum for v in values):
        raise argparse.ArgumentTypeError(too_small)
    return values[0] if len(values) == 1 else values


def int_tuple(text: str) -> int | tuple[int, ...]:
    """'2' -> 2, '2,1' -> (2, 1); positive ints only (stride, dilation)."""
    return _ints(
        text.replace("x", ","), 1,
        f"{text!r} must be a positive int or comma-separated ints like 2,1",
        f"{text!r} must be a positive int or comma-separated positive ints",
    )


def float_list(text: str, what: str) -> tuple[float, ...]:
    """'0.5,0.4' -> (0.5, 0.4) for the option ``--what``; UsageError otherwise."""
    try:
        vals = tuple(float(v) for v in text.replace(" ", ",").split(",") if v)
    except ValueError:
        raise UsageError(f"--{what} {text!r} must be numbers separated by commas") from None
    if not vals:
        raise UsageError(f"--{what} {text!r} is empty")
    return vals


def dtype_list(text: str) -> tuple[str, ...]:
    """'float32,float16' -> ('float32', 'float16'): NumPy dtype names for bytes columns."""
    names = tuple(d.strip() for d in text.split(",") if d.strip())
    for d in names:
        try:
            np.dtype(d)
        except TypeError:
            raise UsageError(f"--dtype {d!r} is not a NumPy dtype name (e.g. float32)") from None
    if not names:
        raise UsageError(f"--dtype {text!r} names no dtype (e.g. float32)")
    return names


def positive_int(text: str) -> int:
    """A single positive int."""
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive int")
    return v


def seed(text: str) -> int:
    """A random seed: an int >= 0 (NumPy refuses negative seeds)."""
    try:
        v = int(text)
    except ValueError:
        v = -1
    if v < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a non-negative int")
    return v


def padding(text: str) -> str | int | tuple[int, ...]:
    """'same' | 'valid' | 'full' | '1' | '1,2' (per dim)."""
    t = text.strip().lower()
    if t in ("same", "valid", "full"):
        return t
    return _ints(
        t, 0,
        f"{text!r} must be same, valid, full, an int or comma-separated ints",
        f"{text!r} must be same, valid, full or non-negative ints",
    )


def load_npy(path: str | os.PathLike[str], what: str = "kernel") -> NDArray[np.float64]:
    """Load a numeric .npy file safely (no pickles, size checked from the header).

    Only a regular file is opened (a FIFO or a device is refused without
    blocking); the header is parsed by :func:`ndconv.io.read_npy_header`, so a
    malformed one is a usage error, and the size is checked before reading.
    """
    from ..io import _files
    from ..io import read_npy_header

    try:
        f = _files.open_regular(path, f"{what} file")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except FileNotFoundError:
        raise UsageError(f"{what} file {path!r} does not exist") from None
    with f:
        if f.read(6) != b"\x93NUMPY":
            raise UsageError(
                f"{what} file {path!r} is not a .npy file (it lacks the NUMPY header; "
                "save one with numpy.save)"
            )
        f.seek(0)
        try:
            shape, dtype, fortran, nbytes = read_npy_header(f, f"{what} file {path!r}")
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if dtype.kind not in "iuf":
            raise UsageError(f"{what} file {path!r} must hold real numbers, got dtype {dtype}")
        size = nbytes // dtype.itemsize
        if size > MAX_NPY_ELEMENTS:
            raise UsageError(
                f"{what} file {path!r} has {size} elements (shape {shape}); at most "
                f"{MAX_NPY_ELEMENTS} are accepted"
            )
        data = f.read(nbytes)
    if len(data) < nbytes:  # a header promising more data than the file has
        raise UsageError(
            f"{what} file {path!r} is truncated: its header promises {nbytes} bytes of "
            f"data, the file holds {len(data)}"
        )
    arr = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise UsageError(f"{what} file {path!r} contains NaN or infinity")
    return arr

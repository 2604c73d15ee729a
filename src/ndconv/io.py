"""Checkpoints: ``save`` / ``load`` nested state dicts as ``.npz``, never with pickle.

A checkpoint is a plain NumPy ``.npz`` archive: every array is stored under its
dotted path (``"model.0.weight"``, ``"optimizer.state.0.exp_avg"``), and one
extra entry, ``__ndconv__``, holds a JSON description of the nesting and the
scalar values, because dotted names alone are ambiguous (PyTorch's state-dict
keys contain dots themselves). Loading uses ``np.load(allow_pickle=False)``, so
a checkpoint can never run code. Writing goes to a temporary file in the
target's folder that replaces the target only once complete (``os.replace``),
so an interrupted save never leaves a truncated checkpoint.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Mapping

import numpy as np

from ._files import atomic_write

__all__ = ["save", "load"]

_MANIFEST = "__ndconv__"
_FORMAT = "ndconv-checkpoint"


def _flatten(obj, key, arrays, where):
    """Describe ``obj`` as JSON, moving its arrays into ``arrays`` under dotted keys."""
    if hasattr(obj, "state_dict") and callable(obj.state_dict) and not isinstance(obj, Mapping):
        obj = obj.state_dict()
    if isinstance(obj, Mapping):
        items = []
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(
                    f"checkpoint keys must be str; {where or 'the top level'} has key {k!r} "
                    f"of type {type(k).__name__}"
                )
            sub = f"{key}.{k}" if key else k
            items.append([k, _flatten(v, sub, arrays, sub)])
        return {"t": "dict", "items": items}
    if isinstance(obj, (list, tuple)):
        items = [_flatten(v, f"{key}.{i}" if key else str(i), arrays, f"{where}[{i}]")
                 for i, v in enumerate(obj)]
        return {"t": type(obj).__name__, "items": items}
    if obj is None:
        return {"t": "none"}
    if isinstance(obj, (bool, np.bool_)):
        return {"t": "bool", "v": bool(obj)}
    if isinstance(obj, (int, np.integer)):
        return {"t": "int", "v": int(obj)}
    if isinstance(obj, (float, np.floating)):
        return {"t": "float", "v": repr(float(obj))}  # repr keeps nan/inf and every digit
    if isinstance(obj, str):
        return {"t": "str", "v": obj}
    arr = np.asarray(obj) if not isinstance(obj, np.ndarray) else obj
    if arr.dtype.kind not in "biufcU":
        raise TypeError(
            f"checkpoint entry {where!r} is a {type(obj).__name__} of dtype {arr.dtype}; "
            "only numeric, bool and str arrays are stored (no pickle)"
        )
    name = key or "_"
    if name in arrays or name == _MANIFEST:
        raise ValueError(f"checkpoint key {name!r} occurs twice after flattening with dots")
    arrays[name] = arr
    return {"t": "array", "k": name}


def save(obj, path, *, compress=False):
    """Write ``obj`` to ``path`` as an ``.npz`` checkpoint, atomically.

    Parameters
    ----------
    obj : dict, Module or Optimizer
        Nested dicts (str keys), lists and tuples of arrays, numbers, bools, str
        and None, such as ``{"model": model.state_dict(), "optimizer":
        opt.state_dict(), "epoch": 3}``. An object with ``state_dict()`` is
        saved as its state dict.
    path : str or os.PathLike
        Written exactly as given (no suffix is added).
    compress : bool
        Deflate the arrays (smaller, slower).

    Raises
    ------
    TypeError
        For a value that cannot be stored without pickle, naming its key.
    """
    path = os.fspath(path)
    arrays = {}
    tree = _flatten(obj, "", arrays, "")
    manifest = json.dumps({"format": _FORMAT, "version": 1, "tree": tree})
    with atomic_write(path) as f:
        mode = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        # Written entry by entry (as numpy.savez does) so that any key,
        # even "file", is allowed.
        with zipfile.ZipFile(f, "w", compression=mode, allowZip64=True) as zf:
            for name, arr in [(_MANIFEST, np.array(manifest)), *arrays.items()]:
                with zf.open(name + ".npy", "w", force_zip64=True) as fh:
                    np.lib.format.write_array(fh, np.asanyarray(arr), allow_pickle=False)


def _rebuild(node, arrays):
    t = node["t"]
    if t == "dict":
        return {k: _rebuild(v, arrays) for k, v in node["items"]}
    if t in ("list", "tuple"):
        items = [_rebuild(v, arrays) for v in node["items"]]
        return items if t == "list" else tuple(items)
    if t == "array":
        if node["k"] not in arrays:
            raise ValueError(f"checkpoint is damaged: array {node['k']!r} is missing")
        return arrays[node["k"]]
    if t == "none":
        return None
    if t == "float":
        return float(node["v"])
    return {"bool": bool, "int": int, "str": str}[t](node["v"])


def load(path, like=None):
    """Read a checkpoint written by :func:`save` (or any ``.npz`` of arrays).

    Parameters
    ----------
    path : str or os.PathLike
    like : dict, optional
        The expected structure, for example ``{"model": model.state_dict(),
        "optimizer": None}``. Every array must then be present with the same
        shape and dtype; a ``None`` value accepts whatever the file holds.

    Returns
    -------
    The saved object (nested dicts of arrays and scalars). A plain ``.npz``
    without ndconv's manifest (``np.savez(path, **torch_state_dict_as_numpy)``)
    loads as a flat dict of its arrays.

    Raises
    ------
    KeyError
        A key of ``like`` missing from the file (or extra in it), named with
        its dotted path.
    ValueError
        A shape mismatch, naming the key and both shapes; a file that is not a
        checkpoint.
    TypeError
        A dtype mismatch, naming the key and both dtypes.
    """
    path = os.fspath(path)
    if os.path.exists(path) and not zipfile.is_zipfile(path):
        raise ValueError(f"{path!r} is not a readable .npz checkpoint (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as z:
            if not hasattr(z, "files"):
                raise ValueError(f"{path!r} holds a single .npy array, not an .npz checkpoint")
            arrays = {name: z[name] for name in z.files}
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"{path!r} is not a readable .npz checkpoint: {exc}") from None
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise ValueError(
                f"{path!r} contains pickled objects, which ndconv refuses to load"
            ) from None
        raise
    manifest = arrays.pop(_MANIFEST, None)
    if manifest is None:
        obj = arrays
    else:
        try:
            meta = json.loads(str(manifest))
            if meta.get("format") != _FORMAT:
                raise ValueError("unknown format")
            obj = _rebuild(meta["tree"], arrays)
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path!r} has a damaged ndconv manifest: {exc}") from None
    if like is not None:
        _compare(like, obj, "")
    return obj


def _compare(expected, got, where):
    """Check ``got`` against the structure, shapes and dtypes of ``expected``."""
    if hasattr(expected, "state_dict") and not isinstance(expected, Mapping):
        expected = expected.state_dict()
    if isinstance(expected, Mapping):
        if not isinstance(got, Mapping):
            raise TypeError(
                f"checkpoint entry {where!r} is a {type(got).__name__}, expected a dict"
            )
        missing = [k for k in expected if k not in got]
        extra = [k for k in got if k not in expected]
        if missing or extra:
            name = lambda k: f"{where}.{k}" if where else k  # noqa: E731
            raise KeyError(
                f"checkpoint does not match: missing keys {[name(k) for k in missing]}, "
                f"unexpected keys {[name(k) for k in extra]}"
            )
        for k in expected:
            _compare(expected[k], got[k], f"{where}.{k}" if where else k)
    elif isinstance(expected, np.ndarray):
        if not isinstance(got, np.ndarray):
            raise TypeError(
                f"checkpoint entry {where!r} is a {type(got).__name__}, expected an array"
            )
        if got.shape != expected.shape:
            raise ValueError(
                f"checkpoint entry {where!r} has shape {got.shape}, expected {expected.shape}"
            )
        if got.dtype != expected.dtype:
            raise TypeError(
                f"checkpoint entry {where!r} has dtype {got.dtype}, expected {expected.dtype}"
            )


# PyTorch and safetensors checkpoints, read without torch (their own modules).
from .safetensors_file import load_safetensors, save_safetensors  # noqa: E402
from .torch_file import load_torch  # noqa: E402

__all__ += ["load_torch", "load_safetensors", "save_safetensors"]

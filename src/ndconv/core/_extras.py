"""Which optional extra of ndconv brings a missing third-party module.

The extras themselves are declared once, in ``pyproject.toml``; this module reads
them back from the installed package's metadata, so a command that needs an
absent library can say ``pip install 'ndconv[cli]'`` instead of failing with an
internal error. Only the import names that differ from their distribution's
name are listed here.
"""

from __future__ import annotations

import re
from importlib import metadata

#: import name -> distribution name, where the two differ.
DISTRIBUTIONS = {
    "PIL": "pillow",
    "sklearn": "scikit-learn",
    "skimage": "scikit-image",
    "pywt": "PyWavelets",
    "cv2": "opencv-python-headless",
    "dask_image": "dask-image",
    "array_api_compat": "array-api-compat",
}

_REQ = re.compile(r"^\s*([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?[^;]*;\s*extra\s*==\s*['\"]([^'\"]+)['\"]")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def extra_for(module: str) -> str | None:
    """The extra whose requirements name ``module``'s distribution, or None.

    ``module`` is an import name (``"matplotlib.pyplot"`` counts as
    ``matplotlib``). The first extra in ``pyproject.toml`` order that lists the
    distribution itself (not through another extra) is returned.
    """
    top = module.split(".")[0]
    dist = _normal(DISTRIBUTIONS.get(top, top))
    try:
        requires = metadata.requires("ndconv") or []
    except metadata.PackageNotFoundError:  # running from a source tree
        return None
    for req in requires:
        m = _REQ.match(req)
        if m and _normal(m.group(1)) == dist:
            return m.group(2)
    return None


def missing_message(exc: ImportError) -> str | None:
    """A one-line message for a missing optional module, or None.

    None when ``exc`` is not about a third-party module (an ndconv module that
    cannot be imported is a bug and must not be dressed up as a missing extra).
    """
    name = getattr(exc, "name", None)
    if name is None and "pip install 'ndconv[" in str(exc):
        return str(exc)  # ndconv's own message, which already names the extra
    if not name or name.split(".")[0] == "ndconv":
        return None
    top = name.split(".")[0]
    extra = extra_for(name)
    if extra is None:
        return f"this needs the Python package {top!r}, which is not installed"
    return f"this needs {top!r}, which is not installed: pip install 'ndconv[{extra}]'"

"""The documented short import names of modules that live in a folder.

``ndconv.plan``, ``ndconv.functional``, ``ndconv.algorithms``, ... are the
names the README and the docstrings use; the code lives where the folders show
the architecture (``ndconv.lecture.plan``, ``ndconv.core.functional``,
``ndconv.core.algorithms``). Each short name is a three-line module that calls
:func:`alias`, which makes the short name *the same module object* as the
real one. So ``ndconv.plan is ndconv.lecture.plan``, a monkeypatch through
either name is seen by every caller, and no module is ever loaded twice (a
package alias also maps its submodules: ``ndconv.algorithms.record`` is
``ndconv.core.algorithms.record``, not a second copy with its own registry).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

#: ``{short package name: real package name}`` whose submodules are mapped.
_PACKAGES: dict[str, str] = {}


def alias(name: str, target: str) -> None:
    """Make module ``name`` the module ``target`` (imported now) in ``sys.modules``."""
    module = importlib.import_module(target)
    sys.modules[name] = module
    if hasattr(module, "__path__"):
        _PACKAGES[name] = target
        if _FINDER not in sys.meta_path:
            sys.meta_path.insert(0, _FINDER)


class _Loader(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.target)
        self.spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # Already executed under its real name. The import system has just set
        # the short name's spec on it: give the module its own back, so that
        # __spec__.parent matches __package__ (relative imports inside it).
        module.__spec__ = self.spec


class _Finder(importlib.abc.MetaPathFinder):
    """Finds ``short.sub`` as the already-importable ``real.sub``."""

    def find_spec(self, fullname: str, path: object = None,
                  target: object = None) -> importlib.machinery.ModuleSpec | None:
        for short, real in _PACKAGES.items():
            if fullname.startswith(short + "."):
                return importlib.machinery.ModuleSpec(
                    fullname, _Loader(real + fullname[len(short):]))
        return None


_FINDER = _Finder()

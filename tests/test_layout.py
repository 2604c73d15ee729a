"""The folders show the architecture, and the documented short names still import.

Layers are checked on the source (every import, also inside functions): the
core operation imports nothing above it, and the lecture, training, images and
files build on the core and the layers but never on the apps (report, explore,
cli, bench). The short names (``ndconv.plan``, ``ndconv.algorithms``, ...) must
be the very module objects of their folders, so a monkeypatch or a registry is
never split between two copies.
"""

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "ndconv"

APPS = ("ndconv.report", "ndconv.explore", "ndconv.cli", "ndconv.bench")
# folder -> package prefixes it must never import
FORBIDDEN = {
    "core": ("ndconv.nn", "ndconv.training", "ndconv.lecture", "ndconv.images", "ndconv.io",
             "ndconv.onnx", "ndconv.dask", *APPS),
    "nn": ("ndconv.training", "ndconv.lecture", "ndconv.images", "ndconv.onnx", *APPS),
    "training": ("ndconv.lecture", "ndconv.images", "ndconv.onnx", *APPS),
    "lecture": ("ndconv.images", "ndconv.onnx", *APPS),
    "images": ("ndconv.nn", "ndconv.training", "ndconv.lecture", "ndconv.onnx", *APPS),
    "io": ("ndconv.nn", "ndconv.training", "ndconv.lecture", "ndconv.images", "ndconv.onnx",
           *APPS),
    "dask": ("ndconv.nn", "ndconv.training", "ndconv.lecture", "ndconv.images", "ndconv.io",
             "ndconv.onnx", *APPS),
}

# short documented name -> where the code lives
SHORT = {
    "ndconv.functional": "ndconv.core.functional",
    "ndconv.pooling": "ndconv.core.pooling",
    "ndconv.algorithms": "ndconv.core.algorithms",
    "ndconv.plan": "ndconv.lecture.plan",
    "ndconv.derive": "ndconv.lecture.derive",
    "ndconv.properties": "ndconv.lecture.properties",
    "ndconv.explain": "ndconv.lecture.explain",
    "ndconv.experiments": "ndconv.lecture.experiments",
    "ndconv.losses": "ndconv.training.losses",
    "ndconv.optim": "ndconv.training.optim",
    "ndconv.train": "ndconv.training.train",
    "ndconv.data": "ndconv.training.data",
    "ndconv.models": "ndconv.training.models",
    "ndconv.kernels": "ndconv.images.kernels",
    "ndconv.tiled": "ndconv.images.tiled",
}


def _module(path):
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(path):
    name = _module(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found |= {f"{mod}.{a.name}" for a in node.names} | {mod}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {m for m in found if m.startswith("ndconv")}


def _resolve_short(mod):
    for short, real in SHORT.items():
        if mod == short or mod.startswith(short + "."):
            return real + mod[len(short):]
    return mod


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_a_folder_never_imports_the_layers_above_it(folder):
    bad = []
    for path in sorted((SRC / folder).rglob("*.py")):
        for mod in map(_resolve_short, _imports(path)):
            if any(mod == f or mod.startswith(f + ".") for f in FORBIDDEN[folder]):
                bad.append(f"{_module(path)} imports {mod}")
    assert not bad, "\n".join(bad)


def test_the_top_level_holds_folders_and_the_short_names_only():
    modules = {p.stem for p in SRC.glob("*.py")}
    expected = {"__init__", "__main__", "_moved"} | {s.split(".")[1] for s in SHORT}
    assert modules == expected
    folders = {p.name for p in SRC.iterdir() if (p / "__init__.py").exists()}
    assert folders == {"core", "nn", "training", "lecture", "report", "explore", "images",
                       "io", "onnx", "dask", "cli", "bench"}


@pytest.mark.parametrize("short", sorted(SHORT))
def test_a_short_name_is_the_same_module_as_its_folder(short):
    assert importlib.import_module(short) is importlib.import_module(SHORT[short])
    # the short file is only the alias (its code is elsewhere)
    path = SRC / (short.split(".")[1] + ".py")
    assert len(path.read_text().splitlines()) < 12


def test_submodules_of_a_short_package_name_are_not_second_copies():
    code = ("import ndconv.algorithms.record as a, ndconv.core.algorithms.record as b, "
            "ndconv.algorithms.fft as c, ndconv.core.algorithms.fft as d, sys\n"
            "assert a is b and c is d, (a, b)\n"
            "from ndconv.algorithms import ALGORITHMS\n"
            "from ndconv.core.algorithms import ALGORITHMS as A2\n"
            "assert ALGORITHMS is A2\n"
            "assert not [m for m in sys.modules if m.startswith('ndconv.algorithms.')"
            " and sys.modules[m] is not sys.modules['ndconv.core' + m[len('ndconv'):]]]\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_monkeypatch_through_the_short_name_reaches_every_caller(monkeypatch):
    import ndconv
    from ndconv.training import data

    monkeypatch.setattr(ndconv.data, "load_digits", lambda *a, **k: "patched")
    assert data.load_digits() == "patched"
    import ndconv.data as short

    assert short.load_digits() == "patched"


def test_documented_public_names_import_from_their_documented_homes():
    from ndconv.algorithms import methods_for  # noqa: F401
    from ndconv.dask import store_by_slabs  # noqa: F401
    from ndconv.images import filter_image, read_image  # noqa: F401
    from ndconv.io import load_safetensors, load_torch, save_safetensors  # noqa: F401
    from ndconv.plan import memory_limit, receptive_region  # noqa: F401
    from ndconv.tiled import filter_tiled  # noqa: F401

"""The wheel carries what an installed ndconv needs: data files, py.typed, the licence."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "ndconv"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                        "--no-build-isolation", "-w", str(out), str(ROOT)],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        pytest.fail(f"pip wheel failed: {r.stderr[-2000:]}")
    (path,) = out.glob("ndconv-*.whl")
    with zipfile.ZipFile(path) as z:
        return z.namelist(), z.read(next(n for n in z.namelist() if n.endswith("METADATA"))).decode()


def test_every_file_of_the_package_ships_in_the_wheel(wheel):
    # Package data (the explorer's page, the report's template, ...) must be
    # declared in pyproject.toml, or an installed ndconv misses it.
    names = set(wheel[0])
    source = [p.relative_to(PACKAGE.parent).as_posix() for p in PACKAGE.rglob("*")
              if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc",)]
    missing = sorted(n for n in source if n not in names)
    assert not missing, f"not in the wheel: {missing}"
    assert "ndconv/py.typed" in names


def test_wheel_metadata_has_the_licence(wheel):
    names, metadata = wheel
    assert any(n.endswith("licenses/LICENSE") for n in names)
    assert "License-Expression: MIT" in metadata
    assert "Requires-Dist: numpy" in metadata

"""The typed part of the public API: mypy-clean, annotated, and useful to a user's mypy.

The modules are the ones ``[tool.mypy] files`` in pyproject.toml lists; the
whole check runs through mypy's Python API, so CI (which runs pytest) keeps
them clean. A mypy error fails the test with mypy's own output.
"""

from __future__ import annotations

import importlib
import inspect
import os
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = pytest.importorskip("tomli")


def _mypy_api():
    try:
        from mypy import api
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("mypy must be installed in CI (it is in the `test` extra)")
        pytest.skip("mypy is not installed (pip install 'ndconv[test]')")
    return api


@pytest.fixture(scope="module")
def config():
    with open(ROOT / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)["tool"]["mypy"]


def _checked_modules(config):
    """Module names of ``files``: ``src/ndconv/x.py`` -> ``ndconv.x``, folders -> ``pkg.*``."""
    names = []
    for f in config["files"]:
        p = pathlib.PurePosixPath(f).relative_to("src")
        names.append(".".join(p.with_suffix("").parts) if p.suffix else ".".join(p.parts) + ".*")
    return names


def _run(args, cwd):
    api = _mypy_api()
    old = os.getcwd()
    os.chdir(cwd)  # mypy reads pyproject.toml and resolves `files` from the cwd
    try:
        return api.run(args)
    finally:
        os.chdir(old)


def test_configured_modules_are_strict(config):
    # Every checked file is also held to disallow_untyped_defs, and vice versa:
    # a module added to one list and not the other would be checked loosely.
    strict = next(o for o in config["overrides"] if o.get("disallow_untyped_defs"))
    assert sorted(_checked_modules(config)) == sorted(strict["module"])
    assert config["python_version"] == "3.10"
    assert config["warn_unused_ignores"] is True
    for f in config["files"]:
        assert (ROOT / f).exists(), f"[tool.mypy] files lists {f}, which does not exist"


def test_mypy_is_clean_on_the_typed_modules():
    stdout, stderr, status = _run(["--config-file", str(ROOT / "pyproject.toml")], ROOT)
    assert status == 0, f"mypy found errors:\n{stdout}{stderr}"
    assert "Success: no issues found" in stdout


def test_a_users_mistakes_are_caught(tmp_path):
    # What py.typed is for: a user's mypy sees ndconv's signatures. Without the
    # annotations, both calls below would pass unnoticed (the functions would be Any).
    user = tmp_path / "user.py"
    user.write_text(
        "from ndconv import derive, kernels, plan\n"
        "k = kernels.get('box:3')\n"
        "kernels.get(3)\n"                                  # line 3: int for str
        "rows: list[plan.Row] = plan.layer_rows(k, (1, 8, 8))\n"  # line 4: array for Module
        "w: int = derive.conv_to_dense(k[None, None], (1, 8, 8))\n"  # line 5: array for int
    )
    stdout, stderr, status = _run(
        ["--config-file", str(ROOT / "pyproject.toml"), "--cache-dir",
         str(ROOT / ".mypy_cache"), str(user)], ROOT)
    assert status == 1, stdout + stderr
    errors = [ln for ln in stdout.splitlines() if ": error:" in ln]
    assert [ln.split(":")[1] for ln in errors] == ["3", "4", "5"], stdout
    # (mypy's wording of the expected type, quoted or not, varies by version)
    assert '"get" has incompatible type "int"' in errors[0] and "[arg-type]" in errors[0]
    assert '"layer_rows" has incompatible type' in errors[1] and "Module" in errors[1]
    assert "[assignment]" in errors[2] and "ndarray" in errors[2]


@pytest.mark.parametrize("module, name", [
    ("ndconv.derive", "conv_to_dense"),
    ("ndconv.derive", "dense_to_conv"),
    ("ndconv.derive", "PrincipleError.__init__"),
    ("ndconv.plan", "layer_rows"),
    ("ndconv.plan", "conv"),
    ("ndconv.plan", "Row.nbytes"),
    ("ndconv.kernels", "get"),
    ("ndconv.properties", "translation_equivariance"),
    ("ndconv.train", "fit"),
    ("ndconv.optim", "Adam.__init__"),
    ("ndconv.losses", "CrossEntropyLoss.forward"),
    ("ndconv.explain", "Explainer.line"),
    ("ndconv.explore", "make_server"),
])
def test_signature_carries_annotations(module, name):
    qualname = f"{module}.{name}"
    obj = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    sig = inspect.signature(obj)
    missing = [p.name for p in sig.parameters.values()
               if p.name != "self" and p.annotation is inspect.Parameter.empty]
    assert not missing, f"{qualname}: parameters without annotation: {missing}"
    assert sig.return_annotation is not inspect.Signature.empty, f"{qualname}: no return annotation"


def test_signatures_match_the_docstrings():
    # The hints and the numpydoc text say the same (spot checks of the forms
    # the README documents once).
    from ndconv import derive, kernels, plan

    sig = inspect.signature(derive.conv_to_dense)
    assert sig.parameters["padding"].annotation == "Padding"
    assert sig.parameters["stride"].annotation == "IntOrTuple"
    assert sig.return_annotation == "NDArray[Any]"
    assert inspect.signature(kernels.get).return_annotation == "NDArray[np.float64]"
    assert inspect.signature(plan.layer_rows).return_annotation == "list[Row]"


def test_importing_ndconv_loads_no_typing_module():
    # Annotations are strings and the aliases load under TYPE_CHECKING only:
    # typing costs nothing at import time.
    import subprocess

    code = ("import sys, ndconv, ndconv.derive, ndconv.plan, ndconv.train; "
            "print('ndconv.core._typing' in sys.modules)")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"

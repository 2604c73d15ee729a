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
    """Module names of ``files``: ``src/ndconv/x.py`` -> ``ndconv.x``, folders -> ``pkg.*``,
    ``pkg/__init__.py`` -> ``pkg`` (the package itself, not its submodules)."""
    names = []
    for f in config["files"]:
        p = pathlib.PurePosixPath(f).relative_to("src")
        if p.name == "__init__.py":
            names.append(".".join(p.parent.parts))
        else:
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


def _mypy_errors(user):
    """mypy's report on a user's file (which must have errors): its output and error lines."""
    stdout, stderr, status = _run(
        ["--config-file", str(ROOT / "pyproject.toml"), "--cache-dir",
         str(ROOT / ".mypy_cache"), str(user)], ROOT)
    assert status == 1, stdout + stderr
    return stdout, [ln for ln in stdout.splitlines() if ": error:" in ln]


def _revealed(stdout):
    """``{line number: revealed type}`` of mypy's ``reveal_type`` notes."""
    return {ln.split(":")[1]: ln.partition("Revealed type is ")[2]
            for ln in stdout.splitlines() if "Revealed type is" in ln}


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
    stdout, errors = _mypy_errors(user)
    assert [ln.split(":")[1] for ln in errors] == ["3", "4", "5"], stdout
    # (mypy's wording of the expected type, quoted or not, varies by version)
    assert '"get" has incompatible type "int"' in errors[0] and "[arg-type]" in errors[0]
    assert '"layer_rows" has incompatible type' in errors[1] and "Module" in errors[1]
    assert "[assignment]" in errors[2] and "ndarray" in errors[2]


def test_a_users_conv_mistakes_are_caught_and_results_typed(tmp_path):
    # The functional API's overloads: a NumPy array in gives an NDArray of its
    # dtype out, another library's array its own type, a list an NDArray; a
    # str for an int argument, or the array where an int is wanted, is caught.
    user = tmp_path / "user_conv.py"
    user.write_text(
        "import numpy as np, ndconv, array_api_strict as xs\n"
        "x = np.zeros((1, 1, 8, 8), np.float32)\n"
        "k = np.ones((1, 1, 3, 3), np.float32)\n"
        "ndconv.conv(x, k, stride='2')\n"                      # line 4: str for int
        "y: int = ndconv.conv(x, k)\n"                         # line 5: array for int
        "gx, gw, gb = ndconv.conv_backward(x, x, k)\n"
        "n: float = gb\n"                                      # line 7: array for float
        "ndconv.max_pool(x, 2, padding='same')\n"              # line 8: str for int
        "reveal_type(ndconv.conv2d(x, k))\n"                   # line 9
        "reveal_type(ndconv.correlate([1.0, 2.0], [1.0]))\n"   # line 10
        "a = xs.zeros((1, 1, 8, 8))\n"
        "reveal_type(ndconv.conv(a, xs.ones((1, 1, 3, 3))))\n"  # line 12
        "reveal_type(ndconv.conv_transpose_backward(a, a, a)[1])\n"  # line 13
        "reveal_type(ndconv.avg_pool(a, 2, ndim=2))\n"          # line 14
        "reveal_type(ndconv.conv_output_shape((1, 1, 8, 8), (1, 1, 3, 3)))\n"  # line 15
        "ndconv.correlate([1.0, 2.0], [1.0], bias=np.int64(1))\n"  # line 16: a scalar: fine
        "ndconv.correlate([1.0, 2.0], [1.0], bias='1')\n"          # line 17: str for a scalar
    )
    stdout, errors = _mypy_errors(user)
    assert [ln.split(":")[1] for ln in errors] == ["4", "5", "7", "8", "17"], stdout
    assert '"stride" to "conv" has incompatible type "str"' in errors[0], errors[0]
    assert "[assignment]" in errors[1] and "ndarray" in errors[1], errors[1]
    assert "[assignment]" in errors[2] and "ndarray" in errors[2], errors[2]
    assert '"padding" to "max_pool" has incompatible type "str"' in errors[3], errors[3]
    # (several overloads take lists: mypy names none of them, only the call)
    assert '"correlate"' in errors[4] and '"str"' in errors[4], errors[4]
    revealed = _revealed(stdout)
    assert sorted(revealed) == ["10", "12", "13", "14", "15", "9"], stdout
    # float32 in, float32 out (spelled float32 or floating[_32Bit] by NumPy version)
    assert revealed["9"].startswith('"numpy.ndarray[') and (
        "32Bit" in revealed["9"] or "float32" in revealed["9"]), revealed["9"]
    assert revealed["10"].startswith('"numpy.ndarray[') and "dtype[Any]" in revealed["10"]
    for line in ("12", "13", "14"):
        assert revealed[line] == '"array_api_strict._array_object.Array"', revealed[line]
    assert revealed["15"] == '"tuple[int, ...]"'


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
    ("ndconv", "conv"),
    ("ndconv", "conv1d"),
    ("ndconv", "conv2d"),
    ("ndconv", "conv3d"),
    ("ndconv", "conv_backward"),
    ("ndconv", "conv_transpose"),
    ("ndconv", "conv_transpose_backward"),
    ("ndconv", "correlate"),
    ("ndconv", "convolve"),
    ("ndconv", "conv_output_shape"),
    ("ndconv", "choose_method"),
    ("ndconv", "max_pool"),
    ("ndconv.pooling", "max_pool_backward"),
    ("ndconv", "avg_pool"),
    ("ndconv.pooling", "avg_pool_backward"),
    ("ndconv.pooling", "pool_output_shape"),
    ("ndconv", "set_num_threads"),
    ("ndconv", "get_num_threads"),
    ("ndconv.algorithms", "run"),
    ("ndconv.algorithms", "methods_for"),
    ("ndconv.algorithms.choose", "choose"),
    ("ndconv.algorithms.record", "register"),
    ("ndconv.algorithms", "CorrSpec.tap_slices"),
    ("ndconv.plan", "memory_limit"),
    ("ndconv.core._memory", "check"),
    ("ndconv.core._backends", "resolve"),
    ("ndconv.core._backends", "Backend.correlate"),
    ("ndconv.dask", "conv"),
    ("ndconv.dask", "store_by_slabs"),
    ("ndconv.io", "save"),
    ("ndconv.io", "load"),
    ("ndconv.io", "load_torch"),
    ("ndconv.io", "load_safetensors"),
    ("ndconv.io", "save_safetensors"),
    ("ndconv.io", "read_npy_header"),
    ("ndconv.io._files", "atomic_write"),
    ("ndconv.images", "filter_image"),
    ("ndconv.images", "read_image"),
    ("ndconv.images", "write_image"),
    ("ndconv.images", "output_format"),
    ("ndconv.tiled", "filter_tiled"),
    ("ndconv.tiled", "open_image"),
    ("ndconv.onnx", "load"),
    ("ndconv.onnx", "save"),
    ("ndconv.onnx", "OnnxModule.forward"),
    ("ndconv.onnx", "OnnxModule.backward"),
    ("ndconv.onnx", "OnnxModule.plan_steps"),
    ("ndconv.onnx.ops", "Op.forward"),
    ("ndconv.experiments", "run"),
    ("ndconv.experiments", "shift_images"),
    ("ndconv.experiments", "learn_edge_kernel"),
    ("ndconv.report", "build"),
    ("ndconv.report._page", "Section.table"),
    ("ndconv.cli", "main"),
    ("ndconv.nn", "Module.forward"),
    ("ndconv.nn", "Module.backward"),
    ("ndconv.nn", "Module.__call__"),
    ("ndconv.nn", "Module.parameters"),
    ("ndconv.nn", "Module.named_parameters"),
    ("ndconv.nn", "Module.state_dict"),
    ("ndconv.nn", "Module.load_state_dict"),
    ("ndconv.nn", "Module.register_buffer"),
    ("ndconv.nn", "Module.train"),
    ("ndconv.nn", "Module.eval"),
    ("ndconv.nn", "Module.modules"),
    ("ndconv.nn", "Parameter.__init__"),
    ("ndconv.nn", "Parameter.accumulate"),
    ("ndconv.nn", "Sequential.__init__"),
    ("ndconv.nn", "Sequential.append"),
    ("ndconv.nn.module", "fixed_ndim"),
    ("ndconv.nn", "Conv"),
    ("ndconv.nn", "Conv2d"),
    ("ndconv.nn", "Conv2d.forward"),
    ("ndconv.nn", "Conv2d.backward"),
    ("ndconv.nn", "ConvTranspose3d"),
    ("ndconv.nn", "Linear"),
    ("ndconv.nn", "FullyConnected"),
    ("ndconv.nn", "LocallyConnected2d"),
    ("ndconv.nn", "MaxPool2d"),
    ("ndconv.nn", "AvgPool1d"),
    ("ndconv.nn", "AdaptiveAvgPool2d"),
    ("ndconv.nn", "BatchNorm2d"),
    ("ndconv.nn", "GroupNorm"),
    ("ndconv.nn", "LayerNorm"),
    ("ndconv.nn", "PReLU"),
    ("ndconv.nn", "GELU"),
    ("ndconv.nn", "Softmax"),
    ("ndconv.nn", "ReLU.forward"),
    ("ndconv.nn", "ZeroPad2d"),
    ("ndconv.nn", "ConstantPad1d"),
    ("ndconv.nn", "Upsample"),
    ("ndconv.nn", "Flatten"),
    ("ndconv.nn", "Dropout"),
    ("ndconv.nn", "Graph.layer"),
    ("ndconv.nn", "Graph.output"),
    ("ndconv.nn", "Graph.forward"),
    ("ndconv.nn", "Add.backward"),
    ("ndconv.nn.init", "kaiming_uniform"),
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


def test_every_cli_command_is_annotated():
    # The CLI is thin, but each command's two entry points carry their types.
    import ndconv.cli

    for name, modname in ndconv.cli.COMMANDS.items():
        mod = importlib.import_module(f"ndconv.cli.{modname}")
        for fn in (mod.add_arguments, mod.run):
            sig = inspect.signature(fn)
            assert all(p.annotation is not inspect.Parameter.empty
                       for p in sig.parameters.values()), f"ndconv {name}: {fn.__name__}"
            assert sig.return_annotation is not inspect.Signature.empty, \
                f"ndconv {name}: {fn.__name__} has no return annotation"


def test_a_users_file_and_image_mistakes_are_caught(tmp_path):
    # The mistakes a user makes with files, images and ONNX, caught by their
    # mypy; the correct lines around them (the overloads of load_safetensors)
    # must pass.
    user = tmp_path / "user_io.py"
    user.write_text(
        "import numpy as np\n"
        "import ndconv.onnx\n"
        "from ndconv import images, io, models\n"
        "img = images.read_image('cat.png')\n"
        "out = images.filter_image(img, np.ones((3, 3)) / 9, padding_mode='reflect')\n"
        "io.save({'w': out}, 3)\n"                                   # line 6: int path
        "images.write_image(out, 'out.png', 'PNG')\n"                # line 7: path for a file
        "images.filter_image(img, np.ones((3, 3)), padding_mode=0)\n"  # line 8: int mode
        "w: dict[str, np.ndarray] = io.load_safetensors('w.safetensors')\n"
        "meta = io.load_safetensors('w.safetensors', metadata=True)[1]\n"
        "io.load_safetensors('w.safetensors')[1]\n"                  # line 11: no metadata
        "ndconv.onnx.save(models.digits_cnn(), 'm.onnx', input_shape=3)\n"  # line 12
    )
    stdout, errors = _mypy_errors(user)
    assert [ln.split(":")[1] for ln in errors] == ["6", "7", "8", "11", "12"], stdout
    assert '"save" has incompatible type "int"' in errors[0] and "[arg-type]" in errors[0]
    assert '"write_image" has incompatible type "str"' in errors[1]
    assert '"filter_image" has incompatible type "int"' in errors[2]
    assert "[index]" in errors[3] and '"int"' in errors[3]
    assert '"save" has incompatible type "int"' in errors[4]


def test_a_users_layer_mistakes_are_caught(tmp_path):
    # nn as a user's mypy reads it: the 1d/2d/3d classes have their real
    # constructors (not *args), a model's output is an NDArray, train() and
    # eval() return the model itself (Self, as PyTorch), attributes are typed.
    user = tmp_path / "user_nn.py"
    user.write_text(
        "import numpy as np\n"
        "from ndconv import nn\n"
        "x = np.zeros((1, 3, 8, 8), np.float32)\n"
        "model = nn.Sequential(nn.Conv2d(3, 8, 3, padding='same'), nn.ReLU(), nn.MaxPool2d(2))\n"
        "nn.Conv2d('3', 8, 3)\n"                              # line 5: str for int
        "y: int = model(x)\n"                                 # line 6: array for int
        "m: nn.Module = model.train()\n"                      # line 7: fine
        "n: int = model.eval()\n"                             # line 8: the model for int
        "nn.Linear(3, 4).weight = np.zeros((4, 3))\n"          # line 9: array for Parameter
        "nn.MaxPool2d(2, padding='same')\n"                   # line 10: str for int
        "nn.BatchNorm3d(4, momentum=None, dtype=np.float64)\n"  # line 11: fine
        "class Leaky(nn.Conv2d): pass\n"                       # line 12: fine
        "Leaky(1, 2)\n"                                        # line 13: no kernel_size
        "reveal_type(model.train())\n"                         # line 14
        "reveal_type(model.state_dict())\n"                    # line 15
        "reveal_type(nn.Conv2d(3, 8, 3).bias)\n"               # line 16
        "reveal_type(model[0])\n"                              # line 17
        "reveal_type(nn.Conv1d(1, 1, 3).backward(x))\n"        # line 18
    )
    stdout, errors = _mypy_errors(user)
    assert [ln.split(":")[1] for ln in errors] == ["5", "6", "8", "9", "10", "13"], stdout
    assert 'Argument 1 to "Conv2d" has incompatible type "str"' in errors[0], errors[0]
    assert "[assignment]" in errors[1] and "ndarray" in errors[1], errors[1]
    assert "[assignment]" in errors[2] and '"Sequential"' in errors[2], errors[2]
    assert "[assignment]" in errors[3] and '"Parameter"' in errors[3], errors[3]
    assert '"padding" to "MaxPool2d" has incompatible type "str"' in errors[4], errors[4]
    assert '"kernel_size"' in errors[5] and '"Leaky"' in errors[5], errors[5]
    revealed = _revealed(stdout)
    assert revealed["14"] == '"ndconv.nn.module.Sequential"', revealed["14"]
    assert revealed["15"].startswith('"collections.OrderedDict[str, numpy.ndarray['), revealed["15"]
    assert revealed["16"] == '"ndconv.nn.module.Parameter | None"', revealed["16"]
    assert revealed["17"] == '"ndconv.nn.module.Module"', revealed["17"]
    assert revealed["18"].startswith('"numpy.ndarray['), revealed["18"]


def test_the_fixed_ndim_classes_are_typed_as_they_run(tmp_path):
    # fixed_ndim builds Conv2d & co. at run time; mypy reads the declarations
    # under TYPE_CHECKING instead. Both must agree for every class: the same
    # parameters as inspect.signature (the base's, less num_spatial_dims),
    # and the class itself as the result.
    import re

    from ndconv import nn

    names = [n for n in nn.__all__ if re.fullmatch(r"\w+[123]d", n)]
    assert len(names) == 33, names  # 11 N-d layers x 3
    user = tmp_path / "user_dims.py"
    user.write_text("from ndconv import nn\n" + "".join(
        f"reveal_type(nn.{n})\n" for n in names) + "x: int = 'not an int'\n")
    stdout, errors = _mypy_errors(user)  # (one error, so that mypy reports failure)
    revealed = _revealed(stdout)  # line 1 imports nn, line k + 2 reveals names[k]
    assert sorted(revealed, key=int) == [str(k + 2) for k in range(len(names))], stdout
    for k, name in enumerate(names):
        text = revealed[str(k + 2)]
        cls = getattr(nn, name)
        assert text.startswith('"def (') and text.endswith(f'.{name}"'), (name, text)
        typed = re.findall(r"(?:def \(|, )(\w+): ", text)
        assert typed == list(inspect.signature(cls).parameters), (name, text)


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
    import ndconv

    conv = inspect.signature(ndconv.conv)
    assert conv.parameters["padding"].annotation == "Padding"
    assert conv.parameters["stride"].annotation == "IntOrTuple"
    assert conv.parameters["x"].annotation == "Array"
    assert inspect.signature(ndconv.conv_output_shape).return_annotation == "Shape"
    assert inspect.signature(ndconv.choose_method).return_annotation == "tuple[str, str]"


def test_importing_ndconv_loads_no_typing_module():
    # Annotations are strings and the aliases load under TYPE_CHECKING only:
    # typing costs nothing at import time.
    import subprocess

    code = ("import sys, ndconv, ndconv.derive, ndconv.plan, ndconv.train, ndconv.io, "
            "ndconv.images, ndconv.tiled, ndconv.onnx, ndconv.experiments, ndconv.report, "
            "ndconv.cli; print('ndconv.core._typing' in sys.modules)")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"

"""A core install (``pip install ndconv``, NumPy only) never says 'internal error'.

The optional libraries are hidden from a subprocess by an import hook, as if
no extra were installed; every command either works (NumPy is enough) or
prints one line naming the extra to install.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

#: Import names of every optional dependency (the extras in pyproject.toml).
OPTIONAL = ["scipy", "threadpoolctl", "numba", "tqdm", "sklearn", "skimage", "PIL",
            "matplotlib", "pywt", "nibabel", "dask", "distributed", "tifffile", "zarr",
            "cv2", "dask_image", "torch", "onnx", "onnxruntime", "array_api_compat",
            "jax", "safetensors", "ml_dtypes", "playwright"]

HIDE = f"""
import sys
# None in sys.modules is how Python marks a module as absent: `import` raises
# ModuleNotFoundError and importlib.util.find_spec returns None, as when the
# library is not installed.
for name in {OPTIONAL!r}:
    sys.modules[name] = None
from ndconv.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run_core(args, cwd):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-c", HIDE, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def files(tmp_path):
    np.save(tmp_path / "k.npy", np.array([[1.0, -1.0]]))
    (tmp_path / "in.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    return tmp_path


@pytest.mark.parametrize("args", [
    ["tour", "--quick", "--out", "report"],
    ["filter", "in.png", "out.png", "--kernel", "edge"],
    ["train", "--epochs", "1", "--checkpoint", "c.npz"],
    ["learn-kernel", "--iterations", "2"],
    ["params"],
    ["explain", "[[0,1,2],[3,4,5],[6,7,8]]", "[[0,1],[2,3]]", "--at", "0,0"],
])
def test_core_install_commands_work_or_name_the_extra(args, files):
    r = run_core(args, files)
    assert "internal error" not in r.stderr, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    if r.returncode == 0:
        assert r.stdout.strip(), "a command that succeeds prints its result"
    else:
        assert len(lines) == 1, r.stderr
        assert "pip install 'ndconv[" in lines[0], lines[0]


def test_core_install_explain_needs_numpy_only(files):
    r = run_core(["explain", "[[0,1,2],[3,4,5],[6,7,8]]", "[[0,1],[2,3]]", "--at", "0,0"], files)
    assert r.returncode == 0, r.stderr
    assert "= 19" in r.stdout


def test_missing_ndconv_module_is_not_called_a_missing_extra():
    from ndconv.core._extras import missing_message

    assert missing_message(ModuleNotFoundError("x", name="ndconv.nothing")) is None
    assert "ndconv[cli]" in missing_message(ModuleNotFoundError("x", name="matplotlib.pyplot"))
    assert "ndconv[fast]" in missing_message(ModuleNotFoundError("x", name="scipy"))
    assert "ndconv[data]" in missing_message(ModuleNotFoundError("x", name="sklearn"))

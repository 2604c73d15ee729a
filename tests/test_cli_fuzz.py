"""Fuzz test of the command line (issue 14): random combinations of arguments,
good and bad. Each run must exit 0 (with nothing on stderr) or 2 (with exactly
one line), never 1, never a traceback, and never leave a temporary file.

In-process through ``ndconv.cli.main`` (the machine is small); warnings are
shown every time so that any NumPy or Pillow warning counts as a stderr line.
"""

import contextlib
import io
import os
import time
import warnings

import numpy as np
import pytest
from PIL import Image

from ndconv.cli import main

# (valid values, invalid or hostile ones); each pick is invalid with p = 0.15.
CHOICES = {
    "input": (["rgb.png", "rgba.png", "gray16.png", "gray.jpg"],
              ["missing.png", "k.npy", "empty.png", "folder"]),
    "kernel": (["edge", "box:3", "gaussian:2", "motion:5", "k.npy", "mix.npy", "sharpen",
                "laplacian"],
               ["box:0", "box:-1", "nope", "bad.npy", "huge.npy", "", "box:1e9"]),
    "padding": (["same", "valid", "full", "0", "1", "1,2"], ["-1", "x", "1000000", "3,3,3"]),
    "mode": (["zeros", "reflect", "replicate", "circular"], ["bogus"]),
    "stride": (["1", "2", "2,1"], ["0", "-3", "99999"]),
    "dilation": (["1", "2"], ["40", "0"]),
    "range": (["clip", "abs", "rescale"], ["bad"]),
    "output": (["o.png", "o.tif", "o.jpg"], ["o.gif", "nofolder/o.png", "rgb.png", "o"]),
    "tile-rows": (["1", "7"], ["0"]),
}


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)).save(tmp_path / "rgb.png")
    Image.fromarray(rng.integers(0, 256, (24, 20, 4), dtype=np.uint8), "RGBA").save(
        tmp_path / "rgba.png")
    Image.fromarray(rng.integers(0, 65536, (24, 20), dtype=np.uint16)).save(tmp_path / "gray16.png")
    Image.fromarray(rng.integers(0, 256, (24, 20), dtype=np.uint8)).save(tmp_path / "gray.jpg")
    np.save(tmp_path / "k.npy", np.ones((3, 3)) / 9)
    np.save(tmp_path / "huge.npy", np.array([[1e308, -1e308]]))
    np.save(tmp_path / "mix.npy", np.eye(3)[:, :, None, None])
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY\x01\x00\x10\x00{'descr': (((\n")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "folder").mkdir()
    return tmp_path


def _run(args, cwd):
    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                warnings.catch_warnings():
            warnings.simplefilter("always")
            try:
                rc = main(args)
            except SystemExit as exc:  # argparse
                rc = exc.code
    finally:
        os.chdir(old)
    return rc, err.getvalue()


def test_fuzz_filter_arguments(folder):
    rng = np.random.default_rng(1414)
    t0 = time.perf_counter()
    codes = {0: 0, 2: 0}
    for i in range(120):
        pick = {}
        for k, (good, bad) in CHOICES.items():
            pool = bad if rng.random() < 0.15 else good
            pick[k] = pool[rng.integers(len(pool))]
        out = pick["output"]
        if out.startswith("o"):
            out = f"{i}-{out}"  # a fresh name, mostly
        args = ["filter", pick["input"], out, "--kernel", pick["kernel"]]
        for opt in ("padding", "mode", "stride", "dilation", "range", "tile-rows"):
            if rng.random() < 0.5:
                args += [f"--{opt}", pick[opt]]
        if rng.random() < 0.3:
            args.append("--force")
        rc, err = _run(args, folder)
        assert rc in (0, 2), (args, rc, err)
        lines = err.splitlines()
        assert "Traceback" not in err and "internal error" not in err, (args, err)
        assert len(lines) == (0 if rc == 0 else 1), (args, err)
        codes[rc] += 1
    assert not [n for n in os.listdir(folder) if n.endswith(".part")]
    assert codes[0] >= 15 and codes[2] >= 30, codes  # both kinds were exercised
    assert time.perf_counter() - t0 < 240


EXPLAIN = {
    "x": (["[[0,1,2],[3,4,5],[6,7,8]]", "[1,2,3,4]", "x.npy", "[[[1,2],[3,4]],[[5,6],[7,8]]]"],
          ["[[1,2],[3]]", "[]", "nan", "[[1e999]]", "fifo-free.txt", "missing.npy", "[[", "1"]),
    "k": (["[[0,1],[2,3]]", "[1,-1]", "k.npy", "[[[1]]]"],
          ["[[]]", "[[1,2],[3]]", "bad.npy", "x", "[[nan]]"]),
    "--at": (["0,0", "1,1", "0", "0,0,0"], ["-1,0", "99,99", "a,b", "1,2,3,4"]),
    "--stride": (["1", "2", "1,2"], ["0", "-1", "x"]),
    "--padding": (["0", "1", "same", "valid", "full", "1,0"], ["-2", "99999999999", "q"]),
    "--dilation": (["1", "2"], ["0", "1e9"]),
    "--mode": (["zeros", "reflect", "replicate", "circular"], ["wrap"]),
    "--bias": (["0", "1.5", "-3"], ["nan", "inf", "b"]),
}


def test_fuzz_explain_and_params(folder):
    (folder / "fifo-free.txt").write_text("not an array")
    np.save(folder / "x.npy", np.arange(9.0).reshape(3, 3))
    rng = np.random.default_rng(1415)
    codes = {0: 0, 2: 0}
    for _ in range(80):
        args = ["explain"]
        for name in ("x", "k"):
            good, bad = EXPLAIN[name]
            pool = bad if rng.random() < 0.2 else good
            args.append(pool[rng.integers(len(pool))])
        for opt in ("--at", "--stride", "--padding", "--dilation", "--mode", "--bias"):
            if rng.random() < 0.4:
                good, bad = EXPLAIN[opt]
                pool = bad if rng.random() < 0.2 else good
                args += [opt, pool[rng.integers(len(pool))]]
        if rng.random() < 0.2:
            args.append("--all")
        rc, err = _run(args, folder)
        assert rc in (0, 2), (args, rc, err)
        assert "Traceback" not in err and len(err.splitlines()) == (0 if rc == 0 else 1), (args, err)
        codes[rc] += 1
    for _ in range(20):
        args = ["params"]
        if rng.random() < 0.7:
            args += ["--input", ["3,32,32", "1,28,28", "0,1,1", "3,-1,4", "x", "3,100000,100000"][
                rng.integers(6)]]
        if rng.random() < 0.5:
            args += ["--hidden", ["10", "0", "-5", "1e3"][rng.integers(4)]]
        if rng.random() < 0.5:
            args += ["--kernel", ["3", "5", "0", "99999"][rng.integers(4)]]
        if rng.random() < 0.3:
            args += ["--dtype", ["float32", "float64,float16", "int3", ""][rng.integers(4)]]
        rc, err = _run(args, folder)
        assert rc in (0, 2), (args, rc, err)
        assert "Traceback" not in err and len(err.splitlines()) == (0 if rc == 0 else 1), (args, err)
        codes[rc] += 1
    assert codes[0] >= 10 and codes[2] >= 15, codes  # both kinds were exercised

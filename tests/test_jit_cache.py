"""numba's on-disk cache serves every compiled kernel to the next process.

A kernel built as a closure over other compiled functions never matched
numba's cache (its key pickles the closure, and a dispatcher pickles with an
id of its process): every new process compiled the direct layer and the fused
image filter again, 14-22 s before the first result of each ``ndconv``
command. Two fresh processes run the same calls; the second must compile
nothing (numba's cache debug output names every entry it saves).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("numba")

CALLS = """
import numpy as np, ndconv
from ndconv import images
rng = np.random.default_rng(0)
x = rng.standard_normal((2, 3, 40, 40)).astype(np.float32)
w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
y = ndconv.conv(x, w, padding=1, method="direct")          # the compiled direct kernel
ndconv.conv_backward(np.ones_like(y), x, w, 1, 1, 1, 1)
x1 = rng.standard_normal((4, 1, 60, 60)).astype(np.float32)
ndconv.conv(x1, rng.standard_normal((6, 1, 5, 5)).astype(np.float32))  # depthwise / direct
img = (rng.random((120, 160, 3)) * 255).astype(np.uint8)
images.filter_image(img, np.ones((3, 3)) / 9)               # the fused uint8 filter
images.filter_image(img, np.outer([1, 2, 1], [1, 0, -1]).astype(float))
print("ran")
"""


def _run():
    env = dict(os.environ, NUMBA_DEBUG_CACHE="1")
    done = subprocess.run([sys.executable, "-c", CALLS], env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ran" in done.stdout
    return [line for line in done.stdout.splitlines() if "data saved" in line]


def test_a_second_process_compiles_nothing():
    _run()  # compiles whatever this checkout's cache lacks
    saved = _run()
    assert not saved, "compiled again in a new process:\n" + "\n".join(saved)

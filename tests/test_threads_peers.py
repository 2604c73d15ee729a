"""ndconv leaves other libraries' thread counts alone.

numba's ``omp`` threading layer, when its pool starts, set the thread count of
the OpenMP runtime PyTorch shares: after ``torch.set_num_threads(1)``, one torch
op and one compiled ndconv call, torch ran on every core (and the benchmark's
"1 thread" column timed torch on two). Each case runs in a fresh process,
because numba's pool starts once per process.
"""

import os
import subprocess
import sys

import pytest

pytest.importorskip("numba")
pytest.importorskip("torch")

_SCRIPT = """
import numpy as np, torch, ndconv, ndconv.images
torch.set_num_threads(1)
torch.nn.functional.conv2d(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 3, 3))  # torch's pool up
x = np.random.default_rng(0).standard_normal((2, 8, 64, 64)).astype(np.float32)
w = np.ones((8, 1, 3, 3), np.float32)
{call}
print(torch.get_num_threads())
"""

_CALLS = {
    "depthwise": "ndconv.conv(x, w, None, 1, 1, 1, 8, method='depthwise')",
    "stem (gemm)": "ndconv.conv(np.ones((1, 3, 64, 64), np.float32), "
                   "np.ones((64, 3, 7, 7), np.float32), None, 2, 3)",
    "few channels (direct)": "ndconv.conv(np.ones((64, 1, 28, 28), np.float32), "
                             "np.ones((6, 1, 5, 5), np.float32), None, 1, 2)",
    "stem backward": "ndconv.conv_backward(np.ones((1, 64, 32, 32), np.float32), "
                     "np.ones((1, 3, 64, 64), np.float32), np.ones((64, 3, 7, 7), np.float32), 2, 3)",
    "image filter": "ndconv.images.filter_image(np.zeros((64, 64, 3), np.uint8), np.ones((3, 3)) / 9)",
}


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one CPU: every count is 1")
@pytest.mark.parametrize("call", sorted(_CALLS))
def test_torch_thread_count_survives_ndconv_compiled_kernels(call):
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT.format(call=_CALLS[call])],
        capture_output=True, text=True, timeout=300, check=True,
    )
    assert out.stdout.split()[-1] == "1", out.stdout + out.stderr

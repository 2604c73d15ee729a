"""The FFT method's chunks of blocks: every split gives the direct formula's result."""

from __future__ import annotations

import numpy as np
import pytest

import ndconv
from ndconv.algorithms import fft
from reference import conv_ref

pytest.importorskip("scipy.fft")


@pytest.mark.parametrize("chunk", [1, 40_000, 8 << 20])  # one block row per chunk .. all
@pytest.mark.parametrize("cin, cout, groups, stride, dilation", [
    (1, 1, 1, 1, 1),   # one channel: the product in place
    (2, 4, 2, 1, 1),   # depthwise with a multiplier: a product array per chunk
    (3, 2, 1, (2, 1), (1, 2)),  # channels summed per frequency
])
def test_chunks_equal_the_direct_formula(monkeypatch, chunk, cin, cout, groups, stride,
                                         dilation):
    monkeypatch.setattr(fft, "CHUNK_BYTES", chunk)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, cin, 150, 97)).astype(np.float32)
    w = rng.standard_normal((cout, cin // groups, 13, 9)).astype(np.float32)
    y = ndconv.conv(x, w, None, stride, (6, 4), dilation, groups, method="fft")
    ref = conv_ref(x.astype(np.float64), w.astype(np.float64), None, stride, ((6, 6), (4, 4)),
                   dilation, groups)
    assert y.shape == ref.shape and y.flags.c_contiguous
    assert np.abs(y - ref).max() <= 1e-5 * np.abs(ref).max()

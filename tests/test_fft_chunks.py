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


@pytest.mark.parametrize("chunk", [1, 200_000, 8 << 20])
@pytest.mark.parametrize("shape, k, stride", [
    ((1000,), (31,), (1,)),          # 1-D, the last block cropped
    ((61, 45), (7, 5), (1, 2)),      # 2-D, cropped in both dims, strided
    ((19, 23, 17), (4, 3, 5), (2, 1, 1)),  # 3-D
])
def test_short_blocks_cropped_at_the_end(monkeypatch, chunk, shape, k, stride):
    # Blocks of about twice the kernel span in every dim, so that each dim
    # has several blocks and a last one holding fewer outputs than the others.
    from scipy.fft import next_fast_len

    def short(n, span, st=1, extra=0.0):
        L = next_fast_len(2 * span + 3, real=True)
        return L, (L - span) // st + 1

    monkeypatch.setattr(fft, "block_length", short)
    monkeypatch.setattr(fft, "CHUNK_BYTES", chunk)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3) + shape)
    w = rng.standard_normal((2, 3) + k)
    pad = tuple(kk // 2 for kk in k)
    y = ndconv.conv(x, w, None, stride, pad, 1, 1, method="fft")
    ref = conv_ref(x, w, None, stride, tuple((p, p) for p in pad), 1, 1)
    assert y.shape == ref.shape and y.flags.c_contiguous
    assert np.abs(y - ref).max() <= 1e-10 * np.abs(ref).max()


@pytest.mark.parametrize("n, span, stride", [(1_002_047, 2048, 1), (1086, 63, 1), (1054, 31, 1),
                                             (20_000, 257, 3)])
def test_block_length_takes_the_shortest_near_tie(n, span, stride):
    """Of the lengths whose modelled cost is within TIE of the cheapest, the
    shortest (the model is flat there, the cache is not): the 1M-sample,
    2048-tap signal got 23328, measured 20% slower than 16384."""
    from scipy.fft import next_fast_len

    fft.block_length.cache_clear()
    L, T = fft.block_length(n, span, stride)
    assert T == (L - span) // stride + 1 or L >= n
    n_out = (n - span) // stride + 1
    whole = next_fast_len(n, real=True)
    costs = {whole: whole * np.log2(whole) / n_out}
    c = next_fast_len(2 * span, real=True)
    while c < whole:
        t = (c - span) // stride + 1
        costs[c] = -(-n_out // t) * (c * np.log2(c) + fft._PER_BLOCK) / n_out
        c = next_fast_len(c + 1, real=True)
    least = min(costs.values())
    assert costs[L] <= least * (1 + fft.TIE) + 1e-12
    assert all(costs[c] > least * (1 + fft.TIE) for c in costs if c < L)
    if n == 1_002_047:
        assert L <= 20480

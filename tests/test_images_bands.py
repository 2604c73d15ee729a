"""The banded image path keeps bands tall enough for the fast methods."""

from __future__ import annotations

import numpy as np

import ndconv
from ndconv import images, kernels


def test_large_kernel_bands_are_not_a_few_rows_tall():
    # Sizing bands for an im2col copy of every tap made a 31x31 box on a photo
    # run in bands of one or two rows, each repeating the 30-row halo, on the
    # direct method (33 s on 12 MP); the algorithms bound their own workspace.
    img = np.random.default_rng(0).integers(0, 256, (600, 800, 3), dtype=np.uint8)
    bands = []
    out = images.filter_image(img, kernels.get("box:31"), max_tile_bytes=16 << 20,
                              progress=bands.append)
    assert sum(bands) == 600
    assert min(bands[:-1] or bands) >= 200, bands
    # and the result is the plain correlation ('same', zero padding), rounded
    ref = ndconv.correlate(np.moveaxis(img, -1, 0).astype(np.float64),
                           kernels.get("box:31")[None], mode="same")
    want = np.clip(np.rint(np.moveaxis(ref, 0, -1)), 0, 255)
    # FFT rounding may move a value sitting on .5 to the other integer
    diff = np.abs(out.astype(np.int64) - want)
    assert diff.max() <= 1 and np.count_nonzero(diff) <= 1e-4 * diff.size


def test_band_budget_still_bounds_the_band():
    img = np.zeros((400, 1000), np.float32)
    bands = []
    images.filter_image(img, kernels.get("box:3"), max_tile_bytes=1 << 20, progress=bands.append)
    # 1 MiB / (4 bytes x 1002 columns x (1 input + 1 output) rows) = 130 rows
    assert max(bands) <= 131 and sum(bands) == 400


import pytest  # noqa: E402


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("stride, dilation, padding", [(1, 1, "same"), (2, 1, 3), (1, 2, "same"),
                                                        (3, 2, ((4, 1), (0, 5)))])
def test_bands_equal_one_correlation_of_the_whole_image(mode, stride, dilation, padding):
    # Bands of 3 output rows: the first and last bands read padding rows, the
    # middle ones only the image (the zero-padding bands are conv's padding).
    if mode != "zeros" and isinstance(padding, tuple):
        padding = 2
    rng = np.random.default_rng(0)
    img = rng.random((23, 17, 2)).astype(np.float64)
    k = rng.standard_normal((3, 4))
    out = images.filter_image(img, k, padding=padding, padding_mode=mode, stride=stride,
                              dilation=dilation, rows_per_tile=3, value_range="rescale")
    chw = np.moveaxis(img, -1, 0)[:, None]
    ref = ndconv.conv(chw, k[None, None], padding=padding, padding_mode=mode, stride=stride,
                      dilation=dilation)[:, 0]
    ref = np.moveaxis(ref, 0, -1)
    lo, hi = img.min(), img.max()
    ref = (ref - ref.min()) * (hi - lo) / (ref.max() - ref.min()) + lo
    assert out.shape == ref.shape and out.flags.c_contiguous
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-12)

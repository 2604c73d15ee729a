"""The compiled rows kernel of the depthwise method (``_rows_jit``: long output
rows, zero padding) against the float64 NumPy reference, SciPy and OpenCV:
kernel sizes that fill its nine-, three- and one-tap passes, asymmetric and
over-wide padding (rows and columns where no tap reads the input), a kernel
wider than the input, dilation, leading-dim stride, channel multipliers,
1-D to 3-D, float32 and float64, NaN and Inf; and which specs it takes."""

from __future__ import annotations

import numpy as np
import pytest

import ndconv
from ndconv.core.algorithms import _rows_jit
from ndconv.core.algorithms.spec import CorrSpec
from reference import conv_ref

pytest.importorskip("numba")

# (x shape, weight shape, groups, padding pairs, dilation, stride)
CASES = [
    ((1, 1, 9, 300), (1, 1, 3, 3), 1, ((1, 1), (1, 1)), (1, 1), (1, 1)),  # one 9-tap pass
    ((1, 1, 12, 257), (1, 1, 5, 5), 1, ((2, 2), (2, 2)), (1, 1), (1, 1)),  # 9+9+3+3+1
    ((2, 3, 7, 280), (3, 1, 2, 4), 3, ((1, 0), (3, 2)), (1, 1), (1, 1)),  # even, asymmetric
    ((1, 2, 8, 300), (6, 1, 3, 3), 2, ((1, 1), (1, 1)), (2, 3), (1, 1)),  # multiplier 3, dilated
    ((1, 1, 11, 300), (1, 1, 3, 7), 1, ((4, 5), (9, 8)), (1, 1), (2, 1)),  # empty rows, strided
    ((1, 1, 3, 10), (1, 1, 1, 15), 1, ((0, 0), (250, 250)), (1, 1), (1, 1)),  # kernel > input
    ((1, 1, 5, 400), (1, 1, 1, 1), 1, ((0, 0), (0, 0)), (1, 1), (1, 1)),  # one tap
    ((2, 2, 300), (2, 1, 11), 2, ((5, 5),), (1,), (1,)),  # 1-D
    ((1, 2, 4, 5, 260), (2, 1, 3, 2, 3), 2, ((1, 1), (0, 1), (1, 1)), (1, 2, 1), (1, 1, 1)),
]


def _spec(xs, ws, g, pairs, dil, stride, dtype):
    n = len(ws) - 2
    return CorrSpec(batch=xs[0], in_channels=xs[1], out_channels=ws[0], groups=g,
                    in_spatial=xs[2:], kernel_size=ws[2:], stride=stride, dilation=dil,
                    pairs=pairs, lhs_dilation=(1,) * n, padding_mode="zeros",
                    dtype=np.dtype(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
def test_rows_kernel_matches_the_float64_reference(case, dtype):
    xs, ws, g, pairs, dil, stride = case
    spec = _spec(*case, dtype)
    assert _rows_jit.eligible(spec)
    rng = np.random.default_rng(len(xs) * 10 + ws[-1])
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    ref = conv_ref(x.astype(np.float64), w.astype(np.float64), None, stride, pairs, dil, g)
    for threads in (1, 2):
        out = _rows_jit.run(x, w, spec, threads)
        assert out.shape == ref.shape and out.dtype == dtype
        tol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(out, ref, rtol=0, atol=tol * max(1.0, np.abs(ref).max()))
    # and through the public call, which picks the depthwise method for these
    y = ndconv.conv(x, w, None, stride, pairs, dil, g, method="depthwise")
    np.testing.assert_allclose(y, ref, rtol=0, atol=tol * max(1.0, np.abs(ref).max()))


def test_image_same_matches_scipy_and_opencv():
    """The bench's case, a 'same' 3x3 filter of a single-channel image, smaller."""
    ndi = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(3)
    img = rng.random((301, 517), dtype=np.float32)
    for k in (3, 15):  # odd: SciPy centres even kernels its own way
        ker = rng.standard_normal((k, k)).astype(np.float32)
        y = ndconv.correlate(img, ker, mode="same", method="depthwise")
        ref = ndi.correlate(img.astype(np.float64), ker.astype(np.float64), mode="constant")
        np.testing.assert_allclose(y, ref, rtol=0, atol=1e-5 * np.abs(ref).max())
    cv2 = pytest.importorskip("cv2")
    ker = rng.standard_normal((3, 3)).astype(np.float32)
    np.testing.assert_allclose(ndconv.correlate(img, ker, mode="same"),
                               cv2.filter2D(img, -1, ker, borderType=cv2.BORDER_CONSTANT),
                               rtol=0, atol=1e-5)


def test_nan_and_inf_reach_only_their_windows():
    x = np.zeros((1, 1, 6, 300), np.float32)
    x[0, 0, 2, 100] = np.nan
    x[0, 0, 4, 0] = np.inf
    w = np.ones((1, 1, 3, 3), np.float32)
    spec = _spec(x.shape, w.shape, 1, ((1, 1), (1, 1)), (1, 1), (1, 1), np.float32)
    y = _rows_jit.run(x, w, spec, 1)[0, 0]
    nan = np.zeros(y.shape, bool)
    nan[1:4, 99:102] = True
    assert np.array_equal(np.isnan(y), nan)
    inf = np.zeros(y.shape, bool)
    inf[3:6, 0:2] = True  # the edge columns' sum
    assert np.array_equal(np.isposinf(y), inf)


@pytest.mark.parametrize("change, takes", [
    ({}, True),
    ({"in_spatial": (9, _rows_jit.MIN_ROW - 1), "pairs": ((1, 1), (0, 0))}, False),  # short rows
    ({"stride": (1, 2)}, False),
    ({"padding_mode": "reflect"}, False),
    ({"lhs_dilation": (1, 2)}, False),
    ({"in_channels": 2, "groups": 1}, False),  # two channels per group
    ({"dtype": np.dtype(np.complex128)}, False),
    ({"pairs": ((1, 1), (-1, 1))}, False),  # negative padding (a crop)
])
def test_eligible(change, takes):
    import dataclasses

    spec = _spec((1, 1, 9, 300), (1, 1, 3, 3), 1, ((1, 1), (1, 1)), (1, 1), (1, 1), np.float32)
    assert _rows_jit.eligible(dataclasses.replace(spec, **change)) is takes

"""Winograd F(m, 3): the compiled transforms, the NumPy transforms, and accuracy."""

from __future__ import annotations

import numpy as np
import pytest

import ndconv
from ndconv.algorithms import winograd
from reference import conv_ref

numba = pytest.importorskip("numba", reason="the compiled transforms need numba (ndconv[jit])")


def _numpy_path(monkeypatch):
    monkeypatch.setattr(winograd, "_compiled", lambda m: None)


CASES = [  # x shape, w shape, padding, groups, padding_mode
    ((2, 3, 9, 11), (4, 3, 3, 3), 1, 1, "zeros"),
    ((1, 4, 7, 5), (6, 2, 3, 3), 0, 2, "zeros"),
    ((3, 6, 13, 17), (6, 1, 3, 3), 1, 6, "zeros"),
    ((2, 3, 8, 8), (5, 3, 3, 3), 1, 1, "reflect"),
    ((1, 1, 4, 4), (1, 1, 3, 3), 2, 1, "circular"),
    ((2, 5, 3, 30), (3, 5, 3, 3), ((1, 0), (2, 1)), 1, "zeros"),
    ((2, 2, 10), (3, 2, 3), 1, 1, "zeros"),
    ((1, 3, 23), (2, 3, 3), 0, 1, "replicate"),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("xs, ws, padding, groups, mode", CASES)
def test_compiled_transforms_equal_reference_and_numpy_path(xs, ws, padding, groups, mode,
                                                            dtype, monkeypatch):
    assert winograd._compiled(4) is not None
    rng = np.random.default_rng(len(xs) + sum(xs))
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    ref = conv_ref(x.astype(np.float64), w.astype(np.float64), None, 1, padding, 1, groups, mode)
    y = ndconv.conv(x, w, None, 1, padding, 1, groups, padding_mode=mode, method="winograd")
    _numpy_path(monkeypatch)
    yn = ndconv.conv(x, w, None, 1, padding, 1, groups, padding_mode=mode, method="winograd")
    tol = 1e-13 if dtype == np.float64 else 1e-5
    scale = np.abs(ref).max()
    assert y.dtype == dtype and y.shape == ref.shape
    assert np.abs(y - ref).max() <= tol * scale
    assert np.abs(yn - ref).max() <= tol * scale


@pytest.mark.parametrize("compiled", [True, False])
def test_float32_error_within_1e5_at_256_channels(compiled, monkeypatch):
    # The case: F(4x4, 3x3) on the usual points 0, +-1, +-2 was 1.6e-5
    # of max|y| here; the points 0, 1, -1, 2, -1/2 keep it under 1e-5.
    if not compiled:
        _numpy_path(monkeypatch)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 256, 80, 128)).astype(np.float32)
    w = (rng.standard_normal((256, 256, 3, 3)) / np.sqrt(9 * 256)).astype(np.float32)
    ref = ndconv.conv(x.astype(np.float64), w.astype(np.float64), None, 1, 1, method="gemm")
    y = ndconv.conv(x, w, None, 1, 1, method="winograd")
    assert np.abs(y - ref).max() <= 1e-5 * np.abs(ref).max()


@pytest.mark.parametrize("m", [2, 4])
def test_matrices_compute_a_3_tap_correlation_exactly(m):
    # A^T [(G g) * (B^T d)] == the correlation of d with g, in exact arithmetic
    # (here float64 at 1e-14): the matrices, not only the code, are right.
    BT, G, AT = (np.asarray(a, np.float64) for a in winograd._MATRICES[m])
    rng = np.random.default_rng(m)
    for _ in range(5):
        d, g = rng.standard_normal(m + 2), rng.standard_normal(3)
        want = np.array([d[i:i + 3] @ g for i in range(m)])
        np.testing.assert_allclose(AT @ ((G @ g) * (BT @ d)), want, rtol=0, atol=1e-14)

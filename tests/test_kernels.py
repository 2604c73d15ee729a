"""The named kernel bank: values from the lecture, orientations against SciPy."""

import warnings

import numpy as np
import pytest
from scipy import ndimage, signal

import ndconv
from ndconv import kernels


def test_lecture_kernels_have_the_lectures_values():
    np.testing.assert_array_equal(
        kernels.get("edge"), [[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]])
    np.testing.assert_array_equal(
        kernels.get("sharpen"), [[0, -1, 0], [-1, 5, -1], [0, -1, 0]])
    np.testing.assert_allclose(
        kernels.get("gaussian") * 16, [[1, 2, 1], [2, 4, 2], [1, 2, 1]])
    np.testing.assert_array_equal(kernels.get("diff"), [[1, -1]])


def test_diff_kernel_reproduces_the_books_edge_example():
    X = np.ones((6, 8))
    X[:, 2:6] = 0
    Y = ndconv.correlate(X, kernels.get("diff"))
    np.testing.assert_array_equal(Y, np.tile([0, 1, 0, 0, 0, -1, 0], (6, 1)))


def test_identity_returns_the_input():
    x = np.random.default_rng(0).random((7, 9))
    np.testing.assert_array_equal(ndconv.correlate(x, kernels.get("identity"), mode="same"), x)


@pytest.mark.parametrize("name, axis", [("sobel-x", 1), ("sobel-y", 0)])
def test_sobel_orientation_matches_scipy(name, axis):
    x = np.random.default_rng(1).random((12, 10))
    ours = ndconv.correlate(x, kernels.get(name))           # valid part only
    ref = ndimage.sobel(x, axis=axis, mode="constant")[1:-1, 1:-1]
    np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_laplacian_matches_scipy():
    x = np.random.default_rng(2).random((9, 11))
    ref = ndimage.laplace(x, mode="constant")[1:-1, 1:-1]
    np.testing.assert_allclose(ndconv.correlate(x, kernels.get("laplacian")), ref, atol=1e-12)


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.5])
def test_gaussian_sigma_matches_scipy_window(sigma):
    k = kernels.get(f"gaussian:{sigma}")
    size = 2 * int(np.ceil(3 * sigma)) + 1
    w = signal.windows.gaussian(size, sigma)
    ref = np.outer(w, w) / np.outer(w, w).sum()
    assert k.shape == (size, size)
    np.testing.assert_allclose(k, ref, rtol=1e-12)


@pytest.mark.parametrize("sigma", ["1e-170", "1e-300"])
def test_tiny_sigma_is_the_identity_not_nan(sigma):
    # sigma**2 underflows to 0; the limit of a Gaussian is a single 1 at the centre.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        k = kernels.get(f"gaussian:{sigma}")
    np.testing.assert_array_equal(k, [[0, 0, 0], [0, 1, 0], [0, 0, 0]])


@pytest.mark.parametrize("spec, shape", [("box", (3, 3)), ("box:5", (5, 5)),
                                         ("box:2", (2, 2)), ("motion", (9, 9)),
                                         ("motion:4", (4, 4))])
def test_averaging_kernels_sum_to_one(spec, shape):
    k = kernels.get(spec)
    assert k.shape == shape
    assert k.sum() == pytest.approx(1.0)
    assert (k >= 0).all()


def test_motion_is_diagonal():
    np.testing.assert_allclose(kernels.get("motion:3"), np.eye(3) / 3)


def test_emboss_values():
    np.testing.assert_array_equal(kernels.get("emboss"), [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])


def test_names_and_case():
    assert {"identity", "box", "gaussian", "sharpen", "edge", "sobel-x", "sobel-y",
            "laplacian", "emboss", "motion"} <= set(kernels.names())
    np.testing.assert_array_equal(kernels.get(" Sobel-X "), kernels.get("sobel-x"))
    assert [n for n, _ in kernels.describe()] == kernels.names()


def test_returns_a_fresh_array():
    k = kernels.get("edge")
    k[:] = 0
    assert kernels.get("edge")[1, 1] == 8


@pytest.mark.parametrize("spec, match", [
    ("edgy", "unknown kernel 'edgy'"),
    ("", "unknown kernel"),
    ("edge:3", "takes no argument"),
    ("box:", "nothing after"),
    ("box:x", "must be an integer"),
    ("box:0", "between 1 and 255"),
    ("motion:1000", "between 1 and 255"),
    ("gaussian:-1", "must be positive"),
    ("gaussian:nan", "must be positive"),
    ("gaussian:500", "at most"),
    ("gaussian:abc", "must be a number"),
])
def test_bad_names_raise_clear_valueerrors(spec, match):
    with pytest.raises(ValueError, match=match):
        kernels.get(spec)


def test_non_string_is_a_typeerror():
    with pytest.raises(TypeError, match="must be a str"):
        kernels.get(3)

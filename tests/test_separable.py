"""The separable method: rank-1 kernels as one 1-D pass per dim."""

from __future__ import annotations

import numpy as np
import pytest

import ndconv
from ndconv import kernels
from ndconv.algorithms import ALGORITHMS, separable
from reference import conv_ref


def _depthwise(k, channels=2, mult=1):
    w = np.broadcast_to(np.asarray(k, np.float64), (channels * mult, 1) + np.shape(k))
    return np.ascontiguousarray(w)


@pytest.mark.parametrize("name", ["box:7", "gaussian", "gaussian:2", "sobel-x", "sobel-y"])
def test_bank_kernels_that_are_outer_products_factor(name):
    k = kernels.get(name)
    spec_like = type("S", (), {"kernel_size": k.shape, "dtype": np.dtype(np.float64)})
    us = separable.factors(k[None, None], spec_like)
    assert us is not None
    np.testing.assert_allclose(np.outer(us[0][0], us[1][0]), k, rtol=0, atol=1e-14)


@pytest.mark.parametrize("name", ["sharpen", "edge", "laplacian", "emboss", "motion:5"])
def test_kernels_of_rank_above_one_do_not(name):
    k = kernels.get(name)
    spec_like = type("S", (), {"kernel_size": k.shape, "dtype": np.dtype(np.float64)})
    assert separable.factors(k[None, None], spec_like) is None


CASES = [  # kernel, stride, padding, dilation, mode
    (np.outer([1.0, 2, 1], [1.0, 0, -1, 3, 2]), 1, "same", 1, "zeros"),
    (np.outer([1.0, 2, 1], [1.0, 0, -1, 3, 2]), 2, 3, 1, "reflect"),
    (np.outer([0.5, -1, 2, 1], [2.0, 1, 1]), (1, 3), ((2, 1), (0, 4)), (2, 1), "zeros"),
    (np.outer([1.0, 2, 3], [1.0, 1, 1, 1]), 1, 2, 2, "circular"),
    (np.outer([1.0, 2, 3], [1.0, 1, 1, 1]), 1, 2, 1, "replicate"),
    (np.einsum("i,j,k->ijk", [1.0, 2, 1], [1.0, -1, 2], [3.0, 1]), 1, 1, 1, "zeros"),
    (np.einsum("i,j,k->ijk", [1.0, 2, 1], [1.0, -1, 2], [3.0, 1]), 2, 2, 1, "reflect"),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k, stride, padding, dilation, mode", CASES)
def test_separable_equals_the_direct_formula(k, stride, padding, dilation, mode, dtype):
    rng = np.random.default_rng(k.ndim)
    shape = (2, 2) + (9, 11, 8)[:k.ndim]
    x = rng.standard_normal(shape).astype(dtype)
    for mult in (1, 2):  # one output channel per input, then two
        w = (_depthwise(k, 2, mult) * (1 + np.arange(2 * mult))[:, None, None].reshape(
            (-1,) + (1,) * (k.ndim + 1))).astype(dtype)
        y = ndconv.conv(x, w, None, stride, padding, dilation, groups=2, padding_mode=mode,
                        method="separable")
        ref = conv_ref(x.astype(np.float64), w.astype(np.float64), None, stride,
                       padding if not isinstance(padding, str) else
                       tuple((int(np.floor((d * (n - 1)) / 2)), int(np.ceil((d * (n - 1)) / 2)))
                             for n, d in zip(k.shape, np.broadcast_to(dilation, k.ndim))),
                       dilation, 2, mode)
        tol = 1e-12 if dtype == np.float64 else 1e-5
        assert y.dtype == dtype and y.shape == ref.shape
        assert np.abs(y - ref).max() <= tol * np.abs(ref).max()


def test_transposed_convolution_through_separable_passes():
    # Input dilation (the transposed convolution's stride) is per dim too.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 2, 5, 6))
    w = _depthwise(np.outer([1.0, 2, -1], [0.5, 1, 1, 2]), 2)
    y = ndconv.conv_transpose(x, w, stride=(2, 3), padding=(1, 0), groups=2, method="separable")
    ref = ndconv.conv_transpose(x, w, stride=(2, 3), padding=(1, 0), groups=2, method="direct")
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-12)


def test_a_forced_separable_method_refuses_other_kernels():
    x = np.ones((1, 2, 8, 8))
    w = np.random.default_rng(0).standard_normal((2, 1, 5, 5))
    with pytest.raises(ValueError, match="method`='separable' cannot compute .* not rank 1"):
        ndconv.conv(x, w, groups=2, method="separable")


def test_auto_asks_the_kernel_before_choosing_separable():
    # Same shapes, so the same estimates (separable's is the lowest here): the
    # rank-1 box gets it, a random kernel is left out with the reason.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 3, 300, 400)).astype(np.float32)
    box = _depthwise(np.full((21, 21), 1 / 441), 3).astype(np.float32)
    assert ndconv.choose_method(x, box, padding="same", groups=3)[0] == "separable"
    w = rng.standard_normal((3, 1, 21, 21)).astype(np.float32)
    method, reason = ndconv.choose_method(x, w, padding="same", groups=3)
    assert method != "separable"
    assert "separable left out: the kernel is not rank 1" in reason
    y = ndconv.conv(x, box, padding="same", groups=3)
    ref = ndconv.conv(x.astype(np.float64), box.astype(np.float64), padding="same", groups=3,
                      method="direct")
    assert np.abs(y - ref).max() <= 1e-5 * np.abs(ref).max()


def test_the_record_depends_on_values_and_says_so():
    algo = ALGORITHMS["separable"]
    assert algo.applies is not None
    from ndconv.algorithms.choose import skip_note

    assert skip_note(algo, None, None) == "it depends on the kernel's values"


def test_factors_need_no_lapack(monkeypatch):
    # An SVD per band cost up to 0.25 s each when BLAS's threads waited for a
    # busy core (gaussian:8 on a 12 MP photo took 3-5 s instead of 0.5 s).
    def refuse(*a, **k):
        raise AssertionError("factors called LAPACK")

    monkeypatch.setattr(np.linalg, "svd", refuse)
    k = kernels.get("gaussian:8")
    spec_like = type("S", (), {"kernel_size": k.shape, "dtype": np.dtype(np.float32)})
    us = separable.factors(_depthwise(k, 3), spec_like)
    assert us is not None
    np.testing.assert_allclose(np.outer(us[0][1], us[1][1]), k, rtol=0, atol=1e-7 * k.max())


@pytest.mark.parametrize("dtype, eps", [(np.float64, 2.2e-16), (np.float32, 1.2e-7)])
def test_rank_one_up_to_rounding_factors_and_real_rank_two_does_not(dtype, eps):
    rng = np.random.default_rng(1)
    a, b, c = rng.standard_normal(7), rng.standard_normal(5), rng.standard_normal(3)
    t = np.einsum("i,j,k->ijk", a, b, c)
    noisy = t * (1 + eps * rng.uniform(-1, 1, t.shape))  # the kernel stored in dtype
    spec_like = type("S", (), {"kernel_size": t.shape, "dtype": np.dtype(dtype)})
    us = separable.factors(noisy[None, None], spec_like)
    assert us is not None
    back = np.einsum("i,j,k->ijk", *(u[0].astype(np.float64) for u in us))
    assert np.abs(back - t).max() <= 16 * eps * np.abs(t).max()
    rank2 = t + 1e-3 * np.abs(t).max() * np.einsum("i,j,k->ijk", *(rng.standard_normal(n)
                                                                    for n in t.shape))
    assert separable.factors(rank2[None, None], spec_like) is None


def test_zero_and_complex_kernels_factor():
    spec_like = type("S", (), {"kernel_size": (3, 4), "dtype": np.dtype(np.float64)})
    us = separable.factors(np.zeros((2, 1, 3, 4)), spec_like)
    assert us is not None and not np.outer(us[0][0], us[1][0]).any()
    rng = np.random.default_rng(2)
    a = rng.standard_normal(3) + 1j * rng.standard_normal(3)
    b = rng.standard_normal(4) + 1j * rng.standard_normal(4)
    spec_c = type("S", (), {"kernel_size": (3, 4), "dtype": np.dtype(np.complex128)})
    us = separable.factors(np.outer(a, b)[None, None], spec_c)
    np.testing.assert_allclose(np.outer(us[0][0], us[1][0]), np.outer(a, b), rtol=0,
                               atol=1e-14)

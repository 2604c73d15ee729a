"""float64 central-difference checks of ``conv_backward`` and
``conv_transpose_backward`` (as JAX's ``check_grads``), independent of PyTorch.

The loss is ``L = sum(G * f(x, w, b))`` for a fixed random ``G``, so
``dL/d(out) = G`` and every gradient ndconv returns can be checked entry by
entry against ``(L(p + h) - L(p - h)) / 2h``.
"""

from __future__ import annotations

import numpy as np
import pytest

import ndconv
from reference import numeric_grad

H = 1e-3  # the convolution is linear in each argument: only rounding remains


def _numeric_grad(loss, a):
    return numeric_grad(loss, a, H)


def _check(fn, grad_fn, x, w, b, kwargs, method="auto"):
    r = np.random.default_rng(1)
    out = fn(x, w, b, **kwargs, method=method)
    G = r.standard_normal(out.shape)

    def loss():
        return float(np.sum(G * fn(x, w, b, **kwargs, method=method)))

    gx, gw, gb = grad_fn(G, x, w, **kwargs, method=method)
    for name, analytic, param in (("x", gx, x), ("weight", gw, w), ("bias", gb, b)):
        numeric = _numeric_grad(loss, param)
        assert analytic.shape == param.shape, name
        np.testing.assert_allclose(analytic, numeric, rtol=1e-7, atol=1e-7,
                                   err_msg=f"gradient with respect to {name}")


CONV_CASES = [
    # (x shape, weight shape, kwargs)
    ((2, 2, 7), (3, 2, 3), dict(stride=2, padding=1)),
    ((1, 2, 6), (2, 1, 2), dict(padding="same", dilation=2, groups=2, padding_mode="reflect")),
    ((2, 5), (2, 2, 3), dict(padding=((2, 0),), padding_mode="circular")),  # unbatched
    ((1, 2, 5, 4), (2, 2, 2, 3), dict(stride=(2, 1), padding=((1, 0), (0, 2)),
                                      padding_mode="replicate")),
    ((1, 4, 5, 5), (4, 2, 3, 3), dict(dilation=(1, 2), groups=2, padding="full")),
    ((1, 2, 5, 5), (2, 2, 3, 3), dict(stride=3, padding=2)),  # stride > span: rows skipped
    ((1, 1, 4, 3, 4), (2, 1, 2, 2, 3), dict(stride=(1, 2, 1), padding=1,
                                             padding_mode="reflect")),
    ((1, 1, 3, 3, 3, 3), (1, 1, 2, 2, 2, 2), dict(stride=(2, 1, 1, 2), padding=1)),  # 4-D
]


@pytest.mark.parametrize("xs, ws, kwargs", CONV_CASES)
def test_conv_backward_central_differences(xs, ws, kwargs):
    r = np.random.default_rng(0)
    x, w, b = r.standard_normal(xs), r.standard_normal(ws), r.standard_normal(ws[0])
    _check(ndconv.conv, ndconv.conv_backward, x, w, b, kwargs)


TRANSPOSE_CASES = [
    ((2, 2, 4), (2, 3, 3), dict(stride=2, padding=1, output_padding=1)),
    ((3, 4), (3, 1, 2), dict(stride=3, dilation=2, groups=3)),  # unbatched
    ((1, 2, 3, 3), (2, 2, 3, 2), dict(stride=(2, 1), padding=(1, 0), output_padding=(1, 0),
                                      dilation=(1, 2))),
    ((1, 2, 4, 5), (2, 1, 3, 3), dict(padding=2, groups=2)),  # padding > d*(k-1): crops
    ((1, 1, 2, 2, 3), (1, 2, 2, 2, 2), dict(stride=2, output_padding=(0, 1, 1))),
    ((1, 1, 2, 2), (1, 1, 2, 2), dict(stride=1, dilation=3, output_padding=2)),  # op >= stride
]


@pytest.mark.parametrize("xs, ws, kwargs", TRANSPOSE_CASES)
def test_conv_transpose_backward_central_differences(xs, ws, kwargs):
    r = np.random.default_rng(0)
    groups = kwargs.get("groups", 1)
    x, w = r.standard_normal(xs), r.standard_normal(ws)
    b = r.standard_normal(ws[1] * groups)
    _check(ndconv.conv_transpose, ndconv.conv_transpose_backward, x, w, b, kwargs)


def test_float32_gradients_are_float32_and_close_to_float64():
    r = np.random.default_rng(0)
    x, w = r.standard_normal((2, 3, 6, 6)), r.standard_normal((4, 3, 3, 3))
    gy = r.standard_normal((2, 4, 3, 3))
    g64 = ndconv.conv_backward(gy, x, w, stride=2, padding=1)
    g32 = ndconv.conv_backward(gy.astype(np.float32), x.astype(np.float32),
                               w.astype(np.float32), stride=2, padding=1)
    for a, b in zip(g32, g64):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * np.abs(b).max())

"""ndconv.properties: equivariance and locality, and that each check can fail."""

from __future__ import annotations

import numpy as np
import pytest

from ndconv import nn
from ndconv import properties as P


def _x(rng, C, S, B=2):
    return rng.standard_normal((B, C, *S))


@pytest.mark.parametrize("n, S, shift", [(1, (11,), 3), (2, (9, 8), (1, -2)), (3, (6, 5, 7), (2, 0, -1))])
def test_conv_is_exactly_equivariant_with_circular_padding(rng, n, S, shift):
    conv = nn.Conv(n, 2, 3, 3, padding=1, padding_mode="circular", dtype=np.float64, rng=0)
    r = P.translation_equivariance(conv, _x(rng, 2, S), shift)
    assert r.holds and r.max_error == 0.0 and r.compared == 2 * 3 * int(np.prod(S))
    # With zero padding, the interior is exact ...
    zconv = nn.Conv(n, 2, 3, 3, padding=1, dtype=np.float64, rng=0)
    r = P.translation_equivariance(zconv, _x(rng, 2, S), shift, boundary="zeros")
    assert r.holds and r.max_error == 0.0 and r.compared > 0
    # ... but wrapping around the border is not (the check can fail).
    assert not P.translation_equivariance(zconv, _x(rng, 2, S), shift)


def test_deep_conv_stack_is_interior_equivariant(rng):
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, dtype=np.float64), nn.ReLU(),
                          nn.Conv2d(4, 2, 5, padding=2, dtype=np.float64), nn.Tanh())
    x = _x(rng, 1, (14, 13))
    assert P.translation_equivariance(model, x, (2, -1), boundary="zeros")
    # Too small a margin lets the border effects in.
    assert not P.translation_equivariance(model, x, (2, -1), boundary="zeros", margin=1)


def test_fully_connected_and_locally_connected_fail_equivariance(rng):
    x = _x(rng, 2, (8, 7))
    fc = nn.FullyConnected((2, 8, 7), (3, 8, 7), dtype=np.float64, rng=0)
    r = P.translation_equivariance(fc, x, (1, 1))
    assert not r.holds and r.max_error > 0.1
    assert "fails" in str(r) and "worst at" in str(r)
    lc = nn.LocallyConnected2d(2, 3, 3, (8, 7), padding=1, dtype=np.float64, rng=0)
    assert not P.translation_equivariance(lc, x, (1, 1), boundary="zeros")
    # Tie the locally connected kernels (one kernel, one bias everywhere): it passes.
    lc.weight.data[:] = lc.weight.data[:, :1, :1]
    lc.bias.data[:] = lc.bias.data[:, :1, :1]
    assert P.translation_equivariance(lc, x, (1, 1), boundary="zeros")
    with pytest.raises(ValueError, match="no interior"):
        P.translation_equivariance(fc, x, 1, boundary="zeros")


def test_locality_holds_for_local_layers_and_fails_for_dense(rng):
    x = _x(rng, 2, (9, 9))
    for layer in [nn.Conv2d(2, 3, 3, padding=1, dtype=np.float64, rng=0),
                  nn.Conv2d(2, 3, 3, stride=2, dilation=2, dtype=np.float64, rng=0),
                  nn.LocallyConnected2d(2, 3, 3, (9, 9), dtype=np.float64, rng=0),
                  nn.Sequential(nn.Conv2d(2, 3, 3, dtype=np.float64), nn.MaxPool2d(2),
                                nn.Conv2d(3, 1, 2, dtype=np.float64))]:
        r = P.locality(layer, x, (1, 1))
        assert r.holds and r.max_error == 0.0 and r.compared > 0, layer
    fc = nn.FullyConnected((2, 9, 9), (3, 9, 9), dtype=np.float64, rng=0)
    assert P.locality(fc, x).holds  # its field is everything: nothing is outside
    r = P.locality(fc, x, (4, 4), region=(np.arange(3, 6), np.arange(3, 6)))
    assert not r.holds and r.max_error > 0 and r.where[0] == 0


def test_locality_restores_parameter_gradients(rng):
    conv = nn.Conv2d(1, 1, 3, dtype=np.float64, rng=0)
    conv.weight.grad = np.full(conv.weight.shape, 7.0)
    P.locality(conv, _x(rng, 1, (5, 5)))
    assert (conv.weight.grad == 7.0).all() and conv.bias.grad is None


def test_locality_catches_a_leaky_layer(rng):
    class Leaky(nn.Conv2d):
        """A 3x3 conv whose backward also leaks a little to the top-left input."""

        def backward(self, grad_out):
            gx = super().backward(grad_out)
            gx[:, :, 0, 0] += 1e-3 * grad_out.sum()
            return gx

    leaky = Leaky(1, 1, 3, dtype=np.float64, rng=0)
    r = P.locality(leaky, _x(rng, 1, (7, 7)), (4, 4))
    assert not r.holds and r.where == (0, 0, 0, 0)


def test_bad_arguments(rng):
    conv = nn.Conv2d(1, 1, 3, dtype=np.float64)
    with pytest.raises(ValueError, match="spatial shape"):
        P.translation_equivariance(conv, _x(rng, 1, (6, 6)))
    with pytest.raises(ValueError, match="boundary"):
        P.translation_equivariance(conv, _x(rng, 1, (6, 6)), boundary="reflect")
    with pytest.raises(ValueError, match="margin"):
        P.translation_equivariance(lambda x: x, _x(rng, 1, (6, 6)), boundary="zeros")
    with pytest.raises(ValueError, match="batch"):
        P.translation_equivariance(conv, np.ones((6, 6)))
    with pytest.raises(TypeError, match="Module"):
        P.locality(lambda x: x, _x(rng, 1, (6, 6)))
    with pytest.raises(ValueError, match="out_index"):
        P.locality(conv, _x(rng, 1, (6, 6)), (5, 5))
    for channel in (1, -1):  # one output channel only (was an IndexError / the last)
        with pytest.raises(ValueError, match="channel"):
            P.locality(conv, _x(rng, 1, (6, 6)), channel=channel)
    # A plain callable works for the circular check.
    assert P.translation_equivariance(lambda x: 2 * x, _x(rng, 1, (6, 6)), 2)

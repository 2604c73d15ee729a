"""A layer shared by threads (issue 14, item 12): each thread's backward pairs
with its own forward, and the parameter gradients of all threads add up.

Reference: the same layer run in one thread, one batch after the other
(itself compared with PyTorch elsewhere in the suite)."""

import copy
import threading

import numpy as np
import pytest

from ndconv import nn


def _graph(rng):
    """A residual block: ReLU(conv(x) + x), the ReLU module used twice."""
    g, relu = nn.Graph(), nn.ReLU()
    x = g.input()
    h = g.layer("relu", relu, g.layer("conv", nn.Conv2d(2, 2, 3, padding=1, rng=rng), x))
    g.output(g.layer("relu", relu, g.add(h, x)))
    return g


def _layers():
    rng = np.random.default_rng(0)
    return [
        _graph(rng),
        nn.Conv2d(2, 3, 3, padding=1, rng=rng),
        nn.Linear(6, 4, rng=rng),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Dropout(0.5, rng=1),
        nn.Flatten(),
        nn.PReLU(),
        nn.Softmax(dim=1),
    ]


def _input(layer, seed):
    rng = np.random.default_rng(seed)
    # Different shapes per thread where the layer allows it (Flatten's
    # backward reshapes to its own forward's input shape).
    shape = (2, 6) if isinstance(layer, nn.Linear) else (2, 2, 6, 6 + 2 * (seed - 1))
    if isinstance(layer, nn.MaxPool2d):
        shape = (2, 2, 6, 6)
    return rng.standard_normal(shape)


@pytest.mark.parametrize("layer", _layers(), ids=lambda m: type(m).__name__)
def test_shared_layer_in_two_threads(layer):
    # Interleaved on purpose: A forward, B forward, then both backward. With
    # one cache per layer, A's backward would use B's input.
    xs = [_input(layer, s).astype(np.float64) for s in (1, 2)]
    for p in layer.parameters():
        p.data = p.data.astype(np.float64)
    ref = copy.deepcopy(layer)
    barrier = threading.Barrier(2)
    got, errors = {}, []

    def work(i):
        try:
            y = layer.forward(xs[i])
            barrier.wait(timeout=30)  # both forwards done before any backward
            got[i] = (y, layer.backward(np.ones_like(y) * (i + 1)))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=work, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    for i in (0, 1):
        if isinstance(layer, nn.Dropout):  # random masks: check the pairing itself
            y, g = got[i]
            np.testing.assert_array_equal(g != 0, y != 0)
            continue
        y = ref.forward(xs[i])
        g = ref.backward(np.ones_like(y) * (i + 1))
        np.testing.assert_allclose(got[i][0], y)
        np.testing.assert_allclose(got[i][1], g)
    for name, p in ref.named_parameters():
        np.testing.assert_allclose(dict(layer.named_parameters())[name].grad, p.grad,
                                   rtol=1e-12)


def test_gradients_accumulated_from_many_threads_add_up():
    layer = nn.Linear(64, 64, rng=0)
    x = np.random.default_rng(1).standard_normal((8, 64)).astype(np.float32)

    def work():
        for _ in range(50):
            layer.forward(x)
            layer.backward(np.ones((8, 64), np.float32))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    one = nn.Linear(64, 64, rng=0)
    one.forward(x)
    one.backward(np.ones((8, 64), np.float32))
    np.testing.assert_allclose(layer.weight.grad, 200 * one.weight.grad, rtol=1e-4)

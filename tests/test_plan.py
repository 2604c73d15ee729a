"""ndconv.plan: the accounting, against the lecture's numbers and real layers."""

from __future__ import annotations

import numpy as np
import pytest

from ndconv import nn, plan


def test_lecture_numbers():
    fc, fc_same, lc, conv = plan.lecture_table()
    # The lecture: 36M inputs x 100 hidden units = 3.6 billion weights = 14.4 GB.
    assert fc.in_shape == (3, 3000, 4000)
    assert fc.weights == 3_600_000_000
    assert fc.nbytes("float32") == 3_600_000_100 * 4
    assert plan.format_bytes(fc.nbytes("float32")) == "14.4 GB"
    assert plan.format_bytes(fc.nbytes(np.float64)) == "28.8 GB"
    # 100 output channels, 3x3 kernel: 100 * 3 * 9 weights + 100 biases.
    assert conv.params == 2_800 and conv.out_shape == (100, 3000, 4000)
    assert conv.receptive_field == (3, 3)
    # Locally connected: one 3x3x3 kernel per output position and channel.
    assert lc.weights == 100 * 3000 * 4000 * 27
    assert lc.biases == 100 * 3000 * 4000
    # "In between": for the same hidden image, fewer than the dense layer,
    # more than the convolution (locality alone saves the most).
    assert conv.params < lc.params < fc_same.params
    assert fc_same.weights == 36_000_000 * 1_200_000_000
    assert fc.receptive_field == (3000, 4000)
    # FLOPs per sample: 2 multiply-adds per weight use.
    assert fc.flops == 2 * 3_600_000_000
    assert conv.flops == lc.flops == 2 * 100 * 3000 * 4000 * 27


@pytest.mark.parametrize("k", [2, 4, (3, 4)])
def test_lecture_table_keeps_the_photos_size_for_even_kernels(k):
    # The docstring's promise: the hidden image keeps the photo's size
    # (padding k//2 on both sides made 3001x4001 for k = 4).
    fc, fc_same, lc, conv = plan.lecture_table(kernel_size=k)
    assert conv.out_shape == lc.out_shape == fc_same.out_shape == (100, 3000, 4000)
    kk = (k, k) if isinstance(k, int) else k
    assert conv.params == 100 * 3 * kk[0] * kk[1] + 100


def test_format_table_shows_the_lecture():
    text = plan.format_table(plan.lecture_table(), dtypes=("float32", "float64"))
    for s in ("3,600,000,000", "14.4 GB", "28.8 GB", "2,800", "3x3000x4000", "float64 bytes"):
        assert s in text
    lines = text.splitlines()
    assert len(lines) == 2 + 4


def _lenet():
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.Sigmoid(), nn.AvgPool2d(2),
        nn.Conv2d(6, 16, 5), nn.Sigmoid(), nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.Sigmoid(), nn.Linear(120, 84), nn.Sigmoid(), nn.Linear(84, 10),
    )


def test_lenet_shapes_and_parameters_match_the_real_model():
    model = _lenet()
    rows = plan.layer_rows(model, (1, 28, 28))
    # The book's LeNet-5 shapes.
    shapes = [r.out_shape for r in rows if r.layer.startswith(("Conv", "AvgPool", "Flatten", "Linear"))]
    assert shapes == [(6, 28, 28), (6, 14, 14), (16, 10, 10), (16, 5, 5), (400,), (120,),
                      (84,), (10,)]
    assert plan.total(rows).params == 61_706 == model.num_parameters()
    # The real forward pass agrees on every shape.
    x = np.zeros((1, 1, 28, 28), np.float32)
    for row, layer in zip(rows, model):
        x = layer(x)
        assert x.shape[1:] == row.out_shape
    assert rows[0].flops == 2 * 6 * 28 * 28 * 25
    assert "61,706" in plan.format_table(rows, with_total=True)


def _gradient_support(model, shape, index):
    """Sizes of the box of inputs with a non-zero gradient (positive weights: no cancellation)."""
    for p in model.parameters():
        p.data = np.abs(p.data) + 0.1
    x = np.ones((1, *shape))
    y = model(x)
    g = np.zeros_like(y)
    g[(0, 0, *index)] = 1
    gx = np.abs(model.backward(g)[0]).sum(axis=0)
    nz = np.nonzero(gx)
    return tuple(int(a.max() - a.min() + 1) for a in nz), tuple(int(a.min()) for a in nz)


@pytest.mark.parametrize("layers, index", [
    ([nn.Conv2d(1, 2, 3, dtype=np.float64)], (2, 2)),
    ([nn.Conv2d(1, 2, 3, dtype=np.float64), nn.ReLU(), nn.Conv2d(2, 2, 3, stride=2, dtype=np.float64)], (1, 1)),
    ([nn.Conv2d(1, 2, (3, 5), dilation=(2, 1), padding=1, dtype=np.float64), nn.AvgPool2d(2),
      nn.Conv2d(2, 1, 3, dtype=np.float64)], (1, 1)),
    ([nn.LocallyConnected2d(1, 2, 3, (13, 13), stride=2, dtype=np.float64), nn.Tanh(),
      nn.Conv2d(2, 1, 2, dtype=np.float64)], (2, 1)),
])
def test_receptive_field_equals_the_measured_gradient_support(layers, index):
    model = nn.Sequential(*layers)
    rows = plan.layer_rows(model, (1, 13, 13))
    size, first = _gradient_support(model, (1, 13, 13), index)
    assert rows[-1].receptive_field == size
    region = plan.receptive_region(model, (1, 13, 13), index)
    assert tuple(int(r[0]) for r in region) == first
    assert tuple(len(r) for r in region) == size


def test_layer_rows_for_one_layer_and_unknown_layers():
    rows = plan.layer_rows(nn.FullyConnected((2, 3), 4), (2, 3))
    assert rows[0].weights == 24 and rows[0].biases == 4 and rows[0].out_shape == (4,)

    class Odd(nn.Module):
        pass

    with pytest.raises(ValueError, match="does not know"):
        plan.layer_rows(nn.Sequential(Odd()), (1, 4))
    with pytest.raises(ValueError, match="expects input"):
        plan.layer_rows(nn.Conv2d(3, 1, 3), (2, 8, 8))
    with pytest.raises(TypeError, match="Module"):
        plan.layer_rows("conv", (1, 4))


def test_accounting_functions_validate():
    with pytest.raises(ValueError, match="larger than the padded input"):
        plan.conv((3, 4, 4), 8, 5)
    with pytest.raises(ValueError, match="divisible"):
        plan.conv((3, 8, 8), 8, 3, groups=2)
    with pytest.raises(ValueError, match="spatial"):
        plan.locally_connected((3,), 8, 3)


# --------------------------------------------------------------------------
# the memory limit


def test_parse_bytes_and_format():
    assert plan.memory_limit  # re-exported
    from ndconv.core._memory import parse_bytes

    assert parse_bytes("2GB") == 2_000_000_000
    assert parse_bytes("512 MiB") == 512 * 2**20
    assert parse_bytes(1234) == 1234
    assert parse_bytes("1.5e3") == 1500
    with pytest.raises(ValueError, match="unit"):
        parse_bytes("12 apples")
    with pytest.raises(ValueError, match="non-negative"):
        parse_bytes(-1)
    assert plan.format_bytes(999) == "999 B"
    assert plan.format_bytes(11_200) == "11.2 kB"


def test_limit_precedence(monkeypatch):
    monkeypatch.setenv("NDCONV_MEMORY_LIMIT", "1kB")
    assert plan.get_memory_limit() == (1000, "from NDCONV_MEMORY_LIMIT")
    with pytest.raises(plan.MemoryLimitError, match="NDCONV_MEMORY_LIMIT"):
        plan.check_memory(1001, "a test array")
    plan.set_memory_limit("2kB")
    try:
        assert plan.get_memory_limit()[0] == 2000
        with plan.memory_limit(3000):
            assert plan.get_memory_limit()[0] == 3000
            with plan.memory_limit(10):
                assert plan.get_memory_limit()[0] == 10
            assert plan.check_memory(2500, "x") == 2500
        assert plan.get_memory_limit()[0] == 2000
    finally:
        plan.set_memory_limit(None)
    monkeypatch.delenv("NDCONV_MEMORY_LIMIT")
    limit, source = plan.get_memory_limit()
    assert source == "the memory available now"
    assert limit is None or limit > 0

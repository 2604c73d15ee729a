"""BatchNorm, GroupNorm, LayerNorm against torch.nn: forward, backward, running statistics."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close
from torch_layers import check_layer, train_both

import ndconv
from ndconv import nn

torch = pytest.importorskip("torch")

DTYPES = [np.float64, np.float32]


def _x(shape, dtype, seed=0):
    r = np.random.default_rng(seed)
    return (r.standard_normal(shape) * 2 + 0.5).astype(dtype)


def _randomize(tm, seed=1):
    """Non-trivial weights and running statistics, so that copying them is tested."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in tm.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))
        if getattr(tm, "running_var", None) is not None:
            tm.running_mean.copy_(torch.randn(tm.running_mean.shape, generator=g))
            tm.running_var.copy_(torch.rand(tm.running_var.shape, generator=g) + 0.5)
    return tm


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, shape", [(1, (5, 3)), (1, (4, 3, 7)), (2, (3, 3, 4, 5)),
                                      (3, (2, 3, 3, 4, 2))])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_matches_torch(dtype, n, shape, affine, training):
    tcls = getattr(torch.nn, f"BatchNorm{n}d")
    cls = getattr(nn, f"BatchNorm{n}d")
    tm = _randomize(tcls(3, affine=affine, momentum=0.3, eps=1e-3))
    m = cls(3, affine=affine, momentum=0.3, eps=1e-3, dtype=dtype)
    tm.train(training)
    m.train(training)
    check_layer(m, tm, _x(shape, dtype), what=f"BatchNorm{n}d")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum", [0.1, None, 0.0, 1.0])
def test_batchnorm_running_stats_over_steps(dtype, momentum):
    tm = torch.nn.BatchNorm2d(4, momentum=momentum).double()
    m = nn.BatchNorm2d(4, momentum=momentum, dtype=dtype)
    for step in range(5):
        x = _x((3, 4, 5, 2), dtype, seed=step) * (step + 1)
        m(x)
        tm(torch.tensor(x.astype(np.float64)))
    assert m.num_batches_tracked.dtype == np.int64 and int(m.num_batches_tracked) == 5
    assert_close(m.running_mean, tm.running_mean.numpy(), dtype, what="running_mean")
    assert_close(m.running_var, tm.running_var.numpy(), dtype, what="running_var")
    # Evaluation uses them.
    m.eval()
    tm.eval()
    x = _x((2, 4, 3, 3), dtype, seed=9)
    assert_close(m(x), tm(torch.tensor(x.astype(np.float64))).detach().numpy(), dtype)


def test_batchnorm_without_running_stats_uses_batch_in_eval():
    tm = torch.nn.BatchNorm1d(3, track_running_stats=False).double().eval()
    m = nn.BatchNorm1d(3, track_running_stats=False, dtype=np.float64).eval()
    assert m.running_mean is None and "running_mean" not in m.state_dict()
    assert list(m.state_dict()) == list(tm.state_dict())
    check_layer(m, tm, _x((6, 3, 4), np.float64), what="BatchNorm1d no stats")


def test_batchnorm_state_dict_keys_order_and_dtypes_as_torch():
    tm = torch.nn.BatchNorm2d(5)
    m = nn.BatchNorm2d(5)
    sd = m.state_dict()
    assert list(sd) == list(tm.state_dict()) == [
        "weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    assert sd["num_batches_tracked"].shape == () and sd["num_batches_tracked"].dtype == np.int64
    assert [k for k, _ in m.named_buffers()] == [k for k, _ in tm.named_buffers()]
    assert [k for k, _ in m.named_parameters()] == ["weight", "bias"]


def test_batchnorm_refuses_one_value_per_channel_in_training():
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm1d(3)(np.ones((1, 3), np.float32))
    nn.BatchNorm1d(3).eval()(np.ones((1, 3), np.float32))  # fine in eval


@pytest.mark.parametrize("bad, match", [
    (dict(momentum=2.0), "momentum"), (dict(eps=-1.0), "eps"), (dict(num_features=0), "num_features"),
])
def test_batchnorm_bad_arguments(bad, match):
    kw = dict(num_features=3) | bad
    with pytest.raises(ValueError, match=match):
        nn.BatchNorm2d(**kw)


def test_batchnorm_bad_input_shape_and_dtype():
    with pytest.raises(ValueError, match=r"num_features \(=3\)"):
        nn.BatchNorm2d(3)(np.ones((2, 4, 3, 3), np.float32))
    with pytest.raises(ValueError, match="spatial dims"):
        nn.BatchNorm2d(3)(np.ones((2, 3, 3), np.float32))
    with pytest.raises(TypeError, match="dtype"):
        nn.BatchNorm2d(3)(np.ones((2, 3, 3, 3), np.float64))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("groups, shape", [(1, (2, 6, 5)), (3, (2, 6, 4, 3)), (6, (3, 6, 2, 2, 2)),
                                           (2, (4, 6))])
@pytest.mark.parametrize("affine", [True, False])
def test_groupnorm_matches_torch(dtype, groups, shape, affine):
    tm = _randomize(torch.nn.GroupNorm(groups, 6, affine=affine, eps=1e-4))
    m = nn.GroupNorm(groups, 6, affine=affine, eps=1e-4, dtype=dtype)
    check_layer(m, tm, _x(shape, dtype), what="GroupNorm")


def test_groupnorm_refuses_indivisible_channels():
    with pytest.raises(ValueError, match=r"num_channels.*\(=5\).*divisible.*num_groups.*\(=2\)"):
        nn.GroupNorm(2, 5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("norm_shape, shape", [(5, (3, 5)), ((4, 5), (2, 3, 4, 5)),
                                               ((3, 4, 5), (2, 3, 4, 5))])
@pytest.mark.parametrize("affine, bias", [(True, True), (True, False), (False, True)])
def test_layernorm_matches_torch(dtype, norm_shape, shape, affine, bias):
    tm = _randomize(torch.nn.LayerNorm(norm_shape, elementwise_affine=affine, bias=bias))
    m = nn.LayerNorm(norm_shape, elementwise_affine=affine, bias=bias, dtype=dtype)
    assert list(m.state_dict()) == list(tm.state_dict())
    check_layer(m, tm, _x(shape, dtype), what="LayerNorm")


def test_layernorm_refuses_wrong_trailing_shape():
    with pytest.raises(ValueError, match=r"normalized_shape=\(4, 5\)"):
        nn.LayerNorm((4, 5))(np.ones((2, 5, 4), np.float32))


def test_buffers_in_checkpoints_and_load_state_dict(tmp_path):
    m = nn.Sequential(nn.Conv2d(2, 3, 3, rng=0, dtype=np.float64), nn.BatchNorm2d(3, dtype=np.float64))
    for s in range(3):
        m(_x((2, 2, 5, 5), np.float64, seed=s))
    path = tmp_path / "ck.npz"
    ndconv.save({"model": m}, path)
    fresh = nn.Sequential(nn.Conv2d(2, 3, 3, rng=5, dtype=np.float64), nn.BatchNorm2d(3, dtype=np.float64))
    fresh.load_state_dict(ndconv.load(path, like={"model": fresh})["model"])
    for (k, a), (k2, b) in zip(m.state_dict().items(), fresh.state_dict().items()):
        assert k == k2
        np.testing.assert_array_equal(a, b)
    assert int(fresh[1].num_batches_tracked) == 3


def test_non_persistent_buffer_stays_out_of_state_dict():
    m = nn.Module()
    m.register_buffer("a", np.ones(2))
    m.register_buffer("b", np.zeros(3), persistent=False)
    assert list(m.state_dict()) == ["a"]
    assert [k for k, _ in m.named_buffers()] == ["a", "b"]
    with pytest.raises(TypeError, match="buffer 'a'"):
        m.a = [1, 2]
    with pytest.raises(KeyError, match="'.'"):
        m.register_buffer("x.y", np.ones(1))


def test_load_state_dict_bad_buffer_shape_changes_nothing():
    m = nn.BatchNorm1d(3)
    sd = m.state_dict()
    sd["running_var"] = np.ones(4, np.float32)
    sd["weight"] = np.full(3, 7, np.float32)
    with pytest.raises(ValueError, match=r"'running_var'.*\(4,\).*buffer.*\(3,\)"):
        m.load_state_dict(sd)
    assert (m.weight.data == 1).all()


def test_small_bn_net_trains_like_torch():
    """A few SGD steps of conv-BN-ReLU-pool-linear in ndconv and torch: same weights."""
    tnet = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3)).double()
    net = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, dtype=np.float64), nn.BatchNorm2d(4, dtype=np.float64),
        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3, dtype=np.float64))
    train_both(net, tnet, (6, 2, 5, 5), 3, 4, lr=0.1, momentum=0.9)


def test_fit_trains_a_bn_net_and_checkpoints_its_running_stats(tmp_path):
    split = ndconv.data.load_digits()
    x, y = split.x_train[:256], split.y_train[:256]
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, rng=0), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 10, rng=1))
    hist = ndconv.fit(net, x, y, loss=ndconv.losses.CrossEntropyLoss(),
                      optimizer=ndconv.optim.Adam(net.parameters(), lr=3e-2), epochs=6,
                      batch_size=32, rng=0, progress=False, validation=(split.x_test, split.y_test),
                      checkpoint=tmp_path / "bn.npz")
    assert hist["val_accuracy"][-1] > 0.5
    assert int(net[1].num_batches_tracked) == 6 * 256 // 32
    saved = ndconv.load(tmp_path / "bn.npz")["model"]
    np.testing.assert_array_equal(saved["1.running_var"], net[1].running_var)


def test_old_state_dict_without_num_batches_tracked_loads_as_torch():
    """PyTorch < 0.4.1 state dicts (torchvision's first ResNet weights) lack the counter."""
    tm = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    sd = {k: v for k, v in tm.state_dict().items() if "num_batches_tracked" not in k}
    tm.load_state_dict(sd)  # torch accepts it (strict)
    m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    m.load_state_dict({k: v.numpy() for k, v in sd.items()})
    assert int(m[1].num_batches_tracked) == int(tm[1].num_batches_tracked) == 0
    with pytest.raises(KeyError, match=r"missing keys \['1.running_var'\]"):
        m.load_state_dict({k: v.numpy() for k, v in sd.items() if k != "1.running_var"})

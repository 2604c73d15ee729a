"""Checkpoints: round trips, no pickle, atomic writes, clear errors, PyTorch weights."""

from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest
import torch

import ndconv
from ndconv import nn, optim

torch.set_num_threads(1)


def _lenet(dtype=np.float32, rng=0):
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, dtype=dtype, rng=rng), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(4 * 4 * 4, 10, dtype=dtype, rng=rng),
    )


def test_round_trip_nested_state(tmp_path):
    model = _lenet()
    opt = optim.Adam(model.parameters(), lr=1e-2)
    for p in model.parameters():
        p.grad = np.ones_like(p.data)
    opt.step()
    obj = {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3,
           "loss": float("nan"), "note": "run 1", "flags": (True, None, [1, 2.5]),
           "file": np.arange(3)}  # "file" would clash with numpy.savez's argument
    path = tmp_path / "ck.npz"
    ndconv.save(obj, path)
    back = ndconv.load(path)
    assert list(back) == list(obj)
    assert back["epoch"] == 3 and isinstance(back["epoch"], int)
    assert np.isnan(back["loss"]) and back["note"] == "run 1"
    assert back["flags"] == (True, None, [1, 2.5])
    for k, v in obj["model"].items():  # dotted PyTorch keys survive as keys
        np.testing.assert_array_equal(back["model"][k], v)
        assert back["model"][k].dtype == v.dtype
    assert back["optimizer"]["step"] == 1
    np.testing.assert_array_equal(back["optimizer"]["state"]["0"]["exp_avg"],
                                  opt.state[0]["exp_avg"])
    # Loads without pickle, with dotted keys for the arrays.
    with np.load(path, allow_pickle=False) as z:
        assert "model.0.weight" in z.files and "optimizer.state.0.exp_avg" in z.files


def test_module_and_optimizer_resume_from_checkpoint(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 10, 8)
    loss = ndconv.losses.CrossEntropyLoss()

    def steps(model, opt, k):
        for _ in range(k):
            loss(model(x), y)
            opt.zero_grad()
            model.backward(loss.backward())
            opt.step()

    a = _lenet()
    oa = optim.SGD(a.parameters(), lr=0.1, momentum=0.9)
    steps(a, oa, 4)

    b = _lenet()
    ob = optim.SGD(b.parameters(), lr=0.1, momentum=0.9)
    steps(b, ob, 2)
    ndconv.save({"model": b, "optimizer": ob}, tmp_path / "mid.npz")
    c = _lenet(rng=99)
    oc = optim.SGD(c.parameters(), lr=0.1, momentum=0.9)
    ck = ndconv.load(tmp_path / "mid.npz", like={"model": c.state_dict(), "optimizer": None})
    c.load_state_dict(ck["model"])
    oc.load_state_dict(ck["optimizer"])
    steps(c, oc, 2)
    for p, q in zip(a.parameters(), c.parameters()):
        np.testing.assert_array_equal(p.data, q.data)


def test_torch_state_dict_loads_and_gives_same_outputs(tmp_path):
    torch.manual_seed(0)
    t = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(64, 10),
    )
    # A plain .npz of the PyTorch weights (no ndconv manifest) ...
    np.savez(tmp_path / "torch.npz", **{k: v.numpy() for k, v in t.state_dict().items()})
    state = ndconv.load(tmp_path / "torch.npz")
    m = _lenet(rng=5)
    m.load_state_dict(state)
    x = np.random.default_rng(1).standard_normal((3, 1, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(m(x), t(torch.tensor(x)).detach().numpy(), rtol=1e-5, atol=1e-5)
    # ... and the same through ndconv.save.
    ndconv.save(state, tmp_path / "ndconv.npz")
    m2 = _lenet(rng=6).load_state_dict(ndconv.load(tmp_path / "ndconv.npz", like=m.state_dict()))
    np.testing.assert_array_equal(m2(x), m(x))


def test_load_errors_name_the_key(tmp_path):
    model = _lenet()
    path = tmp_path / "m.npz"
    ndconv.save({"model": model}, path)
    like = {"model": model.state_dict()}
    assert ndconv.load(path, like=like)["model"].keys() == model.state_dict().keys()
    wrong_shape = {"model": nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(64, 12)).state_dict()}
    with pytest.raises(ValueError,
                       match=r"'model\.4\.weight' has shape \(10, 64\), expected \(12, 64\)"):
        ndconv.load(path, like=wrong_shape)
    wrong_dtype = {"model": _lenet(dtype=np.float64).state_dict()}
    with pytest.raises(TypeError, match=r"'model\.0\.weight' has dtype float32, expected float64"):
        ndconv.load(path, like=wrong_dtype)
    missing = {"model": dict(model.state_dict(), **{"9.weight": np.ones(2)})}
    with pytest.raises(KeyError, match=r"missing keys \['model\.9\.weight'\]"):
        ndconv.load(path, like=missing)
    with pytest.raises(KeyError, match=r"missing keys \['0.weight'\]"):
        model.load_state_dict({k: v for k, v in model.state_dict().items() if k != "0.weight"})


def test_refuses_pickles_and_junk(tmp_path):
    with pytest.raises(TypeError, match=r"'a\.b'.*no pickle"):
        ndconv.save({"a": {"b": np.array([{"x": 1}], dtype=object)}}, tmp_path / "o.npz")
    np.savez(tmp_path / "pickled.npz", x=np.array([None, 1], dtype=object))
    with pytest.raises(ValueError, match="pickle"):
        ndconv.load(tmp_path / "pickled.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match="not a readable"):
        ndconv.load(tmp_path / "junk.npz")
    with pytest.raises(FileNotFoundError):
        ndconv.load(tmp_path / "absent.npz")
    with pytest.raises(TypeError, match="keys must be str"):
        ndconv.save({1: np.ones(2)}, tmp_path / "k.npz")
    with pytest.raises(ValueError, match="occurs twice"):
        ndconv.save({"a.b": np.ones(1), "a": {"b": np.ones(1)}}, tmp_path / "dup.npz")


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ck.npz"
    ndconv.save({"w": np.zeros(3)}, path)
    before = path.read_bytes()
    calls = {"n": 0}
    real = np.lib.format.write_array

    def failing(fh, arr, **kw):
        calls["n"] += 1
        if calls["n"] == 2:  # after the manifest, in the middle of the archive
            raise OSError("disk full")
        return real(fh, arr, **kw)

    monkeypatch.setattr(np.lib.format, "write_array", failing)
    with pytest.raises(OSError, match="disk full"):
        ndconv.save({"w": np.ones(3), "v": np.ones(2)}, path)
    assert path.read_bytes() == before  # the old checkpoint is intact
    assert os.listdir(tmp_path) == ["ck.npz"]  # and no temporary file is left
    assert zipfile.is_zipfile(path)


def test_save_gives_the_usual_permissions(tmp_path):
    """The temporary file is private (mkstemp); the checkpoint must not stay so."""
    mask = os.umask(0o022)
    try:
        path = tmp_path / "ck.npz"
        ndconv.save({"w": np.ones(3)}, path)
        assert (path.stat().st_mode & 0o777) == 0o644
    finally:
        os.umask(mask)

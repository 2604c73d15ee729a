"""Learning: the book's kernel, the training loop, and real CNNs on bundled data."""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os

import numpy as np
import pytest
import torch

import ndconv
from ndconv import nn, optim
from ndconv.losses import CrossEntropyLoss, MSELoss
from ndconv.train import NonFiniteLossError

torch.set_num_threads(1)
EXAMPLES = os.path.join(os.path.dirname(__file__), os.pardir, "examples")


def _example(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(EXAMPLES, f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@contextlib.contextmanager
def _one_blas_thread():
    """Small matrices on a shared 2-core machine: threads only fight each other."""
    from ndconv.algorithms import threads

    before = threads._state["threads"]
    ndconv.set_num_threads(1)
    try:
        yield
    finally:
        ndconv.set_num_threads(before)


# --------------------------------------------------------------------------
# 1. the book's kernel learning


def test_book_data_is_the_edge_image():
    X, Y = _example("learn_kernel").book_data()
    assert X.shape == (1, 1, 6, 8) and Y.shape == (1, 1, 6, 7)
    for row in Y[0, 0]:
        np.testing.assert_array_equal(row, [0, 1, 0, 0, 0, -1, 0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_learning_from_many_seeds(dtype):
    learn = _example("learn_kernel").learn
    for seed in range(40):
        kernel, losses = learn(steps=10, seed=seed, dtype=dtype)
        assert np.all(np.diff(losses) < 0), (seed, losses)  # falls every step
        assert np.abs(kernel - [1, -1]).max() < 0.1, (seed, kernel)
        kernel, _ = learn(steps=50, seed=seed, dtype=dtype)
        assert np.abs(kernel - [1, -1]).max() < 1e-3, (seed, kernel)


def test_kernel_learning_follows_torch_step_by_step():
    lk = _example("learn_kernel")
    X, Y = lk.book_data()
    conv = nn.Conv2d(1, 1, (1, 2), bias=False, dtype=np.float64, rng=7)
    t = torch.nn.Conv2d(1, 1, (1, 2), bias=False).double()
    t.weight.data = torch.tensor(conv.weight.data.copy())
    kernel, losses = lk.learn(steps=10, seed=7)
    Xt, Yt = torch.tensor(X), torch.tensor(Y)
    tl = []
    for _ in range(10):  # the book's loop, in PyTorch
        loss = ((t(Xt) - Yt) ** 2).sum()
        tl.append(loss.item())
        t.zero_grad()
        loss.backward()
        t.weight.data[:] -= 3e-2 * t.weight.grad
    np.testing.assert_allclose(losses, tl, rtol=1e-10)
    np.testing.assert_allclose(kernel, t.weight.data.numpy().reshape(2), rtol=1e-10)


# --------------------------------------------------------------------------
# the training loop


def _toy(n=64, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.standard_normal((n, 1, 6, 6)).astype(np.float32)
    x[y == 1, :, :, :3] += 1.0  # class 1: a brighter left half
    return x, y


def _toy_model(rng=0):
    return nn.Sequential(nn.Conv2d(1, 4, 3, rng=rng), nn.ReLU(), nn.AvgPool2d(2),
                         nn.Flatten(), nn.Linear(16, 2, rng=rng))


def _fit(seed, epochs=3, **kw):
    x, y = _toy()
    model = _toy_model()
    hist = ndconv.fit(model, x, y, loss=CrossEntropyLoss(),
                      optimizer=optim.Adam(model.parameters(), lr=1e-2), epochs=epochs,
                      batch_size=16, rng=seed, progress=False, **kw)
    return model, hist


def test_fit_is_reproducible_and_learns():
    a, ha = _fit(seed=1, epochs=8, validation=_toy(32, seed=1))
    b, hb = _fit(seed=1, epochs=8, validation=_toy(32, seed=1))
    c, hc = _fit(seed=2, epochs=8)
    assert ha == hb | {"seconds": ha["seconds"]}  # same seed, same run
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(p.data, q.data)
    assert ha["loss"] != hc["loss"]  # another seed shuffles differently
    assert set(ha) == {"loss", "accuracy", "val_loss", "val_accuracy", "seconds"}
    assert ha.epochs == 8 and ha["loss"][-1] < ha["loss"][0]
    assert ha["val_accuracy"][-1] > 0.8
    assert a.training  # fit leaves the model in the mode it found it
    m = _toy_model().eval()
    ndconv.fit(m, *_toy(), loss=CrossEntropyLoss(), optimizer=optim.SGD(m, lr=0.1),
               epochs=1, progress=False)
    assert not m.training


def test_fit_progress_bar_can_be_turned_off(capsys):
    _fit(seed=0, epochs=1)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    pytest.importorskip("tqdm")
    x, y = _toy()
    model = _toy_model()
    ndconv.fit(model, x, y, loss=CrossEntropyLoss(), optimizer=optim.SGD(model, lr=0.1),
               epochs=1, batch_size=16, progress=True)
    assert "epoch 1/1" in capsys.readouterr().err


def test_fit_regression_targets_have_no_accuracy():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20, 3)).astype(np.float32)
    y = x @ np.array([[1.0], [-2.0], [0.5]], dtype=np.float32)
    model = nn.Sequential(nn.Linear(3, 1, rng=0))
    h = ndconv.fit(model, x, y, loss=MSELoss(), optimizer=optim.SGD(model, lr=0.1),
                   epochs=30, batch_size=5, progress=False)
    assert "accuracy" not in h and h["loss"][-1] < 1e-3
    np.testing.assert_allclose(model[0].weight.data, [[1, -2, 0.5]], atol=0.02)


def test_evaluate_and_predict_restore_mode():
    model = nn.Sequential(nn.Linear(4, 3, rng=0), nn.Dropout(0.9, rng=0))
    x = np.ones((5, 4), dtype=np.float32)
    out = ndconv.predict(model, x, batch_size=2)
    assert model.training  # restored
    np.testing.assert_allclose(out, model[0](x), rtol=1e-6)  # dropout off while predicting
    res = ndconv.evaluate(model, x, np.zeros(5, dtype=np.int64), loss=CrossEntropyLoss())
    assert set(res) == {"loss", "accuracy"}


def test_fit_bad_arguments():
    x, y = _toy()
    model = _toy_model()
    kw = dict(loss=CrossEntropyLoss(), optimizer=optim.SGD(model, lr=0.1), progress=False)
    with pytest.raises(ValueError, match="same number of examples"):
        ndconv.fit(model, x, y[:-1], **kw)
    with pytest.raises(ValueError, match="batch_size"):
        ndconv.fit(model, x, y, batch_size=0, **kw)
    with pytest.raises(ValueError, match="validation"):
        ndconv.fit(model, x, y, validation=x, **kw)


def test_nan_loss_stops_with_epoch_and_step_and_keeps_last_good(tmp_path):
    x, y = _toy()
    model = _toy_model()
    opt = optim.SGD(model.parameters(), lr=0.05)
    ck = tmp_path / "ck.npz"
    ndconv.fit(model, x, y, loss=CrossEntropyLoss(), optimizer=opt, epochs=2,
               batch_size=16, progress=False, checkpoint=ck, rng=0)
    good = {k: v.copy() for k, v in model.state_dict().items()}
    saved = ck.read_bytes()
    assert ndconv.load(ck)["epoch"] == 2
    x_bad = x.copy()
    x_bad[40] = np.nan  # batch 3 of 4 without shuffling
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at epoch 1, step 3 of 4") as err:
        ndconv.fit(model, x_bad, y, loss=CrossEntropyLoss(), optimizer=opt, epochs=2,
                   batch_size=16, shuffle=False, progress=False, checkpoint=ck)
    assert (err.value.epoch, err.value.step) == (1, 3)
    assert "last good checkpoint" in str(err.value)
    assert ck.read_bytes() == saved  # the checkpoint on disk was not touched
    for k, v in model.state_dict().items():  # and the model is back to it
        np.testing.assert_array_equal(v, good[k])
    assert all(np.isfinite(p.data).all() for p in model.parameters())


def test_nan_loss_leaves_the_model_in_the_mode_it_found():
    x, y = _toy()
    x[0] = np.nan
    model = _toy_model().eval()
    with pytest.raises(NonFiniteLossError):
        ndconv.fit(model, x, y, loss=CrossEntropyLoss(), optimizer=optim.SGD(model, lr=0.1),
                   epochs=1, shuffle=False, progress=False)
    assert not model.training


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_epoch_loss_agrees_with_evaluate_for_either_reduction(reduction):
    # lr = 0: the model does not change, so the epoch's loss over odd-sized
    # batches (16, 16, 16, 16, 1) is the loss of the whole set, as evaluate
    # reports it (the mean over examples, or the total for 'sum').
    x, y = _toy(65)
    model = _toy_model()
    loss = CrossEntropyLoss(reduction)
    h = ndconv.fit(model, x, y, loss=loss, optimizer=optim.SGD(model, lr=0.0), epochs=1,
                   batch_size=16, progress=False)
    want = ndconv.evaluate(model, x, y, loss=loss)["loss"]
    assert h["loss"][0] == pytest.approx(want, rel=1e-5)


def test_accuracy_of_per_pixel_labels_is_a_fraction():
    # Labels (B, H, W) for logits (B, C, H, W): accuracy is the fraction of
    # correctly labelled pixels, not correct pixels per example.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 1, 4, 3)).astype(np.float32)
    y = rng.integers(0, 3, (5, 4, 3))
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1, rng=0))
    want = np.mean(model(x).argmax(axis=1) == y)
    assert ndconv.evaluate(model, x, y)["accuracy"] == pytest.approx(want)
    h = ndconv.fit(model, x, y, loss=CrossEntropyLoss(), optimizer=optim.SGD(model, lr=0.0),
                   epochs=1, batch_size=2, progress=False)
    assert h["accuracy"][0] == pytest.approx(want)


def test_divergence_names_epoch_and_step():
    x, y = _toy()
    model = _toy_model()
    with pytest.raises(NonFiniteLossError, match=r"at epoch \d+, step \d+"), \
            np.errstate(over="ignore", invalid="ignore"):
        ndconv.fit(model, x * 1e30, np.eye(2, dtype=np.float32)[y], loss=MSELoss(),
                   optimizer=optim.SGD(model.parameters(), lr=1e10), epochs=5,
                   batch_size=8, progress=False)


# --------------------------------------------------------------------------
# 2 and 3. real CNNs on bundled data


def test_data_loaders_are_bundled_and_stratified():
    pytest.importorskip("sklearn")
    s = ndconv.data.load_digits()
    assert s.x_train.shape == (1347, 1, 8, 8) and s.x_test.shape == (450, 1, 8, 8)
    assert 0 <= s.x_train.min() and s.x_train.max() == 1 and s.x_train.dtype == np.float32
    counts = np.bincount(s.y_test) / np.bincount(np.concatenate([s.y_train, s.y_test]))
    np.testing.assert_allclose(counts, 0.25, atol=0.01)
    again = ndconv.data.load_digits()
    np.testing.assert_array_equal(again.y_test, s.y_test)  # seeded
    assert not np.array_equal(ndconv.data.load_digits(seed=1).y_test, s.y_test)
    pytest.importorskip("skimage")
    f = ndconv.data.load_faces()
    assert f.x_train.shape == (150, 1, 25, 25) and f.y_test.mean() == 0.5


def test_digits_cnn_reaches_97_percent():
    pytest.importorskip("sklearn")
    with _one_blas_thread():
        model, history, acc, seconds = _example("train_digits").train(epochs=20, seed=0)
    assert acc >= 0.97, (acc, history["loss"])
    assert history["loss"][-1] < history["loss"][0]


def test_train_digits_refuses_bad_arguments_before_loading_data(monkeypatch):
    from ndconv import models

    def no_data(**kw):
        raise AssertionError("the digits were loaded before the arguments were checked")

    monkeypatch.setattr(ndconv.data, "load_digits", no_data)
    for kwargs, fragment in [({"epochs": 0}, "`epochs` (=0)"), ({"lr": 0.0}, "`lr` (=0.0)"),
                             ({"lr": float("nan")}, "`lr` (=nan)"), ({"lr": "1"}, "`lr`")]:
        with pytest.raises(ValueError) as e:
            models.train_digits(**{"epochs": 1, **kwargs})
        assert fragment in str(e.value)
    with pytest.raises(TypeError, match="`epochs`"):
        models.train_digits(1.5)


def test_train_digits_is_fit_on_the_digits_cnn(tmp_path):
    # What `ndconv train` runs, against the same steps written out by hand.
    pytest.importorskip("sklearn")
    from ndconv import models

    with _one_blas_thread():
        r = models.train_digits(1, seed=2, lr=3e-3, batch_size=64, progress=False,
                                checkpoint=tmp_path / "c.npz")
        split = ndconv.data.load_digits(seed=2)
        model = models.digits_cnn(2)
        h = ndconv.fit(model, split.x_train, split.y_train, loss=CrossEntropyLoss(),
                       optimizer=optim.Adam(model.parameters(), lr=3e-3), epochs=1,
                       batch_size=64, validation=(split.x_test, split.y_test), rng=2,
                       progress=False)
    assert r["history"]["loss"] == h["loss"] and r["history"]["val_accuracy"] == h["val_accuracy"]
    assert r["accuracy"] == ndconv.evaluate(model, split.x_test, split.y_test)["accuracy"]
    assert 0.3 < r["accuracy"] <= 1.0 and r["split"].y_test.size == 450
    assert ndconv.load(tmp_path / "c.npz")["epoch"] == 1
    with np.errstate(all="ignore"), pytest.raises(NonFiniteLossError, match="smaller learning"):
        models.train_digits(1, lr=1e30, progress=False)


def test_experiments_build_their_networks_with_the_one_factory():
    from ndconv import experiments, models

    assert experiments.build_model is models.build_model and experiments.MODELS == models.MODELS


def test_faces_cnn_tells_faces_from_non_faces():
    pytest.importorskip("skimage")
    with _one_blas_thread():
        model, history, acc, seconds = _example("faces").train(epochs=30, seed=0)
    assert acc >= 0.9, (acc, history["val_accuracy"])
    assert math.isfinite(history["loss"][-1])

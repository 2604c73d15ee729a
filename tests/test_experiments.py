"""ndconv.experiments: the MLP / locally connected / CNN comparison, fast version."""

from __future__ import annotations

import numpy as np
import pytest

from ndconv import experiments as E
from ndconv import plan


def test_shift_images_matches_roll_with_zero_fill(rng):
    x = rng.standard_normal((3, 1, 6, 5))
    for dy, dx in [(1, 0), (0, -2), (-1, 2), (2, 3)]:
        ref = np.roll(x, (dy, dx), axis=(-2, -1))
        if dy > 0:
            ref[..., :dy, :] = 0
        if dy < 0:
            ref[..., dy:, :] = 0
        if dx > 0:
            ref[..., :, :dx] = 0
        if dx < 0:
            ref[..., :, dx:] = 0
        np.testing.assert_array_equal(E.shift_images(x, dy, dx), ref)
    np.testing.assert_array_equal(E.shift_images(x, 0, 0), x)
    assert not E.shift_images(x, 6, 0).any()
    with pytest.raises(ValueError, match="H, W"):
        E.shift_images(np.ones(4), 1, 1)


def test_model_sizes_by_hand():
    sizes = {k: E.build_model(k, (1, 8, 8), 10).num_parameters() for k in E.MODELS}
    assert sizes["mlp"] == (64 * 100 + 100) + (100 * 10 + 10)
    assert sizes["cnn"] == (16 * 9 + 16) + (32 * 16 * 9 + 32) + (32 * 2 * 2 * 10 + 10)
    # Locally connected: one kernel (and bias) per output position.
    assert sizes["local"] == (16 * 64 * 9 + 16 * 64) + (32 * 16 * 16 * 9 + 32 * 16) + 1290
    for k in E.MODELS:
        rows = plan.layer_rows(E.build_model(k, (1, 8, 8), 10), (1, 8, 8))
        assert plan.total(rows).params == sizes[k] and rows[-1].out_shape == (10,)
    with pytest.raises(ValueError, match="kind"):
        E.build_model("rnn", (1, 8, 8), 10)
    with pytest.raises(ValueError, match="too small"):
        E.build_model("cnn", (1, 3, 3), 10)


def test_run_fast_and_present(tmp_path):
    rows = E.run("digits", epochs=1, limit=64, seed=3, shifts=(1,), channels=(2, 4), hidden=8)
    assert [r["model"] for r in rows] == list(E.MODELS)
    for r in rows:
        assert 0 <= r["test_accuracy"] <= 1 and 0 <= r["shift_1_accuracy"] <= 1
        assert r["seed"] == 3 and r["epochs"] == 1 and r["params"] > 0
    text = E.format_table(rows)
    assert "shift 1 px" in text and "CNN (Conv)" in text and text.count("\n") == 4
    path = E.plot(rows, tmp_path / "shift.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="dataset"):
        E.run("cifar", epochs=0)
    with pytest.raises(ValueError, match="empty"):
        E.format_table([])


def test_same_seed_same_result():
    a = E.run("digits", models=("cnn",), epochs=1, limit=32, seed=1, channels=(2, 2))
    b = E.run("digits", models=("cnn",), epochs=1, limit=32, seed=1, channels=(2, 2))
    assert a[0]["test_accuracy"] == b[0]["test_accuracy"]
    assert a[0]["shift_2_accuracy"] == b[0]["shift_2_accuracy"]


def test_callback_sees_every_epoch_and_changes_nothing():
    """The progress callback (one fit call per epoch) gives the one-call result exactly."""
    calls = []
    kw = dict(models=("mlp", "cnn"), epochs=3, limit=120, seed=4)
    with_cb = E.run("digits", callback=lambda kind, epoch: calls.append((kind, epoch)), **kw)
    without = E.run("digits", **kw)
    assert calls == [("mlp", 1), ("mlp", 2), ("mlp", 3), ("cnn", 1), ("cnn", 2), ("cnn", 3)]
    for a, b in zip(with_cb, without):
        for key in ("test_accuracy", "shift_1_accuracy", "shift_2_accuracy",
                    "train_accuracy", "train_loss"):
            assert a[key] == b[key], key


def test_learn_edge_kernel_refuses_bad_arguments():
    with pytest.raises(ValueError, match=r"`iterations` \(=0\)"):
        E.learn_edge_kernel(iterations=0)
    with pytest.raises(ValueError, match=r"`lr` \(=-1"):
        E.learn_edge_kernel(lr=-1.0)

"""examples/finetune_torch_checkpoint.py: a torch-trained ResNet-style CNN run and fine-tuned without torch."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import assert_close

import ndconv

pytest.importorskip("torch")

ROOT = os.path.join(os.path.dirname(__file__), "..")
SCRIPT = os.path.join(ROOT, "examples", "finetune_torch_checkpoint.py")


def test_example_loads_the_torch_checkpoint_and_fine_tunes_it_without_torch(tmp_path):
    sys.path.insert(0, os.path.join(ROOT, "examples"))
    try:
        import finetune_torch_checkpoint as ex
    finally:
        sys.path.pop(0)
    pth = tmp_path / "digits_resnet.pth"
    torch_acc, torch_logits = ex.make_torch_checkpoint(pth)
    model = ex.ndconv_model()
    model.load_state_dict(ndconv.io.load_torch(pth))
    logits = model.eval()(ndconv.data.load_digits(seed=0).x_test)
    assert (logits.argmax(1) == torch_logits.argmax(1)).all()  # the same predictions
    assert_close(logits, torch_logits.astype(np.float64), np.float32, what="logits")
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src"))
    out = subprocess.run([sys.executable, SCRIPT, str(pth), "--epochs", "1", "--out",
                          str(tmp_path / "tuned.safetensors")],
                         capture_output=True, text=True, env=env, check=True).stdout
    before, after = map(float, re.findall(r"accuracy (\d\.\d+) as loaded, (\d\.\d+)", out)[0])
    assert "torch imported: False" in out
    assert before == pytest.approx(torch_acc, abs=1e-3)  # the same network, the same answers
    assert after > before
    assert (tmp_path / "tuned.safetensors").stat().st_size > 0

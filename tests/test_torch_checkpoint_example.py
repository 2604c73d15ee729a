"""examples/finetune_torch_checkpoint.py: a torch-trained ResNet-style CNN run and fine-tuned without torch."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

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
    torch_acc = ex.make_torch_checkpoint(pth)
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src"))
    out = subprocess.run([sys.executable, SCRIPT, str(pth), "--epochs", "1", "--out",
                          str(tmp_path / "tuned.safetensors")],
                         capture_output=True, text=True, env=env, check=True).stdout
    before, after = map(float, re.findall(r"accuracy (\d\.\d+) as loaded, (\d\.\d+)", out)[0])
    assert "torch imported: False" in out
    assert before == pytest.approx(torch_acc, abs=1e-3)  # the same network, the same answers
    assert after > before
    assert (tmp_path / "tuned.safetensors").stat().st_size > 0

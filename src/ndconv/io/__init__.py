"""Files: checkpoints, PyTorch and safetensors weights, and atomic output.

- :mod:`ndconv.io.checkpoint`: :func:`save` / :func:`load` nested state dicts
  as ``.npz`` with a JSON manifest, never with pickle (also ``ndconv.save`` /
  ``ndconv.load``);
- :mod:`ndconv.io.torch_file`: :func:`load_torch` reads a PyTorch ``.pt`` /
  ``.pth`` checkpoint without torch, through a restricted unpickler;
- :mod:`ndconv.io.safetensors_file`: :func:`load_safetensors` /
  :func:`save_safetensors`;
- :mod:`ndconv.io._files`: the one home of atomic output (checked writes,
  synced, published without overwriting) that every writer in the package
  uses. ONNX models are :mod:`ndconv.onnx`.
"""

from .checkpoint import load, read_npy_header, save
from .safetensors_file import load_safetensors, save_safetensors
from .torch_file import load_torch

__all__ = ["save", "load", "read_npy_header", "load_torch", "load_safetensors", "save_safetensors"]

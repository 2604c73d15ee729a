"""ONNX import and export: run, differentiate and fine-tune ONNX networks in NumPy.

:func:`load` turns an ``.onnx`` file into an :class:`OnnxModule`, an
:class:`ndconv.nn.Module` whose ``forward`` and ``backward`` run every node
with ndconv's own convolutions and pooling; its float weights are
Parameters that :mod:`ndconv.optim` can train. :func:`save` writes an ndconv
model as ONNX for onnxruntime (and onnxruntime-web). Needs the ``onnx``
package (the ``onnx`` extra); ``import ndconv`` never imports it.
"""

from .export import EXPORT_IR_VERSION, EXPORT_OPSET, save
from ._read import ModelTooLargeError
from .graph import OnnxModule, load
from .ops import OPS

SUPPORTED_OPS = tuple(sorted(OPS))

__all__ = ["load", "save", "OnnxModule", "ModelTooLargeError", "SUPPORTED_OPS", "EXPORT_OPSET", "EXPORT_IR_VERSION"]

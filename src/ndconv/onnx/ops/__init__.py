"""ONNX operators: one class per operator, registered in :data:`OPS` by op type."""

from .base import OPS, Node, Op
from . import elementwise, linear, pool, resize, shape  # noqa: F401  (registers the ops)

__all__ = ["OPS", "Node", "Op"]

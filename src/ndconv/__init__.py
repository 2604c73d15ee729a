"""ndconv: N-d convolution from the lecture "From MLP to convolution".

A convolutional layer cross-correlates its input with a learnable kernel and
adds a learnable bias. ndconv provides that operation in any number of
dimensions with exact gradients (:mod:`ndconv.functional`) and layers that
learn (:mod:`ndconv.nn`).
"""

from .algorithms.threads import get_num_threads, set_num_threads
from .functional import (
    choose_method,
    conv,
    conv1d,
    conv2d,
    conv3d,
    conv_backward,
    conv_output_shape,
    conv_transpose,
    conv_transpose_backward,
    convolve,
    correlate,
)
from .io import load, save
from .pooling import avg_pool, max_pool
from .train import NonFiniteLossError, evaluate, fit, predict
from . import data, losses, nn, optim  # noqa: E402  (NumPy only at import time)

__version__ = "0.1.0"

__all__ = [
    "choose_method",
    "conv",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_backward",
    "conv_output_shape",
    "conv_transpose",
    "conv_transpose_backward",
    "convolve",
    "correlate",
    "get_num_threads",
    "set_num_threads",
    "max_pool",
    "avg_pool",
    "fit",
    "evaluate",
    "predict",
    "NonFiniteLossError",
    "save",
    "load",
]

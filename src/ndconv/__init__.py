"""ndconv: N-d convolution from the lecture "From MLP to convolution".

A convolutional layer cross-correlates its input with a learnable kernel and
adds a learnable bias. ndconv provides that operation in any number of
dimensions with exact gradients (:mod:`ndconv.functional`) and layers that
learn (:mod:`ndconv.nn`).

The folders show the architecture: ``core`` (the operation and its
algorithms), ``nn`` and ``training`` (layers, losses, optimizers, the loop),
``lecture`` (the derivation and the accounting), ``report`` and ``explore``
(the tour page and the explorer), ``images`` and ``io`` (photos and files),
``onnx``, ``dask``, ``cli`` and ``bench``. The short documented names
(``ndconv.plan``, ``ndconv.algorithms``, ...) are the same modules
(:mod:`ndconv._moved`).
"""

from .core.algorithms.threads import get_num_threads, set_num_threads
from .core.functional import (
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
from .core.pooling import avg_pool, max_pool
from .io import load, save
from .training.train import NonFiniteLossError, evaluate, fit, predict
# The short names users reach as attributes after `import ndconv` (NumPy only
# at import time; the modules behind them are loaded above anyway).
from . import algorithms, data, functional, losses, nn, optim, pooling, train  # noqa: F401

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

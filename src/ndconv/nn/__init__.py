"""Layers with ``forward`` and ``backward``, PyTorch's names and state dicts."""

from .conv import (
    Conv,
    Conv1d,
    Conv2d,
    Conv3d,
    ConvTranspose,
    ConvTranspose1d,
    ConvTranspose2d,
    ConvTranspose3d,
)
from .module import Module, Parameter, Sequential
from .activation import ReLU, Sigmoid, Tanh
from .dropout import Dropout
from .linear import Linear
from .local import (
    FullyConnected,
    LocallyConnected,
    LocallyConnected1d,
    LocallyConnected2d,
    LocallyConnected3d,
)
from .pool import (
    AvgPool,
    AvgPool1d,
    AvgPool2d,
    AvgPool3d,
    MaxPool,
    MaxPool1d,
    MaxPool2d,
    MaxPool3d,
)
from .shape import Flatten

__all__ = [
    "Conv",
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvTranspose",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "ConvTranspose3d",
    "Module",
    "Parameter",
    "Sequential",
    "Linear",
    "ReLU",
    "Sigmoid",
    "Tanh",
    "Flatten",
    "Dropout",
    "MaxPool",
    "MaxPool1d",
    "MaxPool2d",
    "MaxPool3d",
    "AvgPool",
    "AvgPool1d",
    "AvgPool2d",
    "AvgPool3d",
    "FullyConnected",
    "LocallyConnected",
    "LocallyConnected1d",
    "LocallyConnected2d",
    "LocallyConnected3d",
]

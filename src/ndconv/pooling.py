"""``ndconv.pooling``: N-d max and average pooling with their gradients.

The documented short name of :mod:`ndconv.core.pooling` (see :mod:`ndconv._moved`).
"""

from .core.pooling import *  # noqa: F401,F403  (what type checkers read)
from ._moved import alias

alias(__name__, "ndconv.core.pooling")

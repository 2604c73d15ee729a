"""``ndconv.optim``: optimizers.

The documented short name of :mod:`ndconv.training.optim` (see :mod:`ndconv._moved`).
"""

from .training.optim import *  # noqa: F401,F403  (what type checkers read)
from ._moved import alias

alias(__name__, "ndconv.training.optim")

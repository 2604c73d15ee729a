"""``ndconv.train``: fit, evaluate, predict.

The documented short name of :mod:`ndconv.training.train` (see :mod:`ndconv._moved`).
"""

from .training.train import *  # noqa: F401,F403  (what type checkers read)
from ._moved import alias

alias(__name__, "ndconv.training.train")

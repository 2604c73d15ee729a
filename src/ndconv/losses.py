"""``ndconv.losses``: loss functions.

The documented short name of :mod:`ndconv.training.losses` (see :mod:`ndconv._moved`).
"""

from .training.losses import *  # noqa: F401,F403  (what type checkers read)
from ._moved import alias

alias(__name__, "ndconv.training.losses")

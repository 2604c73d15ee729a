"""``ndconv.data``: the bundled datasets.

The documented short name of :mod:`ndconv.training.data` (see :mod:`ndconv._moved`).
"""

from .training.data import *  # noqa: F401,F403  (what type checkers read)
from ._moved import alias

alias(__name__, "ndconv.training.data")

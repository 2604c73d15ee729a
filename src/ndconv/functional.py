"""``ndconv.functional``: the convolution functions and their gradients.

The documented short name of :mod:`ndconv.core.functional` (see :mod:`ndconv._moved`).
"""

from .core.functional import *  # noqa: F401,F403  (what type checkers read)
from ._moved import alias

alias(__name__, "ndconv.core.functional")

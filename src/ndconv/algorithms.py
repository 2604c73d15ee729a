"""``ndconv.algorithms``: the algorithms behind ``method=`` and the chooser.

The documented short name of :mod:`ndconv.core.algorithms` (see :mod:`ndconv._moved`).
"""

from .core.algorithms import *  # noqa: F401,F403  (what type checkers read)
from ._moved import alias

alias(__name__, "ndconv.core.algorithms")

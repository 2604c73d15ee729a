"""``ndconv.models``: the small networks of the examples, CLI and report.

The documented short name of :mod:`ndconv.training.models` (see :mod:`ndconv._moved`).
"""

from .training.models import *  # noqa: F401,F403  (what type checkers read)
from ._moved import alias

alias(__name__, "ndconv.training.models")

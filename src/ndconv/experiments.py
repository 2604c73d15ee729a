"""``ndconv.experiments``: the lecture's claim, measured over seeds.

The documented short name of :mod:`ndconv.lecture.experiments` (see :mod:`ndconv._moved`).
"""

from .lecture.experiments import *  # noqa: F401,F403  (what type checkers read)
from ._moved import alias

alias(__name__, "ndconv.lecture.experiments")

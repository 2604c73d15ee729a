"""``ndconv.plan``: what a layer costs before it is built, and the memory limit.

The documented short name of :mod:`ndconv.lecture.plan` (see :mod:`ndconv._moved`).
"""

from .lecture.plan import *  # noqa: F401,F403  (what type checkers read)
from ._moved import alias

alias(__name__, "ndconv.lecture.plan")

"""``ndconv.properties``: translation equivariance and locality, measured.

The documented short name of :mod:`ndconv.lecture.properties` (see :mod:`ndconv._moved`).
"""

from .lecture.properties import *  # noqa: F401,F403  (what type checkers read)
from ._moved import alias

alias(__name__, "ndconv.lecture.properties")

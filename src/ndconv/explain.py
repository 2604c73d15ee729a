"""``ndconv.explain``: the sum behind one output element, written out.

The documented short name of :mod:`ndconv.lecture.explain` (see :mod:`ndconv._moved`).
"""

from .lecture.explain import *  # noqa: F401,F403  (what type checkers read)
from ._moved import alias

alias(__name__, "ndconv.lecture.explain")

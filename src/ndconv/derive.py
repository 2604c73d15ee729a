"""``ndconv.derive``: the lecture's derivation, from a fully connected weight to a kernel.

The documented short name of :mod:`ndconv.lecture.derive` (see :mod:`ndconv._moved`).
"""

from .lecture.derive import *  # noqa: F401,F403  (what type checkers read)
from ._moved import alias

alias(__name__, "ndconv.lecture.derive")

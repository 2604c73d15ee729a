"""``ndconv.tiled``: filtering image files bigger than memory.

The documented short name of :mod:`ndconv.images.tiled` (see :mod:`ndconv._moved`).
"""

from .images.tiled import *  # noqa: F401,F403  (what type checkers read)
from ._moved import alias

alias(__name__, "ndconv.images.tiled")

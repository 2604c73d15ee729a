"""``ndconv.kernels``: the bank of named 2-D kernels.

The documented short name of :mod:`ndconv.images.kernels` (see :mod:`ndconv._moved`).
"""

from .images.kernels import *  # noqa: F401,F403  (what type checkers read)
from ._moved import alias

alias(__name__, "ndconv.images.kernels")

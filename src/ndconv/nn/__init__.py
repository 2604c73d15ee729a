"""Layers with ``forward`` and ``backward``, PyTorch's names and state dicts.

One module per kind of layer (``conv``, ``linear``, ``local``, ``pool``,
``norm``, ``activation``, ``padding``, ``resample``, ``shape``, ``dropout``,
``graph``; ``module`` holds ``Module``, ``Parameter`` and ``Sequential``).
Each names its layers in its ``__all__``; this namespace is their union, as
``torch.nn`` is.
"""

from . import (
    activation,
    conv,
    dropout,
    graph,
    linear,
    local,
    module,
    norm,
    padding,
    pool,
    resample,
    shape,
)
from .module import *  # noqa: F403
from .conv import *  # noqa: F403
from .linear import *  # noqa: F403
from .local import *  # noqa: F403
from .pool import *  # noqa: F403
from .norm import *  # noqa: F403
from .activation import *  # noqa: F403
from .padding import *  # noqa: F403
from .resample import *  # noqa: F403
from .shape import *  # noqa: F403
from .dropout import *  # noqa: F403
from .graph import *  # noqa: F403

# Spelled out (not a loop) so that type checkers and IDEs read the names.
__all__: list[str] = []
__all__ += module.__all__
__all__ += conv.__all__
__all__ += linear.__all__
__all__ += local.__all__
__all__ += pool.__all__
__all__ += norm.__all__
__all__ += activation.__all__
__all__ += padding.__all__
__all__ += resample.__all__
__all__ += shape.__all__
__all__ += dropout.__all__
__all__ += graph.__all__

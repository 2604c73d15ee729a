"""``python -m ndconv``: the same as the ``ndconv`` command."""

from .cli import main

raise SystemExit(main())

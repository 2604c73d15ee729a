"""``python -m ndconv.bench``."""

import sys

from . import main

sys.exit(main())

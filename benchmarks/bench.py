"""The benchmark, from a source tree: ``python benchmarks/bench.py [options]``.

The suite lives in the package (:mod:`ndconv.bench`, also ``ndconv bench``);
this file only runs it.
"""

import sys

from ndconv.bench import main

if __name__ == "__main__":
    sys.exit(main())

"""One real ``ndconv tour --quick`` run per test session, shared by the tour tests.

The two test files (the command, the page in a browser) both need the whole
quick report; building it once keeps the suite fast on a small machine.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


@functools.lru_cache(maxsize=None)
def quick_report():
    """``(folder, completed_process)``: ``folder / "report"`` holds the report."""
    folder = Path(tempfile.mkdtemp(prefix="ndconv-tour-test-"))
    atexit.register(shutil.rmtree, folder, True)
    r = subprocess.run([sys.executable, "-m", "ndconv", "tour", "--quick", "--out", "report"],
                       cwd=folder, capture_output=True, text=True, timeout=900)
    return folder, r

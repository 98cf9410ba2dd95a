"""Running the real ``dockgate`` command line from this tree, as an operator would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def dockgate(*argv: str, binary: bool = False, timeout: float = 60,
             **kwargs: Any) -> subprocess.CompletedProcess[Any]:
    """``python -m dockgate ARGV`` with this tree first on the path; never raises on exit."""
    env = {**os.environ, "PYTHONPATH": str(REPO), **kwargs.pop("env", {})}
    return subprocess.run([sys.executable, "-m", "dockgate", *argv], capture_output=True,
                          text=not binary, timeout=timeout, env=env, cwd=kwargs.pop("cwd", REPO),
                          check=False, **kwargs)

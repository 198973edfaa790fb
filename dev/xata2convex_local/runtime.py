"""The Lambda runtime's Python (3.13) on this machine, found as `make setup` and `make build` find it."""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import cache
from pathlib import Path

from xata2convex.model import XataToConvexError

RUNTIME = "python3.13"


class RuntimeNotFound(XataToConvexError):
    """No working Python 3.13: the functions cannot run as Lambda runs them."""


def _candidates() -> list[Path]:
    # A pyenv shim on PATH may exist and still refuse to run when 3.13 is not the selected version.
    on_path = [Path(p) for p in [shutil.which(RUNTIME)] if p]
    pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    return on_path + sorted(pyenv.glob(f"3.13*/bin/{RUNTIME}"), reverse=True)


@cache
def runtime_python() -> Path:
    """The first python3.13 that runs (on PATH, else in pyenv's versions), as an absolute path."""
    probe = "import sys; assert sys.version_info[:2] == (3, 13); print(sys.executable)"
    for candidate in _candidates():
        result = subprocess.run([str(candidate), "-c", probe], capture_output=True, text=True, timeout=60)
        if result.returncode == 0 and result.stdout.strip():
            return Path(result.stdout.strip())
    raise RuntimeNotFound(
        f"no working {RUNTIME} (the Lambda runtime) on PATH or in pyenv; install it: `pyenv install 3.13`"
    )

"""What every benchmark script shares: the gdag to time, and a clean environment."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def gdag_command() -> list[str]:
    """The `gdag` installed beside this interpreter, else `python -m gdag`."""
    script = Path(sys.executable).parent / "gdag"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "gdag"]


def clean_env(home: Path, drop: tuple[str, ...] = ()) -> dict[str, str]:
    """The environment of every timed process: no user or system git config, no GIT_* or
    GDAG_* settings, and Python's bytecode caches allowed (start-up is what is measured)."""
    skip = ("GIT_", "GDAG_", *drop)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(skip) and k != "PYTHONDONTWRITEBYTECODE"
    }
    env.update(
        HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), GIT_CONFIG_NOSYSTEM="1", LC_ALL="C"
    )
    return env

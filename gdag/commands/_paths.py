"""The paths a command line names: checked before any work, so a mistake is refused with
the rule it breaks and nothing is written.

Relative paths are read as git reads them under `-C`: from the directory `-C`
names (`gdag -C repo publish x --file data.txt` reads repo/data.txt).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from gdag.errors import GdagError


def start_dir(path: str | None, creates: bool = False) -> None:
    """Refuse a `-C PATH` that is not a directory (`creates`: `gdag init` makes a missing one,
    but not below a file)."""
    if path is None:
        return
    if creates:
        existing = Path(path)
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if existing.is_dir() or not existing.exists():
            return
        raise GdagError(f"cannot create {path}: {existing} is not a directory")
    if not os.path.exists(path):
        raise GdagError(
            f"cannot change to {path!r}: no such directory", hint="-C takes an existing directory"
        )
    if not os.path.isdir(path):
        raise GdagError(f"cannot change to {path!r}: not a directory")


def under(start: str | None, name: str) -> Path:
    """`name` as seen from `-C start`."""
    return Path(start or ".") / name


def readable_file(start: str | None, name: str) -> Path:
    """A regular file to read a value from."""
    path = under(start, name)
    info = _stat(path, name, "read")
    if stat.S_ISDIR(info.st_mode):
        raise GdagError(f"{name} is a directory, not a file", hint="publish a directory with --dir")
    if not stat.S_ISREG(info.st_mode):
        raise GdagError(
            f"{name} is not a regular file (--file reads files)",
            hint="pipe into `gdag publish OUTPUT -` to publish a stream",
        )
    if not os.access(path, os.R_OK):
        raise GdagError(f"cannot read {name}: permission denied")
    return path


def readable_dir(start: str | None, name: str) -> Path:
    """A directory to publish as a tree."""
    path = under(start, name)
    info = _stat(path, name, "read")
    if not stat.S_ISDIR(info.st_mode):
        raise GdagError(f"{name} is not a directory", hint="publish a file with --file")
    if not os.access(path, os.R_OK | os.X_OK):
        raise GdagError(f"cannot read {name}: permission denied")
    return path


def writable_file(start: str | None, name: str) -> Path:
    """A file to write: its directory exists, and it is not itself a directory."""
    path = under(start, name)
    _parent(path, name)
    if path.is_dir():
        raise GdagError(f"cannot write {name}: it is a directory", hint="name a file")
    return path


def writable_dir(start: str | None, name: str) -> Path:
    """A directory to write a tree into: new (made with its parents, like `mkdir -p`) or a
    directory, never below a file."""
    path = under(start, name)
    above = path.parent
    while not above.exists() and above != above.parent:
        above = above.parent
    if above.exists() and not above.is_dir():
        raise GdagError(f"cannot write {name}: {above} is not a directory")
    if path.exists() and not path.is_dir():
        raise GdagError(
            f"cannot write a directory value to {name}: it is a file",
            hint="name a new or existing directory",
        )
    return path


def _parent(path: Path, name: str) -> None:
    parent = path.parent
    if not parent.is_dir():
        why = "is not a directory" if parent.exists() else "does not exist"
        raise GdagError(f"cannot write {name}: directory {parent} {why}")


def _stat(path: Path, name: str, verb: str) -> os.stat_result:
    try:
        return path.stat()
    except FileNotFoundError:
        raise GdagError(f"cannot {verb} {name}: no such file or directory") from None
    except OSError as exc:
        raise GdagError(f"cannot {verb} {name}: {(exc.strerror or str(exc)).lower()}") from None

"""Directories of the store beside git's pruning: `make_dirs` for objects and refs alike."""

from __future__ import annotations

import os
from pathlib import Path

from gdag.errors import StoreError
from gdag.retry import RACE, Backoff

IN_THE_WAY_HINT = "move it aside; `git fsck` and `gdag doctor` check the rest"


def make_dirs(path: Path) -> None:
    """`mkdir -p` beside git's pruning. `git prune-packed` and `git pack-refs` remove
    directories they empty, parents included, at any moment: a parent may vanish
    before its child is made (made again here), and a directory found existing may
    be gone a moment later (pathlib's `exist_ok` raises then; here the caller's next
    step meets FileNotFoundError and tries again). Something other than a directory
    in the way is a damaged store."""
    backoff = Backoff(RACE, f"creating {path}: it keeps disappearing")
    while True:
        try:
            os.makedirs(path)
            return
        except FileNotFoundError:  # a parent was pruned between makedirs' steps
            backoff.wait()
        except FileExistsError:
            if path.is_dir() or not os.path.lexists(path):
                return
            raise StoreError(
                f"{path} is in the way of gdag's files: it is not a directory",
                hint=IN_THE_WAY_HINT,
            ) from None
        except NotADirectoryError:
            raise StoreError(
                f"a file is in the way of gdag's directory {path}", hint=IN_THE_WAY_HINT
            ) from None

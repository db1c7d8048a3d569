"""The fast layer's fixtures: a fake clock, so expiry and stale locks need no real waiting,
and a store in a fresh repository."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gdag.repo import Store
from unit.clock import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    subprocess.run(["git", "init", "-q", str(tmp_path / "repo")], check=True)
    return Store.find(tmp_path / "repo")


def ls_tree(store: Store, treeish: str, recursive: bool = False) -> list[str]:
    """The names `git ls-tree` lists in `treeish` (every file below it: `recursive`)."""
    return subprocess.run(
        ["git", "ls-tree", "--name-only", *(["-r"] if recursive else []), treeish],
        cwd=store.workdir,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()

"""Shared fixtures: an isolated git environment, real repositories, real gdag processes."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Result:
    returncode: int
    stdout: bytes
    stderr: str

    @property
    def text(self) -> str:
        return self.stdout.decode()


@pytest.fixture(autouse=True)
def isolated_git(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GDAG_LOG", "GDAG_SESSION"):
        monkeypatch.delenv(var, raising=False)
    for var in ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"):
        monkeypatch.setenv(var, "Test User")
    for var in ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"):
        monkeypatch.setenv(var, "test@example.com")
    monkeypatch.setenv("NO_COLOR", "1")


def gdag(
    *args: str, cwd: Path, input: bytes | None = None, env: dict | None = None, timeout: float = 60
) -> Result:
    """Run the real `gdag` command as a separate process."""
    proc = subprocess.run(
        [sys.executable, "-m", "gdag", *args],
        cwd=cwd,
        input=input if input is not None else b"",
        capture_output=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr.decode(errors="replace"))


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


def fsck(path: Path) -> None:
    """`git fsck --strict` must be clean (dangling objects are fine: git makes them too)."""
    proc = subprocess.run(
        ["git", "fsck", "--strict", "--no-dangling"], cwd=path, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "error" not in proc.stderr.lower() and "warning" not in proc.stderr.lower(), proc.stderr


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A fresh repository with `gdag init` done."""
    path = tmp_path / "repo"
    r = gdag("init", "-C", str(path), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    return path


def define(repo: Path, toml: str) -> None:
    """Write the repository's gdag.toml (indented text is dedented)."""
    import textwrap

    (repo / "gdag.toml").write_text(textwrap.dedent(toml))


def blob_id(data: bytes) -> str:
    """The git object id of a blob holding `data`."""
    import hashlib

    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def fanout_17_values(count: int) -> list[bytes]:
    """`count` small values whose blobs land in objects/17/, the directory that git (and
    `gdag doctor`) samples to estimate the loose objects."""
    found, i = [], 0
    while len(found) < count:
        data = b"sample %d" % i
        if blob_id(data).startswith("17"):
            found.append(data)
        i += 1
    return found


def wait_for(path: Path, timeout: float = 60.0) -> str:
    """The text of a file a process writes, once it is there and not empty (bounded)."""
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")

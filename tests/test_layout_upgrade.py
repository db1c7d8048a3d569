"""A log written in layout version 1, read and extended by this gdag.

`tests/golden/v1-log/log.bundle` holds a log made by gdag before sharded
directories (`make.sh` says how): a family of exactly SHARD_AT members, so the
next member shards its directory and moves the log to layout version 2.
`lookups.json` holds what that gdag's `lookup --at` printed at every offset.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest
from conftest import fsck, gdag, git

from gdag import layout

GOLDEN = Path(__file__).parent / "golden" / "v1-log"


@pytest.fixture
def old_log(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    git("clone", "-q", str(GOLDEN / "log.bundle"), str(repo), cwd=tmp_path)
    git("fetch", "-q", str(GOLDEN / "log.bundle"), "refs/gdag/*:refs/gdag/*", cwd=repo)
    return repo


def recorded() -> dict[str, bytes]:
    found = json.loads((GOLDEN / "lookups.json").read_text())
    found.pop("tip")
    return {key: base64.b64decode(value) for key, value in found.items()}


def check_old_offsets(repo: Path) -> None:
    for key, value in recorded().items():
        output, _, offset = key.rpartition("@")
        r = gdag("lookup", output, "--at", offset, cwd=repo)
        assert (r.returncode, r.stdout) == (0, value), (key, r.stderr)


def layout_blob(repo: Path) -> str | None:
    r = subprocess.run(
        ["git", "cat-file", "-p", "refs/gdag/logs/main:@layout"],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    return r.stdout if r.returncode == 0 else None


def test_an_old_log_reads_as_it_did(old_log: Path) -> None:
    assert layout_blob(old_log) is None  # version 1: no @layout
    check_old_offsets(old_log)
    assert gdag("status", cwd=old_log).returncode == 0
    names = gdag("lookup", "fam/*", cwd=old_log).stdout.decode().split()
    assert len(names) == layout.SHARD_AT


def test_extending_an_old_log_shards_it_and_keeps_every_offset(old_log: Path) -> None:
    tip = json.loads((GOLDEN / "lookups.json").read_text())["tip"]
    r = gdag("publish", "n", str(layout.SHARD_AT + 1), cwd=old_log)
    assert r.returncode == 0, r.stderr
    assert layout_blob(old_log) == "2\n"
    top = git("ls-tree", "--name-only", "refs/gdag/logs/main:outputs/fam", cwd=old_log).split()
    assert "@sharded" in top and all(layout.is_shard(n.encode()) for n in top if n != "@sharded")
    check_old_offsets(old_log)  # the old offsets are the old trees, untouched
    new = layout.SHARD_AT
    assert gdag("lookup", f"fam/m{new}", cwd=old_log).stdout == f"{new}\n".encode()
    assert gdag("lookup", "total", cwd=old_log).stdout.split() == [str(new + 1).encode()]
    assert gdag("lookup", "note", cwd=old_log).stdout == b"world"
    names = gdag("lookup", "fam/*", cwd=old_log).stdout.decode().split()
    assert len(names) == new + 1
    show = gdag("show", "total", cwd=old_log)
    assert show.returncode == 0 and f"input  fam/m{new} v1" in show.stdout.decode(), show.stderr
    assert gdag("status", cwd=old_log).returncode == 0

    # A replay from an old offset runs over version 1 trees into the sharded log.
    r = gdag("replay", "--from", str(tip), "-j", "1", cwd=old_log)
    assert r.returncode == 0, r.stderr
    assert gdag("lookup", "total", cwd=old_log).stdout.split() == [str(new + 1).encode()]
    check_old_offsets(old_log)
    fsck(old_log)

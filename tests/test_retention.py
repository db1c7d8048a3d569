"""`gdag gc`: retention rules prune the LFS objects of old large values, never the log,
a current value, a value a session holds, or one replaced within the grace period.
Later times come from GDAG_NOW (gdag.clock): the rules are checked as days pass."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import define, fsck, gdag

LARGE = """\
    [values]
    large = "1KiB"
"""


def later(days: float) -> dict[str, str]:
    when = datetime.now(UTC) + timedelta(days=days)
    return {"GDAG_NOW": when.strftime("%Y-%m-%dT%H:%M:%SZ")}


def publish_versions(repo: Path, output: str, count: int, tag: str = "") -> list[bytes]:
    values = []
    for i in range(count):
        data = os.urandom(2048) + f"{output} {i} {tag}".encode()
        path = repo / "value.bin"
        path.write_bytes(data)
        r = gdag("publish", output, "--file", str(path), "--no-run", cwd=repo)
        assert r.returncode == 0, r.stderr
        values.append(data)
    return values


def lfs_objects(repo: Path) -> int:
    return sum(1 for p in (repo / ".git" / "lfs" / "objects").rglob("*") if p.is_file())


def gc(repo: Path, *args: str, days: float = 0) -> dict:
    r = gdag("gc", "--json", *args, cwd=repo, env=later(days) if days else None)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def at_offsets(repo: Path, output: str) -> list[str]:
    r = gdag("log", "--output", output, "--json", cwd=repo)
    return [str(e["offset"]) for e in reversed(json.loads(r.stdout))]


def test_keep_last_and_grace(repo: Path) -> None:
    define(repo, LARGE + '[retention."raw/*"]\nkeep_last = 2\n')
    raw = publish_versions(repo, "raw/a", 4)
    other = publish_versions(repo, "other", 3)  # no rule matches: all kept
    offsets = at_offsets(repo, "raw/a")
    assert gc(repo)["prune"] == []  # replaced seconds ago: within the default 24 h grace
    plan = gc(repo, "--dry-run", days=2)
    assert [(p["output"], p["version"]) for p in plan["prune"]] == [("raw/a", 1), ("raw/a", 2)]
    before = lfs_objects(repo)
    assert lfs_objects(repo) == before  # a dry run deletes nothing
    done = gc(repo, days=2)
    assert done["pruned"] == 2 and done["freed"] == sum(len(v) for v in raw[:2])
    assert lfs_objects(repo) == before - 2
    for offset, data in zip(offsets, raw, strict=True):
        r = gdag("lookup", "raw/a", "--at", offset, cwd=repo)
        if data in raw[2:]:
            assert (r.returncode, r.stdout) == (0, data)
        else:
            assert r.returncode == 3 and r.stdout == b""
            assert 'expired under [retention."raw/*"] keep_last = 2' in r.stderr, r.stderr
            assert "gdag gc" in r.stderr
    assert gdag("lookup", "raw/a", cwd=repo).stdout == raw[-1]
    for offset, data in zip(at_offsets(repo, "other"), other, strict=True):
        assert gdag("lookup", "other", "--at", offset, cwd=repo).stdout == data
    assert gc(repo, days=2)["pruned"] == 0  # nothing left to prune
    fsck(repo)


def test_keep_for_and_the_first_matching_rule(repo: Path) -> None:
    define(
        repo,
        LARGE
        + """
        [retention]
        grace = "0s"
        [retention."logs/keep/*"]
        keep_last = 1
        keep_for = "30d"
        [retention."logs/*/*"]
        keep_last = 1
        """,
    )
    kept = publish_versions(repo, "logs/keep/x", 3)
    gone = publish_versions(repo, "logs/drop/x", 3)
    assert {p["output"] for p in gc(repo, "--dry-run", days=10)["prune"]} == {"logs/drop/x"}
    assert {p["output"] for p in gc(repo, "--dry-run", days=40)["prune"]} == {
        "logs/keep/x",
        "logs/drop/x",
    }
    assert gc(repo, days=10)["pruned"] == 2
    for offset, data in zip(at_offsets(repo, "logs/keep/x"), kept, strict=True):
        assert gdag("lookup", "logs/keep/x", "--at", offset, cwd=repo).stdout == data
    assert gdag("lookup", "logs/drop/x", cwd=repo).stdout == gone[-1]


def test_values_in_git_are_counted_not_pruned(repo: Path) -> None:
    define(repo, '[retention]\ngrace = "0s"\n[retention."small"]\nkeep_last = 1\n')
    for i in range(3):
        assert gdag("publish", "small", f"v{i}", cwd=repo).returncode == 0
    done = gc(repo)
    assert done["prune"] == [] and done["kept_in_git"] == 2
    r = gdag("gc", cwd=repo)
    assert "2 version(s) past their rules are git blobs" in r.stderr
    first = at_offsets(repo, "small")[0]
    assert gdag("lookup", "small", "--at", first, cwd=repo).stdout == b"v0"


def sessions(repo: Path) -> str:
    return subprocess.run(
        ["git", "for-each-ref", "refs/gdag/sessions/"], cwd=repo, capture_output=True, text=True
    ).stdout


def test_a_value_a_running_session_holds_is_kept(repo: Path, tmp_path: Path) -> None:
    """A node still running on raw/a v1 while v2 and v3 arrive: gc keeps v1 for it."""
    gate = tmp_path / "gate"
    define(
        repo,
        LARGE
        + f"""
        [retention]
        grace = "0s"
        [retention."raw/*"]
        keep_last = 1
        [nodes.slow]
        run = 'while [ ! -e {gate} ]; do sleep 0.05; done; wc -c < "$GDAG_IN_A" > "$GDAG_OUT/n"'
        inputs = {{ a = "raw/a" }}
        publishes = ["n"]
        """,
    )
    first = publish_versions(repo, "raw/a", 1)[0]
    run = subprocess.Popen(
        [sys.executable, "-m", "gdag", "run", "-q"],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while "slow" not in sessions(repo):
            assert time.monotonic() < deadline and run.poll() is None, "the session never began"
            time.sleep(0.05)
        publish_versions(repo, "raw/a", 2)
        pruned = {(p["output"], p["version"]) for p in gc(repo)["prune"]}
        assert pruned == {("raw/a", 2)}  # v1 is the running session's input
    finally:
        gate.touch()
        out, err = run.communicate(timeout=60)
    assert run.returncode == 0, err
    n_first = at_offsets(repo, "n")[0]  # the session that read v1 merged
    assert gdag("lookup", "n", "--at", n_first, cwd=repo).stdout.split() == [b"%d" % len(first)]
    assert {(p["output"], p["version"]) for p in gc(repo)["prune"]} == {("raw/a", 1)}
    fsck(repo)


def test_a_replay_that_would_read_a_pruned_value_is_refused(repo: Path) -> None:
    define(
        repo,
        LARGE
        + """
        [retention]
        grace = "0s"
        [retention."raw/*"]
        keep_last = 1
        [nodes.size]
        run = 'wc -c < "$GDAG_IN_A" > "$GDAG_OUT/n"'
        inputs = { a = "raw/a" }
        publishes = ["n"]
        """,
    )
    publish_versions(repo, "raw/a", 3)
    assert gdag("run", "-q", cwd=repo).returncode == 0
    tip = gdag("log", "-n", "1", "--json", cwd=repo)
    assert gc(repo)["pruned"] == 2
    for args in (["--from", "1"], ["--from", "1", "--dry-run"]):
        r = gdag("replay", *args, cwd=repo)
        assert r.returncode == 3 and "expired under" in r.stderr, r.stderr
    assert gdag("log", "-n", "1", "--json", cwd=repo).stdout == tip.stdout  # nothing moved
    # From the publish of v3 the replay starts on v2: refused too. From a later event
    # it starts on v3, which is kept: fine.
    r = gdag("replay", "--from", at_offsets(repo, "raw/a")[-1], cwd=repo)
    assert r.returncode == 3 and "raw/a v2" in r.stderr, r.stderr
    assert gdag("publish", "note", "x", cwd=repo).returncode == 0
    r = gdag("replay", "--from", at_offsets(repo, "note")[0], cwd=repo)
    assert r.returncode == 0, r.stderr
    fsck(repo)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[retention]\ngrace = "soon"\n', "[retention] grace must be a duration"),
        ('[retention."raw/*"]\nkeep_last = 0\n', "keep_last must be a whole number"),
        ('[retention."raw/*"]\nkeep_for = "a month"\n', "keep_for must be a duration"),
        ('[retention."raw/*"]\nkeep = 3\n', "unknown key 'keep'"),
        ('[retention."raw/*"]\n', "says nothing to keep"),
        ('[retention."bad name!"]\nkeep_last = 1\n', "bad pattern name"),
        ("[retention]\nraw = 3\n", "must be grace or a table of rules"),
    ],
)
def test_bad_rules_are_refused(repo: Path, toml: str, message: str) -> None:
    define(repo, toml)
    for cmd in (["check"], ["gc"]):
        r = gdag(*cmd, cwd=repo)
        assert r.returncode == 3 and message in r.stderr, r.stderr


def test_the_same_bytes_published_again_are_not_refused(tmp_path: Path) -> None:
    """gc pruned raw/a v1; v3 is the same bytes again. With its copy evicted by the
    cache, reading v3 fetches it from the remote; reading v1 is still refused."""
    remote = tmp_path / "plain.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    repo = tmp_path / "repo"
    assert gdag("init", "-C", str(repo), cwd=tmp_path).returncode == 0
    define(
        repo,
        LARGE + 'cache = "1KiB"\n[retention]\ngrace = "0s"\n[retention."raw/*"]\nkeep_last = 1\n',
    )
    a, _ = publish_versions(repo, "raw/a", 2)
    assert gc(repo)["pruned"] == 1  # v1 (a) goes
    (repo / "value.bin").write_bytes(a)
    assert gdag("publish", "raw/a", "--file", str(repo / "value.bin"), cwd=repo).returncode == 0
    assert gdag("sync", str(remote), cwd=repo).returncode == 0
    publish_versions(repo, "other", 1)  # past the cache: the synced copy of a is evicted
    assert gdag("lookup", "raw/a", cwd=repo).stdout == a
    r = gdag("lookup", "raw/a", "--at", at_offsets(repo, "raw/a")[0], cwd=repo)
    assert r.returncode == 3 and "raw/a v1 expired under" in r.stderr, r.stderr
    fsck(repo)


def test_events_an_each_node_still_owes_are_kept(repo: Path) -> None:
    """Three photos published while nothing runs: an `each` node owes all three, so gc
    keeps them however old; once processed, the rules apply."""
    define(
        repo,
        LARGE
        + """
        [retention]
        grace = "0s"
        [retention."photos/*"]
        keep_last = 1
        [nodes.thumb]
        run = 'mkdir -p "$GDAG_OUT/thumbs"; wc -c < "$GDAG_IN_P" > "$GDAG_OUT/thumbs/t$(cksum < "$GDAG_IN_P" | cut -d" " -f1)"'
        inputs = { p = "photos/new" }
        publishes = ["thumbs/*"]
        mode = "each"
        """,
    )
    publish_versions(repo, "photos/new", 3)
    assert gc(repo, days=30)["prune"] == []
    r = gdag("run", cwd=repo)
    assert r.returncode == 0, r.stderr
    assert len(gdag("lookup", "thumbs/*", cwd=repo).stdout.split()) == 3
    assert {(p["output"], p["version"]) for p in gc(repo, days=30)["prune"]} == {
        ("photos/new", 1),
        ("photos/new", 2),
    }

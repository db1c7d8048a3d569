"""`gdag log --follow`: events streamed as they are appended, each once, in log order.

The follower is a real `gdag` process; the publishers are real `gdag publish`
processes racing on the log. The follower is stopped with SIGINT, as Ctrl-C would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import fsck, gdag

WRITERS, EACH = 4, 25


def start_follower(repo: Path, out: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "gdag", "log", "--follow", *args],
        cwd=repo,
        stdout=out.open("wb"),
        stderr=subprocess.PIPE,
    )


def wait_for_lines(out: Path, count: int, timeout: float = 120.0) -> list[str]:
    """The follower's lines once it has written `count` of them (bounded)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        lines = out.read_text().splitlines()
        if len(lines) >= count:
            return lines
        time.sleep(0.05)
    raise AssertionError(f"only {len(out.read_text().splitlines())} of {count} lines came")


def stop(follower: subprocess.Popen[bytes]) -> tuple[int, str]:
    follower.send_signal(signal.SIGINT)
    _, err = follower.communicate(timeout=30)
    return follower.returncode, err.decode()


def test_follow_delivers_concurrent_publishes_once_in_log_order(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "follow.jsonl"
    follower = start_follower(repo, out, "--json")
    try:
        assert json.loads(wait_for_lines(out, 1)[0])["event"] == "init"  # the backlog
        gdag_cmd = f"{sys.executable} -m gdag"
        writers = [
            subprocess.Popen(
                [
                    "sh",
                    "-c",
                    f"for i in $(seq {EACH}); do {gdag_cmd} publish w{k} $i || exit 1; done",
                ],
                cwd=repo,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for k in range(WRITERS)
        ]
        for w in writers:
            _, err = w.communicate(timeout=300)
            assert w.returncode == 0, err.decode()
        lines = wait_for_lines(out, 1 + WRITERS * EACH)
    finally:
        rc, err = stop(follower)
    assert rc == 0, err
    assert err == ""

    followed = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(followed) == len(lines) == 1 + WRITERS * EACH
    # Exactly the log, oldest first: every event once, in order, nothing else.
    logged = json.loads(gdag("log", "--json", cwd=repo).stdout)
    assert followed == logged[::-1]
    assert [e["offset"] for e in followed] == list(range(1 + WRITERS * EACH))
    values = sorted((e["outputs"][0], int(e["summary"].rsplit("v", 1)[1])) for e in followed[1:])
    assert values == sorted((f"w{k}", v) for k in range(WRITERS) for v in range(1, EACH + 1))
    fsck(repo)


def test_follow_filters_and_plain_lines(repo: Path, tmp_path: Path) -> None:
    for i in range(3):
        assert gdag("publish", "old", str(i), cwd=repo).returncode == 0
    out = tmp_path / "follow.txt"
    follower = start_follower(repo, out, "-n", "2", "--output", "keep/*")
    try:
        assert gdag("publish", "keep/a", "1", cwd=repo).returncode == 0
        assert gdag("publish", "drop", "1", cwd=repo).returncode == 0
        assert gdag("publish", "keep/b", "1", cwd=repo).returncode == 0
        lines = wait_for_lines(out, 2)
    finally:
        rc, err = stop(follower)
    assert rc == 0, err
    # No backlog matched the filter; then only the two matching events, oldest first.
    assert [line.split()[1:] for line in lines] == [
        ["publish", lines[0].split()[2], "keep/a"],
        ["publish", lines[1].split()[2], "keep/b"],
    ]
    assert [int(line.split()[0]) for line in lines] == [4, 6]


def test_follow_backlog_is_the_last_events_oldest_first(repo: Path, tmp_path: Path) -> None:
    for i in range(12):
        assert gdag("publish", "x", str(i), cwd=repo).returncode == 0
    out = tmp_path / "follow.jsonl"
    follower = start_follower(repo, out, "--json")
    try:
        lines = wait_for_lines(out, 10)
    finally:
        rc, err = stop(follower)
    assert rc == 0, err
    assert [json.loads(line)["offset"] for line in lines] == list(range(3, 13))


def test_follow_without_a_log_is_refused(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path / "bare")], check=True)
    r = gdag("log", "--follow", cwd=tmp_path / "bare", env={"GDAG_LOG": ""})
    assert r.returncode == 3
    assert r.stderr.startswith("gdag: error: no log 'main'"), r.stderr
    assert "hint: run `gdag init`" in r.stderr
    assert os.listdir(tmp_path / "bare" / ".git" / "refs" / "heads") == []


def test_follow_goes_by_offset_when_the_chain_is_replaced(repo: Path) -> None:
    """After a replay moved the log to another chain, events are delivered from the
    offset after the last one delivered: none twice, none skipped past it."""
    from conftest import git

    import gdag as api

    for i in range(3):
        assert gdag("publish", "x", str(i), cwd=repo).returncode == 0
    r = api.Repository(repo)
    events = r.follow()  # from offset 3 on
    earlier = json.loads(gdag("log", "--json", cwd=repo).stdout)[2]["commit"]  # offset 1
    git("update-ref", "refs/gdag/logs/main", earlier, cwd=repo)
    for value in ("a", "b", "c", "d"):  # offsets 2, 3, 4, 5 on the new chain
        assert gdag("publish", "y", value, cwd=repo).returncode == 0
    got = [next(events) for _ in range(2)]
    assert [(e.offset, e.outputs) for e in got] == [(4, ["y"]), (5, ["y"])]
    assert [e.summary for e in got] == ["publish y v3", "publish y v4"]

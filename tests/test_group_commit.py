"""Group commit on a shared remote: `gdag run --remote` merges here and pushes many
merges at once. A bare remote whose pre-receive hook holds back (or refuses) log
pushes from the run under test lets another clone move the remote meanwhile, so the
push loses its race for real."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import gdag, git
from test_remote import fsck_bare, remote_sessions

PIPELINE = """
    [nodes.a]
    run = 'echo a >> "$GDAG_REPO/.git/runs.txt"; tr a-z A-Z < "$GDAG_IN_X" > "$GDAG_OUT/a"'
    inputs = { x = "src" }
    publishes = ["a"]
    [nodes.b]
    run = 'echo b >> "$GDAG_REPO/.git/runs.txt"; cat "$GDAG_IN_X" "$GDAG_IN_X" > "$GDAG_OUT/b"'
    inputs = { x = "a" }
    publishes = ["b"]
"""

# Log pushes of a process with GDAG_TEST_GATED wait while `gate` exists, and are
# refused while `refuse` does (a local push runs the hook in the pusher's environment).
HOOK = """#!/bin/sh
while read old new ref; do
  case "$ref" in
    refs/gdag/logs/*)
      if [ -n "$GDAG_TEST_GATED" ]; then
        while [ -e {gate} ]; do sleep 0.05; done
        if [ -e {refuse} ]; then echo "log pushes are closed" >&2; exit 1; fi
      fi ;;
  esac
done
"""


class Shared:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.bare = root / "shared.git"
        self.gate = root / "gate"
        self.refuse = root / "refuse"
        git("init", "-q", "--bare", "-b", "main", str(self.bare), cwd=root)
        hook = self.bare / "hooks" / "pre-receive"
        hook.write_text(HOOK.format(gate=self.gate, refuse=self.refuse))
        hook.chmod(0o755)
        url = f"file://{self.bare}"
        self.a = root / "a"
        git("init", "-q", "-b", "main", str(self.a), cwd=root)
        assert gdag("init", cwd=self.a).returncode == 0
        (self.a / "gdag.toml").write_text(textwrap.dedent(PIPELINE))
        git("add", "gdag.toml", cwd=self.a)
        git("commit", "-qm", "definition", cwd=self.a)
        git("remote", "add", "origin", url, cwd=self.a)
        git("push", "-q", "origin", "main", cwd=self.a)
        assert gdag("publish", "src", "x", "--no-run", cwd=self.a).returncode == 0
        assert gdag("sync", cwd=self.a).returncode == 0
        self.run: subprocess.Popen[str] | None = None
        self.b = root / "b"
        git("clone", "-q", url, str(self.b), cwd=root)
        assert gdag("sync", cwd=self.b).returncode == 0

    def start_gated(self) -> subprocess.Popen[str]:
        """`gdag run --remote origin` in clone a, its log pushes held at the gate."""
        self.gate.write_text("")
        self.run = subprocess.Popen(
            [sys.executable, "-m", "gdag", "run", "--remote", "origin"],
            cwd=self.a,
            env={**os.environ, "GDAG_TEST_GATED": "1"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        return self.run

    def merged_locally(self, clone: Path) -> list[str]:
        return git("log", "--first-parent", "--format=%s", "refs/gdag/logs/main", cwd=clone).split(
            "\n"
        )

    def remote_subjects(self) -> list[str]:
        return subprocess.run(
            ["git", f"--git-dir={self.bare}", "log", "--first-parent", "--reverse",
             "--format=%s", "refs/gdag/logs/main"],
            capture_output=True, text=True, check=True,
        ).stdout.splitlines()  # fmt: skip

    def remote_tip(self) -> str:
        return subprocess.run(
            ["git", f"--git-dir={self.bare}", "rev-parse", "refs/gdag/logs/main"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip


def until(done: Callable[[], bool], timeout: float) -> None:
    end = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < end, "timed out waiting"
        time.sleep(0.05)


def runs(clone: Path) -> list[str]:
    path = clone / ".git" / "runs.txt"
    return path.read_text().split() if path.exists() else []


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[Shared]:
    s = Shared(tmp_path)
    yield s
    s.gate.unlink(missing_ok=True)
    if s.run is not None and s.run.poll() is None:  # a failed test's run: no leftovers
        os.killpg(s.run.pid, signal.SIGKILL)
        s.run.wait()


def test_merges_wait_for_one_push_and_are_merged_again_after_a_lost_race(
    shared: Shared,
) -> None:
    """The run merges both nodes here while its push waits; another machine publishes
    meanwhile, so the push loses its race: both merges are made again on the remote's
    new tip, and neither node runs again."""
    run = shared.start_gated()
    until(lambda: "session b ok" in shared.merged_locally(shared.a), timeout=60)
    assert "session a ok" not in shared.remote_subjects()  # held back: one push, later
    assert gdag("publish", "other", "y", "--no-run", cwd=shared.b).returncode == 0
    assert gdag("sync", cwd=shared.b).returncode == 0
    shared.gate.unlink()
    _, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    subjects = shared.remote_subjects()
    assert subjects.index("publish other v1") < subjects.index("session a ok")
    assert subjects.index("session a ok") < subjects.index("session b ok")
    assert runs(shared.a) == ["a", "b"]  # merged again, not run again
    assert git("rev-parse", "refs/gdag/logs/main", cwd=shared.a).strip() == shared.remote_tip()
    assert gdag("sync", cwd=shared.b).returncode == 0
    assert gdag("lookup", "b", cwd=shared.b).stdout == b"XX"
    assert gdag("lookup", "other", cwd=shared.b).stdout == b"y"
    fsck_bare(shared.bare)


def test_work_another_machine_merged_first_is_dropped_not_applied_twice(
    shared: Shared,
) -> None:
    """Both machines run the pipeline on the same event; the other pushes first. The
    held-back merges are superseded (node a) or read a value the new chain does not
    have (node b, which read this machine's a): both dropped, each applied once."""
    run = shared.start_gated()
    until(lambda: "session b ok" in shared.merged_locally(shared.a), timeout=60)
    other = gdag("run", "--remote", "origin", cwd=shared.b, timeout=120)
    assert other.returncode == 0, other.stderr
    assert runs(shared.b) == ["a", "b"]
    shared.gate.unlink()
    _, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    sessions = remote_sessions(shared.bare)
    assert sorted(sessions) == [("a", '{"src": 1}'), ("b", '{"a": 1}')]
    assert git("rev-parse", "refs/gdag/logs/main", cwd=shared.a).strip() == shared.remote_tip()
    assert gdag("lookup", "b", cwd=shared.a).stdout == b"XX"
    status = gdag("status", "--json", cwd=shared.a)
    assert status.returncode == 0 and '"stale"' not in status.text, status.text
    fsck_bare(shared.bare)
    fsck_bare(shared.a / ".git")


def test_merges_of_a_killed_run_are_pushed_by_the_next(shared: Shared) -> None:
    """Killed (with its push) after merging here: the merges are in the local log, and
    the next run pushes them without running a node again."""
    run = shared.start_gated()
    until(lambda: "session b ok" in shared.merged_locally(shared.a), timeout=60)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    shared.gate.unlink()
    time.sleep(0.2)
    assert "session a ok" not in shared.remote_subjects()
    again = gdag("run", "--remote", "origin", cwd=shared.a, timeout=120)
    assert again.returncode == 0, again.stderr
    assert runs(shared.a) == ["a", "b"]
    subjects = shared.remote_subjects()
    assert subjects.count("session a ok") == 1 and subjects.count("session b ok") == 1
    fsck_bare(shared.bare)


def test_a_remote_that_refuses_the_log_fails_the_run_and_keeps_the_merges(
    shared: Shared,
) -> None:
    shared.refuse.write_text("")
    run = shared.start_gated()
    shared.gate.unlink()
    _, err = run.communicate(timeout=120)
    assert run.returncode == 3, err
    assert "gdag: error: remote 'origin' refused to update refs/gdag/logs/main" in err
    assert "it said: log pushes are closed" in err
    assert "session b ok" in shared.merged_locally(shared.a)  # done, and kept here
    shared.refuse.unlink()
    again = gdag("run", "--remote", "origin", cwd=shared.a, timeout=120)
    assert again.returncode == 0, again.stderr
    assert runs(shared.a) == ["a", "b"]  # a was not run again
    subjects = shared.remote_subjects()
    assert subjects.count("session a ok") == 1 and subjects.count("session b ok") == 1
    assert git("for-each-ref", "refs/gdag/sessions", cwd=shared.a) == ""


def test_a_remote_log_ref_left_locked_ends_the_run_with_an_error(shared: Shared) -> None:
    """A push killed on the remote can leave its ref's lock behind: every push is then
    refused though the remote's log has not moved. The run gives up (bounded, exit 3)
    instead of pushing for ever, and keeps its merges."""
    lock = shared.bare / "refs" / "gdag" / "logs" / "main.lock"
    lock.write_text("")
    r = gdag("run", "--remote", "origin", cwd=shared.a, timeout=120)
    assert r.returncode == 3, r.stderr
    assert "gdag: error: gave up pushing log 'main' to 'origin'" in r.stderr
    assert "nothing was lost" in r.stderr
    assert "session b ok" in shared.merged_locally(shared.a)
    lock.unlink()
    assert gdag("sync", cwd=shared.a).returncode == 0
    assert shared.remote_subjects().count("session b ok") == 1


SLOW_B = PIPELINE.replace(
    'echo b >> "$GDAG_REPO/.git/runs.txt";',
    'while [ ! -e "$GDAG_REPO/.git/release-b" ]; do sleep 0.01; done; '
    'echo b >> "$GDAG_REPO/.git/runs.txt";',
)
PUBLISHES = """
import sys
from gdag.main import main
for i in range(int(sys.argv[1])):
    assert main(["publish", f"other/{i}", "v", "--no-run"]) == 0
"""


def test_a_session_finishing_while_its_chain_is_rebuilt_is_not_misattributed(
    shared: Shared,
) -> None:
    """Node b runs on this machine's value of a while the push is held; another machine
    publishes src and pushes its run of a first, so this machine's a is superseded and
    the chain is rebuilt. b finishes during the rebuild (a long one: 150 local events to make again):
    its merge read a value the new chain does not have, so it is not merged there, and
    b runs again on the remote's a."""
    for clone in (shared.a, shared.b):  # one definition on both machines
        (clone / "gdag.toml").write_text(textwrap.dedent(SLOW_B))
        git("commit", "-qam", "slow b", cwd=clone)
    (shared.b / ".git" / "release-b").write_text("")  # b waits on this machine only
    run = shared.start_gated()
    until(lambda: "session a ok" in shared.merged_locally(shared.a), timeout=60)
    subprocess.run(
        [sys.executable, "-c", PUBLISHES, "150"],
        cwd=shared.a,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    assert gdag("publish", "src", "y", "--no-run", cwd=shared.b).returncode == 0
    # The other machine's run pushes its a, then waits for b's lease (held here).
    other = subprocess.Popen(
        [sys.executable, "-m", "gdag", "run", "--remote", "origin"],
        cwd=shared.b,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    until(lambda: "session a ok" in shared.remote_subjects(), timeout=60)
    tracking = shared.a / ".git" / "refs" / "gdag" / "remotes" / "origin" / "logs" / "main"
    before = tracking.read_text()
    shared.gate.unlink()
    until(lambda: tracking.read_text() != before, timeout=60)  # fetched: the rebuild starts
    (shared.a / ".git" / "release-b").write_text("")
    _, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    _, err = other.communicate(timeout=120)
    assert other.returncode == 0, err
    assert gdag("sync", cwd=shared.b).returncode == 0
    assert gdag("lookup", "a", cwd=shared.b).stdout == b"Y"
    assert gdag("lookup", "b", cwd=shared.b).stdout == b"YY"
    sessions = remote_sessions(shared.bare)
    assert len(sessions) == len(set(sessions))
    assert ("b", '{"a": 1}') in sessions and ("a", '{"src": 1}') not in sessions
    fsck_bare(shared.bare)

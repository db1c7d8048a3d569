"""Living in a git repository: hooks, branch-following logs, watch, the private store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import fsck, gdag, git


def wait_for(predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def lookup_json(repo: Path, output: str) -> dict | None:
    r = gdag("lookup", output, cwd=repo)
    return json.loads(r.stdout) if r.returncode == 0 else None


@pytest.fixture(params=["plain", "private"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def work(tmp_path: Path, store_kind: str) -> Path:
    """A user repository with one commit on main and gdag initialised (plain or private)."""
    repo = tmp_path / "work"
    git("init", "-q", "-b", "main", str(repo), cwd=tmp_path)
    (repo / "README").write_text("hello\n")
    git("add", "README", cwd=repo)
    git("commit", "-qm", "initial", cwd=repo)
    args = ["init", "--private"] if store_kind == "private" else ["init"]
    assert gdag(*args, cwd=repo).returncode == 0
    git("add", "gdag.toml", cwd=repo)
    git("commit", "-qm", "add gdag.toml", cwd=repo)
    return repo


def gdag_git(repo: Path, *args: str) -> str:
    """git for gdag's own store (the private one when there is one)."""
    private = repo / ".git" / "gdag" / "store.git"
    where = [f"--git-dir={private}"] if private.is_dir() else []
    return subprocess.run(
        ["git", *where, *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout


def test_hooks_publish_git_events(work: Path) -> None:
    foreign = work / ".git" / "hooks" / "post-commit"
    foreign.write_text('#!/bin/sh\necho ran >> "$(git rev-parse --git-dir)/foreign.log"\n')
    foreign.chmod(0o755)
    r = gdag("hooks", "install", cwd=work)
    assert r.returncode == 0 and "post-commit    gdag+chained" in r.text
    (work / "a.txt").write_text("a")
    git("add", "a.txt", cwd=work)
    git("commit", "-qm", "add a", cwd=work)
    head = git("rev-parse", "HEAD", cwd=work).strip()
    assert wait_for(lambda: (lookup_json(work, "git/commit") or {}).get("sha") == head)
    event = lookup_json(work, "git/commit")
    assert event == {
        "sha": head,
        "branch": "main",
        "author": "Test User <test@example.com>",
        "time": event["time"],
        "message": "add a",
    }
    assert (work / ".git" / "foreign.log").read_text() == "ran\n"
    meta = json.loads(gdag("lookup", "git/commit", "--meta", "--json", cwd=work).stdout)
    assert meta["meta"]["type"] == "json"

    git("checkout", "-qb", "topic", cwd=work)
    assert wait_for(lambda: (lookup_json(work, "git/checkout") or {}).get("branch") == "topic")
    (work / "b.txt").write_text("b")
    git("add", "b.txt", cwd=work)
    git("commit", "-qm", "add b", cwd=work)
    git("checkout", "-q", "main", cwd=work)
    git("merge", "-q", "--no-ff", "-m", "merge topic", "topic", cwd=work)
    merged = git("rev-parse", "HEAD", cwd=work).strip()
    assert wait_for(lambda: (lookup_json(work, "git/merge") or {}).get("sha") == merged)
    git("commit", "-q", "--amend", "-m", "merge topic (amended)", cwd=work)
    amended = git("rev-parse", "HEAD", cwd=work).strip()
    assert wait_for(
        lambda: (lookup_json(work, "git/rewrite") or {}).get("rewritten") == [[merged, amended]]
    )
    assert lookup_json(work, "git/rewrite")["command"] == "amend"

    r = gdag("hooks", "uninstall", cwd=work)
    assert "post-commit    foreign" in r.text and "post-merge     absent" in r.text
    assert foreign.read_text().startswith("#!/bin/sh\necho ran")
    git("status", cwd=work)
    fsck(work)


def test_rebase_publishes_rewrite(work: Path) -> None:
    gdag("hooks", "install", "--hook", "post-rewrite", cwd=work)
    git("checkout", "-qb", "side", cwd=work)
    (work / "s.txt").write_text("s")
    git("add", "s.txt", cwd=work)
    git("commit", "-qm", "side", cwd=work)
    old = git("rev-parse", "HEAD", cwd=work).strip()
    git("checkout", "-q", "main", cwd=work)
    (work / "m.txt").write_text("m")
    git("add", "m.txt", cwd=work)
    git("commit", "-qm", "main moves", cwd=work)
    git("checkout", "-q", "side", cwd=work)
    git("rebase", "-q", "main", cwd=work)
    new = git("rev-parse", "HEAD", cwd=work).strip()
    assert wait_for(lambda: (lookup_json(work, "git/rewrite") or {}).get("command") == "rebase")
    assert [old, new] in lookup_json(work, "git/rewrite")["rewritten"]


def test_broken_gdag_never_fails_git(work: Path) -> None:
    gdag("hooks", "install", cwd=work)
    (work / "gdag.toml").write_text("this is [ not toml")
    (work / "c.txt").write_text("c")
    git("add", "c.txt", cwd=work)
    proc = subprocess.run(
        ["git", "commit", "-qm", "still fine"], cwd=work, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    errors = work / ".git" / "gdag" / "hook-errors"
    assert wait_for(errors.exists)
    assert "post-commit" in errors.read_text() and "gdag.toml" in errors.read_text()
    (work / "gdag.toml").write_text("")
    r = gdag("status", cwd=work)
    assert "hook failed" in r.stderr


def test_hooks_path_honoured_and_refused_outside(work: Path, tmp_path: Path) -> None:
    git("config", "core.hooksPath", ".githooks", cwd=work)
    assert gdag("hooks", "install", cwd=work).returncode == 0
    assert "gdag-hook-shim" in (work / ".githooks" / "post-commit").read_text()
    git("config", "core.hooksPath", str(tmp_path / "elsewhere"), cwd=work)
    r = gdag("hooks", "install", cwd=work)
    assert r.returncode == 3 and "outside this repository" in r.stderr and "hint:" in r.stderr
    assert not (tmp_path / "elsewhere").exists()


def test_recursion_guard(work: Path) -> None:
    """A node that commits does not make the hook publish (and run it) again, forever."""
    (work / "gdag.toml").write_text(
        textwrap.dedent("""
        [nodes.recorder]
        run = 'git -C "$GDAG_REPO" commit -q --allow-empty -m "recorded" && echo done > "$GDAG_OUT/rec"'
        inputs = { c = "git/commit" }
        publishes = ["rec"]
    """)
    )
    gdag("hooks", "install", "--hook", "post-commit", cwd=work)
    git("commit", "-q", "--allow-empty", "-m", "trigger", cwd=work)
    assert wait_for(lambda: gdag("lookup", "rec", cwd=work).returncode == 0)
    time.sleep(1.0)
    commits = git("log", "--format=%s", cwd=work).splitlines()
    assert commits.count("recorded") == 1
    assert lookup_json(work, "git/commit")["message"] == "trigger"


def test_branch_following(work: Path) -> None:
    with open(work / "gdag.toml", "a") as f:
        f.write('\n[log]\nfollow = "branch"\n')
    # Until main's log exists, following falls back to the default log "main".
    assert gdag("publish", "shared", "before-fork", cwd=work).returncode == 0
    git("checkout", "-qb", "feature/x", cwd=work)
    assert gdag("publish", "mine", "feature-value", cwd=work).returncode == 0
    assert gdag("lookup", "shared", cwd=work).stdout == b"before-fork"
    git("checkout", "-q", "main", cwd=work)
    assert gdag("lookup", "mine", cwd=work).returncode == 3
    git("checkout", "-q", "feature/x", cwd=work)
    assert gdag("lookup", "mine", cwd=work).stdout == b"feature-value"
    # The feature log shares the history before the fork.
    feature = "refs/gdag/logs/feature--x"
    base = gdag_git(work, "merge-base", feature, "refs/gdag/logs/main").strip()
    assert base == gdag_git(work, "rev-parse", "refs/gdag/logs/main").strip()
    assert gdag("lookup", "mine", "--log", "main", cwd=work).returncode == 3
    # Detached HEAD: the log of the branch it was detached from.
    git("checkout", "-q", "--detach", cwd=work)
    assert gdag("lookup", "shared", cwd=work).stdout == b"before-fork"
    assert gdag("lookup", "mine", cwd=work).stdout == b"feature-value"
    git("checkout", "-q", "main", cwd=work)
    git("checkout", "-q", "--detach", cwd=work)
    assert gdag("lookup", "mine", cwd=work).returncode == 3


def test_private_store_survives_user_gc(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    git("init", "-q", str(repo), cwd=tmp_path)
    assert gdag("init", cwd=repo).returncode == 0
    for i in range(3):
        assert gdag("publish", f"v/{i}", f"value-{i}", cwd=repo).returncode == 0
    r = gdag("init", "--private", cwd=repo)
    assert r.returncode == 0 and "moved" in r.text
    assert git("for-each-ref", cwd=repo) == ""  # the user sees none of gdag's refs
    assert gdag("publish", "v/3", "value-3", cwd=repo).returncode == 0
    subprocess.run(["git", "gc", "--prune=now", "-q"], cwd=repo, check=True)
    for i in range(4):
        assert gdag("lookup", f"v/{i}", cwd=repo).stdout == f"value-{i}".encode()
    fsck(repo)
    private = repo / ".git" / "gdag" / "store.git"
    proc = subprocess.run(
        ["git", f"--git-dir={private}", "fsck", "--strict", "--no-dangling"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr


def test_watch_processes_events_and_resumes_after_kill(work: Path) -> None:
    (work / "gdag.toml").write_text(
        textwrap.dedent("""
        [nodes.slow_copy]
        run = 'sleep 0.3; cp "$GDAG_IN_X" "$GDAG_OUT/copy"'
        inputs = { x = "src" }
        publishes = ["copy"]
    """)
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "gdag", "watch", "--interval", "0.1"],
            cwd=work,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(work.parent / "watch.log", "ab"),  # noqa: SIM115 - closed with the process
        )

    watcher = start()
    try:
        assert gdag("publish", "src", "one", "--no-run", cwd=work).returncode == 0
        assert wait_for(lambda: gdag("lookup", "copy", cwd=work).stdout == b"one", 30)
        # Kill it mid-session, publish meanwhile, restart: it finishes the work.
        assert gdag("publish", "src", "two", "--no-run", cwd=work).returncode == 0
        time.sleep(0.25)
        watcher.send_signal(signal.SIGKILL)
        watcher.wait()
        assert gdag("publish", "src", "three", "--no-run", cwd=work).returncode == 0
        watcher = start()
        assert wait_for(lambda: gdag("lookup", "copy", cwd=work).stdout == b"three", 30)
    finally:
        watcher.send_signal(signal.SIGTERM)
        assert watcher.wait(timeout=20) == 0
    sessions = gdag_git(
        work,
        "log",
        "--first-parent",
        "--format=%(trailers:key=Gdag-Node,valueonly)",
        "refs/gdag/logs/main",
    )
    runs = [
        json.loads(gdag_git(work, "show", f"{c}:nodes/slow_copy/@done.json"))["inputs"]["src"]
        for c in gdag_git(
            work,
            "log",
            "--first-parent",
            "--format=%H",
            "--grep=session slow_copy ok",
            "refs/gdag/logs/main",
        ).split()
    ]
    assert len(runs) == len(set(runs))  # no input version completed twice
    assert sessions.split().count("slow_copy") == len(runs)
    assert gdag_git(work, "for-each-ref", "refs/gdag/sessions") == ""
    fsck(work)


def test_node_committing_under_plain_run_publishes_no_git_event(work: Path) -> None:
    gdag("hooks", "install", "--hook", "post-commit", cwd=work)
    (work / "gdag.toml").write_text(
        textwrap.dedent("""
        [nodes.committer]
        run = 'git -C "$GDAG_REPO" commit -q --allow-empty -m "from a node" && echo > "$GDAG_OUT/c"'
        inputs = { x = "src" }
        publishes = ["c"]
    """)
    )
    assert gdag("publish", "src", "1", cwd=work).returncode == 0
    time.sleep(1.0)  # a hook, had it fired, would have published by now
    assert gdag("lookup", "git/commit", cwd=work).returncode == 3
    assert not (work / ".git" / "gdag" / "hook-errors").exists()


def test_private_store_syncs_with_the_user_repository_remotes(tmp_path: Path) -> None:
    bare = tmp_path / "shared.git"
    git("init", "-q", "--bare", str(bare), cwd=tmp_path)
    repo = tmp_path / "r"
    git("init", "-q", str(repo), cwd=tmp_path)
    git("remote", "add", "origin", str(bare), cwd=repo)
    assert gdag("init", "--private", cwd=repo).returncode == 0
    assert gdag("publish", "x", "1", cwd=repo).returncode == 0
    r = gdag("sync", "origin", cwd=repo)
    assert r.returncode == 0 and "pushed" in r.text, r.stderr
    assert "refs/gdag/logs/main" in git("--git-dir", str(bare), "for-each-ref", cwd=tmp_path)


def test_install_beside_pre_commit_managed_hooks_goes_in_as_legacy(work: Path) -> None:
    """Where pre-commit manages a hook, the shim is pre-commit's `.legacy` hook, which
    pre-commit runs first (the real pre-commit: tests/test_hooks_setups.py)."""
    managed = work / ".git" / "hooks" / "post-commit"
    text = "#!/bin/sh\n# File generated by pre-commit: https://pre-commit.com\n"
    managed.write_text(text)
    managed.chmod(0o755)
    r = gdag("hooks", "install", cwd=work)
    assert r.returncode == 0 and "post-commit    gdag via pre-commit" in r.text
    assert managed.read_text() == text
    assert "gdag-hook-shim" in (work / ".git" / "hooks" / "post-commit.legacy").read_text()
    r = gdag("hooks", "uninstall", cwd=work)
    assert "post-commit    foreign" in r.text
    assert not (work / ".git" / "hooks" / "post-commit.legacy").exists()
    assert managed.read_text() == text

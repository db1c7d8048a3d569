"""Bursts of git events: every commit its own `git/commit` event, in order, none lost."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from conftest import fsck, gdag, git


def gdag_git(repo: Path, *args: str) -> str:
    """git for gdag's own store (the private one when there is one)."""
    private = repo / ".git" / "gdag" / "store.git"
    where = [f"--git-dir={private}"] if private.is_dir() else []
    return subprocess.run(
        ["git", *where, *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout


def events(repo: Path, output: str, log: str = "main") -> list[dict]:
    """Every value `output` was published with on the log, oldest first."""
    ref = f"refs/gdag/logs/{log}"
    lines = gdag_git(
        repo,
        "log",
        "--reverse",
        "--first-parent",
        "--format=%H %(trailers:key=Gdag-Output,valueonly,separator=%x2C)",
        ref,
    ).splitlines()
    found = []
    for line in lines:
        commit, _, outputs = line.partition(" ")
        if output in outputs.split(","):
            found.append(json.loads(gdag_git(repo, "show", f"{commit}:outputs/{output}/@value")))
    return found


def spool(repo: Path) -> Path:
    return repo / ".git" / "gdag" / "spool"


def drained(repo: Path, timeout: float = 120.0) -> bool:
    """Bounded wait until the background drainer has published the queue and gone."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        left = list(spool(repo).glob("*.event"))
        if not left and not (spool(repo) / "drain.pid").exists():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def work(tmp_path: Path) -> Path:
    repo = tmp_path / "work"
    git("init", "-q", "-b", "main", str(repo), cwd=tmp_path)
    (repo / "README").write_text("hello\n")
    git("add", "README", cwd=repo)
    git("commit", "-qm", "initial", cwd=repo)
    assert gdag("init", cwd=repo).returncode == 0
    git("add", "gdag.toml", cwd=repo)
    git("commit", "-qm", "add gdag.toml", cwd=repo)
    assert gdag("hooks", "install", cwd=repo).returncode == 0
    return repo


def test_fifty_fast_commits_and_a_cherry_pick_each_publish_their_own_commit(work: Path) -> None:
    loop = subprocess.run(
        'for i in $(seq 1 50); do echo "$i" > n.txt; git add n.txt; git commit -qm "c$i"; done',
        shell=True,
        cwd=work,
        check=True,
        capture_output=True,
        text=True,
    )
    assert loop.stderr == ""  # the shims say nothing to git's user
    fifty = git("rev-list", "--reverse", "HEAD~50..HEAD", cwd=work).split()
    # Ten commits on a side branch, cherry-picked onto main in one command.
    git("checkout", "-qb", "side", "HEAD~50", cwd=work)
    for i in range(10):
        (work / f"s{i}.txt").write_text(f"{i}\n")
        git("add", f"s{i}.txt", cwd=work)
        git("commit", "-qm", f"s{i}", cwd=work)
    side = git("rev-list", "--reverse", "HEAD~10..HEAD", cwd=work).split()
    git("checkout", "-q", "main", cwd=work)
    git("cherry-pick", f"{side[0]}~1..side", cwd=work)
    picked = git("rev-list", "--reverse", "HEAD~10..HEAD", cwd=work).split()
    assert drained(work)
    commits = events(work, "git/commit")
    assert [c["sha"] for c in commits] == fifty + side + picked
    assert [c["message"] for c in commits[:50]] == [f"c{i}" for i in range(1, 51)]
    assert {c["branch"] for c in commits[50:60]} == {"side"}
    assert {c["branch"] for c in commits[60:]} == {"main"}
    checkouts = events(work, "git/checkout")
    assert [c["branch"] for c in checkouts] == ["side", "main"]
    assert not (work / ".git" / "gdag" / "hook-errors").exists()
    fsck(work)


def test_rebase_publishes_each_rewritten_pair(work: Path) -> None:
    git("checkout", "-qb", "topic", cwd=work)
    for i in range(5):
        git("commit", "-q", "--allow-empty", "-m", f"t{i}", cwd=work)
    old = git("rev-list", "--reverse", "HEAD~5..HEAD", cwd=work).split()
    git("checkout", "-q", "main", cwd=work)
    git("commit", "-q", "--allow-empty", "-m", "main moves", cwd=work)
    git("checkout", "-q", "topic", cwd=work)
    git("rebase", "-q", "main", cwd=work)
    new = git("rev-list", "--reverse", "HEAD~5..HEAD", cwd=work).split()
    assert drained(work)
    rewrites = events(work, "git/rewrite")
    assert rewrites[-1]["command"] == "rebase"
    assert rewrites[-1]["rewritten"] == [list(p) for p in zip(old, new, strict=True)]
    assert [c["sha"] for c in events(work, "git/commit")][-5:] == new


def test_killed_drainer_loses_nothing(work: Path) -> None:
    """Events queued while no drainer runs (its start-up failed, or it was killed) are
    published by the next drain, in capture order."""
    hook = work / ".git" / "hooks" / "post-commit"
    text = hook.read_text()
    hook.write_text(text.replace("python=", "python=/nonexistent/python #", 1))
    for i in range(3):
        git("commit", "-q", "--allow-empty", "-m", f"q{i}", cwd=work)
    queued = sorted(spool(work).glob("*.event"))
    assert len(queued) == 3
    assert "interpreter of gdag's hooks is gone" in (work / ".git/gdag/hook-errors").read_text()
    r = gdag("status", cwd=work)
    assert "cannot run" in r.stderr and "3 git event(s) queued" in r.stderr
    hook.write_text(text)
    git("commit", "-q", "--allow-empty", "-m", "q3", cwd=work)
    assert drained(work)
    shas = git("rev-list", "--reverse", "HEAD~4..HEAD", cwd=work).split()
    assert [c["sha"] for c in events(work, "git/commit")] == shas


def queue_without_drainer(repo: Path, commits: int) -> list[Path]:
    """Make `commits` commits while the pid file names a live process (this one), so
    the shims queue their events and start no drainer; the queued files, in order."""
    spool(repo).mkdir(parents=True, exist_ok=True)
    (spool(repo) / "drain.pid").write_text(f"{os.getpid()}\n")
    for i in range(commits):
        git("commit", "-q", "--allow-empty", "-m", f"k{i}", cwd=repo)
    (spool(repo) / "drain.pid").unlink()
    return sorted(spool(repo).glob("*.event"), key=lambda p: int(p.name.split("-")[0]))


@pytest.mark.parametrize("published", [True, False], ids=["after-publish", "before-publish"])
def test_a_drainer_killed_mid_event_publishes_it_exactly_once(work: Path, published: bool) -> None:
    """A drainer SIGKILLed while publishing an event leaves its file queued and its name
    in spool/inflight; whether or not the publish reached the log, the next drainer
    publishes each commit once. The state is made exactly: drain, then put back the
    files and the marker as a kill after (or before) the publish leaves them."""
    queued = queue_without_drainer(work, 3)
    assert len(queued) == 3
    kept = {p: p.read_bytes() for p in queued}
    before = time.time() - 0.5
    killed_at = queued[-1] if published else queued[0]
    if published:
        assert gdag("hook", "--drain", cwd=work).returncode == 0
        assert not list(spool(work).glob("*.event"))
        # Killed after publishing the last event, before removing its file.
        killed_at.write_bytes(kept[killed_at])
    marker = spool(work) / "inflight"
    marker.write_text(killed_at.name + "\n")
    os.utime(marker, (before, before))
    assert gdag("hook", "--drain", cwd=work).returncode == 0
    assert drained(work)
    assert not marker.exists()
    shas = git("rev-list", "--reverse", "HEAD~3..HEAD", cwd=work).split()
    published_shas = [c["sha"] for c in events(work, "git/commit")]
    assert published_shas[-3:] == shas
    assert len(published_shas) == len(set(published_shas))  # nothing twice
    assert not (work / ".git/gdag/hook-errors").exists()
    fsck(work)


def test_commits_in_a_linked_worktree_publish_their_own_commits(work: Path) -> None:
    linked = work.parent / "linked"
    git("worktree", "add", "-q", "-b", "wt", str(linked), cwd=work)
    for i in range(5):
        git("commit", "-q", "--allow-empty", "-m", f"w{i}", cwd=linked)
    shas = git("rev-list", "--reverse", "HEAD~5..HEAD", cwd=linked).split()
    assert drained(work)
    commits = [c for c in events(work, "git/commit") if c["branch"] == "wt"]
    assert [c["sha"] for c in commits] == shas
    assert not (work / ".git" / "gdag" / "hook-errors").exists()


def test_a_moved_repository_keeps_publishing(work: Path) -> None:
    moved = work.parent / "moved"
    work.rename(moved)
    git("commit", "-q", "--allow-empty", "-m", "after the move", cwd=moved)
    sha = git("rev-parse", "HEAD", cwd=moved).strip()
    assert drained(moved)
    assert events(moved, "git/commit")[-1]["sha"] == sha


def test_events_go_to_the_log_of_the_branch_they_were_captured_on(work: Path) -> None:
    with open(work / "gdag.toml", "a") as f:
        f.write('\n[log]\nfollow = "branch"\n')
    git("commit", "-qam", "follow branches", cwd=work)
    git("checkout", "-qb", "topic", cwd=work)
    assert gdag("log", "-n", "1", cwd=work).returncode == 0  # topic's log, forked
    assert drained(work)
    # A live process in the drainer's pid file: the events wait until HEAD is on main.
    holder = subprocess.Popen(["sleep", "60"])
    (spool(work) / "drain.pid").write_text(f"{holder.pid}\n")
    for i in range(3):
        git("commit", "-q", "--allow-empty", "-m", f"t{i}", cwd=work)
    git("checkout", "-q", "main", cwd=work)
    holder.kill()
    holder.wait()
    (spool(work) / "drain.pid").unlink()
    assert gdag("hook", "--drain", cwd=work).returncode == 0
    topic = git("rev-list", "--reverse", "main..topic", cwd=work).split()
    assert [c["sha"] for c in events(work, "git/commit", log="topic")][-3:] == topic
    assert not set(topic) & {c["sha"] for c in events(work, "git/commit", log="main")}


def test_gdag_run_publishes_events_no_drainer_published(tmp_path: Path) -> None:
    """An event a shim queued whose drainer never ran (killed, or could not start) is
    published by the next `gdag run`, naming its own commit."""
    import sys

    repo = tmp_path / "repo"
    assert gdag("init", "-C", str(repo), cwd=tmp_path).returncode == 0
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "one", cwd=repo)
    head = git("rev-parse", "HEAD", cwd=repo).strip()
    queue = "from gdag.hookqueue import capture, enqueue; enqueue(capture('post-commit', [], b''))"
    subprocess.run([sys.executable, "-c", queue], cwd=repo, check=True)
    assert gdag("lookup", "git/commit", cwd=repo).returncode == 3  # not published yet
    assert gdag("run", cwd=repo).returncode == 0
    assert json.loads(gdag("lookup", "git/commit", cwd=repo).stdout)["sha"] == head
    assert not list((repo / ".git" / "gdag" / "spool").glob("*.event"))
    fsck(repo)


def test_a_drainer_killed_twice_keeps_the_first_drainers_time(work: Path) -> None:
    """The in-flight marker of an event that a second drainer resumes keeps the first
    drainer's time, so a third still finds what the first published. The second
    drainer is "killed" by an interrupt raised from its publish, in-process."""
    from gdag.hookqueue import drain

    queued = queue_without_drainer(work, 1)
    marker = spool(work) / "inflight"
    marker.write_text(queued[0].name + "\n")
    first = time.time() - 30
    os.utime(marker, (first, first))
    seen: list[float] = []

    def killed(event) -> None:  # type: ignore[no-untyped-def]
        seen.append(event.resumed)
        raise KeyboardInterrupt  # as SIGINT would end the drainer here

    with pytest.raises(KeyboardInterrupt):
        drain(spool(work), lambda events: None, killed, lambda events: None, lambda p, e: None)
    assert len(seen) == 1 and abs(seen[0] - first) < 1  # resumed, from the first time
    assert marker.read_text().strip() == queued[0].name
    assert abs(marker.stat().st_mtime - first) < 1  # not rewritten by the second drainer

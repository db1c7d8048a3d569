"""Hooks in the setups users have: pre-commit, a recreated virtualenv, a broken
definition, a server's post-receive; and doctor beside an old malformed user commit."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import fsck, gdag, git
from test_hooks_burst import drained, events

HERE = Path(__file__).resolve().parent.parent


@pytest.fixture
def work(tmp_path: Path) -> Path:
    repo = tmp_path / "work"
    git("init", "-q", "-b", "main", str(repo), cwd=tmp_path)
    git("commit", "-q", "--allow-empty", "-m", "initial", cwd=repo)
    assert gdag("init", cwd=repo).returncode == 0
    git("add", "gdag.toml", cwd=repo)
    git("commit", "-qm", "add gdag.toml", cwd=repo)
    return repo


def commit(repo: Path, message: str) -> str:
    git("commit", "-q", "--allow-empty", "-m", message, cwd=repo)
    return git("rev-parse", "HEAD", cwd=repo).strip()


def test_event_while_the_definition_is_broken_is_recorded(work: Path) -> None:
    assert gdag("hooks", "install", "--hook", "post-commit", cwd=work).returncode == 0
    (work / "gdag.toml").write_text("this is [ not toml")
    sha = commit(work, "while broken")
    assert drained(work)
    assert [c["sha"] for c in events(work, "git/commit")] == [sha]
    errors = (work / ".git" / "gdag" / "hook-errors").read_text()
    assert "recorded with the log's definition" in errors and "gdag.toml" in errors
    (work / "gdag.toml").write_text("")
    assert "hook failed" in gdag("status", cwd=work).stderr


def make_venv(where: Path) -> Path:
    """A virtualenv whose python runs this checkout's gdag (through PYTHONPATH)."""
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(where)],
        check=True,
    )
    return where / "bin" / "python"


def test_recreated_virtualenv_is_reported_and_events_wait(
    work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    python = make_venv(tmp_path / "venv")
    paths = [str(HERE), *[p for p in sys.path if p.endswith("site-packages")]]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
    subprocess.run([str(python), "-m", "gdag", "hooks", "install"], cwd=work, check=True)
    first = commit(work, "with the venv")
    assert drained(work)
    shutil.rmtree(tmp_path / "venv")
    second = commit(work, "venv gone")  # git is not failed
    r = gdag("status", cwd=work)
    assert r.returncode == 0
    assert "hook post-commit cannot run: its interpreter is gone" in r.stderr
    assert "1 git event(s) queued" in r.stderr
    r = gdag("doctor", "--json", cwd=work)
    found = json.loads(r.stdout)
    assert r.returncode == 3
    assert any(f["severity"] == "error" and "cannot run" in f["what"] for f in found)
    listed = gdag("hooks", "list", cwd=work).text
    assert "post-commit    broken" in listed
    # Installing again (from a gdag that exists) lets the next commit drain both.
    assert gdag("hooks", "install", cwd=work).returncode == 0
    third = commit(work, "reinstalled")
    assert drained(work)
    assert [c["sha"] for c in events(work, "git/commit")] == [first, second, third]
    assert "cannot run" not in gdag("status", cwd=work).stderr


def test_post_receive_publishes_one_event_per_pushed_ref(tmp_path: Path) -> None:
    server = tmp_path / "server.git"
    git("init", "-q", "--bare", str(server), cwd=tmp_path)
    assert gdag("init", "-C", str(server), cwd=tmp_path).returncode == 0
    r = gdag("hooks", "install", "--hook", "post-receive", "-C", str(server), cwd=tmp_path)
    assert r.returncode == 0 and "post-receive   gdag" in r.text
    clone = tmp_path / "clone"
    git("clone", "-q", str(server), str(clone), cwd=tmp_path)
    first = commit(clone, "one")
    git("push", "-q", "origin", "HEAD:refs/heads/main", "HEAD:refs/heads/topic", cwd=clone)
    second = commit(clone, "two")
    git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=clone)
    git("push", "-q", "origin", ":refs/heads/topic", cwd=clone)
    # gdag's own refs pushed to the server are not git events.
    assert gdag("init", cwd=clone).returncode == 0
    assert gdag("sync", "origin", cwd=clone).returncode == 0
    assert drained(server)
    zero = "0" * 40
    assert events(server, "git/push") == [
        {"ref": "refs/heads/main", "old": zero, "new": first},
        {"ref": "refs/heads/topic", "old": zero, "new": first},
        {"ref": "refs/heads/main", "old": first, "new": second},
        {"ref": "refs/heads/topic", "old": first, "new": zero},
    ]
    assert not (server / "gdag" / "hook-errors").exists()


PUSHES = """
[nodes.seen]
run = 'cat "$GDAG_IN_P" > "$GDAG_OUT/seen"'
inputs = { p = "git/push" }
publishes = ["seen"]
mode = "each"

[nodes.double]
run = 'cat "$GDAG_IN_X" "$GDAG_IN_X" > "$GDAG_OUT/doubled"'
inputs = { x = "x" }
publishes = ["doubled"]
"""


def test_run_remote_finishes_against_a_server_whose_hook_publishes(tmp_path: Path) -> None:
    """The server's post-receive publishes every branch push into the very log that
    `run --remote` takes leases on and merges into: while one clone pushes branches
    and values, another's `run --remote` keeps up, and a last one finishes with every
    push seen once and no livelock between gdag's pushes and the hook."""
    server = tmp_path / "server.git"
    git("init", "-q", "--bare", "-b", "main", str(server), cwd=tmp_path)
    seed = tmp_path / "seed"
    git("init", "-q", "-b", "main", str(seed), cwd=tmp_path)
    (seed / "gdag.toml").write_text(PUSHES)
    git("add", "gdag.toml", cwd=seed)
    git("commit", "-qm", "definition", cwd=seed)
    git("remote", "add", "origin", f"file://{server}", cwd=seed)
    git("push", "-q", "origin", "main", cwd=seed)
    assert gdag("init", cwd=seed).returncode == 0
    assert gdag("sync", "origin", cwd=seed).returncode == 0
    r = gdag("hooks", "install", "--hook", "post-receive", "-C", str(server), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    worker = tmp_path / "worker"
    git("clone", "-q", f"file://{server}", str(worker), cwd=tmp_path)
    assert gdag("sync", "origin", cwd=worker).returncode == 0
    stop = tmp_path / "stop"
    loop = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, sys, time\n"
            "from gdag.main import main\n"
            "while not os.path.exists(sys.argv[1]):\n"
            "    assert main(['run', '--remote', 'origin', '-q']) == 0\n"
            "    time.sleep(0.05)\n",
            str(stop),
        ],
        cwd=worker,
    )
    try:
        pushed = []
        for i in range(6):
            pushed.append(commit(seed, f"b{i}"))
            git("push", "-q", "origin", f"HEAD:refs/heads/b{i}", cwd=seed)
            assert gdag("publish", "x", f"v{i}", "--no-run", cwd=seed).returncode == 0
            assert gdag("sync", "origin", cwd=seed).returncode == 0
        assert drained(server)
    finally:
        stop.touch()
        assert loop.wait(timeout=120) == 0
    last = gdag("run", "--remote", "origin", cwd=worker, timeout=120)
    assert last.returncode == 0, last.stderr
    pushes = events(server, "git/push")
    assert [p["new"] for p in pushes] == pushed
    seen = events(server, "seen")
    assert seen == pushes  # each push once, in order
    assert gdag("sync", "origin", cwd=worker).returncode == 0
    assert gdag("lookup", "doubled", cwd=worker).stdout == b"v5v5"
    assert not (server / "gdag" / "hook-errors").exists()
    proc = subprocess.run(
        ["git", f"--git-dir={server}", "fsck", "--strict", "--no-dangling"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr


def malformed_commit(repo: Path, line: str) -> str:
    """A commit git's fsck calls malformed, as old tools wrote them, made the user's HEAD."""
    tree = git("write-tree", cwd=repo).strip()
    parent = git("rev-parse", "HEAD", cwd=repo).strip()
    body = f"tree {tree}\nparent {parent}\n{line}\ncommitter C <c@x> 1234567890 +0000\n\nold\n"
    sha = subprocess.run(
        ["git", "hash-object", "-t", "commit", "--literally", "-w", "--stdin"],
        cwd=repo,
        input=body,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    git("update-ref", "refs/heads/main", sha, cwd=repo)
    return sha


@pytest.mark.parametrize(
    "author",
    ["author A <a@x>1234567890 +0000", "author A <a@x> 1234567890 +99999"],
    ids=["missing-space", "bad-timezone"],
)
def test_doctor_notes_but_does_not_fail_on_the_users_malformed_commit(
    work: Path, author: str
) -> None:
    bad = malformed_commit(work, author)
    commit(work, "after")
    assert gdag("publish", "x", "1", cwd=work).returncode == 0
    user = subprocess.run(["git", "fsck", "--strict"], cwd=work, capture_output=True, text=True)
    assert user.returncode != 0 and bad in user.stderr  # git itself objects
    r = gdag("doctor", "--json", cwd=work)
    assert r.returncode == 0, r.stdout
    (note,) = json.loads(r.stdout)
    assert note["severity"] == "note" and bad in note["what"]


def pre_commit(repo: Path, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "pre_commit", *args, "--hook-type", "post-commit"],
        cwd=repo,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def with_pre_commit(work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import pre_commit  # noqa: F401 - a test dependency: these tests never skip

    monkeypatch.setenv("PRE_COMMIT_HOME", str(tmp_path / "pre-commit-home"))
    (work / ".pre-commit-config.yaml").write_text("repos: []\n")
    git("add", ".pre-commit-config.yaml", cwd=work)
    git("commit", "-qm", "pre-commit config", cwd=work)
    return work


def hook_state(repo: Path, name: str = "post-commit") -> str:
    states = json.loads(gdag("hooks", "list", "--json", cwd=repo).stdout)
    return next(h["state"] for h in states if h["name"] == name)


@pytest.mark.parametrize("first", ["gdag", "pre-commit"])
@pytest.mark.parametrize("uninstall_first", ["gdag", "pre-commit"])
def test_pre_commit_in_either_order(
    with_pre_commit: Path, first: str, uninstall_first: str
) -> None:
    repo = with_pre_commit
    hook = repo / ".git" / "hooks" / "post-commit"
    own = '#!/bin/sh\nprintf "%s|" "$@" >> "$(git rev-parse --git-dir)/own.log"\n'
    hook.write_text(own)  # the user's own hook, kept through everything
    hook.chmod(0o755)
    for tool in (first, "pre-commit" if first == "gdag" else "gdag"):
        if tool == "gdag":
            assert gdag("hooks", "install", cwd=repo).returncode == 0
        else:
            pre_commit(repo, "install")
    assert hook_state(repo) == "gdag via pre-commit"
    shas = [commit(repo, "both")]
    assert drained(repo)
    for tool in (uninstall_first, "pre-commit" if uninstall_first == "gdag" else "gdag"):
        if tool == "gdag":
            assert gdag("hooks", "uninstall", cwd=repo).returncode == 0
        else:
            pre_commit(repo, "uninstall")
        shas.append(commit(repo, f"{tool} gone"))
        assert drained(repo)
    published = [c["sha"] for c in events(repo, "git/commit")]
    # gdag publishes until its own uninstall, whichever tool went first.
    assert published == (shas[:1] if uninstall_first == "gdag" else shas[:2])
    assert hook.read_text() == own  # the user's hook is back in its place
    assert (repo / ".git" / "own.log").read_text() == "|" * 3  # ran at every commit
    leftovers = sorted(p.name for p in hook.parent.glob("post-commit*"))
    assert leftovers == ["post-commit"]
    assert not (repo / ".git" / "gdag" / "hook-errors").exists()
    fsck(repo)


def test_chained_hook_gets_gits_arguments_and_input_byte_for_byte(work: Path) -> None:
    hooks = work / ".git" / "hooks"
    for name in ("post-rewrite", "post-checkout"):
        hook = hooks / name
        hook.write_text(
            f'#!/bin/sh\nprintf "%s|" "$@" > "$(git rev-parse --git-dir)/{name}.args"\n'
            f'cat > "$(git rev-parse --git-dir)/{name}.in"\n'
        )
        hook.chmod(0o755)
    assert gdag("hooks", "install", cwd=work).returncode == 0
    old = commit(work, "to amend")
    git("commit", "-q", "--allow-empty", "--amend", "-m", "amended", cwd=work)
    new = git("rev-parse", "HEAD", cwd=work).strip()
    git("checkout", "-q", "-b", "other", cwd=work)
    gitdir = work / ".git"
    assert (gitdir / "post-rewrite.args").read_text() == "amend|"
    assert (gitdir / "post-rewrite.in").read_bytes() == f"{old} {new}\n".encode()
    assert (gitdir / "post-checkout.args").read_text() == f"{new}|{new}|1|"
    assert drained(work)
    assert events(work, "git/rewrite")[-1]["rewritten"] == [[old, new]]

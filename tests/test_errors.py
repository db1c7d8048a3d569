"""Every command with bad arguments: `gdag: error:`, the documented status, nothing left behind.

Each case runs the real `gdag` in a copy of one repository (a definition with a
typed output and a node, published values, a directory value, a bare remote)
and checks that stderr starts with `gdag: error:` and holds no traceback, that
the exit status is the one DESIGN.md section 6 gives (2 usage, 3 refused), and
that no ref under `refs/`, no file under `.git/gdag/` and no file in the work
tree appeared or went away.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from conftest import define, gdag, git

USAGE, REFUSED = 2, 3

DEFINITION = """\
[outputs.n]
type = "int"

[nodes.up]
run = 'tr a-z A-Z < "$GDAG_IN_X" > "$GDAG_OUT/up"'
inputs = { x = "src" }
publishes = ["up"]
"""


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository every case copies: built once, since each gdag start costs."""
    base = tmp_path_factory.mktemp("errors")
    repo = base / "repo"
    env = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": str(base / "gitconfig")}
    for args in (
        ["init", "-C", str(repo)],
        ["publish", "src", "abc", "-C", str(repo)],
        ["publish", "n", "5", "-C", str(repo)],
    ):
        define(repo, DEFINITION) if args[0] != "init" else None
        r = gdag(*args, cwd=base, env=env)
        assert r.returncode == 0, r.stderr
    (repo / "adir").mkdir()
    (repo / "adir" / "f").write_text("f")
    r = gdag("publish", "tree", "--dir", "adir", cwd=repo, env=env)
    assert r.returncode == 0, r.stderr
    (repo / "afile").write_text("a file")
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "first", cwd=repo)
    git("init", "-q", "--bare", str(base / "remote.git"), cwd=base)
    git("remote", "add", "origin", str(base / "remote.git"), cwd=repo)
    return base


@pytest.fixture
def where(template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the template: the directory holding `repo` and `remote.git`."""
    shutil.copytree(template, tmp_path / "t", symlinks=True)
    os.mkfifo(tmp_path / "t" / "repo" / "fifo")
    return tmp_path / "t"


def snapshot(repo: Path) -> tuple[str, list[str], list[str]]:
    """What a failed command must not change: refs, gdag's files, the work tree's files."""
    refs = git("for-each-ref", "--format=%(refname) %(objectname)", cwd=repo)
    gdag_files = sorted(str(p.relative_to(repo)) for p in (repo / ".git" / "gdag").rglob("*"))
    tree = sorted(
        str(p.relative_to(repo))
        for p in repo.rglob("*")
        if ".git" not in p.relative_to(repo).parts[:1]
    )
    return refs, gdag_files, tree


# (arguments, exit status, words the message must hold). `{repo}` and `{remote}` are
# filled in; every command runs with the repository as its working directory.
CASES: list[tuple[list[str], int, str]] = [
    # -- the command line itself
    (["frobnicate"], USAGE, "No such command"),
    (["publish"], USAGE, "output"),
    (["publish", "x", "1", "2"], USAGE, "unexpected extra argument"),
    (["publish", "x", "1", "--file", "afile"], USAGE, "exactly one value"),
    (["lookup", "src", "--bogus"], USAGE, "--bogus"),
    (["run", "--jobs", "0"], USAGE, "--jobs"),
    (["run", "--jobs", "many"], USAGE, "--jobs"),
    (["log", "--limit", "0"], USAGE, "--limit"),
    (["show", "src", "--depth", "-1"], USAGE, "--depth"),
    (["watch", "--interval", "0"], USAGE, "--interval"),
    (["replay"], USAGE, "--from"),
    (["graph", "--format", "bogus"], USAGE, "unknown format"),
    (["hooks", "bogus"], USAGE, "No such command"),
    (["hooks", "install", "--hook", "pre-push"], USAGE, "pre-push"),
    (["hook", "nosuch"], USAGE, "nosuch"),
    # -- paths
    (["-C", "missing", "log"], REFUSED, "missing"),
    (["-C", "afile", "log"], REFUSED, "afile"),
    (["log", "-C", "missing"], REFUSED, "missing"),
    (["init", "-C", "afile"], REFUSED, "not a directory"),
    (["init", "-C", "afile/sub"], REFUSED, "afile"),
    (["hooks", "list", "-C", "missing"], REFUSED, "missing"),
    (["hook", "post-commit", "-C", "missing"], REFUSED, "missing"),
    (["publish", "x", "--file", "missing"], REFUSED, "missing"),
    (["publish", "x", "--file", "adir"], REFUSED, "adir"),
    (["publish", "x", "--file", "fifo"], REFUSED, "fifo"),
    (["publish", "x", "--file", "afile/sub"], REFUSED, "afile/sub"),
    (["publish", "x", "--dir", "missing"], REFUSED, "missing"),
    (["publish", "x", "--dir", "afile"], REFUSED, "afile"),
    (["lookup", "src", "-o", "missing/out"], REFUSED, "missing"),
    (["lookup", "src", "-o", "adir"], REFUSED, "adir"),
    (["lookup", "n", "-o", "missing/out"], REFUSED, "missing"),
    (["lookup", "n", "-o", "adir"], REFUSED, "adir"),
    (["lookup", "tree", "-o", "afile"], REFUSED, "afile"),
    (["lookup", "tree", "-o", "afile/sub"], REFUSED, "afile is not a directory"),
    (["graph", "-o", "missing/g.dot"], REFUSED, "missing"),
    (["graph", "-o", "adir"], REFUSED, "adir"),
    (["graph", "--format", "tree", "-o", "missing/g.txt"], REFUSED, "missing"),
    (["check", "--stubs", "missing/stubs.py"], REFUSED, "missing"),
    (["check", "--stubs", "adir"], REFUSED, "adir"),
    # -- names and values
    (["publish", "bad name", "1"], REFUSED, "bad name"),
    (["publish", "n", "five"], REFUSED, "n"),
    (["publish", "x", "1", "--type", "nosuchtype"], REFUSED, "nosuchtype"),
    (["publish", "n", "1", "--type", "str"], REFUSED, "declared as int"),
    (["publish", "x", "1", "--type", "list["], REFUSED, "bad type 'list['"),
    (["publish", "j", "{bad", "--type", "json"], REFUSED, "not a valid json"),
    (["publish", "src", "1", "--type", "int"], REFUSED, "type cannot change"),
    (["publish", "tree", "1"], REFUSED, "has type dir"),
    (["lookup", "never/published"], REFUSED, "has no value"),
    (["lookup", "bad name"], REFUSED, "bad name"),
    (["lookup", "src", "--at", "999"], REFUSED, "999"),
    (["lookup", "src", "--at="], REFUSED, "not an offset"),
    (["lookup", "src", "--at", "0"], REFUSED, "no value at offset 0"),
    (["lookup", "src", "--at", "-999"], REFUSED, "-999"),
    (["lookup", "src", "--at", "yesterday"], REFUSED, "yesterday"),
    (["lookup", "src", "--at", "deadbeefdeadbeef"], REFUSED, "deadbeefdeadbeef"),
    (["lookup", "src/*", "--at", "999"], REFUSED, "999"),
    (["run", "nosuch"], REFUSED, "nosuch"),
    (["why", "nosuch"], REFUSED, "nosuch"),
    (["show", "nosuch"], REFUSED, "no node, session or output 'nosuch'"),
    (["show", "up.123.abc"], REFUSED, "no merged session 'up.123.abc'"),
    (["graph", "--from", "nosuch"], REFUSED, "nosuch"),
    (["graph", "--to", "nosuch"], REFUSED, "nosuch"),
    (["log", "--output", "bad name"], REFUSED, "bad name"),
    (["log", "--since", "someday"], REFUSED, "someday"),
    (["log", "--since", "2x"], REFUSED, "not a time"),
    (["replay", "--from", "999"], REFUSED, "999"),
    (["replay", "--from", "abc"], REFUSED, "abc"),
    (["replay", "--from", "-999"], REFUSED, "reaches back past the start"),
    (["replay", "--from", "1", "--onto", "main"], REFUSED, "exists already"),
    (["replay", "--from", "1", "--to", "999", "--onto", "w"], REFUSED, "out of range"),
    (["replay", "--from", "1", "--only", "nosuch"], REFUSED, "nosuch"),
    (["replay", "--from", "1", "--onto", "bad name"], REFUSED, "bad name"),
    (["replay", "--from", "1", "--to", "2"], USAGE, "--onto"),
    # -- logs
    (["--log", "nosuch", "log"], REFUSED, "nosuch"),
    (["--log", "bad name", "log"], REFUSED, "bad name"),
    (["lookup", "src", "--log", "nosuch"], REFUSED, "nosuch"),
    (["publish", "x", "1", "--log", "nosuch"], REFUSED, "nosuch"),
    (["run", "--log", "nosuch"], REFUSED, "nosuch"),
    (["status", "--log", "nosuch"], REFUSED, "nosuch"),
    (["why", "up", "--log", "nosuch"], REFUSED, "nosuch"),
    (["graph", "--log", "nosuch"], REFUSED, "nosuch"),
    (["show", "src", "--log", "nosuch"], REFUSED, "nosuch"),
    (["check", "--log", "bad name"], REFUSED, "bad name"),
    (["replay", "--from", "1", "--log", "nosuch"], REFUSED, "nosuch"),
    (["sync", "--log", "nosuch"], REFUSED, "nosuch"),
    (["watch", "--log", "nosuch"], REFUSED, "nosuch"),
    (["doctor", "--log", "nosuch"], REFUSED, "nosuch"),
    # -- remotes
    (["sync", "nosuch"], REFUSED, "nosuch"),
    (["sync", "{where}/missing.git"], REFUSED, "missing.git"),
    (["sync", "afile"], REFUSED, "afile"),
    (["sync", "../nosuch.git"], REFUSED, "no remote '../nosuch.git'"),
    (["run", "--remote", "afile"], REFUSED, "afile"),
    (["run", "--remote", "nosuch"], REFUSED, "nosuch"),
    (["watch", "--remote", "nosuch"], REFUSED, "nosuch"),
]


def _id(case: tuple[list[str], int, str]) -> str:
    return " ".join(case[0])


@pytest.mark.parametrize(("args", "code", "needle"), CASES, ids=[_id(c) for c in CASES])
def test_mistake_is_refused_cleanly(where: Path, args: list[str], code: int, needle: str) -> None:
    repo = where / "repo"
    args = [a.replace("{repo}", str(repo)).replace("{where}", str(where)) for a in args]
    before = snapshot(repo)
    r = gdag(*args, cwd=repo, timeout=30)
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    assert r.stderr.startswith("gdag: error: "), r.stderr
    assert r.returncode == code, r.stderr
    assert needle in r.stderr.splitlines()[0], r.stderr
    assert r.stdout == b""
    assert snapshot(repo) == before


@pytest.mark.parametrize("shape", ["a directory", "a symbolic link to nothing"])
def test_a_definition_that_cannot_be_read_is_refused(where: Path, shape: str) -> None:
    repo = where / "repo"
    (repo / "gdag.toml").unlink()
    if shape == "a directory":
        (repo / "gdag.toml").mkdir()
    else:
        (repo / "gdag.toml").symlink_to("nowhere")
    before = snapshot(repo)
    for args in (["status"], ["check"], ["run"], ["why", "up"]):
        r = gdag(*args, cwd=repo)
        assert "Traceback" not in r.stderr, r.stderr
        assert r.returncode == REFUSED and r.stderr.startswith("gdag: error: "), r.stderr
        assert "gdag.toml" in r.stderr.splitlines()[0], r.stderr
    assert snapshot(repo) == before


def test_hooks_install_refuses_a_hooks_directory_that_is_a_file(where: Path) -> None:
    repo = where / "repo"
    hooks = repo / ".git" / "hooks"
    shutil.rmtree(hooks, ignore_errors=True)
    hooks.write_text("not a directory")
    r = gdag("hooks", "install", cwd=repo)
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == REFUSED and "not a directory" in r.stderr, r.stderr
    assert hooks.read_text() == "not a directory"


def test_a_directory_gdag_may_not_search_is_refused(where: Path) -> None:
    """/proc/1/fdinfo lists its entries but refuses a stat of any other name in it,
    also to root: looking for `.git` there meets EACCES."""
    r = gdag("-C", "/proc/1/fdinfo", "status", cwd=where)
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == REFUSED and "Permission denied" in r.stderr, r.stderr


def test_unreadable_file_is_refused(where: Path) -> None:
    """A file gdag may not read: /proc/1/mem refuses the open to anyone not tracing
    process 1, root included (a chmod 0 file would not stop root)."""
    repo = where / "repo"
    before = snapshot(repo)
    r = gdag("publish", "x", "--file", "/proc/1/mem", cwd=repo)
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == REFUSED and r.stderr.startswith("gdag: error: "), r.stderr
    assert "/proc/1/mem" in r.stderr and snapshot(repo) == before


# Every command, with -C and --log given before it, as git takes -C.
GLOBAL = [
    ["init"],
    ["publish", "x", "1", "--no-run"],
    ["lookup", "src"],
    ["run", "--dry-run"],
    ["replay", "--from", "1", "--dry-run"],
    ["why", "up"],
    ["graph", "--format", "json"],
    ["show", "src"],
    ["sync", "{remote}"],
    ["doctor"],
    ["check"],
    ["status"],
    ["log"],
    ["hooks", "install"],
    ["hooks", "list"],
    ["hooks", "uninstall"],
]


@pytest.mark.parametrize("args", GLOBAL, ids=[" ".join(a) for a in GLOBAL])
def test_global_options_before_every_command(where: Path, args: list[str]) -> None:
    repo = where / "repo"
    args = [a.format(remote=where / "remote.git") for a in args]
    r = gdag("-C", str(repo), "--log", "main", *args, cwd=where)
    assert r.returncode == 0, r.stderr
    r = gdag("-C", str(repo), "--log=nosuch", *args, cwd=where)
    if args[0] in ("init", "hooks", "check"):
        assert r.returncode == 0, r.stderr  # init creates the log; hooks and check read none
    else:
        assert r.returncode == REFUSED and "nosuch" in r.stderr, r.stderr


def test_paths_are_read_from_the_directory_dash_c_names(where: Path) -> None:
    repo = where / "repo"
    (repo / "data.txt").write_text("from the file")
    r = gdag("-C", "repo", "publish", "x", "--file", "data.txt", "--no-run", cwd=where)
    assert r.returncode == 0, r.stderr
    r = gdag("-C", "repo", "lookup", "x", "-o", "copy.txt", cwd=where)
    assert r.returncode == 0, r.stderr
    assert (repo / "copy.txt").read_text() == "from the file"
    r = gdag("-C", "repo", "lookup", "tree", "-o", "tree-copy", cwd=where)
    assert r.returncode == 0, r.stderr
    assert (repo / "tree-copy" / "f").read_text() == "f"
    assert not (where / "copy.txt").exists() and not (where / "tree-copy").exists()


def test_a_global_log_reaches_the_hook_command(where: Path) -> None:
    repo = where / "repo"
    assert gdag("init", "--log", "other", cwd=repo).returncode == 0
    r = gdag("--log", "other", "-C", str(repo), "hook", "post-commit", cwd=where)
    assert r.returncode == 0, r.stderr
    assert gdag("lookup", "git/commit", "--log", "other", cwd=repo).returncode == 0
    assert gdag("lookup", "git/commit", cwd=repo).returncode == REFUSED  # not in main

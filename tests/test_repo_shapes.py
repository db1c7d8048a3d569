"""Every shape of repository git supports: found as git finds it, used or refused cleanly.

Each case drives real `gdag` processes in a real repository of that shape and
checks the user's repository afterwards with git itself (fsck, log --all, gc);
a refusal must leave every file exactly as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Result, define, fsck, gdag, git

from gdag.errors import NotARepositoryError
from gdag.repo import find_location

COUNT = """
[nodes.count]
run = 'wc -c < "$GDAG_IN_X" | tr -d " " > "$GDAG_OUT/n"'
inputs = { x = "x" }
publishes = ["n"]
"""

# Another node and output (a renamed node taking over an output is another matter).
TALLY = COUNT.replace("count", "tally").replace("/n", "/m").replace('["n"]', '["m"]')


def files(root: Path) -> dict[str, tuple[int, int]]:
    """Every file below `root` with its size and modification time."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file() or p.is_symlink()
    }


def untouched(path: Path) -> None:
    """The user's repository still passes git's own checks."""
    fsck(path)
    git("log", "--all", "--oneline", cwd=path)
    git("gc", "-q", cwd=path)
    fsck(path)


def clean_refusal(r: Result, *words: str) -> None:
    assert r.returncode == 3, r.stderr
    assert r.stderr.startswith("gdag: error: ") and "Traceback" not in r.stderr, r.stderr
    for word in words:
        assert word in r.stderr, r.stderr


def committed_repo(path: Path, toml: str = COUNT, branch: str = "main") -> Path:
    git("init", "-q", "-b", branch, str(path), cwd=path.parent)
    define(path, toml)
    (path / "README").write_text("hello\n")
    git("add", ".", cwd=path)
    git("commit", "-qm", "initial", cwd=path)
    return path


def use(cwd: Path, env: dict | None = None) -> None:
    """The usual commands, as a user runs them: init, publish, run, lookup, status, log."""
    for args in (["init"], ["publish", "x", "hello"], ["run"]):
        r = gdag(*args, cwd=cwd, env=env)
        assert r.returncode == 0, (args, r.stderr)
    assert gdag("lookup", "n", cwd=cwd, env=env).stdout == b"5\n"
    assert gdag("status", cwd=cwd, env=env).returncode == 0
    assert b"publish" in gdag("log", cwd=cwd, env=env).stdout


# -- finding the repository, checked against git ------------------------------------


def git_view(cwd: Path, env: dict[str, str]) -> tuple[Path, Path, Path | None] | None:
    """(git dir, common dir, work tree or None) as `git rev-parse` says, None outside one."""
    full = {**os.environ, **env}
    proc = subprocess.run(
        ["git", "rev-parse", "--absolute-git-dir", "--git-common-dir", "--is-bare-repository"],
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        return None
    gitdir, common, bare = proc.stdout.split("\n")[:3]
    top = subprocess.run(
        ["git", "rev-parse", "--show-toplevel"], cwd=cwd, env=full, capture_output=True, text=True
    )
    tree = Path(top.stdout.strip()) if bare == "false" and top.returncode == 0 else None
    return Path(gitdir), (cwd / common).resolve(), tree


@pytest.fixture
def shapes(tmp_path: Path) -> Path:
    """A repository with a linked worktree, a submodule, a bare clone and a subdirectory."""
    main = committed_repo(tmp_path / "main")
    (main / "sub" / "dir").mkdir(parents=True)
    git("worktree", "add", "-q", str(tmp_path / "wt"), "-b", "wt", cwd=main)
    lib = committed_repo(tmp_path / "lib")
    git("-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib), "lib", cwd=main)
    git("commit", "-qm", "lib", cwd=main)
    git("clone", "-q", "--bare", str(main), str(tmp_path / "bare.git"), cwd=tmp_path)
    git(
        "init",
        "-q",
        "--separate-git-dir",
        str(tmp_path / "sep.git"),
        str(tmp_path / "sep"),
        cwd=tmp_path,
    )
    return tmp_path


CASES = [
    ("main", {}),
    ("main/sub/dir", {}),
    ("main/.git", {}),
    ("main/.git/objects", {}),
    ("wt", {}),
    ("main/lib", {}),
    ("bare.git", {}),
    ("bare.git/refs", {}),
    ("sep", {}),
    (".", {"GIT_DIR": "main/.git"}),
    ("main/sub", {"GIT_DIR": "../.git"}),
    (".", {"GIT_DIR": "main/.git", "GIT_WORK_TREE": "wt"}),
    ("wt", {"GIT_DIR": "../main/.git/worktrees/wt"}),
    ("main/lib", {"GIT_DIR": "../.git/modules/lib"}),
    (".", {"GIT_DIR": "main/.git/modules/lib"}),
    ("bare.git", {"GIT_DIR": "."}),
    (".", {"GIT_DIR": "sep/.git"}),
    ("main/sub", {"GIT_WORK_TREE": "dir"}),
    ("main/sub/dir", {"GIT_CEILING_DIRECTORIES": "{root}/main/sub"}),
    ("main/sub/dir", {"GIT_CEILING_DIRECTORIES": "{root}/main/sub/dir"}),
    ("main/sub/dir", {"GIT_CEILING_DIRECTORIES": "relative:{root}/main"}),
    ("main/lib", {"GIT_CEILING_DIRECTORIES": "{root}/main"}),
    (".", {"GIT_DIR": "nothing"}),
    (".", {"GIT_DIR": "main/README"}),
    (".", {}),
    ("wt", {"GIT_COMMON_DIR": "{root}/main/.git"}),
]


@pytest.mark.parametrize(("where", "env"), CASES)
def test_finds_the_repository_git_finds(shapes: Path, where: str, env: dict[str, str]) -> None:
    env = {k: v.format(root=shapes) for k, v in env.items()}
    cwd = shapes / where
    expected = git_view(cwd, env)
    full = {**{k: v for k, v in os.environ.items() if not k.startswith("GIT_")}, **env}
    if expected is None:
        with pytest.raises(NotARepositoryError):
            find_location(cwd, full)
        return
    found = find_location(cwd, full)
    assert (found.gitdir, found.commondir, found.workdir) == expected


# -- formats gdag refuses -------------------------------------------------------------

COMMANDS = [["init"], ["publish", "x", "v"], ["run"], ["lookup", "x"], ["status"], ["log"]]


def refuses_everything(repo: Path, *words: str) -> None:
    before = files(repo)
    for args in COMMANDS:
        r = gdag(*args, cwd=repo)
        clean_refusal(r, *words)
        assert files(repo) == before, args
    assert not (repo / ".git" / "gdag").exists() and not (repo / ".git" / "refs" / "gdag").exists()


def test_sha256_repository_is_refused_untouched(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    git("init", "-q", "--object-format=sha256", str(repo), cwd=tmp_path)
    (repo / "a").write_text("a")
    git("add", "a", cwd=repo)
    git("commit", "-qm", "a", cwd=repo)
    refuses_everything(repo, "sha256")
    r = gdag("publish", "x", "v", cwd=repo)
    assert r.stderr.count("\n") == 1, r.stderr  # one line
    git("checkout", "-q", "--detach", cwd=repo)  # HEAD holds a 64-digit id
    refuses_everything(repo, "sha256")
    untouched(repo)


@pytest.mark.parametrize(
    ("extension", "value", "word"),
    [("refStorage", "reftable", "reftable"), ("frobnicate", "true", "frobnicate")],
)
def test_unknown_ref_store_or_extension_is_refused(
    tmp_path: Path, extension: str, value: str, word: str
) -> None:
    repo = committed_repo(tmp_path / "r")
    config = repo / ".git" / "config"
    original = config.read_text()
    # git 2.39 cannot make a reftable repository: the config is what such a repository has.
    config.write_text(
        original.replace("repositoryformatversion = 0", "repositoryformatversion = 1")
        + f"[extensions]\n\t{extension} = {value}\n"
    )
    refuses_everything(repo, word)
    config.write_text(original)
    untouched(repo)


def test_extensions_gdag_works_with(tmp_path: Path) -> None:
    repo = committed_repo(tmp_path / "r")
    git("config", "core.repositoryformatversion", "1", cwd=repo)
    for key, value in [
        ("extensions.worktreeConfig", "true"),
        ("extensions.objectFormat", "sha1"),
        ("extensions.noop", "true"),
        ("extensions.preciousObjects", "true"),
    ]:
        git("config", key, value, cwd=repo)
    use(repo)
    git("config", "--unset", "extensions.preciousObjects", cwd=repo)  # gc must prune
    untouched(repo)


# -- GIT_DIR and friends from the environment -------------------------------------


@pytest.mark.parametrize("target", ["nothing", "a-file"])
def test_git_dir_naming_no_repository(tmp_path: Path, target: str) -> None:
    """Inside another repository, too: git names the repository, never the directory."""
    around = committed_repo(tmp_path / "around")
    use(around)
    (tmp_path / "a-file").write_text("gitdir: nowhere\n")
    before = files(tmp_path)
    for args in COMMANDS:
        r = gdag(*args, cwd=around, env={"GIT_DIR": str(tmp_path / target)})
        clean_refusal(r, "not a git repository", target)
        assert files(tmp_path) == before, args


def test_git_dir_and_work_tree_from_the_environment(tmp_path: Path) -> None:
    repo = committed_repo(tmp_path / "r")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    define(elsewhere, "# an unrelated definition\n")
    use(elsewhere, {"GIT_DIR": str(repo / ".git"), "GIT_WORK_TREE": str(repo)})
    assert "refs/gdag/logs/main" in git("for-each-ref", cwd=repo)
    assert gdag("lookup", "n", cwd=repo).stdout == b"5\n"
    untouched(repo)


def test_ceiling_directories(tmp_path: Path) -> None:
    repo = committed_repo(tmp_path / "r")
    assert gdag("init", cwd=repo).returncode == 0
    inner = repo / "a" / "b"
    inner.mkdir(parents=True)
    before = files(repo)
    env = {"GIT_CEILING_DIRECTORIES": str(repo / "a")}
    for args in COMMANDS[1:]:
        clean_refusal(gdag(*args, cwd=inner, env=env), "not a git repository")
    assert files(repo) == before
    assert gdag("publish", "x", "v", cwd=inner, env={"GIT_CEILING_DIRECTORIES": str(tmp_path)})
    untouched(repo)


# -- worktrees, submodules, bare repositories ------------------------------------------


def log_tip(repo: Path) -> str:
    return git("rev-parse", "refs/gdag/logs/main", cwd=repo).strip()


def test_linked_worktrees_share_a_log_without_flipping(tmp_path: Path) -> None:
    main = committed_repo(tmp_path / "main")
    wt = tmp_path / "wt"
    git("worktree", "add", "-q", str(wt), "-b", "other", cwd=main)
    define(wt, TALLY)
    use(main)
    tip = log_tip(main)
    readers = [["status"], ["why", "tally"], ["show", "x"], ["graph"], ["lookup", "x"]]
    readers += [["log"], ["check"]]
    for _ in range(2):
        for cwd, node in ((wt, "tally"), (main, "count")):
            for args in readers:
                args = [a if a != "tally" else node for a in args]
                r = gdag(*args, cwd=cwd)
                assert r.returncode == 0, (cwd, args, r.stderr)
            assert log_tip(main) == tip, (cwd, "a read-only command appended")
    r = gdag("status", "--json", cwd=wt)
    assert [s["node"] for s in json.loads(r.stdout)] == ["tally"]
    assert "differs" in r.stderr
    assert "differs" not in gdag("status", cwd=main).stderr
    assert gdag("run", cwd=wt).returncode == 0  # run records this work tree's definition
    assert gdag("lookup", "m", cwd=wt).stdout == b"5\n"
    since = git("log", "--first-parent", "--format=%s", f"{tip}..refs/gdag/logs/main", cwd=main)
    assert since.splitlines() == ["session tally ok", "dag: definition changed"]
    untouched(main)


def test_submodule_has_its_own_log_and_definition(tmp_path: Path) -> None:
    lib = committed_repo(tmp_path / "lib")
    top = committed_repo(tmp_path / "top", toml="# the superproject's\n")
    git("-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib), "lib", cwd=top)
    git("commit", "-qm", "lib", cwd=top)
    use(top / "lib")
    modules = top / ".git" / "modules" / "lib"
    assert "refs/gdag/logs/main" in git("for-each-ref", cwd=modules)
    assert "refs/gdag" not in git("for-each-ref", cwd=top)
    assert not (top / ".git" / "gdag").exists()
    untouched(top)
    untouched(top / "lib")


def test_bare_repository_reads_its_definition_inside(tmp_path: Path) -> None:
    src = committed_repo(tmp_path / "src", toml=COUNT + "\n" + PWD)
    server = tmp_path / "server"
    server.mkdir()
    bare = server / "repo.git"
    git("clone", "-q", "--bare", str(src), str(bare), cwd=tmp_path)
    define(server, "# a definition lying around the repository: never read\n")
    r = gdag("init", cwd=bare)
    assert r.returncode == 0 and not (bare / "gdag.toml").exists(), r.stderr
    assert gdag("publish", "x", "hello", cwd=bare).returncode == 0
    assert gdag("run", cwd=bare).returncode == 0, gdag("status", cwd=bare).stderr
    assert gdag("lookup", "n", cwd=bare).stdout == b"5\n"
    ran_in = gdag("lookup", "where", cwd=bare).text.strip()
    assert not Path(ran_in).exists() and not ran_in.startswith(str(server))
    assert gdag("lookup", "said", cwd=bare).stdout == b"hello"
    # As a server hook runs it: GIT_DIR=. in the repository.
    server_hook = {"GIT_DIR": "."}
    assert gdag("publish", "x", "pushed", cwd=bare, env=server_hook).returncode == 0
    assert gdag("run", cwd=bare, env=server_hook).returncode == 0
    assert gdag("lookup", "said", cwd=bare, env=server_hook).stdout == b"pushed"
    # `git config gdag.definition <rev>:<path>` names another one.
    git("config", "gdag.definition", "main:README", cwd=bare)
    clean_refusal(gdag("status", cwd=bare), "README")
    git("config", "gdag.definition", "main:nothing.toml", cwd=bare)
    clean_refusal(gdag("status", cwd=bare), "main:nothing.toml")
    untouched(bare)


FILES = """
[nodes.shout]
python = "tools.loud:shout"
inputs = { x = "x" }
publishes = ["loud"]

[nodes.greet]
run = 'cat greeting.txt "$GDAG_IN_X" > "$GDAG_OUT/greeted"'
sources = ["greeting.txt"]
inputs = { x = "x" }
publishes = ["greeted"]
"""


def test_bare_repository_runs_python_nodes_and_sources_from_its_definition_commit(
    tmp_path: Path,
) -> None:
    """A bare repository has no work tree: a Python node's module and a node's sources
    come from the commit its definition is read from, and a push that changes them
    makes the nodes stale, as an edit would in a work tree."""
    src = tmp_path / "src"
    git("init", "-q", "-b", "main", str(src), cwd=tmp_path)
    define(src, FILES)
    (src / "tools").mkdir()
    (src / "tools" / "__init__.py").write_text("")
    (src / "tools" / "loud.py").write_text("def shout(x: str) -> str:\n    return x.upper()\n")
    (src / "greeting.txt").write_text("hi ")
    git("add", ".", cwd=src)
    git("commit", "-qm", "definition and files", cwd=src)
    bare = tmp_path / "repo.git"
    git("clone", "-q", "--bare", str(src), str(bare), cwd=tmp_path)
    assert gdag("init", cwd=bare).returncode == 0
    r = gdag("publish", "x", "there", cwd=bare)
    assert r.returncode == 0, r.stderr
    assert gdag("lookup", "loud", cwd=bare).stdout == b"THERE"
    assert gdag("lookup", "greeted", cwd=bare).stdout == b"hi there"
    # A push changing the module and the source file: both nodes stale, then rerun.
    (src / "tools" / "loud.py").write_text(
        "def shout(x: str) -> str:\n    return x.upper() + '!'\n"
    )
    (src / "greeting.txt").write_text("hello ")
    git("commit", "-qam", "louder", cwd=src)
    git("push", "-q", str(bare), "main", cwd=src)
    status = json.loads(gdag("status", "--json", cwd=bare).stdout)
    assert {s["node"]: s["state"] for s in status} == {"shout": "stale", "greet": "stale"}
    assert gdag("run", cwd=bare).returncode == 0
    assert gdag("lookup", "loud", cwd=bare).stdout == b"THERE!"
    assert gdag("lookup", "greeted", cwd=bare).stdout == b"hello there"
    assert not (tmp_path / "tools").exists() and not (tmp_path / "greeting.txt").exists()
    untouched(bare)


PWD = """
[nodes.where]
run = 'pwd > "$GDAG_OUT/where" && gdag publish said "$(cat "$GDAG_IN_X")"'
inputs = { x = "x" }
publishes = ["where", "said"]
"""


# -- clones and moves -------------------------------------------------------------------


def test_shallow_and_partial_clones(tmp_path: Path) -> None:
    src = committed_repo(tmp_path / "src")
    for i in range(3):
        (src / f"f{i}").write_text(f"{i}\n" * 100)
        git("add", ".", cwd=src)
        git("commit", "-qm", f"c{i}", cwd=src)
    git("config", "uploadpack.allowFilter", "true", cwd=src)
    url = f"file://{src}"
    shallow, partial = tmp_path / "shallow", tmp_path / "partial"
    git("clone", "-q", "--depth", "1", url, str(shallow), cwd=tmp_path)
    git("clone", "-q", "--filter=blob:none", "--no-checkout", url, str(partial), cwd=tmp_path)
    git("checkout", "-q", "main", "--", "gdag.toml", cwd=partial)
    assert git("config", "remote.origin.promisor", cwd=partial).strip() == "true"
    for clone in (shallow, partial):
        use(clone)
        untouched(clone)


@pytest.mark.parametrize("private", [False, True])
def test_moved_repository(tmp_path: Path, private: bool) -> None:
    repo = committed_repo(tmp_path / "r")
    assert gdag("init", *(["--private"] if private else []), cwd=repo).returncode == 0
    use(repo)
    moved = tmp_path / "moved"
    shutil.move(str(repo), str(moved))
    assert gdag("lookup", "n", cwd=moved).stdout == b"5\n"
    assert gdag("publish", "x", "hello world", cwd=moved).returncode == 0
    assert gdag("run", cwd=moved).returncode == 0
    assert gdag("lookup", "n", cwd=moved).stdout == b"11\n"
    untouched(moved)


# -- following branches ----------------------------------------------------------------

FOLLOW = '[log]\nfollow = "branch"\n'


def test_following_branches_in_worktrees_detached_and_without_main(tmp_path: Path) -> None:
    repo = committed_repo(tmp_path / "r", toml=FOLLOW, branch="trunk")
    assert gdag("init", cwd=repo).returncode == 0
    assert gdag("publish", "x", "trunk-value", cwd=repo).returncode == 0
    git("checkout", "-q", "--detach", cwd=repo)
    assert gdag("lookup", "x", cwd=repo).stdout == b"trunk-value"
    git("checkout", "-q", "trunk", cwd=repo)
    wt = tmp_path / "wt"
    git("worktree", "add", "-q", str(wt), "-b", "feature", cwd=repo)
    assert gdag("lookup", "x", cwd=wt).stdout == b"trunk-value"  # forked from trunk's log
    assert gdag("publish", "x", "feature-value", cwd=wt).returncode == 0
    assert gdag("lookup", "x", cwd=repo).stdout == b"trunk-value"
    git("checkout", "-q", "--detach", cwd=wt)
    assert gdag("lookup", "x", cwd=wt).stdout == b"feature-value"
    # During a rebase HEAD is detached: what is published goes to the rebased branch's log.
    git("checkout", "-q", "feature", cwd=wt)
    git("commit", "-q", "--allow-empty", "-m", "on feature", cwd=wt)
    publish = f'"{sys.executable}" -m gdag publish x during-rebase'
    git("rebase", "-q", "--exec", publish, "--force-rebase", "trunk", cwd=wt)
    assert gdag("lookup", "x", cwd=wt).stdout == b"during-rebase"
    assert gdag("lookup", "x", cwd=repo).stdout == b"trunk-value"
    refs = git("for-each-ref", "--format=%(refname)", "refs/gdag/logs", cwd=repo).split()
    assert refs == ["refs/gdag/logs/feature", "refs/gdag/logs/trunk"]
    untouched(repo)


def test_hooks_in_worktrees_and_submodules_use_that_work_tree(tmp_path: Path) -> None:
    """git runs hooks with GIT_DIR set (a worktree's own git dir, a submodule's under the
    superproject's) and the work tree's top as the current directory: a publish from a
    hook there records that work tree's definition, not an empty one."""
    main = committed_repo(tmp_path / "main")
    wt = tmp_path / "wt"
    git("worktree", "add", "-q", str(wt), "-b", "other", cwd=main)
    define(wt, TALLY)
    lib = committed_repo(tmp_path / "lib", toml=TALLY)
    git("-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib), "lib", cwd=main)
    git("commit", "-qm", "lib", cwd=main)
    hook = f'#!/bin/sh\n"{sys.executable}" -m gdag publish hook/commit "$(git rev-parse HEAD)"\n'
    for where in (main, main / "lib"):
        assert gdag("init", cwd=where).returncode == 0
        hooks = Path(git("rev-parse", "--git-path", "hooks", cwd=where).strip())
        (where / hooks / "post-commit").write_text(hook)
        (where / hooks / "post-commit").chmod(0o755)
    for where in (wt, main / "lib"):
        git("commit", "-q", "--allow-empty", "-m", "in a hook", cwd=where)
        head = git("rev-parse", "HEAD", cwd=where).strip()
        assert gdag("lookup", "hook/commit", cwd=where).stdout == head.encode()
        dag = json.loads(git("show", "refs/gdag/logs/main:dag.json", cwd=where))
        assert list(dag["nodes"]) == ["tally"], "the hook recorded another definition"
    untouched(main)
    untouched(main / "lib")


def test_bare_partial_clone_names_a_missing_definition(tmp_path: Path) -> None:
    src = committed_repo(tmp_path / "src")
    git("config", "uploadpack.allowFilter", "true", cwd=src)
    bare = tmp_path / "bare.git"
    git("clone", "-q", "--bare", "--filter=blob:none", f"file://{src}", str(bare), cwd=tmp_path)
    before = files(bare)
    clean_refusal(gdag("init", cwd=bare), "HEAD:gdag.toml", "partial clone")
    assert files(bare) == before
    git("cat-file", "blob", "HEAD:gdag.toml", cwd=bare)  # the hint: fetched on demand
    use(bare)
    untouched(bare)


def test_core_hooks_path_inside_the_repository(tmp_path: Path) -> None:
    """A shared hooks directory in the work tree (`core.hooksPath = .githooks`, as
    husky and many teams set it): gdag installs its shims there, keeps the team's own
    hook chained, each commit publishes its own commit, and uninstall puts the team's
    hook back byte for byte."""
    repo = committed_repo(tmp_path / "repo")
    team = repo / ".githooks"
    team.mkdir()
    ran = tmp_path / "team-hook-ran"
    own = f'#!/bin/sh\necho "$@" >> "{ran}"\n'
    (team / "post-commit").write_text(own)
    (team / "post-commit").chmod(0o755)
    git("config", "core.hooksPath", ".githooks", cwd=repo)
    assert gdag("init", cwd=repo).returncode == 0
    r = gdag("hooks", "install", "--hook", "post-commit", cwd=repo)
    assert r.returncode == 0, r.stderr
    assert not (repo / ".git" / "hooks" / "post-commit").exists()
    listed = gdag("hooks", "list", "--json", cwd=repo)
    assert listed.returncode == 0, listed.stderr
    (entry,) = [h for h in json.loads(listed.stdout) if h["name"] == "post-commit"]
    assert Path(entry["path"]).resolve() == (team / "post-commit").resolve()
    for i in range(3):
        git("commit", "-q", "--allow-empty", "-m", f"c{i}", cwd=repo)
    assert ran.read_text().count("\n") == 3  # the team's hook still runs, once a commit
    assert gdag("hook", "--drain", cwd=repo).returncode == 0
    shas = git("rev-list", "--reverse", "HEAD~3..HEAD", cwd=repo).split()
    logged = gdag("log", "--json", "--output", "git/commit", cwd=repo)
    assert logged.returncode == 0, logged.stderr
    commits = [
        json.loads(gdag("lookup", "git/commit", "--at", str(e["offset"]), cwd=repo).stdout)["sha"]
        for e in reversed(json.loads(logged.stdout))
    ]
    assert commits == shas
    assert gdag("hooks", "uninstall", cwd=repo).returncode == 0
    assert (team / "post-commit").read_text() == own
    untouched(repo)

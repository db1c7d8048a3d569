"""A node's `sources`: files whose content is part of its code (scripts, helper modules)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import define, fsck, gdag, git

from gdag.definition import expand_sources

LOG = "refs/gdag/logs/main"


def status(repo: Path) -> dict[str, dict]:
    r = gdag("status", "--json", cwd=repo)
    assert r.returncode == 0, r.stderr
    return {s["node"]: s for s in json.loads(r.stdout)}


def ok_sessions(repo: Path, node: str) -> int:
    return len(
        git(
            "log", "--first-parent", f"--grep=session {node} ok", "--format=%H", LOG, cwd=repo
        ).split()
    )


def test_editing_adding_or_removing_a_source_makes_the_node_stale(repo: Path) -> None:
    (repo / "scripts").mkdir()
    (repo / "scripts" / "step.sh").write_text('printf v1 > "$GDAG_OUT/o"\n')
    define(
        repo,
        """
        [nodes.step]
        run = 'sh scripts/step.sh'
        inputs = { x = "src" }
        publishes = ["o"]
        sources = ["scripts/*.sh"]
    """,
    )
    assert gdag("publish", "src", "1", cwd=repo).returncode == 0
    assert gdag("lookup", "o", cwd=repo).stdout == b"v1"
    assert status(repo)["step"]["state"] == "up-to-date"
    assert ok_sessions(repo, "step") == 1

    # An edit: stale because of its code, and the run uses the new script.
    (repo / "scripts" / "step.sh").write_text('printf v2 > "$GDAG_OUT/o"\n')
    st = status(repo)["step"]
    assert st["state"] == "stale" and "code changed" in st["reason"], st
    assert gdag("run", cwd=repo).returncode == 0
    assert gdag("lookup", "o", cwd=repo).stdout == b"v2"
    assert ok_sessions(repo, "step") == 2

    # A new file the pattern matches, then its removal: each makes the node stale.
    (repo / "scripts" / "extra.sh").write_text("# helper\n")
    assert status(repo)["step"]["state"] == "stale"
    assert gdag("run", cwd=repo).returncode == 0
    assert ok_sessions(repo, "step") == 3
    (repo / "scripts" / "extra.sh").unlink()
    assert status(repo)["step"]["state"] == "stale"
    assert gdag("run", cwd=repo).returncode == 0
    assert ok_sessions(repo, "step") == 4

    # A file outside the patterns changes nothing.
    (repo / "notes.txt").write_text("unrelated\n")
    tip = git("rev-parse", LOG, cwd=repo)
    assert status(repo)["step"]["state"] == "up-to-date"
    assert gdag("run", cwd=repo).returncode == 0
    assert git("rev-parse", LOG, cwd=repo) == tip
    fsck(repo)


@pytest.mark.parametrize(
    ("sources", "needle"),
    [
        ('["/etc/passwd"]', "is not inside the repository"),
        ('["../outside/*.sh"]', "is not inside the repository"),
        ('["scripts/../../x"]', "is not inside the repository"),
        ('["nothing/*.sh"]', "matches no file"),
        ('["missing.sh"]', "matches no file"),
        ('[""]', "must be a list of paths or patterns"),
        ("3", "must be a list of paths or patterns"),
        ('["link/*"]', "leads outside the repository"),
    ],
)
def test_bad_sources_are_refused(repo: Path, tmp_path: Path, sources: str, needle: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.sh").write_text("true\n")
    (repo / "link").symlink_to(outside)
    define(repo, f"[nodes.x]\nrun = 'true'\nsources = {sources}\n")
    tip = git("rev-parse", LOG, cwd=repo)
    for cmd in (["check"], ["run"], ["publish", "src", "1"]):
        r = gdag(*cmd, cwd=repo)
        assert r.returncode == 3, (cmd, r.stderr)
        assert r.stderr.startswith("gdag: error: gdag.toml: [nodes.x]") and needle in r.stderr
        assert "Traceback" not in r.stderr
    assert git("rev-parse", LOG, cwd=repo) == tip


def test_expand_sources_patterns(tmp_path: Path) -> None:
    for rel in [
        "lib/x.py",
        "lib/a/y.py",
        "lib/a/b/z.py",
        "lib/a/b/.hidden.py",
        "lib/.cache/c.py",
        "scripts/t.sh",
        "top.py",
        ".git/hooks/h.py",
        "sub/.git/objects/o.py",
    ]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)
    cases = {
        "lib/**/*.py": ["lib/a/b/z.py", "lib/a/y.py", "lib/x.py"],
        "**/*.py": ["lib/a/b/z.py", "lib/a/y.py", "lib/x.py", "top.py"],
        "lib/*/*.py": ["lib/a/y.py"],
        "lib/**": ["lib/a/b/z.py", "lib/a/y.py", "lib/x.py"],
        "lib": ["lib/a/b/z.py", "lib/a/y.py", "lib/x.py"],
        "lib/.cache/*.py": ["lib/.cache/c.py"],
        "scripts/t.sh": ["scripts/t.sh"],
        "scripts/?.sh": ["scripts/t.sh"],
        "*.py": ["top.py"],
        "**/b/*.py": ["lib/a/b/z.py"],
        "nothing/*": [],
        "missing.sh": [],
    }
    for pattern, want in cases.items():
        assert expand_sources(pattern, tmp_path) == want, pattern


def test_watch_runs_new_code_after_module_and_source_edits(repo: Path) -> None:
    """A long `gdag watch` re-runs a Python node when its module or a file of its
    `sources` changes, and runs the new code: modules imported at the top, lazily inside
    the function (a package's submodule), and from a `src/` directory on PYTHONPATH."""
    files = {
        "helper.py": "SUFFIX = '-h1'\n",
        "pkg/__init__.py": "",
        "pkg/lazy.py": "TAG = '-l1'\n",
        "src/srcmod.py": "MARK = '-s1'\n",
        "pipeline.py": textwrap.dedent("""
            import helper
            import srcmod


            def step(x: str) -> str:
                from pkg import lazy

                return x + '-m1' + helper.SUFFIX + lazy.TAG + srcmod.MARK
        """),
    }
    for rel, text in files.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    define(
        repo,
        """
        [outputs.src]
        type = "str"
        [outputs.o]
        type = "str"
        [nodes.step]
        python = "pipeline:step"
        inputs = { x = "src" }
        publishes = ["o"]
        sources = ["helper.py", "pkg", "src"]
    """,
    )
    env = {**os.environ, "PYTHONPATH": str(repo / "src")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # bytecode caches as users have them
    assert gdag("publish", "src", "a", "--no-run", cwd=repo, env=env).returncode == 0
    watcher = subprocess.Popen(
        [sys.executable, "-m", "gdag", "watch", "--interval", "0.1"],
        cwd=repo,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def becomes(value: bytes) -> bool:
        for _ in range(300):
            if gdag("lookup", "o", cwd=repo).stdout == value:
                return True
            time.sleep(0.1)
        return False

    try:
        assert becomes(b"a-m1-h1-l1-s1")
        # Same-size edits: bytecode caches (keyed on whole seconds and size) must not
        # bring the old code back.
        for rel, old, new, want in [
            ("helper.py", "-h1", "-h2", b"a-m1-h2-l1-s1"),
            ("pkg/lazy.py", "-l1", "-l2", b"a-m1-h2-l2-s1"),
            ("src/srcmod.py", "-s1", "-s2", b"a-m1-h2-l2-s2"),
            ("pipeline.py", "-m1", "-m2", b"a-m2-h2-l2-s2"),
        ]:
            path = repo / rel
            path.write_text(path.read_text().replace(old, new))
            assert becomes(want), rel
    finally:
        watcher.send_signal(signal.SIGTERM)
        assert watcher.wait(timeout=30) == 0
    assert ok_sessions(repo, "step") == 5
    fsck(repo)


def test_a_copy_of_the_repository_checks_its_own_sources(repo: Path, tmp_path: Path) -> None:
    """`dag.json` names the files relative to the definition: a copy (or a clone, or a
    worktree) sees its own edits, not the original's files."""
    (repo / "step.sh").write_text('printf one > "$GDAG_OUT/o"\n')
    define(
        repo,
        """
        [nodes.step]
        run = 'sh step.sh'
        inputs = { x = "src" }
        publishes = ["o"]
        sources = ["step.sh"]
    """,
    )
    assert gdag("publish", "src", "1", cwd=repo).returncode == 0
    copy = tmp_path / "copy"
    shutil.copytree(repo, copy, symlinks=True)
    (copy / "step.sh").write_text('printf two > "$GDAG_OUT/o"\n')
    assert status(copy)["step"]["state"] == "stale"
    assert status(repo)["step"]["state"] == "up-to-date"
    assert gdag("run", cwd=copy).returncode == 0
    assert gdag("lookup", "o", cwd=copy).stdout == b"two"
    assert gdag("lookup", "o", cwd=repo).stdout == b"one"
    fsck(copy)


def test_bytecode_caches_in_sources_change_nothing(repo: Path) -> None:
    """A sources directory of Python modules gets `__pycache__/` when the node runs: not
    code, so the node is not stale afterwards."""
    (repo / "helpers").mkdir()
    (repo / "helpers" / "__init__.py").write_text("")
    (repo / "helpers" / "text.py").write_text("def shout(s):\n    return s.upper()\n")
    define(
        repo,
        """
        [nodes.step]
        run = 'python3 -c "import helpers.text, sys; print(helpers.text.shout(open(sys.argv[1]).read()), end=\\"\\")" "$GDAG_IN_X" > "$GDAG_OUT/o"'
        inputs = { x = "src" }
        publishes = ["o"]
        sources = ["helpers"]
    """,
    )
    env = {"PYTHONDONTWRITEBYTECODE": "", "PYTHONPATH": str(repo)}  # "" is unset
    assert gdag("publish", "src", "hi", cwd=repo, env=env).returncode == 0
    assert gdag("lookup", "o", cwd=repo).stdout == b"HI"
    assert list((repo / "helpers" / "__pycache__").glob("*.pyc")), "no bytecode was written"
    assert status(repo)["step"]["state"] == "up-to-date"
    assert ok_sessions(repo, "step") == 1


def test_big_sources_are_hashed_once_per_change(repo: Path) -> None:
    """Files of 1 MiB and more are remembered by (mtime, size, inode) in .git/gdag/
    digests.json: a publish does not read them again, an edit (even of the same size)
    is still seen, and a file changed within 2 s of hashing is not remembered."""
    big = repo / "model" / "weights.bin"
    big.parent.mkdir()
    big.write_bytes(b"a" * (2 << 20))
    os.utime(big, (time.time() - 60, time.time() - 60))
    define(
        repo,
        """
        [nodes.x]
        run = 'cat "$GDAG_IN_I" > "$GDAG_OUT/o"'
        inputs = { i = "src" }
        publishes = ["o"]
        sources = ["model"]
    """,
    )
    assert gdag("publish", "src", "1", cwd=repo).returncode == 0
    cache = repo / ".git" / "gdag" / "digests.json"
    (entry,) = json.loads(cache.read_text()).values()
    assert entry[1] == 2 << 20
    assert status(repo)["x"]["state"] == "up-to-date"
    # The remembered digest is what counts while the stat is unchanged ...
    cache.write_text(json.dumps({str(big.resolve()): [*entry[:3], "0" * 64]}))
    assert status(repo)["x"]["state"] == "stale"
    cache.write_text(json.dumps({str(big.resolve()): entry}))
    assert status(repo)["x"]["state"] == "up-to-date"
    # ... and any edit changes the stat: same size, other content, seen.
    big.write_bytes(b"b" * (2 << 20))
    assert status(repo)["x"]["state"] == "stale"
    assert json.loads(cache.read_text())[str(big.resolve())] == entry  # too fresh to keep
    assert gdag("run", cwd=repo).returncode == 0
    assert status(repo)["x"]["state"] == "up-to-date"
    fsck(repo)

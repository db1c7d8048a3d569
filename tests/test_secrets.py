"""Secrets: environment variables a node declares, passed from gdag's environment, kept
out of everything gdag commits (the definition, dag.json, session logs, errors)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import define, fsck, gdag, git

TOKEN = "s3cr3t-Tok3n-9f8e7d"  # what no object or ref of the repository may hold

NODES = """
[nodes.call]
run = 'echo "calling with $API_TOKEN"; printf "%s" "$API_TOKEN" | wc -c > "$GDAG_OUT/len"; echo "bad $API_TOKEN" >&2; exit 3'
inputs = { x = "x" }
publishes = ["len"]
secrets = ["API_TOKEN"]

[nodes.py]
python = "leaky:step"
inputs = { x = "x" }
publishes = ["ok"]
secrets = ["API_TOKEN"]
"""
MODULE = """\
import os


def step(x: str) -> str:
    print("token", os.environ["API_TOKEN"])
    raise ValueError("refused by server for " + os.environ["API_TOKEN"])
"""


def everything_git_holds(repo: Path) -> bytes:
    """Every object of the repository, and every ref's history with patches."""
    objects = subprocess.run(
        ["git", "cat-file", "--batch-all-objects", "--batch"],
        cwd=repo,
        capture_output=True,
        check=True,
    ).stdout
    history = subprocess.run(
        ["git", "log", "--all", "-p", "--format=%H%n%B"], cwd=repo, capture_output=True, check=True
    ).stdout
    return objects + history


def test_a_secret_printed_by_its_node_is_nowhere_in_the_repository(repo: Path) -> None:
    (repo / "leaky.py").write_text(MODULE)
    define(repo, NODES)
    env = {"API_TOKEN": TOKEN}
    r = gdag("publish", "x", "1", cwd=repo, env=env)
    assert r.returncode == 1, r.stderr  # both nodes fail, after printing the token
    assert TOKEN not in r.stderr + r.stdout.decode()  # the terminal shows it redacted too
    shown = gdag("show", "call", "--json", cwd=repo, env=env)
    assert b"<secret API_TOKEN>" in shown.stdout and TOKEN.encode() not in shown.stdout
    why = gdag("why", "py", cwd=repo, env=env).text
    assert "refused by server for <secret API_TOKEN>" in why, why
    git("gc", "-q", cwd=repo)  # loose and packed objects alike
    held = everything_git_holds(repo)
    assert TOKEN.encode() not in held
    assert b"API_TOKEN" in held  # the name is in dag.json; only the value is kept out
    fsck(repo)


def test_a_node_sees_its_secret(repo: Path) -> None:
    define(
        repo,
        """
        [nodes.n]
        run = 'printf "%s" "$API_TOKEN" | wc -c | tr -d " " > "$GDAG_OUT/len"'
        inputs = { x = "x" }
        publishes = ["len"]
        secrets = ["API_TOKEN"]
        """,
    )
    assert gdag("publish", "x", "1", cwd=repo, env={"API_TOKEN": TOKEN}).returncode == 0
    assert gdag("lookup", "len", cwd=repo).stdout.strip() == str(len(TOKEN)).encode()


def test_a_missing_secret_refuses_to_start_the_node(repo: Path) -> None:
    define(
        repo,
        """
        [nodes.n]
        run = 'echo ran > "$GDAG_OUT/o"'
        inputs = { x = "x" }
        publishes = ["o"]
        secrets = ["API_TOKEN", "OTHER_KEY"]

        [nodes.spec]
        run = 'echo ran > "$GDAG_OUT/s"'
        inputs = { x = "x" }
        publishes = ["s"]
        secrets = ["API_TOKEN"]
        speculative = true

        [nodes.other]
        run = 'sleep 0.5; echo fine > "$GDAG_OUT/p"'
        inputs = { x = "x" }
        publishes = ["p"]
        """,
    )
    env = {k: v for k, v in os.environ.items() if k not in ("API_TOKEN", "OTHER_KEY")}
    r = subprocess.run(
        [sys.executable, "-m", "gdag", "publish", "x", "1"],
        cwd=repo,
        env={**env, "OTHER_KEY": "present"},
        capture_output=True,
        text=True,
    )
    assert r.returncode == 3, r.stderr
    assert "gdag: error: node 'n' needs the secret API_TOKEN, which is not set" in r.stderr
    assert "node 'spec' needs the secret API_TOKEN" in r.stderr  # speculative or not
    assert "present" not in r.stderr and "Traceback" not in r.stderr
    assert gdag("lookup", "x", cwd=repo).stdout == b"1"  # the publish itself is kept
    assert gdag("lookup", "p", cwd=repo).stdout == b"fine\n"  # the other node ran, whole
    for name in ("o", "s"):
        assert gdag("lookup", name, cwd=repo).returncode == 3  # the refused ones did not
    assert not git("for-each-ref", "refs/gdag/sessions/", cwd=repo).strip()
    assert gdag("status", "--json", cwd=repo).returncode == 0


def test_bad_secrets_are_definition_errors(repo: Path) -> None:
    for line, words in (
        ('secrets = "API_TOKEN"', "must be a list"),
        ('secrets = ["MY-TOKEN"]', "not an environment variable name"),
        ('secrets = ["GDAG_X"]', "not an environment variable name"),
        ('secrets = ["T"]\nenv = { T = "v" }', "both a secret and in env"),
    ):
        define(repo, f'[nodes.n]\nrun = "true"\ninputs = {{ x = "x" }}\n{line}\n')
        r = gdag("check", cwd=repo)
        assert r.returncode == 3 and words in r.stderr, (line, r.stderr)


def test_a_secret_quoted_by_an_error_about_the_value_is_redacted(repo: Path) -> None:
    """gdag's own refusal of an output quotes the value: redacted too."""
    define(
        repo,
        """
        [outputs.n]
        type = "int"
        [nodes.count]
        run = 'printf "%s" "$API_TOKEN" > "$GDAG_OUT/n"'
        inputs = { x = "x" }
        publishes = ["n"]
        secrets = ["API_TOKEN"]
        """,
    )
    r = gdag("publish", "x", "1", cwd=repo, env={"API_TOKEN": TOKEN})
    assert r.returncode == 1, r.stderr
    assert TOKEN not in r.stderr
    assert "<secret API_TOKEN>" in gdag("why", "count", cwd=repo).text
    assert TOKEN.encode() not in everything_git_holds(repo)

"""The hot commands start on the standard library and dulwich alone.

Each runs as a real process, through gdag's entry point, in a real
repository; the modules loaded by the time it exits are then checked. (How
fast they start is measured in benchmarks/startup.py, not here.)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import define, gdag

HEAVY = ("typer", "rich", "networkx", "pydantic", "jsonschema")

HOT = [
    ["publish", "x", "2"],  # with a subscriber: publishes, then runs it
    ["publish", "note", "1"],
    ["lookup", "x"],
    ["lookup", "x", "--json"],
    ["run"],  # nothing stale
    ["status"],
    ["status", "--json"],
    ["log", "-n", "1"],
    ["check"],
    ["why", "a"],
    ["show", "y"],
    ["graph", "--format", "json"],
    ["graph", "--format", "dot", "--from", "x"],
    ["init"],
    ["hooks", "list"],
    ["hook", "post-commit"],
    ["--version"],
]


@pytest.fixture
def chain(repo: Path) -> Path:
    define(
        repo,
        """
        [nodes.a]
        run = 'cp "$GDAG_IN_X" "$GDAG_OUT/y"'
        inputs = { x = "x" }
        publishes = ["y"]
        """,
    )
    assert gdag("publish", "x", "1", cwd=repo).returncode == 0
    return repo


@pytest.mark.parametrize("argv", HOT, ids=" ".join)
def test_hot_command_imports_no_heavy_library(chain: Path, argv: list[str]) -> None:
    code = (
        "import sys; from gdag.main import main; rc = main(sys.argv[1:]); "
        f"heavy = sorted(m for m in {HEAVY!r} if m in sys.modules); "
        "print(rc, heavy, file=sys.stderr)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *argv], cwd=chain, capture_output=True, text=True
    )
    assert proc.stderr.strip().splitlines()[-1] == "0 []", proc.stderr

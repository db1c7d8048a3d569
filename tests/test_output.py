"""Plain output off a terminal: the same text rich writes to a file, without importing rich."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import define, gdag

from gdag.output import Node, Table, table_text, tree_text


def rich_text(renderable: object, encoding: str = "utf-8") -> str:
    """What rich writes for `renderable` to a file, as gdag's terminal renderer sets it up."""
    from rich.console import Console

    raw = io.BytesIO()
    file = io.TextIOWrapper(raw, encoding=encoding, newline="")
    Console(file=file, highlight=False, width=100_000).print(renderable)
    file.flush()
    return raw.getvalue().decode(encoding)


def rich_table(table: Table) -> object:
    from rich.table import Table as RichTable
    from rich.text import Text

    grid = RichTable(box=None, show_header=True, header_style="bold", pad_edge=False)
    for header in table.headers:
        grid.add_column(header)
    for row in table.rows:
        grid.add_row(*(Text(text, style=style) for text, style in row))
    return grid


def rich_tree(node: Node) -> object:
    from rich.text import Text
    from rich.tree import Tree

    tree = Tree(Text.assemble(*node.label))
    for child in node.children:
        tree.children.append(rich_tree(child))  # type: ignore[arg-type]
    return tree


def table(headers: list[str], *rows: list[tuple[str, str]]) -> Table:
    t = Table(headers)
    for row in rows:
        t.add(*row)
    return t


TABLES = {
    "status": table(
        ["node", "state", "why", "last session"],
        [("a", ""), ("stale", "yellow"), ("inputs changed: x v1->v2", ""), ("a.1a2.2f17", "")],
        [("long_name", ""), ("never-run", "yellow"), ("never ran", ""), ("-", "")],
    ),
    "empty": table(["node", "state", "why", "last session"]),
    "multi-line and wide cells": table(
        ["node", "state", "why"],
        [("n", ""), ("failed", "bold red"), ("ValueError: bad\nsecond line", "")],
        [("日本", ""), ("stale", ""), ("tab\there, bell\a", "")],
        [("e\u0301", ""), ("waiting", "dim"), ("", "")],
    ),
}


@pytest.mark.parametrize("name", TABLES)
def test_table_is_laid_out_as_rich_lays_it_out(name: str) -> None:
    table = TABLES[name]
    assert table_text(table) == rich_text(rich_table(table))


def sample_tree() -> Node:
    root = Node([("provenance", "bold")])
    a = root.add([("out/a", "cyan"), (" v2", ""), ("  @ offset 5", "dim")])
    b = a.add([("in/b", "cyan"), (" v1", "")])
    b.add([("src", "cyan"), ("  published (p1)", "dim")])
    a.add([("in/c", "cyan"), ("\nsecond line", "")])
    root.add([("last", "")]).add([("only child", "")])
    return root


@pytest.mark.parametrize("encoding", ["utf-8", "ascii"])
def test_tree_is_drawn_as_rich_draws_it(encoding: str) -> None:
    tree = sample_tree()
    assert tree_text(tree, encoding == "ascii") == rich_text(rich_tree(tree), encoding)


def test_status_and_show_off_a_terminal_need_no_rich(repo: Path) -> None:
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
    code = (
        "import sys; from gdag.main import main; rc = main(sys.argv[1:]); "
        "print(rc, 'rich' in sys.modules, file=sys.stderr)"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    for argv in (["status"], ["show", "y"], ["show", "a"], ["graph", "--format", "tree"]):
        proc = subprocess.run(
            [sys.executable, "-c", code, *argv], cwd=repo, capture_output=True, text=True, env=env
        )
        assert proc.stderr.strip().splitlines()[-1] == "0 False", (argv, proc.stderr)
    status = gdag("status", cwd=repo).text.splitlines()
    assert status[0].split() == ["node", "state", "why", "last", "session"]
    assert status[1].split()[:2] == ["a", "up-to-date"]
    shown = gdag("show", "y", cwd=repo).text.splitlines()
    assert shown[1] == "provenance" and shown[2].startswith("└── y v1")
    assert shown[3].startswith("    └── x v1") and "published" in shown[3]


def test_a_forced_terminal_still_gets_rich(repo: Path) -> None:
    r = gdag("status", cwd=repo, env={"FORCE_COLOR": "1", "NO_COLOR": ""})
    assert r.returncode == 0 and "\x1b[" in r.text

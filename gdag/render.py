"""Terminal output with rich: the live run view, tables, trees. The only importer of rich.

Off a terminal, `gdag.output` writes the same tables and trees without rich.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text
from rich.tree import Tree

if TYPE_CHECKING:
    from gdag.output import Block, Node, Table


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False)


class LiveRunning:
    """A live, transient list of running nodes with elapsed times (terminals only)."""

    def __init__(self, started: dict[str, float]) -> None:
        from rich.live import Live

        self.started = started
        self.console = stderr_console()
        self.live = Live(
            console=self.console, transient=True, refresh_per_second=8, get_renderable=self._table
        )
        self.live.start()

    def _table(self) -> RichTable:
        table = RichTable.grid(padding=(0, 1))
        now = time.monotonic()
        for node, t in sorted(self.started.items()):
            table.add_row(Text("running", style="cyan"), Text(node), Text(f"{now - t:.1f}s"))
        return table

    def print(self, segments: list[tuple[str, str]]) -> None:
        self.console.print(Text.assemble(*segments))

    def stop(self) -> None:
        self.live.stop()


def stdout_console() -> Console:
    """Data on stdout: never wrapped at 80 columns when piped (ids would be split)."""
    return Console(file=sys.stdout, highlight=False, width=None if sys.stdout.isatty() else 100_000)


def print_table(table: Table) -> None:
    """A `gdag.output.Table` on a terminal."""
    grid = RichTable(box=None, show_header=True, header_style="bold", pad_edge=False)
    for header in table.headers:
        grid.add_column(header)
    for row in table.rows:
        grid.add_row(*(Text(text, style=style) for text, style in row))
    stdout_console().print(grid)


def print_blocks(blocks: list[Block]) -> None:
    """Lines and trees (`gdag.output.Block`) on a terminal."""
    console = stdout_console()
    for block in blocks:
        # A line is a list of segments; anything else is a tree (`gdag.output.Node`).
        console.print(Text.assemble(*block) if isinstance(block, list) else _tree(block))


def _tree(node: Node) -> Tree:
    tree = Tree(Text.assemble(*node.label))
    stack = [(tree, node)]
    while stack:
        parent, at = stack.pop()
        for child in at.children:
            stack.append((parent.add(Text.assemble(*child.label)), child))
    return tree

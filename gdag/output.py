"""What commands print: data on stdout, plain text off a terminal, rich only on one.

A table or a tree is built once as data (`Table`, `Node`) and drawn either by
`gdag.render` with rich, on a terminal, or here with the standard library,
in exactly the text rich would write to a file or a pipe. So `gdag status |
grep`, `gdag show X > file` and scripts never import rich.
"""

from __future__ import annotations

import json
import os
import sys
from typing import IO, Any

from gdag import nodestates

Segments = list[tuple[str, str]]  # (text, rich style); the style is dropped in plain text

STATE_STYLE = {
    nodestates.UP_TO_DATE: "green",
    nodestates.STALE: "yellow",
    nodestates.NEVER_RUN: "yellow",
    nodestates.RUNNING: "cyan",
    nodestates.FAILED: "bold red",
    nodestates.WAITING: "dim",
}


def out(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def out_lines(lines: list[str]) -> None:
    out("".join(f"{line}\n" for line in lines).encode())


def print_json(obj: Any) -> None:
    out(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False).encode() + b"\n")


def is_terminal(stream: IO[str]) -> bool:
    """Whether rich would treat `stream` as a terminal (TTY_COMPATIBLE, FORCE_COLOR, isatty)."""
    compatible = os.environ.get("TTY_COMPATIBLE", "")
    if compatible in ("0", "1"):
        return compatible == "1"
    force = os.environ.get("FORCE_COLOR")
    if force is not None:
        return force != ""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Table:
    """Columns with a bold header row; each cell is text and a style."""

    def __init__(self, headers: list[str]) -> None:
        self.headers = headers
        self.rows: list[list[tuple[str, str]]] = []

    def add(self, *cells: tuple[str, str]) -> None:
        # Tabs expanded here: rich measures a cell before expanding them, then wraps it.
        self.rows.append([(text.expandtabs(8), style) for text, style in cells])


class Node:
    """A tree: a label and the nodes under it."""

    def __init__(self, label: Segments) -> None:
        self.label = label
        self.children: list[Node] = []

    def add(self, label: Segments) -> Node:
        child = Node(label)
        self.children.append(child)
        return child


Block = Segments | Node  # one line of text, or a tree


def print_table(table: Table) -> None:
    if is_terminal(sys.stdout):
        from gdag.render import print_table as rich_table

        rich_table(table)
    else:
        sys.stdout.write(table_text(table))
        sys.stdout.flush()


def print_blocks(blocks: list[Block], file: IO[str] | None = None) -> None:
    """Lines and trees, in order: with rich on a terminal, else plain (always to a file)."""
    if file is None and is_terminal(sys.stdout):
        from gdag.render import print_blocks as rich_blocks

        rich_blocks(blocks)
        return
    stream = file or sys.stdout
    ascii_only = not (getattr(stream, "encoding", None) or "utf-8").lower().startswith("utf")
    for block in blocks:
        if isinstance(block, Node):
            stream.write(tree_text(block, ascii_only))
        else:
            stream.write(_plain(block) + "\n")
    stream.flush()


# -- plain text, laid out as rich lays it out ------------------------------------------

# rich drops these control characters from Text (BEL, BS, VT, FF, CR).
_DROPPED = dict.fromkeys(map(ord, "\a\b\v\f\r"))


def _plain(segments: Segments) -> str:
    return "".join(text for text, _ in segments).translate(_DROPPED).expandtabs(8)


def cell_width(text: str) -> int:
    """Terminal columns of `text`: wide East Asian characters take two, combining ones none."""
    import unicodedata

    width = 0
    for ch in text:
        if unicodedata.combining(ch):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


def table_text(table: Table) -> str:
    """The table as rich's `Table(box=None, pad_edge=False)` writes it to a file: columns
    two spaces apart, every cell padded to its column's width, a cell's lines stacked."""
    rows = [[(h, "bold") for h in table.headers], *table.rows]
    cells = [[_plain([cell]).split("\n") for cell in row] for row in rows]
    widths = [
        max(cell_width(line) for row in cells for line in row[col]) for col in range(len(rows[0]))
    ]
    lines = []
    for row in cells:
        for i in range(max(len(cell) for cell in row)):
            parts = []
            for col, cell in enumerate(row):
                text = cell[i] if i < len(cell) else ""
                parts.append(text + " " * (widths[col] - cell_width(text)))
            lines.append("  ".join(parts))
    return "".join(f"{line}\n" for line in lines)


GUIDES = ("    ", "│   ", "├── ", "└── ")
ASCII_GUIDES = ("    ", "|   ", "+-- ", "`-- ")


def tree_text(root: Node, ascii_only: bool = False) -> str:
    """The tree as rich's `Tree` writes it to a file (by an explicit stack: a chain of a
    thousand nodes is a thousand levels)."""
    space, cont, fork, end = ASCII_GUIDES if ascii_only else GUIDES
    lines: list[str] = []
    # (node, guides before it, its own guide, the guide under it for its next lines)
    stack = [(root, "", "", "")]
    while stack:
        node, prefix, guide, below = stack.pop()
        for i, line in enumerate(_plain(node.label).split("\n")):
            lines.append(prefix + (guide if i == 0 else below) + line)
        last = len(node.children) - 1
        for i, child in reversed(list(enumerate(node.children))):
            stack.append(
                (child, prefix + below, end if i == last else fork, space if i == last else cont)
            )
    return "".join(f"{line}\n" for line in lines)

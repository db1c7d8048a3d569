"""Terminal output with rich: run progress on stderr, status tables. The only importer of rich."""

from __future__ import annotations

import sys
import time
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

STATE_STYLE = {
    "up-to-date": "green",
    "stale": "yellow",
    "never-run": "yellow",
    "running": "cyan",
    "failed": "bold red",
    "waiting": "dim",
}


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

    def _table(self) -> Table:
        table = Table.grid(padding=(0, 1))
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


def print_status(states: list[Any]) -> None:
    console = stdout_console()
    table = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
    for col in ("node", "state", "why", "last session"):
        table.add_column(col)
    for st in states:
        table.add_row(
            Text(st.node),
            Text(st.state, style=STATE_STYLE.get(st.state, "")),
            Text(st.reason),
            Text((st.last or {}).get("session") or "-"),
        )
    console.print(table)


def graph_tree(model: dict[str, Any], file: Any = None) -> None:
    """The DAG as a rich tree: sources first, each node under the outputs it reads."""
    from rich.tree import Tree

    console = (
        stdout_console() if file is None else Console(file=file, highlight=False, width=100_000)
    )
    by_id = {v["id"]: v for v in model["vertices"]}
    children: dict[str, list[str]] = {vid: [] for vid in by_id}
    has_parent = set()
    for e in model["edges"]:
        children[e["from"]].append(e["to"])
        has_parent.add(e["to"])
    root = Tree(Text(f"log {model['log']} @ offset {model['offset']}", style="bold"))
    shown: set[str] = set()

    def label(v: dict[str, Any]) -> Text:
        if v["kind"] == "node":
            st = v.get("state") or ""
            text = Text.assemble(("node ", "bold"), v["name"])
            if st:
                text.append(f"  [{st}]", STATE_STYLE.get(st, ""))
            if v.get("reason") and st in ("stale", "never-run", "failed"):
                text.append(f" {v['reason']}", "dim")
            return text
        text = Text(v["name"], style="cyan")
        if v.get("pattern"):
            text.append(f"  ({v.get('members', 0)} outputs)", "dim")
        elif v.get("version"):
            text.append(f"  v{v['version']}", "dim")
            if v.get("preview") is not None:
                text.append(f"  {v['preview']!r}", "dim")
        return text

    def add(parent: Any, vid: str) -> None:
        branch = parent.add(label(by_id[vid]))
        if vid in shown:
            if children[vid]:
                branch.add(Text("(shown above)", style="dim"))
            return
        shown.add(vid)
        for child in sorted(children[vid]):
            add(branch, child)

    for vid in sorted(v for v in by_id if v not in has_parent):
        add(root, vid)
    console.print(root)


def print_shown(info: dict[str, Any]) -> None:
    """`gdag show` for people: a session, a node's runs, or an output's provenance."""
    from rich.tree import Tree

    console = stdout_console()
    if info["kind"] == "output":
        meta = info["meta"]
        console.print(
            Text.assemble(
                (info["output"], "bold cyan"),
                f"  v{meta.get('version')}  type {meta.get('type')}"
                f"  offset {meta.get('offset')}  {meta.get('time')}",
            )
        )
        tree = Tree(Text("provenance", style="bold"))
        _provenance_branch(tree, info["provenance"])
        console.print(tree)
        return
    record = info.get("last") if info["kind"] == "node" else info
    if info["kind"] == "node":
        console.print(Text.assemble(("node ", "bold"), info["node"]))
        for run in info["recent"]:
            console.print(
                Text(
                    f"  {run['session']}  {run['status']}  offset {run['offset']}"
                    f"  {run.get('duration')}s"
                    + (f"  cache hit of {run['cached']}" if run.get("cached") else ""),
                    style="red" if run["status"] == "failed" else "",
                )
            )
        if not record:
            console.print(Text("  never ran", style="dim"))
            return
    _print_session(console, record or {})


def _print_session(console: Console, rec: dict[str, Any]) -> None:
    console.print(
        Text.assemble(
            ("session ", "bold"),
            rec.get("session") or "?",
            f"  node {rec.get('node')}  {rec.get('status')}",
            f"  {rec.get('duration')}s  merged at offset {rec.get('offset')}",
        )
    )
    for name, version in sorted((rec.get("inputs") or {}).items()):
        console.print(Text(f"  input  {name} v{version}"))
    for name, version in sorted((rec.get("outputs") or {}).items()):
        console.print(Text(f"  output {name} v{version}"))
    if rec.get("cached"):
        console.print(Text(f"  cache hit of {rec['cached']}", style="dim"))
    for subject in rec.get("branch", []):
        console.print(Text(f"  | {subject}", style="dim"))
    if rec.get("log_tail"):
        console.print(Text("  log:", style="bold"))
        for line in rec["log_tail"].rstrip("\n").splitlines()[-20:]:
            console.print(Text(f"    {line}"))


def _provenance_branch(parent: Any, step: dict[str, Any]) -> None:
    label = Text.assemble(
        (step["output"], "cyan"),
        f" v{step.get('version')}",
        (f"  @ offset {step.get('offset')}", "dim"),
    )
    if step.get("published"):
        label.append(f"  published ({step['published']})", "dim")
    if step.get("node"):
        label.append(f"  by node {step['node']} session {step.get('session')}", "")
    branch = parent.add(label)
    for child in step.get("inputs", []):
        _provenance_branch(branch, child)

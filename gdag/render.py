"""Terminal output with rich: run progress on stderr, status tables. The only importer of rich."""

from __future__ import annotations

import sys
import threading
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


class RunView:
    """Receives the runner's reports; shows live progress on a terminal, plain lines otherwise."""

    def __init__(self, quiet: bool = False) -> None:
        self.console = stderr_console()
        self.quiet = quiet
        self.started: dict[str, float] = {}
        self.lock = threading.Lock()
        self.live: Any = None
        if not quiet and self.console.is_terminal:
            from rich.live import Live

            self.live = Live(
                self._table(),
                console=self.console,
                transient=True,
                refresh_per_second=8,
                get_renderable=self._table,
            )
            self.live.start()
        self.t0 = time.monotonic()

    def _table(self) -> Table:
        table = Table.grid(padding=(0, 1))
        now = time.monotonic()
        for node, t in sorted(self.started.items()):
            table.add_row(Text("running", style="cyan"), Text(node), Text(f"{now - t:.1f}s"))
        return table

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        with self.lock:
            if kind == "start":
                self.started[data["node"]] = time.monotonic()
                return
            if kind == "finish":
                self.started.pop(data["node"], None)
            if not self.quiet:
                self.console.print(self._line(kind, data))

    def _line(self, kind: str, data: dict[str, Any]) -> Text:
        node = data.get("node", "")
        if kind == "finish":
            if data["merged"] == "superseded":
                return Text.assemble(("superseded ", "dim"), node)
            ok = data["status"] == "ok"
            if data.get("cached"):
                return Text.assemble(
                    ("cached ", "green"), node, (f"  (reused session {data['cached']})", "dim")
                )
            line = Text.assemble(
                ("ok " if ok else "FAILED ", "green" if ok else "bold red"),
                node,
                f" {data['duration']:.2f}s",
            )
            outs = data.get("outputs") or {}
            if outs:
                line.append("  -> " + ", ".join(f"{k} v{v}" for k, v in outs.items()), "dim")
            if data.get("unchanged"):
                line.append("  unchanged: " + ", ".join(data["unchanged"]), "dim")
            if not ok and data.get("error"):
                line.append(f"  ({data['error']})", "red")
            if not ok and data.get("log"):
                tail = data["log"].decode("utf-8", "replace").rstrip("\n").splitlines()[-10:]
                line.append("".join(f"\n  | {t}" for t in tail), "dim")
            return line
        if kind == "would-run":
            return Text.assemble(("would run ", "yellow"), node, (f"  {data['reason']}", "dim"))
        if kind == "recovered":
            return Text.assemble(("recovered ", "cyan"), node, f" ({data['result']})")
        if kind == "dropped":
            return Text.assemble(("dropped unfinished session of ", "dim"), node)
        return Text(f"{kind} {node}")

    def close(self, summary: Any) -> None:
        if self.live is not None:
            self.live.stop()
        if self.quiet:
            return
        took = time.monotonic() - self.t0
        parts = [f"{len(summary.ran)} ran"]
        if summary.failed:
            parts.append(f"{len(summary.failed)} failed")
        if summary.superseded:
            parts.append(f"{len(summary.superseded)} superseded")
        if summary.recovered:
            parts.append(f"{len(summary.recovered)} recovered")
        if not summary.ran and not summary.failed:
            parts = ["nothing to do"] if not summary.superseded else parts
        style = "bold red" if summary.failed else "green"
        self.console.print(Text(", ".join(parts) + f" ({took:.2f}s)", style=style))


def print_status(states: list[Any]) -> None:
    console = Console(file=sys.stdout, highlight=False)
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


class ReplayView(RunView):
    """Progress of a replay: the node runs as in `gdag run`, then what was replayed."""

    def _line(self, kind: str, data: dict[str, Any]) -> Text:
        if kind == "would-replay":
            return Text.assemble(
                ("would replay ", "yellow"),
                f"offset {data['offset']} ",
                (" ".join(data["outputs"]), "dim"),
            )
        return super()._line(kind, data)

    def close(self, result: Any, dry_run: bool = False) -> None:  # type: ignore[override]
        if self.live is not None:
            self.live.stop()
        if self.quiet or dry_run:
            return
        took = time.monotonic() - self.t0
        text = (
            f"replayed {len(result.events)} events from offset {result.from_offset}: "
            f"{len(result.ran)} ran, {len(result.cached)} cached, "
            f"{len(result.failed)} failed ({took:.2f}s)"
        )
        if result.archive:
            text += f"; old log kept at {result.archive}"
        self.console.print(Text(text, style="bold red" if result.failed else "green"))


def graph_tree(model: dict[str, Any], file: Any = None) -> None:
    """The DAG as a rich tree: sources first, each node under the outputs it reads."""
    from rich.tree import Tree

    console = Console(file=file or sys.stdout, highlight=False)
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

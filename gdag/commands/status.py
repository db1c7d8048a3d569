"""`gdag status`: every node's state, why, and its last session."""

from __future__ import annotations

import sys

from gdag.commands import JSON, LOG, PATH, Spec
from gdag.output import STATE_STYLE, Table, print_json, print_table

SPEC = Spec((JSON, PATH, LOG))


def run(*, json_out: bool, path: str | None, log: str | None) -> int:
    from gdag.hooks import broken_hooks, pending, recent_errors
    from gdag.runner import Engine
    from gdag.workspace import Workspace

    ws = Workspace.open(path, log)
    states = Engine(ws).status()
    if ws.definition_differs:
        here = ws.definition_source().label
        sys.stderr.write(
            f"gdag: note: {here} here differs from the definition the log records;"
            f" the states are {here}'s (`gdag run` records it)\n"
        )
    for line in recent_errors(ws.store):
        sys.stderr.write(f"gdag: warning: hook failed: {line}\n")
    for hook in broken_hooks(ws.store):
        sys.stderr.write(f"gdag: warning: hook {hook.name} cannot run: {hook.problem}\n")
    if queued := pending(ws.store):
        sys.stderr.write(
            f"gdag: warning: {queued} git event(s) queued by the hooks, not published yet "
            "(`gdag hook --drain` publishes them)\n"
        )
    if json_out:
        print_json([s.to_json() for s in states])
        return 0
    table = Table(["node", "state", "why", "last session"])
    for st in states:
        table.add(
            (st.node, ""),
            (st.state, STATE_STYLE.get(st.state, "")),
            (st.reason, ""),
            ((st.last or {}).get("session") or "-", ""),
        )
    print_table(table)
    return 0

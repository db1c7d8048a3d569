"""`gdag schedules`: every schedule with its last and next tick, and what is due now."""

from __future__ import annotations

from gdag.commands import JSON, LOG, PATH, Spec
from gdag.output import Table, print_json, print_table

SPEC = Spec((JSON, PATH, LOG))


def run(*, json_out: bool, path: str | None, log: str | None) -> int:
    from gdag.schedule import describe, now
    from gdag.workspace import Workspace

    at = now()
    ws = Workspace.open(path, log)
    tip = ws.log.require_tip()
    dag = ws.current_dag(tip, record=False)
    states = describe(ws.log, ws.store.read_commit(tip).tree, dag, at)
    if json_out:
        print_json([s.to_json() for s in states])
        return 0
    table = Table(["schedule", "rule", "catchup", "last tick", "next tick", "due now"])
    for s in states:
        rule = s.rule + (f" ({s.timezone})" if s.timezone != "UTC" else "")
        table.add(
            (s.name, ""),
            (rule, ""),
            (s.catchup, ""),
            (s.last or "-", ""),
            (s.next or "-", ""),
            (str(len(s.due)) if s.due else "-", ""),
        )
    print_table(table)
    return 0

"""`gdag gc`: prune the stored bytes of large values past the retention rules."""

from __future__ import annotations

import sys

from gdag.commands import JSON, LOG, PATH, Option, Spec
from gdag.output import Table, print_json, print_table

SPEC = Spec(
    (
        Option("dry_run", ("--dry-run",), "List what would be pruned; delete nothing."),
        JSON,
        PATH,
        LOG,
    )
)


def run(*, dry_run: bool, json_out: bool, path: str | None, log: str | None) -> int:
    import time

    from gdag import retention
    from gdag.workspace import Workspace

    ws = Workspace.open(path, log)
    tip = ws.log.require_tip()
    dag = ws.current_dag(tip, record=not dry_run)  # the rules pruned under are on the log
    planned = time.time()
    plan = retention.plan(ws.store, dag)
    count = freed = 0
    if not dry_run:
        count, freed = retention.prune(ws.store, plan.prune, since=planned)
    if json_out:
        print_json(
            {
                "dry_run": dry_run,
                "prune": [p.to_json() for p in plan.prune],
                "pruned": count,
                "freed": freed,
                "kept_in_git": plan.in_git,
            }
        )
        return 0
    if plan.prune:
        table = Table(["output", "version", "offset", "size", "rule"])
        for p in plan.prune:
            v = p.version
            table.add(
                (v.output, ""),
                (f"v{v.version}", ""),
                (str(v.offset), ""),
                (_size(v.size), ""),
                (p.rule, ""),
            )
        print_table(table)
    if not plan.rules:
        sys.stderr.write(
            "no retention rules: every value is kept\n"
            '  hint: add rules to gdag.toml, e.g. [retention."raw/*"] keep_last = 10\n'
        )
    elif dry_run:
        total = sum(p.version.size for p in plan.prune)
        sys.stderr.write(f"would prune {len(plan.prune)} value(s), {_size(total)}\n")
    else:
        sys.stderr.write(f"pruned {count} value(s), {_size(freed)} freed\n")
    if plan.in_git:
        sys.stderr.write(
            f"{plan.in_git} version(s) past their rules are git blobs (below [values] large) "
            "and stay in the log's history\n"
        )
    return 0


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"

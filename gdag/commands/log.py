"""`gdag log`: the log's events, newest first."""

from __future__ import annotations

from gdag.commands import JSON, LOG, PATH, Option, Spec
from gdag.output import out_lines, print_json

SPEC = Spec(
    (
        Option("limit", ("--limit", "-n"), "Show at most N events.", "int", "N", minimum=1),
        Option(
            "output",
            ("--output",),
            "Only events that changed this output.",
            "text",
            "NAME",
            complete="output",
        ),
        Option("node", ("--node",), "Only sessions of this node.", "text", "NODE", complete="node"),
        Option(
            "since",
            ("--since",),
            "Only events since a time: ISO date/time, or 30m, 2h, 7d ago.",
            "text",
            "WHEN",
        ),
        Option("graph", ("--graph",), "Show each session's own commits under it."),
        JSON,
        PATH,
        LOG,
    )
)


def run(
    *,
    limit: int | None,
    output: str | None,
    node: str | None,
    since: str | None,
    graph: bool,
    json_out: bool,
    path: str | None,
    log: str | None,
) -> int:
    from gdag import trailers
    from gdag.log import select_events
    from gdag.workspace import Workspace, now_iso

    ws = Workspace.open(path, log)
    shown = select_events(ws.log, limit=limit, output=output, node=node, since=since)
    if json_out:
        print_json([e.to_json() for e in shown])
        return 0
    lines = []
    for e in shown:
        who = e.first(trailers.NODE)
        outputs = " ".join(e.outputs)
        if who:
            what = f"{who} {e.first(trailers.STATUS) or ''}" + (f" -> {outputs}" if outputs else "")
        else:
            what = outputs or e.summary
        lines.append(f"{e.offset:>6}  {e.kind:<8} {now_iso(e.time)}  {what.strip()}")
        if graph and e.kind == "session":
            from gdag.provenance import session_branch

            parents = ws.store.read_commit(e.sha).parents
            if len(parents) > 1:
                lines += [f"{'':>6}  | {subject}" for subject in session_branch(ws, parents[1])]
    out_lines(lines)
    return 0

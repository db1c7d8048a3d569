"""`gdag log`: the log's events, newest first; `--follow` streams them as they come."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from gdag.commands import JSON, LOG, PATH, Option, Spec
from gdag.output import out, out_lines, print_json

if TYPE_CHECKING:
    from gdag.log import Event
    from gdag.workspace import Workspace

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
        Option(
            "follow",
            ("--follow",),
            "Stream events oldest first as they are appended, until interrupted.",
        ),
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
    follow: bool,
    json_out: bool,
    path: str | None,
    log: str | None,
) -> int:
    from gdag.log import select_events
    from gdag.workspace import Workspace

    ws = Workspace.open(path, log)
    if follow:
        return _follow(ws, limit, output, node, since, graph, json_out)
    shown = select_events(ws.log, limit=limit, output=output, node=node, since=since)
    if json_out:
        print_json([e.to_json() for e in shown])
        return 0
    out_lines([line for e in shown for line in event_lines(ws, e, graph)])
    return 0


def event_lines(ws: Workspace, e: Event, graph: bool) -> list[str]:
    """An event as `gdag log` lists it: one line, and its session's commits with `graph`."""
    from gdag import trailers
    from gdag.workspace import now_iso

    who = e.first(trailers.NODE)
    outputs = " ".join(e.outputs)
    if who:
        what = f"{who} {e.first(trailers.STATUS) or ''}" + (f" -> {outputs}" if outputs else "")
    else:
        what = outputs or e.summary
    lines = [f"{e.offset:>6}  {e.kind:<8} {now_iso(e.time)}  {what.strip()}"]
    if graph and e.kind == "session":
        from gdag.provenance import session_branch

        parents = ws.store.read_commit(e.sha).parents
        if len(parents) > 1:
            lines += [f"{'':>6}  | {subject}" for subject in session_branch(ws, parents[1])]
    return lines


def _follow(
    ws: Workspace,
    limit: int | None,
    output: str | None,
    node: str | None,
    since: str | None,
    graph: bool,
    json_out: bool,
) -> int:
    """The last events oldest first, then every new one as it is appended (`tail -f`);
    Ctrl-C (or SIGTERM) ends it with status 0."""
    from gdag.log import event_filter, follow, select_events

    def show(e: Event) -> None:
        if json_out:
            out(json.dumps(e.to_json(), sort_keys=True, ensure_ascii=False).encode() + b"\n")
        else:
            out_lines(event_lines(ws, e, graph))

    tip = ws.log.require_tip()
    wanted = event_filter(output, node)
    backlog = select_events(
        ws.log, limit=limit or 10, output=output, node=node, since=since, start=tip
    )
    try:
        for e in reversed(backlog):
            show(e)
        for e in follow(ws.log, after=ws.log.event(tip).offset):
            if wanted(e):
                show(e)
    except KeyboardInterrupt:
        pass
    return 0

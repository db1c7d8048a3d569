"""`gdag tick`: publish every schedule tick that is due now, then run its subscribers."""

from __future__ import annotations

from gdag.commands import JOBS, JSON, LOG, PATH, Option, Spec, cluster_and_jobs
from gdag.output import out_lines, print_json

SPEC = Spec(
    (
        Option("no_run", ("--no-run",), "Do not run the subscribers of the ticks."),
        Option(
            "remote",
            ("--remote",),
            "Publish on the log of a shared git remote (compare-and-swap by push).",
            "text",
            "REMOTE",
        ),
        JOBS,
        JSON,
        PATH,
        LOG,
    )
)


def run(
    *,
    no_run: bool,
    remote: str | None,
    jobs: int | None,
    json_out: bool,
    path: str | None,
    log: str | None,
) -> int:
    from gdag.schedule import now, publish_due
    from gdag.workspace import Workspace

    at = now()  # read first: a bad GDAG_NOW is refused before anything is written
    ws = Workspace.open(path, log)
    target = ws
    if remote is not None:
        from gdag.remote import Remote, remote_log, sync_log

        shared = Remote(ws.store, remote, path)
        sync_log(shared, ws.log)
        target = Workspace(ws.store, ws.log.name, remote_log(ws.store, ws.log.name, shared))
    dag = target.current_dag(target.log.require_tip())
    if not dag.schedules:
        import sys

        sys.stderr.write(
            f"gdag: note: {ws.definition_source().label} defines no schedules; nothing to tick\n"
        )
    published = publish_due(target, dag, at)
    if json_out:
        print_json([p.to_json() for p in published])
    else:
        out_lines(
            [
                f"{t.published.output} {t.time} v{t.published.version} @ {t.published.offset}"
                for t in published
            ]
        )
    outputs = sorted({t.published.output for t in published})
    if no_run or not outputs or not any(dag.subscribers(o) for o in outputs):
        return 0
    from gdag.commands.run import run_nodes

    _, jobs = cluster_and_jobs(None, jobs)
    return run_nodes(ws, outputs, jobs=jobs, quiet=json_out, remote=remote, start=path)

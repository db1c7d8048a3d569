"""`gdag replay`: rebuild the log from an offset under the current definition."""

from __future__ import annotations

from gdag.commands import (
    CLUSTER,
    JOBS,
    JSON,
    LOG,
    PATH,
    QUIET,
    REQUIRED,
    Option,
    Spec,
    cluster_and_jobs,
)
from gdag.output import print_json

SPEC = Spec(
    (
        Option(
            "from_",
            ("--from",),
            "Replay the external publish events from this offset on.",
            "text",
            "OFFSET",
            default=REQUIRED,
        ),
        Option("to", ("--to",), "Stop after this offset (needs --onto).", "text", "OFFSET"),
        Option("onto", ("--onto",), "Write the result to a new log (a what-if).", "text", "LOG"),
        Option(
            "only",
            ("--only",),
            "Run only these nodes and what they reach.",
            "list",
            "NODE",
            complete="node",
        ),
        JOBS,
        CLUSTER,
        Option("dry_run", ("--dry-run",), "List the events it would replay; change nothing."),
        QUIET,
        JSON,
        PATH,
        LOG,
    )
)


def run(
    *,
    from_: str,
    to: str | None,
    onto: str | None,
    only: list[str] | None,
    jobs: int | None,
    cluster: str | None,
    dry_run: bool,
    quiet: bool,
    json_out: bool,
    path: str | None,
    log: str | None,
) -> int:

    from gdag.progress import ReplayView
    from gdag.replay import Replay
    from gdag.workspace import Workspace

    ws = Workspace.open(path, log)
    view = ReplayView(quiet=quiet or json_out)
    cluster, jobs = cluster_and_jobs(cluster, jobs)
    result = Replay(ws, jobs, view, cluster).run(from_, to, onto, only or None, dry_run)
    view.close(result, dry_run)
    if json_out:
        print_json(result.to_json())
    return 1 if result.failed else 0

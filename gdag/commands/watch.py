"""`gdag watch`: run pending work as events arrive, until interrupted."""

from __future__ import annotations

from gdag.commands import CLUSTER, JOBS, LOG, PATH, QUIET, Option, Spec, cluster_and_jobs

SPEC = Spec(
    (
        Option(
            "interval",
            ("--interval",),
            "Seconds between checks.",
            "float",
            "S",
            default=0.5,
            minimum=0.05,
        ),
        JOBS,
        Option("remote", ("--remote",), "Sync with and work for a git remote.", "text", "REMOTE"),
        CLUSTER,
        QUIET,
        PATH,
        LOG,
    )
)


def run(
    *,
    interval: float,
    jobs: int | None,
    remote: str | None,
    cluster: str | None,
    quiet: bool,
    path: str | None,
    log: str | None,
) -> int:
    import os

    from gdag.progress import RunView
    from gdag.watch import Watcher

    view = RunView(quiet=quiet)
    cluster, jobs = cluster_and_jobs(cluster, jobs)
    watcher = Watcher(path, log, jobs, view, interval, remote, cluster)
    explicit = log if log is not None else os.environ.get("GDAG_LOG") or None
    if remote is None and explicit != "@branch":
        from gdag.log import Log
        from gdag.workspace import log_name

        # A log named (or main) that does not exist is refused now, not watched forever;
        # a followed branch's log may appear later, and a remote's comes with the sync.
        name = log_name(log, watcher.store)
        if explicit is not None or name == "main":
            Log(watcher.store, name).require_tip()
    try:
        if not quiet:
            where = watcher.store.workdir or watcher.store.gitdir
            view.emit([(f"watching {where} every {interval:g}s; Ctrl-C stops", "dim")])
        watcher.loop()
    except KeyboardInterrupt:
        view.stop()
        if not quiet:
            view.emit([("stopped", "dim")])
    return 0

"""`gdag run`: run stale nodes until nothing is stale; the run that publish and hooks start."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from gdag.commands import (
    CLUSTER,
    JOBS,
    JSON,
    LOG,
    PATH,
    QUIET,
    Argument,
    Option,
    Spec,
    cluster_and_jobs,
)

if TYPE_CHECKING:
    from gdag.lease import NodeLeases
    from gdag.workspace import Workspace

SPEC = Spec(
    (
        Argument(
            "targets",
            "Only what these nodes/outputs reach.",
            metavar="[NODE|OUTPUT]...",
            default=None,
            many=True,
            complete="node-or-output",
        ),
        JOBS,
        Option("dry_run", ("--dry-run",), "Show what would run; run nothing.", retired=("-n",)),
        Option(
            "keep_going",
            ("--keep-going", "-k"),
            "After a failure, go on with independent nodes (default) or stop.",
            "switch",
            default=True,
            off="--fail-fast",
        ),
        Option("retry_failed", ("--retry-failed",), "Run failed nodes (and failed events) again."),
        Option(
            "speculative",
            ("--speculative",),
            "Start subscribers on outputs a running node advises early.",
        ),
        Option(
            "remote",
            ("--remote",),
            "Work on the log of a shared git remote (leases and merges by push).",
            "text",
            "REMOTE",
        ),
        CLUSTER,
        QUIET,
        JSON,
        PATH,
        LOG,
    )
)


def run(
    *,
    targets: list[str] | None,
    jobs: int | None,
    dry_run: bool,
    keep_going: bool,
    retry_failed: bool,
    speculative: bool,
    remote: str | None,
    cluster: str | None,
    quiet: bool,
    json_out: bool,
    path: str | None,
    log: str | None,
) -> int:
    from gdag.workspace import Workspace

    ws = Workspace.open(path, log)
    _drain_hook_events(ws)
    cluster, jobs = cluster_and_jobs(cluster, jobs)
    return run_nodes(
        ws,
        targets or None,
        jobs=jobs,
        cluster=cluster,
        quiet=quiet,
        dry_run=dry_run,
        keep_going=keep_going,
        retry_failed=retry_failed,
        json_out=json_out,
        speculative=speculative,
        remote=remote,
        start=path,
    )


def _drain_hook_events(ws: Workspace) -> None:
    """Publish git events the hook shims queued and no drainer published (one killed, or
    one that could not start): a run works on every commit made so far."""
    from gdag import hooks

    if hooks.pending(ws.store):
        hooks.drain_queue(ws.store.user_commondir, lambda ws, output: None, linger=0.0)


def run_nodes(
    ws: Workspace,
    targets: list[str] | None,
    *,
    jobs: int,
    quiet: bool = False,
    dry_run: bool = False,
    keep_going: bool = True,
    retry_failed: bool = False,
    json_out: bool = False,
    speculative: bool = False,
    remote: str | None = None,
    cluster: str | None = None,
    start: str | None = None,
) -> int:
    """Run stale nodes until quiescent, with progress on stderr; 1 if a node failed.
    `jobs` 0: as many as the executor has slots (a cluster's threads and half again).

    With `json_out`, stdout gets one JSON object per line for every event, then a
    `summary` line. A `remote` given as a relative path is read from `start` (-C).
    """
    from gdag.progress import JsonLines, RunView
    from gdag.runner import Engine

    view = JsonLines() if json_out else RunView(quiet=quiet)
    shared = None
    if remote is not None:
        from gdag.remote import Remote, sync_log

        shared = Remote(ws.store, remote, start)
        sync_log(shared, ws.log)
    leases: NodeLeases | None = None
    netsem = None
    group = None
    if shared is not None:
        from gdag.groupcommit import GroupCommit
        from gdag.remote import remote_leases
        from gdag.workspace import Workspace

        # Merges commit here; a pusher sends them to the remote, many to a push.
        group = GroupCommit(ws.store, ws.log.name, shared)
        ws = Workspace(ws.store, ws.log.name, group.log())
        if cluster and not cluster.startswith("local"):
            from gdag.netsem import ClusterLeases  # the cluster's semaphores: no lease pushes

            leases = netsem = ClusterLeases(cluster, ws.log.name)
        else:
            leases = remote_leases(ws.store, ws.log.name, shared)
    try:
        engine = Engine(
            ws,
            jobs,
            view,
            speculative=speculative,
            leases=leases,
            executor_spec=f"dask:{cluster}" if cluster else None,
        )
        summary = engine.run(
            targets, dry_run=dry_run, keep_going=keep_going, retry_failed=retry_failed
        )
        while group is not None:
            dropped = group.dropped
            group.flush()
            if group.dropped == dropped or dry_run:
                break
            # The last push lost to another machine's, and merges of this run were
            # dropped on the remote's tip: their nodes are stale again.
            summary.add(engine.run(targets, keep_going=keep_going, retry_failed=retry_failed))
    finally:
        view.stop()
        if group is not None:
            group.close()
        if netsem is not None:
            netsem.close()
    if not dry_run:
        view.close(summary)
    return 0 if summary.ok else 1


def run_detached(ws: Workspace, targets: list[str], cluster: str | None = None) -> None:
    """Leave the run to a background process whose output goes under .git/gdag/logs/."""
    import subprocess
    import time

    logs = ws.store.gdag_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"run-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    root = str(ws.store.workdir or ws.store.gitdir)
    with open(log_path, "ab") as log_file:
        subprocess.Popen(
            [sys.executable, "-m", "gdag", "run", *targets, "-C", root, "--log", ws.log.name]
            + (["--cluster", cluster] if cluster else []),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            start_new_session=True,
            close_fds=True,
        )

"""`gdag watch`: a foreground loop that runs pending work as events arrive.

It keeps no state that matters: each round reads HEAD (when following the
branch), the log ref, the stat of the definition file and of the files the
definition depends on (Python nodes' modules, nodes' `sources`), publishes the
schedules' ticks that have come due (`gdag.schedule`: each once per log,
whoever else publishes them), and runs the engine only when one of them
changed; kill it at any moment and the next start carries on from what is in
git. SIGINT and SIGTERM stop it after the sessions in flight
finish (or, on a second signal, leave them for the next run to recover).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gdag.errors import DefinitionError, GdagError, SecretMissingError
from gdag.repo import Store
from gdag.workspace import Workspace, log_name

if TYPE_CHECKING:
    from gdag.dag import Dag
    from gdag.executors import Executor
    from gdag.lease import NodeLeases

Report = Callable[[str, dict[str, Any]], None]


def _stamp(path: Path | None) -> tuple[int, int] | None:
    try:
        st = os.stat(path) if path is not None else None
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size) if st else None


class Watcher:
    def __init__(
        self,
        path: str | None,
        log: str | None,
        jobs: int,
        report: Report,
        interval: float = 0.5,
        remote: str | None = None,
        cluster: str | None = None,
    ) -> None:
        self.cluster = cluster
        # One executor for the watch (made at its first run, closed when it ends):
        # Python workers and a cluster connection outlive a round.
        self.executor: Executor | None = None
        self._netsem: Any = None  # node leases on the cluster, with a remote and a cluster
        self.store = Store.find(path or ".")
        self.log_arg = log
        self.jobs = jobs
        self.report = report
        self.interval = interval
        self.definition = self.store.workdir / "gdag.toml" if self.store.workdir else None
        self._dag_tip: bytes | None = None
        self._watched: tuple[list[str], list[str]] = ([], [])
        # Schedules: what the last look at them saw, and when the next tick is due.
        self._tick_key: tuple[Any, ...] | None = None
        self._next_tick: float | None = None
        self._tick_error: str | None = None
        self._write_error: str | None = None  # reported once while the store refuses writes
        self.remote: Any = None
        if remote is not None:
            from gdag.remote import Remote

            self.remote = Remote(self.store, remote, path)

    def _sources(self, tip: bytes) -> tuple[Any, ...]:
        """Stamps of the files the definition in force depends on besides itself (Python
        nodes' modules, nodes' `sources`) and what the `sources` patterns match now."""
        if self._dag_tip != tip:
            from gdag.dag import Dag
            from gdag.state import read_dag

            dag = read_dag(self.store, self.store.read_commit(tip).tree) or Dag.empty()
            self._watched = (sorted(dag.watch), sorted(dag.globs))
            self._dag_tip = tip
        files, globs = self._watched
        root = self.store.workdir
        matched: tuple[Any, ...] = ()
        if globs and root is not None:
            from gdag.definition import expand_sources

            matched = tuple(tuple(expand_sources(g, root)) for g in globs)
        base = root or Path()
        return (tuple(_stamp(base / f) for f in files), matched)

    def tick(self, last: tuple[Any, ...] | None) -> tuple[Any, ...]:
        """Run the engine if the branch, the log tip or the definition changed since `last`."""
        name = log_name(self.log_arg, self.store)
        ws = Workspace(self.store, name)
        if self.remote is not None:
            from gdag.remote import sync_log

            try:
                sync_log(self.remote, ws.log)
            except GdagError as exc:  # offline: keep working locally, catch up later
                self.report("offline", {"node": "", "error": exc.message})
        tip = ws.log.tip()
        if tip is None:
            return (name, None)
        if self._publish_ticks(self._committing(ws, name), tip):
            tip = ws.log.tip()
            assert tip is not None
        seen = (name, tip, _stamp(self.definition), self._sources(tip))
        if seen == last:
            return seen
        if last is not None and last[0] != name:
            self.report("switched", {"node": "", "log": name})
        from gdag.runner import Engine
        from gdag.usercode import refresh_user_modules

        if self.store.workdir is not None:  # no node runs now: drop changed modules
            refresh_user_modules(self.store.workdir)
        leases: NodeLeases | None = None
        group = None
        if self.remote is not None:
            from gdag.groupcommit import GroupCommit
            from gdag.remote import remote_leases

            if self.cluster and not self.cluster.startswith("local"):
                from gdag.netsem import ClusterLeases  # the cluster's semaphores

                if self._netsem is None or self._netsem.log != name:
                    self._netsem = ClusterLeases(self.cluster, name)
                leases = self._netsem
            else:
                leases = remote_leases(self.store, name, self.remote)
            # The round's merges commit here; a pusher sends them, many to a push.
            group = GroupCommit(self.store, name, self.remote)
            ws = Workspace(self.store, name, group.log())
        try:
            engine = Engine(ws, self.jobs, self.report, leases=leases)
            if self.executor is None:
                from gdag.executors import executor_for, spec_for

                dag = ws.current_dag(tip)
                self.executor = executor_for(spec_for(self.cluster, dag.cluster))
            engine.executor = self.executor
            summary = engine.run()
            if group is not None:
                try:
                    group.flush()
                except GdagError as exc:  # kept here; the next round's sync pushes it
                    self.report("offline", {"node": "", "error": exc.message})
        except DefinitionError as exc:
            # A broken gdag.toml (or node module) mid-edit: say so once, and look again
            # when a file changes; events published meanwhile wait in the log.
            self.report("definition-error", {"node": "", "error": exc.message})
            return seen
        except SecretMissingError:
            return seen  # reported as its nodes were refused; the others ran
        finally:
            if group is not None:
                group.close()

        if summary.ran or summary.failed:
            self.report(
                "idle", {"node": "", "ran": len(summary.ran), "failed": len(summary.failed)}
            )
        # What was seen before the run, not after: an event published while the engine
        # ran must make the next tick look again (our own merges cost one no-op run).
        return seen

    def _committing(self, ws: Workspace, name: str) -> Workspace:
        """The workspace events are appended through: with a remote, its log (by push)."""
        if self.remote is None:
            return ws
        from gdag.remote import remote_log

        return Workspace(self.store, name, remote_log(self.store, name, self.remote))

    def _publish_ticks(self, ws: Workspace, tip: bytes) -> bool:
        """Publish the schedules' ticks due now; whether this process appended any.
        Looked at again when the log, the definition or the next tick's time comes."""
        from gdag import schedule

        at = schedule.now()
        key = (ws.log.name, tip, _stamp(self.definition))
        if key == self._tick_key and (self._next_tick is None or at.timestamp() < self._next_tick):
            return False
        try:
            dag = ws.current_dag(tip)
        except DefinitionError:
            self._tick_key, self._next_tick = key, None  # the engine's round reports it
            return False
        try:
            ticked = schedule.publish_due(ws, dag, at) if dag.schedules else []
            stale = self._publish_stale(ws, dag, at.timestamp())
        except GdagError as exc:
            # A remote that is down, say: tried again next round, reported once.
            if exc.message != self._tick_error:
                self.report("tick-error", {"node": "", "error": exc.message})
            self._tick_error = exc.message
            return False
        self._tick_error = None
        for t in ticked:
            self.report("tick", {"node": "", "output": t.published.output, "time": t.time})
        upcoming = schedule.next_due(dag, at)
        times = [upcoming.timestamp()] if upcoming is not None else []
        if any(d.fresh_within is not None for d in dag.outputs.values()):
            from gdag.freshness import next_check

            soon = next_check(ws.store, ws.store.read_commit(ws.log.require_tip()).tree, dag)
            times += [soon] if soon is not None else []
        self._next_tick = min(times) if times else None
        self._tick_key = (ws.log.name, ws.log.tip(), _stamp(self.definition))
        return bool(ticked or stale)

    def _publish_stale(self, ws: Workspace, dag: Dag, at: float) -> list[str]:
        """`gdag/stale/<output>` for each output older than its `fresh_within`."""
        if not any(d.fresh_within is not None for d in dag.outputs.values()):
            return []
        from gdag.freshness import publish_stale, stale_output

        done = publish_stale(ws, dag, at)
        for name in done:
            self.report("stale", {"node": "", "output": stale_output(name)})
        return done

    def _pause(self) -> float:
        """Seconds until the next round: the interval, or less when a tick comes sooner.
        (With `GDAG_NOW` the clock stands still: no tick comes.)"""
        from gdag.clock import is_frozen, now

        if self._next_tick is None or is_frozen():
            return self.interval
        return max(0.0, min(self.interval, self._next_tick - now()))

    def loop(self, max_ticks: int | None = None) -> None:
        last = None
        ticks = 0
        try:
            while max_ticks is None or ticks < max_ticks:
                try:
                    last = self.tick(last)
                    self._write_error = None
                except OSError as exc:
                    # A full disk (ENOSPC, EDQUOT, EFBIG), a store gone read-only: what was
                    # not written is done again next round; say so once, and keep trying.
                    message = f"cannot write: {exc.strerror or exc}"
                    if message != self._write_error:
                        self.report("write-error", {"node": "", "error": message})
                    self._write_error = message
                    last = None
                ticks += 1
                from gdag.maintenance import after_round

                after_round()
                time.sleep(self._pause())
        finally:
            if self.executor is not None:
                self.executor.close()
                self.executor = None
            if self._netsem is not None:
                self._netsem.close()
                self._netsem = None

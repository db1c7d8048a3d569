"""Replaying a log from an offset under the current definition, without stopping publishers.

The new chain starts from the commit just before the offset, gains a `replay`
event carrying the current `dag.json`, then re-applies every external publish
event in order, running nodes after each as `gdag run` would. Nodes whose code
and inputs are unchanged are cache hits (the replaced log's cache counts), so
an unchanged stretch runs nothing. The live log is then moved by compare-and-
swap, after the events published meanwhile were replayed too; the old chain is
kept whole under refs/gdag/archive/.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gdag import state, trailers
from gdag.dag import Dag
from gdag.errors import GdagError, UsageError
from gdag.log import ARCHIVE_PREFIX, Event, Log, publish_events, republish
from gdag.retry import ROUNDS, Backoff
from gdag.state import read_dag
from gdag.trailers import format_message
from gdag.workspace import Workspace, new_id

if TYPE_CHECKING:
    from gdag.executors import Executor

Report = Callable[[str, dict[str, Any]], None]


@dataclass
class ReplayResult:
    log: str
    from_offset: int
    events: list[int] = field(default_factory=list)  # original offsets re-applied
    ran: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    archive: str | None = None
    tip: str | None = None
    kept: int = 0  # events kept as they were: the definition in force then is the current one

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Replay:
    def __init__(
        self,
        ws: Workspace,
        jobs: int = 1,
        report: Report | None = None,
        cluster: str | None = None,
    ) -> None:
        self.ws = ws
        self.store = ws.store
        self.jobs = jobs
        self.report: Report = report or (lambda kind, data: None)
        self.cluster = cluster
        # One executor for the whole replay (made at its first run): a run per event
        # must not start worker processes, or connect to a cluster, every time.
        self.executor: Executor | None = None

    def run(
        self,
        from_text: str,
        to_text: str | None = None,
        onto: str | None = None,
        only: list[str] | None = None,
        dry_run: bool = False,
    ) -> ReplayResult:
        try:
            return self._run(from_text, to_text, onto, only, dry_run)
        finally:
            if self.executor is not None:
                self.executor.close()
                self.executor = None

    def _run(
        self,
        from_text: str,
        to_text: str | None = None,
        onto: str | None = None,
        only: list[str] | None = None,
        dry_run: bool = False,
    ) -> ReplayResult:
        live = self.ws.log
        if to_text is not None and onto is None and not dry_run:
            raise UsageError(
                "--to without --onto would drop the events after it from the live log",
                hint="replay a range into a new log with --onto NAME",
            )
        tip = live.require_tip()
        start = live.event(live.resolve_offset(from_text)).offset
        stop = live.event(live.resolve_offset(to_text)).offset if to_text is not None else None
        base = live.commit_at(max(start - 1, 0))
        events = [
            e for e in publish_events(live, tip, max(start, 1)) if stop is None or e.offset <= stop
        ]
        from gdag.retention import check_replayable

        check_replayable(  # a value gc pruned cannot be replayed: refuse before starting
            self.store,
            self.store.read_commit(base).tree,
            ((self.store.read_commit(e.sha).tree, e.outputs[0]) for e in events),
        )
        result = ReplayResult(live.name, start)
        if dry_run:
            for e in events:
                self.report("would-replay", {"offset": e.offset, "outputs": e.outputs})
            result.events = [e.offset for e in events]
            return result
        dag = self.ws.current_dag(tip, record=onto is None)
        if onto is None and not only:
            # Events recorded under the current definition would come out the same:
            # keep them as they are and replay only from the first that was not.
            first = self._first_changed(live, tip, start, dag)
            result.kept = sum(1 for e in events if first is None or e.offset < first)
            if first is None:
                result.tip = tip.decode()
                return result
            events = [e for e in events if e.offset >= first]
            start, base = first, live.commit_at(first - 1)
            result.from_offset = start
        work = Log(self.store, onto or f"{live.name}.replay-{new_id('')}")
        if onto is not None and work.tip() is not None:
            raise GdagError(f"log {onto!r} exists already", hint="--onto takes a new log name")
        self._begin(work, base, dag, start, tip)
        try:
            cache_roots: list[bytes | None] = [self.store.read_commit(tip).tree]
            self._apply(work, events, only, cache_roots, result)
            if onto is None:
                self._swap(live, work, tip, start, only, cache_roots, result)
        except BaseException:
            self._drop(work)  # a refused or interrupted replay leaves no half-built log
            raise
        result.tip = (work.tip() or b"").decode() if onto else (live.tip() or b"").decode()
        return result

    def _first_changed(self, live: Log, tip: bytes, start: int, dag: Dag) -> int | None:
        """The first offset from `start` that a replay would not reproduce as it is.

        An event is reproduced when it ran under the definition now in force (same
        node code hashes and declared types in its parent's `dag.json`) and, for a
        publish, the log reached quiescence under it before the next publish, as a
        replay (which runs after each publish) would.
        """
        from gdag.runner import Engine, Pending

        want = _shape(dag)
        engine = Engine(Workspace(self.store, live.name))
        settled = tip  # the commit just before the next (later) publish
        cur: bytes | None = tip
        first: int | None = None
        while cur is not None:
            event = live.event(cur)
            if event.offset < max(start, 1):
                break
            parent = live.first_parent(cur)
            if event.kind in (trailers.PUBLISH, trailers.SESSION):
                root = self.store.read_commit(parent).tree if parent else None
                if _shape(read_dag(self.store, root) or Dag.empty()) != want:
                    first = event.offset
            if event.kind == trailers.PUBLISH:
                if any(
                    isinstance(engine.pending(n, node, settled, False), Pending)
                    for n, node in dag.nodes.items()
                ):
                    first = event.offset  # not run to quiescence before the next publish
                settled = parent or cur
            cur = parent
        return first

    def _begin(self, work: Log, base: bytes, dag: Dag, start: int, old: bytes) -> None:
        if not self.store.cas_ref(work.ref, None, base):
            raise GdagError(f"log {work.name!r} exists already")

        def build(parent: bytes | None, offset: int) -> tuple[bytes, str, list[bytes]]:
            tree = state.write_dag(self.store, parent, dag.to_json())
            lines = [
                (trailers.OFFSET, str(offset)),
                (trailers.EVENT, trailers.REPLAY),
                (trailers.REPLAY_FROM, str(start)),
                (trailers.REPLAY_OF, old.decode()),
            ]
            return tree, format_message(f"replay from offset {start}", lines), []

        work.append(build)

    def _apply(
        self,
        work: Log,
        events: list[Event],
        only: list[str] | None,
        cache_roots: list[bytes | None],
        result: ReplayResult,
    ) -> None:
        from gdag.runner import Engine

        ws = Workspace(self.store, work.name)
        if self.executor is None:
            from gdag.executors import executor_for, spec_for

            dag = self.ws.current_dag(self.ws.log.require_tip(), record=False)
            self.executor = executor_for(spec_for(self.cluster, dag.cluster))
        engine = Engine(ws, self.jobs, self._relay(result), private=True, executor=self.executor)
        engine.cache_roots = cache_roots
        for event in events:
            republish(work, event)
            result.events.append(event.offset)
            summary = engine.run(only or None)
            result.failed += summary.failed
        if not events:
            # Replaying from a session or `dag` event after the last publish: nothing is
            # republished, but the base (cut before that event) may leave nodes stale.
            result.failed += engine.run(only or None).failed

    def _relay(self, result: ReplayResult) -> Report:
        def report(kind: str, data: dict[str, Any]) -> None:
            if kind == "finish" and data["merged"] == "merged":
                (result.cached if data.get("cached") else result.ran).append(data["node"])
            self.report(kind, data)

        return report

    def _swap(
        self,
        live: Log,
        work: Log,
        seen: bytes,
        start: int,
        only: list[str] | None,
        cache_roots: list[bytes | None],
        result: ReplayResult,
    ) -> None:
        """Catch up with events published meanwhile, archive the old chain, move the log."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + new_id("")[-6:]
        archive = f"{ARCHIVE_PREFIX}{live.name}/{stamp}"
        archived: bytes | None = None
        backoff = Backoff(ROUNDS, f"moving log {live.name!r} to the replayed chain")
        while True:
            current = live.require_tip()
            if current != seen:
                seen_offset = live.event(seen).offset
                newer = publish_events(live, current, seen_offset + 1)
                self._apply(work, newer, only, cache_roots, result)
                seen = current
            if not self.store.cas_ref(archive, archived, current):
                raise GdagError(f"archive ref {archive} changed under this replay")
            archived = current
            if self.store.cas_ref(live.ref, current, work.require_tip()):
                break
            backoff.wait()
        self._drop(work)
        result.archive = archive

    def _drop(self, work: Log) -> None:
        """Delete the work log and the leases and sessions made for it: nobody else knows it."""
        tip = work.tip()
        if tip is not None:
            self.store.delete_ref(work.ref, tip)
        for kind in ("leases", "sessions"):
            for ref, sha in self.store.list_refs(f"refs/gdag/{kind}/{work.name}/").items():
                self.store.delete_ref(ref, sha)


def _shape(dag: Dag) -> Any:
    """What decides the results: each node's code hash and the declared output types."""
    return ({n: v.code for n, v in dag.nodes.items()}, dag.to_json()["outputs"])

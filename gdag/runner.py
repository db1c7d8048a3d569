"""Staleness, scheduling and threads: run stale nodes until quiescent. Reports, never prints.

Staleness is derived from the log tip alone: a node is stale when the versions
of its inputs differ from those its last completed session consumed (as
recorded in `nodes/<node>/@done.json`), or its code hash changed.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gdag import cache, state, trailers
from gdag.dag import FAILURES, failure_output
from gdag.errors import SecretMissingError, UnknownError
from gdag.lease import Leases, NodeLeases
from gdag.names import is_pattern
from gdag.nodestates import FAILED, NEVER_RUN, RUNNING, STALE, UP_TO_DATE, WAITING
from gdag.session import (
    Merged,
    Outcome,
    Session,
    Spec,
    list_sessions,
    new_session_id,
    read_done,
    read_failed,
)
from gdag.workspace import Workspace

if TYPE_CHECKING:
    from gdag.dag import Dag, Node
    from gdag.executors import Executor
    from gdag.graph import Shape

Report = Callable[[str, dict[str, Any]], None]


@dataclass
class Pending:
    """Why a node should run now, and on what."""

    node: str
    reason: str
    inputs: dict[str, int]
    state_at: bytes
    attempt: int = 1
    redo: bool = False  # an "each" node's failed event, run again (`--retry-failed`)


@dataclass
class NodeState:
    node: str
    state: str  # one of gdag.nodestates.ALL
    reason: str = ""
    last: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "state": self.state,
            "reason": self.reason,
            "last_session": (self.last or {}).get("session"),
            "last_status": (self.last or {}).get("status"),
        }


@dataclass
class Summary:
    ran: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)
    planned: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def add(self, other: Summary) -> None:
        """Count another run's nodes in this one (its plan aside)."""
        self.ran += other.ran
        self.failed += other.failed
        self.superseded += other.superseded
        self.recovered += other.recovered


def current_versions(ws: Workspace, root: bytes, node: Node) -> tuple[dict[str, int], bool, bool]:
    """(output -> version of every input present, any present, all present)."""
    versions: dict[str, int] = {}
    present = []
    for target in node.inputs.values():
        names = list(state.list_outputs(ws.store, root, target)) if is_pattern(target) else [target]
        seen = False
        for name in filter(node.sees, names):
            out = state.read_output(ws.store, root, name)
            if out is not None:
                versions[name] = out.version
                seen = True
        present.append(seen)
    return versions, any(present) or not present, all(present)


def retryable(node: Node, outcome: Outcome, failed: int) -> bool:
    """Whether a node that failed `failed` times, the last with `outcome`, runs again:
    while its `retries` last, and if its `retry_on` names what happened (an exit status,
    or "timeout"; none named: any failure)."""
    if failed >= node.retries:
        return False
    if not node.retry_on:
        return True
    if outcome.error == "timeout":
        return "timeout" in node.retry_on
    return outcome.exit_code in node.retry_on


class Subscribers:
    """Which nodes subscribe to an output: a dict for plain names, a list for patterns."""

    def __init__(self, dag: Dag) -> None:
        self.plain: dict[str, set[str]] = {}
        self.patterns: list[tuple[str, str]] = []
        for name, node in dag.nodes.items():
            for target in node.inputs.values():
                if is_pattern(target):
                    self.patterns.append((target, name))
                else:
                    self.plain.setdefault(target, set()).add(name)

    def of(self, output: str) -> set[str]:
        from gdag.names import matches

        found = set(self.plain.get(output, ()))
        found.update(node for pattern, node in self.patterns if matches(pattern, output))
        found.discard(output.removeprefix(FAILURES) if output.startswith(FAILURES) else "")
        return found


class Engine:
    """Runs the nodes of one workspace's log."""

    def __init__(
        self,
        ws: Workspace,
        jobs: int = 1,
        report: Report | None = None,
        *,
        private: bool = False,
        speculative: bool = False,
        leases: NodeLeases | None = None,
        executor: Executor | None = None,
        executor_spec: str | None = None,
    ) -> None:
        # The log and leases come from the caller: local ones, or ones wired to a shared
        # remote (`remote.remote_log`, `remote.remote_leases`).
        self.ws = ws
        # 0 jobs: as many as the executor has slots (`slots`), known once it exists.
        self.jobs = max(0, jobs)
        self.report: Report = report or (lambda kind, data: None)
        self.leases = leases or Leases(ws.store, ws.log.name)
        # A private log (a replay's work log) has no other runner: no leases needed.
        self.private = private
        self.speculative = speculative
        # Further trees whose run cache counts (a replay consults the log it replaces).
        self.cache_roots: list[bytes | None] = []
        self._shapes: dict[str, Shape] = {}
        # Where node jobs run; without one, `run` makes one from `executor_spec` (default:
        # local) once there is work, and closes it at the end.
        self.executor = executor
        self.executor_spec = executor_spec
        self._jobs: dict[str, Executor] = {}  # the jobs running now, and where
        self._local: Executor | None = None  # for `local = true` nodes beside a cluster
        self._jobs_lock = threading.Lock()
        self._stopping = threading.Event()
        self._waiting = 0  # sessions waiting to retry: they hold a thread, not a job slot
        self._active = 0  # jobs executing now (a retry resumes only below `jobs`)
        self._refused: dict[str, str] = {}  # nodes not started for want of their secrets
        self._redone: set[tuple[str, str]] = set()  # failed "each" events tried this run
        # Output name -> {version: offset that published it}, learned by `_offset_of`.
        self._version_offsets: dict[str, dict[int, int]] = {}

    def _shape(self, dag: Dag) -> Shape:
        """A definition's node order and upstream masks (`graph.node_shape`), computed
        once per definition."""
        key = repr(
            sorted((n, sorted(v.inputs.values()), v.publishes) for n, v in dag.nodes.items())
        )
        if key not in self._shapes:
            from gdag.graph import node_shape

            self._shapes[key] = node_shape(dag)
        return self._shapes[key]

    # -- staleness ---------------------------------------------------------------

    def pending(self, name: str, node: Node, tip: bytes, retry_failed: bool) -> Pending | str:
        """The work a node has now, or the reason it has none."""
        root = self.ws.store.read_commit(tip).tree
        versions, any_present, all_present = current_versions(self.ws, root, node)
        if not (all_present if node.when == "all" else any_present):
            return "waiting for inputs"
        done = read_done(self.ws.store, root, name)
        if node.mode == "each" and retry_failed:
            redo = self._failed_event(root, name)
            if redo is not None:
                return redo
        if done is None:
            return self._job(name, node, tip, versions, done, "never ran")
        if done.get("code") != node.code:
            return self._job(name, node, tip, versions, done, "code changed")
        recorded = done.get("inputs", {})
        if recorded == versions:
            if done.get("status") == "failed" and retry_failed and node.mode != "each":
                return Pending(name, "retry", versions, tip, int(done.get("attempt", 1)) + 1)
            return "failed" if done.get("status") == "failed" else "up to date"
        changed = sorted(
            n for n in set(versions) | set(recorded) if versions.get(n) != recorded.get(n)
        )
        why = ", ".join(
            f"{n} v{recorded.get(n, '-')}->v{versions.get(n, '-')}" for n in changed[:3]
        )
        return self._job(name, node, tip, versions, done, f"inputs changed: {why}")

    def _failed_event(self, root: bytes, name: str) -> Pending | None:
        """The oldest failed event of an "each" node not tried again in this run."""
        for event in read_failed(self.ws.store, root, name):
            key = (name, json.dumps(event["inputs"], sort_keys=True))
            if key in self._redone:
                continue
            return Pending(
                name,
                f"retry (event at offset {event['offset']})",
                dict(event["inputs"]),
                event["state"].encode(),
                int(event.get("attempt", 1)) + 1,
                redo=True,
            )
        return None

    def _job(
        self,
        name: str,
        node: Node,
        tip: bytes,
        versions: dict[str, int],
        done: dict[str, Any] | None,
        reason: str,
    ) -> Pending:
        if node.mode != "each":
            return Pending(name, reason, versions, tip)
        # "each": the oldest event not consumed yet, also after a code change (new code,
        # same events); with none left, one run on the latest state.
        recorded = (done or {}).get("inputs", {})
        offset = self._earliest_new_event(tip, versions, recorded)
        if offset is None:
            return Pending(name, reason, versions, tip)
        at = self.ws.log.commit_at(offset)
        at_versions, _, _ = current_versions(self.ws, self.ws.store.read_commit(at).tree, node)
        return Pending(name, f"{reason} (event at offset {offset})", at_versions, at)

    def _earliest_new_event(
        self, tip: bytes, versions: dict[str, int], recorded: dict[str, int]
    ) -> int | None:
        """The offset of the oldest input version not yet consumed."""
        root = self.ws.store.read_commit(tip).tree
        earliest: int | None = None
        for name, version in versions.items():
            seen = recorded.get(name, 0)
            if version <= seen:
                continue
            off = self._offset_of(root, name, seen + 1)
            if off is not None:
                earliest = off if earliest is None else min(earliest, off)
        return earliest

    def _offset_of(self, root: bytes, name: str, want: int) -> int | None:
        """The offset that published version `want` of output `name` (or the oldest
        version reachable from `root` when `want` is gone), walking `prev` links back
        from `root`. Every offset passed is remembered, so the sessions of an `each`
        node over N pending events walk N links in all, not N per session. A
        remembered offset is used only after the log shows `want` there: a replay may
        have rewritten the log since."""
        known = self._version_offsets.setdefault(name, {})
        store, log = self.ws.store, self.ws.log
        if want in known:
            try:
                out = state.read_output(
                    store, store.read_commit(log.commit_at(known[want])).tree, name
                )
            except UnknownError:  # the log is shorter now
                out = None
            if out is not None and out.version == want and int(out.meta["offset"]) == known[want]:
                return known[want]
            known.clear()
        out = state.read_output(store, root, name)
        cursor: tuple[bytes, int] | None = None
        while out is not None and out.version > want and out.meta.get("prev") is not None:
            prev = int(out.meta["prev"])
            commit = log.commit_at(prev, near=cursor)
            cursor = (commit, prev)
            out = state.read_output(store, store.read_commit(commit).tree, name)
            if out is not None:
                known[out.version] = prev
        return None if out is None else int(out.meta["offset"])

    def status(self) -> list[NodeState]:
        tip = self.ws.log.require_tip()
        dag = self.ws.current_dag(tip, record=False)
        from gdag.graph import node_order

        root = self.ws.store.read_commit(tip).tree
        from gdag.session import list_sessions

        left: dict[str, list[str]] = {}
        for sid in list_sessions(self.ws.log):
            left.setdefault(sid.rsplit(".", 2)[0], []).append(sid)
        states = []
        for name in node_order(dag):
            node = dag.nodes[name]
            done = read_done(self.ws.store, root, name)
            holder = self.leases.holder(name)
            if holder is not None:
                states.append(NodeState(name, RUNNING, self._running_reason(holder), done))
                continue
            p = self.pending(name, node, tip, retry_failed=False)
            failed = read_failed(self.ws.store, root, name) if node.mode == "each" else []
            if failed:  # an "each" node's failed events stay visible until redone
                offsets = ", ".join(str(e["offset"]) for e in failed[:5])
                more = ", …" if len(failed) > 5 else ""
                note = (
                    f"{len(failed)} failed event(s) not processed (offset {offsets}{more}; "
                    "`gdag run --retry-failed`)"
                )
                if not isinstance(p, Pending):
                    states.append(NodeState(name, FAILED, note, done))
                    continue
                p.reason += f"; {note}"
            if isinstance(p, Pending):
                kind = NEVER_RUN if done is None else STALE
                reason = p.reason
                # No live holder: a run was killed under it, unless the run ended just
                # now (the session is gone then).
                gone = set(left.get(name, [])) - set(list_sessions(self.ws.log))
                still = [sid for sid in left.get(name, []) if sid not in gone]
                if still:
                    reason += f"; a killed run left {still[-1]} (`gdag run` recovers it)"
                states.append(NodeState(name, kind, reason, done))
            else:
                kind = {"up to date": UP_TO_DATE, "failed": FAILED}.get(p, WAITING)
                reason = (done or {}).get("error") or "" if kind == FAILED else p
                states.append(NodeState(name, kind, reason or "", done))
        return states

    def _running_reason(self, holder: Any) -> str:
        where = f"pid {holder.pid} on {holder.host}"
        if holder.session:
            try:
                producer = Session.open(self.ws.log, holder.session).spec.speculates_on
            except (UnknownError, KeyError):
                producer = None
            if producer:
                return f"speculative on {producer}, {where}"
        return where

    def why(self, name: str) -> dict[str, Any]:
        """The node's state, the reason, its last session and the input versions now."""
        tip = self.ws.log.require_tip()
        dag = self.ws.current_dag(tip, record=False)
        if name not in dag.nodes:
            raise UnknownError(
                f"no node {name!r} in the definition", hint="`gdag status` lists the nodes"
            )
        st = next(s for s in self.status() if s.node == name)
        root = self.ws.store.read_commit(tip).tree
        current, _, _ = current_versions(self.ws, root, dag.nodes[name])
        return {
            "node": name,
            "state": st.state,
            "reason": st.reason,
            "last": st.last,
            "current": current,
        }

    # -- recovery ----------------------------------------------------------------

    def recover(self, summary: Summary, dag: Dag | None = None) -> None:
        """Merge back finished sessions of dead runs; drop unfinished ones.

        Speculative sessions come after the rest (their producers first, in chains),
        and merge only if their producer's session merged with status ok.
        """
        from gdag.execute import sweep_log_pointers
        from gdag.speculate import producer_merged

        self.ws.store.sweep()
        pending = []
        for sid in list_sessions(self.ws.log):
            try:
                session = Session.open(self.ws.log, sid)
            except UnknownError:
                continue  # merged or dropped meanwhile
            holder = self.leases.holder(session.spec.node)
            if holder is not None and holder.session == sid:
                continue  # still running
            pending.append(session)
        progress = True
        while pending and progress:
            progress = False
            for session in list(pending):
                producer = session.spec.speculates_on
                if producer is not None and producer in {s.id for s in pending}:
                    continue  # its producer is recovered first
                pending.remove(session)
                progress = True
                if producer is not None and not producer_merged(self.ws.log, producer):
                    session.drop()
                    self.report("dropped", {"node": session.spec.node, "session": session.id})
                    continue
                self._recover_one(session, summary, dag)
        sweep_log_pointers(self.ws.store, self.ws.log.name, set(list_sessions(self.ws.log)))

    def _recover_one(self, session: Session, summary: Summary, dag: Dag | None) -> None:
        node = dag.nodes.get(session.spec.node) if dag is not None else None
        if not session.is_done and node is not None:
            self._reattach(session, node, dag)  # type: ignore[arg-type]
        if session.is_done:
            merged = session.merge_back(recovering=True)
            self.report(
                "recovered",
                {"node": session.spec.node, "session": session.id, "result": merged.status},
            )
            summary.recovered.append(session.spec.node)
        else:
            session.drop()
            self.report("dropped", {"node": session.spec.node, "session": session.id})

    # -- running -----------------------------------------------------------------

    def run(
        self,
        targets: list[str] | None = None,
        *,
        dry_run: bool = False,
        keep_going: bool = True,
        retry_failed: bool = False,
    ) -> Summary:
        summary = Summary()
        dag = self.ws.current_dag(self.ws.log.require_tip(), record=not dry_run)
        tip = self.ws.log.require_tip()  # after any `dag` event the line above appended
        if not targets and not dry_run and self._is_quiescent(dag, tip, retry_failed):
            return summary  # the common no-op: answered without building the graph
        if targets:
            self._check_targets(dag, targets)
        plan, shape, order = self._plan(dag, targets)
        summary.planned = order
        if dry_run:
            for name in order:
                p = self.pending(name, dag.nodes[name], tip, retry_failed)
                if isinstance(p, Pending):
                    self.report("would-run", {"node": name, "reason": p.reason})
            return summary
        own = self.executor is None
        if own:
            from gdag.executors import executor_for, spec_for

            self.executor = executor_for(self.executor_spec or spec_for(None, dag.cluster))
        if self.jobs == 0:
            self.jobs = max(1, getattr(self.executor, "slots", 0) or os.cpu_count() or 1)
        try:
            self.recover(summary, dag)
            while self._schedule(dag, order, plan, shape, summary, keep_going, retry_failed):
                # Another process recorded a new definition meanwhile (an edited gdag.toml
                # and a publish, say): go on under the one in force on the log.
                tip = self.ws.log.require_tip()
                dag = state.read_dag(self.ws.store, self.ws.store.read_commit(tip).tree) or dag
                plan, shape, order = self._plan(dag, targets)
            if self._refused:
                names = sorted(self._refused)
                raise SecretMissingError(
                    "; ".join(self._refused[n] for n in names),
                    hint="export the variable before running gdag (its value never enters "
                    "the log); the other nodes ran",
                )
        finally:
            if self._local is not None:
                self._local.close()
                self._local = None
            if own and self.executor is not None:
                self.executor.close()
                self.executor = None
        return summary

    def _plan(self, dag: Dag, targets: list[str] | None) -> tuple[set[str], Shape, list[str]]:
        """The nodes a run of `targets` (None: all) may have to run, the definition's
        shape, and those nodes in its order."""
        from gdag.graph import traversal

        plan = set(dag.nodes)
        if targets:
            plan = traversal(dag, targets)
            # A planned node's failure is an event: its watchers (and what follows them)
            # may have to run too, though no edge of the graph says so.
            watchers = self._failure_watchers(dag, plan) - plan
            if watchers:
                plan |= traversal(dag, sorted(watchers))
        shape = self._shape(dag)
        return plan, shape, [n for n in shape.order if n in plan]

    def _schedule(
        self,
        dag: Dag,
        order: list[str],
        plan: set[str],
        shape: Shape,
        summary: Summary,
        keep_going: bool,
        retry_failed: bool,
    ) -> bool:
        """Start ready nodes on the pool until nothing in the plan is stale or running;
        True when it stopped early because the log's definition is no longer `dag`
        (what runs finishes first).

        Staleness is recomputed only for nodes whose inputs (or own record) changed
        since the last look, found from the trailers of the events in between, so a
        round costs O(what changed), not O(nodes). A node starts only when none of
        its upstream nodes has work or is running (an AND of `shape`'s bit masks).
        """
        subscribers = Subscribers(dag)
        speculator = self._speculator(dag)
        rank = {name: i for i, name in enumerate(order)}
        running: dict[Future[Any], str] = {}
        started: dict[Future[Any], Pending] = {}  # what each normal run was started on
        retried: set[str] = set()  # --retry-failed re-runs a failed node once per run
        known: dict[str, Pending] = {}  # nodes with work, as of the last look
        dirty, last_tip, stop = set(order), b"", False
        redefined = False  # the log's definition changed: start nothing more
        # Sessions waiting to retry keep their threads: room for them beside the jobs.
        waiters = sum(1 for name in plan if dag.nodes[name].retries)
        with ThreadPoolExecutor(max_workers=self.jobs + waiters) as pool:
            try:
                while True:
                    tip = self.ws.log.require_tip()
                    if last_tip and tip != last_tip:
                        changed = self._changed_nodes(last_tip, tip, subscribers)
                        dirty |= set(order) if changed is None else changed & plan
                        if changed is None and not redefined:
                            root = self.ws.store.read_commit(tip).tree
                            redefined = state.read_dag_json(self.ws.store, root) != dag.to_json()
                    last_tip = tip
                    busy = set(running.values())
                    for name in dirty - busy:
                        p = self.pending(
                            name, dag.nodes[name], tip, retry_failed and name not in retried
                        )
                        if isinstance(p, Pending):
                            known[name] = p
                        else:
                            known.pop(name, None)
                    dirty = dirty & busy
                    blocked = 0
                    for name in known.keys() | busy:
                        blocked |= shape.bit[name]
                    elsewhere = []
                    # After a failure stops the run, only what reports failures still starts.
                    startable = known if not stop else self._failure_watchers(dag, summary.failed)
                    if redefined:
                        startable = set()
                    for name in sorted(known.keys() & startable, key=rank.__getitem__):
                        if self._busy(running) or shape.upstream[name] & blocked:
                            continue
                        if not self.private and self.leases.holder(name) is not None:
                            elsewhere.append(name)
                            continue
                        if self._pool_full(dag, dag.nodes[name]):
                            elsewhere.append(name)  # its pool's slots are taken: wait
                            continue
                        if self._refuse_without_secrets(dag.nodes[name]):
                            known.pop(name)
                            continue
                        p = known.pop(name)
                        if p.reason == "retry":
                            retried.add(name)
                        if p.redo:  # each failed event is tried once per run
                            self._redone.add((name, json.dumps(p.inputs, sort_keys=True)))
                        sid = new_session_id(name)
                        if speculator is not None:
                            speculator.watch(name, sid)
                        fut = pool.submit(self._run_one, dag, p, tip, sid, speculator)
                        running[fut] = name
                        started[fut] = p
                    if speculator is not None and not stop and not redefined:
                        busy = set(running.values())
                        for prod_node, prod_sid, head, output in speculator.poll():
                            for sub in sorted(subscribers.of(output) & plan - busy):
                                if self._busy(running) or not speculator.enabled_for(
                                    prod_node, sub
                                ):
                                    continue
                                if dag.nodes[sub].secrets and self._lacks_secrets(dag.nodes[sub]):
                                    continue  # not without them; the plain run refuses it
                                sid = new_session_id(sub)
                                speculator.watch(sub, sid)
                                fut = pool.submit(
                                    self._run_speculative, dag, sub, prod_sid, head, sid, speculator
                                )
                                running[fut] = sub
                                busy.add(sub)
                    if not running:
                        if elsewhere and not stop and not redefined:
                            time.sleep(0.05)  # another process holds a lease: wait for its result
                            dirty.update(elsewhere)
                            continue
                        return redefined
                    done, _ = wait(
                        list(running),
                        return_when=FIRST_COMPLETED,
                        # A speculation to poll, or a session that may start waiting to
                        # retry (freeing its slot): look again soon.
                        timeout=0.02 if speculator is not None else 0.05 if waiters else None,
                    )
                    for fut in done:
                        name = running.pop(fut)
                        dirty.add(name)
                        began = started.pop(fut, None)
                        if began is not None and fut.result() is None:
                            # Not run after all (its lease or its pool's last slot went to
                            # another process): a retry is still owed.
                            retried.discard(name)
                            key = (name, json.dumps(began.inputs, sort_keys=True))
                            self._redone.discard(key)
                        stop = self._record(name, fut.result(), summary) and not keep_going or stop
            except BaseException:
                self._stop_jobs()  # Ctrl-C or SIGTERM: running nodes are stopped, not waited for
                raise

    def _busy(self, running: dict[Future[Any], str]) -> bool:
        """Whether every job slot is taken (sessions waiting to retry take none)."""
        with self._jobs_lock:
            return len(running) - self._waiting >= self.jobs

    @staticmethod
    def _failure_watchers(dag: Dag, failed: Iterable[str]) -> set[str]:
        """Nodes subscribed to the failure events of the nodes `failed`."""
        events = [failure_output(name) for name in failed]
        return {
            name
            for name, node in dag.nodes.items()
            if any(node.subscribes_to(output) for output in events)
        }

    @staticmethod
    def _record(name: str, result: tuple[Outcome, Merged] | None, summary: Summary) -> bool:
        """Count a finished job in the summary; True if the node failed."""
        if result is None:
            return False
        outcome, merged = result
        if merged.status == "dropped":
            return False  # a speculation that did not hold: the node runs again normally
        if merged.status == "superseded":
            summary.superseded.append(name)
        elif outcome.status == "ok":
            summary.ran.append(name)
        else:
            summary.failed.append(name)
            return True
        return False

    def _changed_nodes(
        self, old: bytes, new: bytes, subscribers: Subscribers, limit: int = 1000
    ) -> set[str] | None:
        """Nodes whose staleness may differ between two tips; None if unknown (recheck all)."""
        changed: set[str] = set()
        cur: bytes | None = new
        for _ in range(limit):
            if cur == old:
                return changed
            if cur is None:
                return None
            event = self.ws.log.event(cur)
            if event.kind in ("dag", "replay", "init"):
                return None
            for output in event.outputs:
                changed |= subscribers.of(output)
            node = event.first(trailers.NODE)
            if node is not None:
                changed.add(node)
            cur = self.ws.log.first_parent(cur)
        return None

    def _is_quiescent(self, dag: Dag, tip: bytes, retry_failed: bool) -> bool:
        if list_sessions(self.ws.log):
            return False
        return not any(
            isinstance(self.pending(name, node, tip, retry_failed), Pending)
            for name, node in dag.nodes.items()
        )

    def _check_targets(self, dag: Dag, targets: list[str]) -> None:
        from gdag.graph import traversal
        from gdag.names import check_output_name

        root = self.ws.store.read_commit(self.ws.log.require_tip()).tree
        for target in targets:
            if target in dag.nodes:
                continue
            check_output_name(target, allow_pattern=True, what="node or output")
            has_value = (
                next(iter(state.list_outputs(self.ws.store, root, target)), None) is not None
                if is_pattern(target)
                else state.read_output(self.ws.store, root, target) is not None
            )
            known = bool(traversal(dag, [target])) or target in dag.outputs or has_value
            if not known:
                raise UnknownError(
                    f"no node or output {target!r}",
                    hint="`gdag status` lists the nodes, `gdag lookup '**'` the outputs",
                )

    def _run_one(
        self, dag: Dag, p: Pending, tip: bytes, sid: str, speculator: Any = None
    ) -> tuple[Outcome, Merged] | None:
        node = dag.nodes[p.node]
        resolution = "dropped"
        held = None if self.private else self.leases.take(p.node, sid)
        if held is None and not self.private:
            if speculator is not None:
                speculator.resolve(sid, resolution)
            return None
        slot: Any = None
        try:
            slot = self._take_pool_slot(dag, node, sid)
            if slot is False:  # another process took the pool's last slot meanwhile
                return None
            state_root = self.ws.store.read_commit(p.state_at).tree
            key = cache.cache_key(self.ws.store, state_root, node) if node.cache else None
            spec = Spec(p.node, node.code, p.inputs, tip, p.state_at, p.attempt, key, redo=p.redo)
            hit = key and cache.lookup(self.ws.store, [state_root, *self.cache_roots], key)
            if hit:
                session = Session.adopt(self.ws.log, spec, hit, sid)
                outcome = Outcome("ok", 0, cached=session.overrides["cached"])
            else:
                session = Session.start(self.ws.log, spec, sid)
                self.report("start", {"node": p.node, "session": sid, "reason": p.reason})
                ran = self._attempts(session, node, dag)
                if ran is None:
                    return None
                outcome = ran
                session.finish(outcome)
            merged = session.merge_back()
            self._report_finish(p.node, sid, outcome, merged, cached=outcome.cached)
            if outcome.status == "ok" and merged.status != "dropped":
                resolution = "merged"
            return outcome, merged
        finally:
            if speculator is not None:
                speculator.resolve(sid, resolution)
            if slot:
                slot.release()
            if held is not None:
                held.release()

    def _pool_slots(self, dag: Dag, node: Node) -> list[str]:
        """The lease names of the node's pool's slots ("@" never starts a node's name);
        none for a node without a pool, or a private log (no other process runs it)."""
        if node.pool is None or self.private:
            return []
        return [f"@pool.{node.pool}.{i}" for i in range(dag.pools.get(node.pool, 1))]

    def _pool_full(self, dag: Dag, node: Node) -> bool:
        slots = self._pool_slots(dag, node)
        return bool(slots) and all(self.leases.holder(s) is not None for s in slots)

    def _take_pool_slot(self, dag: Dag, node: Node, sid: str) -> Any:
        """A free slot of the node's pool, held like a node's lease (by every process
        on the log, and by the cluster's semaphores with a netsem); None without a pool,
        False when every slot is taken."""
        slots = self._pool_slots(dag, node)
        for slot in slots:
            held = self.leases.take(slot, sid)
            if held is not None:
                return held
        return False if slots else None

    @staticmethod
    def _lacks_secrets(node: Node) -> list[str]:
        from gdag.execute import missing_secrets

        return missing_secrets(node)

    def _refuse_without_secrets(self, node: Node) -> bool:
        """A node starts only with every secret it declares in gdag's environment;
        without, it is not started (the others go on) and the run ends with exit 3."""
        missing = self._lacks_secrets(node) if node.secrets else []
        if not missing:
            return False
        if node.name not in self._refused:
            message = (
                f"node {node.name!r} needs the secret {', '.join(missing)}, which is not set "
                "in gdag's environment"
            )
            self._refused[node.name] = message
            self.report("refused", {"node": node.name, "error": message})
        return True

    def _attempts(self, session: Session, node: Node, dag: Dag) -> Outcome | None:
        """Run the session's node, again after a failure while its `retries` last and
        its `retry_on` allows, waiting `retry_delay` doubled each time (jittered) without
        holding a job slot. Every attempt is in the outcome (`attempts`, and the log)."""
        done: list[dict[str, Any]] = []
        logs: list[bytes] = []
        while True:
            outcome = self._execute(session, node, dag, attempt=len(done) + 1)
            if outcome is None:
                return None
            if outcome.status == "ok" or not retryable(node, outcome, len(done)):
                break
            done.append(
                {
                    "attempt": len(done) + 1,
                    "status": outcome.status,
                    "exit_code": outcome.exit_code,
                    "error": outcome.error,
                    "duration": round(outcome.duration, 3),
                }
            )
            logs.append(outcome.log + f"gdag: attempt {len(done)} failed\n".encode())
            delay = node.retry_delay * 2 ** (len(done) - 1) * random.uniform(0.5, 1.0)
            self.report(
                "retry",
                {"node": node.name, "session": session.id, "attempt": len(done) + 1,
                 "delay": delay, "error": outcome.error},
            )  # fmt: skip
            with self._jobs_lock:
                self._waiting += 1  # a job slot is free while this session waits
            try:
                if self._stopping.wait(delay):
                    return None
            finally:
                with self._jobs_lock:
                    self._waiting -= 1  # counted as running again: no new job takes its slot
            while True:  # and its slot back before it runs again (`-j` holds)
                with self._jobs_lock:
                    if self._active < self.jobs:
                        break
                if self._stopping.wait(0.02):
                    return None
            session.restart()
        if done:
            outcome.attempts = done
            outcome.log = b"".join(logs) + outcome.log
        return outcome

    def _execute(self, session: Session, node: Node, dag: Dag, attempt: int = 1) -> Outcome | None:
        """Run the session's node as a job on the executor and record its outputs; None
        when the run is being stopped (the session is left for the next run to recover)."""
        from gdag.execute import run_session

        executor = self._executor_for(node)
        with self._jobs_lock:
            if self._stopping.is_set():
                return None
            self._jobs[session.id] = executor
            self._active += 1
        try:
            outcome = run_session(
                executor, self.ws.store, session, node, dag, self.ws.log.name, attempt
            )
        finally:
            with self._jobs_lock:
                self._jobs.pop(session.id, None)
                self._active -= 1
        return None if self._stopping.is_set() else outcome

    def _stop_jobs(self) -> None:
        """Start no more jobs and cancel the running ones (their process groups are
        terminated); their sessions stay unfinished, so the next run recovers them."""
        with self._jobs_lock:
            self._stopping.set()
            jobs = list(self._jobs.items())
        for job_id, executor in jobs:
            executor.cancel(job_id)

    def _executor_for(self, node: Node) -> Executor:
        """The run's executor, or a local one for a `local = true` node (it needs the
        work tree, or runs git) when the run's executor is elsewhere."""
        assert self.executor is not None
        if not node.local or self.executor.name == "local":
            return self.executor
        with self._jobs_lock:
            if self._local is None:
                from gdag.executors import executor_for

                self._local = executor_for("local")
            return self._local

    def _reattach(self, session: Session, node: Node, dag: Dag) -> None:
        """Finish a session whose job the executor still knows after a restart (a
        cluster keeps running what a killed coordinator submitted); else nothing."""
        from gdag.execute import Recorder, record

        if self.executor is None or not self.executor.reattach(session.id):
            return
        recorder = Recorder(self.ws.store, session, node, dag)
        try:
            session.finish(record(self.executor, session.id, recorder))
        finally:
            self.executor.forget(session.id)

    def _report_finish(
        self, node: str, sid: str, outcome: Outcome, merged: Merged, **extra: Any
    ) -> None:
        self.report(
            "finish",
            {
                "node": node,
                "session": sid,
                "status": outcome.status,
                "duration": outcome.duration,
                "error": outcome.error,
                "merged": merged.status,
                "offset": merged.offset,
                "outputs": merged.outputs,
                "unchanged": merged.unchanged,
                "log": outcome.log[-4096:],
                **extra,
            },
        )

    def _speculator(self, dag: Dag) -> Any:
        """A Speculator when speculation is on for this run or for any node, else None."""
        nodes = dag.nodes
        if not self.speculative and not any(n.speculative for n in nodes.values()):
            return None
        from gdag.speculate import Speculator

        def enabled_for(producer: str, subscriber: str) -> bool:
            return bool(
                self.speculative or nodes[producer].speculative or nodes[subscriber].speculative
            )

        return Speculator(self.ws.log, enabled_for)

    def _run_speculative(
        self,
        dag: Dag,
        name: str,
        producer: str,
        head: bytes,
        sid: str,
        speculator: Any,
    ) -> tuple[Outcome, Merged] | None:
        """Run `name` on a producer's advised state; merge only once the producer has."""
        from gdag.execute import gather_inputs, members
        from gdag.speculate import MERGED

        node = dag.nodes[name]
        resolution = "dropped"
        held = None if self.private else self.leases.take(name, sid)
        slot = None
        try:
            if held is None and not self.private:
                return None
            slot = self._take_pool_slot(dag, node, sid)
            if slot is False:
                return None  # the pool is full: the node runs normally later
            root = self.ws.store.read_commit(head).tree
            versions, _, _ = current_versions(self.ws, root, node)
            consumed = {
                iv.name: iv.entry.sha.decode()
                for value in gather_inputs(self.ws.store, root, node).values()
                for iv in members(value)
            }
            spec = Spec(name, node.code, versions, head, head, 1, None, producer, consumed)
            session = Session.start(self.ws.log, spec, sid)
            self.report(
                "start",
                {"node": name, "session": sid, "reason": "speculative", "speculative": producer},
            )
            ran = self._execute(session, node, dag)
            if ran is None:
                return None
            outcome = ran
            session.finish(outcome)
            if speculator.wait(producer) != MERGED:
                session.drop()
                self.report(
                    "speculation-dropped", {"node": name, "session": sid, "producer": producer}
                )
                return outcome, Merged("dropped")
            merged = session.merge_back()
            self._report_finish(name, sid, outcome, merged, speculative=producer)
            if outcome.status == "ok" and merged.status == "merged":
                resolution = "merged"
            return outcome, merged
        finally:
            speculator.resolve(sid, resolution)
            if slot:
                slot.release()
            if held is not None:
                held.release()

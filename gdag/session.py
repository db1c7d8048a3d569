"""One node run: its branch, its commits, its @done marker and its merge back into the log.

A session branch forks from the log tip with a start commit (node, inputs,
code hash), gains one commit per output published, and ends with a `done`
commit holding `nodes/<node>/@done.json`. The merge-back is one compare-and-
swap of the log ref: a merge commit whose second parent is the session head.
It refuses superseded work, so a session is applied at most once even when
two processes ran the same node.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from gdag import layout, state, trailers
from gdag.dag import failure_output
from gdag.errors import GdagError, UnknownError
from gdag.log import Log, NotApplicable
from gdag.repo import MODE_BLOB, Entry, Store
from gdag.retry import CAS, Backoff
from gdag.trailers import format_message

SESSION_PREFIX = "refs/gdag/sessions/"
LOG_TAIL = 64 * 1024
FAILURE_LOG_TAIL = 4096  # of a failed session's log, in its gdag/failures/<node> event


def session_ref(log: str, session_id: str) -> str:
    return f"{SESSION_PREFIX}{log}/{session_id}"


def new_session_id(node: str) -> str:
    return f"{node}.{int(time.time() * 1000):x}.{os.urandom(3).hex()}"


@dataclass
class Spec:
    """What a session runs on: the node, its code hash and the input versions it consumes."""

    node: str
    code: str
    inputs: dict[str, int]
    base: bytes  # the log commit the branch forks from
    state_at: bytes  # the log commit whose state the node sees (differs in "each" mode)
    attempt: int = 1
    cache_key: str | None = None
    # Speculation: the producer session whose advised outputs this one read, and the
    # value ids of every input it saw (checked against the log before merging).
    speculates_on: str | None = None
    consumed: dict[str, str] | None = None
    # Redoing an "each" node's failed event (one of its @failed.json): merged whatever
    # the node recorded since, and its @done is left alone unless it is that event's.
    redo: bool = False


@dataclass
class Outcome:
    status: str  # "ok" | "failed"
    exit_code: int | None = None
    log: bytes = b""
    duration: float = 0.0
    error: str | None = None
    cached: str | None = None  # the session whose outputs were reused (a cache hit)
    # The attempts before the last, for a node with `retries`: status, exit code, error,
    # duration of each.
    attempts: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Merged:
    """What a merge-back did."""

    status: str  # "merged" | "superseded"
    offset: int | None = None
    outputs: dict[str, int] = field(default_factory=dict)  # changed outputs -> new version
    unchanged: list[str] = field(default_factory=list)


class _Superseded(NotApplicable):
    pass


class _AlreadyMerged(NotApplicable):
    pass


def covers(done: dict[str, Any] | None, spec: Spec, status: str) -> bool:
    """Whether a node's recorded @done already covers what this session computed."""
    if not done or done.get("code") != spec.code:
        return False
    recorded: dict[str, int] = done.get("inputs", {})
    if any(recorded.get(name, 0) < version for name, version in spec.inputs.items()):
        return False
    if any(name not in spec.inputs for name in recorded) and recorded != spec.inputs:
        # The recorded run saw outputs this one did not: it is newer.
        return True
    if done.get("status") == "ok":
        return True
    return (
        int(done.get("attempt", 1)) >= spec.attempt
        or status == "failed"
        and (recorded != spec.inputs)
    )


def read_failed(store: Store, root: bytes | None, node: str) -> list[dict[str, Any]]:
    """An "each" node's failed events not redone yet, oldest first: inputs, offset and
    state commit of the event, the session that failed, its error and attempt."""
    if not root:
        return []
    paths = layout.of(store, root)
    entry = paths.get(store, root, paths.node_failed_path(node))
    return list(state.read_json_blob(store, entry.sha)) if entry is not None else []


def read_done(store: Store, root: bytes | None, node: str) -> dict[str, Any] | None:
    if not root:
        return None
    paths = layout.of(store, root)
    entry = paths.get(store, root, paths.node_done_path(node))
    return state.read_json_blob(store, entry.sha) if entry is not None else None


def find_start(store: Store, head: bytes) -> bytes:
    """The start commit of the session branch whose head is `head`."""
    cur = head
    while True:
        commit = store.read_commit(cur)
        if trailers.kind(commit.message) == trailers.SESSION_START:
            return cur
        cur = commit.parents[0]


class Session:
    """A session branch of one log."""

    def __init__(self, log: Log, session_id: str, spec: Spec, head: bytes) -> None:
        self.log = log
        self.store: Store = log.store
        self.id = session_id
        self.ref = session_ref(log.name, session_id)
        self.spec = spec
        self.head = head
        self.overrides: dict[str, Any] = {}
        self.adopted = False
        # Outputs collected after the node's exit, committed with its @done (`finish`).
        self._staged: list[tuple[str, Entry, dict[str, Any]]] = []

    # -- creating and reopening -----------------------------------------------

    @classmethod
    def adopt(cls, log: Log, spec: Spec, head: bytes, session_id: str) -> Session:
        """A cache hit: merge an earlier finished session's branch as this run's result.

        No new branch is made; the merge commit's second parent is the earlier
        session's head, so provenance points at the run that computed the values.
        """
        session = cls(log, session_id, spec, head)
        # The earlier session may be of a node since renamed (same code, same inputs):
        # its record is under its own name, which its id begins with.
        commit = log.store.read_commit(head)
        found = trailers.parse(commit.message).get(trailers.SESSION_ID)
        earlier_id = found[0] if found else None
        earlier_node = earlier_id.rsplit(".", 2)[0] if earlier_id else spec.node
        earlier = read_done(log.store, commit.tree, earlier_node) or {}
        session.overrides = {
            "session": session_id,
            "inputs": spec.inputs,
            "code": spec.code,
            "attempt": 1,
            "status": "ok",  # only ok sessions are in the run cache
            "cached": earlier.get("session") or earlier_id,
            "finished": time.time(),
        }
        session.adopted = True
        return session

    @classmethod
    def start(cls, log: Log, spec: Spec, session_id: str | None = None) -> Session:
        sid = session_id or new_session_id(spec.node)
        store = log.store
        lines = [
            (trailers.EVENT, trailers.SESSION_START),
            (trailers.NODE, spec.node),
            (trailers.SESSION_ID, sid),
            (trailers.CODE, spec.code),
            (trailers.ATTEMPT, str(spec.attempt)),
            (trailers.STATE, spec.state_at.decode()),
            *(((trailers.CACHE_KEY, spec.cache_key),) if spec.cache_key else ()),
            *((trailers.INPUT, f"{name}={v}") for name, v in sorted(spec.inputs.items())),
            *(((trailers.SPECULATES_ON, spec.speculates_on),) if spec.speculates_on else ()),
            *(((trailers.REDO, "1"),) if spec.redo else ()),
            *(
                (trailers.CONSUMED, f"{n}={sha}")
                for n, sha in sorted((spec.consumed or {}).items())
            ),
        ]
        tree = store.read_commit(spec.base).tree
        commit = store.make_commit(tree, [spec.base], format_message(f"start {spec.node}", lines))
        if not store.cas_ref(session_ref(log.name, sid), None, commit):
            raise GdagError(f"session {sid} exists already")
        return cls(log, sid, spec, commit)

    @classmethod
    def open(cls, log: Log, session_id: str) -> Session:
        head = log.store.read_ref(session_ref(log.name, session_id))
        if head is None:
            raise UnknownError(
                f"no session {session_id!r} on log {log.name!r}",
                hint="is GDAG_SESSION left over from a finished run?",
            )
        start = find_start(log.store, head)
        t = trailers.parse(log.store.read_commit(start).message)
        spec = Spec(
            node=t[trailers.NODE][0],
            code=t[trailers.CODE][0],
            inputs={k: int(v) for k, _, v in (i.partition("=") for i in t.get(trailers.INPUT, []))},
            base=log.store.read_commit(start).parents[0],
            state_at=t[trailers.STATE][0].encode(),
            attempt=int(t[trailers.ATTEMPT][0]),
            cache_key=next(iter(t.get(trailers.CACHE_KEY, [])), None),
            speculates_on=next(iter(t.get(trailers.SPECULATES_ON, [])), None),
            consumed={k: v for k, _, v in (i.partition("=") for i in t.get(trailers.CONSUMED, []))}
            or None,
            redo=bool(t.get(trailers.REDO)),
        )
        return cls(log, session_id, spec, head)

    def commits(self) -> Iterator[tuple[bytes, dict[str, list[str]]]]:
        """The session's own commits, newest first, with their trailers."""
        cur = self.head
        while True:
            commit = self.store.read_commit(cur)
            found = trailers.parse(commit.message)
            yield cur, found
            if found.get(trailers.EVENT) == [trailers.SESSION_START]:
                return
            cur = commit.parents[0]

    @property
    def is_done(self) -> bool:
        return trailers.kind(self.store.read_commit(self.head).message) == trailers.SESSION_DONE

    # -- writing -----------------------------------------------------------------

    def restart(self) -> None:
        """Back to the start commit, before another attempt: what a failed attempt
        wrote (outputs, `gdag publish` from inside the node) is not merged."""
        start = find_start(self.store, self.head)
        while True:
            head = self.store.read_ref(self.ref)
            if head is None:
                raise GdagError(f"session {self.id} was dropped while it ran")
            if self.store.cas_ref(self.ref, head, start):
                self.head = start
                self._staged = []
                return

    def _advance(self, build: Any, summary: str, lines: list[tuple[str, str]]) -> None:
        backoff = Backoff(CAS, f"writing to session {self.id} (every attempt lost a race)")
        while True:
            head = self.store.read_ref(self.ref)
            if head is None:
                raise GdagError(f"session {self.id} was dropped while it ran")
            tree = build(self.store.read_commit(head).tree)
            message = format_message(summary, [*lines, (trailers.SESSION_ID, self.id)])
            commit = self.store.make_commit(tree, [head], message)
            if self.store.cas_ref(self.ref, head, commit):
                self.head = commit
                return
            backoff.wait()

    def publish(
        self,
        name: str,
        entry: Entry,
        type_text: str,
        size: int,
        kind: str | None = None,
        staged: bool = False,
    ) -> None:
        """Record a new value of `name` on the session branch (visible after merge-back);
        `kind`: how it is stored (blob, tree, or lfs: a pointer to a git LFS object).
        `staged`: committed with the @done files by `finish`, not now (an output found
        after the node's exit: one commit instead of one more per output)."""
        meta = {
            "type": type_text,
            "size": size,
            "kind": kind or ("tree" if entry.is_tree else "blob"),
            "session": self.id,
            "node": self.spec.node,
        }
        if staged:
            self._staged.append((name, entry, meta))
            return

        def build(root: bytes) -> bytes:
            return state.write_output(self.store, root, name, entry, meta, f"session {self.id}")

        self._advance(
            build,
            f"output {name}",
            [(trailers.EVENT, trailers.SESSION_OUTPUT), (trailers.OUTPUT, name)],
        )

    def finish(self, outcome: Outcome) -> None:
        """The @done commit: after it, the session is complete and will be merged back.
        It holds the staged outputs too (those of an ok outcome)."""
        staged, self._staged = self._staged if outcome.status == "ok" else [], []
        done = self._done_record(outcome)
        predicted = self._predict(staged) if staged else None
        if predicted is not None:
            offset, metas = predicted
            staged = [(name, entry, metas.get(name, meta)) for name, entry, meta in staged]
            done["offset"] = offset
            done["outputs"] = {name: meta["version"] for name, meta in metas.items()}
        log_blob = self.store.write_blob(outcome.log[-LOG_TAIL:])
        done_blob = self.store.write_blob(json.dumps(done, sort_keys=True, indent=1).encode())

        def build(root: bytes) -> bytes:
            paths = layout.of(self.store, root)
            files: dict[bytes, Entry | None] = {
                paths.node_done: Entry(MODE_BLOB, done_blob),
                paths.node_log: Entry(MODE_BLOB, log_blob),
            }
            updates = [
                state.output_files(self.store, paths, name, entry, meta, f"session {self.id}")
                for name, entry, meta in staged
            ]
            updates.append((paths.node_path(self.spec.node), files))
            return paths.update_many(self.store, root, updates)

        names = [name for name, _, _ in staged]
        carried = ", ".join(names) if len(names) <= 3 else f"{len(names)} outputs"
        self._advance(
            build,
            f"done {self.spec.node} {outcome.status}" + (f": {carried}" if names else ""),
            [
                (trailers.EVENT, trailers.SESSION_DONE),
                (trailers.STATUS, outcome.status),
                *(((trailers.CACHE, outcome.cached),) if outcome.cached else ()),
                *((trailers.OUTPUT, name) for name in names),
            ],
        )

    def _predict(
        self, staged: list[tuple[str, Entry, dict[str, Any]]]
    ) -> tuple[int, dict[str, dict[str, Any]]] | None:
        """The offset and outputs' metadata the merge gives this session if the log has
        not moved since it forked. `finish` writes them so on the branch: the merge then
        computes the very same files, and finds its outputs' and node's trees written
        already (a chain's sessions, one after the other, always do). Whatever it finds
        at the merge, the merge decides: it keeps a predicted file only if it equals
        what it computes. Not for speculative or redone sessions (forked elsewhere)."""
        if self.spec.speculates_on is not None or self.spec.redo:
            return None
        base = self.store.read_commit(self.spec.base).tree
        offset = self.log.event(self.spec.base).offset + 1
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        metas = {}
        for name, entry, meta in staged:
            prev = state.read_output(self.store, base, name)
            if prev is not None and prev.value == entry:
                continue  # cut off at the merge: no new version
            version = state.next_version(prev, offset)
            metas[name] = {**meta, **version, "event": trailers.SESSION, "time": stamp}
        return offset, metas

    def _done_record(self, outcome: Outcome) -> dict[str, Any]:
        return {
            "session": self.id,
            "node": self.spec.node,
            "code": self.spec.code,
            "inputs": self.spec.inputs,
            "attempt": self.spec.attempt,
            "status": outcome.status,
            "exit_code": outcome.exit_code,
            "error": outcome.error,
            "duration": round(outcome.duration, 3),
            "cached": outcome.cached,
            "finished": time.time(),
            **({"attempts": outcome.attempts} if outcome.attempts else {}),
        }

    # -- merging back ------------------------------------------------------------

    def written_outputs(self) -> list[str]:
        """The outputs the session published, in the order it published them (newest
        commit first, so each commit's own list is walked backwards, then all reversed)."""
        names: dict[str, None] = {}  # ordered, and a member test in O(1) (10,000 outputs)
        for _, found in self.commits():
            names.update(dict.fromkeys(reversed(found.get(trailers.OUTPUT, []))))
        return list(names)[::-1]

    def merge_back(self, recovering: bool = False) -> Merged:
        """Apply the finished session to the log tip by compare-and-swap, then delete it.

        `recovering`: the session was left by a dead run, which may have merged it just
        before dying (then it is only deleted: a session is never applied twice)."""
        head_tree = self.store.read_commit(self.head).tree
        done = {**(read_done(self.store, head_tree, self.spec.node) or {}), **self.overrides}
        # A failed session's outputs keep their old values: only its record is merged.
        outputs = self.written_outputs() if done.get("status") == "ok" else []
        result = Merged("merged")

        def build(parent: bytes | None, offset: int) -> tuple[bytes, str, list[bytes]]:
            # `parent` is the tip's tree; the tip read now is that tip or a later one,
            # and a merge in the first is in the second's history too.
            if recovering and self._merged_below(self.log.tip()):
                raise _AlreadyMerged
            if self.spec.speculates_on is not None:
                self._confirm_speculation(parent, done)
            failed = read_failed(self.store, parent, self.spec.node)
            if self.spec.redo:
                if not any(e["inputs"] == self.spec.inputs for e in failed):
                    raise _Superseded  # redone already, by another run
            elif covers(read_done(self.store, parent, self.spec.node), self.spec, done["status"]):
                raise _Superseded
            if self._code_in_force(parent) != self.spec.code:
                raise _Superseded  # the definition changed meanwhile: a rerun is due anyway
            result.outputs, result.unchanged = {}, []
            paths = layout.of(self.store, parent)
            updates: list[layout.Update] = []
            for name in outputs:
                updates += self._merge_output(paths, parent, head_tree, name, offset, result)
            dag = state.read_dag(self.store, parent)
            node = dag.nodes.get(self.spec.node) if dag is not None else None
            # A failure is an event, unless the node itself watches failure events.
            if done["status"] == "failed" and (node is None or not node.watches_failures):
                updates.append(self._record_failure(paths, parent, head_tree, done, offset, result))
            record = {**done, "offset": offset, "outputs": result.outputs}
            if self.spec.speculates_on:
                record["speculated_on"] = self.spec.speculates_on
            last = read_done(self.store, parent, self.spec.node)
            if not self.spec.redo or (last or {}).get("inputs") == self.spec.inputs:
                updates.append(self._node_files(paths, head_tree, record))
            if node is not None and node.mode == "each":
                updates += self._update_failed(paths, failed, done)
            if done["status"] == "ok" and self.spec.cache_key:
                from gdag import cache

                updates.append(cache.record(self.store, paths, self.spec.cache_key, self.head))
            tree = paths.update_many(self.store, parent, updates) if updates else parent
            lines = [
                (trailers.OFFSET, str(offset)),
                (trailers.EVENT, trailers.SESSION),
                (trailers.NODE, self.spec.node),
                (trailers.SESSION_ID, self.id),
                (trailers.STATUS, done["status"]),
                *(((trailers.CACHE, done["cached"]),) if done.get("cached") else ()),
                *(
                    ((trailers.SPECULATED_ON, self.spec.speculates_on),)
                    if self.spec.speculates_on
                    else ()
                ),
                *((trailers.OUTPUT, n) for n in result.outputs),
            ]
            summary = f"session {self.spec.node} {done['status']}"
            assert tree is not None
            return tree, format_message(summary, lines), [self.head]

        try:
            if self.spec.speculates_on is None and not self._forked_from_log():
                raise _Superseded  # the log was replaced (replay) since: these inputs are gone
            _, result.offset = self.log.append(build)
        except _AlreadyMerged:
            result = Merged("already merged")
        except NotApplicable:  # superseded, here or by its commit point
            result = Merged("superseded")
        self.drop()
        return result

    def _merged_below(self, tip: bytes | None) -> bool:
        """Whether a log commit since the session's fork point merged this session's head
        (walking first parents from `tip` down to the fork point's offset)."""
        try:
            floor = self.log.event(self.spec.base).offset
        except GdagError:
            floor = 0
        cur = tip
        while cur is not None:
            commit = self.store.read_commit(cur)
            if self.head in commit.parents[1:]:
                return True
            if self.log.event(cur).offset <= floor:
                return False
            cur = commit.parents[0] if commit.parents else None
        return False

    def _confirm_speculation(self, root: bytes | None, done: dict[str, Any]) -> None:
        """A speculative session merges only if every input it read is what the log holds.

        That is the case exactly when the producer merged the value it advised (and
        nothing else changed meanwhile); its versions are then taken from the log.
        """
        consumed = self.spec.consumed or {}
        versions: dict[str, int] = {}
        for name, sha in consumed.items():
            out = state.read_output(self.store, root, name)
            if out is None or out.value.sha.decode() != sha:
                raise _Superseded
            versions[name] = out.version
        self.spec.inputs = versions
        done["inputs"] = versions

    def _forked_from_log(self) -> bool:
        """Whether the session's base commit is on the log's current first-parent chain."""
        from gdag.errors import StoreError

        try:
            offset = self.log.event(self.spec.base).offset
            return self.log.commit_at(offset) == self.spec.base
        except (StoreError, UnknownError):
            return False

    def _code_in_force(self, root: bytes | None) -> str | None:
        return state.node_codes(self.store, root).get(self.spec.node)

    def _merge_output(
        self,
        paths: layout.Layout,
        parent: bytes | None,
        head_tree: bytes,
        name: str,
        offset: int,
        result: Merged,
    ) -> list[layout.Update]:
        new = state.read_output(self.store, head_tree, name)
        if new is None:
            return []
        prev = state.read_output(self.store, parent, name)
        if prev is not None and prev.value == new.value:
            result.unchanged.append(name)  # early cutoff: no new version
            return []
        version = state.next_version(prev, offset)
        if (
            "time" in new.meta
            and new.meta.get("event") == trailers.SESSION
            and all(k in new.meta and new.meta[k] == v for k, v in version.items())
        ):
            meta = new.meta  # as `finish` predicted: the same file, written already
        else:
            meta = {
                **new.meta,
                **version,
                "event": trailers.SESSION,
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
        result.outputs[name] = meta["version"]
        return [state.output_files(self.store, paths, name, new.value, meta, f"session {self.id}")]

    def _update_failed(
        self, paths: layout.Layout, failed: list[dict[str, Any]], done: dict[str, Any]
    ) -> list[layout.Update]:
        """Keep an "each" node's failed events: add this session's event when it failed
        (a redo that fails again updates its entry), drop it once redone."""
        kept = [e for e in failed if e["inputs"] != self.spec.inputs]
        if done["status"] == "failed":
            kept.append(
                {
                    "inputs": self.spec.inputs,
                    "offset": self.log.event(self.spec.state_at).offset,
                    "state": self.spec.state_at.decode(),
                    "session": self.id,
                    "error": done.get("error"),
                    "attempt": self.spec.attempt,
                }
            )
        if kept == failed:
            return []
        kept.sort(key=lambda e: int(e["offset"]))
        entry = (
            Entry(
                MODE_BLOB,
                self.store.write_blob(json.dumps(kept, sort_keys=True, indent=1).encode()),
            )
            if kept
            else None
        )
        return [(paths.node_path(self.spec.node), {paths.node_failed: entry})]

    def _record_failure(
        self,
        paths: layout.Layout,
        parent: bytes | None,
        head_tree: bytes,
        done: dict[str, Any],
        offset: int,
        result: Merged,
    ) -> layout.Update:
        """Set `gdag/failures/<node>` to what failed, in the merge of the failed session
        (applied once, as the merge is): node, session, inputs, error, exit code and the
        log's last lines, so notifications are nodes subscribing to `gdag/failures/*`."""
        name = failure_output(self.spec.node)
        log_entry = state.node_log(self.store, head_tree, self.spec.node)
        log = self.store.read_blob(log_entry.sha) if log_entry is not None else b""
        value = {
            "node": self.spec.node,
            "session": self.id,
            "inputs": done.get("inputs", {}),
            "error": done.get("error"),
            "exit_code": done.get("exit_code"),
            "attempts": len(done.get("attempts") or []) + 1,
            "log": log[-FAILURE_LOG_TAIL:].decode(errors="replace"),
        }
        data = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
        blob = self.store.write_blob(data)
        prev = state.read_output(self.store, parent, name)
        meta = {
            **state.next_version(prev, offset),
            "type": "json",
            "event": trailers.SESSION,
            "node": self.spec.node,
            "session": self.id,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "size": len(data),
            "kind": "blob",
        }
        result.outputs[name] = meta["version"]
        return state.output_files(
            self.store, paths, name, Entry(MODE_BLOB, blob), meta, f"session {self.id}"
        )

    def _node_files(self, paths: layout.Layout, head_tree: bytes, record: dict) -> layout.Update:
        """The node's @done.json (`record`) and the session's @log."""
        node = self.spec.node
        log_entry = state.node_log(self.store, head_tree, node)
        blob = self.store.write_blob(json.dumps(record, sort_keys=True, indent=1).encode())
        changes: dict[bytes, Entry | None] = {paths.node_done: Entry(MODE_BLOB, blob)}
        if log_entry is not None:
            changes[paths.node_log] = log_entry
        return paths.node_path(node), changes

    def drop(self) -> None:
        if self.adopted:
            return  # the branch belongs to the earlier session, long merged
        head = self.store.read_ref(self.ref)
        if head is not None:
            self.store.delete_ref(self.ref, head)


def list_sessions(log: Log) -> list[str]:
    prefix = f"{SESSION_PREFIX}{log.name}/"
    return sorted(ref[len(prefix) :] for ref in log.store.list_refs(prefix))

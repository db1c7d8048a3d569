"""Group commit for a run on a shared remote: events commit here, one push carries many.

Without it every merge of `gdag run --remote` is a push of its own (a round trip
to the remote), and a node's next session waits for it. With it an event
commits to the local log ref at once, a compare-and-swap as on a local log, and
one pusher thread keeps pushing the local tip (`git push --force-with-lease`
from the tip it last saw there), so a push carries every event committed while
the one before was in flight.

The remote stays the arbiter of the shared log's order. When a push loses its
race (another machine pushed first), the pusher fetches the remote's tip and
makes the unpushed events again on it, oldest first, as a lost compare-and-swap
does: a publish is re-applied (once, by its publish id), a definition change is
recorded again if it still differs, and a session is merged again by the same
build that merged it, so it is checked once more against what the other machine
merged (work done there too is dropped here, never applied twice). A session
that read a value whose version means something else on the new chain (the
other machine changed that output, or the event that made it did not come
through unchanged) is dropped instead: its node is stale again and runs again.

What is committed here and not yet pushed is safe in the local log: if this
process dies, the next `gdag run --remote` or `gdag sync` pushes it (or, when
the remote moved meanwhile, re-applies its publishes; its sessions are computed
again).
"""

from __future__ import annotations

import threading

from gdag import state, trailers
from gdag.errors import GdagError
from gdag.log import Build, Event, Log, NotApplicable, log_ref, recording_dag, republishing
from gdag.remote import Remote, merge_base
from gdag.repo import Store
from gdag.retry import CAS, LOCK, Backoff, Policy
from gdag.session import find_start, read_done

POLL = 0.5  # seconds: how often an idle pusher looks for events other processes committed
CLOSE_WAIT = 5.0  # seconds a stopping run waits for a push in flight
PUSHED, REBUILT, STUCK = "pushed", "rebuilt", "stuck"  # what one push round did


class GroupCommit:
    """The commit point of one log of a run on a shared remote (`log()`); `flush()`
    waits until the remote holds everything committed."""

    def __init__(self, store: Store, name: str, remote: Remote) -> None:
        self.store = store
        self.name = name
        self.ref = log_ref(name)
        self.remote = remote
        # The remote's tip as last seen (by the sync before the run, then by the pusher).
        self.pushed = store.read_ref(remote.tracking(self.ref))
        # Session merges committed here and not yet pushed: their offsets and builds.
        self._builds: dict[bytes, tuple[int, Build]] = {}
        self._lock = threading.Lock()  # a local commit, or a rebuild of the local chain
        self._changed = threading.Condition()
        self._closed = False
        # Commits of the local chain a rebuild replaced: a session forked from one read
        # its inputs on a chain that is gone, and is not merged onto the new one.
        self._replaced: set[bytes] = set()
        self.error: BaseException | None = None
        self.pushes = 0
        self.rebuilds = 0
        self.dropped = 0  # sessions not merged again after a lost race (their nodes rerun)
        self._thread = threading.Thread(target=self._pusher, name="gdag-push", daemon=True)
        self._thread.start()

    def log(self) -> Log:
        return Log(self.store, self.name, commit_point=self._commit)

    def _commit(self, log: Log, tip: bytes | None, new: bytes, build: Build) -> bool:
        # Even after the pusher stopped (a remote that refuses, or is gone), work goes on
        # here: `flush` reports it, and the next run or sync pushes what was committed.
        with self._lock:
            session = trailers.kind(self.store.read_commit(new).message) == trailers.SESSION
            if session and self._replaced and self._fork_point(new) in self._replaced:
                # Built while a rebuild replaced the chain it read its inputs on.
                self.dropped += 1
                raise NotApplicable
            if not self.store.cas_ref(self.ref, tip, new):
                return False
            if session:
                self._builds[new] = (log.event(new).offset, build)
        with self._changed:
            self._changed.notify_all()
        return True

    def _fork_point(self, merge: bytes) -> bytes:
        """The log commit a merged session's branch forked from (its start commit's
        parent; the merge's second parent is the branch's head)."""
        head = self.store.read_commit(merge).parents[1]
        return self.store.read_commit(find_start(self.store, head)).parents[0]

    def flush(self) -> None:
        """Wait until the remote's log holds the local tip (raising what stopped the
        pusher: a remote that refuses or cannot be reached)."""
        with self._changed:
            self._changed.notify_all()
            while self.error is None and self.store.read_ref(self.ref) != self.pushed:
                self._changed.wait(POLL)
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        """Stop the pusher (what it has not pushed stays in the local log). A push in
        flight is given a few seconds (after Ctrl-C, say), then left to finish alone."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        self._thread.join(timeout=CLOSE_WAIT)

    # -- the pusher ------------------------------------------------------------

    def _pusher(self) -> None:
        lost: Backoff | None = None  # pushes that lost to another machine's, in a row
        stuck: Backoff | None = None  # pushes refused though the remote had not moved
        try:
            while True:
                with self._changed:
                    while not self._closed and self.store.read_ref(self.ref) == self.pushed:
                        self._changed.wait(POLL)
                    if self._closed:
                        return
                outcome = self._push(self.store.read_ref(self.ref))
                if outcome == PUSHED:
                    lost = stuck = None
                elif outcome == REBUILT:  # bounded as a lost compare-and-swap is
                    stuck = None
                    lost = lost or self._backoff(CAS, "every push lost a race")
                    lost.wait()
                else:  # the remote's ref stays locked (a killed push left its lock), say
                    stuck = stuck or self._backoff(
                        LOCK, "the remote refused it though its log had not moved: a lock?"
                    )
                    stuck.wait()
        except BaseException as exc:  # reported by flush
            self.error = exc
        finally:
            with self._changed:
                self._changed.notify_all()

    def _backoff(self, policy: Policy, why: str) -> Backoff:
        return Backoff(
            policy,
            f"pushing log {self.name!r} to {self.remote.name!r} ({why})",
            hint="nothing was lost: the log here keeps it, and `gdag sync` pushes it later",
        )

    def _push(self, tip: bytes | None) -> str:
        """Push the local tip: PUSHED, REBUILT (on the remote's newer tip) or STUCK."""
        if tip is None:
            raise GdagError(
                f"log {self.name!r} was deleted here while a run was pushing it",
                hint="`gdag sync` fetches it again from the remote",
            )
        log = Log(self.store, self.name)
        ahead = self.pushed is None or merge_base(log, tip, self.pushed) == self.pushed
        if ahead and self.remote.push_cas(self.ref, self.pushed, tip):
            at = log.event(tip).offset
            with self._lock:  # what the remote has now needs no build kept
                self._builds = {c: b for c, b in self._builds.items() if b[0] > at}
            with self._changed:
                self.pushed = tip
                self.pushes += 1
                self._changed.notify_all()
            return PUSHED
        theirs = self.remote.fetch(self.ref)
        if theirs is None:
            raise GdagError(
                f"log {self.name!r} is gone from remote {self.remote.name!r}",
                hint="nothing was lost locally: `gdag sync` pushes it again",
            )
        if ahead and theirs == self.pushed:
            return STUCK
        with self._lock:
            self._rebuild(log, theirs)
        with self._changed:
            self._changed.notify_all()
        return REBUILT

    def _rebuild(self, log: Log, theirs: bytes) -> None:
        """Make the local events the remote lacks again on its tip `theirs`."""
        local = log.require_tip()
        base = merge_base(log, local, theirs)
        if base == theirs:  # nothing new there (the push failed for another reason)
            self.pushed = theirs
            return
        stop = log.event(base).offset if base is not None else -1
        ours = [e for e in log.events(local) if e.offset > stop][::-1]
        theirs_new = [e for e in log.events(theirs) if e.offset > stop]
        ids = {e.first(trailers.PUBLISH_ID) for e in theirs_new if e.kind == trailers.PUBLISH}
        same = _Versions(self.store, base)
        # After a replay or a new start there, no version read here means what it did.
        replaced = any(e.kind in (trailers.REPLAY, trailers.INIT) for e in theirs_new)
        tip = theirs
        builds: dict[bytes, tuple[int, Build]] = {}
        dropped = 0
        for event in ours:
            made = self._remake(log, tip, event, same, ids, replaced)
            if made is None:
                dropped += event.kind == trailers.SESSION
                replaced = replaced or event.kind in (trailers.REPLAY, trailers.INIT)
                continue
            commit, offset = made
            same.note(event.sha, commit, event.outputs)
            if event.sha in self._builds:
                builds[commit] = (offset, self._builds[event.sha][1])
            tip = commit
        if self.store.cas_ref(self.ref, local, tip):  # else another process appended: again
            self._builds = builds
            self._replaced.update(e.sha for e in ours)
            self.pushed = theirs
            self.rebuilds += 1
            self.dropped += dropped

    def _remake(
        self,
        log: Log,
        tip: bytes,
        event: Event,
        same: _Versions,
        ids: set[str | None],
        replaced: bool,
    ) -> tuple[bytes, int] | None:
        """`event` made again on `tip`; None when it is dropped (a publish never is,
        unless the remote has it already)."""
        try:
            if event.kind == trailers.PUBLISH:
                if event.first(trailers.PUBLISH_ID) in ids:
                    return None  # the remote has it already
                return log.compose(tip, republishing(self.store, event))
            if event.kind == trailers.DAG:
                doc = state.read_dag_json(self.store, self.store.read_commit(event.sha).tree)
                return log.compose(tip, recording_dag(self.store, doc or {}))
            if event.kind != trailers.SESSION or event.sha not in self._builds or replaced:
                return None  # e.g. a session merged by another process here: it runs again
            if not all(same.holds(name, v) for name, v in self._inputs(event).items()):
                return None  # it read a value the new chain does not have
            return log.compose(tip, self._builds[event.sha][1])
        except NotApplicable:
            return None

    def _inputs(self, event: Event) -> dict[str, int]:
        """The input versions a merged session read, from the record its merge wrote."""
        node = event.first(trailers.NODE) or ""
        done = read_done(self.store, self.store.read_commit(event.sha).tree, node)
        return dict((done or {}).get("inputs", {}))


class _Versions:
    """Which (output, version) pairs name the same value on the local chain and on the
    chain being rebuilt: those below the common base, and those made again unchanged."""

    def __init__(self, store: Store, base: bytes | None) -> None:
        self.store = store
        self.base = store.read_commit(base).tree if base is not None else None
        self.kept: set[tuple[str, int]] = set()
        self._at_base: dict[str, int] = {}

    def holds(self, name: str, version: int) -> bool:
        if (name, version) in self.kept:
            return True
        if name not in self._at_base:
            out = state.read_output(self.store, self.base, name)
            self._at_base[name] = out.version if out is not None else 0
        return version <= self._at_base[name]

    def note(self, old: bytes, new: bytes, outputs: list[str]) -> None:
        """An event `old` made again as `new`: its outputs whose version and value came
        through unchanged."""
        before = self.store.read_commit(old).tree
        after = self.store.read_commit(new).tree
        for name in outputs:
            a = state.read_output(self.store, before, name)
            b = state.read_output(self.store, after, name)
            if a is not None and b is not None and (a.version, a.value) == (b.version, b.value):
                self.kept.add((name, a.version))

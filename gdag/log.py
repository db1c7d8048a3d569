"""The event log: a first-parent chain of commits under refs/gdag/logs/, offsets, events.

Every log commit's tree carries `@offsets/<bucket>/<n>` checkpoints (the id of
the commit at every 64th offset of its own chain), so finding the commit at any
offset costs one tree lookup and at most 63 parent steps, whatever the length
of the history, and stays right when `replay` replaces the chain.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from gdag import layout, state, trailers
from gdag.errors import GdagError, NoLogError, StoreError, UnknownError
from gdag.names import check_simple_name
from gdag.records import Record
from gdag.repo import MODE_BLOB, Entry, Store
from gdag.retry import CAS, SYSTEM_CLOCK, Backoff, Clock

LOG_PREFIX = "refs/gdag/logs/"
# Where a replaced chain is kept whole (by replay and by sync).
ARCHIVE_PREFIX = "refs/gdag/archive/"
CHECKPOINT = 64  # every 64th offset is a checkpoint (`layout.checkpoint_path`)


# What an event is made by: (parent tree, offset) -> (tree, message, extra parents).
Build = Callable[["bytes | None", int], "tuple[bytes, str, list[bytes]]"]


class NotApplicable(Exception):  # noqa: N818 - a signal between a build and its caller
    """Raised by a build whose event no longer applies on the tip it is made on
    (superseded, merged already, unchanged): its caller drops the event."""


def log_ref(name: str) -> str:
    return LOG_PREFIX + check_simple_name(name, "log")


# Commit messages are spelled by gdag.trailers; these names are kept for importers.
parse_trailers = trailers.parse
format_message = trailers.format_message


class Event(Record):
    """One commit of the log, as read back."""

    __slots__ = ("offset", "kind", "sha", "time", "summary", "outputs", "trailers")

    def __init__(
        self,
        offset: int,
        kind: str,
        sha: bytes,
        time: int,
        summary: str,
        outputs: list[str] | None = None,
        trailers: dict[str, list[str]] | None = None,
    ) -> None:
        self.offset = offset
        self.kind = kind
        self.sha = sha
        self.time = time
        self.summary = summary
        self.outputs = [] if outputs is None else outputs
        self.trailers = {} if trailers is None else trailers

    def first(self, key: str) -> str | None:
        values = self.trailers.get(key)
        return values[0] if values else None

    def to_json(self) -> dict[str, object]:
        return {
            "offset": self.offset,
            "event": self.kind,
            "commit": self.sha.decode(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.time)),
            "summary": self.summary,
            "outputs": self.outputs,
            "node": self.first(trailers.NODE),
            "session": self.first(trailers.SESSION_ID),
        }


class Log:
    """One named log in a store.

    The tip is read from the local ref; an event becomes part of the log at its
    commit point, by default a compare-and-swap of that ref (`local_commit`).
    `remote.remote_log` gives a log whose commit point is a push to a remote.
    """

    def __init__(
        self, store: Store, name: str = "main", commit_point: CommitPoint | None = None
    ) -> None:
        self.store = store
        self.name = name
        self.ref = log_ref(name)
        self._commit_point: CommitPoint = commit_point or local_commit

    def tip(self) -> bytes | None:
        return self.store.read_ref(self.ref)

    def require_tip(self) -> bytes:
        tip = self.tip()
        if tip is None:
            raise NoLogError(
                f"no log {self.name!r} in this repository yet",
                hint="run `gdag init`" + ("" if self.name == "main" else f" --log {self.name}"),
            )
        return tip

    def event(self, sha: bytes) -> Event:
        commit = self.store.read_commit(sha)
        found = trailers.parse(commit.message)
        try:
            offset = int(found[trailers.OFFSET][0])
        except (KeyError, ValueError):
            raise StoreError(
                f"commit {sha.decode()[:12]} on log {self.name!r} has no {trailers.OFFSET} trailer",
                hint="the log ref points at a commit gdag did not write; see `git log "
                + self.ref
                + "`",
            ) from None
        return Event(
            offset=offset,
            kind=(found.get(trailers.EVENT) or ["?"])[0],
            sha=sha,
            time=commit.commit_time,
            summary=commit.message.decode("utf-8", "replace").split("\n", 1)[0],
            outputs=found.get(trailers.OUTPUT, []),
            trailers=found,
        )

    def first_parent(self, sha: bytes) -> bytes | None:
        parents = self.store.read_commit(sha).parents
        return parents[0] if parents else None

    # -- appending -------------------------------------------------------

    def append(
        self,
        build: Build,
        *,
        create: bool = False,
    ) -> tuple[bytes, int]:
        """Append one event by compare-and-swap, rebuilding it whenever the tip moved.

        `build(parent_tree, offset)` returns (tree, message, extra parents).
        Returns (commit id, offset). Gives up (RetryError) only after losing every race
        for the CAS policy's deadline.
        """
        backoff = Backoff(CAS, f"appending to log {self.name!r} (every attempt lost a race)")
        while True:
            tip = self.tip() if not create else None
            if tip is None and not create:
                self.require_tip()
            commit, offset = self.compose(tip, build)
            if self._commit_point(self, tip, commit, build):
                return commit, offset
            if create:
                raise UnknownError(f"log {self.name!r} already exists")
            backoff.wait()

    def compose(self, tip: bytes | None, build: Build) -> tuple[bytes, int]:
        """The commit `build` makes on top of `tip` (None: a log's first event), its
        offset checkpoint added; written, but no ref moved."""
        if tip is None:
            parent_tree, offset = None, 0
        else:
            parent_tree = self.store.read_commit(tip).tree
            offset = self.event(tip).offset + 1
        tree, message, extra = build(parent_tree, offset)
        if tip is not None and offset % CHECKPOINT == 1:
            tree = self._add_checkpoint(tree, offset - 1, tip)
        parents = ([tip] if tip else []) + extra
        return self.store.make_commit(tree, parents, message), offset

    def _add_checkpoint(self, tree: bytes, offset: int, sha: bytes) -> bytes:
        blob = self.store.write_blob(sha + b"\n")
        *where, name = layout.of(self.store, tree).checkpoint_path(offset)
        return self.store.tree_update(tree, where, {name: Entry(MODE_BLOB, blob)})

    # -- offsets ---------------------------------------------------------

    def commit_at(self, offset: int, near: tuple[bytes, int] | None = None) -> bytes:
        """The commit at `offset` on this log's first-parent chain. `near` is a commit
        known to be on that chain and its offset: when it is at most a checkpoint
        interval above `offset`, the walk starts there instead of at the tip."""
        if near is not None and 0 <= near[1] - offset < CHECKPOINT:
            cur, at = near
        else:
            tip = self.require_tip()
            top = self.event(tip).offset
            if not 0 <= offset <= top:
                raise UnknownError(
                    f"offset {offset} is out of range for log {self.name!r}",
                    hint=f"valid offsets: 0..{top}, or -1..-{top} counting back from the tip",
                )
            cur, at = tip, top
            if top - offset >= CHECKPOINT:
                cur, at = self._nearest_checkpoint(tip, offset)
        while at > offset:
            parent = self.first_parent(cur)
            if parent is None:
                raise StoreError(f"log {self.name!r} ends before offset {offset}")
            cur, at = parent, at - 1
        return cur

    def _nearest_checkpoint(self, tip: bytes, offset: int) -> tuple[bytes, int]:
        target = -(-offset // CHECKPOINT) * CHECKPOINT
        root = self.store.read_commit(tip).tree
        entry = self.store.tree_get(root, layout.of(self.store, root).checkpoint_path(target))
        if entry is None:
            return tip, self.event(tip).offset
        sha = self.store.read_blob(entry.sha).strip()
        if self.event(sha).offset != target:
            raise StoreError(f"offset checkpoint {target} of log {self.name!r} is wrong")
        return sha, target

    def resolve_offset(self, text: str) -> bytes:
        """An offset argument: `N`, `-N` (back from the tip), or a commit id prefix."""
        tip = self.require_tip()
        text = text.strip()
        if text.lstrip("-").isdigit():
            n = int(text)
            if n < 0:
                n = self.event(tip).offset + n
                if n < 0:
                    top = self.event(tip).offset
                    raise UnknownError(
                        f"offset {text} reaches back past the start of log {self.name!r}",
                        hint=f"valid offsets: 0..{top}, or -1..-{top} counting back from the tip",
                    )
            return self.commit_at(n)
        return self._resolve_commit(text)

    def _resolve_commit(self, text: str) -> bytes:
        hint = "an offset is a number, -N for N events back, or a commit id of this log"
        if not (4 <= len(text) <= 40) or any(c not in "0123456789abcdefABCDEF" for c in text):
            raise UnknownError(f"not an offset: {text!r}", hint=hint)
        found = [
            s for s in self.store.expand_prefix(text) if self.store.read(s).type_name == b"commit"
        ]
        if len(found) != 1:
            what = "no commit" if not found else f"{len(found)} commits"
            raise UnknownError(f"{what} matching {text!r}", hint=hint)
        sha = found[0]
        try:
            event = self.event(sha)
            on_log = self.commit_at(event.offset) == sha
        except (StoreError, UnknownError):
            on_log = False
        if not on_log:
            raise UnknownError(f"commit {text} is not an event of log {self.name!r}", hint=hint)
        return sha

    # -- reading ---------------------------------------------------------

    def events(self, start: bytes | None = None) -> Iterator[Event]:
        """Events newest first, from `start` (default: the tip) back to offset 0."""
        cur: bytes | None = start or self.require_tip()
        while cur is not None:
            yield self.event(cur)
            cur = self.first_parent(cur)


# Where an event commits: (log, expected tip, new commit, the build that made it) ->
# whether it is now the tip. (A commit point that commits later, `groupcommit`, keeps
# the build to make the event again on another tip.)
CommitPoint = Callable[[Log, "bytes | None", bytes, Build], bool]


def local_commit(log: Log, tip: bytes | None, commit: bytes, build: Build) -> bool:
    """The commit point of a local log: a compare-and-swap of its ref."""
    return log.store.cas_ref(log.ref, tip, commit)


# -- re-applying publishes (replay and sync) ----------------------------------------------


def published_under(log: Log, publish_id: str, since: float) -> set[str]:
    """The outputs that events committed at or after `since` (a time, seconds) published
    under `publish_id`. Commit times only grow along the log, so the scan, newest
    first, stops at the first older event (2 s of slack for whole-second times)."""
    found: set[str] = set()
    if log.tip() is None:
        return found
    for event in log.events():
        if event.time < since - 2:
            break
        if event.first(trailers.PUBLISH_ID) == publish_id:
            found.update(event.outputs)
    return found


def publish_events(log: Log, newest: bytes, stop_below: int) -> list[Event]:
    """External publish events from `newest` back to offset `stop_below`, oldest first."""
    found = []
    for event in log.events(newest):
        if event.offset < stop_below:
            break
        if event.kind == trailers.PUBLISH:
            found.append(event)
    return found[::-1]


def republish(work: Log, event: Event) -> None:
    """Append the same value as `event` did, under a fresh version on the new chain."""
    work.append(republishing(work.store, event))


def republishing(store: Store, event: Event) -> Build:
    """The build of `republish`: `event`'s value again, its version the next one."""
    root = store.read_commit(event.sha).tree
    name = event.outputs[0]
    old = state.read_output(store, root, name)
    if old is None:
        raise GdagError(f"publish event at offset {event.offset} holds no value for {name!r}")

    def build(parent: bytes | None, offset: int) -> tuple[bytes, str, list[bytes]]:
        prev = state.read_output(store, parent, name)
        meta = {**old.meta, **state.next_version(prev, offset), "replayed_from": event.offset}
        version = meta["version"]
        tree = state.write_output(
            store, parent, name, old.value, meta, f"publish {old.meta.get('id')}"
        )
        lines = [
            (trailers.OFFSET, str(offset)),
            (trailers.EVENT, trailers.PUBLISH),
            (trailers.OUTPUT, name),
            (trailers.VERSION, str(version)),
            (trailers.PUBLISH_ID, str(old.meta.get("id"))),
            (trailers.REPLAYED_FROM, str(event.offset)),
        ]
        return tree, format_message(f"publish {name} v{version}", lines), []

    return build


def recording_dag(store: Store, doc: dict[str, object]) -> Build:
    """The build of a `dag` event recording the definition `doc` (compiled, as JSON);
    NotApplicable when the tree it is made on holds that definition already."""

    def build(parent: bytes | None, offset: int) -> tuple[bytes, str, list[bytes]]:
        if not doc or state.read_dag_json(store, parent) == doc:
            raise NotApplicable
        tree = state.write_dag(store, parent, doc)
        lines = [(trailers.OFFSET, str(offset)), (trailers.EVENT, trailers.DAG)]
        return tree, format_message("dag: definition changed", lines), []

    return build


def parse_since(text: str) -> float:
    """An epoch time from `2026-11-26`, `2026-11-26T10:00`, or `30m`/`2h`/`7d` (ago)."""
    import datetime as dt
    import re

    from gdag.clock import now

    m = re.fullmatch(r"(\d+)\s*([smhdw])", text.strip())
    if m:
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]
        return now() - int(m.group(1)) * unit
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise UnknownError(
            f"not a time: {text!r}", hint="use an ISO date or time, or 30m, 2h, 7d"
        ) from None
    if when.tzinfo is None:
        when = when.astimezone()
    return when.timestamp()


def event_filter(output: str | None = None, node: str | None = None) -> Callable[[Event], bool]:
    """Whether an event changed `output` (a name or pattern) and is a session of `node`."""
    from gdag.names import check_output_name, is_pattern, matches

    if output is not None:
        check_output_name(output, allow_pattern=True)
    if node is not None:
        check_simple_name(node, "node")

    def wanted(event: Event) -> bool:
        if output is not None and not any(
            matches(output, o) if is_pattern(output) else o == output for o in event.outputs
        ):
            return False
        return node is None or event.first(trailers.NODE) == node

    return wanted


def select_events(
    log: Log,
    *,
    limit: int | None = None,
    output: str | None = None,
    node: str | None = None,
    since: str | None = None,
    start: bytes | None = None,
) -> list[Event]:
    """Events newest first from `start` (default: the tip), filtered by output (name or
    pattern), node and time."""
    wanted = event_filter(output, node)
    after = parse_since(since) if since is not None else None
    shown: list[Event] = []
    for event in log.events(start):
        if after is not None and event.time < after:
            break  # the first-parent chain is in time order
        if not wanted(event):
            continue
        shown.append(event)
        if limit is not None and len(shown) >= limit:
            break
    return shown


def follow(
    log: Log, after: int | None = None, poll: float = 0.1, clock: Clock = SYSTEM_CLOCK
) -> Iterator[Event]:
    """Events oldest first as they are appended after offset `after` (default: the tip's
    offset now, when `follow` is called; -1 for every event), for as long as the caller
    iterates.

    The log ref is polled every `poll` seconds; each new tip is walked back by first
    parents to the last offset delivered, so every event is yielded once, in log order,
    however many were appended between two looks. Offsets are what is followed: after a
    replay replaced the chain, events up to the last offset delivered are not repeated.
    """
    if after is None:
        tip = log.tip()
        after = log.event(tip).offset if tip is not None else -1
    return _follow(log, after, poll, clock)


def _follow(log: Log, last: int, poll: float, clock: Clock) -> Iterator[Event]:
    seen = None
    while True:
        tip = log.tip()
        if tip is not None and tip != seen:
            new = []
            for event in log.events(tip):
                if event.offset <= last:
                    break
                new.append(event)
            for event in reversed(new):
                last = event.offset
                yield event
            seen = tip
        clock.sleep(poll)

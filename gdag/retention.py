"""Retention of large values: `gdag gc` prunes the stored bytes of old versions.

The log is never rewritten: every version stays an event with its metadata, and a
large value's LFS pointer stays in its tree. What goes is the LFS object under
`.git/lfs/objects/` of a version the definition's `[retention]` rules let go:

    [retention]
    grace = "24h"            # never a version replaced less than this ago (default)
    [retention."raw/*"]      # the first table whose pattern matches an output applies
    keep_last = 10           # the newest 10 versions (the current one among them)
    keep_for = "30d"         # and every version that was current within 30 days

A version is kept when any rule of its table keeps it, when it is the current
value of an output on any log or archived chain, when a session (running, or
left by a killed run) holds it, or when another version still kept shares its
object. Outputs that no pattern matches keep everything. Values below
`[values] large` are git blobs in the log's history: they cannot go without
rewriting it, so gc counts them and leaves them.

What gc pruned is written to `.git/gdag/pruned.jsonl` (before the object goes;
`gdag.lfs` reads it):
a read of a pruned value (`lookup --at`, a node's input, a replay) is then
refused with exit status 3, naming the rule, instead of being fetched again from
a remote that may still hold it; `gdag replay --from` checks before it starts.
Times are `gdag.clock`'s, so `GDAG_NOW` moves them in tests.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from gdag import clock, lfs, state
from gdag.dag import Dag
from gdag.log import ARCHIVE_PREFIX, LOG_PREFIX, Log
from gdag.names import matches
from gdag.repo import Store
from gdag.session import SESSION_PREFIX

DEFAULT_GRACE = 24 * 3600.0


@dataclass
class Version:
    """One version of an output as a chain of the log holds it."""

    output: str
    version: int
    offset: int
    time: float  # when it became current
    replaced: float | None  # when the next version replaced it (None: current)
    oid: str | None  # its LFS object, or None for a git blob
    size: int


@dataclass
class Pruned:
    version: Version
    rule: str  # e.g. '[retention."raw/*"] keep_last = 10'
    # Every version holding the same object ("output@version"), all let go.
    refs: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        v = self.version
        return {
            "output": v.output,
            "version": v.version,
            "offset": v.offset,
            "oid": v.oid,
            "size": v.size,
            "rule": self.rule,
            "refs": sorted(set(self.refs)),
        }


@dataclass
class Plan:
    prune: list[Pruned] = field(default_factory=list)
    in_git: int = 0  # versions past their rules that are git blobs (kept)
    rules: int = 0


def rules_of(dag: Dag | None) -> tuple[float, list[dict[str, Any]]]:
    """(grace in seconds, rules in the order written) of a compiled definition."""
    table = dict(dag.retention) if dag is not None else {}
    return float(table.get("grace", DEFAULT_GRACE)), list(table.get("rules", []))


def describe(rule: dict[str, Any]) -> str:
    said = [f"keep_last = {rule['keep_last']}"] if "keep_last" in rule else []
    if "keep_for" in rule:
        said.append(f'keep_for = "{_duration(rule["keep_for"])}"')
    return f'[retention."{rule["pattern"]}"] ' + ", ".join(said)


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _epoch(text: object, fallback: float) -> float:
    """Seconds since the epoch of a `@meta.json` time (UTC, to the second)."""
    if isinstance(text, str):
        try:
            return float(calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")))
        except ValueError:
            pass
    return fallback


def chains(store: Store) -> list[bytes]:
    """The tips of every log and archived chain."""
    tips = set(store.list_refs(LOG_PREFIX).values()) | set(store.list_refs(ARCHIVE_PREFIX).values())
    return sorted(tips)


def versions(store: Store, log: Log, tip: bytes) -> dict[str, list[Version]]:
    """Every version of every output on the chain ending at `tip`, oldest first."""
    found: dict[str, list[Version]] = {}
    for event in log.events(tip):
        if not event.outputs:
            continue
        root = store.read_commit(event.sha).tree
        for name in event.outputs:
            st = state.read_output(store, root, name)
            if st is None or st.meta.get("offset") != event.offset:
                continue  # not set by this event (an unchanged output)
            found.setdefault(name, []).append(_version(store, st, event.time))
    for vs in found.values():
        vs.reverse()
        for older, newer in zip(vs, vs[1:], strict=False):
            older.replaced = newer.time
    return found


def _version(store: Store, st: state.OutputState, event_time: float) -> Version:
    oid = None
    if st.meta.get("kind") == "lfs":
        from gdag.values import large_pointer

        oid = large_pointer(store, st.value).oid
    size = st.meta.get("size")
    return Version(
        output=st.name,
        version=int(st.meta.get("version", 0)),
        offset=int(st.meta.get("offset", 0)),
        time=_epoch(st.meta.get("time"), float(event_time)),
        replaced=None,
        oid=oid,
        size=size if isinstance(size, int) else 0,
    )


def held_by_sessions(store: Store) -> set[str]:
    """LFS objects of every value in the trees of session branches (running sessions,
    or ones a killed run left): the inputs they read and what they wrote."""
    held: set[str] = set()
    for head in store.list_refs(SESSION_PREFIX).values():
        held.update(_lfs_in_tree(store, store.read_commit(head).tree))
    return held


def _lfs_in_tree(store: Store, root: bytes) -> Iterator[str]:
    from gdag.values import large_pointer

    for name in state.list_outputs(store, root):
        st = state.read_output(store, root, name)
        if st is not None and st.meta.get("kind") == "lfs":
            yield large_pointer(store, st.value).oid


def plan(store: Store, dag: Dag | None, now: float | None = None) -> Plan:
    """What `gdag gc` would prune now."""
    grace, rules = rules_of(dag)
    result = Plan(rules=len(rules))
    if not rules:
        return result
    now = clock.now() if now is None else now
    keep: set[str] = held_by_sessions(store)
    expired: dict[str, Pruned] = {}
    log = Log(store)
    for tip in chains(store):
        owed = owed_versions(store, store.read_commit(tip).tree)
        for name, vs in versions(store, log, tip).items():
            rule = next((r for r in rules if matches(r["pattern"], name)), None)
            for i, v in enumerate(reversed(vs)):  # newest first: i versions are newer
                if (
                    v.replaced is None
                    or rule is None
                    or _kept(rule, i, v, now, grace)
                    or owed(name, v.version)
                ):
                    if v.oid is not None:
                        keep.add(v.oid)
                elif v.oid is None:
                    result.in_git += 1
                else:
                    expired.setdefault(v.oid, Pruned(v, describe(rule))).refs.append(
                        f"{name}@{v.version}"
                    )
    for oid in sorted(expired.keys() - keep):
        if lfs.object_path(store.user_commondir, oid).exists():  # not pruned already
            result.prune.append(expired[oid])
    result.prune.sort(key=lambda p: (p.version.output, p.version.version))
    return result


def owed_versions(store: Store, root: bytes) -> Callable[[str, int], bool]:
    """Which versions `each` nodes still have to process on the chain whose tip's tree is
    `root`: those of their inputs newer than what their last session consumed, and the
    events listed as failed, to be redone."""
    from gdag.session import read_done, read_failed

    dag = state.read_dag(store, root)
    consumed: list[tuple[str, dict[str, Any]]] = []  # (input target, versions consumed)
    failed: set[tuple[str, int]] = set()
    for name, node in (dag.nodes if dag is not None else {}).items():
        if node.mode != "each":
            continue
        done = read_done(store, root, name) or {}
        for target in node.inputs.values():
            consumed.append((target, done.get("inputs", {})))
        for event in read_failed(store, root, name):
            failed.update((n, int(v)) for n, v in event.get("inputs", {}).items())

    def owed(output: str, version: int) -> bool:
        if (output, version) in failed:
            return True
        return any(
            (target == output or matches(target, output)) and version > int(seen.get(output, 0))
            for target, seen in consumed
        )

    return owed


def _kept(rule: dict[str, Any], newer: int, v: Version, now: float, grace: float) -> bool:
    assert v.replaced is not None
    if now - v.replaced < grace:
        return True
    if "keep_last" in rule and newer < rule["keep_last"]:
        return True
    return "keep_for" in rule and now - v.replaced < rule["keep_for"]


def prune(store: Store, chosen: Iterable[Pruned], since: float | None = None) -> tuple[int, int]:
    """Delete the LFS objects of `chosen`, each recorded in the ledger first; (objects
    deleted, bytes freed). An object already gone is not counted, nor one written or
    read since `since` (when the plan was made: a publish of the same bytes meanwhile
    finds the object there and only touches it)."""
    count = freed = 0
    now = clock.now()
    since = time.time() if since is None else since
    for p in chosen:
        assert p.version.oid is not None
        obj = lfs.object_path(store.user_commondir, p.version.oid)
        try:
            if obj.stat().st_mtime >= since:
                continue  # published again meanwhile, or read: it may be current now
        except FileNotFoundError:
            continue
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        lfs.record_pruned(store.gdag_dir, {**p.to_json(), "pruned": when})
        size = obj.stat().st_size
        obj.unlink(missing_ok=True)
        count, freed = count + 1, freed + size
    return count, freed


def check_replayable(store: Store, base: bytes, published: Iterable[tuple[bytes, str]]) -> None:
    """Refuse a replay that would read a pruned value: a large value of the state it
    starts from (tree `base`), or one of the publishes it re-applies ((tree, output))."""
    if not (store.gdag_dir / lfs.PRUNED).exists():
        return  # gc never pruned here
    from gdag.values import large_pointer

    def check(root: bytes, names: Iterable[str]) -> None:
        for name in names:
            st = state.read_output(store, root, name)
            if st is not None and st.meta.get("kind") == "lfs":
                pointer = large_pointer(store, st.value)
                if not lfs.has_object(store.user_commondir, pointer):
                    lfs.check_pruned(store.gdag_dir, pointer, (st.name, st.version))

    check(base, state.list_outputs(store, base))
    for root, name in published:
        check(root, [name])

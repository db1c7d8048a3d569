"""A shared git remote as the coordination engine: compare-and-swap by push, sync by replay.

Every write to the remote is `git push --force-with-lease=<ref>:<expected>`, so a
ref moves only from the value the pusher saw. `RemoteRefs` is the remote seen
as a `refs.Refs`, so leases are claimed and the log advanced exactly like local
compare-and-swaps, only configured with other refs (`remote_leases`) or another
commit point (`remote_log`). Transport and authentication are git's own (ssh
keys, credential helpers, file paths, git daemon); gdag only ever writes refs
under refs/gdag/ there.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from gdag import gitcmd, trailers
from gdag.errors import GdagError
from gdag.lease import Leases
from gdag.log import (
    ARCHIVE_PREFIX,
    Build,
    CommitPoint,
    Event,
    Log,
    publish_events,
    republish,
)
from gdag.repo import Store
from gdag.retry import LOCK, ROUNDS, Backoff
from gdag.state import read_dag

TRACKING = "refs/gdag/remotes/"
LOGS = "refs/gdag/logs/"
# Rejections that mean "the ref moved (or is being moved) under us": retry after a fetch.
CAS_FAILURES = (
    "stale info",
    "fetch first",
    "non-fast-forward",
    "already exists",
    "failed to lock",
    "cannot lock ref",
    "incorrect old value",
    "failed to update ref",
    "is at ",
    "remote ref does not exist",
)


def lfs_used(store: Store) -> bool:
    """Whether this repository holds large values at all (`.git/lfs/objects`): a store
    that never met one spends no git process on them at a push."""
    return (store.user_commondir / "lfs" / "objects").is_dir()


def is_url(name: str) -> bool:
    """Whether git reads `name` as a URL (`scheme://…` or scp-like `host:path`), not a path."""
    head, colon, _ = name.partition(":")
    return "://" in name or (bool(colon) and "/" not in head and len(head) > 1)


def tracking_label(name: str) -> str:
    """A remote's name, URL or path as one valid ref component (`../up.git` is `_._up.git`:
    git allows no `..`, no leading `.` and no `.lock` ending)."""
    label = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:100]
    while ".." in label:
        label = label.replace("..", "_.")
    if label.startswith("."):
        label = "_" + label[1:]
    return label + "_" if label.endswith((".", ".lock")) else label


class Remote:
    """One remote (a git remote name, URL or path) seen from one store."""

    def __init__(self, store: Store, name: str, start: str | None = None) -> None:
        """`name` as git reads it: a configured remote, else a URL, else a path (relative
        to `start`, the directory `-C` names)."""
        self.store = store
        self.name = name
        self.start = start
        self.uploaded = 0  # large values sent before pushes, in all
        gitcmd.binary("working with a remote")  # no git: say so before anything else
        self.label = tracking_label(name)
        found = gitcmd.run(
            ["config", "--get", f"remote.{name}.url"], git_dir=store.user_gitdir, check=False
        )
        url = found.stdout.strip() if found.ok else ""
        if not url and not is_url(name):
            self.name = os.path.join(start, name) if start else name
            if not os.path.exists(self.name):
                raise GdagError(
                    f"no remote {name!r}: not a remote of this repository, a URL or an "
                    "existing path",
                    hint="`git remote -v` lists the remotes",
                )
        # How its LFS endpoint is found (and, after a sync, its large values fetched on
        # demand): a configured remote by name, anything else as an absolute path or URL.
        self.given = name if url or is_url(name) else os.path.abspath(self.name)
        if store.is_private and url:
            # The private store has no remotes of its own: use the user repository's URL.
            if not is_url(url) and not url.startswith("/"):
                url = str(((store.workdir or store.user_gitdir) / url).resolve())
            self.name = url

    def _run(self, *args: str) -> gitcmd.Result:
        """A git command on this store, its result inspected by the caller."""
        return gitcmd.run(
            args, git_dir=self.store.gitdir, check=False, what=f"remote {self.name!r}"
        )

    def tracking(self, ref: str) -> str:
        """Where the remote's value of `ref` is kept locally."""
        return f"{TRACKING}{self.label}/{ref[len('refs/gdag/') :]}"

    def fetch(self, ref: str) -> bytes | None:
        """The remote's current value of `ref` (objects fetched), or None if it has none."""
        backoff = Backoff(LOCK, f"fetching {ref} (another process holds its tracking ref)")
        while True:
            proc = self._run(
                "fetch",
                "--quiet",
                "--no-tags",
                "--no-write-fetch-head",
                # In a partial clone git would leave out the blobs (the values): gdag's
                # store reads objects itself and cannot fetch one it finds missing.
                "--no-filter",
                self.name,
                f"+{ref}:{self.tracking(ref)}",
            )
            # Another gdag process of this clone updated the tracking ref at the same time.
            if proc.returncode == 0 or "cannot lock ref" not in proc.stderr:
                break
            backoff.wait()
        if proc.returncode != 0:
            if "couldn't find remote ref" in proc.stderr:
                return None
            raise GdagError(
                f"cannot fetch from remote {self.name!r}: {proc.reason}",
                hint="check the remote with `git ls-remote " + self.name + "`",
            )
        return self.store.read_ref(self.tracking(ref))

    def push_cas(self, ref: str, old: bytes | None, new: bytes | None) -> bool:
        """Point the remote's `ref` at `new` (None: delete it) if it is still `old`;
        False if it moved."""
        if new is not None and ref.startswith(LOGS):
            self.upload_large(new, old)
        lease = f"--force-with-lease={ref}:{old.decode() if old else ''}"
        spec = f"{new.decode() if new else ''}:{ref}"
        proc = self._run("push", "--porcelain", "--quiet", lease, self.name, spec)
        if proc.returncode == 0:
            tracking = self.tracking(ref)
            seen = self.store.read_ref(tracking)
            if new is not None:
                self.store.cas_ref(tracking, seen, new)
            elif seen is not None:
                self.store.delete_ref(tracking, seen)
            return True
        text = proc.stdout + proc.stderr
        if any(reason in text for reason in CAS_FAILURES):
            return False
        reasons = [line for line in text.splitlines() if line.startswith("!") or "rejected" in line]
        # What the remote's hooks said (a host's size limit, a policy), in its words.
        said = [
            line[len("remote:") :].strip()
            for line in text.splitlines()
            if line.startswith("remote:") and line[len("remote:") :].strip()
        ]
        raise GdagError(
            f"remote {self.name!r} refused to update {ref}: "
            f"{reasons[0].strip() if reasons else gitcmd.last_line(text) or 'no message'}"
            + (f"; it said: {' / '.join(said[:3])}" if said else ""),
            hint="nothing was lost locally; check permissions and hooks of the remote",
        )

    def upload_large(self, new: bytes, old: bytes | None) -> int:
        """Before a log is pushed: send the remote's LFS endpoint the large values that
        commits from `new` name and it may lack (raises, so nothing is pushed, when one
        cannot be sent); how many went."""
        if not lfs_used(self.store):
            return 0
        from gdag import lfsclient

        have = [old] if old is not None else []
        pointers = lfsclient.pointers_to_push(self.store, new, have)
        if not pointers:
            return 0
        # The pushed log's own definition says where its large values go.
        dag = read_dag(self.store, self.store.read_commit(new).tree)
        where = dag.values_remote if dag is not None else None
        lfsclient.fetch_back(self.store, pointers, where)
        sent = lfsclient.upload(self.store, self.given, pointers, self.start, where)
        self.uploaded += sent
        return sent

    def list_refs(self, prefix: str) -> dict[str, bytes]:
        """The remote's refs under `prefix` and their ids (`git ls-remote`; no objects)."""
        proc = self._run("ls-remote", "--refs", self.name, prefix + "*")
        if not proc.ok:
            raise GdagError(
                f"cannot list the refs of remote {self.name!r}: {proc.reason}",
                hint="check the remote with `git ls-remote " + self.name + "`",
            )
        found = {}
        for line in proc.stdout.splitlines():
            sha, _, ref = line.partition("\t")
            if ref.startswith(prefix):
                found[ref] = sha.encode()
        return found


class RemoteRefs:
    """A remote's refs as a `refs.Refs`: read by `git fetch` (with their objects, the
    value kept under refs/gdag/remotes/), moved and deleted by `git push
    --force-with-lease`, listed by `git ls-remote`."""

    def __init__(self, remote: Remote) -> None:
        self.remote = remote

    def read_ref(self, ref: str) -> bytes | None:
        return self.remote.fetch(ref)

    def cas_ref(self, ref: str, old: bytes | None, new: bytes) -> bool:
        return self.remote.push_cas(ref, old, new)

    def delete_ref(self, ref: str, old: bytes) -> bool:
        return self.remote.push_cas(ref, old, None)

    def list_refs(self, prefix: str) -> dict[str, bytes]:
        return self.remote.list_refs(prefix)


def remote_leases(store: Store, log_name: str, remote: Remote) -> Leases:
    """Node leases claimed on the remote: its lease refs, moved by push."""
    return Leases(store, log_name, refs=RemoteRefs(remote))


def remote_log(store: Store, name: str, remote: Remote) -> Log:
    """A log whose commit point is a push to the remote (workers of `gdag run --remote`):
    the event commits there first, then the local ref follows."""
    return Log(store, name, commit_point=push_commit_point(remote))


def push_commit_point(remote: Remote) -> CommitPoint:
    """Commit by compare-and-swap of the remote's log ref; the local ref follows, and
    a lost race on either side syncs the two before `Log.append` builds again."""
    refs = RemoteRefs(remote)

    def commit(log: Log, tip: bytes | None, new: bytes, build: Build) -> bool:
        if refs.cas_ref(log.ref, tip, new):
            if not log.store.cas_ref(log.ref, tip, new):
                sync_log(remote, log)  # a local publish arrived meanwhile: merge it
            return True
        sync_log(remote, log)  # the remote moved: bring both sides together, then retry
        return False

    return commit


def merge_base(log: Log, a: bytes, b: bytes) -> bytes | None:
    """The newest commit on both first-parent chains (offsets make it a two-pointer walk)."""
    x, y = a, b
    while x is not None and y is not None and x != y:
        ox, oy = log.event(x).offset, log.event(y).offset
        if ox >= oy:
            x = log.first_parent(x)  # type: ignore[assignment]
        else:
            y = log.first_parent(y)  # type: ignore[assignment]
    return x if x == y else None


@dataclass
class SyncResult:
    log: str
    action: str  # up-to-date | pushed | fast-forward | adopted | replayed
    pushed: int = 0
    fetched: int = 0
    replayed: list[int] = field(default_factory=list)
    archive: str | None = None
    large: int = 0  # large values sent to the remote's LFS endpoint (or values store)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "large" or v}


def sync_log(remote: Remote, log: Log) -> SyncResult:
    """Bring the local log and the remote's together; no event is lost or duplicated.

    Local publish events not yet on the remote are re-applied onto the remote's
    tip in their order (offsets renumbered); local sessions the remote lacks are
    left to the next run to recompute. The local chain replaced is archived.
    A round lost to another writer (here or on the remote) is tried again.
    """
    backoff = Backoff(ROUNDS, f"syncing log {log.name!r} with {remote.name!r}")
    before = remote.uploaded
    while (result := _sync_round(remote, log)) is None:
        backoff.wait()
    result.large = remote.uploaded - before
    from gdag.lfsclient import remember_remote

    remember_remote(remote.store, remote.given)
    return result


def _sync_round(remote: Remote, log: Log) -> SyncResult | None:
    """One fetch and compare-and-swap; None if another writer moved a ref meanwhile."""
    local = log.tip()
    theirs = remote.fetch(log.ref)
    if theirs is None and local is None:
        raise GdagError(
            f"log {log.name!r} exists neither here nor on {remote.name!r}",
            hint="run `gdag init` in one clone and sync from there",
        )
    if theirs is None:
        assert local is not None
        if remote.push_cas(log.ref, None, local):
            return SyncResult(log.name, "pushed", pushed=log.event(local).offset + 1)
        return None
    if local is None:
        if log.store.cas_ref(log.ref, None, theirs):
            return SyncResult(log.name, "adopted", fetched=log.event(theirs).offset + 1)
        return None
    if local == theirs:
        return SyncResult(log.name, "up-to-date")
    base = merge_base(log, local, theirs)
    if base == theirs:  # we are ahead
        if remote.push_cas(log.ref, theirs, local):
            return SyncResult(
                log.name, "pushed", pushed=log.event(local).offset - log.event(theirs).offset
            )
        return None
    if base == local:  # they are ahead
        if log.store.cas_ref(log.ref, local, theirs):
            return SyncResult(
                log.name,
                "fast-forward",
                fetched=log.event(theirs).offset - log.event(local).offset,
            )
        return None
    # Diverged: our publishes since the base that theirs lacks go on top of theirs.
    # (Publish ids survive re-application, so an event already re-applied by an
    # earlier round, whose local update lost a race, is not applied twice.)
    stop = log.event(base).offset + 1 if base else 1
    theirs_ids = {e.first(trailers.PUBLISH_ID) for e in publish_events(log, theirs, stop)}
    ours = [
        e
        for e in publish_events(log, local, stop)
        if e.first(trailers.PUBLISH_ID) not in theirs_ids
    ]
    result = _rebase(remote, log, local, theirs, ours)
    if result is not None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{local.decode()[:8]}"
        archive = f"{ARCHIVE_PREFIX}{log.name}/{stamp}"
        log.store.cas_ref(archive, None, local)
        result.archive = archive
    return result


def _rebase(
    remote: Remote, log: Log, local: bytes, theirs: bytes, ours: list[Event]
) -> SyncResult | None:
    """Re-apply `ours` onto `theirs` in a work log; push it, then move the local log."""
    if not ours:  # theirs has all our publishes: our local sessions are recomputed by runs
        if log.store.cas_ref(log.ref, local, theirs):
            return SyncResult(log.name, "fast-forward", fetched=log.event(theirs).offset)
        return None
    work = Log(log.store, f"{log.name}.sync-{int(time.time() * 1000):x}-{os.getpid()}")
    if not log.store.cas_ref(work.ref, None, theirs):
        return None
    try:
        for event in ours:
            republish(work, event)
        new = work.require_tip()
        if not remote.push_cas(log.ref, theirs, new):
            return None
        if not log.store.cas_ref(log.ref, local, new):
            return None  # a local publish landed meanwhile: the next round takes it too
        return SyncResult(log.name, "replayed", pushed=len(ours), replayed=[e.offset for e in ours])
    finally:
        log.store.delete_ref(work.ref, work.require_tip())

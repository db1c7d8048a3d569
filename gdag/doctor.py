"""`gdag doctor`: find what is damaged or left over in gdag's store, and repair what is safe.

Safe repairs lose nothing: stale lock files and old temporary objects of
killed processes are removed, and sessions of dead runs are merged back (if
finished) or dropped (their nodes run again). Damage that would need a choice
(a log pointing at a missing or unreadable commit) is reported with the ref and
what to do, never "fixed" by guessing.
"""

from __future__ import annotations

import contextlib
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from gdag import gitcmd
from gdag.errors import GdagError
from gdag.log import LOG_PREFIX, Log
from gdag.repo import Store
from gdag.workspace import Workspace

TMP_AGE = 600.0


@dataclass
class Finding:
    severity: str  # error | warning | note | repaired
    what: str
    hint: str | None = None

    def to_json(self) -> dict[str, str | None]:
        return asdict(self)


def _git_fsck(store: Store) -> list[Finding]:
    if not gitcmd.available():
        return [Finding("warning", "git is not installed: object checks skipped")]
    # No timeout: fsck takes as long as the store is large.
    proc = gitcmd.run(
        ["fsck", "--strict", "--no-dangling", "--no-progress"],
        git_dir=store.gitdir,
        check=False,
        timeout=None,
    )
    lines = [
        line
        for line in (proc.stdout + proc.stderr).splitlines()
        if line.strip() and not line.startswith(("notice:", "Checking", "dangling"))
    ]
    if proc.returncode == 0 and not lines:
        return []
    lines = _still_broken(store, lines)
    if not lines:
        return []
    ours, theirs = _split_by_owner(store, lines)
    found = [
        Finding(
            "error",
            f"git fsck: {line}",
            "restore the object from a clone or remote (`git fetch`), then run again",
        )
        for line in ours[:20]
    ]
    if theirs:
        found.append(
            Finding(
                "note",
                f"git fsck: {len(theirs)} finding(s) in objects gdag's refs do not reach "
                f"(your own history), e.g. {theirs[0]}",
                "not gdag's to fix: old tools wrote such commits; git reads them",
            )
        )
    return found


def _split_by_owner(store: Store, lines: list[str]) -> tuple[list[str], list[str]]:
    """fsck lines about gdag's store, and those only about objects no gdag ref reaches
    (the user's own history: public repositories have old malformed commits)."""
    refs = store.list_refs("refs/gdag/")
    reach = gitcmd.run(
        ["rev-list", "--objects", "--no-object-names", "--stdin"],
        git_dir=store.gitdir,
        input="".join(sha.decode() + "\n" for sha in refs.values()),
        check=False,
        timeout=None,
    )
    if not reach.ok:  # gdag's own history is broken: every line is gdag's concern
        return lines, []
    reachable = set(reach.stdout.split())
    ours: list[str] = []
    theirs: list[str] = []
    for line in lines:
        shas = SHA.findall(line)
        (theirs if shas and not reachable.intersection(shas) else ours).append(line)
    return ours, theirs


SHA = re.compile(r"\b[0-9a-f]{40}(?:[0-9a-f]{24})?\b")
MISSING = re.compile(r"^missing |\bmissing (?:blob|tree|commit|tag) |corrupt or missing")


def _still_broken(store: Store, lines: list[str]) -> list[str]:
    """fsck lines left once objects that other gdag processes wrote meanwhile are
    discounted: fsck reads the objects before the refs, so a commit written between the
    two looks missing. A "missing" or "broken link" line whose objects all exist and
    read whole now is dropped; every other line stays."""
    kept = []
    for line in lines:
        shas = SHA.findall(line)
        if shas and (MISSING.search(line) or "broken link" in line):
            check = gitcmd.run(
                ["cat-file", "--batch-check"],
                git_dir=store.gitdir,
                input="".join(f"{sha}\n" for sha in shas),
                check=False,
            )
            if check.ok and "missing" not in check.stdout:
                whole = (
                    gitcmd.run(["cat-file", "-p", sha], git_dir=store.gitdir, check=False).ok
                    for sha in shas
                )
                if all(whole):
                    continue
        kept.append(line)
    return kept


def _check_logs(store: Store) -> list[Finding]:
    found = []
    for ref in sorted(store.list_refs(LOG_PREFIX)):
        name = ref[len(LOG_PREFIX) :]
        try:
            log = Log(store, name)
            tip = log.require_tip()
            cur: bytes | None = tip
            for _ in range(64):  # the recent chain, with its trailers and trees
                if cur is None:
                    break
                event = log.event(cur)
                store.read_tree(store.read_commit(cur).tree)
                cur = log.first_parent(cur)
                if cur is not None and log.event(cur).offset != event.offset - 1:
                    raise GdagError(f"offsets jump at {event.offset} on log {name!r}")
        except GdagError as exc:
            found.append(
                Finding(
                    "error",
                    f"log {name!r} ({ref}): {exc.message}",
                    f"point it back at a good commit (see `git reflog {ref}` or "
                    f"refs/gdag/archive/) with `git update-ref {ref} <commit>`",
                )
            )
    return found


def _leftovers(store: Store) -> tuple[int, int]:
    """(stale ref locks, old temporary objects and large values) left by killed processes."""
    tmp = len(store.objects.leftover_tmp(TMP_AGE)) + len(_tmp_leftovers(store))
    return len(store.refs.stale_locks()), tmp


def _tmp_leftovers(store: Store) -> list[Path]:
    """Large values half written by killed writers, and the input files a killed run
    spilled for its jobs (`execute.spill_dir`) whose session is gone."""
    now = store.objects.clock.time()
    found = []
    if (store.user_commondir / "lfs").is_dir():
        from gdag import lfs

        found += lfs.leftover_tmp(store.user_commondir, TMP_AGE, now)
    from gdag.execute import SPILL

    spilled = store.gdag_dir / SPILL
    if spilled.is_dir():
        live = {ref.rpartition("/")[2] for ref in store.list_refs("refs/gdag/sessions/")}
        for session in spilled.iterdir():
            if session.name in live:
                continue
            try:  # a job that ends removes its directory at any moment
                paths = list(session.iterdir())
            except OSError:
                continue
            for path in paths:
                try:
                    if now - path.stat().st_mtime > TMP_AGE:
                        found.append(path)
                except FileNotFoundError:
                    continue
    return found


WORK_LOG = re.compile(r"\.(replay|sync)-([0-9a-f]+)-")
WORK_LOG_AGE = 3600.0


def _work_logs(store: Store, repair: bool) -> list[Finding]:
    """Work logs of replays or syncs that were killed: the live log never saw them."""
    stale = []
    for ref, sha in store.list_refs(LOG_PREFIX).items():
        m = WORK_LOG.search(ref)
        if m and time.time() - int(m.group(2), 16) / 1000 > WORK_LOG_AGE:
            stale.append((ref, sha))
    if not stale:
        return []
    if not repair:
        return [
            Finding(
                "warning",
                f"{len(stale)} work log(s) of killed replays or syncs",
                "`gdag doctor --repair` removes them; the live logs never used them",
            )
        ]
    for ref, sha in stale:
        name = ref[len(LOG_PREFIX) :]
        for prefix in (f"refs/gdag/sessions/{name}/", f"refs/gdag/leases/{name}/"):
            for sub, sub_sha in store.list_refs(prefix).items():
                store.delete_ref(sub, sub_sha)
        store.delete_ref(ref, sha)
    return [Finding("repaired", f"removed {len(stale)} work log(s) of killed replays or syncs")]


def _pack_loose(store: Store, repair: bool) -> list[Finding]:
    """Every gdag command writes loose objects (one file each); past git's `gc.auto`
    threshold they cost disk and directory scans, so they are packed (commands start a
    background packer themselves; see gdag.maintenance)."""
    from gdag import maintenance

    if not gitcmd.available() or not maintenance.too_many_loose(store):
        return []
    count = maintenance.loose_sample(store) * 256
    if not repair:
        return [
            Finding(
                "warning",
                f"about {count:,} loose objects in the store",
                "`gdag doctor --repair` packs them (with `git pack-objects`)",
            )
        ]
    proc = maintenance.repack(store)
    if not proc.ok:
        return [
            Finding(
                "error",
                f"packing failed: {proc.stderr.strip() or proc.returncode}",
                "nothing was lost: the loose objects are still there",
            )
        ]
    left = maintenance.loose_sample(store) * 256
    return [Finding("repaired", f"packed about {count:,} loose objects ({left:,} left loose)")]


def examine(ws: Workspace, repair: bool = False) -> list[Finding]:
    """Check (and with `repair`, mend) the store, holding the pack lock throughout: a
    background packer would move objects away while git fsck reads them."""
    from gdag.maintenance import pack_lock

    with pack_lock(ws.store):
        return _examine(ws, repair)


def _examine(ws: Workspace, repair: bool) -> list[Finding]:
    store = ws.store
    findings = _git_fsck(store) + _check_logs(store)
    locks, tmp = _leftovers(store)
    if repair and (locks or tmp):
        store.sweep(tmp_age=TMP_AGE)
        from gdag.execute import SPILL

        spilled = store.gdag_dir / SPILL
        for path in _tmp_leftovers(store):
            path.unlink(missing_ok=True)
            if path.parent.parent == spilled:
                with contextlib.suppress(OSError):  # a spilled session's emptied directory
                    path.parent.rmdir()
        findings.append(
            Finding(
                "repaired",
                f"removed {locks} stale ref locks and {tmp} "
                "temporary objects left by killed processes",
            )
        )
    elif locks or tmp:
        findings.append(
            Finding(
                "warning",
                f"{locks} stale ref locks and {tmp} old temporary objects left by killed processes",
                "`gdag doctor --repair` removes them",
            )
        )
    from gdag.session import list_sessions

    sessions = list_sessions(ws.log) if ws.log.tip() is not None else []
    if sessions and repair:
        from gdag.runner import Engine, Summary

        summary = Summary()
        Engine(ws).recover(summary)
        findings.append(
            Finding(
                "repaired",
                f"dealt with {len(sessions)} sessions of log "
                f"{ws.log.name!r} (finished ones merged back)",
            )
        )
    elif sessions:
        findings.append(
            Finding(
                "warning",
                f"{len(sessions)} session(s) in flight or left by dead runs on log {ws.log.name!r}",
                "`gdag run` (or `gdag doctor --repair`) recovers them",
            )
        )
    findings += _work_logs(store, repair)
    findings += _pack_loose(store, repair)
    from gdag.hooks import broken_hooks, pending, recent_errors

    for hook in broken_hooks(store):
        findings.append(
            Finding("error", f"hook {hook.name} cannot run: {hook.problem}", "gdag hooks install")
        )
    if queued := pending(store):
        findings.append(
            Finding(
                "warning",
                f"{queued} git event(s) queued by the hooks, not published yet",
                "`gdag hook --drain` publishes them",
            )
        )
    for line in recent_errors(store, 3):
        findings.append(
            Finding(
                "warning",
                f"hook failed: {line}",
                "see .git/gdag/hooks.log; fix gdag.toml and commit again",
            )
        )
    return findings

"""`gdag doctor`: find what is damaged or left over in gdag's store, and repair what is safe.

Safe repairs lose nothing: stale lock files and old temporary objects of
killed processes are removed, and sessions of dead runs are merged back (if
finished) or dropped (their nodes run again). Damage that would need a choice
(a log pointing at a missing or unreadable commit) is reported with the ref and
what to do, never "fixed" by guessing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from gdag.errors import GdagError
from gdag.log import LOG_PREFIX, Log
from gdag.repo import STALE_LOCK_SECONDS, Store
from gdag.workspace import Workspace

TMP_AGE = 600.0
# Loose objects worth packing: git's own `gc.auto` default (the config key is obeyed).
LOOSE_LIMIT = 6700


@dataclass
class Finding:
    severity: str  # error | warning | repaired
    what: str
    hint: str | None = None

    def to_json(self) -> dict[str, str | None]:
        return asdict(self)


def _git_fsck(store: Store) -> list[Finding]:
    git = shutil.which("git")
    if git is None:
        return [Finding("warning", "git is not installed: object checks skipped")]
    proc = subprocess.run(
        [git, f"--git-dir={store.gitdir}", "fsck", "--strict", "--no-dangling", "--no-progress"],
        capture_output=True,
        text=True,
    )
    lines = [
        line
        for line in (proc.stdout + proc.stderr).splitlines()
        if line.strip() and not line.startswith(("notice:", "Checking", "dangling"))
    ]
    if proc.returncode == 0 and not lines:
        return []
    lines = _still_broken(git, store, lines)
    if not lines:
        return []
    return [
        Finding(
            "error",
            f"git fsck: {line}",
            "restore the object from a clone or remote (`git fetch`), then run again",
        )
        for line in lines[:20]
    ]


SHA = re.compile(r"\b[0-9a-f]{40}\b")


def _still_broken(git: str, store: Store, lines: list[str]) -> list[str]:
    """fsck lines left once objects that other gdag processes wrote meanwhile are
    discounted: fsck reads the objects before the refs, so a commit written between the
    two looks missing. A "missing" or "broken link" line whose objects all exist and
    read whole now is dropped; every other line stays."""
    kept = []
    for line in lines:
        shas = SHA.findall(line)
        if shas and ("missing" in line or "broken link" in line):
            check = subprocess.run(
                [git, f"--git-dir={store.gitdir}", "cat-file", "--batch-check"],
                input="".join(f"{sha}\n" for sha in shas),
                capture_output=True,
                text=True,
            )
            if check.returncode == 0 and "missing" not in check.stdout:
                found = [
                    subprocess.run(
                        [git, f"--git-dir={store.gitdir}", "cat-file", "-p", sha],
                        capture_output=True,
                    ).returncode
                    == 0
                    for sha in shas
                ]
                if all(found):
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
    now = time.time()
    locks = 0
    for dirpath, _dirs, files in os.walk(store.gitdir / "refs" / "gdag"):
        for name in files:
            if name.endswith(".lock"):
                try:
                    if now - (Path(dirpath) / name).stat().st_mtime > STALE_LOCK_SECONDS:
                        locks += 1
                except FileNotFoundError:
                    pass
    tmp = 0
    try:
        for entry in os.scandir(store.objects_dir):
            if entry.name.startswith("tmp_obj_") and now - entry.stat().st_mtime > TMP_AGE:
                tmp += 1
    except FileNotFoundError:
        pass
    return locks, tmp


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


def loose_sample(store: Store) -> int:
    """Loose objects in `objects/17/`, the fan-out directory `git gc --auto` samples."""
    try:
        return sum(len(name) == 38 for name in os.listdir(store.objects_dir / "17"))
    except FileNotFoundError:
        return 0


def _gc_auto(git: str, store: Store) -> int:
    """The user's `gc.auto` (their repository's config, also for a private store)."""
    proc = subprocess.run(
        [git, f"--git-dir={store.user_commondir}", "config", "--int", "--get", "gc.auto"],
        capture_output=True,
        text=True,
    )
    return int(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else LOOSE_LIMIT


def _pack_loose(store: Store, repair: bool) -> list[Finding]:
    """Every gdag command writes loose objects (one file each); past git's `gc.auto`
    threshold they cost disk and directory scans, so they are packed.

    `git repack --cruft -d`: reachable objects into one pack, unreachable ones (in
    flight, or left by killed or losing writers) into a cruft pack with no expiry, then
    the loose copies go. Nothing is dropped, so it is safe beside running commands, and
    no `-l`: a private store must keep its own copy of objects it borrows."""
    git = shutil.which("git")
    if git is None:
        return []
    limit = _gc_auto(git, store)
    sample = loose_sample(store)
    # git's own test: more than ceil(limit / 256) objects in 17/; 0 turns it off.
    if limit <= 0 or sample <= -(-limit // 256):
        return []
    count = sample * 256
    if not repair:
        return [
            Finding(
                "warning",
                f"about {count:,} loose objects in the store",
                "`gdag doctor --repair` packs them (with git's `repack`)",
            )
        ]
    base = [git, f"--git-dir={store.gitdir}", "repack", "-d", "-q"]
    proc = subprocess.run([*base, "--cruft"], capture_output=True, text=True)
    if proc.returncode != 0 and "cruft" in proc.stderr:  # git before 2.37
        proc = subprocess.run([*base, "-A"], capture_output=True, text=True)
    if proc.returncode != 0:
        return [
            Finding(
                "error",
                f"git repack failed: {proc.stderr.strip() or proc.returncode}",
                "nothing was lost: the loose objects are still there",
            )
        ]
    return [
        Finding(
            "repaired",
            f"packed about {count:,} loose objects ({loose_sample(store) * 256:,} left loose)",
        )
    ]


def examine(ws: Workspace, repair: bool = False) -> list[Finding]:
    store = ws.store
    findings = _git_fsck(store) + _check_logs(store)
    locks, tmp = _leftovers(store)
    if repair and (locks or tmp):
        store.sweep(tmp_age=TMP_AGE)
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
    from gdag.hooks import recent_errors

    for line in recent_errors(store, 3):
        findings.append(
            Finding(
                "warning",
                f"hook failed: {line}",
                "see .git/gdag/hooks.log; fix gdag.toml and commit again",
            )
        )
    return findings

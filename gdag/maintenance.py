"""Storage that maintains itself: loose objects packed in the background, as `git gc --auto`.

Every command writes loose objects (one file each). After a command that wrote
some, `gdag.main` looks at `objects/17/` as `git gc --auto` does
(`Store.past_gc_auto`, no import of this module below the threshold): past
git's threshold (`gc.auto`, read from every config file git reads; default
6700, 0 turns it off) it starts `python -m gdag.maintenance` detached, unless
one is packing already or `[store] auto_pack = false`. That process holds
`.git/gdag/pack.lock` (one at a time) and runs `git repack --cruft -d`
(`-A -d` before git 2.37): nothing is dropped, so it is safe beside running
commands. A packer that fails says why in `.git/gdag/pack.failed`, and none is
started again for an hour. `gdag doctor --repair` packs through the same function.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

from gdag.dirs import make_dirs
from gdag.repo import Store

if TYPE_CHECKING:
    from gdag import gitcmd

LOCK = "pack.lock"
PID = "pack.pid"  # the last packer started (its pid): written before the command exits
# git's message when the last packer failed (a repository that forbids `repack -d`,
# say): no packer is started again for RETRY seconds, rather than one per command.
FAILED = "pack.failed"
RETRY = 3600.0


def loose_sample(store: Store) -> int:
    """Loose objects in `objects/17/`, the fan-out directory `git gc --auto` samples."""
    return store.objects.loose_sample()


def gc_auto(store: Store) -> int:
    """`gc.auto` as git reads it for the user's repository (a private store's too)."""
    return store.gc_auto()


def too_many_loose(store: Store) -> bool:
    """git's own test (`Store.past_gc_auto`)."""
    return store.past_gc_auto()


def auto_pack(store: Store) -> bool:
    """`[store] auto_pack` of the repository's definition (default true)."""
    from gdag import definition

    try:
        src = (
            definition.read_stored_source(store)
            if store.workdir is None
            else definition.read_source(store.workdir)
        )
        table = definition.parse_source(src).get("store", {})
    except Exception:  # a broken definition is reported by the commands that compile it
        return True
    return table.get("auto_pack", True) is not False if isinstance(table, dict) else True


def after_round() -> None:
    """For a long-lived process (`gdag watch`): pack what its last round wrote, as a
    command does when it ends, and watch for the next writes."""
    from gdag import repo

    stores = list(repo.WROTE.values())
    repo.WROTE.clear()
    for store in stores:
        store.objects.on_first_write = store.note_write
    after_command([s for s in stores if s.past_gc_auto()])


def after_command(stores: list[Store]) -> None:
    """Start a background packer for each of `stores` (past `gc.auto`, see
    `Store.past_gc_auto`) unless its definition turns it off or one is at work."""
    for store in stores:
        try:
            if auto_pack(store) and not recently_failed(store) and not is_packing(store):
                start_packer(store)
        except Exception:  # maintenance never fails the command that wrote
            continue


def recently_failed(store: Store) -> bool:
    """Whether the last packer failed less than RETRY seconds ago."""
    try:
        failed = (store.gdag_dir / FAILED).stat().st_mtime
    except FileNotFoundError:
        return False
    return store.objects.clock.time() - failed < RETRY


def is_packing(store: Store) -> bool:
    """Whether a packer (or `gdag doctor`) holds the pack lock now."""
    with pack_lock(store, wait=False) as held:
        return not held


def start_packer(store: Store) -> int:
    """`python -m gdag.maintenance GIT_DIR` detached, all streams closed (a git hook
    never waits for it); its pid."""
    import subprocess

    proc = subprocess.Popen(
        [sys.executable, "-m", "gdag.maintenance", str(store.user_gitdir)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
        env={**os.environ, "GIT_DIR": str(store.user_gitdir)},
    )
    (store.gdag_dir / PID).write_text(f"{proc.pid}\n")
    return proc.pid


@contextlib.contextmanager
def pack_lock(store: Store, wait: bool = True) -> Iterator[bool]:
    """Hold `.git/gdag/pack.lock` (flock): one packer at a time, and none while
    `gdag doctor` runs git fsck (an object packed away mid-fsck looks missing).
    Without `wait`, yields False at once when another process holds it."""
    import fcntl

    make_dirs(store.gdag_dir)
    with open(store.gdag_dir / LOCK, "a") as lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True


def repack(store: Store) -> gitcmd.Result:
    """`git repack --cruft -d` (the caller holds `pack_lock`): reachable objects into
    one pack, unreachable ones (in flight, or left by killed or losing writers) into a
    cruft pack with no expiry, then the loose copies go. Nothing is dropped, so it is
    safe beside running commands, and no `-l`: a private store must keep its own copy
    of objects it borrows."""

    from gdag import gitcmd  # here: a command that packs nothing starts no git

    def run(*mode: str) -> gitcmd.Result:  # no timeout: as long as the store is large
        return gitcmd.run(
            ["repack", "-d", "-q", *mode], git_dir=store.gitdir, check=False, timeout=None
        )

    proc = run("--cruft")
    if not proc.ok and "cruft" in proc.stderr:  # git before 2.37
        proc = run("-A")
    return proc


def pack_in_background(store: Store) -> int:
    """The packer's body: one at a time (the lock), and only while still needed."""
    with pack_lock(store, wait=False) as held:
        # Another packer is at it, or one that just finished did it.
        if not held or not too_many_loose(store):
            return 0
        proc = repack(store)
        failed = store.gdag_dir / FAILED
        if proc.ok:
            failed.unlink(missing_ok=True)
            return 0
        failed.write_text(f"git repack failed: {proc.stderr.strip() or proc.returncode}\n")
        return 1


if __name__ == "__main__":
    sys.exit(pack_in_background(Store.find(".")))

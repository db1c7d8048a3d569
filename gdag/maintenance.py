"""Storage that maintains itself: loose objects packed in the background, as `git gc --auto`.

Every command writes loose objects (one file each). After a command that wrote
some, `gdag.main` looks at `objects/17/` as `git gc --auto` does
(`Store.past_gc_auto`, no import of this module below the threshold): past
git's threshold (`gc.auto`, read from every config file git reads; default
6700, 0 turns it off) it starts `python -m gdag.maintenance` detached, unless
one is packing already or `[store] auto_pack = false`. That process holds
`.git/gdag/pack.lock` (one at a time) and packs.

Packing never takes a file away from a process reading the store. Every loose
object (reachable or not: an object in flight is not yet) goes into a new pack
(`git pack-objects`), then `git prune-packed` removes the loose copies, as git's
own incremental repack does; a reader that misses a loose object finds it in
the new pack (git and `gdag.objects` look again). Past half of
`gc.autoPackLimit` packs (default 50) the packer writes one pack of everything in
the ordinary packs and the loose objects instead, and *retires* the packs it
replaced: they stay on disk, redundant, and a later packer deletes them once
RETIRE_AFTER seconds have passed, so a `git fsck` or a long read that listed them
never finds them gone. Packs with a `.keep`, `.promisor` or `.mtimes` file are left
alone, and nothing is replaced or deleted beside a multi-pack-index. A packer
that fails says why in `.git/gdag/pack.failed`, and none is started again for an
hour. `gdag doctor --repair` packs through the same function.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

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
# Packs replaced by a whole repack, with when (`delete_retired`), and the ids a
# packer is packing (removed when it ends).
RETIRED = "pack.retired"
IDS = "pack.ids"
RETIRE_AFTER = 3600.0
AUTO_PACK_LIMIT = 50  # git's own `gc.autoPackLimit` default
HEX = frozenset("0123456789abcdef")


def loose_sample(store: Store) -> int:
    """Loose objects in `objects/17/`, the fan-out directory `git gc --auto` samples."""
    return store.objects.loose_sample()


def gc_auto(store: Store) -> int:
    """`gc.auto` as git reads it for the user's repository (a private store's too)."""
    return store.gc_auto()


def too_many_loose(store: Store) -> bool:
    """git's own test (`Store.past_gc_auto`)."""
    return store.past_gc_auto()


def _table(store: Store, name: str) -> dict:
    """A table of the repository's definition, read without compiling it ({} when the
    definition is broken: the commands that compile it report that)."""
    from gdag import definition

    try:
        src = (
            definition.read_stored_source(store)
            if store.workdir is None
            else definition.read_source(store.workdir)
        )
        table = definition.parse_source(src).get(name, {})
    except Exception:
        return {}
    return table if isinstance(table, dict) else {}


def auto_pack(store: Store) -> bool:
    """`[store] auto_pack` of the repository's definition (default true)."""
    return _table(store, "store").get("auto_pack", True) is not False


def values_cache(store: Store) -> int | None:
    """`[values] cache` of the repository's definition: the most bytes of large values
    kept here (None: no limit)."""
    from gdag.definition import parse_size

    text = _table(store, "values").get("cache")
    return None if text is None else parse_size(text)


def trim_grown() -> None:
    """Trim the stores whose LFS store grew in this process (`lfs.GREW`), if any."""
    lfs = sys.modules.get("gdag.lfs")  # not imported: no large value was met
    if lfs is None or not lfs.GREW:
        return
    grew = list(lfs.GREW.values())
    lfs.GREW.clear()
    trim_large(grew)


def trim_large(stores: list[Store]) -> None:
    """After large values were written or fetched: evict the least recently used ones
    that the remote holds, down to `[values] cache` (`lfs.trim`)."""
    from gdag import lfs

    for store in stores:
        try:
            limit = values_cache(store)
            if limit is not None:
                lfs.trim(store.user_commondir, store.gdag_dir, limit)
        except Exception:  # maintenance never fails the command that wrote
            continue


def after_round() -> None:
    """For a long-lived process (`gdag watch`): pack what its last round wrote, as a
    command does when it ends, and watch for the next writes."""
    from gdag import repo

    stores = list(repo.WROTE.values())
    repo.WROTE.clear()
    for store in stores:
        store.objects.on_first_write = store.note_write
    after_command([s for s in stores if s.past_gc_auto()])
    trim_grown()


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
    """Pack the store (the caller holds `pack_lock`), deleting no pack that is still
    fresh: the loose objects into a new pack, or past half `gc.autoPackLimit` everything
    into one, retiring the packs it replaces; then the loose copies go. Retired packs
    older than RETIRE_AFTER are deleted first. Nothing is dropped, and nothing is
    taken from under a reader."""
    from gdag import gitcmd  # here: a command that packs nothing starts no git
    from gdag.gitconfig import read_all

    config = read_all(store.commondir, store.gitdir)
    if config.get_bool("extensions.preciousobjects"):
        return gitcmd.Result(
            ("pack-objects",),
            1,
            "",
            "the repository's objects are precious (extensions.preciousObjects): "
            "gdag does not pack them",
        )
    pack_dir = store.objects.path / "pack"
    delete_retired(store)
    packs = ordinary_packs(pack_dir, retired=set(read_retired(store)))
    same = store.user_gitdir == store.gitdir
    user = config if same else read_all(store.user_commondir, store.user_gitdir)
    limit = user.get_int("gc.autopacklimit", AUTO_PACK_LIMIT)
    # At half git's limit (kept ones aside): the retired packs and the new one then stay
    # within it, so the user's `git gc --auto` is not set off by them. Not beside a
    # multi-pack-index (git's own maintenance writes one), which names packs.
    whole = 0 < limit // 2 < len(packs) and not (pack_dir / "multi-pack-index").exists()
    ids = store.gdag_dir / IDS
    try:
        with open(ids, "w") as out:
            count = write_loose_ids(store.objects.path, out)
            if whole:
                for pack in packs:
                    shown = gitcmd.run(
                        ["show-index"],
                        git_dir=store.gitdir,
                        stdin=pack.with_suffix(".idx"),
                        check=False,
                        timeout=None,
                    )
                    if not shown.ok:
                        return shown
                    for line in shown.stdout.splitlines():
                        out.write(line.split()[1] + "\n")
                        count += 1
        if count == 0:
            return gitcmd.Result(("pack-objects",), 0, "", "")
        # no timeout: as long as the store is large
        proc = gitcmd.run(
            ["pack-objects", "-q", "--delta-base-offset", str(pack_dir / "pack")],
            git_dir=store.gitdir,
            stdin=ids,
            check=False,
            timeout=None,
        )
    finally:
        ids.unlink(missing_ok=True)
    if not proc.ok:
        return proc
    if whole:
        new = proc.stdout.strip()
        retire(store, [p.stem for p in packs if not p.stem.endswith(new)])
    return gitcmd.run(["prune-packed", "-q"], git_dir=store.gitdir, check=False, timeout=None)


def write_loose_ids(objects: Path, out: IO[str]) -> int:
    """Write the id of every loose object under `objects` to `out`, one per line; how many.
    Files come and go as this reads (writers, `git prune-packed`): what is gone is skipped."""
    count = 0
    for fan in sorted(os.listdir(objects)):
        if len(fan) != 2 or not all(c in HEX for c in fan):
            continue
        try:
            names = os.listdir(objects / fan)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in names:
            if len(name) in (38, 62) and all(c in HEX for c in name):
                out.write(fan + name + "\n")
                count += 1
    return count


def ordinary_packs(pack_dir: Path, retired: set[str]) -> list[Path]:
    """The store's packs that a whole repack may replace: complete (an index beside
    them), not kept (`.keep`), not a partial clone's (`.promisor`), not git's cruft
    pack (`.mtimes`: git gc expires its objects by those times), not retired."""
    try:
        names = set(os.listdir(pack_dir))
    except FileNotFoundError:
        return []
    return sorted(
        pack_dir / name
        for name in names
        if name.startswith("pack-")
        and name.endswith(".pack")
        and name[:-5] not in retired
        and name[:-5] + ".idx" in names
        and not any(name[:-5] + suffix in names for suffix in (".keep", ".promisor", ".mtimes"))
    )


def read_retired(store: Store) -> dict[str, float]:
    """Retired packs (`pack-<hash>`) and when they were retired."""
    try:
        text = (store.gdag_dir / RETIRED).read_text()
    except FileNotFoundError:
        return {}
    found: dict[str, float] = {}
    for line in text.splitlines():
        when, _, name = line.partition(" ")
        try:
            found[name] = float(when)
        except ValueError:
            continue  # a line cut short by a kill: that pack stays (a later repack retires it)
    return found


def retire(store: Store, names: list[str]) -> None:
    """Add packs to the retired list (appended: a kill loses at most the last line)."""
    now = store.objects.clock.time()
    with open(store.gdag_dir / RETIRED, "a") as f:
        f.writelines(f"{now:.0f} {name}\n" for name in names)


def delete_retired(store: Store) -> None:
    """Delete the packs retired more than RETIRE_AFTER seconds ago (index first, so no
    reader finds an index without its pack) and rewrite the list without them."""
    retired = read_retired(store)
    pack_dir = store.objects.path / "pack"
    if not retired or (pack_dir / "multi-pack-index").exists():
        return  # a multi-pack-index (written since) may name them: git's gc removes them
    now = store.objects.clock.time()
    keep = {}
    for name, when in retired.items():
        if now - when < RETIRE_AFTER:
            keep[name] = when
            continue
        for suffix in (".idx", ".bitmap", ".rev", ".pack"):
            (pack_dir / (name + suffix)).unlink(missing_ok=True)
    path = store.gdag_dir / RETIRED
    if keep:
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(f"{when:.0f} {name}\n" for name, when in keep.items()))
        os.replace(tmp, path)
    else:
        path.unlink(missing_ok=True)


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
        failed.write_text(f"packing failed: {proc.stderr.strip() or proc.returncode}\n")
        return 1


if __name__ == "__main__":
    # Housekeeping yields to the commands it packs after. Its session (it is detached)
    # is an autogroup of its own where the kernel groups by session, and a nice value
    # weighs only inside its group: the group's is lowered too.
    with contextlib.suppress(OSError):
        os.nice(19)
    with contextlib.suppress(OSError), open("/proc/self/autogroup", "w") as group:
        group.write("19")
    sys.exit(pack_in_background(Store.find(".")))

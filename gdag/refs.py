"""Refs: the `Refs` protocol gdag moves refs through, and git's own lock-file protocol on disk.

`Refs` is four operations: read, compare-and-swap, delete-if-equal and list.
`LocalRefs` implements them on a repository's files exactly as git does —
create `<ref>.lock` exclusively, re-read the ref (loose, else `packed-refs`)
under the lock, compare, write, rename — so every update is atomic with
respect to `git update-ref`, `git pack-refs` and `git gc`, without dulwich's
snapshot hazards. `remote.RemoteRefs` implements them on a git remote.
"""

from __future__ import annotations

import contextlib
import os
import random
from pathlib import Path
from typing import Protocol

from gdag.dirs import make_dirs
from gdag.errors import StoreError
from gdag.retry import LOCK, RACE, SYSTEM_CLOCK, Backoff, Clock

ZERO = b"0" * 40
# A ref lock older than this was left by a killed process (git holds them for
# milliseconds): it is broken rather than waited on forever.
STALE_LOCK_SECONDS = 5.0


class Refs(Protocol):
    """Where a set of refs lives, and the only ways gdag moves them."""

    def read_ref(self, ref: str) -> bytes | None:
        """The object id `ref` points to; None if it does not exist."""
        ...

    def cas_ref(self, ref: str, old: bytes | None, new: bytes) -> bool:
        """Point `ref` at `new` if it still points at `old` (None: must not exist)."""
        ...

    def delete_ref(self, ref: str, old: bytes) -> bool:
        """Delete `ref` if it still points at `old`."""
        ...

    def list_refs(self, prefix: str) -> dict[str, bytes]:
        """Every ref under `prefix` (e.g. `refs/gdag/logs/`) and its object id."""
        ...


class LocalRefs:
    """The refs of a repository on this machine (`path`: its common git dir)."""

    def __init__(self, path: Path, clock: Clock = SYSTEM_CLOCK) -> None:
        self.path = path
        self._root = str(path)
        self.clock = clock

    def _ref_name(self, ref: str) -> str:
        """Where `ref` (or its lock) is, as a string: the hot paths skip pathlib."""
        return f"{self._root}/{ref}"

    def _ref_path(self, ref: str) -> Path:
        return Path(self._ref_name(ref))

    def _packed_refs(self) -> dict[str, bytes]:
        refs: dict[str, bytes] = {}
        try:
            text = (self.path / "packed-refs").read_bytes()
        except FileNotFoundError:
            return refs
        for line in text.splitlines():
            if not line or line[:1] in (b"#", b"^"):
                continue
            sha, _, name = line.partition(b" ")
            refs[name.decode()] = sha
        return refs

    def read_ref(self, ref: str) -> bytes | None:
        """The object id a ref points to, loose or packed; None if it does not exist."""
        backoff: Backoff | None = None
        while True:
            try:
                with open(self._ref_name(ref), "rb") as f:
                    data = f.read().strip()
            except (FileNotFoundError, NotADirectoryError):
                return self._packed_refs().get(ref)
            except IsADirectoryError:
                return None
            if len(data) == 40:
                return data
            if data:
                raise StoreError(f"ref {ref} is not a plain object id: {data[:60]!r}")
            # Caught between create and write by a non-atomic writer.
            backoff = backoff or Backoff(
                RACE, f"reading ref {ref}: it stays empty", clock=self.clock
            )
            backoff.wait()

    def list_refs(self, prefix: str) -> dict[str, bytes]:
        """Every ref under `prefix` (e.g. `refs/gdag/logs/`), loose over packed."""
        refs = {k: v for k, v in self._packed_refs().items() if k.startswith(prefix)}
        base = self._ref_path(prefix)
        if base.is_dir():
            for dirpath, _dirs, files in os.walk(base):
                for fname in files:
                    if fname.endswith(".lock") or ".lock.stale-" in fname:
                        continue
                    full = Path(dirpath) / fname
                    name = full.relative_to(self.path).as_posix()
                    sha = self.read_ref(name)
                    if sha is not None:
                        refs[name] = sha
        return refs

    # -- the lock-file protocol ----------------------------------------------------

    def _take_lock(self, ref: str, timeout: float | None = None) -> int:
        """Create `<ref>.lock` exclusively, breaking a stale one; its open descriptor.
        `timeout`: seconds to wait for another holder (default: the LOCK policy's)."""
        lock = self._ref_name(ref + ".lock")
        backoff: Backoff | None = None
        made = False
        while True:
            try:
                return os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except (FileNotFoundError, NotADirectoryError):  # no directory for it (yet)
                if not made:  # or a prune removed it; a file in the way is an error there
                    make_dirs(Path(lock).parent)
                    made = True
                    continue
                made = False
            except FileExistsError:
                if self._break_stale_lock(Path(lock)):
                    continue
            backoff = backoff or Backoff(
                LOCK,
                f"waiting for the lock of ref {ref} (another process holds it)",
                hint=f"if no git or gdag process is running, remove {lock}",
                clock=self.clock,
                deadline=timeout,
            )
            backoff.wait()

    def _is_stale(self, path: Path) -> bool | None:
        """Whether a lock file is older than STALE_LOCK_SECONDS; None if it is gone."""
        try:
            return self.clock.time() - path.stat().st_mtime >= STALE_LOCK_SECONDS
        except FileNotFoundError:
            return None

    def _break_stale_lock(self, lock: Path) -> bool:
        """Remove `lock` if it is older than STALE_LOCK_SECONDS; True if gone."""
        stale = self._is_stale(lock)
        if stale is None:
            return True
        if not stale:
            return False
        # Rename first so two breakers cannot both remove a fresh lock.
        private = lock.with_name(f"{lock.name}.stale-{os.getpid()}-{random.getrandbits(32):x}")
        try:
            os.rename(lock, private)
        except FileNotFoundError:
            return True
        try:
            if self._is_stale(private) is False:
                # Someone replaced it between our stat and rename: give it back.
                try:
                    os.link(private, lock)
                except FileExistsError:
                    pass
                return False
        finally:
            private.unlink(missing_ok=True)
        return True

    def stale_locks(self, prefix: str = "refs/gdag/") -> list[Path]:
        """Lock files under `prefix` older than STALE_LOCK_SECONDS (left by killed processes)."""
        found = []
        for dirpath, _dirs, files in os.walk(self._ref_path(prefix)):
            for name in files:
                path = Path(dirpath) / name
                if name.endswith(".lock") and self._is_stale(path):
                    found.append(path)
        return found

    def sweep(self, prefix: str = "refs/gdag/") -> int:
        """Break the stale ref locks under `prefix`; how many went.

        Locks of refs that nothing writes again (a finished session's) are otherwise
        never taken, so never broken."""
        return sum(self._break_stale_lock(path) for path in self.stale_locks(prefix))

    def cas_ref(
        self, ref: str, old: bytes | None, new: bytes, timeout: float | None = None
    ) -> bool:
        """Point `ref` at `new` if it still points at `old` (None: must not exist).
        `timeout`: how long to wait for a lock another process holds."""
        fd = self._take_lock(ref, timeout)
        lock = self._ref_name(ref + ".lock")
        try:
            if self.read_ref(ref) != old:
                os.close(fd)
                os.unlink(lock)
                return False
            os.write(fd, new + b"\n")
            os.close(fd)
            os.replace(lock, self._ref_name(ref))
            return True
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock)
            raise

    def delete_ref(self, ref: str, old: bytes) -> bool:
        """Delete `ref` if it still points at `old`, from loose and packed storage alike."""
        fd = self._take_lock(ref)
        os.close(fd)
        lock = self._ref_path(ref + ".lock")
        try:
            if self.read_ref(ref) != old:
                return False
            if ref in self._packed_refs():
                self._rewrite_packed_refs_without(ref)
            self._ref_path(ref).unlink(missing_ok=True)
            return True
        finally:
            lock.unlink(missing_ok=True)

    def _rewrite_packed_refs_without(self, ref: str) -> None:
        packed = self.path / "packed-refs"
        fd = self._take_lock("packed-refs")
        try:
            lines = packed.read_bytes().splitlines(keepends=True)
            out, skip = [], False
            target = b" " + ref.encode() + b"\n"
            for line in lines:
                if skip and line.startswith(b"^"):
                    continue
                skip = line.endswith(target)
                if not skip:
                    out.append(line)
            os.write(fd, b"".join(out))
            os.close(fd)
            os.replace(str(packed) + ".lock", packed)
        except BaseException:
            Path(str(packed) + ".lock").unlink(missing_ok=True)
            raise

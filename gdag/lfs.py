"""Large values as git LFS objects: the local store under `.git/lfs/`, pointers, verified copies.

A value at or above `[values] large` is kept where git-lfs keeps objects,
`<common git dir>/lfs/objects/<oid[0:2]>/<oid[2:4]>/<oid>`, named by the SHA-256
of its bytes, and the state tree holds the standard pointer text in its place.
Objects are written through a temporary file and a rename, and read a chunk at a
time, their SHA-256 checked on the way: a value is never whole in memory here.
Standard library only: this module is imported only when a large value is met.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from gdag.dirs import make_dirs
from gdag.errors import GdagError, StoreError

CHUNK = 1 << 20
VERSION = b"version https://git-lfs.github.com/spec/v1\n"
_POINTER = re.compile(
    rb"version https://git-lfs\.github\.com/spec/v1\noid sha256:([0-9a-f]{64})\n"
    rb"size (0|[1-9][0-9]*)\n"
)
# A pointer is small; anything bigger is a value, whatever it starts with.
MAX_POINTER = 200


class Pointer:
    """An LFS object's id (SHA-256, hex) and size."""

    def __init__(self, oid: str, size: int) -> None:
        self.oid, self.size = oid, size

    def to_bytes(self) -> bytes:
        """The pointer text git-lfs writes, byte for byte."""
        return VERSION + b"oid sha256:%s\nsize %d\n" % (self.oid.encode(), self.size)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pointer) and (self.oid, self.size) == (other.oid, other.size)

    def __hash__(self) -> int:
        return hash(self.oid)

    def __repr__(self) -> str:
        return f"Pointer({self.oid[:12]}…, {self.size})"


class MissingObjectError(StoreError):
    """A large value whose object is not in this repository's LFS store."""

    def __init__(self, pointer: Pointer) -> None:
        super().__init__(
            f"large value {pointer.oid[:12]} ({pointer.size} bytes) is not in this repository",
            hint="`gdag sync REMOTE` fetches the log; its large values come from the "
            "remote's LFS endpoint on demand",
        )
        self.pointer = pointer


def parse_pointer(data: bytes) -> Pointer | None:
    """The pointer `data` holds, or None if it is no (canonical) LFS pointer."""
    if len(data) > MAX_POINTER:
        return None
    m = _POINTER.fullmatch(data)
    return Pointer(m.group(1).decode(), int(m.group(2))) if m else None


def lfs_dir(common_dir: Path) -> Path:
    """Where git-lfs keeps a repository's objects: `lfs/` in its common git dir."""
    return common_dir / "lfs"


def object_path(common_dir: Path, oid: str) -> Path:
    return lfs_dir(common_dir) / "objects" / oid[0:2] / oid[2:4] / oid


def has_object(common_dir: Path, pointer: Pointer) -> bool:
    try:
        return object_path(common_dir, pointer.oid).stat().st_size == pointer.size
    except FileNotFoundError:
        return False


def write_object(common_dir: Path, stream: IO[bytes], size: int | None = None) -> Pointer:
    """Store the bytes of `stream` (exactly `size` of them when given) as an LFS object."""
    tmpdir = lfs_dir(common_dir) / "tmp"
    make_dirs(tmpdir)
    fd, tmp = tempfile.mkstemp(dir=tmpdir)
    hasher = hashlib.sha256()
    written = 0
    try:
        with os.fdopen(fd, "wb") as out:
            while size is None or written < size:
                chunk = stream.read(CHUNK if size is None else min(CHUNK, size - written))
                if not chunk:
                    break
                hasher.update(chunk)
                out.write(chunk)
                written += len(chunk)
        if size is not None and (written != size or stream.read(1)):
            raise StoreError("the value changed size while it was being read")
        pointer = Pointer(hasher.hexdigest(), written)
        install(common_dir, tmp, pointer)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return pointer


def install(common_dir: Path, tmp: str, pointer: Pointer) -> None:
    """Move a verified temporary file into place (an object already there stays)."""
    final = object_path(common_dir, pointer.oid)
    if has_object(common_dir, pointer):
        os.unlink(tmp)
        mark_used(final)  # written again: `gdag gc` and the cache keep it
        return
    make_dirs(final.parent)
    os.chmod(tmp, 0o444)
    os.replace(tmp, final)


def leftover_tmp(common_dir: Path, age: float, now: float) -> list[Path]:
    """Temporary files in `lfs/tmp/` older than `age` seconds: killed writers' (git-lfs
    clears its own the same way)."""
    found = []
    try:
        entries = list(os.scandir(lfs_dir(common_dir) / "tmp"))
    except FileNotFoundError:
        return []
    for entry in entries:
        try:
            if entry.is_file(follow_symlinks=False) and now - entry.stat().st_mtime > age:
                found.append(Path(entry.path))
        except FileNotFoundError:
            pass
    return found


def copy_verified(path: Path, pointer: Pointer, out: IO[bytes]) -> None:
    """Copy the object at `path` to `out` a chunk at a time, checking its size and
    SHA-256 (the bytes are out already when a damaged object is found: the caller
    must not keep what it wrote then)."""
    for chunk in verified_chunks(path, pointer):
        out.write(chunk)


def verified_chunks(path: Path, pointer: Pointer) -> Iterator[bytes]:
    """The object at `path` a chunk at a time; a damaged one (not the pointer's size
    and SHA-256) raises after its last chunk."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise MissingObjectError(pointer) from None
    hasher, size = hashlib.sha256(), 0
    with f:
        while chunk := f.read(CHUNK):
            hasher.update(chunk)
            size += len(chunk)
            yield chunk
    if size != pointer.size or hasher.hexdigest() != pointer.oid:
        raise StoreError(
            f"large value {pointer.oid[:12]} is damaged: {path} does not hash to its id",
            hint=f"remove {path}; the next read fetches it again from the remote",
        )


def copy_stream(f: IO[bytes], pointer: Pointer, out: IO[bytes]) -> bool:
    """Copy `f` to `out` a chunk at a time; whether it had the pointer's size and SHA-256."""
    hasher = hashlib.sha256()
    size = 0
    while chunk := f.read(CHUNK):
        hasher.update(chunk)
        size += len(chunk)
        out.write(chunk)
    return size == pointer.size and hasher.hexdigest() == pointer.oid


def read_verified(path: Path, pointer: Pointer) -> bytes:
    """A (typed, so decoded whole anyway) large value's bytes, checked."""
    import io

    buf = io.BytesIO()
    copy_verified(path, pointer, buf)
    return buf.getvalue()


# -- objects pruned by `gdag gc` (gdag.retention) -------------------------------------

PRUNED = "pruned.jsonl"  # in `.git/gdag/`: one JSON record per object pruned


class ExpiredError(GdagError):
    """A large value `gdag gc` pruned under a retention rule (exit status 3)."""


def record_pruned(gdag_dir: Path, record: dict[str, object]) -> None:
    """Add an object's record to the ledger, before it is deleted."""
    import json

    make_dirs(gdag_dir)
    with open(gdag_dir / PRUNED, "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


def pruned_records(gdag_dir: Path, oid: str) -> list[dict[str, Any]]:
    """The ledger's records of object `oid` (`gdag gc` pruned it), oldest first: the
    same bytes may be published again and pruned again later."""
    import json

    try:
        lines = (gdag_dir / PRUNED).read_text().splitlines()
    except FileNotFoundError:
        return []
    found = []
    for line in lines:
        if oid not in line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut short by a kill
        if isinstance(record, dict) and record.get("oid") == oid:
            found.append(record)
    return found


def check_pruned(gdag_dir: Path, pointer: Pointer, value: tuple[str, int]) -> None:
    """Refuse to read (or fetch again) version `value` (output, version) of a large value
    whose object is missing here when `gdag gc` pruned that version. The same bytes as
    another version (published again later, or under another output) are not refused."""
    ref = f"{value[0]}@{value[1]}"
    for record in pruned_records(gdag_dir, pointer.oid):
        refs = record.get("refs")
        named = (
            refs if isinstance(refs, list) else [f"{record.get('output')}@{record.get('version')}"]
        )
        if ref in named:
            raise ExpiredError(
                f"the value of {value[0]} v{value[1]} expired under {record.get('rule')}: "
                f"`gdag gc` pruned it on {record.get('pruned')}",
                hint="its event stays in the log; its bytes are gone from this repository",
            )


# -- the local cache of objects a remote holds ([values] cache, gdag.maintenance) ----

HELD = "lfs-held"  # in `.git/gdag/`: ids of objects the remote holds (pushed or fetched)
# Stores whose LFS store grew in this process: `gdag.main` trims them when it ends.
GREW: dict[str, object] = {}


def note_held(gdag_dir: Path, oids: list[str]) -> None:
    """Remember that the remote holds `oids` (sent there, or fetched from there): only
    such objects may be evicted from the local cache."""
    if not oids:
        return
    make_dirs(gdag_dir)
    with open(gdag_dir / HELD, "a") as f:
        f.writelines(oid + "\n" for oid in oids)


def held(gdag_dir: Path) -> set[str]:
    try:
        text = (gdag_dir / HELD).read_text()
    except FileNotFoundError:
        return set()
    return {line for line in text.split("\n") if len(line) == 64}


def mark_used(path: Path) -> None:
    """A read of the object: its modification time orders the cache (least recently
    used first), as access times are not kept on most mounts."""
    try:
        os.utime(path)
    except OSError:
        pass  # a read-only store: the order is by write time there


def trim(common_dir: Path, gdag_dir: Path, limit: int) -> tuple[int, int]:
    """Evict the least recently used objects the remote holds until the local store is
    at most `limit` bytes (objects the remote may not hold are never evicted); (objects
    evicted, bytes freed)."""
    found = []
    total = 0
    for path in (lfs_dir(common_dir) / "objects").glob("??/??/*"):
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        total += st.st_size
        found.append((st.st_mtime, path.name, path, st.st_size))
    if total <= limit:
        return 0, 0
    remote_has = held(gdag_dir)
    count = freed = 0
    for _, name, path, size in sorted(found):
        if total <= limit:
            break
        if name not in remote_has:
            continue
        path.unlink(missing_ok=True)
        total -= size
        count, freed = count + 1, freed + size
    return count, freed

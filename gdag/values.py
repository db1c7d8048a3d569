"""Values in and out of the store: arguments, files, stdin and directories as blobs and trees.

Large values are streamed in chunks; directory values are materialised only
through entries this module creates itself, so no name or symlink in a tree
can make it write outside the target.
"""

from __future__ import annotations

import io
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO

from gdag.errors import GdagError, StoreError
from gdag.repo import CHUNK, MODE_BLOB, MODE_EXEC, MODE_LINK, MODE_TREE, Entry, Store

MODE_GITLINK = 0o160000

if TYPE_CHECKING:
    from gdag import lfs


BLOB, TREE, LFS = "blob", "tree", "lfs"  # how a value is stored (`@meta.json` "kind")


def blob_from_file(store: Store, path: Path, large: int = 0) -> tuple[Entry, int, str]:
    """Store a regular file as a blob, streamed (an LFS object from `large` bytes on,
    when `large` is not 0); (entry, size, kind)."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise GdagError(f"{path}: not a regular file", hint="use --dir for directories")
            return blob_from_open(store, f, st.st_size, large)
    except FileNotFoundError:
        raise GdagError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise GdagError(f"{path}: is a directory", hint="use --dir PATH for directories") from None
    except PermissionError:
        raise GdagError(f"{path}: permission denied") from None


def blob_from_stream(store: Store, stream: IO[bytes], large: int = 0) -> tuple[Entry, int, str]:
    """Store a stream of unknown length (stdin): spooled to a private temp file first."""
    tmpdir = store.gdag_dir / "tmp"
    tmpdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=tmpdir) as spool:
        size = 0
        while chunk := stream.read(CHUNK):
            spool.write(chunk)
            size += len(chunk)
        spool.seek(0)
        return blob_from_open(store, spool, size, large)


def blob_from_bytes(store: Store, data: bytes, large: int = 0) -> tuple[Entry, int, str]:
    """Store a value held in memory (a typed value, a Python node's result)."""
    if large and len(data) >= large:
        import io

        return blob_from_open(store, io.BytesIO(data), len(data), large)
    return Entry(MODE_BLOB, store.write_blob(data)), len(data), BLOB


def blob_from_open(store: Store, f: IO[bytes], size: int, large: int) -> tuple[Entry, int, str]:
    """`size` bytes of `f` as a blob, or from `large` bytes on (`large` not 0) as a git
    LFS object whose pointer is the blob."""
    if large and size >= large:
        from gdag import lfs

        pointer = lfs.write_object(store.user_commondir, f, size)
        lfs.GREW[str(store.user_commondir)] = store
        return Entry(MODE_BLOB, store.write_blob(pointer.to_bytes())), size, LFS
    return Entry(MODE_BLOB, store.write_blob_stream(f, size)), size, BLOB


def large_pointer(store: Store, entry: Entry) -> lfs.Pointer:
    """The LFS pointer a large value's blob holds."""
    from gdag import lfs

    pointer = lfs.parse_pointer(store.read_blob(entry.sha))
    if pointer is None:
        raise StoreError(f"large value {entry.sha.decode()} holds no LFS pointer")
    return pointer


def is_reserved_name(name: bytes) -> bool:
    """Names git refuses in trees (`git fsck --strict`)."""
    return name.lower() == b".git" or name in (b"", b".", b"..") or b"/" in name or b"\0" in name


def tree_from_dir(store: Store, path: Path) -> tuple[Entry, int]:
    """Store a directory as a git tree; (entry, number of files)."""
    if not path.is_dir():
        raise GdagError(f"{path}: not a directory")
    count = 0

    def build(d: bytes) -> bytes:
        nonlocal count
        entries: dict[bytes, Entry] = {}
        try:
            names = os.listdir(d)
        except PermissionError:
            raise GdagError(f"{os.fsdecode(d)}: permission denied") from None
        for name in names:
            if is_reserved_name(name):
                continue
            full = os.path.join(d, name)
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                entries[name] = Entry(MODE_LINK, store.write_blob(os.readlink(full)))
            elif stat.S_ISDIR(st.st_mode):
                entries[name] = Entry(MODE_TREE, build(full))
            elif stat.S_ISREG(st.st_mode):
                mode = MODE_EXEC if st.st_mode & 0o111 else MODE_BLOB
                with open(full, "rb") as f:
                    entries[name] = Entry(mode, store.write_blob_stream(f, st.st_size))
                count += 1
            else:
                raise GdagError(f"{os.fsdecode(full)}: not a file, directory or symlink")
        return store.write_tree(entries)

    return Entry(MODE_TREE, build(os.fsencode(path))), count


def iter_tree(store: Store, tree: bytes, prefix: bytes = b"") -> Iterator[tuple[bytes, Entry]]:
    """Every entry of a directory value as (relative path, entry), directories included."""
    for name, entry in sorted(store.tree_entries(tree).items()):
        if is_reserved_name(name):
            raise StoreError(f"directory value holds an unsafe name {name!r}")
        yield prefix + name, entry
        if entry.is_tree:
            yield from iter_tree(store, entry.sha, prefix + name + b"/")


def materialise(store: Store, tree: bytes, target: Path) -> int:
    """Write a directory value under `target` (absent or empty); returns files written."""
    if target.exists() and (not target.is_dir() or target.is_symlink() or any(target.iterdir())):
        raise GdagError(
            f"{target}: exists and is not an empty directory",
            hint="name a new directory with -o",
        )
    target.mkdir(parents=True, exist_ok=True)
    base = os.fsencode(target)
    count = 0
    for rel, entry in iter_tree(store, tree):
        full = os.path.join(base, rel)
        if entry.is_tree or entry.mode == MODE_GITLINK:  # a submodule: an empty directory
            os.mkdir(full)
        elif entry.mode == MODE_LINK:
            os.symlink(store.read_blob(entry.sha), full)
        else:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
            fd = os.open(full, flags, 0o755 if entry.mode == MODE_EXEC else 0o644)
            with os.fdopen(fd, "wb") as f:
                f.write(store.read_blob(entry.sha))
            count += 1
    return count


def describe_tree(store: Store, tree: bytes) -> Iterator[str]:
    """`ls-tree -r`-like lines for a directory value."""
    for rel, entry in iter_tree(store, tree):
        if entry.is_tree:
            continue
        kind = {MODE_LINK: "link", MODE_EXEC: "exec"}.get(entry.mode, "file")
        size = len(store.read_blob(entry.sha))
        yield f"{kind}\t{size}\t{os.fsdecode(rel)}"


class _ChunkReader(io.RawIOBase):
    """A binary file object over an iterator of chunks (a blob being inflated)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._chunk = memoryview(b"")
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while self._pos >= len(self._chunk):
            try:
                self._chunk, self._pos = memoryview(next(self._chunks)), 0
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._chunk) - self._pos)
        buffer[:n] = self._chunk[self._pos : self._pos + n]
        self._pos += n
        return n

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()  # stops a `git cat-file` reading a packed blob
        self._chunk, self._pos = memoryview(b""), 0
        super().close()


def open_blob(store: Store, sha: bytes, size: int | None = None) -> BinaryIO:
    """A blob as a binary file object, read a chunk at a time as the caller reads it."""
    return io.BufferedReader(_ChunkReader(store.blob_chunks(sha, size)), buffer_size=1 << 16)

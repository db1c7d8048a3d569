"""Git objects of the store: reading (loose, packed), writing loose objects, trees, commits.

Objects are read through dulwich's `DiskObjectStore` (loose, packed,
alternates), loose ones directly. They are written as loose objects through a
random temporary name and a rename, as git does, so a killed writer never
leaves a `<sha>.lock` that blocks the same object later. Reads are cached:
objects never change.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
import time
import zlib
from binascii import unhexlify
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from gdag.dirs import make_dirs
from gdag.errors import StoreError
from gdag.records import Frozen
from gdag.retry import RACE, SYSTEM_CLOCK, Backoff, Clock

if TYPE_CHECKING:
    from dulwich.objects import Commit, ShaFile, Tree

MODE_BLOB = 0o100644
MODE_EXEC = 0o100755
MODE_LINK = 0o120000
MODE_TREE = 0o040000
EMPTY_TREE = b"4b825dc642cb6eb9a060e54bf8d69288fbee4904"

CHUNK = 1 << 20
# Packed blobs larger than this are streamed through `git cat-file`, not read whole.
BIG_PACKED = 1 << 20
DEFAULT_IDENTITY = (b"gdag", b"gdag@localhost")
# Objects are immutable, so reads are cached: commits, blobs up to SMALL_BLOB bytes
# (metadata, @done.json), and the entries of trees read or written (`tree_entries`).
# When its rough size passes CACHE_BYTES, the least recently used items go: a long
# run writes a state tree per event, so it must not keep them all, but it reads the
# latest ones again and again (the trees on the way to the outputs it checks).
SMALL_BLOB = 16 * 1024
CACHE_BYTES = 32 << 20
OBJECT_COST = 1200  # bytes of a parsed object beyond its content (measured)
ENTRY_COST = 250  # bytes of one cached tree entry (measured)
TMP_PREFIX = "tmp_obj_"
_TMP_COUNT = itertools.count()


def deflate(raw: bytes, level: int = 1) -> bytes:
    """A loose object's zlib stream, at level 1 as git writes loose objects (its
    `core.looseCompression` default). zlib's set-up for its default 32 KB window and
    memory level costs more than compressing a small object (36 µs of 37 for 300
    bytes), so the window is fitted to the object and the memory level to small
    ones: the same bytes out for a fifth of the time."""
    size = len(raw)
    if size > CHUNK:
        return zlib.compress(raw, level)
    window = min(15, max(9, size.bit_length()))
    comp = zlib.compressobj(level, zlib.DEFLATED, window, 4 if size <= 1024 else 8)
    return comp.compress(raw) + comp.flush()


_TYPE_NUMS = {b"commit": 1, b"tree": 2, b"blob": 3, b"tag": 4}


class Entry(Frozen):
    """One entry of a tree: its mode and object id."""

    __slots__ = ("mode", "sha")
    mode: int
    sha: bytes

    def __init__(self, mode: int, sha: bytes) -> None:
        self._set(mode=mode, sha=sha)

    @property
    def is_tree(self) -> bool:
        return self.mode == MODE_TREE


def identity() -> tuple[bytes, bytes]:
    """The committer of gdag's commits: GIT_COMMITTER_* if set, else gdag's own."""
    name = os.environ.get("GIT_COMMITTER_NAME") or os.environ.get("GIT_AUTHOR_NAME")
    email = os.environ.get("GIT_COMMITTER_EMAIL") or os.environ.get("GIT_AUTHOR_EMAIL")
    if name and email:
        return name.encode(), email.encode()
    return DEFAULT_IDENTITY


class ObjectStore:
    """The objects directory of one repository (`<git dir>/objects`)."""

    def __init__(
        self, path: Path, git_dir: Path | None = None, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.path = path
        # The repository git is pointed at to read packed objects (`git cat-file`).
        self.git_dir = git_dir or path.parent
        self.clock = clock
        self._db: Any = None
        self._cache: dict[bytes, Any] = {}
        self._entries: dict[bytes, dict[bytes, Entry]] = {}
        # Written trees' sort keys and entry lines, in git's order (`_tree_with`).
        self._sorted: dict[bytes, tuple[list[bytes], list[bytes]]] = {}
        # What each cached sha costs, least recently used first; guarded by _cache_lock
        # (threads of a run share the store; a hit only moves its sha to the end).
        self._costs: OrderedDict[bytes, int] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._cached_bytes = 0
        # Called once, at this store's first new object (see gdag.maintenance).
        self.on_first_write: Callable[[], None] | None = None

    # -- reading -----------------------------------------------------------------

    def _objdb(self) -> Any:
        if self._db is None:
            from dulwich.object_store import DiskObjectStore

            self._db = DiskObjectStore(str(self.path))
        return self._db

    def _loose_name(self, sha: bytes) -> str:
        hexs = sha.decode()
        return f"{self.path}/{hexs[:2]}/{hexs[2:]}"

    def _read_loose(self, sha: bytes) -> ShaFile | None:
        """A loose object read directly: no pack lookup, no directory scan."""
        try:
            with open(self._loose_name(sha), "rb") as f:
                raw = zlib.decompress(f.read())
        except FileNotFoundError:
            return None
        from dulwich.objects import ShaFile

        header, _, body = raw.partition(b"\0")
        type_name = header.split(b" ", 1)[0]
        return ShaFile.from_raw_string(_TYPE_NUMS[type_name], body, sha)  # type: ignore[arg-type]

    def read(self, sha: bytes) -> ShaFile:
        """Read one object; its absence is a damaged store."""
        obj = self._cache.get(sha)
        if obj is not None:
            self._used(sha)
            return obj
        for look in range(2):
            try:
                obj = self._read_loose(sha) or self._objdb()[sha]
                break
            except (KeyError, FileNotFoundError):
                if look:
                    raise StoreError(
                        f"object {sha.decode()} is missing from the store",
                        hint="run `git fsck` to see what is damaged",
                    ) from None
                # Packs may have changed under us (a packer, git gc): look again, loose
                # too (a writer may have installed it meanwhile).
                self._db = None
            except (ValueError, zlib.error, OSError) as exc:
                raise StoreError(f"object {sha.decode()} is unreadable: {exc}") from None
        assert obj is not None
        size = len(obj.as_raw_string())
        # Trees are kept as their entries (`tree_entries`), not as parsed objects: a
        # parsed tree costs several times its entries.
        if obj.type_name == b"commit" or obj.type_name == b"blob" and size <= SMALL_BLOB:
            self._keep(sha, OBJECT_COST + size, obj=obj)
        return obj

    def _keep(
        self,
        sha: bytes,
        cost: int,
        obj: ShaFile | None = None,
        entries: dict[bytes, Entry] | None = None,
        sorted_lines: tuple[list[bytes], list[bytes]] | None = None,
    ) -> None:
        """Cache what is given for `sha` (costing about `cost` bytes in all), evicting
        the least recently used items while over budget; nothing over a quarter of it."""
        if cost > CACHE_BYTES // 4:
            return
        with self._cache_lock:
            # The larger cost stays: a tree read (its entries) while another thread
            # wrote it (entries and sorted lines) keeps both.
            old_cost = self._costs.pop(sha, 0)
            cost = max(cost, old_cost)
            self._cached_bytes += cost - old_cost
            self._costs[sha] = cost
            if obj is not None:
                self._cache[sha] = obj
            if entries is not None:
                self._entries[sha] = entries
            if sorted_lines is not None:
                self._sorted[sha] = sorted_lines
            while self._cached_bytes > CACHE_BYTES:
                old, old_cost = self._costs.popitem(last=False)
                self._cached_bytes -= old_cost
                self._cache.pop(old, None)
                self._entries.pop(old, None)
                self._sorted.pop(old, None)

    def _used(self, sha: bytes) -> None:
        """Mark a cached sha as just used (last to be evicted)."""
        with self._cache_lock:
            if sha in self._costs:  # else evicted by another thread meanwhile
                self._costs.move_to_end(sha)

    def has(self, sha: bytes) -> bool:
        return os.path.exists(self._loose_name(sha)) or sha in self._objdb()

    def _typed(self, sha: bytes, type_name: bytes) -> Any:
        obj = self.read(sha)
        if obj.type_name != type_name:
            raise StoreError(
                f"object {sha.decode()} is a {obj.type_name.decode()}, not a {type_name.decode()}"
            )
        return obj

    def read_tree(self, sha: bytes) -> Tree:
        return self._typed(sha, b"tree")

    def read_commit(self, sha: bytes) -> Commit:
        return self._typed(sha, b"commit")

    def read_blob(self, sha: bytes) -> bytes:
        return self._typed(sha, b"blob").as_raw_string()

    def stream_blob(self, sha: bytes, out: IO[bytes], size: int | None = None) -> None:
        """Write a blob's content to `out` a chunk at a time (see `blob_chunks`)."""
        for chunk in self.blob_chunks(sha, size):
            out.write(chunk)

    def blob_chunks(self, sha: bytes, size: int | None = None) -> Iterator[bytes]:
        """A blob's content a chunk at a time, at most about one chunk held: a loose
        object inflated here, a packed one of `size` over BIG_PACKED (or unknown) through
        `git cat-file`. Smaller packed blobs are read whole by dulwich, which is quicker
        than a process. Closing the iterator early stops the git process."""
        try:
            f = open(self._loose_name(sha), "rb")
        except FileNotFoundError:
            from gdag import gitcmd  # here: a loose value (the common case) needs no git

            if (size is None or size > BIG_PACKED) and gitcmd.available():
                # Below core.bigFileThreshold (512 MiB) git would inflate the blob whole.
                chunks = gitcmd.stream(
                    ["cat-file", "blob", sha.decode()],
                    git_dir=self.git_dir,
                    config=["core.bigFileThreshold=1m"],
                    chunk=CHUNK,
                )
                wrote = False
                try:
                    for chunk in chunks:
                        wrote = True
                        yield chunk
                    return
                except gitcmd.GitError:
                    if wrote:
                        raise StoreError(
                            f"object {sha.decode()} is unreadable (git cat-file failed)"
                        ) from None
                    # nothing read: dulwich's own read below names the problem
            yield self.read_blob(sha)
            return
        with f:
            yield from _inflate_blob(f, sha)

    def expand_prefix(self, prefix: str) -> list[bytes]:
        """Object ids starting with a hex `prefix` (at least 4 digits)."""
        pre = prefix.lower().encode()
        found: set[bytes] = set()
        try:  # the fan-out directory may go at any moment (git prune-packed)
            names = os.listdir(self.path / prefix[:2])
        except (FileNotFoundError, NotADirectoryError):
            names = []
        found.update((prefix[:2] + n).encode() for n in names if n.startswith(prefix[2:]))
        found.update(s for s in self._objdb().iter_prefix(pre) if s.startswith(pre))
        return sorted(found)

    def loose_sample(self) -> int:
        """Loose objects in `17/`, the fan-out directory `git gc --auto` samples."""
        try:
            return sum(len(name) == 38 for name in os.listdir(self.path / "17"))
        except (FileNotFoundError, NotADirectoryError):
            return 0

    # -- writing -----------------------------------------------------------------

    def _install_loose(self, tmp: str, sha: bytes, looked: bool = False) -> None:
        """Rename `tmp` to object `sha`'s loose name; `looked`: the caller found none
        just before (a second look costs a system call per object, and an identical
        object written meanwhile is replaced by the same bytes)."""
        first = self.on_first_write
        if first is not None:
            self.on_first_write = None
            first()
        name = self._loose_name(sha)
        if not looked and os.path.exists(name):
            os.unlink(tmp)
            return
        try:  # the fan-out directory is there nearly always: no mkdir first
            os.replace(tmp, name)
            return
        except (FileNotFoundError, NotADirectoryError):
            pass  # made (or a file in its way named) below
        final = Path(name)
        backoff = Backoff(RACE, f"writing object {sha.decode()} under {self.path}")
        while True:
            make_dirs(final.parent)
            try:
                os.replace(tmp, final)
                return
            except FileNotFoundError:  # a concurrent prune removed the fan-out dir
                backoff.wait()

    def _tmpfile(self) -> tuple[int, str]:
        """A new temporary object file, read-only already (objects are): its descriptor,
        open for writing, and path. Named by process, thread and a counter; a name left
        by a killed process of the same pid is skipped."""
        while True:
            tmp = (
                f"{self.path}/{TMP_PREFIX}{os.getpid()}_{threading.get_ident()}_{next(_TMP_COUNT)}"
            )
            try:
                return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444), tmp
            except FileExistsError:
                continue

    def write_raw(self, type_name: bytes, data: bytes) -> bytes:
        """Write one object given its type and content; return its id."""
        header = b"%s %d\0" % (type_name, len(data))
        sha = hashlib.sha1(header + data).hexdigest().encode()
        if os.path.exists(self._loose_name(sha)):
            return sha
        fd, tmp = self._tmpfile()
        with os.fdopen(fd, "wb") as f:
            # A tree is stored, not compressed (level 0, still a zlib stream): its binary
            # ids hardly compress (a 1,000-entry tree by a fifth, for ten times the time),
            # and state trees are written by every event. Packing compresses them.
            f.write(deflate(header + data, 0 if type_name == b"tree" else 1))
        self._install_loose(tmp, sha, looked=True)
        return sha

    def write(self, obj: ShaFile) -> bytes:
        return self.write_raw(obj.type_name, obj.as_raw_string())

    def write_blob(self, data: bytes) -> bytes:
        return self.write_raw(b"blob", data)

    def write_blob_stream(self, stream: IO[bytes], size: int) -> bytes:
        """Write `size` bytes read from `stream` as a blob, holding one chunk at a time.
        A value of one chunk or less is read whole and hashed first, so one already
        stored as a loose object (an output that did not change) costs no file."""
        if size <= CHUNK:
            data = b""
            while len(data) < size:  # a raw stream may return less than asked
                chunk = stream.read(size - len(data))
                if not chunk:
                    raise StoreError("the value ended before its announced size")
                data += chunk
            if stream.read(1):
                raise StoreError("the value changed size while it was being read")
            return self.write_blob(data)
        header = b"blob %d\0" % size
        hasher = hashlib.sha1(header)
        comp = zlib.compressobj(1)
        fd, tmp = self._tmpfile()
        remaining = size
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(comp.compress(header))
                while remaining:
                    chunk = stream.read(min(CHUNK, remaining))
                    if not chunk:
                        raise StoreError("the value ended before its announced size")
                    remaining -= len(chunk)
                    hasher.update(chunk)
                    out.write(comp.compress(chunk))
                if stream.read(1):
                    raise StoreError("the value changed size while it was being read")
                out.write(comp.flush())
        except BaseException:
            os.unlink(tmp)
            raise
        sha = hasher.hexdigest().encode()
        self._install_loose(tmp, sha)
        return sha

    def make_commit(
        self, tree: bytes, parents: list[bytes], message: str, when: float | None = None
    ) -> bytes:
        from dulwich.objects import Commit

        commit = Commit()
        commit.tree = tree
        commit.parents = parents  # type: ignore[assignment]
        name, email = identity()
        commit.author = commit.committer = b"%s <%s>" % (name, email)
        now = int(when if when is not None else time.time())
        commit.author_time = commit.commit_time = now
        offset = -time.timezone if not time.localtime(now).tm_isdst else -time.altzone
        commit.author_timezone = commit.commit_timezone = offset
        commit.encoding = None
        commit.message = message.encode("utf-8")
        return self.write(commit)

    def leftover_tmp(self, age: float) -> list[str]:
        """Temporary object files older than `age` seconds: left by killed writers."""
        now = self.clock.time()
        found = []
        try:
            entries = [e for e in os.scandir(self.path) if e.name.startswith(TMP_PREFIX)]
        except FileNotFoundError:
            return []
        for entry in entries:
            try:
                if now - entry.stat().st_mtime > age:
                    found.append(entry.path)
            except FileNotFoundError:
                pass
        return found

    def sweep_tmp(self, age: float) -> int:
        """Remove temporary object files older than `age` seconds; how many went."""
        removed = 0
        for path in self.leftover_tmp(age):
            try:
                os.unlink(path)
                removed += 1
            except FileNotFoundError:
                pass
        return removed

    # -- trees -------------------------------------------------------------------

    def write_tree(self, entries: dict[bytes, Entry]) -> bytes:
        """Write a tree in git's own format: `<octal mode> <name>\\0<binary id>` per
        entry, in git's order (a directory sorts as if its name ended in "/"). Built
        here, not through dulwich's Tree: state trees hold an entry per output and
        node, and are written again by every event."""
        keys, lines = _sorted(entries)
        return self._write_sorted(dict(entries), keys, lines)

    def _write_sorted(
        self, entries: dict[bytes, Entry], keys: list[bytes], lines: list[bytes]
    ) -> bytes:
        sha = self.write_raw(b"tree", b"".join(lines))
        self._keep(sha, 2 * ENTRY_COST * len(entries), entries=entries, sorted_lines=(keys, lines))
        return sha

    def _sorted_lines(self, sha: bytes | None) -> tuple[list[bytes], list[bytes]]:
        """Tree `sha`'s sort keys and entry lines, in git's order (copies)."""
        found = self._sorted.get(sha) if sha is not None else None
        if sha is None or found is None:
            return _sorted(self.tree_entries(sha))
        self._used(sha)
        return list(found[0]), list(found[1])

    def _tree_with(self, sha: bytes | None, changes: Mapping[bytes, Entry | None]) -> bytes:
        """Write tree `sha` (None: empty) with `changes` applied (None removes an entry).

        Each changed entry is found and placed by bisection in the tree's sorted lines,
        kept from when it was written or read: an event changes one entry of a tree of
        thousands (`nodes/`, `outputs/`), and sorting and formatting every entry again
        in Python cost more than writing the object."""
        entries = dict(self.tree_entries(sha))
        keys, lines = self._sorted_lines(sha)
        for name, entry in changes.items():
            old = entries.get(name)
            if old is not None:
                key = _sort_key(name, old)
                i = bisect_left(keys, key)
                if i == len(keys) or keys[i] != key:
                    raise StoreError(f"tree {sha!r}: cached entry order lost {name!r}")
                del keys[i], lines[i]
            if entry is None:
                entries.pop(name, None)
                continue
            entries[name] = entry
            key = _sort_key(name, entry)
            i = bisect_left(keys, key)
            keys.insert(i, key)
            lines.insert(i, _tree_line(name, entry))
        return self._write_sorted(entries, keys, lines)

    def tree_entries(self, sha: bytes | None) -> dict[bytes, Entry]:
        """A tree's entries by name. Cached (trees never change): do not mutate the result."""
        if sha is None:
            return {}
        entries = self._entries.get(sha)
        if entries is not None:
            self._used(sha)
            return entries
        tree = self.read_tree(sha)
        entries = {item.path: Entry(item.mode, item.sha) for item in tree.iteritems()}
        self._keep(sha, ENTRY_COST * len(entries), entries=entries)
        return entries

    def tree_get(self, root: bytes | None, path: Iterable[bytes]) -> Entry | None:
        """The entry at `path` below tree `root`, or None."""
        entry: Entry | None = Entry(MODE_TREE, root) if root else None
        for name in path:
            if entry is None or not entry.is_tree:
                return None
            entry = self.tree_entries(entry.sha).get(name)
        return entry

    def tree_update(
        self, root: bytes | None, path: list[bytes], changes: Mapping[bytes, Entry | None]
    ) -> bytes:
        """Return a new root tree with `changes` applied in the directory at `path`.

        A change of None removes the entry; directories left empty disappear.
        """
        return self.tree_update_many(root, {tuple(path): changes})

    def tree_update_many(
        self,
        root: bytes | None,
        changes: Mapping[tuple[bytes, ...], Mapping[bytes, Entry | None]],
    ) -> bytes:
        """`tree_update` of several directories at once (path -> changes there): each
        tree on the way is written once, the root too."""
        here: dict[bytes, Entry | None] = dict(changes.get((), {}))
        below: dict[bytes, dict[tuple[bytes, ...], Mapping[bytes, Entry | None]]] = {}
        for path, files in changes.items():
            if path:
                below.setdefault(path[0], {})[path[1:]] = files
        if below:
            entries = self.tree_entries(root)
            for name, inner in below.items():
                # A change to `name` itself comes first, then the changes below it.
                child = here[name] if name in here else entries.get(name)
                child_sha = child.sha if child is not None and child.is_tree else None
                new_child = self.tree_update_many(child_sha, inner)
                here[name] = None if new_child == EMPTY_TREE else Entry(MODE_TREE, new_child)
        return self._tree_with(root, here)

    def walk_tree(self, sha: bytes, prefix: bytes = b"") -> Iterator[tuple[bytes, Entry]]:
        """Every non-tree entry below `sha` as (path, entry), depth first, sorted."""
        for name, entry in sorted(self.tree_entries(sha).items()):
            path = prefix + name
            if entry.is_tree:
                yield from self.walk_tree(entry.sha, path + b"/")
            else:
                yield path, entry


def _sort_key(name: bytes, entry: Entry) -> bytes:
    """Where git sorts a tree entry: by name, a directory's as if it ended in "/"."""
    return name + b"/" if entry.is_tree else name


def _tree_line(name: bytes, entry: Entry) -> bytes:
    return b"%o %s\0%s" % (entry.mode, name, unhexlify(entry.sha))


def _sorted(entries: Mapping[bytes, Entry]) -> tuple[list[bytes], list[bytes]]:
    """A tree's sort keys and entry lines, in git's order."""
    items = sorted((_sort_key(name, e), _tree_line(name, e)) for name, e in entries.items())
    return [k for k, _ in items], [line for _, line in items]


def _inflate_blob(f: IO[bytes], sha: bytes) -> Iterator[bytes]:
    """A loose blob's content, inflated at most CHUNK bytes at a time (a highly
    compressible value never comes out whole)."""
    inflate = zlib.decompressobj()
    header: bytes | None = b""
    try:
        while True:
            chunk = inflate.unconsumed_tail or f.read(CHUNK)
            if not chunk:
                break
            data = inflate.decompress(chunk, CHUNK)
            if header is not None:
                header += data
                if b"\0" not in header:
                    continue
                kind, _, data = header.partition(b"\0")
                if not kind.startswith(b"blob "):
                    raise StoreError(f"object {sha.decode()} is not a blob")
                header = None
            if data:
                yield data
        if rest := inflate.flush():
            yield rest
    except zlib.error as exc:
        raise StoreError(f"object {sha.decode()} is unreadable: {exc}") from None

"""All access to the git store: objects, trees, commits, refs and compare-and-swap.

Objects are read through dulwich (loose, packed, alternates). They are written
as loose objects through a random temporary name and a rename, as git does, so
a killed writer never leaves a `<sha>.lock` that blocks the same object later.
Refs are read and updated with git's own lock-file protocol, so every update is
atomic with respect to `git update-ref`, `git pack-refs` and `git gc`.
"""

from __future__ import annotations

import hashlib
import os
import random
import time
import zlib
from binascii import unhexlify
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from gdag.errors import NotARepositoryError, StoreError
from gdag.retry import LOCK, RACE, Backoff

if TYPE_CHECKING:
    from dulwich.objects import Commit, ShaFile, Tree

ZERO = b"0" * 40
MODE_BLOB = 0o100644
MODE_EXEC = 0o100755
MODE_LINK = 0o120000
MODE_TREE = 0o040000

# A ref lock older than this was left by a killed process (git holds them for
# milliseconds): it is broken rather than waited on forever.
STALE_LOCK_SECONDS = 5.0
CHUNK = 1 << 20
# Packed blobs larger than this are streamed through `git cat-file`, not read whole.
BIG_PACKED = 1 << 20

DEFAULT_IDENTITY = (b"gdag", b"gdag@localhost")
# Objects are immutable, so reads are cached: commits, blobs up to SMALL_BLOB bytes
# (metadata, @done.json), and the entries of trees read or written (`tree_entries`).
# The cache is emptied whenever its rough size passes CACHE_BYTES: a long run writes
# a state tree per event, so it must not keep them all.
SMALL_BLOB = 16 * 1024
CACHE_BYTES = 32 << 20
OBJECT_COST = 1200  # bytes of a parsed object beyond its content (measured)
ENTRY_COST = 250  # bytes of one cached tree entry (measured)
_TYPE_NUMS = {b"commit": 1, b"tree": 2, b"blob": 3, b"tag": 4}


@dataclass(frozen=True)
class Entry:
    """One entry of a tree: its mode and object id."""

    mode: int
    sha: bytes

    @property
    def is_tree(self) -> bool:
        return self.mode == MODE_TREE


def _find_gitdir(start: Path) -> tuple[Path, Path | None]:
    """Walk up from `start` to the repository: (git dir, work tree or None if bare)."""
    env = os.environ.get("GIT_DIR")
    if env:
        gitdir = Path(env).resolve()
        return gitdir, Path(os.environ.get("GIT_WORK_TREE", gitdir.parent)).resolve()
    here = start.resolve()
    for d in (here, *here.parents):
        dotgit = d / ".git"
        if dotgit.is_dir():
            return dotgit, d
        if dotgit.is_file():
            text = dotgit.read_text(errors="replace").strip()
            if text.startswith("gitdir:"):
                return (d / text[7:].strip()).resolve(), d
        if (d / "HEAD").is_file() and (d / "objects").is_dir() and (d / "refs").is_dir():
            return d, None
    raise NotARepositoryError(
        f"not a git repository (or any parent up to /): {start}",
        hint="run `gdag init` here, or pass -C PATH",
    )


class Store:
    """A git repository seen as an object store plus a set of refs."""

    def __init__(self, gitdir: Path, workdir: Path | None, user_gitdir: Path | None = None) -> None:
        self.gitdir = gitdir
        self.workdir = workdir
        # The user's repository (HEAD, hooks, scratch space); differs with a private store.
        self.user_gitdir = user_gitdir or gitdir
        self.objects_dir = gitdir / "objects"
        if (gitdir / "commondir").is_file():
            common = (gitdir / (gitdir / "commondir").read_text().strip()).resolve()
        else:
            common = gitdir
        self.commondir = common
        self.objects_dir = common / "objects"
        self._db: Any = None
        self._cache: dict[bytes, Any] = {}
        self._entries: dict[bytes, dict[bytes, Entry]] = {}
        self._cached_bytes = 0

    @classmethod
    def find(cls, start: Path | str = ".") -> Store:
        """The store of the repository around `start`: its private store if it has one."""
        gitdir, workdir = _find_gitdir(Path(start))
        user = cls(gitdir, workdir)
        private = user.private_path
        if (private / "HEAD").is_file():
            return cls(private, workdir, user_gitdir=gitdir)
        return user

    @property
    def private_path(self) -> Path:
        """Where `gdag init --private` keeps gdag's own repository."""
        return self.user_commondir / "gdag" / "store.git"

    @property
    def is_private(self) -> bool:
        return self.user_gitdir != self.gitdir

    @property
    def user_commondir(self) -> Path:
        common = self.user_gitdir / "commondir"
        if common.is_file():
            return (self.user_gitdir / common.read_text().strip()).resolve()
        return self.user_gitdir

    @classmethod
    def init(cls, path: Path) -> Store:
        """Make `path` a new git repository (like `git init`)."""
        from dulwich.repo import Repo

        path.mkdir(parents=True, exist_ok=True)
        Repo.init(str(path)).close()
        return cls(path / ".git", path)

    @property
    def gdag_dir(self) -> Path:
        """gdag's scratch space inside the user's git dir (logs, temp files)."""
        return self.user_commondir / "gdag"

    # -- objects ---------------------------------------------------------

    def _objdb(self) -> Any:
        if self._db is None:
            from dulwich.object_store import DiskObjectStore

            self._db = DiskObjectStore(str(self.objects_dir))
        return self._db

    def _read_loose(self, sha: bytes) -> ShaFile | None:
        """A loose object read directly: no pack lookup, no directory scan."""
        try:
            with open(self._loose_path(sha), "rb") as f:
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
            return obj
        try:
            obj = self._read_loose(sha) or self._objdb()[sha]
        except KeyError:
            self._db = None  # packs may have changed under us (git gc): look again
            try:
                obj = self._objdb()[sha]
            except KeyError:
                raise StoreError(
                    f"object {sha.decode()} is missing from the store",
                    hint="run `git fsck` to see what is damaged",
                ) from None
        except (ValueError, zlib.error, OSError) as exc:
            raise StoreError(f"object {sha.decode()} is unreadable: {exc}") from None
        size = len(obj.as_raw_string())
        # Trees are kept as their entries (`tree_entries`), not as parsed objects: a
        # parsed tree costs several times its entries.
        if obj.type_name == b"commit" or obj.type_name == b"blob" and size <= SMALL_BLOB:
            if self._charge(OBJECT_COST + size):
                self._cache[sha] = obj
        return obj

    def _charge(self, cost: int) -> bool:
        """Count `cost` bytes about to be cached, emptying the caches first when full;
        False (cache nothing) for an item over a quarter of the budget."""
        if cost > CACHE_BYTES // 4:
            return False
        self._cached_bytes += cost
        if self._cached_bytes > CACHE_BYTES:
            self._cache.clear()
            self._entries.clear()
            self._cached_bytes = cost
        return True

    def has(self, sha: bytes) -> bool:
        return self._loose_path(sha).exists() or sha in self._objdb()

    def read_tree(self, sha: bytes) -> Tree:
        obj = self.read(sha)
        if obj.type_name != b"tree":
            raise StoreError(f"object {sha.decode()} is a {obj.type_name.decode()}, not a tree")
        return obj  # type: ignore[return-value]

    def read_commit(self, sha: bytes) -> Commit:
        obj = self.read(sha)
        if obj.type_name != b"commit":
            raise StoreError(f"object {sha.decode()} is a {obj.type_name.decode()}, not a commit")
        return obj  # type: ignore[return-value]

    def read_blob(self, sha: bytes) -> bytes:
        obj = self.read(sha)
        if obj.type_name != b"blob":
            raise StoreError(f"object {sha.decode()} is a {obj.type_name.decode()}, not a blob")
        return obj.as_raw_string()

    def stream_blob(self, sha: bytes, out: IO[bytes], size: int | None = None) -> None:
        """Write a blob's content to `out` a chunk at a time: a loose object inflated
        here, a packed one of `size` over BIG_PACKED (or unknown) through `git cat-file`.
        Smaller packed blobs are read whole by dulwich, which is quicker than a process."""
        try:
            f = open(self._loose_path(sha), "rb")
        except FileNotFoundError:
            if size is None or size > BIG_PACKED:
                import shutil

                git = shutil.which("git")
                if git is not None and self._stream_packed(git, sha, out):
                    return
            out.write(self.read_blob(sha))
            return
        with f:
            inflate = zlib.decompressobj()
            header = b""
            try:
                while chunk := f.read(CHUNK):
                    data = inflate.decompress(chunk)
                    if header is not None:
                        header += data
                        if b"\0" not in header:
                            continue
                        kind, _, data = header.partition(b"\0")
                        if not kind.startswith(b"blob "):
                            raise StoreError(f"object {sha.decode()} is not a blob")
                        header = None  # type: ignore[assignment]
                    out.write(data)
                out.write(inflate.flush())
            except zlib.error as exc:
                raise StoreError(f"object {sha.decode()} is unreadable: {exc}") from None

    def _stream_packed(self, git: str, sha: bytes, out: IO[bytes]) -> bool:
        """Copy a packed blob to `out` through `git cat-file`; False (nothing written)
        when git cannot read it, so the caller's own read names the problem."""
        import subprocess

        # Below core.bigFileThreshold (512 MiB) git would inflate the blob whole itself.
        cmd = [git, f"--git-dir={self.gitdir}", "-c", "core.bigFileThreshold=1m"]
        cmd += ["cat-file", "blob", sha.decode()]
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as proc:
            assert proc.stdout is not None
            first = proc.stdout.read(CHUNK)
            if not first:
                return proc.wait() == 0  # an empty blob, or nothing to read
            out.write(first)
            while chunk := proc.stdout.read(CHUNK):
                out.write(chunk)
            if proc.wait() != 0:
                raise StoreError(f"object {sha.decode()} is unreadable (git cat-file failed)")
        return True

    def _loose_path(self, sha: bytes) -> Path:
        hexs = sha.decode()
        return self.objects_dir / hexs[:2] / hexs[2:]

    def _install_loose(self, tmp: str, sha: bytes) -> None:
        final = self._loose_path(sha)
        if final.exists():
            os.unlink(tmp)
            return
        os.chmod(tmp, 0o444)
        backoff = Backoff(RACE, f"writing object {sha.decode()} under {self.objects_dir}")
        while True:
            make_dirs(final.parent)
            try:
                os.replace(tmp, final)
                return
            except FileNotFoundError:  # a concurrent prune removed the fan-out dir
                backoff.wait()

    def _tmpfile(self) -> tuple[int, str]:
        import tempfile

        return tempfile.mkstemp(prefix="tmp_obj_", dir=self.objects_dir)

    def write_raw(self, type_name: bytes, data: bytes) -> bytes:
        """Write one object given its type and content; return its id."""
        header = b"%s %d\0" % (type_name, len(data))
        sha = hashlib.sha1(header + data).hexdigest().encode()
        if self._loose_path(sha).exists():
            return sha
        fd, tmp = self._tmpfile()
        with os.fdopen(fd, "wb") as f:
            f.write(zlib.compress(header + data, 1 if len(data) > CHUNK else -1))
        self._install_loose(tmp, sha)
        return sha

    def write(self, obj: ShaFile) -> bytes:
        return self.write_raw(obj.type_name, obj.as_raw_string())

    def write_blob_stream(self, stream: IO[bytes], size: int) -> bytes:
        """Write `size` bytes read from `stream` as a blob, holding one chunk at a time."""
        header = b"blob %d\0" % size
        hasher = hashlib.sha1(header)
        comp = zlib.compressobj(1 if size > CHUNK else -1)
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

    def write_blob(self, data: bytes) -> bytes:
        return self.write_raw(b"blob", data)

    def write_tree(self, entries: dict[bytes, Entry]) -> bytes:
        """Write a tree in git's own format: `<octal mode> <name>\\0<binary id>` per
        entry, in git's order (a directory sorts as if its name ended in "/"). Built
        here, not through dulwich's Tree: state trees hold an entry per output and
        node, and are written again by every event."""
        items = sorted(entries.items(), key=lambda kv: kv[0] + b"/" if kv[1].is_tree else kv[0])
        data = b"".join(b"%o %s\0%s" % (e.mode, name, unhexlify(e.sha)) for name, e in items)
        sha = self.write_raw(b"tree", data)
        if self._charge(ENTRY_COST * len(entries)):
            self._entries[sha] = dict(entries)
        return sha

    def tree_entries(self, sha: bytes | None) -> dict[bytes, Entry]:
        """A tree's entries by name. Cached (trees never change): do not mutate the result."""
        if sha is None:
            return {}
        entries = self._entries.get(sha)
        if entries is None:
            tree = self.read_tree(sha)
            entries = {item.path: Entry(item.mode, item.sha) for item in tree.iteritems()}
            if self._charge(ENTRY_COST * len(entries)):
                self._entries[sha] = entries
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
        self, root: bytes | None, path: list[bytes], changes: dict[bytes, Entry | None]
    ) -> bytes:
        """Return a new root tree with `changes` applied in the directory at `path`.

        A change of None removes the entry; directories left empty disappear.
        """
        entries = dict(self.tree_entries(root))
        if path:
            child = entries.get(path[0])
            child_sha = child.sha if child is not None and child.is_tree else None
            new_child = self.tree_update(child_sha, path[1:], changes)
            if new_child == EMPTY_TREE:
                entries.pop(path[0], None)
            else:
                entries[path[0]] = Entry(MODE_TREE, new_child)
        else:
            for name, entry in changes.items():
                if entry is None:
                    entries.pop(name, None)
                else:
                    entries[name] = entry
        return self.write_tree(entries)

    def walk_tree(self, sha: bytes, prefix: bytes = b"") -> Iterator[tuple[bytes, Entry]]:
        """Every non-tree entry below `sha` as (path, entry), depth first, sorted."""
        for name, entry in sorted(self.tree_entries(sha).items()):
            path = prefix + name
            if entry.is_tree:
                yield from self.walk_tree(entry.sha, path + b"/")
            else:
                yield path, entry

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

    def expand_prefix(self, prefix: str) -> list[bytes]:
        """Object ids starting with a hex `prefix` (at least 4 digits)."""
        pre = prefix.lower().encode()
        found: set[bytes] = set()
        try:  # the fan-out directory may go at any moment (git prune-packed)
            names = os.listdir(self.objects_dir / prefix[:2])
        except (FileNotFoundError, NotADirectoryError):
            names = []
        found.update((prefix[:2] + n).encode() for n in names if n.startswith(prefix[2:]))
        found.update(s for s in self._objdb().iter_prefix(pre) if s.startswith(pre))
        return sorted(found)

    # -- refs ------------------------------------------------------------

    def _ref_path(self, ref: str) -> Path:
        return self.commondir / ref

    def _packed_refs(self) -> dict[str, bytes]:
        refs: dict[str, bytes] = {}
        try:
            text = (self.commondir / "packed-refs").read_bytes()
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
                data = self._ref_path(ref).read_bytes().strip()
            except (FileNotFoundError, NotADirectoryError):
                return self._packed_refs().get(ref)
            except IsADirectoryError:
                return None
            if len(data) == 40:
                return data
            if data:
                raise StoreError(f"ref {ref} is not a plain object id: {data[:60]!r}")
            # Caught between create and write by a non-atomic writer.
            backoff = backoff or Backoff(RACE, f"reading ref {ref}: it stays empty")
            backoff.wait()

    def list_refs(self, prefix: str) -> dict[str, bytes]:
        """Every ref under `prefix` (e.g. `refs/gdag/logs/`), loose over packed."""
        refs = {k: v for k, v in self._packed_refs().items() if k.startswith(prefix)}
        base = self._ref_path(prefix)
        if base.is_dir():
            for dirpath, _dirs, files in os.walk(base):
                for fname in files:
                    if fname.endswith(".lock"):
                        continue
                    full = Path(dirpath) / fname
                    name = full.relative_to(self.commondir).as_posix()
                    sha = self.read_ref(name)
                    if sha is not None:
                        refs[name] = sha
        return refs

    def _take_lock(self, ref: str, timeout: float | None = None) -> int:
        """Create `<ref>.lock` exclusively, breaking a stale one; its open descriptor.
        `timeout`: seconds to wait for another holder (default: the LOCK policy's)."""
        lock = self._ref_path(ref + ".lock")
        backoff = Backoff(
            LOCK,
            f"waiting for the lock of ref {ref} (another process holds it)",
            hint=f"if no git or gdag process is running, remove {lock}",
            deadline=timeout,
        )
        while True:
            make_dirs(lock.parent)
            try:
                return os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileNotFoundError:  # a concurrent prune removed the directory
                pass
            except FileExistsError:
                if self._break_stale_lock(lock):
                    continue
            backoff.wait()

    @staticmethod
    def _break_stale_lock(lock: Path) -> bool:
        """Remove `lock` if it is older than STALE_LOCK_SECONDS; True if gone."""
        try:
            age = time.time() - lock.stat().st_mtime
        except FileNotFoundError:
            return True
        if age < STALE_LOCK_SECONDS:
            return False
        # Rename first so two breakers cannot both remove a fresh lock.
        private = lock.with_name(f"{lock.name}.stale-{os.getpid()}-{random.getrandbits(32):x}")
        try:
            os.rename(lock, private)
        except FileNotFoundError:
            return True
        try:
            if time.time() - private.stat().st_mtime < STALE_LOCK_SECONDS:
                # Someone replaced it between our stat and rename: give it back.
                try:
                    os.link(private, lock)
                except FileExistsError:
                    pass
                return False
        finally:
            private.unlink(missing_ok=True)
        return True

    def sweep(self, prefix: str = "refs/gdag/", tmp_age: float = 3600.0) -> int:
        """Remove leftovers of killed processes: stale ref locks under `prefix`, old temp objects.

        A lock is stale after STALE_LOCK_SECONDS (git holds them for milliseconds);
        locks of refs that nothing writes again (a finished session's) are otherwise
        never taken, so never broken. Returns how many files were removed.
        """
        removed = 0
        base = self._ref_path(prefix)
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                if name.endswith(".lock") and self._break_stale_lock(Path(dirpath) / name):
                    removed += 1
        now = time.time()
        try:
            leftovers = [e for e in os.scandir(self.objects_dir) if e.name.startswith("tmp_obj_")]
        except FileNotFoundError:
            leftovers = []
        for entry in leftovers:
            try:
                if now - entry.stat().st_mtime > tmp_age:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                pass
        return removed

    def cas_ref(
        self, ref: str, old: bytes | None, new: bytes, timeout: float | None = None
    ) -> bool:
        """Point `ref` at `new` if it still points at `old` (None: must not exist).
        `timeout`: how long to wait for a lock another process holds."""
        fd = self._take_lock(ref, timeout)
        lock = self._ref_path(ref + ".lock")
        try:
            if self.read_ref(ref) != old:
                os.close(fd)
                lock.unlink()
                return False
            os.write(fd, new + b"\n")
            os.close(fd)
            os.replace(lock, self._ref_path(ref))
            return True
        except BaseException:
            lock.unlink(missing_ok=True)
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
        packed = self.commondir / "packed-refs"
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


EMPTY_TREE = b"4b825dc642cb6eb9a060e54bf8d69288fbee4904"


def make_dirs(path: Path) -> None:
    """`mkdir -p` beside git's pruning. `git prune-packed` and `git pack-refs` remove
    directories they empty, parents included, at any moment: a parent may vanish
    before its child is made (made again here), and a directory found existing may
    be gone a moment later (pathlib's `exist_ok` raises then; here the caller's next
    step meets FileNotFoundError and tries again). Something other than a directory
    in the way is a damaged store."""
    backoff = Backoff(RACE, f"creating {path} (it keeps disappearing)")
    while True:
        try:
            os.makedirs(path)
            return
        except FileNotFoundError:  # a parent was pruned between makedirs' steps
            backoff.wait()
        except FileExistsError:
            if path.is_dir() or not os.path.lexists(path):
                return
            raise StoreError(
                f"{path} is in the way of gdag's files: it is not a directory",
                hint="move it aside; `git fsck` and `gdag doctor` check the rest",
            ) from None
        except NotADirectoryError:
            raise StoreError(
                f"a file is in the way of gdag's directory {path}",
                hint="move it aside; `git fsck` and `gdag doctor` check the rest",
            ) from None


def identity() -> tuple[bytes, bytes]:
    """The committer of gdag's commits: GIT_COMMITTER_* if set, else gdag's own."""
    name = os.environ.get("GIT_COMMITTER_NAME") or os.environ.get("GIT_AUTHOR_NAME")
    email = os.environ.get("GIT_COMMITTER_EMAIL") or os.environ.get("GIT_AUTHOR_EMAIL")
    if name and email:
        return name.encode(), email.encode()
    return DEFAULT_IDENTITY

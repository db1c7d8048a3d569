"""The git store of a repository: finding it, and the object store and refs it is made of.

`Store` composes an `objects.ObjectStore` (reading and writing objects, trees,
commits) and a `refs.LocalRefs` (git's lock-file protocol, compare-and-swap),
and forwards their operations, so callers say `store.read_commit(…)` and
`store.cas_ref(…)`. The names other modules import from here (`Entry`,
`MODE_BLOB`, …) are those of `gdag.objects` and `gdag.refs`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING

from gdag.dirs import make_dirs
from gdag.errors import NotARepositoryError
from gdag.objects import (
    CHUNK,
    EMPTY_TREE,
    MODE_BLOB,
    MODE_EXEC,
    MODE_LINK,
    MODE_TREE,
    Entry,
    ObjectStore,
    identity,
)
from gdag.refs import STALE_LOCK_SECONDS, ZERO, LocalRefs
from gdag.retry import SYSTEM_CLOCK, Clock

if TYPE_CHECKING:
    from dulwich.objects import Commit, ShaFile, Tree

__all__ = [
    "CHUNK",
    "EMPTY_TREE",
    "MODE_BLOB",
    "MODE_EXEC",
    "MODE_LINK",
    "MODE_TREE",
    "STALE_LOCK_SECONDS",
    "ZERO",
    "Entry",
    "Store",
    "identity",
    "make_dirs",
]


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


def _common_dir(gitdir: Path) -> Path:
    """Where a (worktree's) git dir keeps objects and shared refs."""
    common = gitdir / "commondir"
    if common.is_file():
        return (gitdir / common.read_text().strip()).resolve()
    return gitdir


class Store:
    """A git repository seen as an object store plus a set of refs."""

    def __init__(
        self,
        gitdir: Path,
        workdir: Path | None,
        user_gitdir: Path | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.gitdir = gitdir
        self.workdir = workdir
        # The user's repository (HEAD, hooks, scratch space); differs with a private store.
        self.user_gitdir = user_gitdir or gitdir
        self.commondir = _common_dir(gitdir)
        self.objects = ObjectStore(self.commondir / "objects", git_dir=gitdir, clock=clock)
        self.refs = LocalRefs(self.commondir, clock=clock)

    @classmethod
    def find(cls, start: Path | str = ".") -> Store:
        """The store of the repository around `start`: its private store if it has one."""
        gitdir, workdir = _find_gitdir(Path(start))
        user = cls(gitdir, workdir)
        private = user.private_path
        if (private / "HEAD").is_file():
            return cls(private, workdir, user_gitdir=gitdir)
        return user

    @classmethod
    def init(cls, path: Path) -> Store:
        """Make `path` a new git repository (like `git init`)."""
        from dulwich.repo import Repo

        path.mkdir(parents=True, exist_ok=True)
        Repo.init(str(path)).close()
        return cls(path / ".git", path)

    @property
    def objects_dir(self) -> Path:
        return self.objects.path

    @property
    def private_path(self) -> Path:
        """Where `gdag init --private` keeps gdag's own repository."""
        return self.user_commondir / "gdag" / "store.git"

    @property
    def is_private(self) -> bool:
        return self.user_gitdir != self.gitdir

    @property
    def user_commondir(self) -> Path:
        return _common_dir(self.user_gitdir)

    @property
    def gdag_dir(self) -> Path:
        """gdag's scratch space inside the user's git dir (logs, temp files)."""
        return self.user_commondir / "gdag"

    def sweep(self, prefix: str = "refs/gdag/", tmp_age: float = 3600.0) -> int:
        """Remove leftovers of killed processes: stale ref locks under `prefix`, and
        temporary objects older than `tmp_age` seconds. Returns how many files went."""
        return self.refs.sweep(prefix) + self.objects.sweep_tmp(tmp_age)

    # -- objects (gdag.objects) ------------------------------------------------------

    def read(self, sha: bytes) -> ShaFile:
        return self.objects.read(sha)

    def has(self, sha: bytes) -> bool:
        return self.objects.has(sha)

    def read_tree(self, sha: bytes) -> Tree:
        return self.objects.read_tree(sha)

    def read_commit(self, sha: bytes) -> Commit:
        return self.objects.read_commit(sha)

    def read_blob(self, sha: bytes) -> bytes:
        return self.objects.read_blob(sha)

    def stream_blob(self, sha: bytes, out: IO[bytes], size: int | None = None) -> None:
        self.objects.stream_blob(sha, out, size)

    def expand_prefix(self, prefix: str) -> list[bytes]:
        return self.objects.expand_prefix(prefix)

    def write_raw(self, type_name: bytes, data: bytes) -> bytes:
        return self.objects.write_raw(type_name, data)

    def write(self, obj: ShaFile) -> bytes:
        return self.objects.write(obj)

    def write_blob(self, data: bytes) -> bytes:
        return self.objects.write_blob(data)

    def write_blob_stream(self, stream: IO[bytes], size: int) -> bytes:
        return self.objects.write_blob_stream(stream, size)

    def make_commit(
        self, tree: bytes, parents: list[bytes], message: str, when: float | None = None
    ) -> bytes:
        return self.objects.make_commit(tree, parents, message, when)

    def write_tree(self, entries: dict[bytes, Entry]) -> bytes:
        return self.objects.write_tree(entries)

    def tree_entries(self, sha: bytes | None) -> dict[bytes, Entry]:
        return self.objects.tree_entries(sha)

    def tree_get(self, root: bytes | None, path: Iterable[bytes]) -> Entry | None:
        return self.objects.tree_get(root, path)

    def tree_update(
        self, root: bytes | None, path: list[bytes], changes: Mapping[bytes, Entry | None]
    ) -> bytes:
        return self.objects.tree_update(root, path, changes)

    def walk_tree(self, sha: bytes, prefix: bytes = b"") -> Iterator[tuple[bytes, Entry]]:
        return self.objects.walk_tree(sha, prefix)

    # -- refs (gdag.refs) --------------------------------------------------------------

    def read_ref(self, ref: str) -> bytes | None:
        return self.refs.read_ref(ref)

    def list_refs(self, prefix: str) -> dict[str, bytes]:
        return self.refs.list_refs(prefix)

    def cas_ref(
        self, ref: str, old: bytes | None, new: bytes, timeout: float | None = None
    ) -> bool:
        return self.refs.cas_ref(ref, old, new, timeout)

    def delete_ref(self, ref: str, old: bytes) -> bool:
        return self.refs.delete_ref(ref, old)

"""The git store of a repository: finding it, and the object store and refs it is made of.

`Store` composes an `objects.ObjectStore` (reading and writing objects, trees,
commits) and a `refs.LocalRefs` (git's lock-file protocol, compare-and-swap),
and forwards their operations, so callers say `store.read_commit(…)` and
`store.cas_ref(…)`. The names other modules import from here (`Entry`,
`MODE_BLOB`, …) are those of `gdag.objects` and `gdag.refs`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING

from gdag.dirs import make_dirs
from gdag.errors import NotARepositoryError
from gdag.gitconfig import Config, check_format, read_config
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
from gdag.records import Frozen
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


class Location(Frozen):
    """Where git finds a repository: its git dir, common dir, work tree (None if bare)."""

    __slots__ = ("gitdir", "commondir", "workdir", "config")
    gitdir: Path
    commondir: Path
    workdir: Path | None
    config: Config

    def __init__(self, gitdir: Path, commondir: Path, workdir: Path | None, config: Config):
        self._set(gitdir=gitdir, commondir=commondir, workdir=workdir, config=config)


def find_location(start: Path, env: Mapping[str, str] = os.environ) -> Location:
    """The repository git would use when started in `start` (`git -C start`), as git's
    setup finds it: `GIT_DIR`, else `.git` (a directory or a `gitdir:` file) or a bare
    repository in `start` or a parent below `GIT_CEILING_DIRECTORIES`."""
    try:
        cwd = Path(os.path.realpath(start))
        if not cwd.is_dir():
            raise NotARepositoryError(f"{start}: no such directory")
    except OSError as exc:
        raise NotARepositoryError(f"{start}: {exc.strerror}") from None
    explicit = env.get("GIT_DIR")
    if explicit:
        given = cwd / explicit
        gitdir = _read_gitfile(given) if given.is_file() else given
        if gitdir is None or not _is_git_directory(gitdir, env):
            raise NotARepositoryError(
                f"not a git repository: {explicit!r} (GIT_DIR)",
                hint="unset GIT_DIR, or point it at a repository's git directory",
            )
        return _locate(gitdir, cwd, None, env, explicit=True)
    ceiling = _ceiling(cwd, env.get("GIT_CEILING_DIRECTORIES", ""))
    here = cwd
    while True:
        dotgit = here / ".git"
        found = _read_gitfile(dotgit) if dotgit.is_file() else dotgit
        if found is None or (dotgit.is_file() and not _is_git_directory(found, env)):
            raise NotARepositoryError(f"not a git repository: {dotgit} (a broken .git file)")
        if _is_git_directory(found, env):
            return _locate(found, cwd, here, env)
        if _is_git_directory(here, env):
            return _locate(here, cwd, None, env)
        if here.parent == here or here.parent == ceiling:
            break
        here = here.parent
    raise NotARepositoryError(
        f"not a git repository (or any parent up to {ceiling or '/'}): {start}",
        hint="run `gdag init` here, or pass -C PATH",
    )


def _read_gitfile(path: Path) -> Path | None:
    """Where a `.git` file (`gitdir: <path>`) points, or None when it is not one."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None
    if not text.startswith("gitdir: "):
        return None
    return path.parent / text[len("gitdir: ") :].rstrip("\r\n")


def _is_git_directory(path: Path, env: Mapping[str, str]) -> bool:
    """git's test: a HEAD naming a ref or a commit, an objects and a refs directory."""
    common = Path(env["GIT_COMMON_DIR"]) if env.get("GIT_COMMON_DIR") else _common_dir(path)
    try:
        head = (path / "HEAD").read_bytes()
    except OSError:
        return False
    detached = re.fullmatch(rb"[0-9a-f]{40}([0-9a-f]{24})?\n?", head)  # SHA-1 or SHA-256
    if not (head.startswith(b"ref: refs/") or detached):
        return False
    objects = Path(env["GIT_OBJECT_DIRECTORY"]) if env.get("GIT_OBJECT_DIRECTORY") else None
    return (objects or common / "objects").is_dir() and (common / "refs").is_dir()


def _ceiling(cwd: Path, spec: str) -> Path | None:
    """The nearest `GIT_CEILING_DIRECTORIES` entry above `cwd` (`cwd` itself is no ceiling)."""
    best: Path | None = None
    resolve = True
    for entry in spec.split(":"):
        if not entry:
            resolve = False  # entries after an empty one are not resolved (git's rule)
            continue
        if not os.path.isabs(entry):
            continue
        path = Path(os.path.realpath(entry) if resolve else os.path.normpath(entry))
        if path in cwd.parents and (best is None or len(path.parts) > len(best.parts)):
            best = path
    return best


def _locate(
    gitdir: Path, cwd: Path, top: Path | None, env: Mapping[str, str], explicit: bool = False
) -> Location:
    """The work tree of a found git dir, as git's setup decides it; the format checked."""
    gitdir = Path(os.path.realpath(gitdir))
    common = Path(env["GIT_COMMON_DIR"]) if env.get("GIT_COMMON_DIR") else None
    commondir = Path(os.path.realpath(cwd / common)) if common else _common_dir(gitdir)
    config = read_config(commondir / "config")
    check_format(config, gitdir)
    # A linked worktree ignores the shared core.bare and core.worktree, unless
    # extensions.worktreeConfig lets its own config.worktree set them.
    linked = common is not None or (gitdir / "commondir").is_file()
    bare = None if linked else config.get_bool("core.bare")
    tree = None if linked else config.get("core.worktree")
    if config.get_bool("extensions.worktreeConfig"):
        own = read_config(gitdir / "config.worktree")
        config = Config(config.items + own.items)
        bare = own.get_bool("core.bare") if own.has("core.bare") else bare
        tree = own.get("core.worktree") if own.has("core.worktree") else tree
    env_tree = env.get("GIT_WORK_TREE")
    workdir: Path | None
    if env_tree:
        workdir = cwd / env_tree
    elif bare:
        workdir = None
    elif tree:
        workdir = gitdir / tree
    elif explicit:
        workdir = cwd  # git: GIT_DIR without a work tree makes the current directory one
    else:
        workdir = top
    if workdir is not None:
        workdir = Path(os.path.realpath(workdir))
    return Location(gitdir, commondir, workdir, config)


def _common_dir(gitdir: Path) -> Path:
    """Where a (worktree's) git dir keeps objects and shared refs."""
    common = gitdir / "commondir"
    try:
        text = common.read_text().strip()
    except OSError:
        return gitdir
    return Path(os.path.realpath(gitdir / text))


# The stores this process wrote objects into, by git dir: after a command,
# `gdag.maintenance` packs those past git's `gc.auto` threshold in the background.
WROTE: dict[str, Store] = {}
GC_AUTO = 6700  # git's own `gc.auto` default


class Store:
    """A git repository seen as an object store plus a set of refs."""

    def __init__(
        self,
        gitdir: Path,
        workdir: Path | None,
        user_gitdir: Path | None = None,
        clock: Clock = SYSTEM_CLOCK,
        commondir: Path | None = None,
        user_commondir: Path | None = None,
        config: Config | None = None,
    ) -> None:
        self.gitdir = gitdir
        self.workdir = workdir
        # The user's repository (HEAD, hooks, scratch space); differs with a private store.
        self.user_gitdir = user_gitdir or gitdir
        self.commondir = commondir or _common_dir(gitdir)
        self.user_commondir = user_commondir or (
            self.commondir if user_gitdir is None else _common_dir(self.user_gitdir)
        )
        # The user's repository's config (read once, when the repository was found).
        self.config = config or Config()
        self.objects = ObjectStore(self.commondir / "objects", git_dir=gitdir, clock=clock)
        self.objects.on_first_write = self.note_write
        self.refs = LocalRefs(self.commondir, clock=clock)

    def past_gc_auto(self) -> bool:
        """Whether loose objects pass git's `gc.auto` threshold, tested as `git gc --auto`
        does: more than ceil(gc.auto / 256) of them in `objects/17/` (gc.auto read from
        every config file git reads; default 6700; 0 or less: never)."""
        sample = self.objects.loose_sample()
        if sample <= 1:  # the smallest threshold (gc.auto = 1) needs two
            return False
        limit = self.gc_auto()
        return limit > 0 and sample > -(-limit // 256)

    def gc_auto(self) -> int:
        """`gc.auto` as git reads it for the user's repository (a private store's too)."""
        from gdag.gitconfig import read_all

        return read_all(self.user_commondir, self.user_gitdir).get_int("gc.auto", GC_AUTO)

    def note_write(self) -> None:
        """This store got its first new object (since the last look, see gdag.maintenance)."""
        WROTE[str(self.gitdir)] = self

    @classmethod
    def find(cls, start: Path | str = ".") -> Store:
        """The store of the repository around `start`: its private store if it has one."""
        try:
            where = find_location(Path(start))
        except PermissionError as exc:
            raise NotARepositoryError(
                f"cannot look for a git repository at {start}: {exc.strerror} ({exc.filename})",
                hint="run gdag where you may read the repository, or pass -C PATH",
            ) from None
        user = cls(where.gitdir, where.workdir, commondir=where.commondir, config=where.config)
        private = user.private_path
        if (private / "HEAD").is_file():
            return cls(
                private,
                where.workdir,
                user_gitdir=where.gitdir,
                user_commondir=where.commondir,
                config=where.config,
            )
        return user

    @classmethod
    def init(cls, path: Path) -> Store:
        """Make `path` a new git repository (like `git init`)."""
        from dulwich.repo import Repo

        path.mkdir(parents=True, exist_ok=True)
        Repo.init(str(path)).close()
        return cls(path / ".git", path)

    @property
    def is_bare(self) -> bool:
        return self.workdir is None

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

    def blob_chunks(self, sha: bytes, size: int | None = None) -> Iterator[bytes]:
        return self.objects.blob_chunks(sha, size)

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

    def tree_update_many(
        self,
        root: bytes | None,
        changes: Mapping[tuple[bytes, ...], Mapping[bytes, Entry | None]],
    ) -> bytes:
        return self.objects.tree_update_many(root, changes)

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

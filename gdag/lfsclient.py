"""Large values and remotes: a remote's LFS endpoint found as git-lfs finds it, uploads of
missing objects through the batch API before a log is pushed, downloads on demand.

The endpoint of remote R, for an upload (download): `lfs.pushurl` (upload only),
`lfs.url`, `remote.R.lfspushurl` (upload only), `remote.R.lfsurl`, each read from
git's config and then from `.lfsconfig` at the top of the work tree; else derived
from R's URL (`remote.R.pushurl` for an upload, else `remote.R.url`, else R itself):
`https://host/repo` and `https://host/repo.git` give `https://host/repo.git/info/lfs`,
`git@host:repo.git` and `ssh://host/repo.git` its https form, and a path or
`file://` URL the repository's own `lfs/objects` (git-lfs's standalone transfer).

`[values] remote` replaces the endpoint by an fsspec store. The transfers are
`gdag.lfstransfer`'s. Imported only when a large value is met.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gdag import gitcmd, lfs
from gdag.dirs import make_dirs
from gdag.errors import GdagError
from gdag.layout import LAYOUTS
from gdag.lfstransfer import BatchClient, FsStore, LFSTransferError
from gdag.repo import Entry, Store

BATCH = 100  # objects per batch request, as git-lfs sends them
# The remote a repository last synced with: where its large values are fetched from.
LAST_REMOTE = "lfs-remote"


class Endpoint:
    """Where a remote keeps its large values: an HTTP(S) batch API, or the LFS
    directory of a repository on this machine."""

    def __init__(self, url: str | None = None, path: Path | None = None) -> None:
        self.url, self.path = url, path

    def __str__(self) -> str:
        return self.url or str(self.path)


# -- finding the endpoint ------------------------------------------------------------


def _config(store: Store) -> dict[str, str]:
    """git's config as git-lfs reads it: every scope of git config, over `.lfsconfig`."""
    found: dict[str, str] = {}
    if store.workdir is not None and (store.workdir / ".lfsconfig").is_file():
        found.update(_list(store, ["-f", str(store.workdir / ".lfsconfig")]))
    found.update(_list(store, []))
    return found


def _list(store: Store, where: list[str]) -> dict[str, str]:
    proc = gitcmd.run(["config", *where, "--list", "-z"], git_dir=store.user_gitdir, check=False)
    found = {}
    for item in proc.stdout.split("\0"):
        key, _, value = item.partition("\n")
        if key:
            section, _, rest = key.partition(".")
            sub, _, name = rest.rpartition(".")
            found[".".join(p for p in (section.lower(), sub, name.lower()) if p)] = value
    return found


def endpoint(store: Store, remote: str, upload: bool, start: str | None = None) -> Endpoint:
    """The LFS endpoint of `remote` (a remote's name, a URL or a path) for an upload
    or a download, found as git-lfs finds it."""
    config = _config(store)
    keys = ["lfs.pushurl"] if upload else []
    keys.append("lfs.url")
    if upload:
        keys.append(f"remote.{remote}.lfspushurl")
    keys.append(f"remote.{remote}.lfsurl")
    for key in keys:
        if config.get(key):
            return _explicit(config[key], key)
    url = (config.get(f"remote.{remote}.pushurl") if upload else None) or config.get(
        f"remote.{remote}.url"
    )
    if url is None:
        url = remote
        if not _is_url(url) and start is not None:
            url = os.path.join(start, url)
    elif not _is_url(url) and not os.path.isabs(url):
        url = str((store.workdir or store.user_gitdir) / url)
    return derive(url)


def _explicit(url: str, key: str) -> Endpoint:
    if url.startswith(("http://", "https://")):
        return Endpoint(url=url.rstrip("/"))
    if url.startswith("file://"):
        return Endpoint(path=_local_lfs_dir(Path(_file_path(url))))
    raise GdagError(
        f"{key} = {url!r} is no LFS endpoint gdag can use",
        hint="name an http://, https:// or file:// URL",
    )


def _is_url(name: str) -> bool:
    head, colon, _ = name.partition(":")
    return "://" in name or (bool(colon) and "/" not in head and len(head) > 1)


def _file_path(url: str) -> str:
    from urllib.parse import unquote, urlparse

    return unquote(urlparse(url).path)


def derive(url: str) -> Endpoint:
    """The endpoint git-lfs derives from a remote's URL (see the module's docstring)."""
    if url.startswith("file://"):
        return Endpoint(path=_local_lfs_dir(Path(_file_path(url))))
    if not _is_url(url):
        return Endpoint(path=_local_lfs_dir(Path(url)))
    if "://" in url:
        scheme, _, rest = url.partition("://")
        if scheme in ("ssh", "git", "git+ssh", "ssh+git"):
            host, _, path = rest.partition("/")
            host = host.rpartition("@")[2].partition(":")[0]
            url = f"https://{host}/{path}"
        elif scheme not in ("http", "https"):
            raise GdagError(f"cannot derive an LFS endpoint from the URL {url!r}")
    else:  # scp-like: [user@]host:path
        host, _, path = url.partition(":")
        url = f"https://{host.rpartition('@')[2]}/{path.lstrip('/')}"
    url = url.rstrip("/")
    return Endpoint(url=(url if url.endswith(".git") else url + ".git") + "/info/lfs")


def _local_lfs_dir(path: Path) -> Path:
    """The LFS directory of the repository at `path` (its `.git`, or itself when bare)."""
    git_dir = path / ".git" if (path / ".git").is_dir() else path
    return lfs.lfs_dir(git_dir)


# -- what a push needs ---------------------------------------------------------------


def pointers_to_push(store: Store, new: bytes, have: Iterable[bytes]) -> list[lfs.Pointer]:
    """The LFS pointers held by the values of commits reachable from `new` and not from
    `have`, whose objects are here or were (evicted by `[values] cache`); what was
    never here came from elsewhere."""
    names = {layout.value.decode() for layout in LAYOUTS.values()}
    args = ["rev-list", "--objects", new.decode(), "--not", *(h.decode() for h in have)]
    listed = gitcmd.run(args, git_dir=store.gitdir, what="listing the values to push")
    values = [
        sha
        for sha, _, path in (line.partition(" ") for line in listed.stdout.splitlines())
        if path.rpartition("/")[2] in names
    ]
    if not values:
        return []
    checked = gitcmd.run(
        ["cat-file", "--batch-check=%(objectname) %(objecttype) %(objectsize)"],
        git_dir=store.gitdir,
        input="\n".join(values) + "\n",
    )
    found: dict[str, lfs.Pointer] = {}
    evicted = None
    for line in checked.stdout.splitlines():
        sha, kind, size = (line.split(" ") + ["", ""])[:3]
        if kind == "blob" and size.isdigit() and int(size) <= lfs.MAX_POINTER:
            pointer = lfs.parse_pointer(store.read_blob(sha.encode()))
            if pointer is None:
                continue
            if lfs.has_object(store.user_commondir, pointer):
                found[pointer.oid] = pointer
                continue
            # Not here, but it was ([values] cache evicted it): another remote holds it,
            # which may not be the one pushed to. `fetch_back` brings it first.
            evicted = lfs.held(store.gdag_dir) if evicted is None else evicted
            if pointer.oid in evicted:
                found[pointer.oid] = pointer
    return sorted(found.values(), key=lambda p: p.oid)


def fetch_back(store: Store, pointers: list[lfs.Pointer], values_remote: str | None) -> None:
    """Fetch the objects of `pointers` missing here (evicted by `[values] cache`) from
    where they were kept, so that a push to another remote can send them."""
    for pointer in pointers:
        if not lfs.has_object(store.user_commondir, pointer):
            fetch(store, pointer, values_remote)


def upload(
    store: Store,
    remote: str,
    pointers: list[lfs.Pointer],
    start: str | None,
    values_remote: str | None = None,
) -> int:
    """Send the remote's LFS endpoint (or the fsspec store `values_remote`) every object
    of `pointers` it lacks; how many went. Raises before anything is pushed if one
    cannot be sent."""
    if not pointers:
        return 0
    sent = _upload(store, remote, pointers, start, values_remote)
    lfs.note_held(store.gdag_dir, [p.oid for p in pointers])  # each is there now
    return sent


def _upload(
    store: Store,
    remote: str,
    pointers: list[lfs.Pointer],
    start: str | None,
    values_remote: str | None,
) -> int:
    if values_remote is not None:
        return FsStore(values_remote).put(store, pointers)
    where = endpoint(store, remote, upload=True, start=start)
    if where.path is not None:
        return _copy_to_dir(store, where.path, pointers)
    sent = 0
    client = BatchClient(store, str(where.url))
    for i in range(0, len(pointers), BATCH):
        chunk = pointers[i : i + BATCH]
        for obj in client.batch("upload", chunk):
            if obj.actions and "upload" in obj.actions:
                client.put(obj, store)
                sent += 1
    return sent


def _copy_to_dir(store: Store, lfs_dir: Path, pointers: list[lfs.Pointer]) -> int:
    remote_common = lfs_dir.parent
    sent = 0
    for pointer in pointers:
        if lfs.has_object(remote_common, pointer):
            continue
        tmpdir = lfs_dir / "tmp"
        make_dirs(tmpdir)
        fd, tmp = tempfile.mkstemp(dir=tmpdir)
        try:
            with os.fdopen(fd, "wb") as out:
                lfs.copy_verified(lfs.object_path(store.user_commondir, pointer.oid), pointer, out)
            lfs.install(remote_common, tmp, pointer)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        sent += 1
    return sent


# -- reading large values ------------------------------------------------------------


def resolve(
    store: Store,
    entry: Entry,
    values_remote: str | None = None,
    value: tuple[str, int] | None = None,
) -> tuple[lfs.Pointer, Path]:
    """A large value's pointer and the path of its object here, downloaded first when
    missing: from the fsspec store `values_remote` (`[values] remote`), else from the
    LFS endpoint of the remote last synced with (else `origin`, else the only remote).
    `value` (output, version) that `gdag gc` pruned is refused (`lfs.ExpiredError`), not
    fetched again."""
    from gdag.values import large_pointer

    pointer = large_pointer(store, entry)
    path = lfs.object_path(store.user_commondir, pointer.oid)
    if not lfs.has_object(store.user_commondir, pointer):
        if value is not None:  # that version gone by a retention rule: not fetched
            lfs.check_pruned(store.gdag_dir, pointer, value)
        fetch(store, pointer, values_remote)
    else:
        lfs.mark_used(path)
    return pointer, path


def fetch(store: Store, pointer: lfs.Pointer, values_remote: str | None) -> None:
    """Download one object here: from the fsspec store `values_remote`, else from the
    LFS endpoint of the remote last synced with (else `origin`, else the only remote)."""
    if values_remote is not None:
        _install_fetched(store, pointer, lambda out: FsStore(values_remote).get(pointer, out))
        return
    remote = default_remote(store)
    if remote is None:
        raise lfs.MissingObjectError(pointer)
    download(store, remote, pointer)


def remember_remote(store: Store, remote: str) -> None:
    """Note the remote a sync used: large values are fetched from it on demand."""
    make_dirs(store.gdag_dir)
    (store.gdag_dir / LAST_REMOTE).write_text(remote + "\n")


def default_remote(store: Store) -> str | None:
    try:
        return (store.gdag_dir / LAST_REMOTE).read_text().strip() or None
    except FileNotFoundError:
        pass
    remotes = sorted(
        {k.split(".")[1] for k in _config(store) if k.startswith("remote.") and k.count(".") >= 2}
    )
    return "origin" if "origin" in remotes else (remotes[0] if len(remotes) == 1 else None)


def download(store: Store, remote: str, pointer: lfs.Pointer) -> None:
    """Fetch one object from the remote's LFS endpoint, checked before it is kept."""
    where = endpoint(store, remote, upload=False)

    def fetch(out: Any) -> None:
        if where.path is not None:
            source = lfs.object_path(where.path.parent, pointer.oid)
            if not source.exists():
                raise _missing_there(pointer, where)
            lfs.copy_verified(source, pointer, out)
        else:
            client = BatchClient(store, str(where.url))
            (obj,) = client.batch("download", [pointer])
            if obj.error or not obj.actions or "download" not in obj.actions:
                raise _missing_there(pointer, where)
            client.get(obj, pointer, out)

    _install_fetched(store, pointer, fetch)


def _install_fetched(store: Store, pointer: lfs.Pointer, fetch: Any) -> None:
    """`fetch(out)` writes the object into a temporary file, checked; then it is kept."""
    common = store.user_commondir
    tmpdir = lfs.lfs_dir(common) / "tmp"
    make_dirs(tmpdir)
    fd, tmp = tempfile.mkstemp(dir=tmpdir)
    try:
        with os.fdopen(fd, "wb") as out:
            fetch(out)
        lfs.install(common, tmp, pointer)
        lfs.note_held(store.gdag_dir, [pointer.oid])  # it came from there
        lfs.GREW[str(common)] = store
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _missing_there(pointer: lfs.Pointer, where: Endpoint) -> LFSTransferError:
    return LFSTransferError(
        f"large value {pointer.oid[:12]} ({pointer.size} bytes) is neither here nor at "
        f"the LFS endpoint {where}",
        hint="sync from the clone that published it (`gdag sync REMOTE` there)",
    )

"""Large values and remotes: a remote's LFS endpoint found as git-lfs finds it, uploads of
missing objects through the batch API before a log is pushed, downloads on demand.

The endpoint of remote R, for an upload (download): `lfs.pushurl` (upload only),
`lfs.url`, `remote.R.lfspushurl` (upload only), `remote.R.lfsurl`, each read from
git's config and then from `.lfsconfig` at the top of the work tree; else derived
from R's URL (`remote.R.pushurl` for an upload, else `remote.R.url`, else R itself):
`https://host/repo` and `https://host/repo.git` give `https://host/repo.git/info/lfs`,
`git@host:repo.git` and `ssh://host/repo.git` its https form, and a path or
`file://` URL the repository's own `lfs/objects` (git-lfs's standalone transfer).

HTTP endpoints are spoken to through dulwich's LFS client (`HTTPLFSClient.batch`)
and the pool manager dulwich builds from git's `http.*` config; the transfers
themselves are streamed here (dulwich's `upload` and `download` hold a whole
object in memory). Imported only when a large value is met.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gdag import gitcmd, lfs
from gdag.dirs import make_dirs
from gdag.errors import GdagError
from gdag.layout import LAYOUTS
from gdag.repo import Entry, Store

BATCH = 100  # objects per batch request, as git-lfs sends them
# The remote a repository last synced with: where its large values are fetched from.
LAST_REMOTE = "lfs-remote"


class LFSTransferError(GdagError):
    """An LFS endpoint that could not be reached or refused an object."""


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
    `have`, whose objects are here (what is missing here came from elsewhere)."""
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
    for line in checked.stdout.splitlines():
        sha, kind, size = (line.split(" ") + ["", ""])[:3]
        if kind == "blob" and size.isdigit() and int(size) <= lfs.MAX_POINTER:
            pointer = lfs.parse_pointer(store.read_blob(sha.encode()))
            if pointer is not None and lfs.has_object(store.user_commondir, pointer):
                found[pointer.oid] = pointer
    return sorted(found.values(), key=lambda p: p.oid)


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
    if values_remote is not None:
        return _FsStore(values_remote).put(store, pointers)
    where = endpoint(store, remote, upload=True, start=start)
    if where.path is not None:
        return _copy_to_dir(store, where.path, pointers)
    sent = 0
    client = _Client(store, where)
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
    store: Store, entry: Entry, values_remote: str | None = None
) -> tuple[lfs.Pointer, Path]:
    """A large value's pointer and the path of its object here, downloaded first when
    missing: from the fsspec store `values_remote` (`[values] remote`), else from the
    LFS endpoint of the remote last synced with (else `origin`, else the only remote)."""
    from gdag.values import large_pointer

    pointer = large_pointer(store, entry)
    path = lfs.object_path(store.user_commondir, pointer.oid)
    if not lfs.has_object(store.user_commondir, pointer):
        if values_remote is not None:
            _install_fetched(store, pointer, lambda out: _FsStore(values_remote).get(pointer, out))
            return pointer, path
        remote = default_remote(store)
        if remote is None:
            raise lfs.MissingObjectError(pointer)
        download(store, remote, pointer)
    return pointer, path


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
            client = _Client(store, where)
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
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class _FsStore:
    """`[values] remote`: any fsspec store, objects at `<url>/<oid[0:2]>/<oid[2:4]>/<oid>`
    as in an LFS store; written under a temporary name and moved into place."""

    def __init__(self, url: str) -> None:
        try:
            import fsspec
        except ImportError:
            raise GdagError(
                f"[values] remote = {url!r} needs fsspec, which is not installed",
                hint="pip install 'gdag[fsspec]' (or gdag[s3], gdag[gcs])",
            ) from None
        self.url = url
        try:
            self.fs, self.root = fsspec.core.url_to_fs(url)
        except (ImportError, ValueError) as exc:
            raise GdagError(
                f"[values] remote = {url!r}: {exc}", hint="pip install the fsspec backend named"
            ) from None

    def path(self, oid: str) -> str:
        return f"{self.root.rstrip('/')}/{oid[0:2]}/{oid[2:4]}/{oid}"

    def put(self, store: Store, pointers: list[lfs.Pointer]) -> int:
        sent = 0
        for pointer in pointers:
            path = self.path(pointer.oid)
            try:
                if self.fs.exists(path) and self.fs.size(path) == pointer.size:
                    continue
                self.fs.makedirs(path.rpartition("/")[0], exist_ok=True)
                tmp = f"{path}.tmp-{os.getpid()}-{os.urandom(3).hex()}"
                local = lfs.object_path(store.user_commondir, pointer.oid)
                with self.fs.open(tmp, "wb") as out:
                    lfs.copy_verified(local, pointer, out)
                self.fs.mv(tmp, path)
            except OSError as exc:
                raise self._error(f"cannot store {pointer.oid[:12]} there: {exc}") from None
            sent += 1
        return sent

    def get(self, pointer: lfs.Pointer, out: Any) -> None:
        path = self.path(pointer.oid)
        try:
            with self.fs.open(path, "rb") as f:
                ok = lfs.copy_stream(f, pointer, out)
        except FileNotFoundError:
            raise _missing_there(pointer, Endpoint(url=self.url)) from None
        except OSError as exc:
            raise self._error(f"cannot read {pointer.oid[:12]} there: {exc}") from None
        if not ok:
            raise self._error(f"{pointer.oid[:12]} there is damaged (its SHA-256 differs)")

    def _error(self, why: str) -> LFSTransferError:
        return LFSTransferError(
            f"[values] remote {self.url}: {why}",
            hint="a log is pushed only after its large values: run `gdag sync` again "
            "once the store works (a value missing here is fetched on the next read)",
        )


def _missing_there(pointer: lfs.Pointer, where: Endpoint) -> LFSTransferError:
    return LFSTransferError(
        f"large value {pointer.oid[:12]} ({pointer.size} bytes) is neither here nor at "
        f"the LFS endpoint {where}",
        hint="sync from the clone that published it (`gdag sync REMOTE` there)",
    )


# -- the batch API over HTTP -----------------------------------------------------------


class _Client:
    """dulwich's HTTP LFS client for the batch API; transfers streamed through the pool
    manager it would use, with git's `http.*` settings."""

    def __init__(self, store: Store, where: Endpoint) -> None:
        from dulwich.config import ConfigFile, StackedConfig
        from dulwich.lfs import HTTPLFSClient

        assert where.url is not None
        self.url = where.url
        config = StackedConfig(
            [ConfigFile.from_path(str(store.user_commondir / "config")), *_defaults()]
        )
        self.client = HTTPLFSClient(where.url, config)
        self.config = config
        self._pool: Any = None

    def pool(self) -> Any:
        if self._pool is None:
            from dulwich.client import default_urllib3_manager

            self._pool = default_urllib3_manager(self.config, base_url=self.url)
        return self._pool

    def batch(self, operation: str, pointers: list[lfs.Pointer]) -> list[Any]:
        from dulwich.lfs import LFSError

        try:
            reply = self.client.batch(operation, [{"oid": p.oid, "size": p.size} for p in pointers])
        except LFSError as exc:
            raise self._error(f"its batch API answered: {exc}") from None
        for obj in reply.objects:
            if obj.error and operation == "upload":
                raise self._error(f"it refused {obj.oid[:12]}: {obj.error.message}")
        return list(reply.objects)

    def put(self, obj: Any, store: Store) -> None:
        pointer = lfs.Pointer(obj.oid, obj.size)
        action = obj.actions["upload"]
        headers = {
            "Content-Type": "application/octet-stream",
            **(action.header or {}),
            "Content-Length": str(pointer.size),
        }
        path = lfs.object_path(store.user_commondir, pointer.oid)
        with open(path, "rb") as body:
            reply = self._send("PUT", action.href, headers, body, pointer)
        if reply.status >= 400:
            raise self._error(f"uploading {pointer.oid[:12]} failed with HTTP {reply.status}")
        verify = obj.actions.get("verify")
        if verify is not None:
            data = f'{{"oid": "{pointer.oid}", "size": {pointer.size}}}'.encode()
            headers = {"Content-Type": "application/vnd.git-lfs+json", **(verify.header or {})}
            reply = self._send("POST", verify.href, headers, data, pointer)
            if reply.status >= 400:
                raise self._error(f"it did not verify {pointer.oid[:12]} (HTTP {reply.status})")

    def get(self, obj: Any, pointer: lfs.Pointer, out: Any) -> None:
        action = obj.actions["download"]
        reply = self._send("GET", action.href, dict(action.header or {}), None, pointer, False)
        hasher = hashlib.sha256()
        size = 0
        try:
            if reply.status >= 400:
                raise self._error(f"downloading {pointer.oid[:12]} failed: HTTP {reply.status}")
            for chunk in reply.stream(lfs.CHUNK):
                hasher.update(chunk)
                size += len(chunk)
                out.write(chunk)
        except self._transport_errors() as exc:
            raise self._error(f"the download of {pointer.oid[:12]} broke off: {exc}") from None
        finally:
            reply.release_conn()
        if size != pointer.size or hasher.hexdigest() != pointer.oid:
            raise self._error(f"it sent {pointer.oid[:12]} damaged (its SHA-256 differs)")

    def _send(
        self,
        method: str,
        href: str,
        headers: dict[str, str],
        body: Any,
        pointer: lfs.Pointer,
        preload: bool = True,
    ) -> Any:
        try:
            return self.pool().request(
                method, href, headers=headers, body=body, preload_content=preload, retries=False
            )
        except self._transport_errors() as exc:
            raise self._error(f"sending {pointer.oid[:12]} broke off: {exc}") from None

    @staticmethod
    def _transport_errors() -> tuple[type[BaseException], ...]:
        import urllib3.exceptions

        return (urllib3.exceptions.HTTPError, OSError)

    def _error(self, why: str) -> LFSTransferError:
        return LFSTransferError(
            f"LFS endpoint {self.url}: {why}",
            hint="a log is pushed only after its large values: run `gdag sync` again "
            "once the endpoint works (a value missing here is fetched on the next read)",
        )


def _defaults() -> list[Any]:
    from dulwich.config import StackedConfig

    return list(StackedConfig.default_backends())

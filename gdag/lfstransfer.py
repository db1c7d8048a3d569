"""Large values' transfers: the LFS batch API over HTTP, and fsspec stores.

`BatchClient` speaks to an HTTP(S) LFS endpoint through dulwich's LFS client
(`HTTPLFSClient.batch`) and the urllib3 pool dulwich builds from git's `http.*`
config (`dulwich.client.default_urllib3_manager`); the transfers themselves are
streamed here, because dulwich's `upload` and `download` take and return whole
objects in memory. `FsStore` keeps objects in any fsspec store (`[values]
remote`). Both check every object's size and SHA-256. Imported only when a
large value travels.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from gdag import lfs
from gdag.errors import GdagError
from gdag.repo import Store


class LFSTransferError(GdagError):
    """An LFS endpoint or values store that could not be reached or refused an object."""


class BatchClient:
    """dulwich's HTTP LFS client for the batch API; transfers streamed through the pool
    manager it would use, with git's `http.*` settings."""

    def __init__(self, store: Store, url: str) -> None:
        from dulwich.config import ConfigFile, StackedConfig
        from dulwich.lfs import HTTPLFSClient

        self.url = url
        config = StackedConfig(
            [ConfigFile.from_path(str(store.user_commondir / "config")), *_defaults()]
        )
        self.client = HTTPLFSClient(url, config)
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


class FsStore:
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
            raise self._error(f"{pointer.oid[:12]} is not there") from None
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

"""The Python API: `gdag.Repository`, a repository and its log used from a script,
a notebook or a test, with the CLI's rules, guarantees and errors.

Every method is the counterpart of a command and raises the same `GdagError`
subclasses with the same meanings (`gdag.errors`): `publish` is `gdag publish
--no-run`, `lookup` and `open_value` are `gdag lookup`, `history` walks an
output's versions, `run` is `gdag run`, `follow` is `gdag log --follow`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from gdag.errors import GdagError, ValueRefusedError
from gdag.log import Event
from gdag.workspace import Published, ValueSource, Workspace

__all__ = ["Event", "Published", "Repository", "RunSummary", "Version"]

# An offset as `gdag lookup --at` takes it: N, -N (back from the tip) or a commit id.
Offset = int | str


@dataclass(frozen=True)
class Version:
    """One version of an output, as its metadata records it."""

    output: str
    version: int
    offset: int  # the event that wrote it
    time: str  # ISO 8601, UTC
    type: str
    size: int | None
    event: str  # publish (from outside) or session (written by a node)
    node: str | None
    session: str | None


@dataclass(frozen=True)
class RunSummary:
    """What a run did, a node per session: the ones that ran and succeeded, failed, were
    superseded by another process's session, or were recovered from a killed run."""

    ran: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


class Repository:
    """A git repository and the log in force, found as the CLI finds them.

    `path` is any directory of the repository (like `gdag -C PATH`); `log` is the
    log's name, else `$GDAG_LOG`, else the branch's log when `[log] follow = "branch"`,
    else `main`.
    """

    def __init__(self, path: str | os.PathLike[str] = ".", log: str | None = None) -> None:
        start = Path(path)
        if not start.is_dir():
            why = "not a directory" if start.exists() else "no such directory"
            raise GdagError(f"cannot open {str(start)!r}: {why}")
        self._ws = Workspace.open(start, log)

    @property
    def root(self) -> Path:
        """The work tree, or the git directory of a bare repository."""
        return self._ws.store.workdir or self._ws.store.gitdir

    @property
    def log(self) -> str:
        return self._ws.log.name

    def __repr__(self) -> str:
        return f"Repository({str(self.root)!r}, log={self.log!r})"

    # -- values in ---------------------------------------------------------------

    def publish(
        self, name: str, value: Any, type: str | None = None, *, if_changed: bool = False
    ) -> Published:
        """Append `value` as the next version of output `name`; returns its `offset` and
        `version` (and `changed`: False when `if_changed` found the value unchanged).

        `bytes` are stored as they are; a `str` is read as `gdag publish NAME TEXT`
        reads its argument (`"42"` for an `int` output); a `pathlib.Path` publishes a
        file's content, or a directory as a tree; a binary file object is streamed;
        any other value (int, float, bool, None, list, dict, a pydantic model) is
        checked against the output's type, which must then be a typed one. `type` fixes
        the type of a new output, like `--type`. Subscribers are not run: `run()` does.
        """
        source = self._source(name, value, type)
        return self._ws.publish(name, source, type, if_changed)

    def _source(self, name: str, value: Any, type_text: str | None) -> ValueSource:
        if isinstance(value, bytes | bytearray | memoryview):
            return ValueSource(data=bytes(value))
        if isinstance(value, str):
            return ValueSource(data=value.encode("utf-8"))
        if isinstance(value, os.PathLike):
            return _path_source(Path(value))
        if hasattr(value, "read"):
            return ValueSource(stream=value)
        return ValueSource(data=self._encode(name, value, type_text))

    def _encode(self, name: str, value: Any, type_text: str | None) -> bytes:
        from gdag import state
        from gdag.names import check_output_name
        from gdag.types import canonical_json, check_value

        check_output_name(name)
        tip = self._ws.log.require_tip()
        dag = self._ws.current_dag(tip, record=False)
        prev = state.read_output(self._ws.store, self._ws.store.read_commit(tip).tree, name)
        typ = self._ws.resolve_type(name, dag, type_text, prev)
        if typ.is_raw:
            raise ValueRefusedError(
                f"output {name!r} has type {typ}: publish bytes, str, a path or a file, "
                f"not {value.__class__.__name__}",
                hint="give the type of a new output, e.g. type='int' or type='json'",
            )
        return canonical_json(check_value(value, typ, name))

    # -- values out --------------------------------------------------------------

    def lookup(self, name: str, at: Offset | None = None) -> Any:
        """The value of output `name` (at an offset): `bytes` for a bytes output, else
        the typed value (`str`, `int`, … decoded from its JSON; a `module:Name` type's
        value as an instance of it). A directory value is written out by `save`."""
        from gdag.types import decode_stored, parse_type

        st = self._blob_output(name, at)
        data = self._ws.value_bytes(st)
        typ = parse_type(st.type)
        return data if typ.is_raw else decode_stored(data, typ)

    def open_value(self, name: str, at: Offset | None = None) -> BinaryIO:
        """The value of output `name` as a binary file object, read from the store a
        chunk at a time as the caller reads it (memory stays small for any size); what
        `gdag lookup` prints: bytes as they are, typed values as text. Close it (or use
        `with`)."""
        import io

        from gdag import values
        from gdag.types import parse_type, stored_to_display

        st = self._blob_output(name, at)
        typ = parse_type(st.type)
        if not typ.is_raw:
            data = self._ws.value_bytes(st)
            return io.BytesIO(stored_to_display(data, typ))
        large = self._ws.large_object(st)
        if large is not None:  # a git LFS object: its file, checked when it was stored
            return open(large[1], "rb")
        size = st.meta.get("size")
        return values.open_blob(
            self._ws.store, st.value.sha, size if isinstance(size, int) else None
        )

    def save(self, name: str, path: str | os.PathLike[str], at: Offset | None = None) -> Path:
        """Write the value of output `name` to `path` (`gdag lookup NAME -o PATH`): a
        file, or a directory value's files under the directory `path`."""
        from gdag import values
        from gdag.types import parse_type, stored_to_display

        st = self._ws.lookup(name, _at(at))
        target = Path(path)
        if st.value.is_tree:
            values.materialise(self._ws.store, st.value.sha, target)
            return target
        typ = parse_type(st.type)
        with open(target, "wb") as f:
            if typ.is_raw:
                for chunk in self._ws.value_chunks(st):
                    f.write(chunk)
            else:
                f.write(stored_to_display(self._ws.value_bytes(st), typ))
        return target

    def _blob_output(self, name: str, at: Offset | None) -> Any:
        st = self._ws.lookup(name, _at(at))
        if st.value.is_tree:
            raise ValueRefusedError(
                f"output {name!r} is a directory value",
                hint="repo.save(name, path) writes its files out",
            )
        return st

    def history(self, name: str) -> Iterator[Version]:
        """The versions of output `name`, newest first, following each version's link
        to the one before (never scanning the log)."""
        from gdag import state
        from gdag.names import check_output_name

        check_output_name(name)
        ws = self._ws
        root: bytes | None = ws.store.read_commit(ws.log.require_tip()).tree
        out = state.read_output(ws.store, root, name)
        if out is None:
            ws.lookup(name)  # the CLI's error for an output without a value
        while out is not None:
            yield _version(name, out.meta)
            prev = out.meta.get("prev")
            if prev is None:
                break
            root = ws.store.read_commit(ws.log.commit_at(int(prev))).tree
            out = state.read_output(ws.store, root, name)

    def events(
        self, *, limit: int | None = None, output: str | None = None, node: str | None = None
    ) -> list[Event]:
        """The log's events, newest first, filtered as `gdag log` filters them."""
        from gdag.log import select_events

        return select_events(self._ws.log, limit=limit, output=output, node=node)

    # -- running -----------------------------------------------------------------

    def status(self) -> dict[str, str]:
        """Every node's state (up-to-date, stale, never-run, running, failed, waiting)."""
        from gdag.runner import Engine

        return {st.node: st.state for st in Engine(self._ws).status()}

    def run(
        self,
        targets: Iterable[str] | str | None = None,
        jobs: int | None = None,
        *,
        keep_going: bool = True,
        retry_failed: bool = False,
    ) -> RunSummary:
        """Run every stale node (or what `targets`, nodes or outputs, reach) until nothing
        is stale, like `gdag run`; a failed node is in the summary's `failed`, not an
        exception. `jobs`: nodes at once (default: CPUs)."""
        from gdag import hooks
        from gdag.runner import Engine

        if hooks.pending(self._ws.store):  # git events the hook shims queued
            hooks.drain_queue(self._ws.store.user_commondir, lambda ws, output: None, linger=0.0)
        wanted = [targets] if isinstance(targets, str) else list(targets or [])
        engine = Engine(self._ws, jobs or os.cpu_count() or 1)
        done = engine.run(wanted or None, keep_going=keep_going, retry_failed=retry_failed)
        return RunSummary(done.ran, done.failed, done.superseded, done.recovered)

    def follow(self, after: int | None = None, poll: float = 0.1) -> Iterator[Event]:
        """Events oldest first as they are appended after offset `after` (default: from
        now on), for as long as the loop goes on: each once, in log order."""
        from gdag.log import follow

        self._ws.log.require_tip()
        return follow(self._ws.log, after, poll)


def _at(at: Offset | None) -> str | None:
    return None if at is None else str(at)


def _path_source(path: Path) -> ValueSource:
    if path.is_dir():
        return ValueSource(directory=path)
    if not path.is_file():
        why = "no such file or directory" if not path.exists() else "not a regular file"
        raise GdagError(f"cannot read {path}: {why}")
    return ValueSource(file=path)


def _version(name: str, meta: dict[str, Any]) -> Version:
    size = meta.get("size")
    return Version(
        output=name,
        version=int(meta.get("version", 0)),
        offset=int(meta.get("offset", 0)),
        time=str(meta.get("time", "")),
        type=str(meta.get("type", "bytes")),
        size=size if isinstance(size, int) else None,
        event=str(meta.get("event", "")),
        node=meta.get("node"),
        session=meta.get("session"),
    )

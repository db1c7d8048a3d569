"""A repository and the log in force: init, publish, lookup and the definition in the log."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from gdag import definition, state, trailers
from gdag.dag import Dag
from gdag.errors import (
    DefinitionError,
    GdagError,
    NotARepositoryError,
    UnknownError,
    ValueRefusedError,
)
from gdag.log import Log, NotApplicable, format_message, recording_dag
from gdag.names import check_output_name, check_simple_name
from gdag.repo import Entry, Store
from gdag.state import read_dag
from gdag.types import BYTES, Type, decode_text_value, encode_value, parse_type


# Plain classes, not dataclasses: building a dataclass costs ~0.5 ms at import, and
# every publish and lookup imports this module.
class ValueSource:
    """Where a published value comes from: exactly one of the fields is set."""

    def __init__(
        self,
        data: bytes | None = None,
        file: Path | None = None,
        directory: Path | None = None,
        stream: IO[bytes] | None = None,
    ) -> None:
        self.data, self.file, self.directory, self.stream = data, file, directory, stream


class Published:
    """What a publish did."""

    def __init__(
        self,
        output: str,
        version: int,
        offset: int,
        commit: str,
        changed: bool,
        type: str,
        session: str | None = None,
        notes: list[str] | None = None,
    ) -> None:
        self.output, self.version, self.offset, self.commit = output, version, offset, commit
        self.changed, self.type, self.session = changed, type, session
        # What the caller should hear (e.g. recorded with the log's definition: gdag.toml
        # broken).
        self.notes: list[str] = notes if notes is not None else []

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "notes" or v}


class Initialised:
    """What `gdag init` did."""

    def __init__(
        self,
        root: str,
        log: str,
        created_repository: bool = False,
        wrote_definition: bool = False,
        created_log: bool = False,
        offset: int = 0,
        notes: list[str] | None = None,
    ) -> None:
        self.root, self.log, self.created_repository = root, log, created_repository
        self.wrote_definition, self.created_log, self.offset = wrote_definition, created_log, offset
        self.notes: list[str] = notes if notes is not None else []


class _Unchanged(NotApplicable):
    def __init__(self, prev: state.OutputState | None) -> None:
        self.prev = prev


def now_iso(ts: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts if ts is not None else time.time()))


def new_id(prefix: str) -> str:
    return f"{prefix}{int(time.time() * 1000):x}-{os.urandom(3).hex()}"


class Workspace:
    """A store, the log in force, and the definition of the repository."""

    def __init__(self, store: Store, log_name: str, log: Log | None = None) -> None:
        self.store = store
        # `log`: a log of that name wired otherwise (e.g. committing by push to a remote).
        self.log = log or Log(store, log_name)
        # Set by a read-only `current_dag` that found the source differing from the log's.
        self.definition_differs = False
        if store.workdir is not None:
            from gdag import types

            types.USER_ROOT[:] = [str(store.workdir)]

    @classmethod
    def open(cls, path: str | Path | None = None, log: str | None = None) -> Workspace:
        store = Store.find(path or ".")
        return cls(store, log_name(log, store))

    # -- definition ----------------------------------------------------------

    def definition_source(self) -> definition.Source:
        """The work tree's definition; a bare repository's from inside it (`gdag.definition`)."""
        if self.store.workdir is None:
            return definition.with_stored_files(
                self.store, definition.read_stored_source(self.store)
            )
        return definition.read_source(self.store.workdir)

    def current_dag(self, tip: bytes, record: bool = True) -> Dag:
        """The compiled definition in force: the log's while it matches the source, else the
        source compiled. With `record` (commands that append events: run, publish, replay,
        watch) a changed definition is appended as a `dag` event; without (read-only
        commands) it stays in memory and `definition_differs` says so."""
        root = self.store.read_commit(tip).tree
        stored = read_dag(self.store, root) or Dag.empty()
        src = self.definition_source()
        digest = definition.Digests(self.store.gdag_dir / "digests.json")
        if definition.is_current(stored, src, digest):
            return stored
        dag = definition.compile_definition(src, digest=digest)
        if record:
            self._append_dag(dag)
        else:
            self.definition_differs = dag.to_json() != stored.to_json()
        return dag

    def _append_dag(self, dag: Dag) -> None:
        try:
            self.log.append(recording_dag(self.store, dag.to_json()))
        except NotApplicable:
            pass  # another process recorded it first

    # -- init ------------------------------------------------------------------

    @classmethod
    def init(
        cls, path: str | Path | None, log: str | None, private: bool = False
    ) -> tuple[Workspace, Initialised]:
        target = Path(path or ".")
        created = False
        if target.exists() and not target.is_dir():
            raise GdagError(f"{target}: not a directory")
        try:
            if not target.exists():
                raise NotARepositoryError(str(target))
            store = Store.find(target)
        except NotARepositoryError:
            if os.environ.get("GIT_DIR"):
                raise  # git names the repository: never make another one beside it
            store = Store.init(target)
            created = True
        notes = []
        if private and not store.is_private:
            from gdag.private import make_private

            store, moved = make_private(store)
            notes.append(
                f"moved {moved} gdag refs into a private store"
                if moved
                else "created a private store"
            )
        ws = cls(store, log_name(log, store))
        result = Initialised(str(store.workdir or store.gitdir), ws.log.name, created, notes=notes)
        if store.workdir is not None and ws.definition_source().path is None:
            (store.workdir / definition.DEFINITION_FILE).write_text(definition.STARTER)
            result.wrote_definition = True
        dag = definition.compile_definition(ws.definition_source())
        if ws.log.tip() is None:
            _, result.offset = ws.log.append(ws._init_builder(dag), create=True)
            result.created_log = True
        else:
            result.offset = ws.log.event(ws.log.require_tip()).offset
        return ws, result

    def _init_builder(self, dag: Dag) -> Any:
        def build(parent: bytes | None, offset: int) -> tuple[bytes, str, list[bytes]]:
            tree = state.write_dag(self.store, None, dag.to_json())
            lines = [
                (trailers.OFFSET, "0"),
                (trailers.EVENT, trailers.INIT),
                (trailers.LOG, self.log.name),
            ]
            return tree, format_message(f"init log {self.log.name}", lines), []

        return build

    # -- publish ---------------------------------------------------------------

    def publish(
        self,
        output: str,
        source: ValueSource,
        type_text: str | None = None,
        if_changed: bool = False,
        publish_id: str | None = None,
        lenient: bool = False,
        skip_if: Callable[[bytes | None], bool] | None = None,
    ) -> Published:
        """Record `source` as the next value of `output`. `lenient` (git events): a
        work tree whose definition does not compile does not stop the value; its type
        comes from the log's definition, and `notes` says so. `skip_if(parent tree)`,
        asked inside the compare-and-swap loop, appends nothing when true (a schedule's
        tick already in the log): `changed` is then False."""
        check_output_name(output)
        session_id = os.environ.get("GDAG_SESSION")
        if session_id:
            return self._publish_in_session(session_id, output, source, type_text)
        tip = self.log.require_tip()
        notes: list[str] = []
        try:
            dag = self.current_dag(tip)
        except DefinitionError as exc:
            if not lenient:
                raise
            # Storing a value needs no definition: the log's types, subscribers later.
            dag = read_dag(self.store, self.store.read_commit(tip).tree) or Dag.empty()
            notes.append(
                f"recorded with the log's definition: {exc.message}; "
                "subscribers run once gdag.toml is fixed (`gdag run`)"
            )
        prev = state.read_output(self.store, self.store.read_commit(tip).tree, output)
        default = Type("dir") if source.directory is not None else BYTES
        typ = self.resolve_type(output, dag, type_text, prev, default)
        decl = dag.outputs.get(output)
        if decl is not None and (decl.origin or "").startswith("schedule ") and skip_if is None:
            raise ValueRefusedError(
                f"output {output!r} is published by {decl.origin} only",
                hint="`gdag tick` publishes the ticks that are due",
            )
        entry, size, kind = self.store_value(output, typ, source, dag.large_threshold)
        publish_id = publish_id or new_id("p")

        def build(parent: bytes | None, offset: int) -> tuple[bytes, str, list[bytes]]:
            prev = state.read_output(self.store, parent, output)
            if prev is not None and prev.type != str(typ):
                self._refuse_retype(output, prev.type, str(typ))
            if if_changed and prev is not None and prev.value == entry:
                raise _Unchanged(prev)
            if skip_if is not None and skip_if(parent):
                raise _Unchanged(prev)
            meta = {
                **state.next_version(prev, offset),
                "type": str(typ),
                "event": trailers.PUBLISH,
                "id": publish_id,
                "node": None,
                "session": None,
                "time": now_iso(),
                "size": size,
                "kind": kind,
            }
            version = meta["version"]
            tree = state.write_output(
                self.store, parent, output, entry, meta, f"publish {publish_id}"
            )
            lines = [
                (trailers.OFFSET, str(offset)),
                (trailers.EVENT, trailers.PUBLISH),
                (trailers.OUTPUT, output),
                (trailers.VERSION, str(version)),
                (trailers.PUBLISH_ID, publish_id),
            ]
            self._version = version
            return tree, format_message(f"publish {output} v{version}", lines), []

        try:
            commit, offset = self.log.append(build)
        except _Unchanged as exc:
            if exc.prev is None:  # skipped before the output had a value
                return Published(output, 0, -1, "", False, str(typ))
            return Published(
                output,
                exc.prev.version,
                int(exc.prev.meta.get("offset", 0)),
                "",
                False,
                exc.prev.type,
            )
        return Published(
            output, self._version, offset, commit.decode(), True, str(typ), notes=notes
        )

    def _publish_in_session(
        self, session_id: str, output: str, source: ValueSource, type_text: str | None
    ) -> Published:
        """Inside a running node (`$GDAG_SESSION`): the value goes on the session branch."""
        from gdag.job import check_publishable
        from gdag.session import Session

        session = Session.open(self.log, session_id)
        base_tree = self.store.read_commit(session.spec.base).tree
        dag = read_dag(self.store, base_tree) or Dag.empty()
        check_publishable(session.spec.node, dag.nodes[session.spec.node].publishes, output)
        prev = state.read_output(self.store, base_tree, output)
        default = Type("dir") if source.directory is not None else BYTES
        typ = self.resolve_type(output, dag, type_text, prev, default)
        entry, size, kind = self.store_value(output, typ, source, dag.large_threshold)
        session.publish(output, entry, str(typ), size, kind)
        return Published(output, 0, -1, "", True, str(typ), session_id)

    def resolve_type(
        self,
        output: str,
        dag: Dag,
        type_text: str | None,
        prev: state.OutputState | None,
        default: Type = BYTES,
    ) -> Type:
        """The output's type: declared, else the one it already has, else --type or default."""
        declared = dag.output_type(output)
        requested = parse_type(type_text) if type_text else None
        if declared is not None and requested is not None and str(declared) != str(requested):
            raise ValueRefusedError(
                f"output {output!r} is declared as {declared} in the definition, not {requested}",
                hint="drop --type, or change the declaration in gdag.toml",
            )
        if declared is not None:
            return declared
        if prev is not None and requested is not None and prev.type != str(requested):
            self._refuse_retype(output, prev.type, str(requested))
        if prev is not None:
            return parse_type(prev.type)
        return requested or default

    @staticmethod
    def _refuse_retype(output: str, old: str, new: str) -> None:
        raise ValueRefusedError(
            f"output {output!r} has type {old}; its type cannot change to {new}",
            hint=f"publish a {old} value, or use a new output name",
        )

    def store_value(
        self, output: str, typ: Type, source: ValueSource, large: int = 0
    ) -> tuple[Entry, int, str]:
        """The value stored: (entry, size, kind), as a git LFS object from `large` bytes."""
        from gdag import values

        if typ.kind == "dir" or source.directory is not None:
            if source.directory is None:
                raise ValueRefusedError(
                    f"output {output!r} has type dir", hint="publish it with --dir PATH"
                )
            if typ.kind != "dir" and typ.kind != "bytes":
                raise ValueRefusedError(f"output {output!r} has type {typ}, not dir")
            entry, count = values.tree_from_dir(self.store, source.directory)
            return entry, count, values.TREE
        if typ.kind == "bytes":
            if source.data is not None:
                return values.blob_from_bytes(self.store, source.data, large)
            if source.file is not None:
                return values.blob_from_file(self.store, source.file, large)
            assert source.stream is not None
            return values.blob_from_stream(self.store, source.stream, large)
        data = self._read_all(source)
        encoded = encode_value(decode_text_value(data, typ, output))
        return values.blob_from_bytes(self.store, encoded, large)

    @staticmethod
    def _read_all(source: ValueSource) -> bytes:
        if source.data is not None:
            return source.data
        if source.file is not None:
            try:
                return source.file.read_bytes()
            except OSError as exc:
                raise GdagError(f"{source.file}: {exc.strerror}") from None
        assert source.stream is not None
        return source.stream.read()

    # -- lookup ----------------------------------------------------------------

    def root_at(self, at: str | None) -> tuple[bytes, bytes]:
        """(commit, tree) at an offset argument, or at the tip."""
        commit = self.log.resolve_offset(at) if at is not None else self.log.require_tip()
        return commit, self.store.read_commit(commit).tree

    def lookup(self, output: str, at: str | None = None) -> state.OutputState:
        check_output_name(output)
        _, root = self.root_at(at)
        found = state.read_output(self.store, root, output)
        if found is None:
            where = f" at offset {at}" if at is not None else ""
            raise UnknownError(
                f"output {output!r} has no value{where}",
                hint="`gdag lookup '**'` lists the outputs that have one",
            )
        return found

    def large_object(self, st: state.OutputState) -> tuple[Any, Path] | None:
        """A value kept as a git LFS object: its pointer and the path of its object here
        (fetched on demand, as `gdag lookup` does); None for a value kept in git."""
        if st.meta.get("kind") != "lfs":
            return None
        from gdag.lfsclient import resolve

        dag = read_dag(self.store, self.store.read_commit(self.log.require_tip()).tree)
        return resolve(
            self.store, st.value, dag.values_remote if dag else None, (st.name, st.version)
        )

    def value_bytes(self, st: state.OutputState) -> bytes:
        """A blob value's stored bytes, wherever it is kept (checked when it is LFS)."""
        large = self.large_object(st)
        if large is None:
            return self.store.read_blob(st.value.sha)
        from gdag import lfs

        pointer, path = large
        return lfs.read_verified(path, pointer)

    def value_chunks(self, st: state.OutputState) -> Iterator[bytes]:
        """A blob value's stored bytes a chunk at a time, wherever it is kept; an LFS
        object is checked as it is read (a damaged one raises at its end)."""
        large = self.large_object(st)
        if large is None:
            size = st.meta.get("size")
            yield from self.store.blob_chunks(st.value.sha, size if isinstance(size, int) else None)
            return
        from gdag import lfs

        pointer, path = large
        yield from lfs.verified_chunks(path, pointer)

    def list_matching(self, pattern: str, at: str | None = None) -> list[state.OutputState]:
        check_output_name(pattern, allow_pattern=True, what="pattern")
        _, root = self.root_at(at)
        found = []
        for name in state.list_outputs(self.store, root, pattern):
            out = state.read_output(self.store, root, name)
            if out is not None:
                found.append(out)
        return found


def log_name(explicit: str | None, store: Store | None = None) -> str:
    """The log in force: --log, else $GDAG_LOG, else the branch's if followed, else main.

    `@branch` (as --log or $GDAG_LOG), or `[log] follow = "branch"` in gdag.toml,
    selects the log of the current git branch.
    """
    name = explicit if explicit is not None else (os.environ.get("GDAG_LOG") or None)
    if store is not None and (name == "@branch" or (name is None and _follows(store))):
        from gdag.branch import following_log

        return following_log(store)
    if name == "@branch":
        raise GdagError("--log @branch needs a repository")
    return check_simple_name("main" if name is None else name, "log")


def _follows(store: Store) -> bool:
    from gdag.branch import follows_branch

    return follows_branch(store)

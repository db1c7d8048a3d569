"""The git side of running a node: a job prepared from a session, its result recorded back.

`prepare_job` reads the node's inputs from the state the session sees and
packs them into a self-contained `Job`; an executor runs it; `Recorder` checks
and encodes every output by its type and records it on the session branch.
`run_session` ties the three together for the engine.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gdag import state
from gdag.dirs import make_dirs
from gdag.errors import GdagError
from gdag.job import MODE_DIR, PYTHON, Emitted, Input, Job, TreeFile, Value, check_publishable
from gdag.names import is_pattern
from gdag.repo import Entry, Store
from gdag.session import Outcome, Session
from gdag.types import BYTES, Type, canonical_json, check_value, decode_text_value, parse_type

if TYPE_CHECKING:
    from gdag.dag import Dag, Node
    from gdag.executors import Executor


@dataclass
class InputValue:
    """One output a node receives: its name, version, type and stored entry."""

    name: str
    version: int
    type: Type
    entry: Entry
    large: bool = False  # a git LFS object: `entry` holds its pointer
    size: int | None = None  # bytes, as its metadata says


def gather_inputs(store: Store, root: bytes, node: Node) -> dict[str, Any]:
    """arg -> InputValue | {name: InputValue} for patterns | None when absent."""
    found: dict[str, Any] = {}
    for arg, target in node.inputs.items():
        if is_pattern(target):
            members = {}
            for name in filter(node.sees, state.list_outputs(store, root, target)):
                members[name] = _input(store, root, name)
            found[arg] = members or None
        else:
            found[arg] = _input(store, root, target)
    return found


def _input(store: Store, root: bytes, name: str) -> InputValue | None:
    out = state.read_output(store, root, name)
    if out is None:
        return None
    large = out.meta.get("kind") == "lfs"
    size = out.meta.get("size")
    return InputValue(
        name,
        out.version,
        parse_type(out.type),
        out.value,
        large,
        size if isinstance(size, int) else None,
    )


def members(value: Any) -> list[InputValue]:
    """The InputValues of one gathered input: none, one, or a pattern's members."""
    if value is None:
        return []
    if isinstance(value, dict):
        return list(value.values())
    return [value]


# -- preparing a job -------------------------------------------------------------


def prepare_job(
    store: Store, session: Session, node: Node, log_name: str, ship: bool = False
) -> Job:
    """The session's node run as a self-contained job: its inputs' bytes as of the state
    the session sees, its command, environment and interface; with `ship`, also the
    node's source files, for a machine without the work tree."""
    root = store.read_commit(session.spec.state_at).tree
    inputs: dict[str, Input] = {}
    spill = None if ship else spill_dir(store, session.id)

    def job_value(iv: InputValue) -> Value:
        # Where missing large values come from: `[values] remote` of the state's definition.
        dag = state.read_dag(store, root) if iv.large else None
        return _job_value(store, iv, ship, dag.values_remote if dag else None, spill)

    for arg, value in gather_inputs(store, root, node).items():
        if value is None:
            inputs[arg] = None
        elif isinstance(value, dict):
            inputs[arg] = {name: job_value(iv) for name, iv in value.items()}
        else:
            inputs[arg] = job_value(value)
    # The node's own files go with the job to a machine without the work tree (`ship`),
    # and always from a bare repository, which has none.
    carried = _files_root(store) if ship or store.workdir is None else None
    return Job(
        id=session.id,
        node=node.name,
        kind=node.kind,
        command=node.command,
        code=node.code,
        inputs=inputs,
        targets=dict(node.inputs),
        publishes=tuple(node.publishes),
        # A bare repository's node runs in a temporary directory: GIT_DIR lets its
        # `gdag publish` and git commands find the repository (absolute, unlike a server
        # hook's GIT_DIR=.).
        env={
            **node.env,
            **secret_values(node),  # in the job (a cluster's worker needs them), never in git
            **({} if store.workdir else {"GIT_DIR": str(store.user_gitdir)}),
        },
        timeout=node.timeout,
        cwd=node.cwd,
        workdir=None if store.workdir is None else str(store.workdir),
        log=log_name,
        files=tuple(node_files(carried, node)) if carried is not None else (),
        source=_source(carried, node) if ship and node.kind == PYTHON else "",
        bin_dir=None if ship or node.kind == PYTHON else command_dir(store),
    )


_COMMAND_DIRS: dict[Path, str] = {}


def command_dir(store: Store) -> str | None:
    """`.git/gdag/bin/<id>`: the directory of the `gdag` command shell nodes run by this
    Python find on their PATH, one per interpreter (its path's hash), made once and
    kept, instead of one in every job's directory (two files more to create and remove
    per job). None when it cannot be made: each job then makes its own."""
    import hashlib

    from gdag.shellnode import write_command

    name = hashlib.sha1(sys.executable.encode()).hexdigest()[:16]
    where = store.gdag_dir / "bin" / name
    found = _COMMAND_DIRS.get(where)
    if found is not None:
        return found or None
    try:
        if os.pathsep in str(where):
            raise OSError("a PATH entry cannot hold it")  # `:` in the repository's path
        if not (where / "gdag").is_file():
            make_dirs(where)
            tmp = where / f"gdag.tmp-{os.getpid()}-{threading.get_ident()}"
            tmp.unlink(missing_ok=True)
            write_command(tmp)
            os.replace(tmp, where / "gdag")  # whole, for a job of another process
        if not os.access(where / "gdag", os.X_OK):
            raise OSError("not executable there")  # a file system mounted noexec
    except (OSError, GdagError):
        _COMMAND_DIRS[where] = ""
        return None
    _COMMAND_DIRS[where] = str(where)
    return str(where)


def _files_root(store: Store) -> Path | None:
    """Where a node's files are: the work tree, or in a bare repository the tree of its
    definition's commit (unpacked under the gdag dir); None without either."""
    if store.workdir is not None:
        return store.workdir
    from gdag.definition import read_stored_source, with_stored_files

    src = with_stored_files(store, read_stored_source(store))
    return src.path.parent if src.path is not None else None


def _source(root: Path | None, node: Node) -> str:
    """The function source hash the runner must find (see `Job.source`)."""
    from gdag.usercode import function_identity

    return function_identity(node.command, root)[0]


def node_files(root: Path, node: Node) -> list[TreeFile]:
    """The files a node needs beside its inputs: those its `sources` match and, for a
    Python node, its module with the `__init__.py` of every package above it. Parents
    first, as a directory value's files."""
    from gdag.definition import expand_sources

    rels: set[str] = set()
    for pattern in node.sources:
        rels.update(expand_sources(pattern, root))
    if node.kind == PYTHON:
        parts = node.command.partition(":")[0].split(".")
        for i in range(1, len(parts)):
            rels.add("/".join([*parts[:i], "__init__.py"]))
        rels.add("/".join(parts) + ".py")
        rels.add("/".join([*parts, "__init__.py"]))
    files: list[TreeFile] = []
    dirs: set[str] = set()
    for rel in sorted(r for r in rels if (root / r).is_file()):
        parent = rel.rpartition("/")[0]
        chain = []
        while parent and parent not in dirs:
            chain.append(parent)
            dirs.add(parent)
            parent = parent.rpartition("/")[0]
        files += [TreeFile(d.encode(), MODE_DIR) for d in reversed(chain)]
        path = root / rel
        mode = 0o100755 if os.access(path, os.X_OK) else 0o100644
        files.append(TreeFile(rel.encode(), mode, path.read_bytes()))
    return files


# A git blob input larger than this goes to a local job as a file written a chunk at a
# time (`spill_dir`), not as bytes in memory: a 100 MiB value took 330 MB to run on.
SPILL_AT = 4 << 20
SPILL = "inputs"  # .git/gdag/inputs/<session>/: spilled inputs, removed after the job


def spill_dir(store: Store, session_id: str) -> Path:
    return store.gdag_dir / SPILL / session_id


def _spill(store: Store, iv: InputValue, spill: Path) -> Value:
    """Stream a git blob input into a file under `spill`; the Value names it and its
    SHA-256, which the job checks as it copies it."""
    import hashlib
    import tempfile

    make_dirs(spill)
    fd, name = tempfile.mkstemp(dir=spill)
    hasher = hashlib.sha256()
    with os.fdopen(fd, "wb") as out:
        for chunk in store.blob_chunks(iv.entry.sha, iv.size):
            hasher.update(chunk)
            out.write(chunk)
    return Value(iv.name, iv.version, str(iv.type), file=name, sha256=hasher.hexdigest())


def _job_value(
    store: Store, iv: InputValue, ship: bool, values_remote: str | None, spill: Path | None = None
) -> Value:
    if iv.large:
        # Fetched on demand; handed over as the object's path, its SHA-256 checked as the
        # job reads it (inline only for a job that leaves this machine).
        from gdag import lfs
        from gdag.lfsclient import resolve

        pointer, path = resolve(store, iv.entry, values_remote, (iv.name, iv.version))
        if ship:
            data = lfs.read_verified(path, pointer)
            return Value(iv.name, iv.version, str(iv.type), data=data)
        return Value(iv.name, iv.version, str(iv.type), file=str(path), sha256=pointer.oid)
    if iv.entry.is_tree:
        return Value(iv.name, iv.version, str(iv.type), tree=tuple(tree_files(store, iv.entry.sha)))
    if spill is not None and iv.size is not None and iv.size > SPILL_AT:
        return _spill(store, iv, spill)
    return Value(iv.name, iv.version, str(iv.type), data=store.read_blob(iv.entry.sha))


def tree_files(store: Store, tree: bytes) -> list[TreeFile]:
    """A directory value's entries, parents before their contents."""
    from gdag.values import iter_tree

    files = []
    for rel, entry in iter_tree(store, tree):
        if entry.is_tree:
            files.append(TreeFile(rel, MODE_DIR))
        else:
            files.append(TreeFile(rel, entry.mode, store.read_blob(entry.sha)))
    return files


# -- recording a result ----------------------------------------------------------


class Recorder:
    """Checks and encodes a job's outputs by their types, onto the session branch."""

    def __init__(self, store: Store, session: Session, node: Node, dag: Dag) -> None:
        self.store = store
        self.session = session
        self.node = node
        self.dag = dag

    def type_of(self, name: str) -> Type:
        """The output's declared type, else the type it has in the log, else bytes."""
        declared = self.dag.output_type(name)
        if declared is not None:
            return declared
        root = self.store.read_commit(self.session.spec.base).tree
        prev = state.read_output(self.store, root, name)
        return parse_type(prev.type) if prev else BYTES

    def emit(self, name: str, value: Emitted) -> None:
        """Record a value a Python node returned or published (`ctx.publish`)."""
        check_publishable(self.node.name, self.node.publishes, name)
        typ = self.type_of(name)
        if typ.kind == "dir":
            from gdag.values import tree_from_dir

            path = Path(os.fsdecode(value.data))
            entry, size = tree_from_dir(self.store, path)
            self.session.publish(name, entry, str(typ), size)
            return
        if typ.kind == "bytes":
            data = (
                value.data
                if value.kind != "path"
                else canonical_json(Path(os.fsdecode(value.data)))
            )
        else:
            data = canonical_json(check_value(_python_value(value, name), typ, name))
        self._publish_blob(name, typ, data)

    def collect(self, out_dir: Path) -> None:
        """Publish every file (or dir-typed directory) a shell node left under $GDAG_OUT,
        staged: they are committed with the session's @done."""
        from gdag import values

        for name, path in sorted(_out_files(out_dir, self._is_dir_output)):
            check_publishable(self.node.name, self.node.publishes, name)
            typ = self.type_of(name)
            if path.is_dir():
                entry, size = values.tree_from_dir(self.store, path)
                self.session.publish(name, entry, str(typ), size, staged=True)
            elif typ.kind == "bytes":  # streamed: a file may be larger than memory
                entry, size, kind = values.blob_from_file(self.store, path, self.large)
                self.session.publish(name, entry, str(typ), size, kind, staged=True)
            elif typ.kind == "dir":
                raise GdagError(f"output {name!r} has type dir: write a directory there")
            else:
                encoded = canonical_json(decode_text_value(path.read_bytes(), typ, name))
                self._publish_blob(name, typ, encoded, staged=True)

    @property
    def large(self) -> int:
        return self.dag.large_threshold

    def _is_dir_output(self, name: str) -> bool:
        return self.type_of(name).kind == "dir"

    def _publish_blob(self, name: str, typ: Type, data: bytes, staged: bool = False) -> None:
        from gdag.values import blob_from_bytes

        entry, size, kind = blob_from_bytes(self.store, data, self.large)
        self.session.publish(name, entry, str(typ), size, kind, staged)


def _python_value(value: Emitted, name: str) -> Any:
    """The Python value behind an `Emitted`, for checking against a typed output."""
    import json

    if value.kind == "json":
        return json.loads(value.data)
    if value.kind == "str":
        return value.data.decode("utf-8")
    if value.kind == "path":
        return os.fsdecode(value.data)
    # bytes are no JSON value: refused as they always were
    return canonical_json(value.data)


def _out_files(out_dir: Path, is_dir_output: Any) -> list[tuple[str, Path]]:
    found: list[tuple[str, Path]] = []

    def walk(d: Path, prefix: str) -> None:
        for child in sorted(d.iterdir()):
            name = f"{prefix}{child.name}"
            if child.is_symlink():
                raise GdagError(f"$GDAG_OUT/{name} is a symlink; write a file there")
            if child.is_dir():
                if is_dir_output(name):
                    found.append((name, child))
                else:
                    walk(child, name + "/")
            elif child.is_file():
                found.append((name, child))

    walk(out_dir, "")
    return found


# -- the whole run -----------------------------------------------------------------


def run_session(
    executor: Executor,
    store: Store,
    session: Session,
    node: Node,
    dag: Dag,
    log_name: str,
    attempt: int = 1,
) -> Outcome:
    """Run the session's node on `executor` and record its outputs on the session branch."""
    recorder = Recorder(store, session, node, dag)
    try:
        job = prepare_job(
            store, session, node, log_name, ship=getattr(executor, "ships_sources", False)
        )
        if attempt > 1:
            from dataclasses import replace

            job = replace(job, attempt=attempt)
    except GdagError as exc:  # e.g. an input that cannot be read
        _unspill(store, session.id)
        return Outcome("failed", None, f"gdag: {exc.message}\n".encode(), error=exc.message)
    executor.submit(job, recorder.emit)
    pointer = _point_at_log(executor, store, log_name, job.id)
    try:
        return record(executor, job.id, recorder)
    finally:
        if pointer is not None:
            pointer.unlink(missing_ok=True)
        executor.forget(job.id)
        _unspill(store, session.id)


def _unspill(store: Store, session_id: str) -> None:
    import shutil

    shutil.rmtree(spill_dir(store, session_id), ignore_errors=True)


RUNNING_LOGS = "running"  # .git/gdag/running/<log>/<session>: where a running job writes


def running_log_pointer(store: Store, log_name: str, session_id: str) -> Path:
    return store.gdag_dir / RUNNING_LOGS / log_name / session_id


def sweep_log_pointers(store: Store, log_name: str, sessions: set[str]) -> None:
    """Remove the pointers a killed run left: those of sessions no longer in flight."""
    try:
        names = os.listdir(store.gdag_dir / RUNNING_LOGS / log_name)
    except OSError:
        return
    for name in set(names) - sessions:
        (store.gdag_dir / RUNNING_LOGS / log_name / name).unlink(missing_ok=True)


def _point_at_log(executor: Executor, store: Store, log_name: str, job_id: str) -> Path | None:
    """Record where a running job's output is written, when the executor says (a local
    job's file), so `gdag serve` can show it as it grows; None otherwise."""
    log_file = getattr(executor, "log_file", None)
    path = log_file(job_id) if log_file is not None else None
    if path is None:
        return None
    pointer = running_log_pointer(store, log_name, job_id)
    try:
        try:
            pointer.write_text(str(path))
        except FileNotFoundError:  # the first job of this log (or swept since)
            make_dirs(pointer.parent)
            pointer.write_text(str(path))
    except OSError:
        return None  # only a view depends on it
    return pointer


def record(executor: Executor, job_id: str, recorder: Recorder) -> Outcome:
    """Wait for a job's result and record its files; the session's outcome (its log and
    error with the node's secrets redacted: they are committed to the log)."""
    result = executor.result(job_id)
    outcome = Outcome(result.status, result.exit_code, result.log, result.duration, result.error)
    if result.status == "ok" and result.out_dir is not None:
        try:
            recorder.collect(Path(result.out_dir))
        except GdagError as exc:  # its message may quote the value (a secret, say)
            outcome.status, outcome.error = "failed", exc.message
            outcome.log += f"gdag: {exc.message}\n".encode()
    values = secret_values(recorder.node)
    if values:  # last: whatever the node or gdag wrote about it
        outcome.log = redact(outcome.log, values)
        if outcome.error is not None:
            outcome.error = redact(outcome.error.encode(), values).decode()
    return outcome


# -- secrets ------------------------------------------------------------------------


def secret_values(node: Node) -> dict[str, str]:
    """The node's secrets from gdag's environment (set and not empty)."""
    return {name: os.environ[name] for name in node.secrets if os.environ.get(name)}


def missing_secrets(node: Node) -> list[str]:
    return [name for name in node.secrets if not os.environ.get(name)]


def redact(text: bytes, secrets: dict[str, str]) -> bytes:
    """`text` with every secret's value (and each line of a multi-line one, of 4 bytes
    or more) replaced by `<secret NAME>`, longest first."""
    found: list[tuple[bytes, str]] = []
    for name, value in secrets.items():
        data = value.encode()
        found.append((data, name))
        if b"\n" in data.strip():
            found += [(line, name) for line in data.splitlines() if len(line.strip()) >= 4]
    for data, name in sorted(found, key=lambda f: -len(f[0])):
        if data:
            text = text.replace(data, f"<secret {name}>".encode())
    return text

"""A node run as a self-contained job: what it runs, its input bytes, what it gives back.

A `Job` holds everything a node run needs and nothing of git: the coordinating
process prepares it from a session (`gdag/execute.py`), an executor runs it in
a temporary directory (`gdag/executors/`), and the coordinator records the
`JobResult` into the session. Jobs and results are plain frozen data, so they
can cross a process or a network boundary.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from gdag.errors import GdagError
from gdag.names import check_output_name, is_pattern, matches

SHELL = "shell"
PYTHON = "python"
MODE_DIR = 0o040000
MODE_LINK = 0o120000
MODE_EXEC = 0o100755


@dataclass(frozen=True)
class TreeFile:
    """One entry of a directory value: its path below the value, git mode and bytes."""

    path: bytes
    mode: int
    data: bytes = b""


@dataclass(frozen=True)
class Value:
    """One input value of a job: the output it comes from, its version, type and bytes
    (`data` for a blob, `tree` for a directory value)."""

    name: str
    version: int
    type: str
    data: bytes | None = None
    tree: tuple[TreeFile, ...] | None = None
    # A large value: the path of its bytes on this machine, read a chunk at a time and
    # checked against their SHA-256 (hex).
    file: str | None = None
    sha256: str | None = None

    def read(self) -> bytes:
        """The value's bytes (a large one read whole and checked)."""
        if self.file is None:
            return self.data or b""
        import io

        buf = io.BytesIO()
        self.copy_to(buf)
        return buf.getvalue()

    def copy_to(self, out: IO[bytes]) -> None:
        """Write the value's bytes to `out`, a large one a chunk at a time."""
        if self.file is None:
            out.write(self.data or b"")
            return
        import hashlib

        hasher = hashlib.sha256()
        with open(self.file, "rb") as f:
            while chunk := f.read(1 << 20):
                hasher.update(chunk)
                out.write(chunk)
        if self.sha256 is not None and hasher.hexdigest() != self.sha256:
            raise GdagError(f"input {self.name!r} is damaged: its SHA-256 differs from its id")


# An input argument's value: absent, one value, or a pattern's members by name.
Input = Value | Mapping[str, Value] | None


@dataclass(frozen=True)
class Job:
    """One node run, self-contained. `id` is the session's id."""

    id: str
    node: str
    kind: str  # SHELL | PYTHON
    command: str  # the shell command, or module:function
    code: str  # the node's code hash: a runner whose code differs must refuse the job
    inputs: Mapping[str, Input]
    targets: Mapping[str, str]  # argument -> the output name or pattern it subscribes to
    publishes: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None
    cwd: str = "."  # relative to `workdir`
    workdir: str | None = None  # the work tree where the job runs; None on a machine without one
    log: str = "main"
    # The node's own files (its `sources`, a Python node's module), shipped to a machine
    # without a checkout; written to a directory that becomes the job's work tree there.
    files: tuple[TreeFile, ...] = ()
    in_repository: bool = True  # `workdir` is the repository's work tree ($GDAG_REPO)
    attempt: int = 1  # the session's attempt (a node with `retries` may have several)
    # A Python node's function source hash as compiled on the coordinator; a runner whose
    # function differs refuses the job ("": not checked, the coordinator runs it itself).
    source: str = ""
    # A directory holding the `gdag` command a shell node finds first on its PATH, made
    # once by the coordinator (`execute.command_dir`); None: the job makes one in its
    # temporary directory (a machine other than the coordinator's).
    bin_dir: str | None = None


@dataclass(frozen=True)
class Emitted:
    """A value a Python node returned or published, tagged by its Python kind, so the
    coordinator can encode it by the output's type: `bytes`, `str` (UTF-8), `json`
    (canonical JSON of anything else, pydantic models dumped first) or `path` (a
    directory for a `dir` output)."""

    kind: str
    data: bytes


Emit = Callable[[str, Emitted], None]


@dataclass
class JobResult:
    """What a job gave back. `out_dir` is a directory on the coordinator's machine with
    the files a shell node wrote under `$GDAG_OUT`; Python nodes' values went to `emit`."""

    status: str  # "ok" | "failed"
    exit_code: int | None = None
    log: bytes = b""
    error: str | None = None
    duration: float = 0.0
    out_dir: str | None = None


def failed(message: str, log: bytes = b"", exit_code: int | None = None) -> JobResult:
    """A failed result whose log ends with gdag's own line about it."""
    return JobResult("failed", exit_code, log + f"gdag: {message}\n".encode(), error=message)


def check_publishable(node: str, publishes: tuple[str, ...], name: str) -> None:
    """Refuse an output a node did not declare in its publishes."""
    check_output_name(name)
    if not any(p == name or (is_pattern(p) and matches(p, name)) for p in publishes):
        raise GdagError(
            f"node {node!r} may not publish {name!r}: not in its publishes "
            f"({', '.join(publishes) or 'none'})",
            hint=f"add {name!r} (or a pattern) to publishes of [nodes.{node}] in gdag.toml",
        )


def tag(value: Any) -> Emitted:
    """A Python value as an `Emitted`."""
    from gdag.types import canonical_json

    if isinstance(value, bytes | bytearray):
        return Emitted("bytes", bytes(value))
    if isinstance(value, str):
        return Emitted("str", value.encode("utf-8"))
    if isinstance(value, os.PathLike):
        return Emitted("path", os.fsencode(value))
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    return Emitted("json", canonical_json(value))


def literal_head(pattern: str) -> str:
    """The segments of a pattern before its first wildcard (`a/b` of `a/b/*/c`)."""
    head = []
    for seg in pattern.split("/"):
        if seg in ("*", "**"):
            break
        head.append(seg)
    return "/".join(head)


def members(value: Input) -> list[Value]:
    """The values of one input: none, one, or a pattern's members."""
    if value is None:
        return []
    if isinstance(value, Value):
        return [value]
    return list(value.values())


def write_value(value: Value, path: Path, display: bool = False) -> None:
    """Write an input value at `path`: a file, or a directory for a directory value.
    `display`: the value as it was published (what `gdag lookup` prints and a shell
    node reads: a `str` as its text, other typed values as JSON and a newline)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if value.tree is not None:
        write_tree(value.tree, path)
        return
    if value.file is not None and (not display or value.type in ("bytes", "dir")):
        with open(path, "wb") as out:  # a large raw value: streamed, never whole
            value.copy_to(out)
        return
    data = value.read()
    if display:
        from gdag.types import parse_type, stored_to_display

        data = stored_to_display(data, parse_type(value.type))
    path.write_bytes(data)


def write_tree(files: tuple[TreeFile, ...], target: Path) -> None:
    """Write a directory value under `target` (absent or empty). Entries come parents
    first; none may name `..`, `.git` or an absolute path, and no file is followed
    through a symlink (O_NOFOLLOW, O_EXCL), so nothing is written outside `target`."""
    target.mkdir(parents=True, exist_ok=True)
    base = os.fsencode(target)
    for f in files:
        parts = f.path.split(b"/")
        if f.path.startswith(b"/") or any(
            p in (b"", b".", b"..") or p.lower() == b".git" for p in parts
        ):
            raise GdagError(f"directory value holds an unsafe name {f.path!r}")
        full = os.path.join(base, f.path)
        if f.mode == MODE_DIR:
            os.mkdir(full)
        elif f.mode == MODE_LINK:
            os.symlink(f.data, full)
        else:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
            fd = os.open(full, flags, 0o755 if f.mode == MODE_EXEC else 0o644)
            with os.fdopen(fd, "wb") as out:
                out.write(f.data)


def away_from_the_work_tree(job: Job, tmp: Path) -> Job:
    """The job as it runs without the work tree (on a cluster's worker, or for a bare
    repository): its own files written under `tmp/src`, which becomes its work tree, or
    none at all (cwd `.` of its temporary directory). Either way not a repository."""
    if not job.files:
        return replace(job, workdir=None, cwd=".", in_repository=False)
    write_tree(job.files, tmp / "src")
    return replace(job, workdir=str(tmp / "src"), in_repository=False)

"""Bodies of the hot commands (publish, lookup), shared by the typer app and the fast path.

Nothing here imports typer, rich or networkx: `gdag publish` and `gdag lookup`
run in shell loops and git hooks, so their start-up is kept to the standard
library and dulwich.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from gdag.errors import GdagError, UsageError
from gdag.names import is_pattern
from gdag.workspace import ValueSource, Workspace


def out(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def print_json(obj: Any) -> None:
    out(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False).encode() + b"\n")


def value_source(value: str | None, file: str | None, directory: str | None) -> ValueSource:
    given = [x for x in (value, file, directory) if x is not None]
    if len(given) != 1:
        raise UsageError(
            "give exactly one value"
            + (": " if given else "")
            + ", ".join(
                n for n, x in (("VALUE", value), ("--file", file), ("--dir", directory)) if x
            ),
            hint="gdag publish OUTPUT VALUE | --file PATH | --dir PATH | - (stdin)",
        )
    if value == "-" or file == "-":
        return ValueSource(stream=sys.stdin.buffer)
    if value is not None:
        import os

        return ValueSource(data=os.fsencode(value))
    if file is not None:
        return ValueSource(file=Path(file))
    return ValueSource(directory=Path(directory or "."))


def publish(
    output: str,
    value: str | None = None,
    *,
    file: str | None = None,
    directory: str | None = None,
    type_: str | None = None,
    if_changed: bool = False,
    json_out: bool = False,
    no_run: bool = False,
    detach: bool = False,
    path: str | None = None,
    log: str | None = None,
) -> int:
    source = value_source(value, file, directory)
    ws = Workspace.open(path, log)
    result = ws.publish(output, source, type_, if_changed)
    if json_out:
        print_json(result.to_json())
    elif result.session:
        out(f"{result.output} (in session {result.session})\n".encode())
    else:
        state = "" if result.changed else " (unchanged)"
        out(f"{result.output} v{result.version} @ {result.offset}{state}\n".encode())
    if no_run or result.session or not result.changed or not has_subscribers(ws, output):
        return 0
    if detach:
        run_detached(ws, [output])
        return 0
    return run_nodes(ws, [output], jobs=1, quiet=json_out)


def has_subscribers(ws: Workspace, output: str) -> bool:
    """Whether any node subscribes to `output` (checked without the graph library)."""
    from gdag.dag import read_dag

    dag = read_dag(ws.store, ws.store.read_commit(ws.log.require_tip()).tree)
    return dag is not None and bool(dag.subscribers(output))


def run_nodes(
    ws: Workspace,
    targets: list[str] | None,
    *,
    jobs: int,
    quiet: bool = False,
    dry_run: bool = False,
    keep_going: bool = True,
    retry_failed: bool = False,
    json_out: bool = False,
    speculative: bool = False,
    remote: str | None = None,
) -> int:
    """Run stale nodes until quiescent, with progress on stderr; 1 if a node failed.

    With `json_out`, stdout gets one JSON object per line for every event, then a
    `summary` line.
    """
    from gdag.progress import JsonLines, RunView
    from gdag.runner import Engine

    view = JsonLines() if json_out else RunView(quiet=quiet)
    shared = None
    if remote is not None:
        from gdag.remote import Remote, sync_log

        shared = Remote(ws.store, remote)
        sync_log(shared, ws.log)
    try:
        summary = Engine(ws, jobs, view, speculative=speculative, remote=shared).run(
            targets, dry_run=dry_run, keep_going=keep_going, retry_failed=retry_failed
        )
    finally:
        view.stop()
    if not dry_run:
        view.close(summary)
    return 0 if summary.ok else 1


def run(
    targets: list[str] | None = None,
    *,
    jobs: int | None = None,
    dry_run: bool = False,
    keep_going: bool = True,
    retry_failed: bool = False,
    speculative: bool = False,
    remote: str | None = None,
    quiet: bool = False,
    json_out: bool = False,
    path: str | None = None,
    log: str | None = None,
) -> int:
    import os

    ws = Workspace.open(path, log)
    return run_nodes(
        ws,
        targets or None,
        jobs=jobs or os.cpu_count() or 1,
        quiet=quiet,
        dry_run=dry_run,
        keep_going=keep_going,
        retry_failed=retry_failed,
        json_out=json_out,
        speculative=speculative,
        remote=remote,
    )


def run_detached(ws: Workspace, targets: list[str]) -> None:
    """Leave the run to a background process whose output goes under .git/gdag/logs/."""
    import os
    import subprocess
    import time

    logs = ws.store.gdag_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"run-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    root = str(ws.store.workdir or ws.store.gitdir)
    with open(log_path, "ab") as log_file:
        subprocess.Popen(
            [sys.executable, "-m", "gdag", "run", *targets, "-C", root, "--log", ws.log.name],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            start_new_session=True,
            close_fds=True,
        )


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[IO[bytes]]:
    """Write a regular file whole or not at all: into a temporary file beside it,
    renamed over it at the end (a failed lookup leaves the old file as it was). Other
    files (a FIFO, /dev/stdout) are written in place."""
    try:
        if path.exists() and not path.is_file():
            with open(path, "wb") as f:
                yield f
            return
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise GdagError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def lookup(
    output: str,
    *,
    at: str | None = None,
    meta: bool = False,
    json_out: bool = False,
    out_path: str | None = None,
    path: str | None = None,
    log: str | None = None,
) -> int:
    from gdag import values
    from gdag.types import parse_type, stored_to_display

    ws = Workspace.open(path, log)
    if is_pattern(output):
        found = ws.list_matching(output, at)
        if json_out or meta:
            print_json([{"output": o.name, **o.meta} for o in found])
        else:
            out(b"".join(f"{o.name}\n".encode() for o in found))
        return 0
    st = ws.lookup(output, at)
    store = ws.store
    tree = st.value.sha if st.value.is_tree else None
    typ = parse_type(st.type)
    if tree is None and typ.is_raw and not (meta or json_out):
        # Raw bytes go straight from the object store to the file or stdout, a chunk at a time.
        size = st.meta.get("size")
        size = size if isinstance(size, int) else None
        if out_path is not None:
            with _replacing(Path(out_path)) as f:
                store.stream_blob(st.value.sha, f, size)
        else:
            store.stream_blob(st.value.sha, sys.stdout.buffer, size)
            sys.stdout.buffer.flush()
        return 0
    data = None if tree else store.read_blob(st.value.sha)
    # -o writes the value; --meta and --json say what goes to stdout besides.
    if out_path is not None:
        if tree:
            values.materialise(store, tree, Path(out_path))
        else:
            Path(out_path).write_bytes(stored_to_display(data or b"", typ))
    if meta and not json_out:
        out(b"".join(f"{k}: {_plain(v)}\n".encode() for k, v in sorted(st.meta.items())))
    elif json_out:
        doc: dict[str, Any] = {"output": st.name, "meta": st.meta}
        if tree and not meta:
            doc["files"] = list(values.describe_tree(store, tree))
        elif not meta:
            doc.update(json_value(data or b"", st.type))
        print_json(doc)
    elif out_path is None:
        if tree:
            out(b"".join(f"{line}\n".encode() for line in values.describe_tree(store, tree)))
        else:
            out(stored_to_display(data or b"", typ))
    return 0


def json_value(data: bytes, type_text: str) -> dict[str, Any]:
    """A stored value as JSON: typed values as themselves, bytes as text or base64."""
    if type_text not in ("bytes", "dir"):
        return {"value": json.loads(data)}
    try:
        return {"value": data.decode("utf-8")}
    except UnicodeDecodeError:
        import base64

        return {"value_base64": base64.b64encode(data).decode()}


def _plain(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)

"""`gdag lookup`: an output's value, byte-exact, or the outputs a pattern matches."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from gdag.commands import JSON, LOG, PATH, Argument, Option, Spec
from gdag.errors import GdagError
from gdag.output import out, print_json

SPEC = Spec(
    (
        Argument("output", "An output, or a pattern such as 'thumbs/*'.", complete="output"),
        Option("at", ("--at",), "Read at an offset (N, -N or a commit id).", "text", "OFFSET"),
        Option("meta", ("--meta",), "Show the value's metadata."),
        JSON,
        Option("out_path", ("-o", "--out"), "Write the value to PATH.", "text", "PATH"),
        PATH,
        LOG,
    )
)


def run(
    *,
    output: str,
    at: str | None,
    meta: bool,
    json_out: bool,
    out_path: str | None,
    path: str | None,
    log: str | None,
) -> int:
    from gdag.names import is_pattern
    from gdag.types import parse_type
    from gdag.workspace import Workspace

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
    target = None
    if out_path is not None:
        from gdag.commands import _paths

        check = _paths.writable_dir if tree else _paths.writable_file
        target = check(path, out_path)
    typ = parse_type(st.type)
    if st.meta.get("kind") == "lfs":
        return _lookup_large(ws, st, typ, target, meta, json_out)
    if tree is None and typ.is_raw and not (meta or json_out):
        # Raw bytes go straight from the object store to the file or stdout, a chunk at a time.
        size = st.meta.get("size")
        size = size if isinstance(size, int) else None
        if target is not None:
            with _replacing(target) as f:
                store.stream_blob(st.value.sha, f, size)
        else:
            store.stream_blob(st.value.sha, sys.stdout.buffer, size)
            sys.stdout.buffer.flush()
        return 0
    data = None if tree else store.read_blob(st.value.sha)
    return _write(st, typ, data, tree, target, meta, json_out, store)


def _write(
    st: Any,
    typ: Any,
    data: bytes | None,
    tree: bytes | None,
    target: Path | None,
    meta: bool,
    json_out: bool,
    store: Any,
) -> int:
    """Write a value held in memory (or a tree) to -o, stdout, --meta, --json."""
    from gdag import values
    from gdag.types import stored_to_display

    # -o writes the value; --meta and --json say what goes to stdout besides.
    if target is not None:
        if tree:
            values.materialise(store, tree, target)
        else:
            with _replacing(target) as f:
                f.write(stored_to_display(data or b"", typ))
    if meta and not json_out:
        out(b"".join(f"{k}: {_plain(v)}\n".encode() for k, v in sorted(st.meta.items())))
    elif json_out:
        doc: dict[str, Any] = {"output": st.name, "meta": st.meta}
        if tree and not meta:
            doc["files"] = list(values.describe_tree(store, tree))
        elif not meta:
            doc.update(json_value(data or b"", st.type))
        print_json(doc)
    elif target is None:
        if tree:
            out(b"".join(f"{line}\n".encode() for line in values.describe_tree(store, tree)))
        else:
            out(stored_to_display(data or b"", typ))
    return 0


def _lookup_large(
    ws: Any, st: Any, typ: Any, target: Path | None, meta: bool, json_out: bool
) -> int:
    """A value kept as a git LFS object: fetched on demand (from `[values] remote` of
    the definition in force, else the remote's LFS endpoint), its SHA-256 checked, raw
    bytes streamed (a typed value is decoded whole anyway)."""
    from gdag import lfs

    store = ws.store
    if meta and not json_out and target is None:  # the metadata needs no bytes
        return _write(st, typ, b"", None, None, meta, json_out, store)
    pointer, path = ws.large_object(st)
    if typ.is_raw and not (meta or json_out):
        if target is not None:
            with _replacing(target) as f:
                lfs.copy_verified(path, pointer, f)
        else:
            lfs.copy_verified(path, pointer, sys.stdout.buffer)
            sys.stdout.buffer.flush()
        return 0
    return _write(st, typ, lfs.read_verified(path, pointer), None, target, meta, json_out, store)


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[IO[bytes]]:
    """Write a regular file whole or not at all: into a temporary file beside it,
    renamed over it at the end (a failed lookup leaves the old file as it was). Other
    files (a FIFO, /dev/stdout) are written in place."""
    import tempfile

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

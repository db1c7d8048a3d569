"""Bodies of the hot commands (publish, lookup), shared by the typer app and the fast path.

Nothing here imports typer, rich or networkx: `gdag publish` and `gdag lookup`
run in shell loops and git hooks, so their start-up is kept to the standard
library and dulwich.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from gdag.errors import UsageError
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
            "give exactly one value" + (": " if given else "") + ", ".join(
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
    path: str | None = None,
    log: str | None = None,
) -> int:
    source = value_source(value, file, directory)
    ws = Workspace.open(path, log)
    result = ws.publish(output, source, type_, if_changed)
    if json_out:
        print_json(result.to_json())
    else:
        state = "" if result.changed else " (unchanged)"
        out(f"{result.output} v{result.version} @ {result.offset}{state}\n".encode())
    return 0


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
    if meta and not json_out:
        out(b"".join(f"{k}: {_plain(v)}\n".encode() for k, v in sorted(st.meta.items())))
        return 0
    store = ws.store
    if st.value.is_tree:
        if out_path is not None:
            values.materialise(store, st.value.sha, Path(out_path))
        elif json_out:
            print_json({"output": st.name, "meta": st.meta,
                        "files": list(values.describe_tree(store, st.value.sha))})
        else:
            out(b"".join(f"{line}\n".encode() for line in values.describe_tree(store, st.value.sha)))
        return 0
    data = store.read_blob(st.value.sha)
    if json_out:
        print_json({"output": st.name, "meta": st.meta, **json_value(data, st.type)})
        return 0
    shown = stored_to_display(data, parse_type(st.type))
    if out_path is not None:
        Path(out_path).write_bytes(shown)
    else:
        out(shown)
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

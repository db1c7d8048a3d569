"""The state tree of a log commit: outputs/<name>/{@value,@meta.json,@done}, nodes/, dag.json."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from gdag.names import matches
from gdag.repo import MODE_BLOB, Entry, Store

OUTPUTS = b"outputs"
NODES = b"nodes"
DAG_FILE = b"dag.json"
VALUE = b"@value"
META = b"@meta.json"
DONE = b"@done"


def output_path(name: str) -> list[bytes]:
    return [OUTPUTS, *(seg.encode() for seg in name.split("/"))]


@dataclass
class OutputState:
    """An output's current value entry and its metadata."""

    name: str
    value: Entry
    meta: dict[str, Any]

    @property
    def version(self) -> int:
        return int(self.meta.get("version", 0))

    @property
    def type(self) -> str:
        return str(self.meta.get("type", "bytes"))


def read_json_blob(store: Store, sha: bytes) -> Any:
    return json.loads(store.read_blob(sha))


def read_output(store: Store, root: bytes | None, name: str) -> OutputState | None:
    """The state of output `name` in tree `root`; None if it has no value there."""
    if root is None:
        return None
    entry = store.tree_get(root, output_path(name))
    if entry is None or not entry.is_tree:
        return None
    files = store.tree_entries(entry.sha)
    value, meta = files.get(VALUE), files.get(META)
    if value is None or meta is None:
        return None
    return OutputState(name, value, read_json_blob(store, meta.sha))


def write_output(
    store: Store, root: bytes | None, name: str, value: Entry, meta: dict[str, Any], done: str
) -> bytes:
    """A new root tree with output `name` set to `value`."""
    meta_blob = store.write_blob(json.dumps(meta, sort_keys=True, indent=1).encode() + b"\n")
    done_blob = store.write_blob(done.encode() + b"\n")
    return store.tree_update(
        root,
        output_path(name),
        {VALUE: value, META: Entry(MODE_BLOB, meta_blob), DONE: Entry(MODE_BLOB, done_blob)},
    )


def list_outputs(store: Store, root: bytes | None, pattern: str | None = None) -> Iterator[str]:
    """Names of outputs with a value, sorted, optionally those matching `pattern`."""
    segs = pattern.split("/") if pattern else []
    head: list[str] = []
    for seg in segs:
        if seg in ("*", "**"):
            break
        head.append(seg)
    entry = store.tree_get(root, output_path("/".join(head))[: len(head) + 1]) if root else None
    if entry is None or not entry.is_tree:
        return
    for name in _walk(store, entry.sha, head):
        if pattern is None or matches(pattern, name):
            yield name


def _walk(store: Store, tree: bytes, prefix: list[str]) -> Iterator[str]:
    entries = store.tree_entries(tree)
    if prefix and VALUE in entries and META in entries:
        yield "/".join(prefix)
    for name, entry in sorted(entries.items()):
        if entry.is_tree and not name.startswith(b"@"):
            yield from _walk(store, entry.sha, [*prefix, name.decode()])


def read_dag(store: Store, root: bytes | None) -> dict[str, Any] | None:
    if root is None:
        return None
    entry = store.tree_get(root, [DAG_FILE])
    return read_json_blob(store, entry.sha) if entry is not None else None


_CODES: dict[bytes, dict[str, str]] = {}


def node_codes(store: Store, root: bytes | None) -> dict[str, str]:
    """Each node's code hash in the definition recorded in `root`. Cached by the
    definition's blob id (which names its content): every session's merge checks
    its node's code, and parsing a 1,000-node dag.json each time cost a fifth of
    the run. Read-only."""
    entry = store.tree_get(root, [DAG_FILE]) if root is not None else None
    if entry is None:
        return {}
    codes = _CODES.get(entry.sha)
    if codes is None:
        dag = read_json_blob(store, entry.sha)
        codes = {name: node.get("code") for name, node in dag.get("nodes", {}).items()}
        if len(_CODES) >= 8:
            _CODES.clear()
        _CODES[entry.sha] = codes
    return codes


def write_dag(store: Store, root: bytes | None, dag: dict[str, Any]) -> bytes:
    blob = store.write_blob(json.dumps(dag, sort_keys=True, indent=1).encode() + b"\n")
    return store.tree_update(root, [], {DAG_FILE: Entry(MODE_BLOB, blob)})

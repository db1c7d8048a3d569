"""The state tree of a log commit: outputs' values and metadata, nodes' records, dag.json.

Where each of them lives is `gdag.layout`'s to say: every function here asks it
for the layout of the tree at hand.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from gdag import layout
from gdag.dag import Dag
from gdag.layout import Layout
from gdag.names import matches
from gdag.records import Record
from gdag.repo import MODE_BLOB, Entry, Store


class OutputState(Record):
    """An output's current value entry and its metadata."""

    __slots__ = ("name", "value", "meta")

    def __init__(self, name: str, value: Entry, meta: dict[str, Any]) -> None:
        self.name = name
        self.value = value
        self.meta = meta

    @property
    def version(self) -> int:
        return int(self.meta.get("version", 0))

    @property
    def type(self) -> str:
        return str(self.meta.get("type", "bytes"))


def next_version(prev: OutputState | None, offset: int) -> dict[str, Any]:
    """The version fields of an output's next value, appended at `offset`: versions
    count from 1, and `prev` names the offset of the previous value, so the events of
    one output can be walked back without scanning the log."""
    return {
        "version": prev.version + 1 if prev else 1,
        "offset": offset,
        "prev": prev.meta.get("offset") if prev else None,
    }


def read_json_blob(store: Store, sha: bytes) -> Any:
    return json.loads(store.read_blob(sha))


def read_output(store: Store, root: bytes | None, name: str) -> OutputState | None:
    """The state of output `name` in tree `root`; None if it has no value there."""
    if root is None:
        return None
    paths = layout.of(store, root)
    entry = paths.get(store, root, paths.output_path(name))
    if entry is None or not entry.is_tree:
        return None
    files = store.tree_entries(entry.sha)
    value, meta = files.get(paths.value), files.get(paths.meta)
    if value is None or meta is None:
        return None
    return OutputState(name, value, read_json_blob(store, meta.sha))


def write_output(
    store: Store, root: bytes | None, name: str, value: Entry, meta: dict[str, Any], done: str
) -> bytes:
    """A new root tree with output `name` set to `value`."""
    paths = layout.of(store, root)
    return paths.update(store, root, *output_files(store, paths, name, value, meta, done))


def output_files(
    store: Store, paths: Layout, name: str, value: Entry, meta: dict[str, Any], done: str
) -> layout.Update:
    """The directory of output `name` and its files for `value` (for `Layout.update`)."""
    meta_blob = store.write_blob(json.dumps(meta, sort_keys=True, indent=1).encode() + b"\n")
    done_blob = store.write_blob(done.encode() + b"\n")
    files: dict[bytes, Entry | None] = {
        paths.value: value,
        paths.meta: Entry(MODE_BLOB, meta_blob),
        paths.done: Entry(MODE_BLOB, done_blob),
    }
    return paths.output_path(name), files


def list_outputs(store: Store, root: bytes | None, pattern: str | None = None) -> Iterator[str]:
    """Names of outputs with a value, sorted, optionally those matching `pattern`."""
    segs = pattern.split("/") if pattern else []
    head: list[str] = []
    for seg in segs:
        if seg in ("*", "**"):
            break
        head.append(seg)
    if root is None:
        return
    paths = layout.of(store, root)
    entry = paths.get(store, root, paths.output_path("/".join(head))[: len(head) + 1])
    if entry is None or not entry.is_tree:
        return
    for name in _walk(store, paths, entry.sha, head):
        if pattern is None or matches(pattern, name):
            yield name


def _walk(store: Store, paths: Layout, tree: bytes, prefix: list[str]) -> Iterator[str]:
    entries = paths.children(store, tree)
    if prefix and paths.value in entries and paths.meta in entries:
        yield "/".join(prefix)
    for name, entry in sorted(entries.items()):
        if entry.is_tree and paths.is_output_segment(name):
            yield from _walk(store, paths, entry.sha, [*prefix, name.decode()])


def node_log(store: Store, root: bytes | None, node: str) -> Entry | None:
    """The `@log` entry of node `node`'s last session merged into tree `root` (or of the
    session whose tree `root` is), or None."""
    if root is None:
        return None
    paths = layout.of(store, root)
    return paths.get(store, root, paths.node_log_path(node))


def read_dag_json(store: Store, root: bytes | None) -> dict[str, Any] | None:
    """`dag.json` of a log tree as stored (a dict), or None."""
    if root is None:
        return None
    entry = store.tree_get(root, layout.of(store, root).dag_path())
    return read_json_blob(store, entry.sha) if entry is not None else None


_CODES: dict[bytes, dict[str, str]] = {}


def node_codes(store: Store, root: bytes | None) -> dict[str, str]:
    """Each node's code hash in the definition recorded in `root`. Cached by the
    definition's blob id (which names its content): every session's merge checks
    its node's code, and parsing a 1,000-node dag.json each time cost a fifth of
    the run. Read-only."""
    if root is None:
        return {}
    entry = store.tree_get(root, layout.of(store, root).dag_path())
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
    *where, name = layout.of(store, root).dag_path()
    return store.tree_update(root, where, {name: Entry(MODE_BLOB, blob)})


_PARSED: dict[bytes, Dag] = {}


def read_dag(store: Store, root: bytes | None) -> Dag | None:
    """The definition recorded in a log tree (`dag.json`), or None. Parsed once per
    blob id (which names its content): every command reads it, often several times."""
    if root is None:
        return None
    entry = store.tree_get(root, layout.of(store, root).dag_path())
    if entry is None:
        return None
    dag = _PARSED.get(entry.sha)
    if dag is None:
        dag = Dag.from_json(read_json_blob(store, entry.sha))
        if len(_PARSED) >= 8:
            _PARSED.clear()
        _PARSED[entry.sha] = dag
    return dag

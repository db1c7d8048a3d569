"""The run cache: completed sessions keyed by node code and the exact input values.

The index lives in every log tree (`layout.cache_path`: `@cache/<k[:2]>/<k>`, a
blob holding the session head's commit id), so a lookup is three tree reads
whatever the history, and a replay can consult the index of the log it replaces.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from gdag import layout, state
from gdag.names import is_pattern
from gdag.repo import MODE_BLOB, Entry, Store

if TYPE_CHECKING:
    from gdag.dag import Node


def cache_key(store: Store, root: bytes, node: Node) -> str:
    """A hash of the node's code and the object ids of every input value it would see."""
    values: dict[str, Any] = {}
    for arg, target in sorted(node.inputs.items()):
        names = list(state.list_outputs(store, root, target)) if is_pattern(target) else [target]
        seen = {}
        for name in filter(node.sees, names):
            out = state.read_output(store, root, name)
            if out is not None:
                seen[name] = out.value.sha.decode()
        values[arg] = seen
    blob = json.dumps({"code": node.code, "inputs": values}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def lookup(store: Store, roots: list[bytes | None], key: str) -> bytes | None:
    """The head commit of a completed session with this key, in any of the given trees."""
    for root in roots:
        entry = store.tree_get(root, layout.of(store, root).cache_path(key)) if root else None
        if entry is not None:
            return store.read_blob(entry.sha).strip()
    return None


def record(store: Store, paths: layout.Layout, key: str, head: bytes) -> layout.Update:
    """The index entry of a completed session (for `Layout.update`)."""
    blob = store.write_blob(head + b"\n")
    *where, name = paths.cache_path(key)
    return where, {name: Entry(MODE_BLOB, blob)}

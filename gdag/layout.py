"""Where everything lives in a state tree, and which layout version a tree was written in.

Layout version 1:

    dag.json                        the compiled definition in force
    outputs/<seg>/…/@value          an output's value (blob, or tree for dir values)
    outputs/<seg>/…/@meta.json      its metadata; @done: "publish <id>" | "session <id>"
    nodes/<node>/@done.json         the node's last completed session; @log its output
    @cache/<k[:2]>/<k>              the run cache: session head of key k
    @offsets/<bucket>/<n>           checkpoint: the commit at offset n of this chain

Layout version 2 is version 1 plus sharded directories: a directory below
`outputs/` or `nodes/` (or either of those) that would hold more than SHARD_AT
children keeps them in 256 shards instead, `@<xx>/<child>` with `xx` the
first two hex digits of the child name's SHA-1, and says so with a `@sharded`
file. An event then rewrites a shard and the 256-entry directory above it
rather than a directory of every member: a family of 10,000 members costs each
event a few kilobytes of trees, not 400. Its `@value`, `@meta.json` and
`@done` files stay where they were. Small directories are never sharded, so a
tree is written as version 1 until its first large directory; that write adds
`@layout` (the decimal number) at the root, and from then on a gdag that reads
only version 1 refuses the log instead of misreading it.

Readers ask `of(store, root)` for the layout of the tree in hand and go through
its `get`, `update` and `children`, never spelling a path below `outputs/` or
`nodes/` themselves; a version this gdag does not know is refused, never misread.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from gdag.errors import StoreError
from gdag.objects import MODE_BLOB, MODE_TREE, Entry

if TYPE_CHECKING:
    from gdag.repo import Store

LAYOUT_FILE = b"@layout"
# A directory of a state tree (logical path) and the changes to its files: one update
# of `Layout.update_many`.
Update = tuple[list[bytes], dict[bytes, Entry | None]]
SHARDED = b"@sharded"
SHARD_AT = 1000  # children a directory keeps unsharded (a tree of about 40 KB)


def is_shard(name: bytes) -> bool:
    return len(name) == 3 and name[:1] == b"@" and all(c in b"0123456789abcdef" for c in name[1:])


def shard_of(name: bytes) -> bytes:
    """The shard directory of child `name` in a sharded directory: `@` and two hex digits."""
    return b"@" + hashlib.sha1(name).hexdigest()[:2].encode()


class Layout:
    """The paths of layout version 1. A later version subclasses it (see `LAYOUTS`)."""

    version = 1
    dag = b"dag.json"
    outputs = b"outputs"
    value = b"@value"
    meta = b"@meta.json"
    done = b"@done"
    nodes = b"nodes"
    node_done = b"@done.json"
    node_log = b"@log"
    node_failed = b"@failed.json"  # an "each" node's events that failed, not yet redone
    cache = b"@cache"
    offsets = b"@offsets"
    offsets_bucket = 4096  # checkpoints per @offsets/<bucket> directory

    def dag_path(self) -> list[bytes]:
        return [self.dag]

    def output_path(self, name: str) -> list[bytes]:
        """The directory of output `name` (holding @value, @meta.json, @done)."""
        return [self.outputs, *(seg.encode() for seg in name.split("/"))]

    def is_output_segment(self, name: bytes) -> bool:
        """Whether a directory entry below `outputs/` is a name segment (not a file)."""
        return not name.startswith(b"@")

    def node_path(self, node: str) -> list[bytes]:
        """The directory of a node's records (@done.json, @log)."""
        return [self.nodes, node.encode()]

    def node_done_path(self, node: str) -> list[bytes]:
        return [*self.node_path(node), self.node_done]

    def node_log_path(self, node: str) -> list[bytes]:
        return [*self.node_path(node), self.node_log]

    def node_failed_path(self, node: str) -> list[bytes]:
        return [*self.node_path(node), self.node_failed]

    def cache_path(self, key: str) -> list[bytes]:
        return [self.cache, key[:2].encode(), key.encode()]

    def checkpoint_path(self, offset: int) -> list[bytes]:
        bucket = offset // self.offsets_bucket * self.offsets_bucket
        return [self.offsets, str(bucket).encode(), str(offset).encode()]

    # -- paths as stored: sharded directories (version 2) --------------------------------

    def _may_shard(self, path: list[bytes], i: int) -> bool:
        """Whether `path[i]` is a child its directory may keep in a shard: a name (not an
        `@` file) below `outputs/` or `nodes/`."""
        return i >= 1 and path[0] in (self.outputs, self.nodes) and not path[i].startswith(b"@")

    def locate(self, store: Store, root: bytes | None, path: list[bytes]) -> list[bytes]:
        """`path` as stored in tree `root`: through the shard of each sharded directory on
        the way (a directory that does not exist yet is not sharded)."""
        found: list[bytes] = []
        entries = store.tree_entries(root)
        for i, name in enumerate(path):
            if self._may_shard(path, i) and SHARDED in entries:
                shard = entries.get(shard_of(name))
                found.append(shard_of(name))
                entries = store.tree_entries(shard.sha if shard and shard.is_tree else None)
            found.append(name)
            entry = entries.get(name)
            entries = store.tree_entries(entry.sha if entry and entry.is_tree else None)
        return found

    def get(self, store: Store, root: bytes | None, path: list[bytes]) -> Entry | None:
        """The entry at logical `path` below tree `root`, or None."""
        return store.tree_get(root, self.locate(store, root, path))

    def children(self, store: Store, tree: bytes) -> dict[bytes, Entry]:
        """A directory's entries as if it were not sharded (its shards' children with its
        own `@` files). Do not mutate the result."""
        entries = store.tree_entries(tree)
        if SHARDED not in entries:
            return entries
        merged: dict[bytes, Entry] = {}
        for name, entry in entries.items():
            if name == SHARDED:
                continue
            if entry.is_tree and is_shard(name):
                merged.update(store.tree_entries(entry.sha))
            else:
                merged[name] = entry
        return merged

    def update(
        self,
        store: Store,
        root: bytes | None,
        path: list[bytes],
        changes: Mapping[bytes, Entry | None],
    ) -> bytes:
        """A new root tree with `changes` applied in the directory at logical `path`; a
        directory on the way left with more than SHARD_AT children is sharded (and the
        root marked version 2)."""
        return self.update_many(store, root, [(path, changes)])

    def update_many(
        self,
        store: Store,
        root: bytes | None,
        updates: Sequence[tuple[list[bytes], Mapping[bytes, Entry | None]]],
    ) -> bytes:
        """`update` of several directories (logical path, changes), each tree on the way
        written once; changes to one directory are applied in order."""
        located: dict[tuple[bytes, ...], dict[bytes, Entry | None]] = {}
        for path, changes in updates:
            located.setdefault(tuple(self.locate(store, root, path)), {}).update(changes)
        tree = store.tree_update_many(root, located)
        # Each directory on the way, once (a node's 10,000 outputs share their parents),
        # parents first: one left with more than SHARD_AT children is sharded.
        dirs: dict[tuple[bytes, ...], None] = {}
        for path, _ in updates:
            if path and path[0] in (self.outputs, self.nodes):
                dirs.update(dict.fromkeys(tuple(path[:depth]) for depth in range(1, len(path) + 1)))
        for where in sorted(dirs, key=len):
            tree = self._shard_if_full(store, tree, list(where))
        return tree

    def _shard_if_full(self, store: Store, tree: bytes, path: list[bytes]) -> bytes:
        """Tree `tree` with the directory at logical `path` sharded if it holds more than
        SHARD_AT children (its own `@` files do not count)."""
        where = self.locate(store, tree, path)
        entry = store.tree_get(tree, where)
        if entry is None or not entry.is_tree:
            return tree
        entries = store.tree_entries(entry.sha)
        if SHARDED in entries or len(entries) <= SHARD_AT:
            return tree
        if sum(not name.startswith(b"@") for name in entries) <= SHARD_AT:
            return tree
        tree = store.tree_update(tree, where[:-1], {where[-1]: _sharded(store, entries)})
        if LAYOUTS[2] is not of(store, tree):
            tree = store.tree_update(tree, [], {LAYOUT_FILE: Entry(MODE_BLOB, _version(store, 2))})
        return tree


class ShardedLayout(Layout):
    """Layout version 2: version 1's paths, with sharded directories (`Layout.update`
    shards; every layout reads them)."""

    version = 2


def _sharded(store: Store, entries: Mapping[bytes, Entry]) -> Entry:
    """A directory's entries written as a sharded directory."""
    top: dict[bytes, Entry] = {SHARDED: Entry(MODE_BLOB, store.write_blob(b""))}
    shards: dict[bytes, dict[bytes, Entry]] = {}
    for name, entry in entries.items():
        if name.startswith(b"@"):
            top[name] = entry
        else:
            shards.setdefault(shard_of(name), {})[name] = entry
    for shard, children in shards.items():
        top[shard] = Entry(MODE_TREE, store.write_tree(children))
    return Entry(MODE_TREE, store.write_tree(top))


def _version(store: Store, version: int) -> bytes:
    return store.write_blob(b"%d\n" % version)


# Every layout this gdag reads, by version; WRITE is the one new trees get (a tree moves
# to version 2 at its first sharded directory, see `Layout.update`).
LAYOUTS: dict[int, Layout] = {1: Layout(), 2: ShardedLayout()}
WRITE = LAYOUTS[1]
_VERSIONS: dict[bytes, Layout] = {}  # @layout blob id -> its layout


def of(store: Store, root: bytes | None) -> Layout:
    """The layout of tree `root` (None: a new tree, which gets WRITE's)."""
    if root is None:
        return WRITE
    entry = store.tree_entries(root).get(LAYOUT_FILE)
    if entry is None:
        return LAYOUTS[1]
    found = _VERSIONS.get(entry.sha)
    if found is None:
        found = _parse(store.read_blob(entry.sha), root)
        _VERSIONS[entry.sha] = found
    return found


def _parse(data: bytes, root: bytes) -> Layout:
    text = data.decode("ascii", "replace").strip()
    if not text.isdigit():
        raise StoreError(
            f"state tree {root.decode()[:12]} has an unreadable @layout: {text[:40]!r}",
            hint="the log points at a tree gdag did not write; see `gdag doctor`",
        )
    version = int(text)
    if version not in LAYOUTS:
        raise StoreError(
            f"state tree {root.decode()[:12]} has layout version {version}: "
            f"it was written by a newer gdag (this one reads up to {max(LAYOUTS)})",
            hint="upgrade gdag to read this log",
        )
    return LAYOUTS[version]

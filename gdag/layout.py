"""Where everything lives in a state tree, and which layout version a tree was written in.

Layout version 1, the one gdag writes:

    dag.json                        the compiled definition in force
    outputs/<seg>/…/@value          an output's value (blob, or tree for dir values)
    outputs/<seg>/…/@meta.json      its metadata; @done: "publish <id>" | "session <id>"
    nodes/<node>/@done.json         the node's last completed session; @log its output
    @cache/<k[:2]>/<k>              the run cache: session head of key k
    @offsets/<bucket>/<n>           checkpoint: the commit at offset n of this chain

A tree names its version in a `@layout` blob at its root (the decimal number);
without one it is version 1, so every tree gdag has written so far is. Readers
ask `of(store, root)` for the layout of the tree in hand and spell paths
through it; a version this gdag does not know is refused, never misread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gdag.errors import StoreError

if TYPE_CHECKING:
    from gdag.repo import Store

LAYOUT_FILE = b"@layout"


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


# Every layout this gdag reads, by version; WRITE is the one new trees get.
LAYOUTS: dict[int, Layout] = {1: Layout()}
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

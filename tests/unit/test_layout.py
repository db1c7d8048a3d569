"""layout: the paths of a state tree, and the layout version read from the tree itself."""

from __future__ import annotations

import subprocess

import pytest

from gdag import layout, state
from gdag.errors import StoreError
from gdag.repo import MODE_BLOB, Entry, Store
from unit.conftest import ls_tree

V1 = layout.LAYOUTS[1]


@pytest.mark.parametrize(
    ("path", "spelled"),
    [
        (V1.dag_path(), "dag.json"),
        (V1.output_path("a"), "outputs/a"),
        (V1.output_path("raw/2024/x.csv"), "outputs/raw/2024/x.csv"),
        (V1.node_path("train"), "nodes/train"),
        (V1.node_done_path("train"), "nodes/train/@done.json"),
        (V1.node_log_path("train"), "nodes/train/@log"),
        (V1.cache_path("ab" + "0" * 62), "@cache/ab/ab" + "0" * 62),
        (V1.checkpoint_path(64), "@offsets/0/64"),
        (V1.checkpoint_path(4096), "@offsets/4096/4096"),
        (V1.checkpoint_path(8191 * 64), "@offsets/520192/524224"),
    ],
)
def test_version_1_paths(path: list[bytes], spelled: str) -> None:
    assert b"/".join(path).decode() == spelled


def test_files_of_an_output_as_git_lists_them(store: Store) -> None:
    value = Entry(MODE_BLOB, store.write_blob(b"v"))
    root = state.write_output(store, None, "a/b", value, {"version": 1}, "publish p1")
    root = state.write_dag(store, root, {"nodes": {}})
    assert ls_tree(store, root.decode(), recursive=True) == [
        "dag.json",
        "outputs/a/b/@done",
        "outputs/a/b/@meta.json",
        "outputs/a/b/@value",
    ]


def with_layout(store: Store, root: bytes | None, text: bytes) -> bytes:
    blob = store.write_blob(text)
    return store.tree_update(root, [], {layout.LAYOUT_FILE: Entry(MODE_BLOB, blob)})


def test_a_tree_without_a_layout_file_is_version_1(store: Store) -> None:
    root = state.write_dag(store, None, {"nodes": {}})
    assert layout.of(store, root) is V1
    assert layout.of(store, None) is layout.WRITE is V1  # what new trees get
    assert b"@layout" not in store.tree_entries(root)  # and it is not written


def test_a_tree_naming_version_1_reads_as_version_1(store: Store) -> None:
    root = with_layout(store, state.write_dag(store, None, {"nodes": {}}), b"1\n")
    assert layout.of(store, root) is V1
    assert state.read_dag_json(store, root) == {"nodes": {}}


def test_a_newer_layout_is_refused_not_misread(store: Store) -> None:
    value = Entry(MODE_BLOB, store.write_blob(b"v"))
    root = state.write_output(store, None, "a", value, {"version": 1}, "publish p1")
    root = with_layout(store, root, b"3\n")
    with pytest.raises(StoreError, match="layout version 3: it was written by a newer gdag"):
        layout.of(store, root)
    with pytest.raises(StoreError, match="newer gdag"):
        state.read_output(store, root, "a")
    with pytest.raises(StoreError, match="newer gdag"):  # nor written over
        state.write_output(store, root, "a", value, {"version": 2}, "publish p2")


def test_an_unreadable_layout_file_is_named(store: Store) -> None:
    root = with_layout(store, None, b"two\n")
    with pytest.raises(StoreError, match="unreadable @layout"):
        layout.of(store, root)


def test_a_directory_past_shard_at_is_sharded_and_reads_the_same(store: Store) -> None:
    """The SHARD_AT+1st member of a family shards its directory (and marks the tree
    version 2); every member reads and lists as before, the family's own value stays
    beside the shards, and later writes go to one shard each."""
    n = layout.SHARD_AT
    root: bytes | None = None
    value = {i: Entry(MODE_BLOB, store.write_blob(b"%d" % i)) for i in range(n + 2)}
    own = Entry(MODE_BLOB, store.write_blob(b"the family's own value"))
    root = state.write_output(store, root, "fam", own, {"version": 1}, "publish p")
    for i in range(n):
        root = state.write_output(store, root, f"fam/m{i}", value[i], {"version": 1}, "p")
    assert layout.of(store, root) is V1 and b"@layout" not in store.tree_entries(root)
    assert "@sharded" not in ls_tree(store, f"{root.decode()}:outputs/fam")

    root = state.write_output(store, root, f"fam/m{n}", value[n], {"version": 1}, "p")
    assert layout.of(store, root) is layout.LAYOUTS[2]
    assert store.read_blob(store.tree_entries(root)[b"@layout"].sha) == b"2\n"
    top = ls_tree(store, f"{root.decode()}:outputs/fam")
    files = {"@sharded", "@value", "@meta.json", "@done"}
    assert files <= set(top)
    assert all(layout.is_shard(name.encode()) for name in set(top) - files)
    members = [
        m
        for name in set(top) - files
        for m in ls_tree(store, f"{root.decode()}:outputs/fam/{name}")
    ]
    assert sorted(members) == sorted(f"m{i}" for i in range(n + 1))
    shard = layout.shard_of(b"m7").decode()
    assert "m7" in ls_tree(store, f"{root.decode()}:outputs/fam/{shard}")
    for i in (0, 7, n):
        got = state.read_output(store, root, f"fam/m{i}")
        assert got is not None and got.value == value[i]
    fam = state.read_output(store, root, "fam")
    assert fam is not None and fam.value == own
    names = list(state.list_outputs(store, root, "fam/*"))
    assert names == sorted(f"fam/m{i}" for i in range(n + 1))
    assert list(state.list_outputs(store, root)) == ["fam", *names]

    # A later member (and a new version of an old one) changes one shard.
    before = store.tree_entries(store.tree_get(root, [b"outputs", b"fam"]).sha)
    root = state.write_output(store, root, "fam/m3", value[n + 1], {"version": 2}, "p")
    after = store.tree_entries(store.tree_get(root, [b"outputs", b"fam"]).sha)
    assert [k for k in after if after[k] != before.get(k)] == [layout.shard_of(b"m3")]
    got = state.read_output(store, root, "fam/m3")
    assert got is not None and got.value == value[n + 1]
    fsck = subprocess.run(["git", "fsck", "--strict"], cwd=store.workdir, capture_output=True)
    assert fsck.returncode == 0, fsck.stderr


def test_the_outputs_and_nodes_directories_shard_too(store: Store) -> None:
    """More than SHARD_AT top-level outputs, or nodes: the same, one level up."""
    n = layout.SHARD_AT + 1
    blob = Entry(MODE_BLOB, store.write_blob(b"{}"))
    root: bytes | None = None
    for i in range(n):
        root = state.write_output(store, root, f"o{i}", blob, {"version": 1}, "p")
        paths = layout.of(store, root)
        root = paths.update(store, root, paths.node_path(f"n{i}"), {paths.node_log: blob})
    top = ls_tree(store, f"{root.decode()}:outputs")
    assert "@sharded" in top and all(layout.is_shard(t.encode()) for t in top if t != "@sharded")
    assert "@sharded" in ls_tree(store, f"{root.decode()}:nodes")
    assert len(list(state.list_outputs(store, root))) == n
    for i in (0, n - 1):
        assert state.read_output(store, root, f"o{i}") is not None
        assert state.node_log(store, root, f"n{i}") == blob
    assert state.node_log(store, root, "absent") is None


def test_a_batch_of_updates_gives_the_tree_of_the_same_updates_one_by_one(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`update_many` (a session's outputs and node files at once) writes the tree that
    `update` after `update` writes, sharding included (here past 4 children)."""
    import random

    monkeypatch.setattr(layout, "SHARD_AT", 4)
    rng = random.Random(1)
    blobs = [Entry(MODE_BLOB, store.write_blob(b"%d" % i)) for i in range(4)]
    names = ["a", "b", "c", "d", "e", "f", "fam/x", "fam/y", "fam/z", "fam/w", "fam/v"]
    names += ["a/b", "a/c", "q/r/s"]
    root: bytes | None = None
    for _ in range(150):
        paths = layout.of(store, root)
        updates = []
        for _ in range(rng.randint(1, 5)):
            if rng.random() < 0.6:
                path = paths.output_path(rng.choice(names))
                files = [paths.value, paths.meta, paths.done]
            else:
                path = paths.node_path(f"n{rng.randint(0, 7)}")
                files = [paths.node_done, paths.node_log, paths.node_failed]
            picked = rng.sample(files, rng.randint(1, 3))
            updates.append((path, {f: rng.choice([*blobs, None]) for f in picked}))
        one_by_one = root
        for path, changes in updates:
            one_by_one = layout.of(store, one_by_one).update(store, one_by_one, path, changes)
        root = paths.update_many(store, root, updates)
        assert root == one_by_one
    assert layout.of(store, root) is layout.LAYOUTS[2]  # it did shard

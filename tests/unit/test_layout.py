"""layout: the paths of a state tree, and the layout version read from the tree itself."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gdag import layout, state
from gdag.errors import StoreError
from gdag.repo import MODE_BLOB, Entry, Store

V1 = layout.LAYOUTS[1]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    subprocess.run(["git", "init", "-q", str(tmp_path / "repo")], check=True)
    return Store.find(tmp_path / "repo")


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
    listed = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", root.decode()],
        cwd=store.workdir,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert listed == [
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
    root = with_layout(store, root, b"2\n")
    with pytest.raises(StoreError, match="layout version 2: it was written by a newer gdag"):
        layout.of(store, root)
    with pytest.raises(StoreError, match="newer gdag"):
        state.read_output(store, root, "a")
    with pytest.raises(StoreError, match="newer gdag"):  # nor written over
        state.write_output(store, root, "a", value, {"version": 2}, "publish p2")


def test_an_unreadable_layout_file_is_named(store: Store) -> None:
    root = with_layout(store, None, b"two\n")
    with pytest.raises(StoreError, match="unreadable @layout"):
        layout.of(store, root)

"""Trees written by `tree_update`, entry by entry, are the trees git itself builds."""

from __future__ import annotations

import random
import subprocess

from conftest import fsck

from gdag.objects import MODE_BLOB, MODE_TREE
from gdag.repo import Entry, Store
from unit.conftest import ls_tree


def git_mktree(store: Store, entries: dict[bytes, Entry]) -> bytes:
    """The tree git's own `mktree` writes for `entries` (it sorts them itself)."""
    lines = b"".join(
        b"%s %s %s\t%s\n"
        % (b"040000" if e.is_tree else b"%o" % e.mode, b"tree" if e.is_tree else b"blob", e.sha, n)
        for n, e in entries.items()
    )
    out = subprocess.run(
        ["git", "mktree"], input=lines, cwd=store.workdir, capture_output=True, check=True
    )
    return out.stdout.strip()


def test_random_changes_give_the_tree_git_makes(store: Store) -> None:
    """Names that sort differently as a file and as a directory (`a`, `a.b`, `a-`,
    `a/`), entries that change kind, removals and additions, one at a time and several
    at once: after every step the tree id is the one `git mktree` gives."""
    rng = random.Random(7)
    names = [b"a", b"a.b", b"a-", b"a0", b"ab", b"b", b"@meta.json", b"@value", b"z" * 40]
    names += [b"n%d" % i for i in range(60)]
    blob = Entry(MODE_BLOB, store.write_blob(b"x"))
    sub = Entry(MODE_TREE, store.write_tree({b"f": blob}))
    other = Entry(MODE_BLOB, store.write_blob(b"y"))
    root: bytes | None = None
    model: dict[bytes, Entry] = {}
    for step in range(300):
        changes: dict[bytes, Entry | None] = {}
        for name in rng.sample(names, rng.choice([1, 1, 1, 3])):
            changes[name] = rng.choice([blob, sub, other, None])
        if step % 50 == 49:
            root = store.objects.write_tree(dict(model)) if model else None
            store.objects._sorted.clear()  # the next update sorts a tree it read
        root = store.tree_update(root, [], changes)
        for name, entry in changes.items():
            if entry is None:
                model.pop(name, None)
            else:
                model[name] = entry
        assert store.tree_entries(root) == model
        assert root == git_mktree(store, model), f"step {step}: {changes}"


def test_a_nested_update_writes_each_tree_on_the_path(store: Store) -> None:
    blob = Entry(MODE_BLOB, store.write_blob(b"v"))
    root = store.tree_update(None, [b"outputs", b"a"], {b"@value": blob})
    root = store.tree_update(root, [b"outputs", b"a.b"], {b"@value": blob})
    root = store.tree_update(root, [b"outputs", b"a"], {b"@value": None})  # empties `a`
    assert ls_tree(store, root.decode(), recursive=True) == ["outputs/a.b/@value"]
    assert store.workdir is not None
    fsck(store.workdir)


def test_a_change_to_a_directory_comes_before_changes_below_it(store: Store) -> None:
    """Replacing (or removing) a directory and adding a file in it, in one batch, is the
    same as doing the two one after the other."""
    blob = Entry(MODE_BLOB, store.write_blob(b"x"))
    root = store.tree_update(None, [b"a"], {b"old": blob})
    batched = store.tree_update_many(root, {(): {b"a": None}, (b"a",): {b"new": blob}})
    one_by_one = store.tree_update(
        store.tree_update(root, [], {b"a": None}), [b"a"], {b"new": blob}
    )
    assert batched == one_by_one
    assert store.tree_entries(store.tree_entries(batched)[b"a"].sha) == {b"new": blob}

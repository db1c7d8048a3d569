"""Publish and lookup through the real command: values round-trip byte-exact."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import fsck, gdag, git


def publish_ok(repo: Path, *args: str, input: bytes | None = None) -> dict:
    r = gdag("publish", *args, "--json", cwd=repo, input=input)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def lookup(repo: Path, *args: str) -> bytes:
    r = gdag("lookup", *args, cwd=repo)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_text_value_round_trips_and_log_reads_with_git(repo: Path) -> None:
    res = publish_ok(repo, "photos/new", "hello world")
    assert (res["version"], res["offset"], res["changed"]) == (1, 1, True)
    assert lookup(repo, "photos/new") == b"hello world"
    assert git("show", "refs/gdag/logs/main:outputs/photos/new/@value", cwd=repo) == "hello world"
    meta = json.loads(git("show", "refs/gdag/logs/main:outputs/photos/new/@meta.json", cwd=repo))
    assert meta["version"] == 1 and meta["offset"] == 1 and meta["type"] == "bytes"
    assert "publish" in git("show", "refs/gdag/logs/main:outputs/photos/new/@done", cwd=repo)
    trailers = git("log", "--format=%(trailers:only,unfold)%x00", "refs/gdag/logs/main", cwd=repo)
    first = trailers.split("\x00")[0]
    assert "Gdag-Offset: 1" in first and "Gdag-Event: publish" in first
    assert "Gdag-Output: photos/new" in first
    subjects = git("log", "--format=%s", "refs/gdag/logs/main", cwd=repo).splitlines()
    assert subjects == ["publish photos/new v1", "init log main"]
    fsck(repo)


def test_all_byte_values_from_stdin(repo: Path) -> None:
    data = bytes(range(256)) * 3
    publish_ok(repo, "bin", "-", input=data)
    assert lookup(repo, "bin") == data
    shown = subprocess.run(
        ["git", "cat-file", "blob", "refs/gdag/logs/main:outputs/bin/@value"],
        cwd=repo,
        capture_output=True,
        check=True,
    ).stdout
    assert shown == data
    fsck(repo)


def test_binary_file_value_is_the_same_git_blob(repo: Path, tmp_path: Path) -> None:
    data = bytes(range(256))
    f = tmp_path / "v.bin"
    f.write_bytes(data)
    publish_ok(repo, "bin", "--file", str(f))
    stored = git("rev-parse", "refs/gdag/logs/main:outputs/bin/@value", cwd=repo).strip()
    assert stored == git("hash-object", str(f), cwd=repo).strip()
    assert lookup(repo, "bin") == data


def test_empty_value(repo: Path) -> None:
    publish_ok(repo, "empty", "", input=b"")
    assert lookup(repo, "empty") == b""
    publish_ok(repo, "empty2", "-", input=b"")
    assert lookup(repo, "empty2") == b""
    fsck(repo)


def test_ten_megabyte_value(repo: Path, tmp_path: Path) -> None:
    data = os.urandom(10 * 1024 * 1024)
    f = tmp_path / "big"
    f.write_bytes(data)
    publish_ok(repo, "big", "--file", str(f))
    assert lookup(repo, "big") == data
    publish_ok(repo, "big2", "-", input=data)
    assert lookup(repo, "big2") == data
    fsck(repo)


def test_directory_value(repo: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"A")
    (src / "sub" / "b.bin").write_bytes(bytes(range(256)))
    (src / "run.sh").write_bytes(b"#!/bin/sh\n")
    (src / "run.sh").chmod(0o755)
    (src / "link").symlink_to("a.txt")
    publish_ok(repo, "tree", "--dir", str(src))
    listing = lookup(repo, "tree").decode()
    assert "file\t1\ta.txt" in listing and "file\t256\tsub/b.bin" in listing
    assert "exec\t10\trun.sh" in listing and "link\t5\tlink" in listing
    ls = git("ls-tree", "-r", "refs/gdag/logs/main:outputs/tree/@value", cwd=repo)
    assert "100755 blob" in ls and "120000 blob" in ls
    out = tmp_path / "out"
    r = gdag("lookup", "tree", "-o", str(out), cwd=repo)
    assert r.returncode == 0, r.stderr
    assert (out / "a.txt").read_bytes() == b"A"
    assert (out / "sub" / "b.bin").read_bytes() == bytes(range(256))
    assert os.access(out / "run.sh", os.X_OK)
    assert os.readlink(out / "link") == "a.txt"
    r = gdag("lookup", "tree", "-o", str(out), cwd=repo)
    assert r.returncode == 3 and "not an empty directory" in r.stderr
    fsck(repo)


def test_versions_offsets_and_lookup_at(repo: Path) -> None:
    for i in range(1, 6):
        res = publish_ok(repo, "x", f"v{i}")
        assert (res["version"], res["offset"]) == (i, i)
    assert lookup(repo, "x", "--at", "2") == b"v2"
    assert lookup(repo, "x", "--at", "-1") == b"v4"
    commit = git("rev-parse", "refs/gdag/logs/main~2", cwd=repo).strip()
    assert lookup(repo, "x", "--at", commit[:10]) == b"v3"
    r = gdag("lookup", "x", "--at", "99", cwd=repo)
    assert r.returncode == 3 and "0..5" in r.stderr
    r = gdag("lookup", "x", "--at", "-9", cwd=repo)
    assert r.returncode == 3 and "0..5" in r.stderr
    r = gdag("lookup", "x", "--at", "0", cwd=repo)
    assert r.returncode == 3 and "no value at offset 0" in r.stderr
    meta = lookup(repo, "x", "--meta").decode()
    assert "version: 5" in meta and "offset: 5" in meta


def test_lookup_at_any_offset_uses_checkpoints(tmp_path: Path) -> None:
    from gdag.workspace import ValueSource, Workspace

    ws, _ = Workspace.init(tmp_path / "r", None)
    for i in range(1, 300):
        ws.publish("x", ValueSource(data=str(i).encode()))
    for off in (1, 63, 64, 65, 128, 200, 299):
        assert ws.lookup("x", str(off)).meta["version"] == off
        commit = ws.log.commit_at(off)
        assert ws.log.event(commit).offset == off
    fsck(tmp_path / "r")


def test_if_changed_skips_identical_value(repo: Path) -> None:
    publish_ok(repo, "x", "same")
    res = publish_ok(repo, "x", "same", "--if-changed")
    assert res["changed"] is False and res["version"] == 1
    res = publish_ok(repo, "x", "same")
    assert res["changed"] is True and res["version"] == 2
    assert len(git("rev-list", "refs/gdag/logs/main", cwd=repo).split()) == 3


def test_typed_outputs_and_sticky_type(repo: Path) -> None:
    publish_ok(repo, "n", "42", "--type", "int")
    assert lookup(repo, "n") == b"42\n"
    tip = git("rev-parse", "refs/gdag/logs/main", cwd=repo)
    r = gdag("publish", "n", "forty", cwd=repo)
    assert r.returncode == 3 and "'n'" in r.stderr and "int" in r.stderr
    r = gdag("publish", "n", "1", "--type", "str", cwd=repo)
    assert r.returncode == 3 and "cannot change" in r.stderr
    assert git("rev-parse", "refs/gdag/logs/main", cwd=repo) == tip
    publish_ok(repo, "n", "7")
    assert lookup(repo, "n") == b"7\n"
    publish_ok(repo, "s", "héllo", "--type", "str")
    assert lookup(repo, "s") == "héllo".encode()
    publish_ok(repo, "j", '{"b": [1, 2], "a": null}', "--type", "json")
    assert lookup(repo, "j") == b'{"a":null,"b":[1,2]}\n'
    r = gdag("lookup", "j", "--json", cwd=repo)
    assert json.loads(r.stdout)["value"] == {"a": None, "b": [1, 2]}


def test_declared_types_from_definition(repo: Path) -> None:
    (repo / "gdag.toml").write_text('[outputs."temp/*"]\ntype = "float"\n')
    publish_ok(repo, "temp/kitchen", "21")
    assert lookup(repo, "temp/kitchen") == b"21.0\n"
    r = gdag("publish", "temp/hall", "warm", cwd=repo)
    assert r.returncode == 3 and "float" in r.stderr
    r = gdag("publish", "temp/hall", "1", "--type", "int", cwd=repo)
    assert r.returncode == 3 and "declared" in r.stderr
    kinds = git(
        "log", "--format=%(trailers:key=Gdag-Event,valueonly)", "refs/gdag/logs/main", cwd=repo
    ).split()
    assert kinds == ["publish", "dag", "init"]


def test_pattern_lookup_lists_outputs(repo: Path) -> None:
    for name in ("thumbs/a", "thumbs/b", "thumbs/deep/c", "other"):
        publish_ok(repo, name, "x")
    assert lookup(repo, "thumbs/*") == b"thumbs/a\nthumbs/b\n"
    assert lookup(repo, "thumbs/**") == b"thumbs/a\nthumbs/b\nthumbs/deep/c\n"
    assert lookup(repo, "**").decode().splitlines() == [
        "other",
        "thumbs/a",
        "thumbs/b",
        "thumbs/deep/c",
    ]


@pytest.mark.parametrize("name", ["../x", "a//b", "@x", "", "x" * 300, "a/./b"])
def test_bad_names_refused_and_nothing_written(repo: Path, name: str) -> None:
    tip = git("rev-parse", "refs/gdag/logs/main", cwd=repo)
    r = gdag("publish", name, "v", cwd=repo)
    assert r.returncode == 3
    assert r.stderr.startswith("gdag: error: ") and "hint:" in r.stderr
    assert "Traceback" not in r.stderr
    assert git("rev-parse", "refs/gdag/logs/main", cwd=repo) == tip


def test_user_branches_index_and_worktree_untouched(repo: Path) -> None:
    (repo / "f.txt").write_text("mine")
    git("add", "f.txt", cwd=repo)
    git("commit", "-qm", "user commit", cwd=repo)
    head = git("rev-parse", "HEAD", cwd=repo)
    status = git("status", "--porcelain", cwd=repo)
    publish_ok(repo, "x", "1")
    assert git("rev-parse", "HEAD", cwd=repo) == head
    assert git("status", "--porcelain", cwd=repo) == status
    refs = git("for-each-ref", "--format=%(refname)", cwd=repo).split()
    assert all(r.startswith("refs/gdag/") or r.startswith("refs/heads/") for r in refs)


def test_trees_are_written_exactly_as_git_writes_them(repo: Path) -> None:
    """`Store.write_tree` serialises trees itself: for random entries (files beside
    directories of the same prefix, names with `-`, `.`, `0`, `~`, `@`, spaces and
    non-ASCII, every mode gdag writes) its tree id equals `git mktree`'s."""
    import random

    from gdag.repo import MODE_BLOB, MODE_EXEC, MODE_LINK, MODE_TREE, Entry, Store

    store = Store.find(repo)
    blob = store.write_blob(b"x")
    sub = store.write_tree({b"f": Entry(MODE_BLOB, blob)})
    rng = random.Random(11)
    alphabet = ["a", "a-", "a.", "a0", "a~", "@", " ", "é", "b", "A"]
    kinds = {MODE_BLOB: "blob", MODE_EXEC: "blob", MODE_LINK: "blob", MODE_TREE: "tree"}
    for _ in range(60):
        entries = {}
        for _ in range(rng.randint(1, 12)):
            name = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 3))).encode()
            mode = rng.choice(list(kinds))
            entries[name] = Entry(mode, sub if mode == MODE_TREE else blob)
        listing = "".join(
            f"{e.mode:06o} {kinds[e.mode]} {e.sha.decode()}\t{name.decode()}\n"
            for name, e in entries.items()
        )
        made = subprocess.run(
            ["git", "mktree"], input=listing.encode(), cwd=repo, capture_output=True, check=True
        )
        assert store.write_tree(entries).decode() == made.stdout.decode().strip(), listing
    fsck(repo)

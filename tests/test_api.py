"""The Python API (`import gdag`) beside the CLI: the same values, offsets, types and errors.

What the API writes is read back with the real `gdag` command and with git, and
what the command writes is read back with the API. Memory while streaming a
100 MB value is measured in a separate Python process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import define, fsck, gdag, git

import gdag as api

CHAIN = """
[nodes.copy]
run = 'cp "$GDAG_IN_X" "$GDAG_OUT/y"'
inputs = { x = "x" }
publishes = ["y"]

[nodes.broken]
run = 'echo oops >&2; exit 1'
inputs = { x = "x" }
publishes = ["z"]
"""


def test_bytes_round_trip_both_ways(repo: Path) -> None:
    r = api.Repository(repo)
    assert r.log == "main" and r.root == repo
    p = r.publish("photos/new", b"\x00\xffcat")
    assert (p.offset, p.version, p.changed) == (1, 1, True)
    assert gdag("lookup", "photos/new", cwd=repo).stdout == b"\x00\xffcat"
    meta = json.loads(gdag("lookup", "photos/new", "--meta", "--json", cwd=repo).stdout)["meta"]
    assert meta["offset"] == 1 and meta["version"] == 1 and meta["type"] == "bytes"

    assert gdag("publish", "photos/new", "dog", cwd=repo).returncode == 0
    assert r.lookup("photos/new") == b"dog"
    assert r.publish("photos/new", "dog", if_changed=True).changed is False
    p = r.publish("photos/new", "emu")  # a str is published as its UTF-8 text
    assert (p.offset, p.version) == (3, 3)
    assert r.lookup("photos/new") == b"emu"
    events = json.loads(gdag("log", "--json", cwd=repo).stdout)
    assert [e["offset"] for e in events] == [3, 2, 1, 0]
    assert [e.offset for e in r.events()] == [3, 2, 1, 0]
    fsck(repo)


@pytest.mark.parametrize(
    ("type_", "value", "printed"),
    [
        ("int", 42, "42"),
        ("float", 1.5, "1.5"),
        ("bool", True, "true"),
        ("str", "héllo", "héllo"),
        ("json", {"b": [1, None], "a": "x"}, '{"a":"x","b":[1,null]}'),
        ("list[int]", [3, 1, 2], "[3,1,2]"),
        ("dict[str, float]", {"k": 2.0}, '{"k":2.0}'),
        ("int | None", None, "null"),
    ],
)
def test_typed_values_match_the_cli(repo: Path, type_: str, value: object, printed: str) -> None:
    r = api.Repository(repo)
    r.publish("v", value, type=type_)
    assert r.lookup("v") == value
    shown = printed if type_ == "str" else printed + "\n"  # as `gdag lookup` prints them
    assert gdag("lookup", "v", cwd=repo).text == shown
    assert (
        json.loads(gdag("lookup", "v", "--meta", "--json", cwd=repo).stdout)["meta"]["type"]
        == type_
    )
    with r.open_value("v") as f:
        assert f.read() == shown.encode()
    # ... and what the command publishes, the API reads as the same Python value.
    assert gdag("publish", "w", "--type", type_, "--", printed, cwd=repo).returncode == 0
    assert r.lookup("w") == value


def test_text_is_read_as_the_cli_reads_its_argument(repo: Path) -> None:
    r = api.Repository(repo)
    r.publish("n", "7", type="int")
    assert r.lookup("n") == 7
    r.publish("n", 8)  # the type sticks
    assert r.lookup("n") == 8


def test_pydantic_model_values(repo: Path) -> None:
    (repo / "shapes.py").write_text(
        textwrap.dedent(
            """
            from pydantic import BaseModel

            class Point(BaseModel):
                x: int
                y: int
            """
        )
    )
    define(
        repo,
        '[outputs."pt"]\ntype = "shapes:Point"\n[outputs."pts"]\ntype = "list[shapes:Point]"\n',
    )
    r = api.Repository(repo)
    sys.path.insert(0, str(repo))
    try:
        from shapes import Point  # type: ignore[import-not-found]

        r.publish("pt", Point(x=1, y=2))
        got = r.lookup("pt")
        assert type(got).__name__ == "Point" and (got.x, got.y) == (1, 2)
        r.publish("pts", [{"x": 3, "y": 4}])
        assert [(p.x, p.y) for p in r.lookup("pts")] == [(3, 4)]
        assert gdag("lookup", "pt", cwd=repo).text == '{"x":1,"y":2}\n'
        with pytest.raises(api.ValueRefusedError) as refused:
            r.publish("pt", {"x": "not a number", "y": 2})
        assert "value for 'pt' is not a valid shapes:Point: x:" in refused.value.message
    finally:
        sys.path.remove(str(repo))
        sys.modules.pop("shapes", None)


def test_at_offsets_match_the_cli(repo: Path) -> None:
    r = api.Repository(repo)
    for i in range(1, 5):
        r.publish("x", f"v{i}".encode())
    commit = json.loads(gdag("log", "--json", cwd=repo).stdout)[2]["commit"]  # offset 2
    for at in (1, 2, -1, -3, "3", commit[:10]):
        cli = gdag("lookup", "x", "--at", str(at), cwd=repo)
        assert cli.returncode == 0, cli.stderr
        assert r.lookup("x", at=at) == cli.stdout, at
        with r.open_value("x", at=at) as f:
            assert f.read() == cli.stdout
    for bad in (9, -9, "zzzz", "deadbeef"):
        cli = gdag("lookup", "x", "--at", str(bad), cwd=repo)
        with pytest.raises(api.UnknownError) as err:
            r.lookup("x", at=bad)
        assert cli.returncode == err.value.exit_code == 3
        assert cli.stderr.splitlines()[0] == f"gdag: error: {err.value.message}"


def test_history_follows_versions_back(repo: Path) -> None:
    r = api.Repository(repo)
    r.publish("x", b"1")
    r.publish("other", b"o")
    assert gdag("publish", "x", "2", cwd=repo).returncode == 0
    r.publish("x", b"3")
    history = list(r.history("x"))
    assert [(v.version, v.offset) for v in history] == [(3, 4), (2, 3), (1, 1)]
    assert all(v.event == "publish" and v.type == "bytes" and v.size == 1 for v in history)
    assert [r.lookup("x", at=v.offset) for v in history] == [b"3", b"2", b"1"]
    with pytest.raises(api.UnknownError):
        list(r.history("never"))


def test_errors_are_the_cli_errors(repo: Path, tmp_path: Path) -> None:
    r = api.Repository(repo)
    r.publish("n", 1, type="int")
    cases = [
        (lambda: r.publish("n", "abc"), ["publish", "n", "abc"], api.ValueRefusedError),
        (
            lambda: r.publish("n", b"1", type="str"),
            ["publish", "n", "1", "--type", "str"],
            api.ValueRefusedError,
        ),
        (lambda: r.lookup("missing"), ["lookup", "missing"], api.UnknownError),
        (lambda: r.publish("bad//name", b"x"), ["publish", "bad//name", "x"], api.GdagError),
        (
            lambda: r.publish("x", b"1", type="list["),
            ["publish", "x", "1", "--type", "list["],
            api.DefinitionError,
        ),
    ]
    for call, argv, kind in cases:
        cli = gdag(*argv, cwd=repo)
        with pytest.raises(kind) as err:
            call()
        assert cli.returncode == err.value.exit_code == 3, argv
        assert cli.stderr.splitlines()[0] == f"gdag: error: {err.value.message}", argv
        if err.value.hint:
            assert f"hint: {err.value.hint}" in cli.stderr
    # A Python value needs a typed output.
    with pytest.raises(api.ValueRefusedError, match="has type bytes"):
        r.publish("untyped", 5)
    # Not a repository, no log, no directory.
    (tmp_path / "plain").mkdir()
    with pytest.raises(api.NotARepositoryError):
        api.Repository(tmp_path / "plain")
    subprocess.run(["git", "init", "-q", str(tmp_path / "fresh")], check=True)
    with pytest.raises(api.NoLogError) as err:
        api.Repository(tmp_path / "fresh").lookup("x")
    assert err.value.hint == "run `gdag init`"
    with pytest.raises(api.GdagError, match="no such directory"):
        api.Repository(tmp_path / "nowhere")
    # Nothing was written by the refusals.
    assert [e.offset for e in r.events()] == [1, 0]


def test_directory_and_file_values(repo: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("A")
    (src / "sub" / "b.bin").write_bytes(b"\x00B")
    r = api.Repository(repo)
    r.publish("tree", src)
    r.publish("file", src / "a.txt")
    assert r.lookup("file") == b"A"
    with pytest.raises(api.ValueRefusedError, match="directory value"):
        r.lookup("tree")
    out = r.save("tree", tmp_path / "out")
    assert (out / "a.txt").read_text() == "A" and (out / "sub" / "b.bin").read_bytes() == b"\x00B"
    listed = gdag("lookup", "tree", cwd=repo).text.splitlines()
    assert sorted(line.split("\t")[-1] for line in listed) == ["a.txt", "sub/b.bin"]
    with (tmp_path / "a.txt").open("wb") as f:
        f.write(b"streamed")
    with (tmp_path / "a.txt").open("rb") as f:
        r.publish("stream", f)
    assert gdag("lookup", "stream", cwd=repo).stdout == b"streamed"
    fsck(repo)


def test_run_and_follow(repo: Path) -> None:
    define(repo, CHAIN)
    r = api.Repository(repo)
    p = r.publish("x", b"data")
    summary = r.run()
    assert summary.ran == ["copy"] and summary.failed == ["broken"]
    assert not summary.ok
    assert r.lookup("y") == b"data"
    assert r.status() == {"broken": "failed", "copy": "up-to-date"}
    assert r.run().ran == []  # nothing stale

    tip = r.events(limit=1)[0].offset
    follower = r.follow()
    for i in range(3):
        assert gdag("publish", "x", str(i), "--no-run", cwd=repo).returncode == 0
    seen = [e for _, e in zip(range(3), follower, strict=False)]
    assert [e.offset for e in seen] == [tip + 1, tip + 2, tip + 3]
    assert all(e.kind == "publish" and e.outputs == ["x"] for e in seen)
    # From an earlier offset: the events since, oldest first.
    again = r.follow(after=p.offset)
    assert next(again).offset == p.offset + 1
    assert r.run(targets="copy", jobs=1).ran == ["copy"]
    fsck(repo)


def test_import_is_cheap() -> None:
    code = (
        "import sys, gdag; print(sorted(m for m in sys.modules if m.startswith('gdag') "
        "or m in ('dulwich', 'typer', 'rich', 'pydantic', 'networkx')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['gdag']"
    assert set(api.__all__) <= set(dir(api))
    assert all(getattr(api, name) is not None for name in api.__all__)
    with pytest.raises(AttributeError):
        api.NoSuchThing  # noqa: B018
    assert (Path(api.__file__).parent / "py.typed").is_file()


STREAM = """
import hashlib, resource, sys
import gdag

repo = gdag.Repository(sys.argv[1])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
digest, total = hashlib.sha256(), 0
with repo.open_value("big") as f:
    while chunk := f.read(1 << 16):
        digest.update(chunk)
        total += len(chunk)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(digest.hexdigest(), total, (after - before) // 1024)
"""


def test_open_value_streams_100mb_in_bounded_memory(repo: Path, tmp_path: Path) -> None:
    """Half random, half zeros: the zeros compress 1000:1, so a reader that inflated a
    whole compressed chunk at once would hold far more than a chunk."""
    import hashlib
    import os

    big = tmp_path / "big"
    digest = hashlib.sha256()
    with big.open("wb") as f:
        for i in range(100):
            block = os.urandom(1 << 20) if i % 2 else bytes(1 << 20)
            digest.update(block)
            f.write(block)
    assert gdag("publish", "big", "--file", str(big), cwd=repo).returncode == 0
    big.unlink()
    script = tmp_path / "stream.py"
    script.write_text(STREAM)

    def measure() -> tuple[str, int, int]:
        proc = subprocess.run(
            [sys.executable, str(script), str(repo)], capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr
        sha, total, grew = proc.stdout.split()
        return sha, int(total), int(grew)

    sha, total, grew = measure()  # a loose object, inflated here
    assert (sha, total) == (digest.hexdigest(), 100 << 20)
    assert grew < 30, f"peak memory grew by {grew} MiB while streaming"
    git("repack", "-a", "-d", "-q", cwd=repo)  # a packed one, through git cat-file
    sha, total, grew = measure()
    assert (sha, total) == (digest.hexdigest(), 100 << 20)
    assert grew < 30, f"peak memory grew by {grew} MiB while streaming"


def test_large_values_kept_in_lfs_read_as_their_bytes(repo: Path, tmp_path: Path) -> None:
    """A value at or above `[values] large` is a git LFS object: the API reads its
    bytes (not the pointer the state tree holds), as `gdag lookup` does."""
    define(repo, '[values]\nlarge = "1KiB"\n[outputs.t]\ntype = "str"\n')
    blob = bytes(range(256)) * 64  # 16 KiB
    text = "é" * 4096
    assert gdag("publish", "big", "-", cwd=repo, input=blob).returncode == 0
    assert gdag("publish", "t", text, cwd=repo).returncode == 0
    meta = json.loads(gdag("lookup", "big", "--meta", "--json", cwd=repo).stdout)["meta"]
    assert meta["kind"] == "lfs"
    r = api.Repository(repo)
    assert r.lookup("big") == blob
    assert r.lookup("t") == text
    with r.open_value("big") as f:
        assert f.read() == blob
    assert r.save("big", tmp_path / "big.bin").read_bytes() == blob

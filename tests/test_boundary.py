"""Values arrive as they were published: every type x shell and Python consumers.

A shell node's input file holds exactly the bytes `gdag lookup` prints; a Python
parameter's annotation decides how a value is decoded, for typed and untyped
outputs alike; `gdag check` refuses what the run would refuse.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from conftest import define, fsck, gdag, git

# (key, --type or None for an untyped output, bytes published, what lookup prints,
#  the Python annotation of a typed consumer, the value that consumer receives)
TABLE: list[tuple[str, str | None, bytes, bytes, str, object]] = [
    ("bytes", "bytes", b"\x00\xffa\n", b"\x00\xffa\n", "bytes", b"\x00\xffa\n"),
    (
        "str",
        "str",
        "h\u00e9llo\nworld\n".encode(),
        "h\u00e9llo\nworld\n".encode(),
        "str",
        "h\u00e9llo\nworld\n",
    ),
    ("str_bare", "str", b"no newline", b"no newline", "str | None", "no newline"),
    ("int", "int", b"1\n", b"1\n", "int", 1),
    ("float", "float", b"1.5", b"1.5\n", "float", 1.5),
    ("bool", "bool", b"true", b"true\n", "bool", True),
    (
        "json",
        "json",
        b'{"b": [1, null], "a": "x"}',
        b'{"a":"x","b":[1,null]}\n',
        "dict",
        {"a": "x", "b": [1, None]},
    ),
    ("list", "list[int]", b"[1, 2]\n", b"[1,2]\n", "list[int]", [1, 2]),
    ("dict", "dict[str, str]", b'{"k": "v"}', b'{"k":"v"}\n', "dict[str, str]", {"k": "v"}),
    ("optint", "int | None", b"null", b"null\n", "int | None", None),
    ("optstr", "str | None", b'"x y"', b'"x y"\n', "str | None", "x y"),
    ("untyped_bin", None, b"\xff\x00 raw", b"\xff\x00 raw", "bytes | None", b"\xff\x00 raw"),
    ("untyped_text", None, b"plain text\n", b"plain text\n", "str | None", "plain text\n"),
    ("untyped_int", None, b"7\n", b"7\n", "int | None", 7),
    ("model", "shapes:Point", b'{"y": 2, "x": 1}', b'{"x":1,"y":2}\n', "Point", None),
    ("schema", "schema:pair.json", b"[1, 2]", b"[1,2]\n", "object", [1, 2]),
]
# How the typed consumer's value is shown when it is no plain Python literal.
SHOWN = {"model": "Point(x=1, y=2)"}


def nodes_for(key: str, ann: str) -> tuple[str, str]:
    """The gdag.toml nodes and Python functions consuming `in/<key>`."""
    toml = f"""
    [nodes.sh_{key}]
    run = 'cat "$GDAG_IN_V" > "$GDAG_OUT/sh/{key}"'
    inputs = {{ v = "in/{key}" }}
    publishes = ["sh/{key}"]
    [nodes.py_{key}]
    python = "consumers:typed_{key}"
    inputs = {{ v = "in/{key}" }}
    publishes = ["py/{key}"]
    [nodes.pyb_{key}]
    python = "consumers:raw_{key}"
    inputs = {{ v = "in/{key}" }}
    publishes = ["pyb/{key}"]
    """
    code = f"""
from shapes import Point

def typed_{key}(v: {ann}) -> str:
    return repr(v)

def raw_{key}(v: bytes | None) -> str:
    return repr(v)
"""
    return textwrap.dedent(toml), code


def lookup(repo: Path, output: str) -> bytes:
    r = gdag("lookup", output, cwd=repo)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_every_type_arrives_as_published(repo: Path) -> None:
    toml, code = "", ""
    for key, typ, _, _, ann, _ in TABLE:
        if typ is not None:
            toml += f'[outputs."in/{key}"]\ntype = "{typ}"\n'
        t, c = nodes_for(key, ann)
        toml += t
        code += c
    (repo / "consumers.py").write_text(code)
    (repo / "shapes.py").write_text(
        "from pydantic import BaseModel\n\nclass Point(BaseModel):\n    x: int\n    y: int\n"
    )
    (repo / "pair.json").write_text('{"type": "array", "items": {"type": "integer"}}')
    define(repo, toml)
    for key, _, published, _, _, _ in TABLE:
        r = gdag("publish", f"in/{key}", "-", "--no-run", cwd=repo, input=published)
        assert r.returncode == 0, (key, r.stderr)
    r = gdag("run", cwd=repo)
    assert r.returncode == 0, r.stderr
    for key, _, _, shown, _, received in TABLE:
        assert lookup(repo, f"in/{key}") == shown, key
        # a shell node reads exactly what lookup prints ...
        assert lookup(repo, f"sh/{key}") == shown, key
        # ... a Python parameter gets what its annotation asks for ...
        typed = SHOWN.get(key, repr(received))
        assert lookup(repo, f"py/{key}").decode() == typed, key
        # ... and `bytes` the value as it was published.
        assert lookup(repo, f"pyb/{key}").decode() == repr(shown), key
    fsck(repo)


def test_shell_values_sum_as_written(repo: Path) -> None:
    """The issue's case: `1\\n` written into an int output reaches the next shell node as
    `1\\n`, so a family concatenated sums to 6, not 123."""
    define(
        repo,
        """
        [outputs."fam/*"]
        type = "int"
        [nodes.make]
        run = 'for i in 1 2 3; do echo $i > "$GDAG_OUT/fam/$i"; done'
        inputs = { go = "go" }
        publishes = ["fam/*"]
        [nodes.sum]
        run = 'cat "$GDAG_IN_FAM"/* | awk "{s+=\\$1} END {print s}" > "$GDAG_OUT/total"'
        inputs = { fam = "fam/*" }
        publishes = ["total"]
        """,
    )
    r = gdag("publish", "go", "x", cwd=repo)
    assert r.returncode == 0, r.stderr
    assert lookup(repo, "fam/2") == b"2\n"
    assert lookup(repo, "total") == b"6\n"


def test_a_directory_into_bytes_is_refused_by_check_as_by_the_run(repo: Path) -> None:
    (repo / "fns.py").write_text("def f(d: bytes) -> int:\n    return len(d)\n")
    define(
        repo,
        """
        [outputs.tree]
        type = "dir"
        [nodes.f]
        python = "fns:f"
        inputs = { d = "tree" }
        publishes = ["n"]
        """,
    )
    r = gdag("check", cwd=repo)
    assert r.returncode == 3
    assert "input 'd' is bound to output 'tree' of type dir, but fns:f takes bytes" in r.stderr


def test_an_untyped_directory_into_bytes_fails_the_run_with_the_reason(repo: Path) -> None:
    (repo / "fns.py").write_text("def f(d: bytes | None) -> int:\n    return len(d)\n")
    define(
        repo,
        """
        [nodes.f]
        python = "fns:f"
        inputs = { d = "tree" }
        publishes = ["n"]
        """,
    )
    (repo / "src").mkdir()
    (repo / "src" / "a").write_text("a")
    assert gdag("check", cwd=repo).returncode == 0
    r = gdag("publish", "tree", "--dir", "src", cwd=repo)
    assert r.returncode == 1
    log = git("show", "refs/gdag/logs/main:nodes/f/@log", cwd=repo)
    assert "input 'tree' is a directory value, which arrives as a path, not as bytes" in log

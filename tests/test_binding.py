"""Binding types at compile time, values per type at publish time, dynamic fan-out."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from conftest import fsck, gdag, git

from gdag.binding import accepts, from_annotation
from gdag.errors import ValueRefusedError
from gdag.types import canonical_json, decode_text_value, parse_type

# (producer, consumer, accepted)
BINDINGS = [
    ("int", "int", True),
    ("int", "float", True),
    ("float", "int", False),
    ("str", "int", False),
    ("int", "str", False),
    ("str", "str", True),
    ("bool", "bool", True),
    ("bool", "int", False),
    ("int", "bool", False),
    ("str", "bytes", True),
    ("int", "bytes", True),
    ("json", "bytes", True),
    ("dir", "bytes", False),
    ("bytes", "bytes", True),
    ("bytes", "str", False),
    ("bytes", "int", False),
    ("dir", "dir", True),
    ("dir", "str", False),
    ("str", "dir", False),
    ("int", "json", True),
    ("str", "json", True),
    ("list[int]", "json", True),
    ("bytes", "json", False),
    ("dir", "json", False),
    ("json", "int", False),
    ("list[int]", "list[int]", True),
    ("list[int]", "list[float]", True),
    ("list[float]", "list[int]", False),
    ("list[str]", "list[int]", False),
    ("dict[str, int]", "dict[str, float]", True),
    ("dict[str, str]", "dict[str, int]", False),
    ("list[int]", "dict[str, int]", False),
    ("int", "int | None", True),
    ("int | None", "int | None", True),
    ("int | None", "int", False),
    ("int | None", "float | None", True),
    ("str | None", "int | None", False),
    ("int | None", "bytes", True),
    ("m:A", "m:A", True),
    ("m:A", "m:B", False),
    ("m:A", "json", True),
    ("json", "m:A", False),
    ("list[int | None]", "list[float | None]", True),
]


@pytest.mark.parametrize(("producer", "consumer", "ok"), BINDINGS)
def test_binding_rules(producer: str, consumer: str, ok: bool) -> None:
    assert accepts(parse_type(consumer), parse_type(producer)) is ok


@pytest.mark.parametrize(
    ("annotation", "expected"),
    [
        (int, "int"),
        (float, "float"),
        (str, "str"),
        (bytes, "bytes"),
        (bool, "bool"),
        (list[int], "list[int]"),
        (dict[str, float], "dict[str, float]"),
        (int | None, "int | None"),
        (Path, "dir"),
        (dict, "json"),
    ],
)
def test_annotations_map_to_types(annotation: object, expected: str) -> None:
    assert str(from_annotation(annotation)) == expected


# (type, published bytes, accepted)
VALUES = [
    ("str", b"plain", True),
    ("str", "\u00e9\u2713".encode(), True),
    ("str", b"\xff\xfe", False),
    ("str", b"", True),
    ("int", b"1", True),
    ("int", b"-7", True),
    ("int", b"1.5", False),
    ("int", b"1e3", False),
    ("int", b"10" * 300, True),
    ("int", b"9" * 5000, False),
    ("int", b"true", False),
    ("float", b"NaN", False),
    ("float", b"Infinity", False),
    ("float", b"1e400", False),
    ("float", b"3", True),
    ("bool", b"false", True),
    ("bool", b"0", False),
    ("json", b"[" * 1000 + b"]" * 1000, False),
    ("json", b"[" * 100 + b"]" * 100, True),
    ("json", b"{}", True),
    ("json", b"", False),
    ("list[str]", b'["a", "b"]', True),
    ("list[str]", b'["a", 1]', False),
    ("dict[str, bool]", b'{"x": true}', True),
    ("int | None", b"null", True),
    ("str | None", b"null", True),
]


@pytest.mark.parametrize(("typ", "data", "ok"), VALUES)
def test_values_per_type(typ: str, data: bytes, ok: bool) -> None:
    if ok:
        canonical_json(decode_text_value(data, parse_type(typ), "out"))
    else:
        with pytest.raises(ValueRefusedError) as err:
            canonical_json(decode_text_value(data, parse_type(typ), "out"))
        assert err.value.exit_code == 3


def test_deep_json_refused_cleanly_through_cli(repo: Path) -> None:
    r = gdag("publish", "deep", "-", "--type", "json", cwd=repo, input=b"[" * 5000 + b"]" * 5000)
    assert r.returncode == 3 and "nested too deeply" in r.stderr and "Traceback" not in r.stderr


def refs(repo: Path) -> str:
    return git("for-each-ref", "--format=%(refname) %(objectname)", cwd=repo)


def test_refused_binding_leaves_the_log_unchanged(repo: Path) -> None:
    (repo / "fns.py").write_text("def f(x: int) -> int:\n    return x\n")
    (repo / "gdag.toml").write_text(
        textwrap.dedent("""
        [outputs.a]
        type = "str"
        [nodes.f]
        python = "fns:f"
        inputs = { x = "a" }
        publishes = ["b"]
    """)
    )
    before = refs(repo)
    for args in (["run"], ["publish", "a", "text"], ["status"]):
        r = gdag(*args, cwd=repo)
        assert r.returncode == 3
        assert "input 'x' is bound to output 'a' of type str, but fns:f takes int" in r.stderr
        assert r.stderr.startswith("gdag: error: gdag.toml: [nodes.f]")
    assert refs(repo) == before


def test_return_annotation_types_an_undeclared_output(repo: Path) -> None:
    (repo / "fns.py").write_text(
        textwrap.dedent("""
        def count(s: str) -> int:
            return len(s)
        def half(n: float) -> float:
            return n / 2
        def shout(s: str) -> str:
            return s.upper()
    """)
    )
    base = """
        [outputs.s]
        type = "str"
        [nodes.count]
        python = "fns:count"
        inputs = { s = "s" }
        publishes = ["n"]
        [nodes.half]
        python = "fns:half"
        inputs = { n = "n" }
        publishes = ["h"]
    """
    (repo / "gdag.toml").write_text(textwrap.dedent(base))
    assert gdag("publish", "s", "abcd", cwd=repo).returncode == 0
    assert gdag("lookup", "h", cwd=repo).stdout == b"2.0\n"
    meta = json.loads(git("show", "refs/gdag/logs/main:outputs/n/@meta.json", cwd=repo))
    assert meta["type"] == "int"
    bad = base + '[nodes.shout]\npython = "fns:shout"\ninputs = { s = "n" }\npublishes = ["loud"]\n'
    (repo / "gdag.toml").write_text(textwrap.dedent(bad))
    r = gdag("run", cwd=repo)
    assert r.returncode == 3 and "of type int, but fns:shout takes str" in r.stderr


def test_untyped_output_checked_when_the_value_arrives(repo: Path) -> None:
    (repo / "fns.py").write_text("def inc(x: int) -> int:\n    return x + 1\n")
    (repo / "gdag.toml").write_text(
        '[nodes.inc]\npython = "fns:inc"\ninputs = { x = "raw" }\npublishes = ["out"]\n'
    )
    assert gdag("publish", "raw", "41", cwd=repo).returncode == 0
    assert gdag("lookup", "out", cwd=repo).stdout == b"42\n"
    r = gdag("publish", "raw", "forty", cwd=repo)
    assert r.returncode == 1 and "not a valid int" in r.stderr


def test_dynamic_fan_out_two_levels(repo: Path) -> None:
    (repo / "gdag.toml").write_text(
        textwrap.dedent("""
        [outputs."chunks/**"]
        type = "str"
        [nodes.split]
        run = 'for p in $(cat "$GDAG_IN_DOC"); do printf "$p" > "$GDAG_OUT/parts/$p"; done'
        inputs = { doc = "doc" }
        publishes = ["parts/*"]
        [nodes.chunk]
        run = '''
          for f in "$GDAG_IN_PARTS"/*; do
            p=$(basename "$f"); mkdir -p "$GDAG_OUT/chunks/$p"
            for c in $(cat "$f" | fold -w1); do printf "$c" > "$GDAG_OUT/chunks/$p/$c"; done
          done'''
        inputs = { parts = "parts/*" }
        publishes = ["chunks/**"]
        [nodes.collect]
        run = 'cd "$GDAG_IN_ALL" && find . -type f | sort | tr "\\n" " " > "$GDAG_OUT/index"'
        inputs = { all = "chunks/**" }
        publishes = ["index"]
    """)
    )
    plan = gdag("run", "--dry-run", cwd=repo)
    assert plan.returncode == 0
    assert gdag("publish", "doc", "ab cd", cwd=repo).returncode == 0
    listing = gdag("lookup", "chunks/**", cwd=repo).text.split()
    assert listing == ["chunks/ab/a", "chunks/ab/b", "chunks/cd/c", "chunks/cd/d"]
    assert gdag("lookup", "index", cwd=repo).text == "./ab/a ./ab/b ./cd/c ./cd/d "
    meta = json.loads(git("show", "refs/gdag/logs/main:outputs/chunks/ab/a/@meta.json", cwd=repo))
    assert meta["type"] == "str"
    fsck(repo)


def test_stubs_let_mypy_catch_a_wrongly_typed_node_body(repo: Path) -> None:
    import subprocess
    import sys

    (repo / "gdag.toml").write_text(
        textwrap.dedent("""
        [outputs.words]
        type = "str"
        [outputs."scores/*"]
        type = "int"
        [nodes.summary]
        python = "nodes:summary"
        inputs = { words = "words", scores = "scores/*", raw = "raw" }
        publishes = ["summary"]
    """)
    )
    good = textwrap.dedent("""
        from gdag_types import SummaryInputs

        def summary(inputs: SummaryInputs) -> str:
            total = sum((inputs.scores or {}).values())
            return f"{(inputs.words or '').upper()} {total} {len(inputs.raw or b'')}"
    """)
    (repo / "nodes.py").write_text(good)
    r = gdag("check", "--stubs", "gdag_types.py", cwd=repo)
    assert r.returncode == 0, r.stderr
    stub = (repo / "gdag_types.py").read_text()
    assert "class SummaryInputs" in stub and "scores: dict[str, int] | None" in stub

    def mypy() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "nodes.py"],
            cwd=repo,
            capture_output=True,
            text=True,
        )

    assert mypy().returncode == 0, mypy().stdout
    (repo / "nodes.py").write_text(good.replace("inputs.words or ''", "inputs.words or 0"))
    bad = mypy()
    assert bad.returncode == 1 and "nodes.py" in bad.stdout and "error" in bad.stdout
    # And the container is what the node really receives at run time.
    (repo / "nodes.py").write_text(good)
    for name, v in (("scores/a", "2"), ("scores/b", "3"), ("raw", "xyz")):
        assert gdag("publish", name, v, "--no-run", cwd=repo).returncode == 0
    assert gdag("publish", "words", "hi", cwd=repo).returncode == 0
    assert gdag("lookup", "summary", cwd=repo).stdout == b"HI 5 3"


def test_check_reports_and_changes_nothing(repo: Path) -> None:
    before = refs(repo)
    (repo / "gdag.toml").write_text('[nodes.x]\nrun = "true"\ninputs = { i = "a" }\n')
    r = gdag("check", "--json", cwd=repo)
    assert r.returncode == 0 and json.loads(r.stdout) == {"ok": True, "nodes": 1, "outputs": 0}
    (repo / "gdag.toml").write_text('[nodes.x]\nrun = "true"\nwhen = "never"\n')
    r = gdag("check", cwd=repo)
    assert r.returncode == 3 and "when = 'never'" in r.stderr
    assert refs(repo) == before


def test_pydantic_model_type_validates_and_arrives_as_the_model(repo: Path) -> None:
    (repo / "models.py").write_text(
        textwrap.dedent("""
        from pydantic import BaseModel

        class Photo(BaseModel):
            path: str
            width: int
    """)
    )
    (repo / "nodes.py").write_text(
        textwrap.dedent("""
        from models import Photo

        def area(photo: Photo) -> int:
            assert isinstance(photo, Photo)
            return photo.width * 2
    """)
    )
    (repo / "gdag.toml").write_text(
        textwrap.dedent("""
        [outputs.photo]
        type = "models:Photo"
        [nodes.area]
        python = "nodes:area"
        inputs = { photo = "photo" }
        publishes = ["area"]
    """)
    )
    r = gdag("publish", "photo", '{"width": 5, "path": "a.jpg"}', cwd=repo)
    assert r.returncode == 0, r.stderr
    assert gdag("lookup", "photo", cwd=repo).stdout == b'{"path":"a.jpg","width":5}\n'
    assert gdag("lookup", "area", cwd=repo).stdout == b"10\n"
    r = gdag("publish", "photo", '{"width": "wide", "path": "a.jpg"}', cwd=repo)
    assert r.returncode == 3 and "models:Photo" in r.stderr and "width" in r.stderr


def test_json_schema_file_types(repo: Path) -> None:
    (repo / "schemas").mkdir()
    (repo / "schemas" / "photo.json").write_text(
        json.dumps(
            {
                "type": "object",
                "required": ["path", "width"],
                "properties": {
                    "path": {"type": "string", "minLength": 1},
                    "width": {"type": "integer", "minimum": 1},
                    "tags": {"type": "array", "items": {"type": "string"}},
                },
                "additionalProperties": False,
            }
        )
    )
    (repo / "gdag.toml").write_text('[outputs.photo]\ntype = "schema:schemas/photo.json"\n')
    ok = gdag("publish", "photo", '{"path": "a.jpg", "width": 3, "tags": ["x"]}', cwd=repo)
    assert ok.returncode == 0, ok.stderr
    for bad, why in (
        ('{"path": "a.jpg"}', "value: 'width' is a required property"),
        ('{"path": "a.jpg", "width": 0}', "value.width: 0 is less than the minimum of 1"),
        ('{"path": "a.jpg", "width": 2, "tags": [1]}', "value.tags[0]: 1 is not of type 'string'"),
        (
            '{"path": "a.jpg", "width": 2, "size": 9}',
            "value: Additional properties are not allowed ('size' was unexpected)",
        ),
    ):
        r = gdag("publish", "photo", bad, cwd=repo)
        assert r.returncode == 3 and why in r.stderr and "schema:schemas/photo.json" in r.stderr
    assert accepts(parse_type("schema:schemas/photo.json"), parse_type("schema:schemas/photo.json"))
    assert not accepts(parse_type("schema:schemas/photo.json"), parse_type("json"))
    assert accepts(parse_type("json"), parse_type("schema:schemas/photo.json"))

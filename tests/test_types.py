"""Type expressions, validation and canonical encoding."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import gdag

from gdag.errors import GdagError, ValueRefusedError
from gdag.types import canonical_json, decode_text_value, parse_type, stored_to_display


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("int", "int"),
        ("list[int]", "list[int]"),
        ("dict[str,int]", "dict[str, int]"),
        ("int|None", "int | None"),
        ("list[dict[str, float | None]]", "list[dict[str, float | None]]"),
        ("pkg.mod:Model", "pkg.mod:Model"),
        (" json ", "json"),
    ],
)
def test_parse_type(text: str, canonical: str) -> None:
    assert str(parse_type(text)) == canonical


@pytest.mark.parametrize("text", ["", "integer", "list", "dict[int, str]", "list[int", "int |"])
def test_bad_types(text: str) -> None:
    with pytest.raises(GdagError) as err:
        parse_type(text)
    assert err.value.exit_code == 3


@pytest.mark.parametrize(
    ("typ", "data", "stored"),
    [
        ("str", b"hello \xe2\x9c\x93\n", b'"hello \xe2\x9c\x93\\n"'),
        ("int", b" 42\n", b"42"),
        ("float", b"1", b"1.0"),
        ("float", b"2.5", b"2.5"),
        ("bool", b"true", b"true"),
        ("json", b'{"b": 1, "a": [1, 2]}', b'{"a":[1,2],"b":1}'),
        ("list[int]", b"[1,2,3]", b"[1,2,3]"),
        ("dict[str, int]", b'{"z":1,"a":2}', b'{"a":2,"z":1}'),
        ("int | None", b"null", b"null"),
    ],
)
def test_valid_values_are_stored_canonically(typ: str, data: bytes, stored: bytes) -> None:
    assert canonical_json(decode_text_value(data, parse_type(typ), "o")) == stored


@pytest.mark.parametrize(
    ("typ", "data"),
    [
        ("int", b"abc"),
        ("int", b"1.5"),
        ("int", b"true"),
        ("float", b'"x"'),
        ("float", b"NaN"),
        ("bool", b"1"),
        ("str", b"\xff\xfe"),
        ("list[int]", b'[1,"a"]'),
        ("dict[str, int]", b"[1]"),
        ("int", b"null"),
        ("json", b"{"),
    ],
)
def test_invalid_values_are_refused(typ: str, data: bytes) -> None:
    with pytest.raises(ValueRefusedError) as err:
        decode_text_value(data, parse_type(typ), "out/x")
    assert "out/x" in err.value.message
    assert typ.split("[")[0] in err.value.message


def test_display_of_str_is_the_text_itself() -> None:
    assert stored_to_display(b'"a\\nb"', parse_type("str")) == b"a\nb"
    assert stored_to_display(b"42", parse_type("int")) == b"42\n"
    assert stored_to_display(b"\x00\x01", parse_type("bytes")) == b"\x00\x01"


@pytest.mark.parametrize(
    ("typ", "data", "says"),
    [
        ("int", b"forty-two", "'forty-two' is not one (it is written as JSON: 42)"),
        ("int | None", b"many", "(it is written as JSON: 42)"),
        ("bool", b"yes", "(it is written as JSON: true or false)"),
        ("float", b"pi", "(it is written as JSON: 1.5 or 42)"),
        ("list[int]", b"abc", "'abc' is not a JSON value"),
    ],
)
def test_unparsable_values_say_how_they_are_written(typ: str, data: bytes, says: str) -> None:
    with pytest.raises(ValueRefusedError) as info:
        decode_text_value(data, parse_type(typ), "o")
    assert info.value.message.startswith(f"value for 'o' is not a valid {parse_type(typ)}: ")
    assert says in info.value.message


# -- schema:path.json types, checked by jsonschema -------------------------------------


def declare_schema(repo: Path, files: dict[str, object], output: str = "doc") -> str:
    """Write the JSON Schema files (the first is the output's type) and gdag.toml."""
    for name, schema in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(schema if isinstance(schema, str) else json.dumps(schema))
    ref = f"schema:{next(iter(files))}"
    (repo / "gdag.toml").write_text(f'[outputs.{output}]\ntype = "{ref}"\n')
    return ref


def test_schema_enum_tells_true_from_one(repo: Path) -> None:
    declare_schema(repo, {"schemas/level.json": {"enum": [1, 2]}})
    assert gdag("publish", "doc", "1", cwd=repo).returncode == 0
    r = gdag("publish", "doc", "true", cwd=repo)
    assert r.returncode == 3, r.stderr
    assert (
        "value for 'doc' is not a valid schema:schemas/level.json: value: True is not one of [1, 2]"
        in r.stderr
    )
    assert gdag("lookup", "doc", cwd=repo).stdout == b"1\n"


def test_schema_array_form_items_checks_each_position(repo: Path) -> None:
    declare_schema(
        repo,
        {
            "schemas/pair.json": {
                "$schema": "http://json-schema.org/draft-07/schema#",
                "type": "object",
                "properties": {
                    "items": {
                        "type": "array",
                        "items": [{"type": "integer"}, {"type": "string"}, {"type": "boolean"}],
                    }
                },
            }
        },
    )
    assert gdag("publish", "doc", '{"items": [1, "a", true, "extra"]}', cwd=repo).returncode == 0
    r = gdag("publish", "doc", '{"items": [1, "a", "no"]}', cwd=repo)
    assert r.returncode == 3, r.stderr
    assert "value.items[2]: 'no' is not of type 'boolean'" in r.stderr
    assert "Traceback" not in r.stderr


def test_array_form_items_is_prefix_items_in_the_latest_draft(repo: Path) -> None:
    declare_schema(repo, {"schemas/pair.json": {"items": [{"type": "integer"}]}})
    r = gdag("publish", "doc", "[1]", cwd=repo)
    assert r.returncode == 3, r.stderr
    assert "schemas/pair.json is not a valid schema: at #/items:" in r.stderr
    assert "prefixItems" in r.stderr and "draft-07" in r.stderr
    declare_schema(repo, {"schemas/pair.json": {"prefixItems": [{"type": "integer"}]}})
    assert gdag("publish", "doc", '[1, "x"]', cwd=repo).returncode == 0
    r = gdag("publish", "doc", '["x"]', cwd=repo)
    assert r.returncode == 3 and "value[0]: 'x' is not of type 'integer'" in r.stderr


def test_schema_refs_resolve_within_the_repository(repo: Path) -> None:
    declare_schema(
        repo,
        {
            "schemas/package.json": {
                "type": "object",
                "properties": {
                    "name": {"$ref": "common/defs.json#/$defs/name"},
                    "authors": {"type": "array", "items": {"$ref": "common/person.json"}},
                },
            },
            "schemas/common/defs.json": {"$defs": {"name": {"type": "string", "minLength": 1}}},
            "schemas/common/person.json": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"$ref": "defs.json#/$defs/name"}},
            },
        },
    )
    good = '{"name": "gdag", "authors": [{"name": "Ada"}]}'
    assert gdag("publish", "doc", good, cwd=repo).returncode == 0
    r = gdag(
        "publish", "doc", '{"name": "gdag", "authors": [{"name": "Ada"}, {"name": ""}]}', cwd=repo
    )
    assert r.returncode == 3, r.stderr
    assert "value.authors[1].name: '' should be non-empty" in r.stderr


def test_schema_ref_to_the_network_is_refused_without_a_request(repo: Path) -> None:
    import http.server
    import threading

    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            body = b'{"type": "string"}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/name.json"
        declare_schema(repo, {"schemas/doc.json": {"properties": {"name": {"$ref": url}}}})
        r = gdag("publish", "doc", "{}", cwd=repo)
    finally:
        server.shutdown()
        server.server_close()
    assert r.returncode == 3, r.stderr
    assert f"$ref '{url}' in schemas/doc.json is on the network ({url})" in r.stderr
    assert "gdag never downloads schemas" in r.stderr and "hint:" in r.stderr
    assert requests == []


def test_schema_ref_leaving_the_repository_is_refused(repo: Path) -> None:
    (repo.parent / "outside.json").write_text('{"type": "string"}')
    declare_schema(repo, {"schemas/doc.json": {"items": {"$ref": "../../outside.json"}}})
    r = gdag("publish", "doc", '["x"]', cwd=repo)
    assert r.returncode == 3, r.stderr
    assert "$ref '../../outside.json' in schemas/doc.json leaves the repository" in r.stderr
    (repo / "gdag.toml").write_text('[outputs.doc]\ntype = "schema:../outside.json"\n')
    r = gdag("publish", "doc", '"x"', cwd=repo)
    assert r.returncode == 3 and "is outside the repository" in r.stderr, r.stderr


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('{"type": "strin"}', "schemas/doc.json is not a valid schema: at #/type:"),
        (
            '{"minimum": "1"}',
            "schemas/doc.json is not a valid schema: at #/minimum: '1' is not of type 'number'",
        ),
        ('{"pattern": "("}', "schemas/doc.json is not a valid schema: at #/pattern:"),
        ('{"type": ', "schemas/doc.json is not JSON"),
        ('{"$schema": "https://example.com/mine", "type": "string"}', "names an unknown $schema"),
        ('{"$ref": "#/$defs/none"}', "$ref '#/$defs/none' in schemas/doc.json points to nothing"),
        ('{"$ref": "missing.json"}', "names a missing file (schemas/missing.json)"),
    ],
)
def test_bad_schema_files_are_refused_naming_the_file(repo: Path, text: str, says: str) -> None:
    declare_schema(repo, {"schemas/doc.json": text})
    r = gdag("publish", "doc", '"x"', cwd=repo)
    assert r.returncode == 3, r.stderr
    assert "schema:schemas/doc.json" in r.stderr and says in r.stderr
    assert "Traceback" not in r.stderr


def test_missing_schema_file_is_refused(repo: Path) -> None:
    (repo / "gdag.toml").write_text('[outputs.doc]\ntype = "schema:schemas/none.json"\n')
    r = gdag("publish", "doc", '"x"', cwd=repo)
    assert r.returncode == 3 and "cannot load JSON Schema 'schema:schemas/none.json'" in r.stderr


# (value, refusal or None): oneOf, pattern, patternProperties, dependentRequired
KEYWORD_VALUES = [
    ('{"id": "ab-12"}', None),
    ('{"id": "AB-12"}', "value.id: 'AB-12' does not match '^[a-z]+-[0-9]+$'"),
    ('{"id": "ab-1", "size": 3}', None),
    ('{"id": "ab-1", "size": "large"}', None),
    ('{"id": "ab-1", "size": 2.5}', "value.size: 2.5 is not valid under any of the given schemas"),
    ('{"id": "ab-1", "x-color": "red"}', None),
    ('{"id": "ab-1", "x-color": 7}', "value.x-color: 7 is not of type 'string'"),
    ('{"id": "ab-1", "card": "1234", "expiry": "12/30"}', None),
    ('{"id": "ab-1", "card": "1234"}', "value: 'expiry' is a dependency of 'card'"),
]


@pytest.mark.parametrize(("value", "refusal"), KEYWORD_VALUES)
def test_schema_keywords_beyond_the_old_subset(repo: Path, value: str, refusal: str | None) -> None:
    declare_schema(
        repo,
        {
            "schemas/item.json": {
                "type": "object",
                "required": ["id"],
                "properties": {
                    "id": {"type": "string", "pattern": "^[a-z]+-[0-9]+$"},
                    "size": {"oneOf": [{"type": "integer"}, {"enum": ["small", "large"]}]},
                },
                "patternProperties": {"^x-": {"type": "string"}},
                "dependentRequired": {"card": ["expiry"]},
            }
        },
    )
    r = gdag("publish", "doc", value, cwd=repo)
    if refusal is None:
        assert r.returncode == 0, r.stderr
    else:
        assert r.returncode == 3 and refusal in r.stderr, r.stderr


def hot_path_modules(repo: Path, *args: str) -> tuple[int, list[str]]:
    """Run gdag in a fresh interpreter; return its status and which schema libraries it imported."""
    code = (
        "import sys; from gdag.main import main; rc = main(sys.argv[1:]); "
        "found = sorted(m for m in ('jsonschema', 'referencing', 'gdag.schema') if m in sys.modules); "
        "print(rc, found, file=sys.stderr)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=repo, capture_output=True, text=True
    )
    rc, found = proc.stderr.strip().splitlines()[-1].split(" ", 1)
    return int(rc), ast.literal_eval(found)


def test_publish_of_other_types_does_not_import_jsonschema(repo: Path) -> None:
    declare_schema(repo, {"schemas/doc.json": {"type": "object"}})
    with (repo / "gdag.toml").open("a") as f:
        f.write('[outputs.name]\ntype = "str"\n')
    assert hot_path_modules(repo, "publish", "name", "hello") == (0, [])
    assert hot_path_modules(repo, "lookup", "name") == (0, [])
    assert hot_path_modules(repo, "publish", "doc", "{}") == (
        0,
        ["gdag.schema", "jsonschema", "referencing"],
    )
    assert hot_path_modules(repo, "lookup", "doc") == (0, [])

"""JSON Schema rules as tables: keywords, dialects, formats, $refs, paths and reloading."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from jsonschema import validators

from gdag import types
from gdag.errors import DefinitionError, ValueRefusedError
from gdag.schema import FORMATS, _formats, check_schema, value_path

DRAFT7 = "http://json-schema.org/draft-07/schema#"
DRAFT4 = "http://json-schema.org/draft-04/schema#"


def write(root: Path, files: dict[str, Any]) -> None:
    for name, contents in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(contents if isinstance(contents, str) else json.dumps(contents))


def check(root: Path, schema: Any, value: Any, name: str = "s.json") -> str | None:
    """The refusal's reason for `value`, or None when the schema takes it."""
    write(root, {name: schema})
    try:
        check_schema(value, f"schema:{name}", str(root), ValueRefusedError)
    except ValueRefusedError as exc:
        return exc.message
    return None


# (schema, value, refusal or None): every keyword family, and the traps of the old checker
VALUES: list[tuple[Any, Any, str | None]] = [
    ({"enum": [1, 2]}, True, "value: True is not one of [1, 2]"),
    ({"enum": [1, 2]}, 1, None),
    ({"enum": [True]}, 1, "value: 1 is not one of [True]"),
    ({"const": 0}, False, "value: 0 was expected"),
    ({"type": "integer"}, True, "value: True is not of type 'integer'"),
    ({"type": "integer"}, 1.0, None),  # JSON Schema: 1.0 is an integer
    ({"type": ["string", "null"]}, None, None),
    ({"type": "object", "required": ["a"]}, {}, "value: 'a' is a required property"),
    (
        {"additionalProperties": False, "properties": {"a": {}}},
        {"a": 1, "b": 2},
        "value: Additional properties are not allowed ('b' was unexpected)",
    ),
    (
        {"oneOf": [{"type": "integer"}, {"minimum": 0}]},
        5,
        "value: 5 is valid under each of {'minimum': 0}, {'type': 'integer'}",
    ),
    ({"oneOf": [{"type": "integer"}, {"type": "string"}]}, "x", None),
    (
        {"anyOf": [{"type": "integer"}, {"type": "string"}]},
        [],
        "value: [] is not valid under any of the given schemas",
    ),
    ({"allOf": [{"minimum": 1}, {"maximum": 3}]}, 4, "value: 4 is greater than the maximum of 3"),
    ({"not": {"type": "string"}}, "x", "value: 'x' should not be valid under {'type': 'string'}"),
    (
        {"if": {"type": "string"}, "then": {"minLength": 2}, "else": {"minimum": 0}},
        "a",
        "value: 'a' is too short",
    ),
    (
        {"if": {"type": "string"}, "then": {"minLength": 2}, "else": {"minimum": 0}},
        -1,
        "value: -1 is less than the minimum of 0",
    ),
    ({"pattern": "b"}, "abc", None),  # pattern searches, it is not anchored
    ({"pattern": "^[a-z]+$"}, "abC", "value: 'abC' does not match '^[a-z]+$'"),
    (
        {"patternProperties": {"^x-": {"type": "string"}}},
        {"x-a": 1},
        "value.x-a: 1 is not of type 'string'",
    ),
    ({"propertyNames": {"maxLength": 2}}, {"abc": 1}, "value: 'abc' is too long"),
    (
        {"dependentRequired": {"card": ["expiry"]}},
        {"card": 1},
        "value: 'expiry' is a dependency of 'card'",
    ),
    (
        {"dependentSchemas": {"card": {"required": ["cvc"]}}},
        {"card": 1},
        "value: 'cvc' is a required property",
    ),
    (
        {"prefixItems": [{"type": "integer"}], "items": False},
        [1, 2],
        "value: Expected at most 1 item but found 1 extra: 2",
    ),
    (
        {"contains": {"type": "string"}, "minContains": 2},
        ["a", 1],
        "value: Too few items match the given schema (expected at least 2 but only 1 matched)",
    ),
    ({"uniqueItems": True}, [1, True], None),  # true is not 1
    ({"uniqueItems": True}, [1, 1], "value: [1, 1] has non-unique elements"),
    ({"multipleOf": 0.5}, 1.25, "value: 1.25 is not a multiple of 0.5"),
    ({"exclusiveMinimum": 0}, 0, "value: 0 is less than or equal to the minimum of 0"),
    ({"minProperties": 1}, {}, "value: {} should be non-empty"),
    (
        {"properties": {"a": True}, "unevaluatedProperties": False},
        {"a": 1, "b": 2},
        "value: Unevaluated properties are not allowed ('b' was unexpected)",
    ),
    (
        {"$defs": {"n": {"type": "integer"}}, "items": {"$ref": "#/$defs/n"}},
        [1, "x"],
        "value[1]: 'x' is not of type 'integer'",
    ),
    (
        {
            "$defs": {
                "t": {
                    "type": "object",
                    "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/t"}}},
                }
            },
            "$ref": "#/$defs/t",
        },
        {"kids": [{"kids": [{"kids": 3}]}]},
        "value.kids[0].kids[0].kids: 3 is not of type 'array'",
    ),
    (
        {"$schema": DRAFT7, "items": [{"type": "integer"}], "additionalItems": False},
        [1, 2],
        "value: Additional items are not allowed (2 was unexpected)",
    ),
    (
        {"$schema": DRAFT7, "dependencies": {"a": ["b"]}},
        {"a": 1},
        "value: 'b' is a dependency of 'a'",
    ),
    (
        {"$schema": DRAFT4, "maximum": 3, "exclusiveMaximum": True},
        3,
        "value: 3 is greater than or equal to the maximum of 3",
    ),
    (False, 1, "value: False schema does not allow 1"),
    (True, {"anything": [1]}, None),
]


@pytest.mark.parametrize(("schema", "value", "refusal"), VALUES)
def test_values_against_schemas(
    tmp_path: Path, schema: Any, value: Any, refusal: str | None
) -> None:
    assert check(tmp_path, schema, value) == refusal


# (format, a value it refuses, a value it takes)
CHECKED_FORMATS = [
    ("email", "no-at-sign", "a@example.com"),
    ("idn-email", "no-at-sign", "a@example.com"),
    ("ipv4", "300.1.1.1", "10.0.0.1"),
    ("ipv6", "::g", "::1"),
    ("regex", "(", "^a+$"),
    ("date", "2024-02-30", "2024-02-29"),
    ("uuid", "not-a-uuid", "2f1e0cf2-4a4b-4d7e-9a7e-000000000000"),
]


@pytest.mark.parametrize(("fmt", "bad", "good"), CHECKED_FORMATS)
def test_formats_checked_with_the_standard_library(
    tmp_path: Path, fmt: str, bad: str, good: str
) -> None:
    assert check(tmp_path, {"format": fmt}, good) is None
    assert check(tmp_path, {"format": fmt}, bad) == f"value: {bad!r} is not a {fmt!r}"


@pytest.mark.parametrize(
    "fmt", ["date-time", "uri", "hostname", "json-pointer", "duration", "no-such-format"]
)
def test_other_formats_are_annotations(tmp_path: Path, fmt: str) -> None:
    assert check(tmp_path, {"format": fmt}, "(surely not valid)") is None


@pytest.mark.parametrize(
    "cls",
    [
        validators.Draft202012Validator,
        validators.Draft7Validator,
        validators.Draft4Validator,
        validators.Draft3Validator,
    ],
)
def test_the_formats_checked_do_not_depend_on_what_is_installed(cls: Any) -> None:
    names = set(_formats(cls).checkers)
    assert names <= set(FORMATS)
    assert {"email", "regex"} <= names


# (schema files, the first is checked; what the DefinitionError says)
BAD_SCHEMAS: list[tuple[dict[str, Any], str]] = [
    (
        {"s.json": {"type": "strin"}},
        "JSON Schema 'schema:s.json': s.json is not a valid schema: at #/type:",
    ),
    (
        {"s.json": {"properties": {"a": {"minLength": -1}}}},
        "s.json is not a valid schema: at #/properties/a/minLength: -1 is less than the minimum of 0",
    ),
    ({"s.json": {"items": [{"type": "integer"}]}}, "s.json is not a valid schema: at #/items:"),
    ({"s.json": "[1, 2"}, "cannot load JSON Schema 'schema:s.json': s.json is not JSON"),
    (
        {"s.json": {"$schema": "https://example.com/dialect"}},
        "s.json names an unknown $schema 'https://example.com/dialect'",
    ),
    ({"s.json": {"$schema": 7}}, "s.json names an unknown $schema 7"),
    (
        {"s.json": {"$ref": "#/$defs/x"}},
        "$ref '#/$defs/x' in s.json points to nothing ('/$defs/x' is not in the document)",
    ),
    (
        {"s.json": {"$ref": "#name"}},
        "$ref '#name' in s.json names no anchor of the document ('name')",
    ),
    (
        {"s.json": {"$ref": "d/none.json"}},
        "$ref 'd/none.json' in s.json names a missing file (d/none.json)",
    ),
    (
        {"s.json": {"$ref": "d/a.json"}, "d/a.json": {"minimum": "0"}},
        "d/a.json is not a valid schema: at #/minimum",
    ),
    ({"s.json": {"$ref": "d/a.json"}, "d/a.json": "{"}, "d/a.json is not JSON"),
    (
        {"s.json": {"$ref": "d/a.json"}, "d/a.json": {"$ref": "b.json#/x"}, "d/b.json": {}},
        "$ref 'b.json#/x' in d/a.json points to nothing",
    ),
    # Refs are followed when the schema loads, not only when a value reaches them.
    (
        {"s.json": {"$defs": {"unused": {"$ref": "http://example.com/x.json"}}}},
        "$ref 'http://example.com/x.json' in s.json is on the network (http://example.com/x.json): gdag never downloads schemas",
    ),
    (
        {"s.json": {"anyOf": [True, {"$ref": "https://example.com/x.json#/a"}]}},
        "is on the network (https://example.com/x.json)",
    ),
    (
        {"s.json": {"$ref": "../outside.json"}},
        "$ref '../outside.json' in s.json leaves the repository",
    ),
    (
        {"s.json": {"$ref": "d/a.json"}, "d/a.json": {"items": {"$ref": "../../outside.json"}}},
        "$ref '../../outside.json' in d/a.json leaves the repository",
    ),
    (
        {"s.json": {"$ref": "file:///etc/hostname"}},
        "$ref 'file:///etc/hostname' in s.json leaves the repository (/etc/hostname)",
    ),
    (
        {"s.json": {"$id": "https://example.com/schemas/s.json", "$ref": "../x.json"}},
        "$ref '../x.json' in s.json resolves to https://example.com/x.json, outside https://example.com/schemas/",
    ),
    (
        {"s.json": {"$id": "urn:example:root", "$ref": "other.json"}},
        "$ref 'other.json' in s.json resolves to other.json, not to a file of the repository",
    ),
]


@pytest.mark.parametrize(("files", "says"), BAD_SCHEMAS)
def test_bad_schemas_are_definition_errors(
    tmp_path: Path, files: dict[str, Any], says: str
) -> None:
    repo = tmp_path / "repo"
    write(repo, files)
    (tmp_path / "outside.json").write_text("{}")
    with pytest.raises(DefinitionError) as err:
        check_schema(1, "schema:s.json", str(repo), ValueRefusedError)
    assert says in err.value.message
    assert err.value.exit_code == 3


def test_the_schema_itself_must_be_in_the_repository(tmp_path: Path) -> None:
    write(tmp_path, {"outside.json": {}})
    with pytest.raises(DefinitionError) as err:
        check_schema(1, "schema:../outside.json", str(tmp_path / "repo"), ValueRefusedError)
    assert "JSON Schema 'schema:../outside.json' is outside the repository" in err.value.message


def test_a_missing_schema_file(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError) as err:
        check_schema(1, "schema:none.json", str(tmp_path), ValueRefusedError)
    assert err.value.message == "cannot load JSON Schema 'schema:none.json': no such file"


def test_a_schema_that_loops_is_a_definition_error(tmp_path: Path) -> None:
    write(
        tmp_path, {"s.json": {"$ref": "d/a.json"}, "d/a.json": {"allOf": [{"$ref": "../s.json"}]}}
    )
    with pytest.raises(DefinitionError) as err:
        check_schema(1, "schema:s.json", str(tmp_path), ValueRefusedError)
    assert "JSON Schema 'schema:s.json' loops" in err.value.message


def test_a_recursive_schema_checks_deep_values(tmp_path: Path) -> None:
    deep: Any = []
    for _ in range(150):
        deep = [deep]
    assert check(tmp_path, {"type": "array", "items": {"$ref": "#"}}, deep) is None
    assert (
        check(tmp_path, {"type": "array", "items": {"$ref": "#"}}, [[[3]]])
        == "value[0][0][0]: 3 is not of type 'array'"
    )


# (schema files, value, refusal or None): $refs between files of the repository
REFS: list[tuple[dict[str, Any], Any, str | None]] = [
    (
        {"s.json": {"items": {"$ref": "d/n.json"}}, "d/n.json": {"type": "integer"}},
        [1, "x"],
        "value[1]: 'x' is not of type 'integer'",
    ),
    (
        {"s.json": {"$ref": "d/a.json#/$defs/pos"}, "d/a.json": {"$defs": {"pos": {"minimum": 1}}}},
        0,
        "value: 0 is less than the minimum of 1",
    ),
    (
        {
            "s.json": {"$ref": "d/a.json"},
            "d/a.json": {"$ref": "b.json"},
            "d/b.json": {"type": "string"},
        },
        1,
        "value: 1 is not of type 'string'",
    ),
    (
        {
            "s.json": {"$ref": "d/a.json"},
            "d/a.json": {"$ref": "../s2.json"},
            "s2.json": {"const": 2},
        },
        2,
        None,
    ),
    ({"s.json": {"$ref": "d%20e/a.json"}, "d e/a.json": {"const": 2}}, 3, "value: 2 was expected"),
    (
        {
            "s.json": {"$ref": "d/a.json#pos"},
            "d/a.json": {"$defs": {"p": {"$anchor": "pos", "minimum": 1}}},
        },
        0,
        "value: 0 is less than the minimum of 1",
    ),
    # A draft 7 file referred to from a 2020-12 schema is read as draft 7.
    (
        {
            "s.json": {"$ref": "d7.json"},
            "d7.json": {"$schema": DRAFT7, "items": [{"type": "string"}]},
        },
        [1],
        "value[0]: 1 is not of type 'string'",
    ),
    # Under the $id of the top schema: read from the same place next to the file.
    (
        {
            "s.json": {"$id": "https://example.com/schemas/s.json", "$ref": "d/n.json"},
            "d/n.json": {"type": "integer"},
        },
        "x",
        "value: 'x' is not of type 'integer'",
    ),
    # The metaschemas are known without the network.
    (
        {"s.json": {"$ref": "https://json-schema.org/draft/2020-12/schema"}},
        {"type": 5},
        "value.type: 5 is not valid under any of the given schemas",
    ),
]


@pytest.mark.parametrize(("files", "value", "refusal"), REFS)
def test_refs_between_files(
    tmp_path: Path, files: dict[str, Any], value: Any, refusal: str | None
) -> None:
    write(tmp_path, files)
    try:
        check_schema(value, "schema:s.json", str(tmp_path), ValueRefusedError)
    except ValueRefusedError as exc:
        assert exc.message == refusal
    else:
        assert refusal is None


@pytest.mark.parametrize(
    ("path", "shown"),
    [
        ([], "value"),
        (["name"], "value.name"),
        (["items", 2], "value.items[2]"),
        ([0, "a_b-c"], "value[0].a_b-c"),
        (["with space"], "value['with space']"),
        (["a.b"], "value['a.b']"),
        (["1st"], "value['1st']"),
        ([""], "value['']"),
    ],
)
def test_value_paths(path: list[str | int], shown: str) -> None:
    assert value_path("value", path) == shown


def test_long_values_are_shortened_in_refusals(tmp_path: Path) -> None:
    why = check(tmp_path, {"type": "array"}, {"k" * 100: list(range(1000))})
    assert why is not None and why.endswith("is not of type 'array'")
    assert len(why) < 200
    why = check(tmp_path, {"enum": list(range(1000))}, -1)
    assert (
        why is not None and why.startswith("value: -1 is not one of [0, 1, 2") and len(why) <= 307
    )


def test_schema_types_inside_lists_name_the_item(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, {"p.json": {"type": "object", "required": ["name"]}})
    monkeypatch.setattr(types, "USER_ROOT", [str(tmp_path)])
    typ = types.parse_type("list[schema:p.json]")
    assert types.check_value([{"name": 1}], typ, "o") == [{"name": 1}]
    with pytest.raises(ValueRefusedError) as err:
        types.check_value([{"name": 1}, {}], typ, "o")
    assert err.value.message == (
        "value for 'o' is not a valid list[schema:p.json]: value[1]: 'name' is a required property"
    )


def test_edited_schema_files_are_loaded_again(tmp_path: Path) -> None:
    write(tmp_path, {"s.json": {"items": {"$ref": "d/n.json"}}, "d/n.json": {"type": "integer"}})
    assert check_schema([1], "schema:s.json", str(tmp_path), ValueRefusedError) == [1]

    def edit(name: str, contents: Any) -> None:
        path = tmp_path / name
        before = path.stat().st_mtime_ns
        write(tmp_path, {name: contents})
        os.utime(path, ns=(before + 1_000_000_000, before + 1_000_000_000))

    edit("d/n.json", {"type": "string"})  # a file the schema refers to
    with pytest.raises(ValueRefusedError):
        check_schema([1], "schema:s.json", str(tmp_path), ValueRefusedError)
    edit("s.json", {"items": True})  # the schema itself
    assert check_schema([1], "schema:s.json", str(tmp_path), ValueRefusedError) == [1]
    edit("s.json", {"items": {"$ref": "d/none.json"}})
    with pytest.raises(DefinitionError):
        check_schema([1], "schema:s.json", str(tmp_path), ValueRefusedError)


def test_draft_3_names_its_formats_its_own_way(tmp_path: Path) -> None:
    schema = {"$schema": "http://json-schema.org/draft-03/schema#", "format": "ip-address"}
    assert check(tmp_path, schema, "10.0.0.1") is None
    assert check(tmp_path, schema, "300.1.1.1") == "value: '300.1.1.1' is not a 'ip-address'"

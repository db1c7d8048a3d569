"""Type rules as tables: parsing, checking values, canonical JSON, decoding and display."""

from __future__ import annotations

from typing import Any

import pytest

from gdag.errors import DefinitionError, ValueRefusedError
from gdag.types import (
    Type,
    canonical_json,
    check_value,
    decode_text_value,
    parse_type,
    stored_to_display,
)

INT, STR = Type("int"), Type("str")

# (text, parsed)
PARSED = [
    ("bytes", Type("bytes")),
    ("dir", Type("dir")),
    ("list[int]", Type("list", INT)),
    ("dict[str, str]", Type("dict", STR)),
    ("int | None", Type("optional", INT)),
    ("list[int | None]", Type("list", Type("optional", INT))),
    ("list[int] | None", Type("optional", Type("list", INT))),
    ("dict[str, list[str]]", Type("dict", Type("list", STR))),
    ("pkg.mod:Model", Type("model", ref="pkg.mod:Model")),
    ("mod:Outer.Inner", Type("model", ref="mod:Outer.Inner")),
    ("schema:schemas/a-b_c.json", Type("schema", ref="schema:schemas/a-b_c.json")),
    ("list[schema:s.json]", Type("list", Type("schema", ref="schema:s.json"))),
]


@pytest.mark.parametrize(("text", "parsed"), PARSED)
def test_parse_type(text: str, parsed: Type) -> None:
    assert parse_type(text) == parsed


@pytest.mark.parametrize(("text", "parsed"), PARSED)
def test_types_print_as_they_parse(text: str, parsed: Type) -> None:
    assert str(parsed) == text
    assert parse_type(str(parsed)) == parsed


# (text, what the refusal says)
BAD = [
    ("", "missing type"),
    ("integer", "unknown type 'integer'"),
    ("None", "unknown type 'None'"),
    ("list", "list needs a parameter, e.g. list[int]"),
    ("dict", "dict needs a parameter, e.g. dict[int]"),
    ("dict[int, str]", "dict keys must be str: dict[str, T]"),
    ("list[int", "missing ']'"),
    ("list[]", "unknown type ']'"),
    ("int |", "unexpected '|'"),
    ("int | str", "unexpected '| str'"),
    ("int$", "unexpected '$'"),
    ("list[int]]", "unexpected ']'"),
]


@pytest.mark.parametrize(("text", "says"), BAD)
def test_bad_type_expressions(text: str, says: str) -> None:
    with pytest.raises(DefinitionError) as err:
        parse_type(text)
    assert err.value.message == f"bad type {text.strip()!r}: {says}"
    assert err.value.hint is not None and "list[T]" in err.value.hint


@pytest.mark.parametrize(
    ("text", "raw"),
    [("bytes", True), ("dir", True), ("str", False), ("json", False), ("bytes | None", False)],
)
def test_raw_types_are_stored_as_they_are(text: str, raw: bool) -> None:
    assert parse_type(text).is_raw is raw


# (type, value, canonical value) for accepted values
ACCEPTED: list[tuple[str, Any, Any]] = [
    ("int", 3, 3),
    ("int", -(10**30), -(10**30)),
    ("float", 3, 3.0),
    ("float", 2.5, 2.5),
    ("bool", False, False),
    ("str", "", ""),
    ("json", {"a": [1, None, "x"]}, {"a": [1, None, "x"]}),
    ("int | None", None, None),
    ("list[int | None]", [None, 1], [None, 1]),
    ("dict[str, float]", {"a": 1}, {"a": 1.0}),
    ("list[list[float]]", [[1], []], [[1.0], []]),
]


@pytest.mark.parametrize(("typ", "value", "canonical"), ACCEPTED)
def test_accepted_values_come_back_canonical(typ: str, value: Any, canonical: Any) -> None:
    checked = check_value(value, parse_type(typ), "o")
    assert checked == canonical
    assert type(checked) is type(canonical)


# (type, value, the reason in the refusal)
REFUSED: list[tuple[str, Any, str]] = [
    ("int", True, "value is a boolean (true)"),
    ("int", 3.0, "value is a number (3.0)"),
    ("int", "3", 'value is a string ("3")'),
    ("float", False, "value is a boolean (false)"),
    ("float", float("inf"), "value is not finite"),
    ("bool", 1, "value is an integer (1)"),
    ("str", None, "value is null"),
    ("str", ["a"], 'value is a list (["a"])'),
    ("list[int]", [1, "a"], 'value[1] is a string ("a")'),
    ("list[int]", {"a": 1}, 'value is an object ({"a": 1})'),
    ("dict[str, int]", {"k": None}, "value['k'] is null"),
    ("list[dict[str, bool]]", [{}, {"x": 0}], "value[1]['x'] is an integer (0)"),
    ("int | None", "x", 'value is a string ("x")'),
    ("json", {"a": [float("nan")]}, "NaN and infinities are not JSON"),
    ("int", "x" * 50, 'value is a string ("' + "x" * 39 + "...)"),
]


@pytest.mark.parametrize(("typ", "value", "why"), REFUSED)
def test_refused_values_say_where_and_why(typ: str, value: Any, why: str) -> None:
    with pytest.raises(ValueRefusedError) as err:
        check_value(value, parse_type(typ), "out/x")
    assert err.value.message == f"value for 'out/x' is not a valid {parse_type(typ)}: {why}"


# (value, canonical bytes)
CANONICAL: list[tuple[Any, bytes]] = [
    ({"b": 1, "a": 2}, b'{"a":2,"b":1}'),
    ({"a": {"c": 1, "b": [3, 2]}}, b'{"a":{"b":[3,2],"c":1}}'),
    ([1, 2.5, None, True, "x y"], b'[1,2.5,null,true,"x y"]'),
    ("\u00e9\u2713", '"\u00e9\u2713"'.encode()),
    ('\n\t"', b'"\\n\\t\\""'),
    (1.0, b"1.0"),
    (10**20, b"100000000000000000000"),
]


@pytest.mark.parametrize(("value", "encoded"), CANONICAL)
def test_canonical_json(value: Any, encoded: bytes) -> None:
    assert canonical_json(value) == encoded


def test_equal_values_have_equal_bytes_whatever_their_key_order() -> None:
    a = {"z": 1, "y": {"b": 2, "a": 1}}
    b = {"y": {"a": 1, "b": 2}, "z": 1}
    assert canonical_json(a) == canonical_json(b)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (float("nan"), "value cannot be stored as JSON"),
        ([float("-inf")], "value cannot be stored as JSON"),
    ],
)
def test_values_json_cannot_hold_are_refused(value: Any, why: str) -> None:
    with pytest.raises(ValueRefusedError) as err:
        canonical_json(value)
    assert why in err.value.message


def test_values_nested_too_deeply_are_refused() -> None:
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(ValueRefusedError) as err:
        canonical_json(deep)
    assert err.value.message == "value is nested too deeply to store as JSON"


# (type, published bytes, decoded value)
DECODED: list[tuple[str, bytes, Any]] = [
    ("str", b"  spaced \n", "  spaced \n"),
    ("str", b"null", "null"),
    ("str | None", b"null", None),
    ("str | None", b'"x"', "x"),
    ("int", b"\n 7 \n", 7),
    ("float", b"7", 7.0),
    ("json", b'"x"', "x"),
    ("list[str]", b'["\\u00e9"]', ["\u00e9"]),
]


@pytest.mark.parametrize(("typ", "data", "value"), DECODED)
def test_decode_text_value(typ: str, data: bytes, value: Any) -> None:
    assert decode_text_value(data, parse_type(typ), "o") == value


# (type, published bytes, what the refusal says)
UNDECODABLE = [
    ("str", b"a\xffb", "not UTF-8 text (byte 1)"),
    ("str | None", b"x", "'x' is not a JSON value"),
    ("int", b"\xef\xbb\xbf1", "is not one (it is written as JSON: 42)"),
    ("json", b"[1,", "'[1,' is not a JSON value"),
    ("int", b"[" * 5000 + b"]" * 5000, "nested too deeply"),
]


@pytest.mark.parametrize(("typ", "data", "says"), UNDECODABLE)
def test_undecodable_values(typ: str, data: bytes, says: str) -> None:
    with pytest.raises(ValueRefusedError) as err:
        decode_text_value(data, parse_type(typ), "o")
    assert err.value.message.startswith(f"value for 'o' is not a valid {parse_type(typ)}: ")
    assert says in err.value.message


# (type, stored bytes, what `gdag lookup` prints)
DISPLAY = [
    ("str", b'"a\\nb"', b"a\nb"),
    ("str", b'"\\u00e9"', "\u00e9".encode()),
    ("str | None", b'"x"', b'"x"\n'),  # published as JSON, so shown as JSON
    ("str | None", b"null", b"null\n"),
    ("json", b'"x"', b'"x"\n'),
    ("int", b"42", b"42\n"),
    ("list[str]", b'["a"]', b'["a"]\n'),
    ("bytes", b"\x00\xff", b"\x00\xff"),
    ("dir", b"not json at all", b"not json at all"),
]


@pytest.mark.parametrize(("typ", "stored", "shown"), DISPLAY)
def test_stored_to_display(typ: str, stored: bytes, shown: bytes) -> None:
    assert stored_to_display(stored, parse_type(typ)) == shown

"""Type expressions, validation and canonical encoding."""

import pytest

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

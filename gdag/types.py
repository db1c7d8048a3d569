"""Output types: parsing type expressions, validating values, canonical encoding.

Built-in types are validated with the standard library so that `gdag publish`
stays fast; pydantic is imported only for types named as `module:Name`.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from gdag.errors import DefinitionError, ValueRefusedError
from gdag.records import Frozen

SCALARS = ("bytes", "str", "int", "float", "bool", "json", "dir")
TEXT_TYPES = ("str",)


class Type(Frozen):
    """A parsed type expression: a scalar, list[T], dict[str, T], T | None or module:Name."""

    __slots__ = ("kind", "arg", "ref")
    kind: str  # one of SCALARS, "list", "dict", "optional", "model"
    arg: Type | None
    ref: str | None  # module:Name for models

    def __init__(self, kind: str, arg: Type | None = None, ref: str | None = None) -> None:
        self._set(kind=kind, arg=arg, ref=ref)

    def __str__(self) -> str:
        if self.kind == "list":
            return f"list[{self.arg}]"
        if self.kind == "dict":
            return f"dict[str, {self.arg}]"
        if self.kind == "optional":
            return f"{self.arg} | None"
        if self.kind in ("model", "schema"):
            return str(self.ref)
        return self.kind

    @property
    def is_raw(self) -> bool:
        """Stored as it is (blob or tree) rather than as canonical JSON."""
        return self.kind in ("bytes", "dir")


BYTES = Type("bytes")
_TOKEN = re.compile(
    r"\s*(\||\[|\]|,|schema:[A-Za-z0-9_./-]+\.json"
    r"|[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_.]*|[A-Za-z_]\w*)"
)


def parse_type(text: str) -> Type:
    """Parse a type expression such as `int`, `list[str]`, `dict[str, int] | None`."""
    tokens, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise _bad_type(text, f"unexpected {text[pos:].strip()[:10]!r}")
        tokens.append(m.group(1))
        pos = m.end()
    result, rest = _parse_union(tokens, text)
    if rest:
        raise _bad_type(text, f"unexpected {' '.join(rest)!r}")
    return result


def _bad_type(text: str, why: str) -> DefinitionError:
    return DefinitionError(
        f"bad type {text!r}: {why}",
        hint="types: bytes, str, int, float, bool, json, dir, list[T], dict[str, T], "
        "T | None, module:Name",
    )


def _parse_union(tokens: list[str], text: str) -> tuple[Type, list[str]]:
    first, rest = _parse_atom(tokens, text)
    if rest[:2] == ["|", "None"]:
        return Type("optional", first), rest[2:]
    return first, rest


def _parse_atom(tokens: list[str], text: str) -> tuple[Type, list[str]]:
    if not tokens:
        raise _bad_type(text, "missing type")
    head, rest = tokens[0], tokens[1:]
    if head in ("list", "dict"):
        if rest[:1] != ["["]:
            raise _bad_type(text, f"{head} needs a parameter, e.g. {head}[int]")
        rest = rest[1:]
        if head == "dict":
            if rest[:2] != ["str", ","]:
                raise _bad_type(text, "dict keys must be str: dict[str, T]")
            rest = rest[2:]
        inner, rest = _parse_union(rest, text)
        if rest[:1] != ["]"]:
            raise _bad_type(text, "missing ']'")
        return Type(head, inner), rest[1:]
    if head.startswith("schema:"):
        return Type("schema", ref=head), rest
    if ":" in head:
        return Type("model", ref=head), rest
    if head in SCALARS:
        return Type(head), rest
    raise _bad_type(text, f"unknown type {head!r}")


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8: equal values give equal bytes."""
    try:
        text = json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except RecursionError:
        raise ValueRefusedError("value is nested too deeply to store as JSON") from None
    except ValueError as exc:
        raise ValueRefusedError(f"value cannot be stored as JSON: {exc}") from None
    return text.encode("utf-8")


def _refuse(output: str, typ: Type, why: str) -> ValueRefusedError:
    return ValueRefusedError(f"value for {output!r} is not a valid {typ}: {why}")


def check_value(
    value: Any, typ: Type, output: str, where: str = "value", top: Type | None = None
) -> Any:
    """Validate a decoded JSON value against `typ`, returning it in canonical form."""
    top = top or typ
    k = typ.kind
    if k == "optional":
        return None if value is None else check_value(value, typ.arg, output, where, top)  # type: ignore[arg-type]
    if k == "json":
        _check_finite(value, top, output)
        return value
    if k == "str" and isinstance(value, str):
        return value
    if k == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if k == "float" and isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise _refuse(output, top, f"{where} is not finite")
        return float(value)
    if k == "bool" and isinstance(value, bool):
        return value
    if k == "list" and isinstance(value, list):
        return [check_value(v, typ.arg, output, f"{where}[{i}]", top) for i, v in enumerate(value)]  # type: ignore[arg-type]
    if k == "dict" and isinstance(value, dict):
        return {
            key: check_value(v, typ.arg, output, f"{where}[{key!r}]", top)  # type: ignore[arg-type]
            for key, v in value.items()
        }  # type: ignore[arg-type]
    if k == "model":
        return _check_model(value, typ, output)
    if k == "schema":
        from gdag.schema import check_schema

        return check_schema(
            value,
            typ.ref or "",
            USER_ROOT[0] if USER_ROOT else None,
            lambda why: _refuse(output, top or typ, why),
            where,
        )
    raise _refuse(output, top, f"{where} is {_describe(value)}")


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    name = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }.get(type(value), type(value).__name__)
    text = json.dumps(value, ensure_ascii=False)
    return f"{name} ({text[:40]}{'...' if len(text) > 40 else ''})"


def _check_finite(value: Any, typ: Type, output: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise _refuse(output, typ, "NaN and infinities are not JSON")
    if isinstance(value, list):
        for v in value:
            _check_finite(v, typ, output)
    elif isinstance(value, dict):
        for v in value.values():
            _check_finite(v, typ, output)


def _check_model(value: Any, typ: Type, output: str) -> Any:
    model = load_model(typ.ref or "")
    from pydantic import TypeAdapter, ValidationError

    try:
        adapter = TypeAdapter(model)
        return adapter.dump_python(adapter.validate_python(value), mode="json")
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ())) or "value"
        raise _refuse(output, typ, f"{loc}: {first.get('msg')}") from None


# The repository whose modules `module:Name` types come from (set by Workspace).
USER_ROOT: list[str] = []


def load_model(ref: str) -> Any:
    """Import the type named `module:Name` from the repository (or any installed module)."""
    from pathlib import Path

    from gdag.usercode import load_module

    module_name, _, attr = ref.partition(":")
    root = Path(USER_ROOT[0]) if USER_ROOT else None
    obj: Any = load_module(module_name, root, f"type {ref!r}")
    try:
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError as exc:
        raise DefinitionError(f"cannot load type {ref!r}: {exc}") from None
    return obj


# How a scalar is written when publishing it (as JSON), for the error that says so.
SCALAR_EXAMPLES = {"int": "42", "float": "1.5 or 42", "bool": "true or false"}


def decode_text_value(data: bytes, typ: Type, output: str) -> Any:
    """Turn published bytes into a value of `typ` (not for raw types)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _refuse(output, typ, f"not UTF-8 text (byte {exc.start})") from None
    if typ.kind == "str":
        return text
    try:
        value = json.loads(text)
        return check_value(value, typ, output)
    except RecursionError:
        raise _refuse(output, typ, "nested too deeply") from None
    except ValueError as exc:
        shown = text.strip()[:40]
        example = SCALAR_EXAMPLES.get(_base(typ))
        if example is not None:
            raise _refuse(
                output, typ, f"{shown!r} is not one (it is written as JSON: {example})"
            ) from None
        why = getattr(exc, "msg", str(exc))
        raise _refuse(output, typ, f"{shown!r} is not a JSON value ({why})") from None


def encode_value(value: Any) -> bytes:
    return canonical_json(value)


def decode_stored(data: bytes, typ: Type) -> Any:
    """A stored typed value as a Python value: its JSON decoded, and a `module:Name`
    type's value (at any depth of `list`, `dict`, `| None`) as an instance of it."""
    value = json.loads(data)
    if not _has_model(typ):
        return value
    from pydantic import TypeAdapter

    return TypeAdapter(_python_type(typ)).validate_python(value)


def _has_model(typ: Type) -> bool:
    return typ.kind == "model" or (typ.arg is not None and _has_model(typ.arg))


def _python_type(typ: Type) -> Any:
    if typ.kind == "model":
        return load_model(typ.ref or "")
    if typ.kind == "list":
        return list[_python_type(typ.arg)]  # type: ignore[arg-type, misc]
    if typ.kind == "dict":
        return dict[str, _python_type(typ.arg)]  # type: ignore[arg-type, misc]
    if typ.kind == "optional":
        return _python_type(typ.arg) | None  # type: ignore[arg-type]
    return Any


def stored_to_display(data: bytes, typ: Type) -> bytes:
    """A stored value as it was published, byte for byte what `gdag lookup` prints and
    what a shell node's input file holds: raw values as they are, a `str` as its text,
    every other typed value (`str | None` too: it is published as JSON) as its
    canonical JSON plus a newline."""
    if typ.is_raw:
        return data
    if typ.kind == "str":
        return json.loads(data).encode("utf-8")  # type: ignore[no-any-return]
    return data + b"\n"


def _base(typ: Type) -> str:
    while typ.kind == "optional" and typ.arg is not None:
        typ = typ.arg
    return typ.kind

"""JSON Schema file types (`schema:path/to/file.json`): the common subset, checked in-house.

Supported keywords: type (one or a list), enum, const, properties, required,
additionalProperties (boolean or a schema), items, minItems, maxItems,
minLength, maxLength, minimum, maximum. Other keywords are refused when the
schema is loaded, so a schema never silently checks less than it says.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gdag.errors import DefinitionError

KEYWORDS = {
    "$schema",
    "$id",
    "title",
    "description",
    "type",
    "enum",
    "const",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "default",
    "examples",
}
TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "null": lambda v: v is None,
}
_cache: dict[str, Any] = {}


def load_schema(ref: str, root: str | None) -> Any:
    path = Path(root or ".") / ref[len("schema:") :]
    key = str(path.resolve())
    if key not in _cache:
        try:
            schema = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise DefinitionError(f"cannot load JSON Schema {ref!r}: {exc}") from None
        _check_keywords(schema, ref)
        _cache[key] = schema
    return _cache[key]


def _check_keywords(schema: Any, ref: str) -> None:
    if isinstance(schema, bool):
        return
    if not isinstance(schema, dict):
        raise DefinitionError(f"JSON Schema {ref!r}: a schema must be an object")
    unknown = set(schema) - KEYWORDS
    if unknown:
        raise DefinitionError(
            f"JSON Schema {ref!r} uses unsupported keywords: {', '.join(sorted(unknown))}",
            hint="supported: " + ", ".join(sorted(KEYWORDS)),
        )
    for sub in (schema.get("properties") or {}).values():
        _check_keywords(sub, ref)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            _check_keywords(schema[key], ref)


def check_schema(value: Any, ref: str, root: str | None, refuse: Callable[[str], Exception]) -> Any:
    """Validate `value` against the schema file; return it unchanged or raise refuse(why)."""
    why = _why(value, load_schema(ref, root), "value")
    if why is not None:
        raise refuse(why)
    return value


def _why(value: Any, schema: Any, where: str) -> str | None:  # noqa: C901 - one rule a line
    if schema is True:
        return None
    if schema is False:
        return f"{where} is not allowed"
    types = schema.get("type")
    if types is not None:
        names = types if isinstance(types, list) else [types]
        if not any(TYPES[t](value) for t in names if t in TYPES):
            return f"{where} is not of type {' or '.join(names)}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{where} is not one of {schema['enum']}"
    if "const" in schema and value != schema["const"]:
        return f"{where} is not {schema['const']!r}"
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            return f"{where} is shorter than {schema['minLength']}"
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            return f"{where} is longer than {schema['maxLength']}"
    if TYPES["number"](value):
        if "minimum" in schema and value < schema["minimum"]:
            return f"{where} is less than {schema['minimum']}"
        if "maximum" in schema and value > schema["maximum"]:
            return f"{where} is more than {schema['maximum']}"
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            return f"{where} has fewer than {schema['minItems']} items"
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            return f"{where} has more than {schema['maxItems']} items"
        for i, item in enumerate(value):
            why = _why(item, schema.get("items", True), f"{where}[{i}]")
            if why:
                return why
    if isinstance(value, dict):
        for name in schema.get("required", []):
            if name not in value:
                return f"{where} has no {name!r}"
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            why = _why(item, props.get(name, extra), f"{where}.{name}")
            if why:
                return why
    return None

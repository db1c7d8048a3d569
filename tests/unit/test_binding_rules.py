"""Binding rules as tables: which outputs an input takes, and what annotations ask for."""

from __future__ import annotations

import inspect
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from gdag.binding import accepts, from_annotation
from gdag.types import parse_type


class Photo(BaseModel):
    width: int


# (producer, consumer, accepted): what tests/test_binding.py's table leaves out
BINDINGS = [
    ("schema:a.json", "schema:a.json", True),
    ("schema:a.json", "schema:b.json", False),
    ("schema:a.json", "json", True),
    ("json", "schema:a.json", False),
    ("schema:a.json", "bytes", True),
    ("schema:a.json", "m:A", False),
    ("m:A", "schema:a.json", False),
    ("schema:a.json", "schema:a.json | None", True),
    ("schema:a.json | None", "schema:a.json", False),
    ("list[schema:a.json]", "list[schema:a.json]", True),
    ("list[schema:a.json]", "json", True),
    ("dict[str, int]", "json", True),
    ("float", "json", True),
    ("bool", "json", True),
    ("list[int]", "list[json]", True),
    ("list[json]", "list[int]", False),
    ("list[list[int]]", "list[list[float]]", True),
    ("list[list[float]]", "list[list[int]]", False),
    ("dict[str, list[int]]", "dict[str, list[float]]", True),
    ("dict[str, int]", "list[int]", False),
    ("list[int]", "list[int] | None", True),
    ("list[int | None]", "list[int]", False),
    ("bytes | None", "bytes", True),
    ("int | None", "str | None", False),
    ("dir", "dir | None", True),
    ("bytes", "dir", False),
    ("m:A", "m:A | None", True),
]


@pytest.mark.parametrize(("producer", "consumer", "ok"), BINDINGS)
def test_binding_rules(producer: str, consumer: str, ok: bool) -> None:
    assert accepts(parse_type(consumer), parse_type(producer)) is ok


def test_every_type_takes_itself_and_bytes_takes_all_but_dir() -> None:
    for text in (
        "bytes",
        "str",
        "int",
        "float",
        "bool",
        "json",
        "dir",
        "list[int]",
        "dict[str, str | None]",
        "int | None",
        "m:A",
        "schema:a.json",
    ):
        typ = parse_type(text)
        assert accepts(typ, typ), text
        # A directory arrives as a path: a bytes parameter would get no bytes.
        assert accepts(parse_type("bytes"), typ) is (text != "dir"), text


# (annotation, the gdag type it asks for, or None when it says nothing)
ANNOTATIONS: list[tuple[object, str | None]] = [
    (inspect.Parameter.empty, None),
    (typing.Any, None),
    (None, None),
    (object, None),
    (tuple[int, int], None),
    (list, "list[json]"),
    (list[str], "list[str]"),
    (typing.List[int], "list[int]"),  # noqa: UP006 - the old spelling is still met
    (list[typing.Any], "list[json]"),
    (dict[str, typing.Any], "dict[str, json]"),
    (dict[str, list[int]], "dict[str, list[int]]"),
    (list[int | None], "list[int | None]"),
    (typing.Optional[str], "str | None"),  # noqa: UP045 - the old spelling is still met
    (Path | None, "dir | None"),
    (bytes | None, "bytes | None"),
    (int | str, "json"),
    (int | str | None, "json"),
    (typing.Any | None, None),
    (Photo, f"{__name__}:Photo"),
    (Photo | None, f"{__name__}:Photo | None"),
    (list[Photo], f"list[{__name__}:Photo]"),
]


@pytest.mark.parametrize(("annotation", "expected"), ANNOTATIONS)
def test_annotations_map_to_types(annotation: object, expected: str | None) -> None:
    found = from_annotation(annotation)
    assert (None if found is None else str(found)) == expected

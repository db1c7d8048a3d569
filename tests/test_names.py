"""Name validation and pattern matching rules."""

import pytest

from gdag.errors import GdagError
from gdag.names import check_output_name, check_simple_name, matches, overlaps


@pytest.mark.parametrize(
    "name",
    ["photos/new", "a", "A_1/b.c-d", "x/" * 10 + "y", "_hidden", "v1.2"],
)
def test_good_output_names(name: str) -> None:
    assert check_output_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "../x",
        "a//b",
        "@x",
        "a/@b",
        "a/./b",
        "a/..",
        "/abs",
        "trailing/",
        "sp ace",
        "a/b.lock",
        "a..b",
        "x" * 256,
        "é",
        "-dash",
        ".dot",
        "a/*",
    ],
)
def test_bad_output_names(name: str) -> None:
    with pytest.raises(GdagError) as err:
        check_output_name(name)
    assert err.value.exit_code == 3


@pytest.mark.parametrize("pattern", ["thumbs/*", "by-day/**", "**", "a/*/c", "*"])
def test_good_patterns(pattern: str) -> None:
    assert check_output_name(pattern, allow_pattern=True) == pattern


@pytest.mark.parametrize("pattern", ["a/**/b", "a/***", "a/x*"])
def test_bad_patterns(pattern: str) -> None:
    with pytest.raises(GdagError):
        check_output_name(pattern, allow_pattern=True)


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("thumbs/*", "thumbs/a", True),
        ("thumbs/*", "thumbs/a/b", False),
        ("thumbs/*", "thumbs", False),
        ("by-day/**", "by-day/2026/11", True),
        ("by-day/**", "by-day", False),
        ("**", "anything/at/all", True),
        ("a/*/c", "a/b/c", True),
        ("a/*/c", "a/b/d", False),
    ],
)
def test_matches(pattern: str, name: str, expected: bool) -> None:
    assert matches(pattern, name) is expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("a/*", "a/b", True),
        ("a/**", "a/b/c", True),
        ("a/**", "a", False),
        ("a/*", "b/*", False),
        ("a/*/c", "a/**", True),
        ("x/**", "x/*", True),
        ("a", "a/b", False),
        ("a/b", "a/b", True),
    ],
)
def test_overlaps_is_symmetric(a: str, b: str, expected: bool) -> None:
    assert overlaps(a, b) is expected
    assert overlaps(b, a) is expected


@pytest.mark.parametrize("name", ["main", "feature-1", "v1.0"])
def test_good_simple_names(name: str) -> None:
    assert check_simple_name(name, "log") == name


@pytest.mark.parametrize("name", ["", "a/b", "..", "@x", "x.lock", "a b"])
def test_bad_simple_names(name: str) -> None:
    with pytest.raises(GdagError):
        check_simple_name(name, "log")

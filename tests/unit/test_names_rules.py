"""Name rules as tables: why a name is refused, patterns, overlap, environment names."""

from __future__ import annotations

import itertools

import pytest

from gdag.errors import GdagError
from gdag.names import (
    check_output_name,
    check_simple_name,
    env_name,
    is_pattern,
    matches,
    overlaps,
)

# (name, what the refusal says)
REFUSALS = [
    ("", "empty segment"),
    ("a//b", "empty segment"),
    ("trailing/", "empty segment"),
    ("a/./b", "segment '.' is not allowed"),
    ("a/..", "segment '..' is not allowed"),
    ("@x", "segments may not start with '@'"),
    ("a/@b", "segments may not start with '@'"),
    ("a/b.lock", "segment 'b.lock' is not a valid git ref component"),
    ("a..b", "segment 'a..b' is not a valid git ref component"),
    ("sp ace", "segment 'sp ace' has characters outside [A-Za-z0-9._-]"),
    ("-dash", "segment '-dash' has characters outside"),
    (".dot", "segment '.dot' has characters outside"),
    ("é", "has characters outside"),
    ("a/*", "segment '*' has characters outside"),
    ("x" * 256, "output name is longer than 255 bytes"),
    ("a/" * 127 + "bc", "longer than 255 bytes"),
]


@pytest.mark.parametrize(("name", "says"), REFUSALS)
def test_refused_output_names_say_why(name: str, says: str) -> None:
    with pytest.raises(GdagError) as err:
        check_output_name(name)
    assert says in err.value.message
    assert err.value.exit_code == 3
    assert err.value.hint is not None


@pytest.mark.parametrize("name", ["x" * 255, "a/" * 127 + "b", "a_b/C-1.2"])
def test_names_up_to_255_bytes_are_accepted(name: str) -> None:
    assert check_output_name(name) == name


def test_the_refusal_names_what_was_checked() -> None:
    with pytest.raises(GdagError) as err:
        check_output_name("a b", what="input")
    assert err.value.message.startswith("bad input name 'a b':")


# (pattern, accepted as a pattern)
PATTERNS = [
    ("a/*", True),
    ("*/b", True),
    ("a/**", True),
    ("**", True),
    ("a/*/**", True),
    ("**/a", False),  # `**` only as the last segment
    ("a/**/b", False),
    ("a/x*", False),
    ("a/***", False),
]


@pytest.mark.parametrize(("pattern", "ok"), PATTERNS)
def test_pattern_syntax(pattern: str, ok: bool) -> None:
    if ok:
        assert check_output_name(pattern, allow_pattern=True) == pattern
    else:
        with pytest.raises(GdagError):
            check_output_name(pattern, allow_pattern=True)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a/*", True),
        ("**", True),
        ("a/**", True),
        ("*/b", True),
        ("a", False),
        ("a*", False),
        ("a/x*", False),
    ],
)
def test_is_pattern(name: str, expected: bool) -> None:
    assert is_pattern(name) is expected


# (simple name, what, refusal fragment or None when accepted)
SIMPLE = [
    ("main", "log", None),
    ("v1.0", "node", None),
    ("a/b", "log", "has characters outside"),
    ("x" * 256, "node", "longer than 255 bytes"),
    ("x.lock", "log", "not a valid git ref component"),
    ("@x", "node", "may not start with '@'"),
    ("", "log", "empty segment"),
]


@pytest.mark.parametrize(("name", "what", "says"), SIMPLE)
def test_simple_names(name: str, what: str, says: str | None) -> None:
    if says is None:
        assert check_simple_name(name, what) == name
        return
    with pytest.raises(GdagError) as err:
        check_simple_name(name, what)
    assert err.value.message.startswith(f"bad {what} name ")
    assert says in err.value.message


@pytest.mark.parametrize(
    ("what", "hint"), [("log", "a log name"), ("node", "a node name"), ("output", "an output name")]
)
def test_simple_name_hints_use_the_right_article(what: str, hint: str) -> None:
    with pytest.raises(GdagError) as err:
        check_simple_name("a b", what)
    assert err.value.hint is not None and err.value.hint.startswith(hint)


# (pattern, name, matches)
MATCHES = [
    ("a", "a", True),
    ("a", "b", False),
    ("a", "a/b", False),
    ("*", "a", True),
    ("*", "a/b", False),
    ("*/b", "a/b", True),
    ("*/b", "a/c", False),
    ("a/**", "a/b", True),
    ("a/**", "a/b/c/d", True),
    ("a/**", "a", False),
    ("a/**", "b/c", False),
    ("**", "a", True),
    ("a/*/**", "a/b", False),
    ("a/*/**", "a/b/c/d", True),
]


@pytest.mark.parametrize(("pattern", "name", "expected"), MATCHES)
def test_matches(pattern: str, name: str, expected: bool) -> None:
    assert matches(pattern, name) is expected


# (a, b, some name matches both)
OVERLAPS = [
    ("*", "**", True),
    ("*", "*", True),
    ("*", "a/b", False),
    ("**", "a", True),
    ("a/*/c", "a/b/d", False),
    ("*/b", "a/*", True),
    ("a/**", "b/**", False),
    ("a/*", "a/**", True),
    ("a/b", "a/c", False),
    ("a/*/**", "a/b", False),
    ("a/*/**", "a/b/c", True),
    ("a/b/**", "a/*", False),
]


@pytest.mark.parametrize(("a", "b", "expected"), OVERLAPS)
def test_overlaps(a: str, b: str, expected: bool) -> None:
    assert overlaps(a, b) is expected
    assert overlaps(b, a) is expected


def test_overlaps_agrees_with_matching_some_name() -> None:
    """Overlap is defined by matching: check it against every name over a small alphabet."""
    patterns = [
        "a",
        "b",
        "a/b",
        "a/c",
        "*",
        "**",
        "a/*",
        "*/b",
        "a/**",
        "*/**",
        "a/*/c",
        "a/b/**",
        "*/*/*",
    ]
    # Names up to one segment longer than any pattern, over the literals plus one fresh one.
    names = [
        "/".join(segs)
        for n in range(1, 5)
        for segs in itertools.product(["a", "b", "c", "z"], repeat=n)
    ]
    for a, b in itertools.product(patterns, repeat=2):
        both = any(matches(a, n) and matches(b, n) for n in names)
        assert overlaps(a, b) is both, (a, b)


@pytest.mark.parametrize(
    ("arg", "variable"),
    [
        ("photo", "GDAG_IN_PHOTO"),
        ("raw-data", "GDAG_IN_RAW_DATA"),
        ("a.b", "GDAG_IN_A_B"),
        ("x_1", "GDAG_IN_X_1"),
        ("é", "GDAG_IN__"),
    ],
)
def test_env_name(arg: str, variable: str) -> None:
    assert env_name(arg) == variable

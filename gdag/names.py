"""Validation of output, node and log names, and matching of output patterns."""

from __future__ import annotations

import re

from gdag.errors import GdagError

SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*\Z")
MAX_NAME_BYTES = 255


def _why_bad_segment(seg: str) -> str | None:
    if seg == "":
        return "empty segment"
    if seg in (".", ".."):
        return f"segment {seg!r} is not allowed"
    if seg.startswith("@"):
        return "segments may not start with '@'"
    if seg.endswith(".lock") or ".." in seg:
        return f"segment {seg!r} is not a valid git ref component"
    if not SEGMENT.match(seg):
        return f"segment {seg!r} has characters outside [A-Za-z0-9._-]"
    return None


def check_output_name(name: str, *, allow_pattern: bool = False, what: str = "output") -> str:
    """Return `name` if it is a valid output name (or pattern), else raise GdagError."""
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        raise GdagError(
            f"{what} name is longer than {MAX_NAME_BYTES} bytes: {name[:40]!r}...",
            hint="names are segments joined by '/', at most 255 bytes in all",
        )
    segments = name.split("/")
    for i, seg in enumerate(segments):
        if allow_pattern and seg == "*":
            continue
        if allow_pattern and seg == "**" and i == len(segments) - 1:
            continue
        why = _why_bad_segment(seg)
        if why is not None:
            raise GdagError(
                f"bad {what} name {name!r}: {why}",
                hint="a name is segments of [A-Za-z0-9_][A-Za-z0-9._-]* joined by '/'",
            )
    return name


def check_simple_name(name: str, what: str) -> str:
    """Node and log names: one segment."""
    why = _why_bad_segment(name) if len(name) <= MAX_NAME_BYTES else "longer than 255 bytes"
    if why is not None:
        raise GdagError(
            f"bad {what} name {name!r}: {why}",
            hint=f"{'an' if what[:1] in 'aeiou' else 'a'} {what} name matches "
            "[A-Za-z0-9_][A-Za-z0-9._-]*",
        )
    return name


def is_pattern(name: str) -> bool:
    return any(seg in ("*", "**") for seg in name.split("/"))


def matches(pattern: str, name: str) -> bool:
    """Whether output `name` belongs to `pattern` (`*` one segment, final `**` one or more)."""
    pat, segs = pattern.split("/"), name.split("/")
    if pat and pat[-1] == "**":
        head = pat[:-1]
        return len(segs) > len(head) and all(
            p == "*" or p == s for p, s in zip(head, segs, strict=False)
        )
    return len(pat) == len(segs) and all(p == "*" or p == s for p, s in zip(pat, segs, strict=True))


def overlaps(a: str, b: str) -> bool:
    """Whether some output name matches both `a` and `b` (plain names or patterns)."""
    sa, sb = a.split("/"), b.split("/")
    tail_a, tail_b = sa[-1] == "**", sb[-1] == "**"
    ha, hb = (sa[:-1] if tail_a else sa), (sb[:-1] if tail_b else sb)
    for x, y in zip(ha, hb, strict=False):
        if x != y and "*" not in (x, y):
            return False
    if len(ha) == len(hb):
        return tail_a == tail_b
    if len(ha) < len(hb):
        return tail_a
    return tail_b


def env_name(arg: str) -> str:
    """The environment variable a shell node finds input `arg` in."""
    return "GDAG_IN_" + re.sub(r"[^A-Z0-9_]", "_", arg.upper())

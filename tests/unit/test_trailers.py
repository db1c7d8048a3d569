"""trailers: the spelling of commit messages, read back the way git reads them."""

from __future__ import annotations

import subprocess
from pathlib import Path

from gdag import trailers


def test_a_message_reads_back_its_trailers_in_order() -> None:
    lines = [(trailers.OFFSET, "7"), (trailers.EVENT, trailers.SESSION)]
    lines += [(trailers.OUTPUT, "a/b"), (trailers.OUTPUT, "c")]
    message = trailers.format_message("session n ok", lines).encode()
    assert trailers.parse(message) == {
        "Gdag-Offset": ["7"],
        "Gdag-Event": ["session"],
        "Gdag-Output": ["a/b", "c"],
    }
    assert trailers.kind(message) == trailers.SESSION
    assert trailers.kind(b"a summary\n\nno trailers here\n") is None


def test_git_reads_the_same_trailers(tmp_path: Path) -> None:
    message = trailers.format_message(
        "publish x v2", [(trailers.OFFSET, "3"), (trailers.PUBLISH_ID, "p1-abc")]
    )
    out = subprocess.run(
        ["git", "interpret-trailers", "--parse"],
        input=message,
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout
    assert out == "Gdag-Offset: 3\nGdag-Publish: p1-abc\n"

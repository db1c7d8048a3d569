"""An "each" node's failed events stay visible (status, why, graph) until
`gdag run --retry-failed` runs exactly those again, in order."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import define, fsck, gdag

EACH = """
[nodes.each]
run = 'v=$(cat "$GDAG_IN_X"); echo "$v" >> "$GDAG_REPO/seen"; case " $(cat "$GDAG_REPO/broken" 2>/dev/null) " in *" $v "*) exit 5;; esac; echo "$v" > "$GDAG_OUT/y"'
inputs = { x = "x" }
publishes = ["y"]
mode = "each"
"""


def seen(repo: Path) -> list[str]:
    return (repo / "seen").read_text().split()


def state_of(repo: Path) -> dict:
    (st,) = json.loads(gdag("status", "--json", cwd=repo).stdout)
    return st


def test_failed_events_are_shown_and_retried_in_order(repo: Path) -> None:
    define(repo, EACH)
    (repo / "broken").write_text("2 3")
    for v in ("1", "2", "3", "4"):
        assert gdag("publish", "x", v, "--no-run", cwd=repo).returncode == 0
    r = gdag("run", cwd=repo)
    assert r.returncode == 1, r.stderr
    assert seen(repo) == ["1", "2", "3", "4"]  # every event ran; two failed
    st = state_of(repo)
    assert st["state"] == "failed" and "2 failed event(s) not processed" in st["reason"], st
    assert "2 failed event(s)" in gdag("why", "each", cwd=repo).text
    graph = json.loads(gdag("graph", "--format", "json", cwd=repo).stdout)
    (node,) = [v for v in graph["vertices"] if v["id"] == "node:each"]
    assert node["state"] == "failed", node
    assert "nothing to do" in gdag("run", cwd=repo).stderr  # a plain run leaves them
    # Still broken for 3: 2 is redone, 3 fails again and stays listed (once per run).
    (repo / "broken").write_text("3")
    r = gdag("run", "--retry-failed", cwd=repo)
    assert r.returncode == 1, r.stderr
    assert seen(repo)[4:] == ["2", "3"]
    st = state_of(repo)
    assert st["state"] == "failed" and "1 failed event(s)" in st["reason"], st
    (repo / "broken").write_text("")
    assert gdag("run", "--retry-failed", cwd=repo).returncode == 0
    assert seen(repo)[6:] == ["3"]
    assert state_of(repo)["state"] == "up-to-date"
    assert "nothing to do" in gdag("run", "--retry-failed", cwd=repo).stderr
    assert gdag("lookup", "y", cwd=repo).stdout == b"3\n"  # the redone event's value
    fsck(repo)

"""gdag show and gdag log filters: sessions, nodes, provenance chains."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from conftest import gdag


def pipeline(repo: Path) -> None:
    (repo / "gdag.toml").write_text(
        textwrap.dedent("""
        [nodes.up]
        run = 'echo working; tr a-z A-Z < "$GDAG_IN_X" > "$GDAG_OUT/up"'
        inputs = { x = "src" }
        publishes = ["up"]
        [nodes.wrap]
        run = 'printf "[%s]" "$(cat "$GDAG_IN_U")" > "$GDAG_OUT/wrapped"'
        inputs = { u = "up", extra = "extra" }
        publishes = ["wrapped"]
    """)
    )
    for args in (["extra", "e", "--no-run"], ["src", "a"], ["src", "b"]):
        assert gdag("publish", *args, cwd=repo).returncode == 0


def show(repo: Path, *args: str) -> dict:
    r = gdag("show", *args, "--json", cwd=repo)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_show_output_provenance_chain(repo: Path) -> None:
    pipeline(repo)
    info = show(repo, "wrapped")
    assert info["meta"]["version"] == 2
    prov = info["provenance"]
    assert prov["node"] == "wrap" and prov["version"] == 2
    inputs = {step["output"]: step for step in prov["inputs"]}
    assert inputs["extra"]["event"] == "publish" and inputs["extra"]["version"] == 1
    assert inputs["up"]["node"] == "up" and inputs["up"]["version"] == 2
    assert inputs["up"]["inputs"][0] == {
        "output": "src",
        "version": 2,
        "offset": 6,
        "event": "publish",
        "published": inputs["up"]["inputs"][0]["published"],
    }
    shallow = show(repo, "wrapped", "--depth", "1")
    assert all("inputs" not in step for step in shallow["provenance"]["inputs"])
    text = gdag("show", "wrapped", cwd=repo).text
    assert "by node wrap" in text and "src v2" in text


def test_show_node_and_session(repo: Path) -> None:
    pipeline(repo)
    node = show(repo, "up")
    assert [r["inputs"] for r in node["recent"]] == [{"src": 2}, {"src": 1}]
    last = node["last"]
    assert last["status"] == "ok" and "working" in last["log_tail"]
    # Outputs left in $GDAG_OUT are committed with @done, which names them.
    assert last["branch"] == ["start up", "done up ok: up"]
    session = show(repo, node["recent"][1]["session"])
    assert session["kind"] == "session" and session["inputs"] == {"src": 1}
    assert session["outputs"] == {"up": 1}
    r = gdag("show", "up.0.nope", cwd=repo)
    assert r.returncode == 3 and "no merged session" in r.stderr
    r = gdag("show", "never/there", cwd=repo)
    assert r.returncode == 3


def test_log_filters_and_graph(repo: Path) -> None:
    pipeline(repo)
    events = json.loads(gdag("log", "--node", "up", "--json", cwd=repo).stdout)
    assert [e["node"] for e in events] == ["up", "up"]
    assert json.loads(gdag("log", "--since", "1h", "--json", cwd=repo).stdout)
    assert json.loads(gdag("log", "--since", "2099-01-01", "--json", cwd=repo).stdout) == []
    text = gdag("log", "--graph", "--node", "wrap", "-n", "1", cwd=repo).text
    assert text.splitlines()[1:] == [
        "        | start wrap",
        "        | done wrap ok: wrapped",
    ]
    r = gdag("log", "--since", "whenever", cwd=repo)
    assert r.returncode == 3 and "not a time" in r.stderr

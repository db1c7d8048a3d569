"""`gdag metrics`: the Prometheus text format, read back by prometheus_client's own parser."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import define, fsck, gdag
from prometheus_client.parser import text_string_to_metric_families

DEFINITION = """
[nodes.a]
run = 'cp "$GDAG_IN_X" "$GDAG_OUT/y"'
inputs = { x = "x" }
publishes = ["y"]

[nodes.broken]
run = 'echo oops >&2; exit 1'
inputs = { x = "x" }
publishes = ["z"]

[nodes.lazy]
run = 'cp "$GDAG_IN_O" "$GDAG_OUT/w"'
inputs = { o = "other" }
publishes = ["w"]

[nodes.never]
run = 'true'
inputs = { n = "nothing-yet" }
publishes = ["v"]
"""


def parse(text: str) -> dict[str, dict[str, Any]]:
    """Sample name -> {frozen labels (without log) -> value}, and the families' types."""
    samples: dict[str, dict[str, Any]] = {}
    types = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            assert s.labels.pop("log") == "main", s
            samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    samples["__types__"] = types
    return samples


@pytest.fixture
def dag_repo(repo: Path) -> Path:
    define(repo, DEFINITION)
    assert gdag("publish", "x", "1", cwd=repo).returncode == 1  # a ok, broken fails
    assert gdag("publish", "x", "2", cwd=repo).returncode == 1  # again
    assert gdag("publish", "other", "o", cwd=repo).returncode == 0  # lazy runs
    assert gdag("publish", "other", "p", "--no-run", cwd=repo).returncode == 0  # lazy stale
    return repo


def test_metrics_parse_and_count(dag_repo: Path) -> None:
    r = gdag("metrics", cwd=dag_repo)
    assert r.returncode == 0, r.stderr
    m = parse(r.text)
    assert m["__types__"] == {
        "gdag_log_length": "gauge",
        "gdag_log_tip_timestamp_seconds": "gauge",
        "gdag_log_events": "counter",
        "gdag_sessions": "counter",
        "gdag_session_duration_seconds": "histogram",
        "gdag_nodes": "gauge",
        "gdag_node_state": "gauge",
    }

    events = {kind: v for ((_, kind),), v in m["gdag_log_events_total"].items()}
    logged = json.loads(gdag("log", "--json", cwd=dag_repo).stdout)
    assert m["gdag_log_length"] == {(): len(logged)}
    for kind in {e["event"] for e in logged}:
        assert events[kind] == sum(1 for e in logged if e["event"] == kind), kind
    assert events["session"] == 5 and events["publish"] == 4

    sessions = {
        dict(k)["node"] + "/" + dict(k)["status"]: v for k, v in m["gdag_sessions_total"].items()
    }
    assert sessions == {"a/ok": 2, "broken/failed": 2, "lazy/ok": 1}

    # The histogram: cumulative buckets ending at +Inf, one observation per session.
    buckets = m["gdag_session_duration_seconds_bucket"]
    for node, count in (("a", 2), ("broken", 2), ("lazy", 1)):
        mine = sorted(
            (float(dict(k)["le"]), v) for k, v in buckets.items() if dict(k)["node"] == node
        )
        assert mine[-1] == (float("inf"), count)
        assert [v for _, v in mine] == sorted(v for _, v in mine)
        assert m["gdag_session_duration_seconds_count"][(("node", node),)] == count
        assert m["gdag_session_duration_seconds_sum"][(("node", node),)] >= 0

    states = {dict(k)["node"]: dict(k)["state"] for k in m["gdag_node_state"]}
    assert states == {"a": "up-to-date", "broken": "failed", "lazy": "stale", "never": "waiting"}
    status = json.loads(gdag("status", "--json", cwd=dag_repo).stdout)
    assert states == {s["node"]: s["state"] for s in status}
    by_state = {dict(k)["state"]: v for k, v in m["gdag_nodes"].items()}
    assert by_state["stale"] == 1 and by_state["failed"] == 1 and by_state["up-to-date"] == 1
    assert sum(by_state.values()) == 4
    fsck(dag_repo)


def test_metrics_of_a_fresh_log(repo: Path) -> None:
    r = gdag("metrics", cwd=repo)
    assert r.returncode == 0, r.stderr
    m = parse(r.text)
    assert m["gdag_log_length"] == {(): 1}
    assert m["gdag_log_events_total"][(("kind", "init"),)] == 1
    assert "gdag_sessions_total" not in m


def test_metrics_without_a_log_is_refused(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path / "r")], check=True)
    r = gdag("metrics", cwd=tmp_path / "r")
    assert r.returncode == 3
    assert r.stderr.startswith("gdag: error: no log 'main'"), r.stderr
    r = gdag("metrics", cwd=tmp_path)
    assert r.returncode == 3 and "not a git repository" in r.stderr, r.stderr


def test_stats_follow_new_events_incrementally(dag_repo: Path) -> None:
    """The counts kept between looks (as `gdag serve` keeps them) equal a fresh count."""
    from gdag.metrics import LogStats, collect
    from gdag.workspace import Workspace

    ws = Workspace.open(dag_repo)
    stats = LogStats(ws.log)
    collect(ws, stats)
    assert gdag("publish", "x", "3", cwd=dag_repo).returncode == 1
    assert collect(ws, stats) == collect(ws)


def test_stats_count_afresh_when_the_chain_is_replaced(dag_repo: Path) -> None:
    """A replay moves the log ref to another chain: the kept counts start over, whether
    the new chain is as long as the old one or shorter."""
    from conftest import git

    from gdag.metrics import LogStats, collect
    from gdag.workspace import Workspace

    ws = Workspace.open(dag_repo)
    stats = LogStats(ws.log)
    collect(ws, stats)
    tip = stats.top
    earlier = json.loads(gdag("log", "--json", cwd=dag_repo).stdout)[3]["commit"]
    git("update-ref", "refs/gdag/logs/main", earlier, cwd=dag_repo)
    for value in ("q", "r", "s"):  # back to the same length, on another chain
        assert gdag("publish", "x", value, "--no-run", cwd=dag_repo).returncode == 0
    assert collect(ws, stats) == collect(ws)
    fresh = LogStats(ws.log)
    fresh.update()
    assert stats.top == tip and stats.events == fresh.events and stats.sessions == fresh.sessions
    git("update-ref", "refs/gdag/logs/main", earlier, cwd=dag_repo)  # shorter
    assert collect(ws, stats) == collect(ws)
    assert stats.top == tip - 3

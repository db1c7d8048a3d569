"""Metrics in the Prometheus text format: events, sessions, durations, node states.

Counts over the whole log come from `LogStats`, which walks the log once and
then, at each later look, only the events appended since (a long-running
`gdag serve` answers `/metrics` in O(new events)); node states are computed as
`gdag status` computes them.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from gdag import nodestates, trailers
from gdag.log import Event, Log
from gdag.session import read_done
from gdag.workspace import Workspace

# Upper bounds of the session duration histogram, in seconds.
BUCKETS = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0, math.inf)


class Histogram:
    """Cumulative bucket counts, their sum and count (Prometheus' histogram)."""

    def __init__(self) -> None:
        self.counts = [0] * len(BUCKETS)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(BUCKETS):
            if value <= bound:
                self.counts[i] += 1
        self.sum += value
        self.count += 1


class LogStats:
    """Events by kind, sessions by node and status, and session durations of one log,
    brought up to date from the tip at each `update`."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self._reset()

    def _reset(self) -> None:
        self.tip: bytes | None = None
        self.top = -1  # offset of `tip`
        self.tip_time = 0
        self.events: Counter[str] = Counter()
        self.sessions: Counter[tuple[str, str]] = Counter()
        self.durations: dict[str, Histogram] = {}

    def update(self) -> None:
        tip = self.log.tip()
        if tip is None or tip == self.tip:
            return
        new: list[Event] = []
        for event in self.log.events(tip):
            if event.offset < self.top or (event.offset == self.top and event.sha != self.tip):
                self._reset()  # a replay replaced the chain: count it afresh
                return self.update()
            if event.offset == self.top:
                break
            new.append(event)
        for event in reversed(new):  # in log order: float sums come out the same either way
            self._count(event)
        self.tip, self.top, self.tip_time = tip, new[0].offset, new[0].time

    def _count(self, event: Event) -> None:
        self.events[event.kind] += 1
        if event.kind != trailers.SESSION:
            return
        node = event.first(trailers.NODE) or "?"
        self.sessions[node, event.first(trailers.STATUS) or "?"] += 1
        store = self.log.store
        done = read_done(store, store.read_commit(event.sha).tree, node)
        duration = (done or {}).get("duration")
        if isinstance(duration, int | float):
            self.durations.setdefault(node, Histogram()).observe(float(duration))


def node_states(ws: Workspace) -> dict[str, str]:
    """Every node's state, as `gdag status` says it."""
    from gdag.runner import Engine

    return {st.node: st.state for st in Engine(ws).status()}


def render(stats: LogStats, states: dict[str, str]) -> str:
    """The Prometheus text exposition of a log's stats and its nodes' states."""
    log = {"log": stats.log.name}
    lines: list[str] = []

    def family(name: str, kind: str, help: str) -> None:
        lines.append(f"# HELP {name} {help}")
        lines.append(f"# TYPE {name} {kind}")

    def sample(name: str, labels: dict[str, str], value: float) -> None:
        lines.append(f"{name}{{{_labels({**log, **labels})}}} {_number(value)}")

    family("gdag_log_length", "gauge", "Events on the log (the tip's offset plus one).")
    sample("gdag_log_length", {}, stats.top + 1)
    family("gdag_log_tip_timestamp_seconds", "gauge", "Commit time of the log's last event.")
    sample("gdag_log_tip_timestamp_seconds", {}, stats.tip_time)
    family("gdag_log_events_total", "counter", "Events on the log, by kind.")
    for kind in sorted(set(stats.events) | {trailers.PUBLISH, trailers.SESSION}):
        sample("gdag_log_events_total", {"kind": kind}, stats.events[kind])
    family("gdag_sessions_total", "counter", "Sessions merged into the log, by node and status.")
    for (node, status), n in sorted(stats.sessions.items()):
        sample("gdag_sessions_total", {"node": node, "status": status}, n)
    family("gdag_session_duration_seconds", "histogram", "How long sessions ran, by node.")
    for node, hist in sorted(stats.durations.items()):
        for bound, n in zip(BUCKETS, hist.counts, strict=True):
            le = "+Inf" if bound == math.inf else _number(bound)
            sample("gdag_session_duration_seconds_bucket", {"node": node, "le": le}, n)
        sample("gdag_session_duration_seconds_sum", {"node": node}, round(hist.sum, 6))
        sample("gdag_session_duration_seconds_count", {"node": node}, hist.count)
    by_state = Counter(states.values())
    family("gdag_nodes", "gauge", "Nodes in each state (up-to-date, stale, failed, ...).")
    for state in nodestates.ALL:
        sample("gdag_nodes", {"state": state}, by_state[state])
    family("gdag_node_state", "gauge", "1 for each node's current state.")
    for node, state in sorted(states.items()):
        sample("gdag_node_state", {"node": node, "state": state}, 1)
    return "\n".join(lines) + "\n"


def collect(ws: Workspace, stats: LogStats | None = None) -> str:
    """The metrics of the workspace's log now (`stats`: counts kept from an earlier look)."""
    ws.log.require_tip()
    stats = stats or LogStats(ws.log)
    stats.update()
    return render(stats, node_states(ws))


def _labels(labels: dict[str, Any]) -> str:
    return ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    return str(int(value)) if float(value).is_integer() else repr(float(value))

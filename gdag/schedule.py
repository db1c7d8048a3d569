"""Schedules: which ticks are due, publishing each one once per log, and what comes next.

A schedule NAME publishes `ticks/NAME` (type str) whose value is the scheduled
time (ISO 8601, in the schedule's time zone). Each scheduled time is published
at most once per log, whoever publishes it (`gdag tick`, `gdag watch`, on one
machine or several): its publish id is `tick:NAME:<time in UTC>`, and the
append checks, inside the log's compare-and-swap loop, that the log's last tick
of the schedule is older than this one. Ticks are published in time order, so
that last tick is the newest one ever published: a race lost to another
publisher rebuilds on the new tip and finds the tick there. Through a remote,
the compare-and-swap is the push (`--remote`), and `gdag sync` re-applies only
publish ids the remote lacks, so a tick published on two machines before they
synced counts once.
"""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from dataclasses import dataclass, field
from typing import Any

from gdag import cron, state
from gdag.clock import now as clock_now
from gdag.dag import Dag, Schedule
from gdag.log import Log
from gdag.repo import Store
from gdag.workspace import Published, ValueSource, Workspace

# catchup = "none": a tick more than this late was missed, and is not published.
ON_TIME = 60.0
# How many re-applied versions of a tick output are looked through for a newer tick.
REAPPLIED_WALK = 64


def rule_of(schedule: Schedule) -> cron.Rule:
    if schedule.every is not None:
        return cron.Every(schedule.every)
    tz = zoneinfo.ZoneInfo(schedule.timezone) if schedule.timezone else cron.UTC
    return cron.Cron(schedule.cron or "", tz)


def now() -> dt.datetime:
    """The current time (`GDAG_NOW` when set) as an aware instant."""
    return dt.datetime.fromtimestamp(clock_now(), cron.UTC)


def last_tick(
    store: Store, root: bytes | None, schedule: Schedule, log: Log | None = None
) -> dt.datetime | None:
    """The time of the schedule's newest tick in the state tree `root`, or None.

    Ticks published here only grow, but `gdag sync` re-applies a machine's local
    ticks on top of the remote's, which may hold newer ones: while the value in
    force was re-applied (`replayed_from` in its metadata), the versions before it
    count too (walked back through `prev`, given the `log`, up to REAPPLIED_WALK)."""
    found = state.read_output(store, root, schedule.output)
    newest: dt.datetime | None = None
    for _ in range(REAPPLIED_WALK):
        if found is None or found.value.is_tree:
            break
        when = _tick_time(store, found)
        if when is not None and (newest is None or when > newest):
            newest = when
        prev = found.meta.get("prev")
        if log is None or "replayed_from" not in found.meta or prev is None:
            break
        commit = log.commit_at(int(prev))
        found = state.read_output(store, store.read_commit(commit).tree, schedule.output)
    return newest


def _tick_time(store: Store, found: state.OutputState) -> dt.datetime | None:
    try:
        return cron.parse_iso(json.loads(store.read_blob(found.value.sha)))
    except (ValueError, TypeError):
        return None


def due_times(schedule: Schedule, last: dt.datetime | None, at: dt.datetime) -> list[dt.datetime]:
    """The scheduled times to publish at `at`, given the last tick published.

    latest: the newest time due; all: every time since the last tick (with none yet,
    the newest); none: the newest time due, only while it is less than ON_TIME late."""
    rule = rule_of(schedule)
    latest = cron.latest_at_or_before(rule, at)
    if latest is None or (last is not None and latest <= last):
        return []
    if schedule.catchup == "all" and last is not None:
        return list(cron.times_between(rule, last, at))
    if schedule.catchup == "none" and (at - latest).total_seconds() >= ON_TIME:
        return []
    return [latest]


def publish_id(schedule: Schedule, when: dt.datetime) -> str:
    return f"tick:{schedule.name}:{cron.iso(when)}"


def publish_tick(ws: Workspace, schedule: Schedule, when: dt.datetime) -> Published:
    """Publish the tick for `when` unless the log already has it (or a later one)."""
    value = cron.iso(when, rule_of(schedule).tz)

    def already(parent: bytes | None) -> bool:
        last = last_tick(ws.store, parent, schedule, ws.log)
        return last is not None and last >= when

    return ws.publish(
        schedule.output,
        ValueSource(data=value.encode()),
        publish_id=publish_id(schedule, when),
        skip_if=already,
    )


@dataclass
class Ticked:
    """A tick this process appended."""

    schedule: str
    time: str  # the value published
    published: Published

    def to_json(self) -> dict[str, Any]:
        return {"schedule": self.schedule, "time": self.time, **self.published.to_json()}


def publish_due(ws: Workspace, dag: Dag, at: dt.datetime | None = None) -> list[Ticked]:
    """Publish every tick due at `at` (default: now), schedule by schedule; the ones
    this call appended are returned (another process may have published the rest)."""
    at = at or now()
    done: list[Ticked] = []
    for name in sorted(dag.schedules):
        schedule = dag.schedules[name]
        root = ws.store.read_commit(ws.log.require_tip()).tree
        for when in due_times(schedule, last_tick(ws.store, root, schedule, ws.log), at):
            published = publish_tick(ws, schedule, when)
            if published.changed:
                done.append(Ticked(name, cron.iso(when, rule_of(schedule).tz), published))
    return done


def next_due(dag: Dag, at: dt.datetime) -> dt.datetime | None:
    """The soonest time after `at` any schedule fires at."""
    times = [t for s in dag.schedules.values() if (t := rule_of(s).next_after(at))]
    return min(times) if times else None


@dataclass
class ScheduleState:
    """One schedule as `gdag schedules` shows it."""

    name: str
    output: str
    rule: str
    timezone: str
    catchup: str
    last: str | None
    next: str | None
    due: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def describe(log: Log, root: bytes, dag: Dag, at: dt.datetime) -> list[ScheduleState]:
    """Every schedule: its last tick, its next, and what `gdag tick` would publish now."""
    found = []
    for name in sorted(dag.schedules):
        schedule = dag.schedules[name]
        rule = rule_of(schedule)
        last = last_tick(log.store, root, schedule, log)
        nxt = rule.next_after(at)
        found.append(
            ScheduleState(
                name,
                schedule.output,
                schedule.rule_text,
                schedule.timezone or "UTC",
                schedule.catchup,
                cron.iso(last, rule.tz) if last is not None else None,
                cron.iso(nxt, rule.tz) if nxt is not None else None,
                [cron.iso(t, rule.tz) for t in due_times(schedule, last, at)],
            )
        )
    return found

"""Schedule rules: cron fields, time zones across clock changes, leap days, catch-up."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from gdag.cron import Cron, Every, RuleError, iso, latest_at_or_before, parse_iso, times_between
from gdag.dag import Schedule
from gdag.schedule import ON_TIME, due_times

PARIS = zoneinfo.ZoneInfo("Europe/Paris")
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")


def at(text: str) -> dt.datetime:
    return parse_iso(text)


def fires(rule: Cron | Every, after: str, until: str) -> list[str]:
    return [iso(t, rule.tz) for t in times_between(rule, at(after), at(until))]


@pytest.mark.parametrize(
    ("rule", "after", "until", "expected"),
    [
        # */7 restarts at every hour: 56, then 0 of the next hour.
        (
            "*/7 * * * *",
            "2026-01-01T00:50Z",
            "2026-01-01T01:15Z",
            ["2026-01-01T00:56:00Z", "2026-01-01T01:00:00Z", "2026-01-01T01:07:00Z"]
            + ["2026-01-01T01:14:00Z"],
        ),
        (
            "0 2 * * *",
            "2026-01-01T00:00Z",
            "2026-01-02T03:00Z",
            ["2026-01-01T02:00:00Z", "2026-01-02T02:00:00Z"],
        ),
        # lists, ranges with steps, names
        (
            "0,30 8-12/2 * * mon-fri",
            "2026-01-02T09:00Z",  # a Friday
            "2026-01-05T09:00Z",  # the Monday after
            ["2026-01-02T10:00:00Z", "2026-01-02T10:30:00Z", "2026-01-02T12:00:00Z"]
            + ["2026-01-02T12:30:00Z", "2026-01-05T08:00:00Z", "2026-01-05T08:30:00Z"],
        ),
        (
            "0 0 1 jan,jul *",
            "2026-01-01T00:00Z",
            "2027-01-01T00:00Z",
            ["2026-07-01T00:00:00Z", "2027-01-01T00:00:00Z"],
        ),
        # both day fields restricted: either matches (the 13th, or a Friday)
        (
            "0 0 13 * 5",
            "2026-02-10T00:00Z",
            "2026-02-21T00:00Z",
            ["2026-02-13T00:00:00Z", "2026-02-20T00:00:00Z"],
        ),
        # 7 is Sunday too
        (
            "0 12 * * 7",
            "2026-01-01T00:00Z",
            "2026-01-12T00:00Z",
            ["2026-01-04T12:00:00Z", "2026-01-11T12:00:00Z"],
        ),
        (
            "@hourly",
            "2026-01-01T00:30Z",
            "2026-01-01T02:00Z",
            ["2026-01-01T01:00:00Z", "2026-01-01T02:00:00Z"],
        ),
    ],
)
def test_cron_fires_at(rule: str, after: str, until: str, expected: list[str]) -> None:
    assert fires(Cron(rule), after, until) == expected


def test_feb_29_fires_only_in_leap_years() -> None:
    rule = Cron("0 0 29 2 *")
    assert fires(rule, "2026-01-01T00:00Z", "2033-01-01T00:00Z") == [
        "2028-02-29T00:00:00Z",
        "2032-02-29T00:00:00Z",
    ]
    assert iso(latest_at_or_before(rule, at("2027-06-01T00:00Z")) or at("1970-01-01")) == (
        "2024-02-29T00:00:00Z"
    )
    # 2100 is no leap year: the next after 2096 is 2104.
    assert iso(rule.next_after(at("2096-03-01T00:00Z")) or at("1970-01-01")) == (
        "2104-02-29T00:00:00Z"
    )


def test_spring_forward_in_paris_fires_once_after_the_gap() -> None:
    # 2026-03-29: clocks go from 02:00 to 03:00; 02:30 does not exist that night.
    rule = Cron("30 2 * * *", PARIS)
    assert fires(rule, "2026-03-27T12:00Z", "2026-03-31T12:00Z") == [
        "2026-03-28T02:30:00+01:00",
        "2026-03-29T03:30:00+02:00",
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
    ]


def test_fall_back_in_paris_fires_a_repeated_time_once() -> None:
    # 2026-10-25: clocks go from 03:00 back to 02:00; 02:30 happens twice.
    rule = Cron("30 2 * * *", PARIS)
    assert fires(rule, "2026-10-24T12:00Z", "2026-10-26T12:00Z") == [
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
    ]
    # Hourly: 02:00 comes twice (00:00Z and 01:00Z) and fires the first time only.
    hourly = Cron("0 * * * *", PARIS)
    assert fires(hourly, "2026-10-24T23:30Z", "2026-10-25T02:30Z") == [
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T03:00:00+01:00",
    ]


def test_new_york_daily_keeps_its_wall_clock_time() -> None:
    rule = Cron("0 9 * * *", NEW_YORK)
    utc = [iso(t) for t in times_between(rule, at("2026-03-07T00:00Z"), at("2026-03-09T23:00Z"))]
    assert utc == ["2026-03-07T14:00:00Z", "2026-03-08T13:00:00Z", "2026-03-09T13:00:00Z"]


def test_every_counts_from_the_epoch() -> None:
    assert fires(Every("15m"), "2026-01-01T00:07Z", "2026-01-01T00:45Z") == [
        "2026-01-01T00:15:00Z",
        "2026-01-01T00:30:00Z",
        "2026-01-01T00:45:00Z",
    ]
    assert iso(latest_at_or_before(Every("1d"), at("2026-01-01T23:59Z")) or at("1970-01-01")) == (
        "2026-01-01T00:00:00Z"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("* * * *", "has 4 fields, not 5"),
        ("61 * * * *", "minute: '61' is out of range 0-59"),
        ("* 24 * * *", "hour: '24' is out of range 0-23"),
        ("*/0 * * * *", "the step must be a positive number"),
        ("5-1 * * * *", "the range runs backwards"),
        ("x * * * *", "minute: 'x' is not a number"),
        ("* * * foo *", "month: 'foo' is not a number or a name"),
        ("* * 31 2 *", "names a day that never comes"),
        ("* * 0 * *", "day of month: '0' is out of range 1-31"),
    ],
)
def test_bad_cron_rules_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(RuleError, match=message.replace("*", r"\*")):
        Cron(text)


@pytest.mark.parametrize("text", ["15", "0m", "-5m", "5w", "m", "1.5h", ""])
def test_bad_intervals(text: str) -> None:
    with pytest.raises(RuleError, match="not an interval"):
        Every(text)


# -- catch-up ---------------------------------------------------------------------------


def hourly(catchup: str) -> Schedule:
    return Schedule("h", cron="0 * * * *", catchup=catchup)


@pytest.mark.parametrize(
    ("catchup", "last", "now", "expected"),
    [
        # nothing ran from 10:00 to 13:20
        ("latest", "2026-01-01T10:00Z", "2026-01-01T13:20Z", ["2026-01-01T13:00:00Z"]),
        (
            "all",
            "2026-01-01T10:00Z",
            "2026-01-01T13:20Z",
            ["2026-01-01T11:00:00Z", "2026-01-01T12:00:00Z", "2026-01-01T13:00:00Z"],
        ),
        ("none", "2026-01-01T10:00Z", "2026-01-01T13:20Z", []),
        ("none", "2026-01-01T10:00Z", "2026-01-01T13:00:59Z", ["2026-01-01T13:00:00Z"]),
        ("none", "2026-01-01T12:00Z", "2026-01-01T13:00:30Z", ["2026-01-01T13:00:00Z"]),
        # on time, every mode publishes the one tick due
        ("all", "2026-01-01T12:00Z", "2026-01-01T13:00Z", ["2026-01-01T13:00:00Z"]),
        ("latest", "2026-01-01T12:00Z", "2026-01-01T13:00Z", ["2026-01-01T13:00:00Z"]),
        # already published: nothing
        ("all", "2026-01-01T13:00Z", "2026-01-01T13:59Z", []),
        # the first tick ever is the newest due, whatever the mode
        ("all", None, "2026-01-01T13:20Z", ["2026-01-01T13:00:00Z"]),
        ("latest", None, "2026-01-01T13:20Z", ["2026-01-01T13:00:00Z"]),
    ],
)
def test_catchup(catchup: str, last: str | None, now: str, expected: list[str]) -> None:
    got = due_times(hourly(catchup), at(last) if last else None, at(now))
    assert [iso(t) for t in got] == expected


def test_none_grace_is_a_minute() -> None:
    assert ON_TIME == 60.0

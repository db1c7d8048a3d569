"""Schedule rules: 5-field cron expressions and fixed intervals, as instants in time.

Pure rules over the standard library (`datetime`, `zoneinfo`): no git, no log.
A cron rule is read in its time zone's wall-clock time. Each wall-clock time it
names fires once: a time the clocks pass twice (autumn) fires at its first
occurrence, and a time they skip (spring) is read with the offset in force
before the change (PEP 495's `fold=0`), so `30 2 * * *` fires at 03:30 on the
night clocks jump from 02:00 to 03:00. An interval (`every`) counts from the
Unix epoch, so `every = "1d"` fires at 00:00 UTC whatever the time zone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

UTC = dt.UTC
MINUTE = dt.timedelta(minutes=1)
# Searches stop this many years ahead: far enough for `0 0 29 2 *` in any century.
SEARCH_YEARS = 9

MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# Each field: its name in messages, its range, and the names it takes for numbers.
FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, MONTHS),
    ("day of week", 0, 7, DAYS),
)


class RuleError(ValueError):
    """A schedule rule that does not parse; the message says what is wrong."""


def _field(text: str, low: int, high: int, names: tuple[str, ...] = ()) -> frozenset[int]:
    """One cron field: `*`, `N`, `A-B`, any of them `/STEP`, joined by commas."""

    def number(part: str) -> int:
        if part.lower() in names:
            return names.index(part.lower()) + (1 if low == 1 else 0)
        if not part.isdigit():
            raise RuleError(f"{part!r} is not a number" + (" or a name" if names else ""))
        return int(part)

    values: set[int] = set()
    for item in text.split(","):
        span, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise RuleError(f"{item!r}: the step must be a positive number")
            step = int(step_text)
        if span == "*":
            start, end = low, high
        elif "-" in span:
            a, _, b = span.partition("-")
            start, end = number(a), number(b)
        else:
            start = number(span)
            end = high if slash else start
        if not (low <= start <= high and low <= end <= high):
            raise RuleError(f"{item!r} is out of range {low}-{high}")
        if start > end:
            raise RuleError(f"{item!r}: the range runs backwards")
        values.update(range(start, end + 1, step))
    return frozenset(values)


class Cron:
    """A 5-field cron rule (minute hour day-of-month month day-of-week) in a time zone."""

    def __init__(self, text: str, tz: dt.tzinfo = UTC) -> None:
        self.text = text
        self.tz = tz
        fields = MACROS.get(text.strip().lower(), text).split()
        if len(fields) != 5:
            raise RuleError(
                f"cron {text!r} has {len(fields)} fields, not 5 "
                "(minute hour day-of-month month day-of-week)"
            )
        parsed = []
        for field_text, (what, low, high, names) in zip(fields, FIELDS, strict=True):
            try:
                parsed.append(_field(field_text, low, high, names))
            except RuleError as exc:
                raise RuleError(f"cron {text!r}: {what}: {exc}") from None
        self.minutes, self.hours, self.days, self.months = (sorted(p) for p in parsed[:4])
        self.weekdays = frozenset(d % 7 for d in parsed[4])  # 7 is Sunday too
        # Both day fields restricted: either may match (cron's rule); else both must.
        self.either_day = fields[2] != "*" and fields[4] != "*"
        if not any(self._day_ok(d) for d in _sample_days()):
            raise RuleError(f"cron {text!r} names a day that never comes")

    def _day_ok(self, day: dt.date) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days
        dow = (day.weekday() + 1) % 7 in self.weekdays
        return (dom or dow) if self.either_day else (dom and dow)

    def _walls_after(self, wall: dt.datetime) -> Iterator[dt.datetime]:
        """Matching wall-clock times (naive) strictly after `wall`, in order."""
        wall = wall.replace(second=0, microsecond=0) + MINUTE
        day = wall.date()
        last = dt.date(min(wall.year + SEARCH_YEARS, 9999), 12, 31)
        first = True
        while day <= last:
            if self._day_ok(day):
                for hour in self.hours:
                    if first and hour < wall.hour:
                        continue
                    for minute in self.minutes:
                        t = dt.datetime.combine(day, dt.time(hour, minute))
                        if t >= wall:
                            yield t
            first = False
            day += dt.timedelta(days=1)

    def next_after(self, t: dt.datetime) -> dt.datetime | None:
        """The first instant after `t` (aware) this rule fires at, or None within
        SEARCH_YEARS. Near a clock change a skipped wall time can land after a later
        wall time's instant, so there the search starts earlier by the change and
        takes the smallest instant after `t`."""
        wall_t = t.astimezone(self.tz).replace(tzinfo=None)
        best: dt.datetime | None = None
        stop: dt.datetime | None = None
        for wall in self._walls_after(wall_t - self._shift(wall_t)):
            if stop is not None and wall > stop:
                break
            at = wall.replace(tzinfo=self.tz, fold=0).astimezone(UTC)
            if at > t and (best is None or at < best):
                best = at
                stop = wall + self._shift(wall)
        return best

    def _shift(self, wall: dt.datetime) -> dt.timedelta:
        """How far the zone's offset moves within a few hours of `wall` (0 away from a
        clock change)."""
        offsets = [
            (wall + dt.timedelta(hours=h)).replace(tzinfo=self.tz).utcoffset() for h in (-3, 3)
        ]
        a, b = (o or dt.timedelta() for o in offsets)
        return abs(a - b)


def _sample_days() -> Iterator[dt.date]:
    """Every day of a leap year and the days around it: enough to see a day ever comes."""
    day = dt.date(2027, 12, 25)
    while day < dt.date(2029, 1, 8):
        yield day
        day += dt.timedelta(days=1)


class Every:
    """A fixed interval counted from the Unix epoch (`15m`, `2h`, `1d`, `30s`)."""

    def __init__(self, text: str) -> None:
        self.text = text
        number, unit = text.strip()[:-1], text.strip()[-1:]
        if unit not in UNITS or not number.isdigit() or int(number) == 0:
            raise RuleError(
                f"every {text!r} is not an interval: a positive number and s, m, h or d (e.g. 15m)"
            )
        self.seconds = int(number) * UNITS[unit]
        self.tz: dt.tzinfo = UTC

    def next_after(self, t: dt.datetime) -> dt.datetime | None:
        n = int(t.timestamp()) // self.seconds + 1
        return dt.datetime.fromtimestamp(n * self.seconds, UTC)


Rule = Cron | Every


def times_between(rule: Rule, after: dt.datetime, until: dt.datetime) -> Iterator[dt.datetime]:
    """The instants in (after, until] the rule fires at, oldest first."""
    t = rule.next_after(after)
    while t is not None and t <= until:
        yield t
        t = rule.next_after(t)


def latest_at_or_before(rule: Rule, now: dt.datetime) -> dt.datetime | None:
    """The newest instant at or before `now` the rule fires at (searched back in
    growing windows, up to SEARCH_YEARS)."""
    if isinstance(rule, Every):
        n = int(now.timestamp()) // rule.seconds
        return dt.datetime.fromtimestamp(n * rule.seconds, UTC)
    for days in (1, 8, 32, 370, 366 * SEARCH_YEARS):
        found = None
        for found in times_between(rule, now - dt.timedelta(days=days), now):  # noqa: B007
            pass
        if found is not None:
            return found
    return None


def iso(t: dt.datetime, tz: dt.tzinfo = UTC) -> str:
    """An instant as ISO 8601 in `tz` (UTC as `Z`), to the second."""
    local = t.astimezone(tz).replace(microsecond=0)
    text = local.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def parse_iso(text: str) -> dt.datetime:
    """An ISO 8601 time as an aware instant; one without an offset is UTC."""
    when = dt.datetime.fromisoformat(text.strip())
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)

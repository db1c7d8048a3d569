"""The current time as gdag's commands see it: the system's, or `GDAG_NOW`'s.

`GDAG_NOW` (an ISO 8601 time; without an offset, UTC) is a testing aid: every
command then takes that instant as "now" wherever it reasons about time
(schedules: which ticks are due, the next one; `gdag log --since 2h`). The clock
stands still at it. Times gdag records (commit times, `@meta.json` `time`) and
waits by (lease expiry, stale locks, backoff) stay the system's: they order
the log and protect against dead processes, which a pretend time must not touch.
"""

from __future__ import annotations

import os
import time

from gdag.errors import GdagError

ENV = "GDAG_NOW"


def is_frozen() -> bool:
    """Whether `GDAG_NOW` fixes the time (it then never moves)."""
    return bool(os.environ.get(ENV))


def now() -> float:
    """The current time in seconds since the epoch: `GDAG_NOW` when set."""
    text = os.environ.get(ENV)
    if not text:
        return time.time()
    import datetime as dt

    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise GdagError(
            f"{ENV}={text!r} is not an ISO 8601 time",
            hint=f"e.g. {ENV}=2026-01-31T02:00:00Z, or unset it",
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()

"""The states a node can be in, as `gdag status`, `why` and `graph` name them."""

from __future__ import annotations

UP_TO_DATE = "up-to-date"  # its last session consumed the current inputs under the current code
STALE = "stale"  # inputs or code changed since its last session
NEVER_RUN = "never-run"  # has inputs but no session yet
RUNNING = "running"  # a live process holds its lease
FAILED = "failed"  # its last session failed on the current inputs (`--retry-failed`)
WAITING = "waiting"  # not all the inputs it needs exist yet

ALL = (UP_TO_DATE, STALE, NEVER_RUN, RUNNING, FAILED, WAITING)
HAS_WORK = (STALE, NEVER_RUN)  # `gdag run` would run it

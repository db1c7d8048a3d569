"""One thread for many timers: a `Ticker` calls each item's `tick` when its `due` time
comes, so a process holding many leases or running many commands does not start a
thread for each (0.13 ms each, on every session)."""

from __future__ import annotations

import math
import threading
import time
from typing import Protocol


class Timed(Protocol):
    """What a ticker watches: `due` is the monotonic time of its next tick (math.inf:
    none planned); `tick` does what is due, sets the next `due`, and says whether to
    keep watching. A tick that raises is not called again; the others go on."""

    due: float

    def tick(self, now: float) -> bool: ...


class Ticker:
    def __init__(self, name: str) -> None:
        self.name = name
        self._cond = threading.Condition()
        self._items: set[Timed] = set()
        self._thread: threading.Thread | None = None

    def add(self, item: Timed) -> None:
        """Watch `item` (again: its `due` may have changed)."""
        with self._cond:
            self._items.add(item)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            else:
                self._cond.notify()

    def remove(self, item: Timed) -> None:
        with self._cond:
            self._items.discard(item)

    def _run(self) -> None:
        while True:
            with self._cond:
                now = time.monotonic()
                due = [item for item in self._items if item.due <= now]
                if not due:
                    nearest = min((item.due for item in self._items), default=math.inf)
                    self._cond.wait(None if nearest == math.inf else nearest - now)
                    continue
            for item in due:  # outside the lock: a tick may take a while
                try:
                    keep = item.tick(now)
                except Exception:
                    keep = False
                if not keep:
                    self.remove(item)

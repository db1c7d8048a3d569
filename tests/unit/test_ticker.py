"""One thread for many timers: items tick when due, and a failing one stops only itself."""

from __future__ import annotations

import time

from gdag.ticker import Ticker


class Every:
    def __init__(self, period: float, fail: bool = False) -> None:
        self.period, self.fail, self.ticks = period, fail, 0
        self.due = time.monotonic() + period

    def tick(self, now: float) -> bool:
        self.ticks += 1
        if self.fail:
            raise PermissionError("cannot signal it")
        self.due = now + self.period
        return self.ticks < 1000


def test_items_tick_when_due_and_a_failing_one_stops_only_itself() -> None:
    ticker = Ticker("test-ticker")
    bad, good, later = Every(0.01, fail=True), Every(0.02), Every(60.0)
    for item in (bad, good, later):
        ticker.add(item)
    end = time.monotonic() + 0.5
    while good.ticks < 5 and time.monotonic() < end + 5:
        time.sleep(0.01)
    assert good.ticks >= 5  # it went on after `bad` raised
    assert bad.ticks == 1  # not called again
    assert later.ticks == 0  # not due yet
    ticker.remove(good)
    ticker.remove(later)

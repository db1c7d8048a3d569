"""A fake clock for the fast layer: time moves only when someone sleeps or a test says so."""

from __future__ import annotations

import time

from gdag.retry import Clock


class FakeClock(Clock):
    """Time that moves only when someone sleeps or the test says so."""

    def __init__(self) -> None:
        self.now = time.time()  # file modification times are real: start at the real time
        self.mono = 1000.0
        self.slept = 0.0

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)
        self.slept += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.mono += seconds

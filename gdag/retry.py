"""Waiting on others: the clock gdag waits by, and one bounded, jittered backoff for retries.

Every loop that retries because another process got there first (a lost
compare-and-swap, a held ref lock, a directory git pruned between two system
calls) goes through a `Backoff`: attempt, and on failure sleep a random time
below an exponentially growing ceiling, until the loop succeeds or its policy's
bound is reached; then a `RetryError` says what was being waited for.

The bounds are far beyond what contention costs (8 publishers racing on one
log lose a compare-and-swap a few times each, for milliseconds): they turn a
bug or a wedged peer into an error instead of a hang, not a busy log into one.
"""

from __future__ import annotations

import random
import time

from gdag.errors import StoreError


class Clock:
    """Wall time, monotonic time and sleep, as gdag's waiting code sees them.

    Lock ages, lease expiry and retry deadlines read this; tests pass a fake clock
    so that expiry needs no real waiting."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


SYSTEM_CLOCK = Clock()


class Policy:
    """How a retry loop backs off and when it gives up.

    The n-th retry sleeps a uniform random time below min(cap, first * 2**n) ("full
    jitter": racing processes spread out instead of retrying in step). The loop
    gives up after `attempts` tries or once `deadline` seconds have passed since
    the first, whichever comes first (None: no such bound). A plain class, not a
    dataclass: it is built on the import path of every publish."""

    __slots__ = ("first", "cap", "attempts", "deadline")

    def __init__(
        self,
        first: float,
        cap: float,
        attempts: int | None = None,
        deadline: float | None = None,
    ) -> None:
        self.first = first
        self.cap = cap
        self.attempts = attempts
        self.deadline = deadline

    def delay(self, attempt: int) -> float:
        return random.random() * min(self.cap, self.first * 2 ** min(attempt, 40))


# A lost compare-and-swap of a busy ref (a log append, a session branch): rebuild on
# the new tip and try again. Each attempt takes milliseconds; ten minutes of losing
# every race means something is wrong.
CAS = Policy(first=0.001, cap=0.05, deadline=600.0)
# A whole round lost to another writer where each round is heavy work (a sync's fetch
# and push, a replay catching up before it swaps the log).
ROUNDS = Policy(first=0.001, cap=0.05, attempts=1000)
# A ref lock held by another process: git holds one for milliseconds, and gdag breaks
# one older than refs.STALE_LOCK_SECONDS, so 30 s of waiting is a lock that keeps
# being taken anew (`cas_ref(timeout=…)` sets another deadline).
LOCK = Policy(first=0.0005, cap=0.05, deadline=30.0)
# A directory or file that `git prune-packed` or `git pack-refs` removed between two
# system calls, or a ref file caught between its creation and its write: the next
# try nearly always succeeds.
RACE = Policy(first=0.0001, cap=0.01, attempts=20)


class RetryError(StoreError):
    """A retry loop reached its bound."""


class Backoff:
    """The waits of one retry loop: call `wait()` after each failed attempt.

        backoff = Backoff(CAS, f"appending to log {name!r}")
        while True:
            if attempt():
                return
            backoff.wait()

    `wait` sleeps a jittered, growing time, or raises RetryError ("gave up <what>
    after N attempts in S s") once the policy's bound is reached. `deadline`
    replaces the policy's deadline (seconds from now).
    """

    def __init__(
        self,
        policy: Policy,
        what: str,
        *,
        hint: str | None = None,
        clock: Clock = SYSTEM_CLOCK,
        deadline: float | None = None,
    ) -> None:
        self.policy = policy
        self.what = what
        self.hint = hint
        self.clock = clock
        self.deadline = policy.deadline if deadline is None else deadline
        self.start = clock.monotonic()
        self.attempts = 1  # the attempt under way

    def wait(self) -> None:
        elapsed = self.clock.monotonic() - self.start
        limit = self.policy.attempts
        if (limit is not None and self.attempts >= limit) or (
            self.deadline is not None and elapsed >= self.deadline
        ):
            raise RetryError(
                f"gave up {self.what} after {self.attempts} attempts in {elapsed:.1f} s",
                hint=self.hint,
            )
        self.clock.sleep(self.policy.delay(self.attempts))
        self.attempts += 1

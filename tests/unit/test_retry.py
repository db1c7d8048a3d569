"""retry.Backoff: jittered, growing waits, and a clear error at the policy's bound."""

from __future__ import annotations

import pytest

from gdag.retry import CAS, LOCK, RACE, ROUNDS, Backoff, Policy, RetryError
from unit.clock import FakeClock


@pytest.mark.parametrize("policy", [CAS, ROUNDS, LOCK, RACE])
def test_every_policy_is_bounded(policy: Policy) -> None:
    assert policy.attempts is not None or policy.deadline is not None


def test_delays_are_jittered_below_a_growing_ceiling() -> None:
    policy = Policy(first=0.001, cap=0.05)
    for attempt in range(1, 12):
        ceiling = min(0.05, 0.001 * 2**attempt)
        delays = [policy.delay(attempt) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 100  # spread out, not in step
    assert policy.delay(10_000) <= 0.05  # no overflow far into a long wait


def test_attempts_bound(clock: FakeClock) -> None:
    backoff = Backoff(Policy(first=0.01, cap=0.01, attempts=3), "doing it", clock=clock)
    backoff.wait()
    backoff.wait()
    with pytest.raises(RetryError, match=r"gave up doing it after 3 attempts"):
        backoff.wait()


def test_deadline_bound_counts_the_time_attempts_take(clock: FakeClock) -> None:
    backoff = Backoff(
        Policy(first=0.001, cap=0.001, deadline=60.0), "waiting", hint="do x", clock=clock
    )
    for _ in range(5):
        backoff.wait()
    clock.advance(60.0)  # an attempt that took a minute
    with pytest.raises(RetryError) as info:
        backoff.wait()
    assert "gave up waiting after 6 attempts in 60.0 s" in info.value.message
    assert info.value.hint == "do x"


def test_deadline_given_by_the_caller_replaces_the_policy_s(clock: FakeClock) -> None:
    backoff = Backoff(LOCK, "waiting", clock=clock, deadline=1.0)
    with pytest.raises(RetryError):
        while True:
            backoff.wait()
    assert 1.0 <= clock.slept < 1.0 + LOCK.cap

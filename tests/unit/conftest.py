"""The fast layer's fixtures: a fake clock, so expiry and stale locks need no real waiting."""

from __future__ import annotations

import pytest

from unit.clock import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()

"""The superseded-session rule as a table: when a recorded @done covers a finished session.

The merge-back of a session is refused when the tip's @done for its node covers it
(docs/architecture.md, "Nodes and sessions"): same code, input versions at least as
new, and either status ok or an attempt at least as high.
"""

from __future__ import annotations

from typing import Any

import pytest

from gdag.session import Spec, covers


def spec(inputs: dict[str, int], code: str = "c1", attempt: int = 1) -> Spec:
    return Spec(node="n", code=code, inputs=inputs, base=b"", state_at=b"", attempt=attempt)


def done(
    inputs: dict[str, int], status: str = "ok", code: str = "c1", **more: Any
) -> dict[str, Any]:
    return {"code": code, "inputs": inputs, "status": status, **more}


# (recorded @done, this session's spec, this session's status, covered)
CASES = [
    pytest.param(None, spec({"a": 1}), "ok", False, id="nothing recorded"),
    pytest.param({}, spec({"a": 1}), "ok", False, id="empty record"),
    pytest.param(done({"a": 1}), spec({"a": 1}), "ok", True, id="same run already recorded"),
    pytest.param(done({"a": 1}), spec({"a": 1}), "failed", True, id="ok record covers a failure"),
    pytest.param(done({"a": 2}), spec({"a": 1}), "ok", True, id="record on newer input"),
    pytest.param(done({"a": 1}), spec({"a": 2}), "ok", False, id="record on older input"),
    pytest.param(done({"a": 2, "b": 1}), spec({"a": 1, "b": 2}), "ok", False, id="one input older"),
    pytest.param(done({}), spec({"a": 1}), "ok", False, id="record lacks an input"),
    pytest.param(done({"a": 1}, code="c0"), spec({"a": 1}), "ok", False, id="other code"),
    pytest.param(
        done({"a": 1}, code="c0"), spec({"a": 1}, code="c0"), "ok", True, id="same old code"
    ),
    pytest.param(
        done({"a": 1, "b": 1}), spec({"a": 1}), "ok", True, id="record saw an output this did not"
    ),
    pytest.param(
        done({"a": 1}, "failed"), spec({"a": 1}), "ok", True, id="failure of the same attempt"
    ),
    pytest.param(
        done({"a": 1}, "failed", attempt=2),
        spec({"a": 1}, attempt=2),
        "ok",
        True,
        id="failure of the same later attempt",
    ),
    pytest.param(
        done({"a": 1}, "failed"), spec({"a": 1}, attempt=2), "ok", False, id="retry succeeded"
    ),
    pytest.param(
        done({"a": 1}, "failed"),
        spec({"a": 1}, attempt=2),
        "failed",
        False,
        id="retry failed on the same inputs",
    ),
    pytest.param(
        done({"a": 1}, "failed", attempt="3"),
        spec({"a": 1}, attempt=2),
        "ok",
        True,
        id="a higher attempt recorded (as text)",
    ),
    pytest.param(
        done({"a": 2}, "failed"),
        spec({"a": 1}, attempt=2),
        "failed",
        True,
        id="failure on newer inputs is not replaced by a failure on older",
    ),
    pytest.param(
        done({"a": 2}, "failed"),
        spec({"a": 1}, attempt=2),
        "ok",
        False,
        id="success on older inputs replaces a failure on newer",
    ),
]


@pytest.mark.parametrize(("recorded", "session", "status", "covered"), CASES)
def test_covers(recorded: dict[str, Any] | None, session: Spec, status: str, covered: bool) -> None:
    assert covers(recorded, session, status) is covered

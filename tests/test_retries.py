"""Retries: a node's `retries`, `retry_delay` and `retry_on`; every attempt recorded, a
failure event only for the last, and a waiting retry holds no job slot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import define, fsck, gdag, git

FLAKY = """
[nodes.flaky]
run = 'n=$(cat "$GDAG_REPO/count" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$GDAG_REPO/count"; echo "try $n"; [ $n -ge 3 ] || exit 75; echo ok > "$GDAG_OUT/y"'
inputs = {{ x = "x" }}
publishes = ["y"]
retry_delay = "50ms"
{extra}

[nodes.notify]
run = 'cat "$GDAG_IN_F" >> "$GDAG_REPO/notified"'
inputs = {{ f = "gdag/failures/flaky" }}
mode = "each"
"""


def last_session(repo: Path, node: str) -> dict:
    shown = gdag("show", node, "--json", cwd=repo)
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)["last"]


def test_a_flaky_node_succeeds_on_its_third_attempt(repo: Path) -> None:
    define(repo, FLAKY.format(extra="retries = 2"))
    r = gdag("publish", "x", "1", cwd=repo)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("retrying flaky") == 2
    assert gdag("lookup", "y", cwd=repo).stdout == b"ok\n"
    last = last_session(repo, "flaky")
    assert last["status"] == "ok"
    assert [(a["attempt"], a["exit_code"]) for a in last["attempts"]] == [(1, 75), (2, 75)]
    text = gdag("show", "flaky", cwd=repo).text
    assert "attempt 1  failed" in text and "attempt 3  ok" in text
    assert "try 1" in text and "try 3" in text  # every attempt's log is kept
    assert not (repo / "notified").exists()  # it did not fail: no failure event
    assert gdag("lookup", "gdag/failures/flaky", cwd=repo).returncode == 3
    fsck(repo)


def test_out_of_retries_it_fails_once_with_one_failure_event(repo: Path) -> None:
    define(repo, FLAKY.format(extra="retries = 1"))
    r = gdag("publish", "x", "1", cwd=repo)
    assert r.returncode == 1, r.stderr
    (line,) = (repo / "notified").read_text().splitlines()
    failure = json.loads(line)
    assert failure["attempts"] == 2 and failure["exit_code"] == 75
    log = git("log", "--first-parent", "--format=%s", "refs/gdag/logs/main", cwd=repo)
    assert log.count("session flaky failed") == 1 and log.count("session notify ok") == 1
    assert (repo / "count").read_text().strip() == "2"


@pytest.mark.parametrize(
    ("extra", "tries"),
    [
        ("retries = 3\nretry_on = [3]", 1),  # exit 75 is not among them
        ("retries = 3\nretry_on = [75]", 3),
    ],
)
def test_retry_on_names_the_exit_statuses(repo: Path, extra: str, tries: int) -> None:
    define(repo, FLAKY.format(extra=extra))
    gdag("publish", "x", "1", cwd=repo)
    assert (repo / "count").read_text().strip() == str(tries)


TIMEOUT = """
[nodes.slow]
run = 'echo x >> "$GDAG_REPO/tries"; sleep 30'
inputs = {{ x = "x" }}
publishes = ["y"]
timeout = 0.3
retries = 1
retry_delay = 0
{extra}
"""


@pytest.mark.parametrize(
    ("extra", "tries"), [("", 2), ("retry_on = [1]", 1), ('retry_on = ["timeout"]', 2)]
)
def test_a_timeout_is_a_failure_to_retry(repo: Path, extra: str, tries: int) -> None:
    define(repo, TIMEOUT.format(extra=extra))
    assert gdag("publish", "x", "1", cwd=repo).returncode == 1
    assert len((repo / "tries").read_text().splitlines()) == tries


def test_a_retry_waiting_holds_no_job_slot(repo: Path) -> None:
    """With one job slot, another node runs while the flaky one waits to retry."""
    define(
        repo,
        """
        [nodes.flaky]
        run = 'echo "flaky $(date +%s%N)" >> "$GDAG_REPO/order"; [ -e "$GDAG_REPO/order2" ] || { touch "$GDAG_REPO/order2"; exit 1; }; echo ok > "$GDAG_OUT/y"'
        inputs = { x = "x" }
        publishes = ["y"]
        retries = 1
        retry_delay = "2s"
        [nodes.other]
        run = 'echo "other $(date +%s%N)" >> "$GDAG_REPO/order"; echo ok > "$GDAG_OUT/z"'
        inputs = { x = "x" }
        publishes = ["z"]
        """,
    )
    assert gdag("publish", "x", "1", "--no-run", cwd=repo).returncode == 0
    r = gdag("run", "-j", "1", cwd=repo)
    assert r.returncode == 0, r.stderr
    order = [line.split()[0] for line in (repo / "order").read_text().splitlines()]
    assert order == ["flaky", "other", "flaky"], order


@pytest.mark.parametrize(
    ("lines", "words"),
    [
        ("retries = -1", "retries must be a whole number"),
        ("retries = true", "retries must be a whole number"),
        ('retries = 1\nretry_delay = "soon"', "is not a duration"),
        ("retries = 1\nretry_on = [0]", "retry_on must list exit statuses"),
        ("retries = 1\nretry_on = []", "retry_on must list exit statuses"),
        ("retry_on = [1]", "need retries"),
    ],
)
def test_bad_retry_settings_are_definition_errors(repo: Path, lines: str, words: str) -> None:
    define(repo, f'[nodes.n]\nrun = "true"\ninputs = {{ x = "x" }}\n{lines}\n')
    r = gdag("check", cwd=repo)
    assert r.returncode == 3 and words in r.stderr, r.stderr


def test_what_a_failed_attempt_published_is_not_merged(repo: Path) -> None:
    define(
        repo,
        """
        [nodes.a]
        run = 'n=$(cat "$GDAG_REPO/count" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$GDAG_REPO/count"; if [ $n -lt 2 ]; then gdag publish side "from attempt $n"; exit 75; fi; echo ok > "$GDAG_OUT/main"'
        inputs = { x = "x" }
        publishes = ["main", "side"]
        retries = 1
        retry_delay = 0
        """,
    )
    r = gdag("publish", "x", "1", cwd=repo)
    assert r.returncode == 0, r.stderr
    assert gdag("lookup", "main", cwd=repo).stdout == b"ok\n"
    assert gdag("lookup", "side", cwd=repo).returncode == 3  # attempt 1's value is gone
    fsck(repo)


def test_a_retry_takes_its_job_slot_back_before_it_runs(repo: Path) -> None:
    """With one job slot, another node runs while a session waits to retry, and the
    retry starts only once that node is done: never two at once."""
    define(
        repo,
        """
        [nodes.a]
        run = 'echo "start $(date +%s%N)" >> "$GDAG_REPO/times"; n=$(cat "$GDAG_REPO/count" 2>/dev/null || echo 0); echo $((n+1)) > "$GDAG_REPO/count"; sleep 0.3; echo "end $(date +%s%N)" >> "$GDAG_REPO/times"; [ $n -ge 1 ] || exit 1; echo ok > "$GDAG_OUT/y"'
        inputs = { x = "x" }
        publishes = ["y"]
        retries = 1
        retry_delay = "100ms"
        [nodes.b]
        run = 'echo "start $(date +%s%N)" >> "$GDAG_REPO/times"; sleep 1; echo "end $(date +%s%N)" >> "$GDAG_REPO/times"; echo ok > "$GDAG_OUT/z"'
        inputs = { x = "x" }
        publishes = ["z"]
        """,
    )
    assert gdag("publish", "x", "1", "--no-run", cwd=repo).returncode == 0
    r = gdag("run", "-j", "1", cwd=repo)
    assert r.returncode == 0, r.stderr
    events = sorted(
        (int(t), 1 if kind == "start" else -1)
        for kind, t in (line.split() for line in (repo / "times").read_text().splitlines())
    )
    assert len(events) == 6  # a twice, b once
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    assert peak == 1

"""Failures are events: a failed session publishes `gdag/failures/<node>` in its merge,
once, so notifications are ordinary nodes subscribing to it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import define, fsck, gdag, git


def log_lines(repo: Path) -> list[str]:
    return git("log", "--first-parent", "--format=%s", "refs/gdag/logs/main", cwd=repo).split("\n")


def test_a_failed_session_publishes_its_failure_once(repo: Path) -> None:
    define(
        repo,
        """
        [nodes.build]
        run = 'echo compiling; echo "broken: $(cat "$GDAG_IN_X")" >&2; exit 4'
        inputs = { x = "x" }
        publishes = ["y"]

        [nodes.notify]
        run = 'cat "$GDAG_IN_F" >> "$GDAG_REPO/notified"'
        inputs = { f = "gdag/failures/build" }
        mode = "each"
        """,
    )
    r = gdag("publish", "x", "v1", cwd=repo)
    assert r.returncode == 1, r.stderr  # build failed; the run still ran its notifier
    failure = json.loads(gdag("lookup", "gdag/failures/build", cwd=repo).stdout)
    assert failure["node"] == "build" and failure["exit_code"] == 4
    assert failure["inputs"] == {"x": 1} and failure["error"] == "exit status 4"
    assert "compiling" in failure["log"] and "broken: v1" in failure["log"]
    assert failure["session"].startswith("build.")
    notified = (repo / "notified").read_text().splitlines()
    assert [json.loads(line)["session"] for line in notified] == [failure["session"]]
    # Nothing more to do: the failure was published once and notified once.
    again = gdag("run", cwd=repo)
    assert again.returncode == 0 and "nothing to do" in again.stderr, again.stderr
    assert len((repo / "notified").read_text().splitlines()) == 1
    assert log_lines(repo).count("session build failed") == 1
    # A second failure is a second event.
    assert gdag("publish", "x", "v2", cwd=repo).returncode == 1
    notified = [json.loads(line) for line in (repo / "notified").read_text().splitlines()]
    assert [n["inputs"] for n in notified] == [{"x": 1}, {"x": 2}]
    fsck(repo)


def test_failing_notifiers_do_not_wake_each_other(repo: Path) -> None:
    """A node watching failure events that fails publishes none: two such nodes cannot
    keep each other failing, and one never wakes itself."""
    define(
        repo,
        """
        [nodes.build]
        run = 'exit 1'
        inputs = { x = "x" }
        publishes = ["y"]
        [nodes.alert-a]
        run = 'exit 2'
        inputs = { f = "gdag/failures/*" }
        [nodes.alert-b]
        run = 'exit 3'
        inputs = { f = "gdag/failures/**" }
        """,
    )
    r = gdag("publish", "x", "1", cwd=repo, timeout=60)
    assert r.returncode == 1, r.stderr
    lines = log_lines(repo)
    assert lines.count("session alert-a failed") == 1 and lines.count("session alert-b failed") == 1
    assert "nothing to do" in gdag("run", cwd=repo, timeout=60).stderr
    names = gdag("lookup", "gdag/failures/*", cwd=repo).stdout.decode().split()
    assert names == ["gdag/failures/build"]


class Hook(BaseHTTPRequestHandler):
    received: list[bytes] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        length = int(self.headers["Content-Length"])
        Hook.received.append(self.rfile.read(length))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    Hook.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


def test_the_cookbooks_webhook_notifier(repo: Path, webhook: str) -> None:
    """The cookbook's recipe, run as written against a webhook on 127.0.0.1."""
    cookbook = (Path(__file__).resolve().parent.parent / "docs" / "cookbook.md").read_text()
    recipe = cookbook.split("<!-- failure-webhook -->")[1].split("```toml\n")[1].split("```")[0]
    define(
        repo,
        """
        [nodes.nightly]
        run = 'echo "disk full" >&2; exit 1'
        inputs = { x = "x" }
        publishes = ["report"]
        """
        + recipe,
    )
    r = gdag("publish", "x", "1", cwd=repo, env={"WEBHOOK_URL": webhook})
    assert r.returncode == 1, r.stderr
    (body,) = Hook.received
    sent = json.loads(body)
    assert sent["node"] == "nightly" and "disk full" in sent["log"]

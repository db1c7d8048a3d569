"""`gdag watch` as a service: it stays up through a definition broken and fixed again
while events arrive, and through a store it cannot write to (a full disk), and stops
cleanly on SIGTERM."""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import define, fsck, gdag

EACH = """
[nodes.each]
run = 'cat "$GDAG_IN_X" >> "$GDAG_REPO/processed"; echo >> "$GDAG_REPO/processed"; cp "$GDAG_IN_X" "$GDAG_OUT/y"'
inputs = { x = "x" }
publishes = ["y"]
mode = "each"
"""
BROKEN = "[nodes.each\nrun = "


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def wait_until(check, timeout: float = 60.0) -> bool:  # type: ignore[no-untyped-def]
    """A bound for the test, not a speed goal."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.1)
    return False


def watch(repo: Path, preexec=None) -> subprocess.Popen[bytes]:  # type: ignore[no-untyped-def]
    return subprocess.Popen(
        [sys.executable, "-m", "gdag", "watch", "--interval", "0.05"],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=preexec,
    )


def stop(watcher: subprocess.Popen[bytes]) -> bytes:
    watcher.send_signal(signal.SIGTERM)
    _, err = watcher.communicate(timeout=60)
    assert watcher.returncode == 0, err  # a service stopped on purpose exits 0
    assert b"Traceback" not in err, err
    return err


def test_watch_survives_a_definition_broken_and_fixed_ten_times(repo: Path) -> None:
    define(repo, EACH)
    watcher = watch(repo)
    try:
        for i in range(10):
            assert gdag("publish", "x", str(i), "--no-run", cwd=repo).returncode == 0
            (repo / "gdag.toml").write_text(BROKEN)  # an edit in progress
            time.sleep(0.15)
            assert watcher.poll() is None, "watch exited on a broken definition"
            define(repo, EACH)
        processed = repo / "processed"
        assert wait_until(lambda: len(lines(processed)) >= 10)
        time.sleep(0.5)  # nothing more arrives
    finally:
        err = stop(watcher)
    assert lines(repo / "processed") == [str(i) for i in range(10)]  # each once, in order
    assert b"definition does not compile" in err
    fsck(repo)


def test_watch_waits_while_the_store_cannot_be_written(repo: Path) -> None:
    """A full disk, made by a file-size limit on the watch process alone (as the
    kernel refuses a write past it, EFBIG; SIGXFSZ ignored): the watch reports that it
    cannot write, keeps running, and finishes the work once the limit is lifted."""
    define(repo, EACH)

    def small_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))

    big = "z" * (256 * 1024)  # its copy, written by the watch, exceeds the limit
    assert gdag("publish", "x", "small", "--no-run", cwd=repo).returncode == 0
    watcher = watch(repo, small_files)
    try:
        assert wait_until(lambda: lines(repo / "processed") == ["small"])
        assert gdag("publish", "x", "-", "--no-run", cwd=repo, input=big.encode()).returncode == 0
        time.sleep(2.0)
        assert watcher.poll() is None, "watch exited on a store it cannot write"
        assert gdag("lookup", "y", cwd=repo).stdout == b"small"  # not applied yet
        resource.prlimit(
            watcher.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
        )
        assert wait_until(lambda: gdag("lookup", "y", cwd=repo).stdout == big.encode())
    finally:
        err = stop(watcher)
    assert b"cannot write" in err, err
    fsck(repo)


FRESH = """
[outputs.x]
type = "int"
fresh_within = "1s"

[nodes.alert]
run = 'cat "$GDAG_IN_S" >> "$GDAG_REPO/alerts"; echo >> "$GDAG_REPO/alerts"'
inputs = { s = "gdag/stale/x" }
mode = "each"
"""


def test_an_output_gone_stale_is_reported_once_per_value(repo: Path) -> None:
    """Two watchers: `gdag/stale/x` once for each value of x left unchanged for longer
    than its fresh_within, and its subscriber once each time."""
    import json

    define(repo, FRESH)
    assert gdag("publish", "x", "1", "--no-run", cwd=repo).returncode == 0
    watchers = [watch(repo), watch(repo)]
    alerts = repo / "alerts"
    try:
        assert wait_until(lambda: len(lines(alerts)) >= 1)
        time.sleep(1.5)  # both watchers look again: nothing new for this value
        assert gdag("publish", "x", "2", "--no-run", cwd=repo).returncode == 0
        assert wait_until(lambda: len(lines(alerts)) >= 2)
        time.sleep(1.5)
    finally:
        for w in watchers:
            stop(w)
    reported = [json.loads(line) for line in lines(alerts)]
    assert [(r["output"], r["version"]) for r in reported] == [("x", 1), ("x", 2)]
    log = gdag("log", "--output", "gdag/stale/x", "--json", cwd=repo)
    assert len(json.loads(log.stdout)) == 2
    fsck(repo)


def test_fresh_within_must_be_a_duration(repo: Path) -> None:
    define(repo, '[outputs.x]\nfresh_within = "soon"\n')
    r = gdag("check", cwd=repo)
    assert r.returncode == 3 and "is not a positive duration" in r.stderr, r.stderr

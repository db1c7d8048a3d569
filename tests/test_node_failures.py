"""Nodes cannot take gdag down: a node that exits, aborts or hangs fails its own session.

Each case drives the real `gdag` command: the node's session is recorded as failed
with a message naming the node and what happened, gdag exits with its documented
status, no process of the node is left running, and the next run is clean.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import define, fsck, gdag, git, wait_for


def status_of(repo: Path, node: str) -> dict:
    r = gdag("status", "--json", cwd=repo)
    assert r.returncode == 0, r.stderr
    return next(s for s in json.loads(r.stdout) if s["node"] == node)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("sys.exit(3)", "called sys.exit(3)"),
        ("os._exit(7)", "its Python process exited with status 7"),
        ("os.abort()", "its Python process was killed by SIGABRT"),
        ("raise SystemExit('bye')", "called sys.exit('bye')"),
        # Memory exhausted: under an address-space limit, the allocations fail ...
        (
            "import resource; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30)); "
            "hog = [bytearray(1 << 20) for _ in range(4096)]",
            "ran out of memory (MemoryError",
        ),
        # ... or the kernel's out-of-memory killer ends the process with SIGKILL.
        ("os.kill(os.getpid(), 9)", "its Python process was killed by SIGKILL"),
    ],
    ids=["sys.exit", "os._exit", "os.abort", "SystemExit", "memory-error", "oom-kill"],
)
def test_a_python_node_that_exits_fails_its_session_only(
    repo: Path, body: str, message: str
) -> None:
    (repo / "quitter.py").write_text(
        f"import os, sys\n\n\ndef step(x: str) -> str:\n    print('about to go')\n    {body}\n"
    )
    (repo / "fine.py").write_text("def step(x: str) -> str:\n    return x + '!'\n")
    define(
        repo,
        """
        [outputs.x]
        type = "str"
        [nodes.quit]
        python = "quitter:step"
        inputs = { x = "x" }
        publishes = ["q"]
        [nodes.other]
        python = "fine:step"
        inputs = { x = "x" }
        publishes = ["y"]
        """,
    )
    r = gdag("publish", "x", "hi", cwd=repo)
    assert r.returncode == 1, r.stderr  # a node failed; gdag itself did not
    assert "Traceback" not in r.stderr
    assert gdag("lookup", "y", cwd=repo).stdout == b"hi!"  # the independent node ran
    st = status_of(repo, "quit")
    assert st["state"] == "failed" and message in st["reason"] and "quit" in st["reason"]
    shown = gdag("show", "quit", "--json", cwd=repo)
    assert b"about to go" in shown.stdout  # the node's own output is its session's log
    again = gdag("run", cwd=repo)
    assert again.returncode == 0, again.stderr  # later runs carry on: nothing left to do
    assert not git("for-each-ref", "refs/gdag/sessions/", cwd=repo).strip()
    fsck(repo)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie of an exited child of someone else still answers kill(0): read its state.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


HANG_SHELL = """
    [nodes.slow]
    run = 'if [ -e "$GDAG_REPO/marker" ]; then echo done > "$GDAG_OUT/o"; else touch "$GDAG_REPO/marker"; sleep 600 & echo $! > "$GDAG_REPO/pid"; wait; fi'
    inputs = { x = "x" }
    publishes = ["o"]
"""
HANG_PYTHON = """
    [nodes.slow]
    python = "hang:step"
    inputs = { x = "x" }
    publishes = ["o"]
"""
HANG_MODULE = """\
import os, pathlib, time


def step(x: bytes) -> str:
    marker = pathlib.Path(os.environ["GDAG_REPO"]) / "marker"
    if marker.exists():
        return "done"
    marker.touch()
    (marker.parent / "pid").write_text(str(os.getpid()))
    time.sleep(600)
    return "late"
"""


@pytest.mark.parametrize("kind", ["shell", "python"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_hung_node_is_stopped_with_the_run_and_recovered_next_time(
    repo: Path, kind: str, sig: signal.Signals
) -> None:
    if kind == "python":
        (repo / "hang.py").write_text(HANG_MODULE)
    define(repo, HANG_SHELL if kind == "shell" else HANG_PYTHON)
    assert gdag("publish", "x", "1", "--no-run", cwd=repo).returncode == 0
    run = subprocess.Popen(
        [sys.executable, "-m", "gdag", "run"],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # the signal goes to gdag alone, as `kill` would send it
    )
    try:
        pid = int(wait_for(repo / "pid"))
        assert alive(pid)
        run.send_signal(sig)
        _, err = run.communicate(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 130, err
    assert b"Traceback" not in err
    end = time.monotonic() + 10
    while alive(pid) and time.monotonic() < end:
        time.sleep(0.05)
    assert not alive(pid), "the node's process outlived gdag"
    # The unfinished session is recovered by the next run, which runs the node again.
    assert git("for-each-ref", "refs/gdag/sessions/", cwd=repo).strip()
    again = gdag("run", cwd=repo)
    assert again.returncode == 0, again.stderr
    assert gdag("lookup", "o", cwd=repo).stdout.strip() == b"done"
    assert not git("for-each-ref", "refs/gdag/sessions/", cwd=repo).strip()
    fsck(repo)


def test_watch_waits_out_a_broken_definition(repo: Path) -> None:
    define(
        repo,
        '[nodes.up]\nrun = "tr a-z A-Z < $GDAG_IN_X > $GDAG_OUT/y"\n'
        'inputs = { x = "x" }\npublishes = ["y"]\n',
    )
    watcher = subprocess.Popen(
        [sys.executable, "-m", "gdag", "watch", "--interval", "0.1"],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        (repo / "gdag.toml").write_text("[nodes.up\nbroken =")
        time.sleep(1.0)
        assert watcher.poll() is None, "watch exited on a broken definition"
        define(
            repo,
            '[nodes.up]\nrun = "tr a-z A-Z < $GDAG_IN_X > $GDAG_OUT/y"\n'
            'inputs = { x = "x" }\npublishes = ["y"]\n',
        )
        assert gdag("publish", "x", "abc", "--no-run", cwd=repo).returncode == 0
        end = time.monotonic() + 30
        while gdag("lookup", "y", cwd=repo).stdout != b"ABC" and time.monotonic() < end:
            time.sleep(0.1)
        assert gdag("lookup", "y", cwd=repo).stdout == b"ABC"
    finally:
        watcher.send_signal(signal.SIGTERM)
        _, err = watcher.communicate(timeout=30)
    assert watcher.returncode == 0, err
    assert b"definition does not compile" in err and b"Traceback" not in err

"""Running a shell node's job: `/bin/sh -c` with its inputs as files, never spliced in.

Inputs are files named by `$GDAG_IN_<NAME>` (a directory of members for a
pattern input) and listed in the `$GDAG_INPUTS` manifest; outputs are the files
the command leaves under `$GDAG_OUT`, collected by the coordinator after a
successful exit. Needs a temporary directory and the job, nothing else.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from gdag.errors import GdagError
from gdag.job import Job, JobResult, Value, failed, literal_head, write_value
from gdag.names import env_name, is_pattern
from gdag.ticker import Ticker

LOG_TAIL = 64 * 1024
POLL = 0.2  # seconds between looks at a cancel request while the command runs
GRACE = 2.0  # seconds between SIGTERM and SIGKILL of a stopped node's process group


def run_shell(job: Job, tmp: Path, cancel: threading.Event) -> JobResult:
    env = shell_env(job, tmp)
    log_path = tmp / "log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", job.command],
            cwd=work_dir(job, tmp),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            code = _wait(proc, job.timeout, cancel)
        except BaseException:
            _kill_group(proc)
            raise
    text = _tail(log_path)
    if code is None and cancel.is_set():
        return failed("cancelled", text + b"\n")
    if code is None:
        return JobResult(
            "failed",
            None,
            text + f"\ngdag: timed out after {job.timeout} s\n".encode(),
            error="timeout",
        )
    if code != 0:
        return JobResult("failed", code, text, error=f"exit status {code}")
    return JobResult("ok", 0, text, out_dir=str(tmp / "out"))


def _wait(
    proc: subprocess.Popen[bytes], timeout: float | None, cancel: threading.Event
) -> int | None:
    """The command's exit status; None (its process group killed) on timeout or cancel.

    This thread blocks in `wait()`, so it returns the moment the command exits (a wait
    with a timeout polls, adding milliseconds to every job); the process's one watcher
    thread stops the process group on cancel or timeout, which ends the wait."""
    deadline = None if timeout is None else time.monotonic() + timeout
    watch = _Watched(proc.pid, cancel, deadline)
    _WATCHER.add(watch)
    try:
        code = proc.wait()
    finally:
        watch.finished.set()
        _WATCHER.remove(watch)
    return None if watch.stopped else code


class _Watched:
    """A running command, looked at every POLL seconds and at its deadline: a cancel
    request stops its process group (SIGTERM, SIGKILL after GRACE, on a thread of its
    own), its deadline kills it."""

    def __init__(self, pgid: int, cancel: threading.Event, deadline: float | None) -> None:
        self.pgid = pgid
        self.cancel = cancel
        self.deadline = deadline
        self.finished = threading.Event()
        self.stopped = False
        self.due = self._next(time.monotonic())

    def _next(self, now: float) -> float:
        return now + POLL if self.deadline is None else min(now + POLL, self.deadline)

    def tick(self, now: float) -> bool:
        if self.finished.is_set():
            return False
        if self.cancel.is_set():
            self.stopped = True
            stop = threading.Thread(target=_stop_group, args=(self.pgid, self.finished))
            stop.daemon = True
            stop.start()
            return False
        if self.deadline is not None and now >= self.deadline:
            self.stopped = True
            _signal_group(self.pgid, signal.SIGKILL)
            return False
        self.due = self._next(now)
        return True


_WATCHER = Ticker("gdag-watch")


def work_dir(job: Job, tmp: Path) -> Path:
    """Where the command runs: `cwd` below the work tree (never outside it), or the
    job's own directory on a machine without a work tree."""
    if job.workdir is None:
        return tmp
    workdir = Path(job.workdir)
    cwd = (workdir / job.cwd).resolve()
    if not cwd.is_relative_to(workdir.resolve()):
        raise GdagError(f"node {job.node!r}: cwd {job.cwd!r} leaves the repository")
    return cwd


def shell_env(job: Job, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GDAG_IN_")}
    env["GDAG_HOOK_GUARD"] = "1"  # git commands of the node do not publish git events
    env.update(job.env)
    manifest: dict[str, Any] = {}
    in_dir = tmp / "in"
    for arg, value in job.inputs.items():
        if value is None:
            manifest[arg] = None
            continue
        path = in_dir / arg
        if isinstance(value, Value):
            write_value(value, path, display=True)
            manifest[arg] = {
                "output": value.name,
                "path": str(path),
                "version": value.version,
                "type": value.type,
            }
        else:
            path.mkdir(parents=True)
            manifest[arg] = {}
            head = literal_head(job.targets[arg])
            for name, member in value.items():
                rel = name[len(head) :].lstrip("/")
                write_value(member, path / rel, display=True)
                manifest[arg][name] = {
                    "path": str(path / rel),
                    "version": member.version,
                    "type": member.type,
                }
        env[env_name(arg)] = str(path)
    (tmp / "inputs.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    (tmp / "out").mkdir()
    for target in job.publishes:
        # Parent directories exist already, so `> "$GDAG_OUT/a/b"` just works.
        head = literal_head(target) if is_pattern(target) else target.rpartition("/")[0]
        if head:
            (tmp / "out" / head).mkdir(parents=True, exist_ok=True)
    if job.bin_dir is not None:
        bin_dir = Path(job.bin_dir)
    else:
        bin_dir = tmp / "bin"
        bin_dir.mkdir()
        write_command(bin_dir / "gdag")
    env.update(
        {
            "GDAG_INPUTS": str(tmp / "inputs.json"),
            "GDAG_OUT": str(tmp / "out"),
            "GDAG_SESSION": job.id,
            "GDAG_LOG": job.log,
            "GDAG_NODE": job.node,
            "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', os.defpath)}",
        }
    )
    if job.workdir is not None and job.in_repository:
        env["GDAG_REPO"] = job.workdir
    return env


def write_command(path: Path) -> None:
    """The `gdag` command of a node's PATH: this Python's gdag, executable."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o755)
    with os.fdopen(fd, "w") as shim:
        shim.write(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m gdag "$@"\n')


def _tail(path: Path, limit: int = LOG_TAIL) -> bytes:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - limit))
        return f.read()


def _stop_group(pgid: int, finished: threading.Event) -> None:
    """SIGTERM a command's process group, SIGKILL it after a grace period (or at once
    when its leader is gone, for what it left behind)."""
    _signal_group(pgid, signal.SIGTERM)
    finished.wait(GRACE)
    _signal_group(pgid, signal.SIGKILL)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):  # gone, or only a setuid process left
        pass


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    _signal_group(proc.pid, signal.SIGKILL)
    proc.wait()

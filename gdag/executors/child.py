"""Python nodes in a child process: a node that exits, aborts or runs out of memory fails
its session, never the gdag process that runs it.

`Child` (in the coordinating process) starts `python -m gdag.executors.child`, a
worker in its own process group that runs one job at a time and stays for the
next (so user modules are imported once, and dropped when their files
change). They talk in length-prefixed pickles over the child's stdin and a
copy of its stdout: `("job", job, tmp)` one way; `("emit", name, value)`, each
answered with `("ack", error or None)` so `ctx.publish` raises a refusal where
it was called, and a final `("result", JobResult)` the other way. The node's
own stdout and stderr go to the session log.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from gdag.job import Emit, Job, JobResult, failed

HEADER = struct.Struct("!Q")
POLL = 0.2  # seconds between looks at a cancel request or deadline while waiting
GRACE = 2.0  # seconds between SIGTERM and SIGKILL of a stopped node's process group
LOG_FILE = "python.log"  # in the job's directory: the node's stdout and stderr


def _send(out: IO[bytes], message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(HEADER.pack(len(data)) + data)
    out.flush()


def _recv(inp: IO[bytes]) -> Any:
    """The next message, or None at end of file."""
    head = inp.read(HEADER.size)
    if len(head) < HEADER.size:
        return None
    (size,) = HEADER.unpack(head)
    data = inp.read(size)
    if len(data) < size:
        return None
    return pickle.loads(data)


# -- the coordinating side -------------------------------------------------------


class Stopped(Exception):
    """The child was stopped (timeout or cancel) or died: the job has no result."""

    def __init__(self, result: JobResult) -> None:
        self.result = result


class Child:
    """One worker process for Python jobs, used by one job at a time."""

    def __init__(self, pycache: str) -> None:
        env = {**os.environ, "GDAG_HOOK_GUARD": "1"}  # its git commands publish no git events
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gdag.executors.child", pycache],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.inp = self.proc.stdin
        self.out = self.proc.stdout
        self.fd = self.out.fileno()

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def run(self, job: Job, tmp: Path, emit: Emit, cancel: threading.Event) -> JobResult:
        """Run `job` in the child; its result (a failed one if the child had to be
        stopped or died, and then the child is gone)."""
        deadline = None if job.timeout is None else time.monotonic() + job.timeout
        try:
            _send(self.inp, ("job", job, str(tmp)))
            while True:
                self._wait_readable(job, deadline, cancel)
                message = _recv(self.out)
                if message is None:
                    raise Stopped(self._died(job))
                if message[0] == "result":
                    return message[1]  # type: ignore[no-any-return]
                _, name, value = message
                try:
                    emit(name, value)
                    _send(self.inp, ("ack", None))
                except Exception as exc:  # a refusal goes back to the node's code
                    _send(self.inp, ("ack", getattr(exc, "message", str(exc))))
        except Stopped as stop:
            result = stop.result
        except (BrokenPipeError, OSError):
            result = self._died(job)
        result.log = _log_tail(tmp / LOG_FILE) + result.log  # what the node printed
        return result

    def _wait_readable(self, job: Job, deadline: float | None, cancel: threading.Event) -> None:
        while True:
            ready, _, _ = select.select([self.fd], [], [], POLL)
            if ready:
                return
            if cancel.is_set():
                self.stop()
                raise Stopped(failed("cancelled"))
            if deadline is not None and time.monotonic() >= deadline:
                self.stop()
                raise Stopped(
                    JobResult(
                        "failed",
                        None,
                        f"gdag: timed out after {job.timeout} s\n".encode(),
                        error="timeout",
                    )
                )
            if not self.alive:
                raise Stopped(self._died(job))

    def _died(self, job: Job) -> JobResult:
        code = self.proc.wait()
        if code < 0:
            try:
                how = f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        else:
            how = f"exited with status {code}"
        return failed(f"node {job.node!r}: its Python process {how}", exit_code=code)

    def stop(self) -> None:
        """SIGTERM the child's process group, SIGKILL it after a grace period."""
        for sig, wait in ((signal.SIGTERM, GRACE), (signal.SIGKILL, None)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        self.proc.wait()

    def close(self) -> None:
        """Let an idle child end (end of file on its stdin)."""
        try:
            self.inp.close()
            self.proc.wait(timeout=GRACE)
        except (OSError, subprocess.TimeoutExpired):
            self.stop()


# -- the child side -----------------------------------------------------------------


def _serve(job: Job, tmp: Path, proto: IO[bytes], inp: IO[bytes]) -> JobResult:
    from gdag.errors import GdagError
    from gdag.executors import run_job
    from gdag.shellnode import work_dir
    from gdag.usercode import refresh_user_modules

    def emit(name: str, value: Any) -> None:
        _send(proto, ("emit", name, value))
        reply = _recv(inp)
        if reply is None:
            raise SystemExit(0)  # the coordinator went away
        if reply[1] is not None:
            raise GdagError(reply[1])

    saved_env = dict(os.environ)
    log_path = tmp / LOG_FILE
    sys.stdout.flush()
    sys.stderr.flush()
    with open(log_path, "wb") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    try:
        if job.workdir is not None:
            refresh_user_modules(Path(job.workdir))
        os.environ.update(job.env)
        os.environ.update(
            {"GDAG_SESSION": job.id, "GDAG_LOG": job.log, "GDAG_NODE": job.node}
            | ({"GDAG_REPO": job.workdir} if job.workdir and job.in_repository else {})
        )
        os.chdir(work_dir(job, tmp))
        try:
            result = run_job(job, tmp, emit)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1 if exc.code else 0
            result = failed(f"node {job.node!r} called sys.exit({exc.code!r})", exit_code=code)
        except GdagError as exc:
            result = failed(exc.message)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        os.close(null)
        os.environ.clear()
        os.environ.update(saved_env)
    result.log = _log_tail(log_path) + result.log
    return result


def _log_tail(path: Path) -> bytes:
    from gdag.shellnode import LOG_TAIL

    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - LOG_TAIL))
            return f.read()
    except OSError:
        return b""


def main() -> None:
    from gdag.executors import run_job  # noqa: F401 - gdag's own code, before the prefix below
    from gdag.shellnode import work_dir  # noqa: F401
    from gdag.usercode import refresh_user_modules  # noqa: F401

    # User modules' bytecode goes to a directory of this executor's, never read from the
    # repository's __pycache__: a cache there may predate an edit in the same second
    # with the same size, and this process would run the old code.
    if len(sys.argv) > 1:
        sys.pycache_prefix = sys.argv[1]
    # Messages travel on copies of stdin and stdout; the node's own fds 0, 1 and 2 are
    # /dev/null between jobs and its log during one.
    proto = os.fdopen(os.dup(1), "wb")
    inp = os.fdopen(os.dup(0), "rb")
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    while True:
        message = _recv(inp)
        if message is None:
            return
        _, job, tmp = message
        result = _serve(job, Path(tmp), proto, inp)
        _send(proto, ("result", result))


if __name__ == "__main__":
    main()

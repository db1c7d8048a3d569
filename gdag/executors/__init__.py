"""Executors: where node jobs run. A small protocol, one module per executor, one table.

An executor takes self-contained jobs (`gdag.job.Job`), runs each with
`run_job` in a temporary directory of its own, and hands back a `JobResult`.
The coordinating process keeps everything git: it prepares jobs from sessions
and records results into them (`gdag/execute.py`). Adding an executor is one
module implementing `Executor` plus one line in `EXECUTORS`.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Protocol

from gdag.errors import GdagError, UsageError
from gdag.job import PYTHON, SHELL, Emit, Job, JobResult, failed

# name -> "module:class"; imported only when chosen.
EXECUTORS = {
    "local": "gdag.executors.local:LocalExecutor",
    "dask": "gdag.executors.dask:DaskExecutor",
}


class Executor(Protocol):
    """Runs jobs somewhere. A job is known by its id (the session id) from `submit`
    until `forget`; `emit` receives a Python node's values in order, before `result`
    returns, in the coordinating process."""

    name: str

    def submit(self, job: Job, emit: Emit) -> None:
        """Start the job; return at once."""

    def result(self, job_id: str, timeout: float | None = None) -> JobResult:
        """Wait for the job's result (TimeoutError after `timeout` seconds)."""

    def cancel(self, job_id: str) -> None:
        """Ask the job to stop; its result then says it failed."""

    def reattach(self, job_id: str) -> bool:
        """After a restart: whether a job an earlier coordinator submitted is still known
        (running or finished); if so, `result` waits for it."""

    def forget(self, job_id: str) -> None:
        """Drop a finished job and everything it left (its temporary directory)."""

    def close(self) -> None:
        """Release the executor's resources."""


def spec_for(cluster: str | None, configured: str | None = None) -> str:
    """Which executor a run uses: a cluster given on the command line or in
    $GDAG_CLUSTER, else one named in gdag.toml's `[cluster] address`, else local."""
    address = cluster or configured
    return f"dask:{address}" if address else "local"


def executor_for(spec: str | None = None) -> Executor:
    """The executor named by `spec` (`NAME` or `NAME:ARGUMENT`; default: local)."""
    import importlib

    name, _, argument = (spec or "local").partition(":")
    path = EXECUTORS.get(name)
    if path is None:
        raise UsageError(
            f"unknown executor {name!r}", hint="executors: " + ", ".join(sorted(EXECUTORS))
        )
    module, _, cls = path.partition(":")
    factory = getattr(importlib.import_module(module), cls)
    return factory(argument) if argument else factory()  # type: ignore[no-any-return]


def run_job(job: Job, tmp: Path, emit: Emit, cancel: threading.Event | None = None) -> JobResult:
    """Run one job in the empty directory `tmp`. Pure: it needs the job's bytes and the
    directory, no repository and no git. Failures of the node, or of gdag on the node's
    behalf (an input it cannot write, a value it refuses), are a failed result."""
    started = time.monotonic()
    cancel = cancel or threading.Event()
    try:
        if job.kind == SHELL:
            from gdag.shellnode import run_shell

            result = run_shell(job, tmp, cancel)
        elif job.kind == PYTHON:
            result = _run_python(job, tmp, emit)
        else:
            result = failed(f"node {job.node!r}: unknown kind {job.kind!r}")
    except GdagError as exc:
        result = failed(exc.message)
    result.duration = time.monotonic() - started
    return result


def _run_python(job: Job, tmp: Path, emit: Emit) -> JobResult:
    import traceback

    from gdag.pynode import call_python

    os.environ["GDAG_HOOK_GUARD"] = "1"  # git commands of the node publish no git events
    try:
        text = call_python(job, tmp, emit)
    except GdagError as exc:
        return failed(exc.message)
    except MemoryError as exc:  # the traceback's own allocations may fail too: none
        return failed(f"node {job.node!r} ran out of memory ({type(exc).__name__}: {exc})")
    except Exception as exc:
        tb = traceback.format_exc().encode()
        return JobResult(
            "failed", None, tb, error=f"node {job.node!r} raised {type(exc).__name__}: {exc}"
        )
    return JobResult("ok", None, text)

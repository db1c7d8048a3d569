"""The local executor: jobs on this machine, each in a fresh temporary directory. The
default. Shell nodes run as child processes in their own process group; Python nodes
in worker processes of their own (`child.py`), reused from job to job."""

from __future__ import annotations

import shutil
import tempfile
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from gdag.errors import UnknownError
from gdag.executors import run_job
from gdag.executors.child import LOG_FILE, Child
from gdag.job import PYTHON, Emit, Job, JobResult, away_from_the_work_tree


class LocalExecutor:
    """Runs each job on a thread of its own; Python jobs in a pool of worker processes."""

    name = "local"

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(thread_name_prefix="gdag-job")
        self._jobs: dict[str, tuple[Future[JobResult], Path, threading.Event]] = {}
        self._idle: list[Child] = []
        self._pycache: str | None = None  # bytecode of user modules, for worker processes
        self._lock = threading.Lock()
        self._logs: dict[str, Path] = {}  # job id -> the file its output is written to

    def submit(self, job: Job, emit: Emit) -> None:
        tmp = Path(tempfile.mkdtemp(prefix=f"gdag-{job.node}-"))
        if job.workdir is None and job.files:  # a bare repository's node and its files
            job = away_from_the_work_tree(job, tmp)
        cancel = threading.Event()
        run = self._run_python if job.kind == PYTHON else run_job
        future = self._pool.submit(run, job, tmp, emit, cancel)
        with self._lock:
            self._jobs[job.id] = (future, tmp, cancel)
            self._logs[job.id] = tmp / (LOG_FILE if job.kind == PYTHON else "log")

    def log_file(self, job_id: str) -> Path | None:
        """Where the running job's output is being written (`gdag serve` shows it live)."""
        with self._lock:
            return self._logs.get(job_id)

    def _run_python(self, job: Job, tmp: Path, emit: Emit, cancel: threading.Event) -> JobResult:
        with self._lock:
            child = self._idle.pop() if self._idle else None
            if self._pycache is None:
                self._pycache = tempfile.mkdtemp(prefix="gdag-pycache-")
            pycache = self._pycache
        if child is None or not child.alive:
            child = Child(pycache)
        result = child.run(job, tmp, emit, cancel)
        if child.alive:
            with self._lock:
                self._idle.append(child)
        return result

    def _get(self, job_id: str) -> tuple[Future[JobResult], Path, threading.Event]:
        with self._lock:
            found = self._jobs.get(job_id)
        if found is None:
            raise UnknownError(f"no job {job_id!r} in this process")
        return found

    def result(self, job_id: str, timeout: float | None = None) -> JobResult:
        return self._get(job_id)[0].result(timeout)

    def cancel(self, job_id: str) -> None:
        self._get(job_id)[2].set()

    def cancel_all(self) -> None:
        """Stop every running job (Ctrl-C): their process groups are terminated."""
        with self._lock:
            events = [cancel for _, _, cancel in self._jobs.values()]
        for event in events:
            event.set()

    def reattach(self, job_id: str) -> bool:
        # A local job ends with the process that started it: a new process finds none.
        with self._lock:
            return job_id in self._jobs

    def forget(self, job_id: str) -> None:
        with self._lock:
            found = self._jobs.pop(job_id, None)
            self._logs.pop(job_id, None)
        if found is not None:
            # Here, not on a thread of its own: removing it beside the next job's setup
            # made that setup (creating files in the same file system) 1.4 ms slower.
            shutil.rmtree(found[1], ignore_errors=True)

    def close(self) -> None:
        self.cancel_all()
        self._pool.shutdown(wait=True)
        with self._lock:
            idle, self._idle = self._idle, []
        for child in idle:
            child.close()
        if self._pycache is not None:
            shutil.rmtree(self._pycache, ignore_errors=True)

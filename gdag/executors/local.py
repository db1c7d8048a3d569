"""The local executor: jobs on this machine, shell nodes as child processes, Python
nodes in this process. The default."""

from __future__ import annotations

import shutil
import tempfile
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from gdag.errors import UnknownError
from gdag.executors import run_job
from gdag.job import Emit, Job, JobResult


class LocalExecutor:
    """Runs each job on a thread of its own, in a fresh temporary directory."""

    name = "local"

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(thread_name_prefix="gdag-job")
        self._jobs: dict[str, tuple[Future[JobResult], Path, threading.Event]] = {}
        self._lock = threading.Lock()

    def submit(self, job: Job, emit: Emit) -> None:
        tmp = Path(tempfile.mkdtemp(prefix=f"gdag-{job.node}-"))
        cancel = threading.Event()
        future = self._pool.submit(run_job, job, tmp, emit, cancel)
        with self._lock:
            self._jobs[job.id] = (future, tmp, cancel)

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

    def reattach(self, job_id: str) -> bool:
        # A local job ends with the process that started it: a new process finds none.
        with self._lock:
            return job_id in self._jobs

    def forget(self, job_id: str) -> None:
        with self._lock:
            found = self._jobs.pop(job_id, None)
        if found is not None:
            shutil.rmtree(found[1], ignore_errors=True)

    def close(self) -> None:
        self._pool.shutdown(wait=True)

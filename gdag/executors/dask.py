"""The Dask executor: node jobs on a Dask distributed cluster (`pip install 'gdag[cluster]'`).

`executor_for("dask:ADDRESS")` connects to a scheduler (`tcp://host:8786`,
`tls://…`) or starts `local[:N]`, a local cluster of N worker processes. Each
job is one task, keyed by its session id, run on a worker by `run_on_worker`:
no repository there, only the job's bytes and the node's shipped source files,
in a temporary directory; Python nodes in a fresh child process, so a worker
never mixes two versions of a module. The task's result carries what the node
emitted and the files it left under `$GDAG_OUT`; the coordinator turns them
back into `emit` calls and a local `out_dir`. Each task is also published on
the scheduler under its key, so a coordinator restarted while the scheduler
lives re-attaches to it (`reattach`) instead of running it again; `forget`
releases it once its result is in git.

`distributed` is imported only here, and only when a cluster is asked for.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gdag.errors import GdagError
from gdag.job import MODE_DIR, MODE_LINK, PYTHON, Emit, Emitted, Job, JobResult, TreeFile, failed

CONNECT_TIMEOUT = 10.0  # seconds to reach a scheduler before saying it is unreachable
LOOPBACK = ("127.", "localhost", "[::1]")


@dataclass
class RemoteResult:
    """What a worker sends back for one job."""

    result: JobResult
    emitted: list[tuple[str, Emitted]]
    out_files: tuple[TreeFile, ...] | None
    version: str


def run_on_worker(job: Job) -> RemoteResult:
    """Run a job on a Dask worker, in a temporary directory of its own (the task)."""
    import gdag
    from gdag.executors import run_job
    from gdag.executors.child import Child
    from gdag.job import away_from_the_work_tree

    tmp = Path(tempfile.mkdtemp(prefix=f"gdag-{job.node}-"))
    emitted: list[tuple[str, Emitted]] = []
    try:
        job = away_from_the_work_tree(job, tmp)
        if job.kind == PYTHON:
            pycache = tempfile.mkdtemp(prefix="gdag-pycache-")
            child = Child(pycache)
            try:
                result = child.run(job, tmp, lambda n, v: emitted.append((n, v)), threading.Event())
            finally:
                child.close()
                shutil.rmtree(pycache, ignore_errors=True)
        else:
            result = run_job(job, tmp, lambda n, v: emitted.append((n, v)))
        out = None
        if result.out_dir is not None:
            out = tuple(_read_tree(Path(result.out_dir)))
            result.out_dir = None
        return RemoteResult(result, emitted, out, gdag.__version__)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _read_tree(root: Path) -> list[TreeFile]:
    """A directory as TreeFiles, parents first (symlinks kept as links: the coordinator
    refuses them as it does locally)."""
    found: list[TreeFile] = []
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        rel = os.path.relpath(dirpath, root)
        prefix = b"" if rel == "." else os.fsencode(rel) + b"/"
        for name in dirs:
            full = os.path.join(dirpath, name)
            if os.path.islink(full):
                found.append(
                    TreeFile(prefix + os.fsencode(name), MODE_LINK, os.fsencode(os.readlink(full)))
                )
            else:
                found.append(TreeFile(prefix + os.fsencode(name), MODE_DIR))
        for name in sorted(files):
            full = os.path.join(dirpath, name)
            if os.path.islink(full):
                found.append(
                    TreeFile(prefix + os.fsencode(name), MODE_LINK, os.fsencode(os.readlink(full)))
                )
                continue
            mode = 0o100755 if os.access(full, os.X_OK) else 0o100644
            with open(full, "rb") as f:
                found.append(TreeFile(prefix + os.fsencode(name), mode, f.read()))
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(dirpath, d))]
    return found


class DaskExecutor:
    """Jobs as tasks on a Dask cluster; results back to the coordinating process."""

    name = "dask"
    ships_sources = True  # jobs carry the node's source files: workers have no checkout

    def __init__(self, address: str = "local") -> None:
        try:
            import distributed
        except ImportError:
            raise GdagError(
                "running on a cluster needs Dask distributed",
                hint="pip install 'gdag[cluster]'",
            ) from None
        self.address = address
        self._cluster: Any = None
        self._jobs: dict[str, tuple[Any, Emit | None]] = {}
        self._keys: dict[str, str] = {}  # job id -> its task key (a retry's has its attempt)
        self._outs: dict[str, Path] = {}
        self._cancelled: set[str] = set()  # jobs cancelled here (not lost with the scheduler)
        self._released: list[Any] = []  # task keys whose results are in git: to unpublish
        self._releaser = ThreadPoolExecutor(1, thread_name_prefix="gdag-release")
        self._lock = threading.Lock()
        # gdag says what went wrong in its own words; Dask's log lines (a lost scheduler's
        # reconnection attempts, with tracebacks) would only bury them.
        import logging

        for name in ["distributed", *logging.root.manager.loggerDict]:
            if name == "distributed" or name.startswith("distributed."):
                logging.getLogger(name).setLevel(logging.CRITICAL)
        target: Any = address
        if address == "local" or address.startswith("local:"):
            count = address.partition(":")[2] or "2"
            if not count.isdigit() or int(count) < 1:
                raise GdagError(f"bad cluster address {address!r}", hint="local or local:N")
            self._cluster = distributed.LocalCluster(
                n_workers=int(count),
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                host="127.0.0.1",
            )
            target = self._cluster
        else:
            check_address(address)
        try:
            self.client = distributed.Client(target, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            self._close_cluster()
            raise GdagError(
                f"cannot reach the Dask scheduler at {address}: {exc}",
                hint="is `dask scheduler` running there? see the cookbook's cluster section",
            ) from None
        self._check_versions()

    def _check_versions(self) -> None:
        import gdag

        def version() -> str:
            import gdag as worker_gdag

            return worker_gdag.__version__

        found = self.client.run(version)
        wrong = {w: v for w, v in found.items() if v != gdag.__version__}
        if wrong:
            self.close()
            worker, v = next(iter(wrong.items()))
            raise GdagError(
                f"the cluster's workers run gdag {v} ({worker}); this is gdag {gdag.__version__}",
                hint="install the same gdag version on every worker",
            )

    @property
    def slots(self) -> int:
        """Jobs to keep in flight: the workers' threads and half as many again, queued on
        the scheduler, so that a thread that finishes a job finds the next one there
        instead of waiting for the coordinator to record a result and submit another
        (1.5×: 78 % efficiency on 4 workers × 4 threads against 64 % at 1×, measured by
        benchmarks/cluster.py; more gained nothing)."""
        threads = sum(self.client.nthreads().values())
        return threads + threads // 2

    def submit(self, job: Job, emit: Emit) -> None:
        key = task_key(job.id) if job.attempt == 1 else f"{task_key(job.id)}-{job.attempt}"
        future = self.client.submit(run_on_worker, job, key=key, pure=False, retries=2)
        try:
            self.client.publish_dataset(future, name=key)
        except ValueError:
            pass  # published by an earlier attempt of the same session: the same task
        with self._lock:
            self._jobs[job.id] = (future, emit)
            self._keys[job.id] = key

    def result(self, job_id: str, timeout: float | None = None) -> JobResult:
        from distributed.client import FutureCancelledError

        with self._lock:
            future, emit = self._jobs[job_id]
        try:
            remote: RemoteResult = future.result(timeout=timeout)
        except FutureCancelledError:
            if job_id in self._cancelled:
                return failed("cancelled")
            # Cancelled by the cluster itself: the scheduler is gone. No result is no
            # failure of the node: its session stays unfinished for the next run.
            raise GdagError(
                f"lost the Dask scheduler at {self.address}",
                hint="the next `gdag run` recovers the unfinished sessions",
            ) from None
        except Exception as exc:  # noqa: BLE001 - the job's failure on the cluster
            if isinstance(exc, TimeoutError):
                raise
            if type(exc).__name__ == "KilledWorker":
                return failed(f"node's job was lost with its workers on {self.address}")
            if isinstance(exc, OSError) or "CommClosed" in type(exc).__name__:
                raise GdagError(f"lost the Dask scheduler at {self.address}: {exc}") from None
            return failed(f"the cluster could not run the job: {type(exc).__name__}: {exc}")
        for name, value in remote.emitted:
            if emit is not None:
                emit(name, value)
        result = remote.result
        if remote.out_files is not None:
            from gdag.job import write_tree

            out = Path(tempfile.mkdtemp(prefix="gdag-out-"))
            with self._lock:
                self._outs[job_id] = out
            write_tree(remote.out_files, out / "out")
            result.out_dir = str(out / "out")
        return result

    def cancel(self, job_id: str) -> None:
        with self._lock:
            found = self._jobs.get(job_id)
        if found is not None:
            with self._lock:
                self._cancelled.add(job_id)
            found[0].cancel()

    def reattach(self, job_id: str) -> bool:
        try:
            future = self.client.get_dataset(task_key(job_id))
        except KeyError:
            return False
        with self._lock:
            self._jobs[job_id] = (future, None)
        return True

    def forget(self, job_id: str) -> None:
        """Drop a job whose result is in git, and release its result from the scheduler
        at once, but off the caller's thread: one releaser sends every key waiting in
        one round trip, which would otherwise cost each session ~10 ms."""
        with self._lock:
            self._jobs.pop(job_id, None)
            key = self._keys.pop(job_id, task_key(job_id))
            self._cancelled.discard(job_id)
            out = self._outs.pop(job_id, None)
            self._released.append(key)
            start = len(self._released) == 1  # else a release already waits to run
        if start:
            self._releaser.submit(self._release)
        if out is not None:
            shutil.rmtree(out, ignore_errors=True)

    def _release(self) -> None:
        with self._lock:
            keys, self._released = self._released, []
        if keys:  # names the scheduler no longer has (it restarted) are skipped there
            with contextlib.suppress(OSError, TimeoutError):  # gone with the scheduler
                self.client.unpublish_dataset(keys)

    def close(self) -> None:
        self._releaser.shutdown(wait=True)
        try:
            self._release()
            self.client.close(timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError):
            pass  # the scheduler is gone: nothing to release there
        finally:
            self._close_cluster()

    def _close_cluster(self) -> None:
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None


def task_key(job_id: str) -> str:
    """A task's key: unique per session (its id)."""
    return f"gdag-{job_id}"


def check_address(address: str) -> None:
    """A scheduler runs whatever it is sent: a plain-TCP one must be on this machine
    unless the user opts in (GDAG_CLUSTER_INSECURE=1)."""
    scheme, sep, rest = address.partition("://")
    if not sep or scheme not in ("tcp", "tls", "inproc", "ucx", "ws", "wss"):
        raise GdagError(
            f"bad cluster address {address!r}",
            hint="tcp://HOST:PORT, tls://HOST:PORT, local or local:N",
        )
    if scheme == "tcp" and not rest.startswith(LOOPBACK):
        if os.environ.get("GDAG_CLUSTER_INSECURE") != "1":
            raise GdagError(
                f"the cluster at {address} is not on this machine and not tls://",
                hint="use tls://, or set GDAG_CLUSTER_INSECURE=1 on a network you trust",
            )

"""Nodes on a real Dask cluster: a `dask scheduler` and two `dask worker` processes on
127.0.0.1, started here in their own process groups, in a directory outside the
repository, and torn down after. Git stays the only durable state."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import distributed  # noqa: F401 - the cluster extra is a test dependency: never skipped
import pytest
from conftest import define, fsck, gdag, git, wait_for

DASK = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
WORKER = [sys.executable, "-m", "distributed.cli.dask_worker"]

DEFINITION = """
    [outputs.n]
    type = "int"
    [outputs."fam/*"]
    type = "int"
    [nodes.double]
    python = "lib_nodes:double"
    inputs = { n = "n" }
    publishes = ["d"]
    [nodes.fam]
    run = 'for i in 1 2 3; do echo $((i * $(cat "$GDAG_IN_D"))) > "$GDAG_OUT/fam/m$i"; done'
    inputs = { d = "d" }
    publishes = ["fam/*"]
    [nodes.total]
    python = "lib_nodes:total"
    inputs = { fam = "fam/*" }
    publishes = ["sum"]
    [nodes.show]
    run = 'sh scripts/show.sh "$GDAG_IN_D" > "$GDAG_OUT/shown"'
    inputs = { d = "d" }
    publishes = ["shown"]
    sources = ["scripts/show.sh"]
"""
MODULE = """\
def double(n: int) -> int:
    return n * 2


def total(fam: dict[str, int] | None) -> int:
    return sum((fam or {}).values())
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(
    argv: list[str], cwd: Path, log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv,
        cwd=cwd,
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


@pytest.fixture
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A scheduler and two workers (2 threads each) on 127.0.0.1; the address."""
    with running_cluster(tmp_path_factory.mktemp("cluster")) as (address, _):
        yield address


@contextlib.contextmanager
def running_cluster(
    where: Path, worker_env: dict[str, str] | None = None
) -> Iterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    from distributed import Client

    where.mkdir(parents=True, exist_ok=True)

    address = f"tcp://127.0.0.1:{free_port()}"
    port = address.rpartition(":")[2]
    procs = [
        start(
            [*DASK, "--host", "127.0.0.1", "--port", port, "--dashboard-address", ":0"],
            where,
            where / "scheduler.log",
        )
    ]
    try:
        for i in range(2):
            procs.append(
                start(
                    [*WORKER, address, "--nthreads", "2", "--no-dashboard", "--name", f"w{i}"],
                    where,
                    where / f"worker{i}.log",
                    worker_env,
                )
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                with Client(address, timeout=5) as client:
                    client.wait_for_workers(2, timeout=60)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield address, procs
    finally:
        for proc in reversed(procs):
            stop(proc)


def make_repo(root: Path) -> Path:
    r = gdag("init", "-C", str(root), cwd=root.parent)
    assert r.returncode == 0, r.stderr
    (root / "lib_nodes.py").write_text(MODULE)
    (root / "scripts").mkdir()
    (root / "scripts" / "show.sh").write_text('echo "shown: $(cat "$1")"\n')
    define(root, DEFINITION)
    return root


def values(repo: Path) -> dict[str, bytes]:
    names = gdag("lookup", "**", cwd=repo).stdout.decode().split()
    return {name: gdag("lookup", name, cwd=repo).stdout for name in names}


def test_a_cluster_run_gives_what_a_local_run_gives(tmp_path: Path, cluster: str) -> None:
    local, remote = make_repo(tmp_path / "local"), make_repo(tmp_path / "remote")
    for repo, extra in ((local, []), (remote, ["--cluster", cluster])):
        for n in ("5", "21"):
            assert gdag("publish", "n", n, "--no-run", cwd=repo).returncode == 0
            r = gdag("run", *extra, cwd=repo, timeout=120)
            assert r.returncode == 0, r.stderr
    got = values(remote)
    assert got == values(local)
    assert got["sum"].strip() == b"252" and got["shown"] == b"shown: 42\n"
    # Every session was applied once: one merge per node and publish.
    sessions = git("log", "--first-parent", "--format=%s", "refs/gdag/logs/main", cwd=remote)
    assert sessions.count("session double ok") == 2
    assert not git("for-each-ref", "refs/gdag/sessions/", cwd=remote).strip()
    # Results are released from the cluster once they are in git: none left published.
    from distributed import Client

    with Client(cluster, timeout=10) as client:
        assert [d for d in client.list_datasets() if str(d).startswith("gdag-")] == []
    fsck(remote)


def test_gdag_cluster_from_the_environment(tmp_path: Path, cluster: str) -> None:
    repo = make_repo(tmp_path / "repo")
    assert gdag("publish", "n", "1", "--no-run", cwd=repo).returncode == 0
    r = gdag("run", cwd=repo, env={"GDAG_CLUSTER": cluster}, timeout=120)
    assert r.returncode == 0, r.stderr
    assert gdag("lookup", "sum", cwd=repo).stdout.strip() == b"12"


def test_an_unreachable_scheduler_is_one_line_naming_it(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    assert gdag("publish", "n", "1", "--no-run", cwd=repo).returncode == 0
    address = f"tcp://127.0.0.1:{free_port()}"
    r = gdag("run", "--cluster", address, cwd=repo, timeout=120)
    assert r.returncode == 3, r.stderr
    assert r.stderr.startswith(f"gdag: error: cannot reach the Dask scheduler at {address}")
    assert "Traceback" not in r.stderr
    # Nothing ran and nothing is left half done: a local run then does all the work.
    assert gdag("run", cwd=repo).returncode == 0
    assert gdag("lookup", "sum", cwd=repo).stdout.strip() == b"12"


def test_a_plain_tcp_scheduler_elsewhere_needs_an_explicit_opt_in(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    assert gdag("publish", "n", "1", "--no-run", cwd=repo).returncode == 0
    r = gdag("run", "--cluster", "tcp://192.0.2.1:8786", cwd=repo)
    assert r.returncode == 3 and "not on this machine and not tls://" in r.stderr


def test_without_a_cluster_nothing_imports_distributed(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    code = (
        "import sys; from gdag.main import main; rc = main(sys.argv[1:]); "
        "sys.exit(10 + rc if 'distributed' in sys.modules or 'dask' in sys.modules else rc)"
    )
    for argv in (["publish", "n", "3"], ["lookup", "sum"], ["run"]):
        r = subprocess.run([sys.executable, "-c", code, *argv], cwd=repo, capture_output=True)
        assert r.returncode == 0, (argv, r.returncode, r.stderr)


SLOW = """
    [nodes.slow]
    run = 'n=$(cat "$MARKS/count" 2>/dev/null || echo 0); echo $((n + 1)) > "$MARKS/count"; echo $PPID > "$MARKS/pid$n"; if [ "$n" = 0 ]; then sleep {sleep}; fi; echo done > "$GDAG_OUT/o"'
    inputs = {{ x = "x" }}
    publishes = ["o"]
    env = {{ MARKS = "{marks}" }}
"""


def test_a_worker_killed_mid_job_reruns_it_elsewhere(tmp_path: Path, cluster: str) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    repo = make_repo(tmp_path / "repo")
    define(repo, SLOW.format(marks=marks, sleep=600))
    assert gdag("publish", "x", "1", "--no-run", cwd=repo).returncode == 0
    run = subprocess.Popen(
        [sys.executable, "-m", "gdag", "run", "--cluster", cluster],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    worker = int(wait_for(marks / "pid0"))
    os.kill(worker, signal.SIGKILL)  # the worker process running the node's command
    _, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    assert gdag("lookup", "o", cwd=repo).stdout == b"done\n"
    assert (marks / "count").read_text().strip() == "2"  # executed twice ...
    log = git("log", "--first-parent", "--format=%s", "refs/gdag/logs/main", cwd=repo)
    assert log.count("session slow ok") == 1  # ... applied once
    fsck(repo)


def test_a_restarted_coordinator_reattaches_to_its_job(tmp_path: Path, cluster: str) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    repo = make_repo(tmp_path / "repo")
    define(repo, SLOW.format(marks=marks, sleep=3))
    assert gdag("publish", "x", "1", "--no-run", cwd=repo).returncode == 0
    run = subprocess.Popen(
        [sys.executable, "-m", "gdag", "run", "--cluster", cluster],
        cwd=repo,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_for(marks / "pid0")
    os.killpg(run.pid, signal.SIGKILL)  # the coordinator dies; the cluster keeps the task
    run.wait()
    again = gdag("run", "--cluster", cluster, cwd=repo, timeout=120)
    assert again.returncode == 0, again.stderr
    assert gdag("lookup", "o", cwd=repo).stdout == b"done\n"
    assert (marks / "count").read_text().strip() == "1"  # not executed a second time
    assert not git("for-each-ref", "refs/gdag/sessions/", cwd=repo).strip()
    fsck(repo)


def test_a_killed_scheduler_fails_the_run_and_the_next_run_finishes(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    repo = make_repo(tmp_path / "repo")
    define(repo, SLOW.format(marks=marks, sleep=600))
    assert gdag("publish", "x", "1", "--no-run", cwd=repo).returncode == 0
    with running_cluster(tmp_path / "cluster-dir") as (address, procs):
        run = subprocess.Popen(
            [sys.executable, "-m", "gdag", "run", "--cluster", address],
            cwd=repo,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        wait_for(marks / "pid0")
        os.killpg(procs[0].pid, signal.SIGKILL)  # the scheduler
        _, err = run.communicate(timeout=180)
    assert run.returncode != 0
    assert b"Traceback" not in err, err
    # The next run, on a new cluster, finishes: the unfinished session is recovered.
    with running_cluster(tmp_path / "cluster-dir2") as (address, _):
        again = gdag("run", "--cluster", address, cwd=repo, timeout=180)
    assert again.returncode == 0, again.stderr
    assert gdag("lookup", "o", cwd=repo).stdout == b"done\n"
    log = git("log", "--first-parent", "--format=%s", "refs/gdag/logs/main", cwd=repo)
    assert log.count("session slow ok") == 1
    assert not git("for-each-ref", "refs/gdag/sessions/", cwd=repo).strip()
    fsck(repo)


def test_local_nodes_publish_in_jobs_and_the_cluster_in_gdag_toml(
    tmp_path: Path, cluster: str
) -> None:
    repo = make_repo(tmp_path / "repo")
    define(
        repo,
        f"""
        [cluster]
        address = "{cluster}"
        [nodes.inside]
        run = 'gdag publish via/cmd "got $(cat "$GDAG_IN_X")"; test -z "$GDAG_REPO" && echo no > "$GDAG_OUT/where"'
        inputs = {{ x = "x" }}
        publishes = ["via/*", "where"]
        [nodes.git]
        run = 'git rev-parse --show-toplevel > "$GDAG_OUT/top"'
        inputs = {{ x = "x" }}
        publishes = ["top"]
        local = true
        """,
    )
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "definition", cwd=repo)
    assert gdag("publish", "x", "7", "--no-run", cwd=repo).returncode == 0
    r = gdag("run", cwd=repo, timeout=120)  # the cluster comes from gdag.toml
    assert r.returncode == 0, r.stderr
    assert gdag("lookup", "via/cmd", cwd=repo).stdout == b"got 7"
    assert gdag("lookup", "where", cwd=repo).stdout == b"no\n"  # ran on a worker
    top = gdag("lookup", "top", cwd=repo).stdout.decode().strip()
    assert Path(top).resolve() == repo.resolve()  # the local node ran in the work tree


def test_publish_and_replay_on_the_cluster(tmp_path: Path, cluster: str) -> None:
    repo = make_repo(tmp_path / "repo")
    r = gdag("publish", "n", "4", "--cluster", cluster, cwd=repo, timeout=120)
    assert r.returncode == 0, r.stderr
    assert gdag("lookup", "sum", cwd=repo).stdout.strip() == b"48"
    (repo / "lib_nodes.py").write_text(MODULE.replace("n * 2", "n * 3"))
    r = gdag("replay", "--from", "0", "--cluster", cluster, cwd=repo, timeout=120)
    assert r.returncode == 0, r.stderr
    assert gdag("lookup", "sum", cwd=repo).stdout.strip() == b"72"
    fsck(repo)


def test_two_coordinators_share_a_log_with_the_clusters_leases(
    tmp_path: Path, cluster: str
) -> None:
    """Two clones ("machines") run one log through a git remote with `--cluster`: node
    leases come from the cluster's semaphores (no lease ref is ever pushed), and every
    (node, input versions) is applied once on the remote's log."""
    bare = tmp_path / "shared.git"
    git("init", "-q", "--bare", "-b", "main", str(bare), cwd=tmp_path)
    seed = make_repo(tmp_path / "m0")
    git("add", "-A", cwd=seed)
    git("commit", "-qm", "definition", cwd=seed)
    git("remote", "add", "origin", f"file://{bare}", cwd=seed)
    git("push", "-q", "origin", "HEAD:main", cwd=seed)
    assert gdag("sync", cwd=seed).returncode == 0
    other = tmp_path / "m1"
    git("clone", "-q", f"file://{bare}", str(other), cwd=tmp_path)
    assert gdag("sync", cwd=other).returncode == 0
    for n in ("1", "2", "3"):
        assert gdag("publish", "n", n, "--no-run", cwd=seed).returncode == 0
    assert gdag("sync", cwd=seed).returncode == 0
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "gdag", "run", "--remote", "origin", "--cluster", cluster],
            cwd=m,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for m in (seed, other)
    ]
    for run in runs:
        _, err = run.communicate(timeout=300)
        assert run.returncode == 0, err
    for m in (seed, other):
        assert gdag("sync", cwd=m).returncode == 0
    assert gdag("lookup", "sum", cwd=other).stdout.strip() == b"36"
    leases = subprocess.run(
        ["git", f"--git-dir={bare}", "for-each-ref", "refs/gdag/leases/"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert leases == ""  # the cluster's semaphores, not pushed lease refs
    merged = subprocess.run(
        ["git", f"--git-dir={bare}", "log", "--first-parent", "--format=%H %s",
         "refs/gdag/logs/main"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()  # fmt: skip
    seen = set()
    for line in merged:
        sha, _, subject = line.partition(" ")
        if not subject.startswith("session ") or not subject.endswith(" ok"):
            continue
        node = subject.split()[1]
        done = subprocess.run(
            ["git", f"--git-dir={bare}", "show", f"{sha}:nodes/{node}/@done.json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        key = (node, done.split('"inputs"')[1].split("}")[0])
        assert key not in seen, f"{key} applied twice"
        seen.add(key)


def test_a_worker_with_other_code_refuses_the_job(tmp_path: Path) -> None:
    """A Python node whose module is not in the work tree (installed beside gdag, so not
    shipped) runs only where that module has the code the coordinator compiled: workers
    with another version of it refuse the job, and nothing they computed is applied."""
    mine, theirs = tmp_path / "coordinator-lib", tmp_path / "worker-lib"
    for where, word in ((mine, "coordinator"), (theirs, "worker")):
        where.mkdir()
        (where / "extlib.py").write_text(f"def step(x: str) -> str:\n    return '{word}'\n")
    repo = tmp_path / "repo"
    repo.mkdir()
    git("init", "-q", str(repo), cwd=tmp_path)
    env = {"PYTHONPATH": str(mine)}
    assert gdag("init", cwd=repo, env=env).returncode == 0
    define(
        repo,
        """
        [nodes.ext]
        python = "extlib:step"
        inputs = { x = "x" }
        publishes = ["y"]
        """,
    )
    with running_cluster(tmp_path / "cluster", {"PYTHONPATH": str(theirs)}) as (address, _):
        assert gdag("publish", "x", "go", "--no-run", cwd=repo, env=env).returncode == 0
        r = gdag("run", "--cluster", address, cwd=repo, env=env, timeout=120)
        assert r.returncode == 1, r.stderr
        reason = gdag("why", "ext", cwd=repo, env=env).text
        assert "not the code the coordinator compiled" in reason, reason
        assert gdag("lookup", "y", cwd=repo, env=env).returncode != 0  # nothing applied
        # The same module on the workers: the job runs.
        (theirs / "extlib.py").write_text((mine / "extlib.py").read_text())
    with running_cluster(tmp_path / "cluster2", {"PYTHONPATH": str(theirs)}) as (address, _):
        r = gdag("run", "--retry-failed", "--cluster", address, cwd=repo, env=env, timeout=120)
        assert r.returncode == 0, r.stderr
        assert gdag("lookup", "y", cwd=repo, env=env).stdout == b"coordinator"
    fsck(repo)


def test_a_dead_coordinators_cluster_lease_is_taken_over(tmp_path: Path, cluster: str) -> None:
    """A coordinator SIGKILLed while it holds a node's lease on the cluster stops
    refreshing it; the scheduler frees it after gdag's short lease timeout, and another
    coordinator sharing the log runs the node."""
    from distributed import Client

    from gdag.netsem import LEASE_TIMEOUT

    bare = tmp_path / "shared.git"
    git("init", "-q", "--bare", "-b", "main", str(bare), cwd=tmp_path)
    seed = tmp_path / "m0"
    seed.mkdir()
    git("init", "-q", "-b", "main", str(seed), cwd=tmp_path)
    assert gdag("init", cwd=seed).returncode == 0
    define(
        seed,
        """
        [nodes.slow]
        run = 'echo $$ > "$MARKER"; sleep "${NAP:-0}"; echo done > "$GDAG_OUT/o"'
        inputs = { x = "x" }
        publishes = ["o"]
        local = true
        """,
    )
    git("add", "-A", cwd=seed)
    git("commit", "-qm", "definition", cwd=seed)
    git("remote", "add", "origin", f"file://{bare}", cwd=seed)
    git("push", "-q", "origin", "HEAD:main", cwd=seed)
    assert gdag("publish", "x", "1", "--no-run", cwd=seed).returncode == 0
    assert gdag("sync", cwd=seed).returncode == 0
    other = tmp_path / "m1"
    git("clone", "-q", f"file://{bare}", str(other), cwd=tmp_path)
    assert gdag("sync", cwd=other).returncode == 0
    marker = tmp_path / "started"
    holder = subprocess.Popen(
        [sys.executable, "-m", "gdag", "run", "--remote", "origin", "--cluster", cluster],
        cwd=seed,
        env={**os.environ, "NAP": "600", "MARKER": str(marker)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(marker)  # the node runs: its lease is held on the cluster
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
    with Client(cluster, timeout=10) as client:
        timeouts = client.run_on_scheduler(
            lambda dask_scheduler: dict(dask_scheduler.extensions["semaphores"].lease_timeouts)
        )
    assert timeouts["gdag-lease/main/slow"] == LEASE_TIMEOUT
    env = {"MARKER": str(tmp_path / "again")}
    deadline = time.monotonic() + 120  # a bound for the test, not a speed goal
    while time.monotonic() < deadline:
        r = gdag("run", "--remote", "origin", "--cluster", cluster, cwd=other, env=env)
        assert r.returncode == 0, r.stderr
        assert gdag("sync", cwd=other).returncode == 0
        if gdag("lookup", "o", cwd=other).stdout == b"done\n":
            break
        time.sleep(0.5)
    assert gdag("lookup", "o", cwd=other).stdout == b"done\n"
    assert (tmp_path / "again").exists()  # the other coordinator ran it

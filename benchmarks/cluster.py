#!/usr/bin/env python3
"""Node runs on a Dask cluster beside local `gdag run -j`, in the same run.

Usage: python benchmarks/cluster.py [--nodes N] [--work S] [--workers 1,2,4] [--threads T]

  --nodes N      independent nodes (default 200)
  --work S       seconds of work per node in (A) (default 0.5; a sleep, so the
                 cores of this machine are not what is measured)
  --workers L    worker counts for (A) (default 1,2,4)
  --threads T    threads per worker (default 4)

(A) N independent shell nodes of S seconds each: local `gdag run -j W*T` and
    `gdag run --cluster` on W workers of T threads: wall time, ideal (N*S/slots),
    efficiency (ideal / wall).
(B) the same N nodes doing nothing: the coordinator's cost per node, local
    `-j T` beside a cluster of one worker of T threads: the wall of N nodes less
    that of one node (start-up, and the cluster's connection, counted once),
    divided by N - 1.

A real `dask scheduler` and `dask worker` processes on 127.0.0.1 are started
here, in a temporary directory outside the repository, and stopped at the end.
Needs the cluster extra (`pip install 'gdag[cluster]'`). Standard library
otherwise; run it with the Python of the environment where gdag is installed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import clean_env, gdag_command  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_cluster(where: Path, workers: int, threads: int, env: dict[str, str]) -> tuple[str, list]:
    address = f"tcp://127.0.0.1:{free_port()}"
    port = address.rpartition(":")[2]
    log = open(where / "cluster.log", "ab")
    py = sys.executable
    procs = [
        subprocess.Popen(
            [py, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", port,
             "--dashboard-address", ":0"],
            cwd=where, env=env, stdout=log, stderr=log, start_new_session=True,
        )
    ]  # fmt: skip
    for i in range(workers):
        procs.append(
            subprocess.Popen(
                [py, "-m", "distributed.cli.dask_worker", address, "--nthreads", str(threads),
                 "--no-dashboard", "--name", f"w{i}"],
                cwd=where, env=env, stdout=log, stderr=log, start_new_session=True,
            )
        )  # fmt: skip
    from distributed import Client

    deadline = time.monotonic() + 120
    while True:
        try:
            with Client(address, timeout=5) as client:
                client.wait_for_workers(workers, timeout=120)
            return address, procs
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def stop_cluster(procs: list) -> None:
    for proc in reversed(procs):
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


def make_repo(root: Path, nodes: int, work: float, env: dict[str, str]) -> Path:
    subprocess.run([*gdag_command(), "init", "-C", str(root)], env=env, check=True,
                   capture_output=True)  # fmt: skip
    lines = []
    for i in range(nodes):
        body = f"sleep {work}; " if work else ""
        lines += [
            f"[nodes.n{i:04d}]",
            f"run = '{body}echo {i} > \"$GDAG_OUT/o/{i:04d}\"'",
            'inputs = { go = "go" }',
            f'publishes = ["o/{i:04d}"]',
            "",
        ]
    (root / "gdag.toml").write_text("\n".join(lines))
    subprocess.run([*gdag_command(), "publish", "go", "1", "--no-run"], cwd=root, env=env,
                   check=True, capture_output=True)  # fmt: skip
    return root


def timed_run(repo: Path, args: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    p = subprocess.run([*gdag_command(), "run", "-q", *args], cwd=repo, env=env,
                       capture_output=True)  # fmt: skip
    wall = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(
            f"benchmark: gdag run {' '.join(args)} exited {p.returncode}:\n{p.stderr.decode()}"
        )
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=200)
    ap.add_argument("--work", type=float, default=0.5)
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--threads", type=int, default=4)
    args = ap.parse_args()
    counts = [int(c) for c in args.workers.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="gdag-bench-cluster-"))
    env = clean_env(tmp / "home")
    (tmp / "home").mkdir()
    rows_a, rows_b = [], []
    started = time.perf_counter()
    try:
        for w in counts:
            slots = w * args.threads
            ideal = args.nodes * args.work / slots
            local = timed_run(make_repo(tmp / f"a-local-{w}", args.nodes, args.work, env),
                              ["-j", str(slots)], env)  # fmt: skip
            where = tmp / f"cluster-{w}"
            where.mkdir()
            address, procs = start_cluster(where, w, args.threads, env)
            try:
                repo = make_repo(tmp / f"a-cluster-{w}", args.nodes, args.work, env)
                cluster = timed_run(repo, ["--cluster", address], env)
            finally:
                stop_cluster(procs)
            rows_a.append((w, slots, ideal, local, cluster))
        where = tmp / "cluster-b"
        where.mkdir()
        address, procs = start_cluster(where, 1, args.threads, env)
        try:
            for how in (["-j", str(args.threads)],
                        ["--cluster", address, "-j", str(args.threads)]):  # fmt: skip
                kind = "cluster" if "--cluster" in how else "local"
                one = timed_run(make_repo(tmp / f"b-{kind}-1", 1, 0, env), how, env)
                many = timed_run(make_repo(tmp / f"b-{kind}", args.nodes, 0, env), how, env)
                rows_b.append((one, many, (many - one) / (args.nodes - 1)))
        finally:
            stop_cluster(procs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"gdag: `{' '.join(gdag_command())}` · Python {sys.version.split()[0]} · "
          f"{os.cpu_count()} CPUs · {args.nodes} independent nodes · timed in "
          f"{time.perf_counter() - started:.0f} s\n")  # fmt: skip
    print(f"(A) {args.work} s of work per node (a sleep)\n")
    print("| workers × threads | ideal | local `-j` | efficiency | cluster | efficiency |")
    print("|---|---:|---:|---:|---:|---:|")
    for w, slots, ideal, local, cluster in rows_a:
        print(f"| {w} × {args.threads} ({slots} slots) | {ideal:.1f} s | {local:.1f} s | "
              f"{ideal / local:.0%} | {cluster:.1f} s | {ideal / cluster:.0%} |")  # fmt: skip
    print(f"\n(B) no work: coordinator cost per node ({args.nodes} nodes less 1 node)\n")
    print(f"| | 1 node | {args.nodes} nodes | per node | × local |")
    print("|---|---:|---:|---:|---:|")
    (l_one, l_many, local), (c_one, c_many, cluster) = rows_b
    print(f"| local `-j {args.threads}` | {l_one:.2f} s | {l_many:.2f} s | "
          f"{local * 1000:.1f} ms | ×1.0 |")  # fmt: skip
    print(f"| cluster, 1 worker × {args.threads} | {c_one:.2f} s | {c_many:.2f} s | "
          f"{cluster * 1000:.1f} ms | ×{cluster / local:.2f} |")  # fmt: skip
    w, _, ideal, _, wall = max(rows_a)  # the most workers
    eff = ideal / wall
    print(f"\ntargets: efficiency ≥ 80 % with the most workers ({w}): {eff:.0%} "
          f"({'met' if eff >= 0.8 else 'not met'}); coordinator cost ≤ 1.5× local: "
          f"×{cluster / local:.2f} ({'met' if cluster / local <= 1.5 else 'not met'})")  # fmt: skip


if __name__ == "__main__":
    main()

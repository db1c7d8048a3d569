"""Throughput of 1, 2 and 3 workers sharing one DAG through `git daemon`.

    python benchmarks/remote.py [--events 60] [--nodes 10] [--workers 1,2,3] [--cluster 2]

A bare repository is served by `git daemon` on 127.0.0.1; each worker is a
clone running `gdag run --remote origin` in a loop. All events are published
and synced first; the clock runs from starting the workers until every event
has been processed on the remote log (the first node runs in `each` mode, so
every event is a session; the rest of the pipeline coalesces). Prints a
markdown table of events/s fully processed.

`--cluster N` adds a row: one coordinator, `gdag run --remote origin --cluster`
on a real `dask scheduler` with N workers of 4 threads on 127.0.0.1 (leases
from the cluster's semaphores, node runs on its workers). Needs the cluster
extra.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import clean_env, gdag_command

WORKER = """
import os, sys, time
from gdag.main import main
stop, extra = sys.argv[1], sys.argv[2:] or ["-j", "2"]
while not os.path.exists(stop):
    main(["run", "--remote", "origin", "-q", *extra])
    time.sleep(0.05)
"""


def definition(nodes: int) -> str:
    lines = [
        "[nodes.n1]",
        'run = \'cp "$GDAG_IN_X" "$GDAG_OUT/o1"\'',
        'inputs = { x = "src" }',
        'publishes = ["o1"]',
        'mode = "each"',
        "",
    ]
    for i in range(2, nodes + 1):
        lines += [
            f"[nodes.n{i}]",
            f'run = \'cp "$GDAG_IN_X" "$GDAG_OUT/o{i}"\'',
            f'inputs = {{ x = "o{i - 1}" }}',
            f'publishes = ["o{i}"]',
            "",
        ]
    return "\n".join(lines)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sh(*args: str, cwd: Path | None = None, env: dict[str, str]) -> str:
    return subprocess.run(args, cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def processed(bare: Path, env: dict[str, str]) -> int:
    """How many n1 sessions (one per event) the remote log holds."""
    out = sh(
        "git",
        f"--git-dir={bare}",
        "log",
        "--first-parent",
        "--format=%s",
        "refs/gdag/logs/main",
        env=env,
    )
    return sum(1 for line in out.splitlines() if line == "session n1 ok")


def measure(
    root: Path, workers: int, events: int, nodes: int, env: dict[str, str], extra: list[str]
) -> float:
    base = root / f"w{workers}{'-cluster' if extra else ''}"
    base.mkdir()
    bare = base / "shared.git"
    sh("git", "init", "-q", "--bare", "-b", "main", str(bare), env=env)
    port = free_port()
    daemon = subprocess.Popen(
        [
            "git",
            "daemon",
            "--reuseaddr",
            f"--base-path={base}",
            "--export-all",
            "--enable=receive-pack",
            "--listen=127.0.0.1",
            f"--port={port}",
            str(base),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)
        url = f"git://127.0.0.1:{port}/shared.git"
        seed = base / "m0"
        sh("git", "init", "-q", "-b", "main", str(seed), env=env)
        sh(*gdag_command(), "init", "-C", str(seed), env=env)
        (seed / "gdag.toml").write_text(definition(nodes))
        sh("git", "add", "gdag.toml", cwd=seed, env=env)
        sh("git", "commit", "-qm", "definition", cwd=seed, env=env)
        sh("git", "remote", "add", "origin", url, cwd=seed, env=env)
        sh("git", "push", "-q", "origin", "main", cwd=seed, env=env)
        for i in range(events):
            sh(
                *gdag_command(),
                "publish",
                "src",
                f"event-{i}",
                "--no-run",
                "-C",
                str(seed),
                env=env,
            )
        sh(*gdag_command(), "sync", "-C", str(seed), env=env)
        clones = [seed]
        for k in range(1, workers):
            clone = base / f"m{k}"
            sh("git", "clone", "-q", url, str(clone), env=env)
            sh(*gdag_command(), "sync", "-C", str(clone), env=env)
            clones.append(clone)
        stop = base / "stop"
        t = time.perf_counter()
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", WORKER, str(stop), *extra],
                cwd=c,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for c in clones
        ]
        while processed(bare, env) < events:
            time.sleep(0.2)
        took = time.perf_counter() - t
        stop.write_text("")
        for p in procs:
            p.wait(timeout=600)
        return took
    finally:
        daemon.terminate()
        daemon.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=60)
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--workers", default="1,2,3")
    ap.add_argument("--cluster", type=int, default=0, help="also: one coordinator, N workers")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gdag-bench-remote-"))
    env = clean_env(tmp)
    env.update(
        GIT_AUTHOR_NAME="b",
        GIT_AUTHOR_EMAIL="b@example.com",
        GIT_COMMITTER_NAME="b",
        GIT_COMMITTER_EMAIL="b@example.com",
    )
    try:
        print(f"{args.nodes}-node pipeline, {args.events} events, workers over git daemon\n")
        print("| workers | seconds | events/s |\n|---:|---:|---:|")
        for n in (int(x) for x in args.workers.split(",") if x):
            took = measure(tmp, n, args.events, args.nodes, env, [])
            print(f"| {n} | {took:.1f} | {args.events / took:.2f} |", flush=True)
        if args.cluster:
            from cluster import start_cluster, stop_cluster

            where = tmp / "cluster"
            where.mkdir()
            address, procs = start_cluster(where, args.cluster, 4, env)
            try:
                took = measure(tmp, 1, args.events, args.nodes, env, ["--cluster", address])
            finally:
                stop_cluster(procs)
            print(
                f"| 1 coordinator, cluster of {args.cluster} × 4 | {took:.1f} | "
                f"{args.events / took:.2f} |",
                flush=True,
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

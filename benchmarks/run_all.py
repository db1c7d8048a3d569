"""Every benchmark the project tracks, in one run, as one markdown report.

    python benchmarks/run_all.py [--quick] [-o docs/benchmarks.md]

Runs each script in this directory with the sizes named below (`--quick`
shrinks them), prints their tables under headings with the machine's details,
and writes the report to `-o` when given. DVC rows are added when a `dvc`
executable is on PATH; otherwise the report says they were skipped.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# (script, title, full arguments, quick arguments)
SUITE = [
    (
        "publish_lookup.py",
        "Start-up: publish and lookup beside git",
        ["--runs", "15"],
        ["--runs", "10"],
    ),
    (
        "pipeline.py",
        "Pipelines beside make: chain, fan-out, no-op, per-node scaling",
        ["--runs", "3", "--sizes", "10,100,1000"],
        ["--runs", "2"],
    ),
    ("compile.py", "Compiling a 1,000-node definition; publish with a pydantic type", [], []),
    # 1,000 events: the 10,000-event replay takes over half an hour on 2 cores
    # (`python benchmarks/replay.py --events 10000` runs it).
    ("replay.py", "Replay with the run cache", ["--events", "1000"], []),
    (
        "graph.py",
        "gdag graph on a 1,000-node DAG with 10,000 events",
        [],
        ["--nodes", "300", "--events", "2000", "--runs", "3"],
    ),
    (
        "hooks.py",
        "Git hooks and an idle watch",
        ["--commits", "50", "--idle", "30"],
        ["--commits", "20", "--idle", "5"],
    ),
    ("speculative.py", "Speculative runs", ["--runs", "2"], ["--runs", "1"]),
    (
        "remote.py",
        "Workers sharing a DAG through git daemon",
        ["--events", "200", "--nodes", "20"],
        ["--events", "30", "--nodes", "5"],
    ),
    (
        "memory.py",
        "Memory with large values and many pending events",
        ["--mb", "100,1000", "--events", "10000", "--run-seconds", "120"],
        ["--mb", "100", "--events", "500", "--run-seconds", "20"],
    ),
]


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    git = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip()
    return (
        f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, {git}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes, a few minutes in all")
    ap.add_argument("-o", "--out", help="also write the report to this file")
    ap.add_argument("--only", help="comma-separated script names to run")
    args = ap.parse_args()
    # Start-up is part of what is measured: let Python keep its bytecode caches.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    parts = [
        f"# Benchmarks\n\nMeasured {stamp} on {machine()}"
        f"{' (quick sizes)' if args.quick else ''} with "
        f"`python benchmarks/run_all.py{' --quick' if args.quick else ''}`.\n"
    ]
    dvc = shutil.which("dvc")
    if dvc:
        version = subprocess.run([dvc, "--version"], capture_output=True, text=True).stdout
        parts.append(
            f"DVC {version.strip()} is on PATH: the pipeline tables time `dvc repro` on the "
            "same pipelines.\n"
        )
    else:
        parts.append(
            "DVC is not on PATH here: the DVC rows of the design brief (41 s, 29 s and "
            "1.4 s for the chain, fan-out and no-op) are quoted, not re-measured.\n"
        )
    only = set(args.only.split(",")) if args.only else None
    for script, title, full, quick in SUITE:
        if only and script not in only:
            continue
        cmd = [sys.executable, str(HERE / script), *(quick if args.quick else full)]
        print(f"== {script}", file=sys.stderr, flush=True)
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        took = time.perf_counter() - t
        body = proc.stdout.strip() or "(no output)"
        if proc.returncode != 0:
            body += f"\n\n**failed** (exit {proc.returncode}):\n\n```\n{proc.stderr[-2000:]}\n```"
        parts.append(
            f"## {title}\n\n`python benchmarks/{script} {' '.join(cmd[2:])}` "
            f"({took:.0f} s)\n\n{body}\n"
        )
    report = "\n".join(parts)
    print(report)
    if args.out:
        Path(args.out).write_text(report)


if __name__ == "__main__":
    main()

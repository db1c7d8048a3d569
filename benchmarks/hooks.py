"""What gdag's git hooks add to `git commit`, and what an idle `gdag watch` costs.

    python benchmarks/hooks.py [--commits 50] [--idle 30]

Prints a markdown table. Targets: under 60 ms added per commit (median);
an idle `gdag watch` under 2 % of one core.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from common import clean_env, gdag_command


def make_repo(root: Path, name: str, env: dict[str, str], hooks: bool) -> Path:
    repo = root / name
    subprocess.run(["git", "init", "-q", str(repo)], check=True, env=env)
    subprocess.run(
        [*gdag_command(), "init", "-C", str(repo)], check=True, env=env, capture_output=True
    )
    if hooks:
        subprocess.run(
            [*gdag_command(), "hooks", "install", "-C", str(repo)],
            check=True,
            env=env,
            capture_output=True,
        )
    return repo


def commit_times(repo: Path, n: int, env: dict[str, str], pause: float) -> list[float]:
    """Wall time of each `git commit`; `pause` (untimed) lets background work finish first."""
    times = []
    for i in range(n):
        time.sleep(pause)
        (repo / "file.txt").write_text(f"change {i}\n")
        subprocess.run(["git", "add", "file.txt"], cwd=repo, check=True, env=env)
        t = time.perf_counter()
        subprocess.run(["git", "commit", "-qm", f"change {i}"], cwd=repo, check=True, env=env)
        times.append(time.perf_counter() - t)
    return times


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commits", type=int, default=50)
    ap.add_argument("--idle", type=float, default=30.0, help="seconds of idle watch to measure")
    ap.add_argument(
        "--pause",
        type=float,
        default=0.5,
        help="untimed seconds between commits (0: back to back, so the background "
        "publishes compete with the next commit for the CPU)",
    )
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gdag-bench-hooks-"))
    env = clean_env(tmp)
    env.update(
        GIT_AUTHOR_NAME="b",
        GIT_AUTHOR_EMAIL="b@example.com",
        GIT_COMMITTER_NAME="b",
        GIT_COMMITTER_EMAIL="b@example.com",
    )
    try:
        plain = make_repo(tmp, "plain", env, hooks=False)
        hooked = make_repo(tmp, "hooked", env, hooks=True)
        without = commit_times(plain, args.commits, env, args.pause)
        with_hooks = commit_times(hooked, args.commits, env, args.pause)
        time.sleep(2)  # let the background publishes finish before checking them
        log = subprocess.run(
            [*gdag_command(), "log", "--output", "git/commit", "-C", str(hooked)],
            capture_output=True,
            text=True,
            env=env,
        ).stdout.splitlines()
        watch = subprocess.Popen(
            [*gdag_command(), "watch", "-C", str(hooked), "-q"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(2)  # start-up and the first look are not idle time
        before = cpu_seconds(watch.pid)
        time.sleep(args.idle)
        idle = cpu_seconds(watch.pid) - before
        watch.send_signal(signal.SIGTERM)
        watch.wait(timeout=30)
        m0, m1 = statistics.median(without), statistics.median(with_hooks)
        print(
            f"{args.commits} commits each, {args.pause:g} s apart; idle watch measured over "
            f"{args.idle:g} s\n"
        )
        print("| what | median ms | p90 ms |\n|---|---:|---:|")
        for label, ts in (
            ("`git commit`, no hooks", without),
            ("`git commit` with gdag's hooks", with_hooks),
        ):
            p90 = sorted(ts)[int(0.9 * (len(ts) - 1))]
            print(f"| {label} | {statistics.median(ts) * 1000:.1f} | {p90 * 1000:.1f} |")
        print(f"| added by the hooks | {(m1 - m0) * 1000:.1f} | |")
        print(f"\ngit/commit events published: {len(log)} of {args.commits}")
        print(
            f"idle `gdag watch`: {idle:.3f} CPU s in {args.idle:g} s = "
            f"{100 * idle / args.idle:.2f} % of one core"
        )
        met = "met" if (m1 - m0) < 0.060 else "MISSED"
        met_idle = "met" if idle / args.idle < 0.02 else "MISSED"
        print(
            f"targets: under 60 ms added per commit ({met}); idle watch under 2 % of a core "
            f"({met_idle})"
        )
        if len(log) != args.commits:
            raise SystemExit("not every commit was published: the benchmark is not valid")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

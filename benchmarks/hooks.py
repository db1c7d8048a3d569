"""What gdag's git hooks add to `git commit`, how fast a burst drains, and what an idle
`gdag watch` costs.

    python benchmarks/hooks.py [--commits 50] [--burst 50] [--idle 30] [--clone REPO]

Prints a markdown table. Targets: under 5 ms added per commit (median); the
background publishing of a burst of back-to-back commits done within the time
the burst took; an idle `gdag watch` under 2 % of one core. `--clone REPO`
measures in clones of an existing repository instead of empty ones.
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


def make_repo(
    root: Path, name: str, env: dict[str, str], hooks: bool, clone: str | None = None
) -> Path:
    repo = root / name
    if clone:
        subprocess.run(["git", "clone", "-q", clone, str(repo)], check=True, env=env)
    else:
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


def burst(repo: Path, n: int, env: dict[str, str]) -> tuple[float, float, int]:
    """(seconds for `n` back-to-back commits, seconds after the last one until the hooks'
    queue is drained, git/commit events published meanwhile)."""
    before = len(events(repo, env))
    t = time.perf_counter()
    subprocess.run(
        f'for i in $(seq 1 {n}); do git commit -q --allow-empty -m "burst $i"; done',
        shell=True,
        cwd=repo,
        check=True,
        env=env,
    )
    took = time.perf_counter() - t
    spool = repo / ".git" / "gdag" / "spool"
    while any(spool.glob("*.event")):  # a file goes once its event is published
        time.sleep(0.01)
    drained = time.perf_counter() - t - took
    while (spool / "drain.pid").exists():  # the drainer lingers a little for more
        time.sleep(0.05)
    return took, drained, len(events(repo, env)) - before


def capture_times(repo: Path, n: int, env: dict[str, str], pause: float) -> list[float]:
    """`git commit` times with the shim capturing only: a live process holds the pid file
    the shims check, so none starts a drainer (what git itself waits for)."""
    spool = repo / ".git" / "gdag" / "spool"
    spool.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(["sleep", "600"])
    (spool / "drain.pid").write_text(f"{holder.pid}\n")
    try:
        return commit_times(repo, n, env, pause)
    finally:
        holder.kill()
        holder.wait()
        (spool / "drain.pid").unlink()
        subprocess.run([*gdag_command(), "hook", "--drain", "-C", str(repo)], env=env, check=True)


def events(repo: Path, env: dict[str, str]) -> list[str]:
    return subprocess.run(
        [*gdag_command(), "log", "--output", "git/commit", "-C", str(repo)],
        capture_output=True,
        text=True,
        env=env,
    ).stdout.splitlines()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commits", type=int, default=50)
    ap.add_argument("--idle", type=float, default=30.0, help="seconds of idle watch to measure")
    ap.add_argument("--burst", type=int, default=50, help="back-to-back commits of the burst")
    ap.add_argument("--clone", help="measure in clones of this repository (a path or URL)")
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
        plain = make_repo(tmp, "plain", env, hooks=False, clone=args.clone)
        hooked = make_repo(tmp, "hooked", env, hooks=True, clone=args.clone)
        # The floor of any hook: git starting /bin/sh for an empty one.
        empty = make_repo(tmp, "empty-hook", env, hooks=False, clone=args.clone)
        hook = empty / ".git" / "hooks" / "post-commit"
        hook.write_text("#!/bin/sh\n")
        hook.chmod(0o755)
        # Interleaved rounds, so a busy moment of a shared machine hits all alike.
        without, with_hooks, capture, floor = [], [], [], []
        for _ in range(5):
            n = max(1, args.commits // 5)
            without += commit_times(plain, n, env, args.pause)
            floor += commit_times(empty, n, env, args.pause)
            with_hooks += commit_times(hooked, n, env, args.pause)
            capture += capture_times(hooked, n, env, args.pause)
        time.sleep(2)  # let the background publishes finish before checking them
        log = events(hooked, env)
        published = len(without)
        burst_plain, _, _ = burst(plain, args.burst, env)
        burst_took, drain_after, burst_events = burst(hooked, args.burst, env)
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
        mc = statistics.median(capture)
        print(
            f"{args.commits} commits each, {args.pause:g} s apart; idle watch measured over "
            f"{args.idle:g} s\n"
        )
        print("| what | median ms | p90 ms |\n|---|---:|---:|")
        for label, ts in (
            ("`git commit`, no hooks", without),
            ("`git commit` with gdag's hooks", with_hooks),
            ("`git commit`, the shim capturing only (no drainer)", capture),
            ("`git commit` with an empty `#!/bin/sh` hook", floor),
        ):
            p90 = sorted(ts)[int(0.9 * (len(ts) - 1))]
            print(f"| {label} | {statistics.median(ts) * 1000:.1f} | {p90 * 1000:.1f} |")
        print(f"| added by the hooks | {(m1 - m0) * 1000:.1f} | |")
        print(f"| added by the shim itself | {(mc - m0) * 1000:.1f} | |")
        mf = statistics.median(floor)
        print(f"| added by an empty hook (starting /bin/sh) | {(mf - m0) * 1000:.1f} | |")
        print(f"\ngit/commit events published: {len(log)} of {2 * published}")
        print(
            f"burst of {args.burst} back-to-back commits: {burst_took:.2f} s with the hooks, "
            f"{burst_plain:.2f} s without; every event published {drain_after:.2f} s after "
            f"the last commit; {burst_events} of {args.burst} events published"
        )
        print(
            f"idle `gdag watch`: {idle:.3f} CPU s in {args.idle:g} s = "
            f"{100 * idle / args.idle:.2f} % of one core"
        )
        met = "met" if (mc - m0) < 0.005 else "MISSED"
        met_idle = "met" if idle / args.idle < 0.02 else "MISSED"
        met_drain = "met" if drain_after < burst_took else "MISSED"
        print(
            f"targets: the shim under 5 ms per commit ({met}); a burst drained within the time "
            f"it took ({met_drain}); idle watch under 2 % of a core ({met_idle})"
        )
        if len(log) != 2 * published or burst_events != args.burst:
            raise SystemExit("not every commit was published: the benchmark is not valid")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Wall time of `gdag publish` / `gdag lookup` as whole processes, against plain git.

Usage: python benchmarks/publish_lookup.py [--runs N]      (default N=15)

Run it with the Python of the environment where gdag is installed (e.g.
/tmp/dev/bin/python): the `gdag` script next to that interpreter is timed, or
`python -m gdag` when there is none. Standard library only.

Every case is a fresh process (or two, for the publish baseline), started by
subprocess and timed from spawn to exit. The cases are run round-robin, one
untimed warm-up each first, so that load from other work on the machine falls
on all of them alike. Repositories live in temporary directories, with HOME,
XDG_CONFIG_HOME and GIT_CONFIG_NOSYSTEM set so no user or system git config is
read; they are removed at the end.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from common import clean_env, gdag_command

SMALL = 10
LARGE = 10_000
LOG_REF = "refs/gdag/logs/main"
VALUE_PATH = "outputs/out/x/@value"
TARGET = "targets: publish and lookup each under 120 ms median; lookup flat in history length"


def run(cmd: list[str], cwd: Path, env: dict[str, str], stdin: bytes | None = None) -> bytes:
    p = subprocess.run(cmd, cwd=cwd, env=env, input=stdin, capture_output=True)
    if p.returncode != 0:
        sys.exit(
            f"benchmark: {' '.join(cmd)} (in {cwd}) exited {p.returncode}:\n"
            f"{p.stderr.decode(errors='replace')}"
        )
    return p.stdout


def make_repo(gdag: list[str], path: Path, env: dict[str, str], events: int) -> dict[int, bytes]:
    """`gdag init` a repository, then publish out/x in-process until the log has `events` events.

    Returns {offset: value} of the publish events.
    """
    from gdag.workspace import ValueSource, Workspace

    run([*gdag, "init", "-C", str(path)], cwd=path.parent, env=env)
    ws = Workspace.open(path)
    values: dict[int, bytes] = {}
    for i in range(1, events):
        data = b"value %d" % i
        values[ws.publish("out/x", ValueSource(data=data)).offset] = data
    return values


def value_at(values: dict[int, bytes], offset: int) -> bytes:
    return values[max(o for o in values if o <= offset)]


class Case:
    def __init__(self, name: str, history: str, fn: Callable[[int], None]) -> None:
        self.name, self.history, self.fn = name, history, fn
        self.times: list[float] = []

    def time_once(self, i: int) -> None:
        t0 = time.perf_counter()
        self.fn(i)
        self.times.append(time.perf_counter() - t0)


def p90(xs: list[float]) -> float:
    s = sorted(xs)
    return s[max(0, math.ceil(0.9 * len(s)) - 1)]  # nearest rank


def expect(got: bytes, want: bytes, what: str) -> None:
    if got != want:
        sys.exit(f"benchmark: {what} printed {got!r}, expected {want!r}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=15, help="timed runs per case (default 15)")
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be at least 1")

    try:
        import gdag.workspace as _needed  # noqa: F401  (the in-process history builder)
    except ImportError:
        sys.exit(
            f"benchmark: gdag is not importable from {sys.executable}; run this script "
            "with the Python of the environment where gdag is installed"
        )

    gdag = gdag_command()
    tmp = Path(tempfile.mkdtemp(prefix="gdag-bench-"))
    try:
        home = tmp / "home"
        home.mkdir()
        env = clean_env(home)
        os.environ.clear()
        os.environ.update(env)  # the in-process builder obeys the same rules
        small, large = tmp / "small", tmp / "large"

        t0 = time.perf_counter()
        make_repo(gdag, small, env, SMALL)
        large_values = make_repo(gdag, large, env, LARGE)
        build_s = time.perf_counter() - t0
        large_tip = max(large_values)
        large_last = large_values[large_tip]
        at_old = value_at(large_values, 5)
        at_prev = value_at(large_values, large_tip - 1)
        git_version = run(["git", "--version"], tmp, env).decode().strip()

        def py_pass(i: int) -> None:
            run([sys.executable, "-c", "pass"], tmp, env)

        def gdag_publish(i: int) -> None:
            run([*gdag, "publish", "out/x", f"bench {i}"], small, env)

        def git_publish(i: int) -> None:
            sha = (
                run(
                    ["git", "hash-object", "-w", "--stdin"], small, env, stdin=f"bench {i}".encode()
                )
                .strip()
                .decode()
            )
            run(["git", "update-ref", "refs/bench/x", sha], small, env)

        def lookup_small(i: int) -> None:
            # The publish cases append to this log, so its tip moves: check it is a value at all.
            out = run([*gdag, "lookup", "out/x"], small, env)
            if not out:
                sys.exit("benchmark: gdag lookup out/x printed nothing")

        def lookup_large(i: int) -> None:
            expect(run([*gdag, "lookup", "out/x"], large, env), large_last, "lookup (10,000)")

        def git_cat_file(i: int) -> None:
            expect(
                run(["git", "cat-file", "-p", f"{LOG_REF}:{VALUE_PATH}"], large, env),
                large_last,
                "git cat-file",
            )

        def lookup_at_old(i: int) -> None:
            expect(
                run([*gdag, "lookup", "out/x", "--at", "5"], large, env), at_old, "lookup --at 5"
            )

        def lookup_at_prev(i: int) -> None:
            expect(
                run([*gdag, "lookup", "out/x", "--at", "-1"], large, env), at_prev, "lookup --at -1"
            )

        small_h = f"{SMALL}"
        growing = f"{SMALL}→{SMALL + args.runs + 1}"  # the publish cases append to this log
        large_h = f"{LARGE:,}"
        cases = [
            Case("`python -c pass` (interpreter floor)", "–", py_pass),
            Case("`gdag publish out/x <value>`", growing, gdag_publish),
            Case(
                "`git hash-object -w --stdin` + `git update-ref` (baseline)", small_h, git_publish
            ),
            Case("`gdag lookup out/x`", growing, lookup_small),
            Case("`gdag lookup out/x`", large_h, lookup_large),
            Case("`git cat-file -p <ref>:path` (baseline)", large_h, git_cat_file),
            Case("`gdag lookup out/x --at 5`", large_h, lookup_at_old),
            Case("`gdag lookup out/x --at -1`", large_h, lookup_at_prev),
        ]

        for c in cases:  # untimed warm-up: page cache, .pyc files
            c.fn(-1)
        t0 = time.perf_counter()
        for i in range(args.runs):
            for c in cases:
                c.time_once(i)
        bench_s = time.perf_counter() - t0

        print(
            f"gdag: `{' '.join(gdag)}` · {git_version} · Python "
            f"{sys.version.split()[0]} · {os.cpu_count()} CPUs · {args.runs} runs per case, "
            f"round-robin after one warm-up · history built in {build_s:.1f} s, "
            f"timed in {bench_s:.1f} s"
        )
        print()
        print("| command | events of history | median ms | p90 ms |")
        print("|---|---:|---:|---:|")
        for c in cases:
            ms = [t * 1000 for t in c.times]
            print(f"| {c.name} | {c.history} | {statistics.median(ms):.1f} | {p90(ms):.1f} |")
        print()
        print(TARGET)

        med = {id(c): statistics.median(c.times) * 1000 for c in cases}
        pub, lk_small, lk_large, at5, atm1 = (med[id(cases[k])] for k in (1, 3, 4, 6, 7))

        def verdict(x: float) -> str:
            return "met" if x < 120 else "MISSED"

        print(
            f"  publish {pub:.1f} ms: {verdict(pub)}; lookup {max(lk_small, lk_large):.1f} ms "
            f"(worst of 10 and 10,000 events): {verdict(max(lk_small, lk_large))}"
        )
        print(
            f"  lookup at 10,000 events vs 10: {lk_large - lk_small:+.1f} ms "
            f"(×{lk_large / lk_small:.2f}); --at 5: {at5 - lk_small:+.1f} ms; "
            f"--at -1: {atm1 - lk_small:+.1f} ms"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""Start-up wall time of every command's usual form, beside `python -c pass`.

Usage: python benchmarks/startup.py [--runs N] [--baseline DIR]

  --runs N        timed runs per case, round-robin after one warm-up (default 15)
  --baseline DIR  also time publish and lookup of the gdag checkout in DIR beside
                  this one, both run from PYTHONPATH with the same launcher (to
                  compare with an earlier version, e.g. `git archive` of a commit)

Run it with the Python of the environment where gdag is installed (e.g.
/tmp/dev/bin/python): the `gdag` script next to that interpreter is timed, or
`python -m gdag` when there is none. Standard library only.

The repository has a 3-node chain (x → a → y → b → z → c → w, shell nodes that
copy their input), run once, a bare repository as its remote `origin`, and one
git commit. Each case is a whole process, timed from spawn to exit, and its
exit status and output are checked. Commands that are long jobs by nature
(sync talks to a remote, doctor runs git fsck, replay rebuilds history) are
shown but not judged; `gdag watch` runs until stopped and is left out. Tab
completion (`gdag why <Tab>` through bash's protocol) and `gdag --help` (typer)
are shown for comparison. The repositories live in a temporary directory with
HOME, XDG_CONFIG_HOME and GIT_CONFIG_NOSYSTEM set, so no user or system git
config is read; they are removed at the end.
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

HERE = Path(__file__).resolve().parent
RATIO = 8  # the target: a command starts within 8 × `python -c pass`
TAB_MS = 100  # the target for a Tab's answer
DEFINITION = """\
[nodes.a]
run = 'cp "$GDAG_IN_X" "$GDAG_OUT/y"'
inputs = { x = "x" }
publishes = ["y"]

[nodes.b]
run = 'cp "$GDAG_IN_Y" "$GDAG_OUT/z"'
inputs = { y = "y" }
publishes = ["z"]

[nodes.c]
run = 'cp "$GDAG_IN_Z" "$GDAG_OUT/w"'
inputs = { z = "z" }
publishes = ["w"]
"""

HOT, LONG, OTHER, FLOOR = "", "long job: not judged", "for comparison", "interpreter floor"


def run(
    cmd: list[str], cwd: Path, env: dict[str, str], extra: dict[str, str] | None = None
) -> tuple[bytes, bytes]:
    p = subprocess.run(cmd, cwd=cwd, env={**env, **(extra or {})}, capture_output=True)
    if p.returncode != 0:
        sys.exit(
            f"benchmark: {' '.join(cmd)} (in {cwd}) exited {p.returncode}:\n"
            f"{p.stderr.decode(errors='replace')}"
        )
    return p.stdout, p.stderr


class Case:
    def __init__(self, name: str, kind: str, fn: Callable[[int], None]) -> None:
        self.name, self.kind, self.fn = name, kind, fn
        self.times: list[float] = []

    def time_once(self, i: int) -> None:
        t0 = time.perf_counter()
        self.fn(i)
        self.times.append(time.perf_counter() - t0)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times) * 1000

    @property
    def p90_ms(self) -> float:
        s = sorted(self.times)
        return s[max(0, math.ceil(0.9 * len(s)) - 1)] * 1000  # nearest rank


def expect(what: str, got: bytes, *needles: bytes) -> None:
    for needle in needles:
        if needle not in got:
            sys.exit(f"benchmark: {what} printed {got[:300]!r}, without {needle!r}")


def make_repo(gdag: list[str], tmp: Path, env: dict[str, str], name: str = "repo") -> Path:
    repo = tmp / name
    run([*gdag, "init", "-C", str(repo)], tmp, env)
    (repo / "gdag.toml").write_text(DEFINITION)
    run(["git", "add", "gdag.toml"], repo, env)
    run(["git", "commit", "-q", "-m", "definition"], repo, env)
    run([*gdag, "publish", "x", "1"], repo, env)  # runs a, b and c
    run(["git", "init", "-q", "--bare", str(tmp / f"{name}-remote.git")], tmp, env)
    run(["git", "remote", "add", "origin", str(tmp / f"{name}-remote.git")], repo, env)
    run([*gdag, "sync", "origin"], repo, env)
    return repo


def cases(gdag: list[str], repo: Path, env: dict[str, str]) -> list[Case]:
    def cmd(
        argv: list[str], *needles: bytes, stderr: bool = False, extra: dict[str, str] | None = None
    ) -> Callable[[int], None]:
        def fn(i: int) -> None:
            out, err = run([*gdag, *(a.replace("{i}", str(i)) for a in argv)], repo, env, extra)
            expect(" ".join(argv), err if stderr else out, *needles)

        return fn

    tab = {"_GDAG_COMPLETE": "complete_bash", "COMP_WORDS": "gdag why ", "COMP_CWORD": "2"}
    return [
        Case("`python -c pass`", FLOOR, lambda i: run([sys.executable, "-c", "pass"], repo, env)),
        Case("`gdag --version`", HOT, cmd(["--version"], b"gdag ")),
        Case("`gdag init` (initialised already)", HOT, cmd(["init"], b"nothing changed")),
        Case(
            "`gdag publish note <value>` (no subscribers)",
            HOT,
            cmd(["publish", "note", "v{i}"], b"note v"),
        ),
        Case("`gdag lookup x`", HOT, cmd(["lookup", "x"], b"1")),
        Case("`gdag run` (nothing stale)", HOT, cmd(["run"], b"nothing to do", stderr=True)),
        Case("`gdag status`", HOT, cmd(["status"], b"up-to-date")),
        Case("`gdag log -n 1`", HOT, cmd(["log", "-n", "1"], b"publish")),
        Case("`gdag check`", HOT, cmd(["check"], b"ok: 3 nodes")),
        Case("`gdag why a`", HOT, cmd(["why", "a"], b"a: up-to-date")),
        Case("`gdag show w`", HOT, cmd(["show", "w"], b"provenance")),
        Case("`gdag graph --format json`", HOT, cmd(["graph", "--format", "json"], b"vertices")),
        Case("`gdag hooks list`", HOT, cmd(["hooks", "list"], b"post-commit")),
        Case("`gdag hook post-commit` (what a git hook runs)", HOT, cmd(["hook", "post-commit"])),
        Case("`gdag sync origin`", LONG, cmd(["sync", "origin"], b"main: ")),
        Case("`gdag doctor`", LONG, cmd(["doctor"], b"", stderr=True)),
        Case("`gdag replay --from 1 --dry-run`", LONG, cmd(["replay", "--from", "1", "--dry-run"])),
        Case("Tab: `gdag why <Tab>` (bash)", OTHER, cmd([], b"a\nb\nc", extra=tab)),
        Case("`gdag --help` (typer)", OTHER, cmd(["--help"], b"Usage: gdag")),
    ]


def checkout_cases(label: str, checkout: Path, tmp: Path, env: dict[str, str]) -> list[Case]:
    """publish and lookup of a checkout run from PYTHONPATH, in a repository of its making."""
    launcher = [sys.executable, "-c", "import sys; from gdag.main import main; sys.exit(main())"]
    cenv = {**env, "PYTHONPATH": str(checkout)}
    repo = make_repo(launcher, tmp, cenv, label)

    def publish(i: int) -> None:
        out = run([*launcher, "publish", "note", f"v{i}"], repo, cenv)[0]
        expect(f"{label} publish", out, b"note v")

    def lookup(i: int) -> None:
        expect(f"{label} lookup", run([*launcher, "lookup", "x"], repo, cenv)[0], b"1")

    return [
        Case(f"{label}: `gdag publish note <value>`", OTHER, publish),
        Case(f"{label}: `gdag lookup x`", OTHER, lookup),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=15, help="timed runs per case (default 15)")
    ap.add_argument("--baseline", type=Path, help="a gdag checkout to compare publish/lookup with")
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    if args.baseline is not None and not (args.baseline / "gdag" / "main.py").is_file():
        ap.error(f"--baseline {args.baseline}: not a gdag checkout (no gdag/main.py)")

    gdag = gdag_command()
    tmp = Path(tempfile.mkdtemp(prefix="gdag-bench-"))
    try:
        home = tmp / "home"
        home.mkdir()
        env = clean_env(home, drop=("_GDAG_", "COMP_", "PYTHONPATH", "FORCE_COLOR"))
        env.update(GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@example.com")
        env.update(GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@example.com")
        repo = make_repo(gdag, tmp, env)
        todo = cases(gdag, repo, env)
        if args.baseline is not None:
            # Both from PYTHONPATH, with the same launcher, so only the code differs.
            todo += checkout_cases("this checkout", HERE.parent, tmp, env)
            todo += checkout_cases("baseline", args.baseline.resolve(), tmp, env)
        for c in todo:  # untimed warm-up: page cache, .pyc files
            c.fn(-1)
        t0 = time.perf_counter()
        for i in range(args.runs):
            for c in todo:
                c.time_once(i)
        bench_s = time.perf_counter() - t0
        report(gdag, todo, args.runs, bench_s)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def report(gdag: list[str], todo: list[Case], runs: int, bench_s: float) -> None:
    floor = todo[0].median_ms
    print(
        f"gdag: `{' '.join(gdag)}` · Python {sys.version.split()[0]} · {os.cpu_count()} CPUs · "
        f"{runs} runs per case, round-robin after one warm-up · timed in {bench_s:.1f} s"
    )
    print()
    print("| command | median ms | p90 ms | × `python -c pass` | |")
    print("|---|---:|---:|---:|---|")
    for c in todo:
        ratio = c.median_ms / floor
        print(f"| {c.name} | {c.median_ms:.1f} | {c.p90_ms:.1f} | {ratio:.1f} | {c.kind} |")
    print()
    limit = RATIO * floor
    print(
        f"targets: every command that is not a long job within {RATIO}× `python -c pass` "
        f"({limit:.0f} ms in this run); a Tab answered within about {TAB_MS} ms"
    )
    missed = [c for c in todo if c.kind == HOT and c.median_ms > limit]
    worst = max((c for c in todo if c.kind == HOT), key=lambda c: c.median_ms)
    print(
        f"  {'MISSED by ' + ', '.join(c.name for c in missed) if missed else 'met'}: "
        f"slowest {worst.name}, {worst.median_ms:.1f} ms (×{worst.median_ms / floor:.1f})"
    )
    tab = next(c for c in todo if c.name.startswith("Tab"))
    print(f"  Tab: {tab.median_ms:.1f} ms: {'met' if tab.median_ms <= TAB_MS else 'MISSED'}")
    now = {c.name.split(": ", 1)[1]: c for c in todo if c.name.startswith("this checkout")}
    for b in (c for c in todo if c.name.startswith("baseline")):
        cur = now[b.name.split(": ", 1)[1]]
        print(
            f"  {b.name.split(': ', 1)[1]}: {cur.median_ms:.1f} ms this checkout, "
            f"{b.median_ms:.1f} ms baseline ({cur.median_ms - b.median_ms:+.1f} ms)"
        )


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""Wall time of `gdag graph --format json` / `--format html` on a large DAG with a long log.

Usage: python benchmarks/graph.py [--nodes N] [--events N] [--runs N] [--ran N] [--profile]

  --nodes N   shell nodes in the definition (default 1,000)
  --events N  publish events in the log (default 10,000)
  --runs N    timed runs per case, round-robin after one warm-up (default 5, at least 3)
  --ran N     nodes actually run before timing, so states vary (default 10)
  --profile   then profile each format once in-process (cProfile of the whole
              command, imports included) and print gdag's hotspots

Run it with the Python of the environment where gdag is installed (e.g.
/tmp/dev/bin/python): the `gdag` script next to that interpreter is timed, or
`python -m gdag` when there is none. Standard library only.

The definition is the one of benchmarks/compile.py: node n<i> runs
`cat "$GDAG_IN_I0" > "$GDAG_OUT/o<i>"` and reads o<i-1>, o<i-7> and o<i-31>
(sources src/s<k> before the start), so chains with fan-out, 3 edges in per
node. The log is built in-process: the events are publishes, round-robin over
every source and every node output (so every output vertex has a value, a
version and a preview), then the first --ran nodes are run for real (under a
definition holding just them, which computes the same code hashes), so the
graph shows up-to-date nodes with a log tail beside never-run ones.

Each case is a whole process, timed from spawn to exit; json goes to a pipe,
html to a file with -o. Every output is checked: the JSON parses and has one
vertex per node and per output, with the expected states, at the log tip; the
HTML has one `data-id="node:` element per node. The repository lives in a
temporary directory with HOME, XDG_CONFIG_HOME and GIT_CONFIG_NOSYSTEM set,
so no user or system git config is read; it is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from common import clean_env, gdag_command

TARGET_S = 2.0
TARGET = "targets: `gdag graph --format json` and `--format html` each under 2 s median"
SOURCES = 31  # compile.py's definition reads src/s1 .. src/s31


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> bytes:
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True)
    if p.returncode != 0:
        sys.exit(
            f"benchmark: {' '.join(cmd)} (in {cwd}) exited {p.returncode}:\n"
            f"{p.stderr.decode(errors='replace')}{p.stdout.decode(errors='replace')[-2000:]}"
        )
    return p.stdout


def fail(msg: str) -> None:
    sys.exit(f"benchmark: {msg}")


def definition(nodes: int) -> str:
    """benchmarks/compile.py's definition: node i reads o(i-1), o(i-7), o(i-31) or sources."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from compile import definition as compile_definition

    return compile_definition(nodes)


def build(repo: Path, nodes: int, events: int, ran: int) -> tuple[int, float]:
    """Publish `events` values in-process, run the first `ran` nodes; return (tip offset, s)."""
    from gdag.runner import Engine
    from gdag.workspace import ValueSource, Workspace

    t0 = time.perf_counter()
    (repo / "gdag.toml").write_text(definition(nodes))
    ws = Workspace.open(repo)
    names = [f"src/s{k}" for k in range(1, SOURCES + 1)] + [f"o{i}" for i in range(nodes)]
    for i in range(events):
        name = names[i % len(names)]
        data = b"%d" % i if name.startswith("src/") else b"value %d of %s" % (i, name.encode())
        ws.publish(name, ValueSource(data=data))
    if ran:
        # The first `ran` nodes only read sources and each other: run them under a definition
        # holding just them (same node text, so the same code hashes), then restore the whole.
        (repo / "gdag.toml").write_text(definition(ran))
        summary = Engine(ws, jobs=1).run()
        want = [f"n{i}" for i in range(ran)]
        if sorted(summary.ran) != sorted(want) or summary.failed:
            fail(f"setup run: ran {summary.ran}, failed {summary.failed}; expected {want}")
        (repo / "gdag.toml").write_text(definition(nodes))
    tip = ws.log.require_tip()
    ws.current_dag(tip)  # record the whole definition now, so no timed command compiles it
    tip = ws.log.require_tip()
    return ws.log.event(tip).offset, time.perf_counter() - t0


class Case:
    def __init__(self, name: str, fn: Callable[[], None]) -> None:
        self.name, self.fn = name, fn
        self.times: list[float] = []

    def time_once(self) -> None:
        t0 = time.perf_counter()
        self.fn()
        self.times.append(time.perf_counter() - t0)


def p90(xs: list[float]) -> float:
    s = sorted(xs)
    return s[max(0, math.ceil(0.9 * len(s)) - 1)]  # nearest rank


PROFILE = r"""
import cProfile, pstats, sys, time
from gdag.main import main

repo, fmt, out, top = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
prof = cProfile.Profile()
t0 = time.perf_counter()
prof.enable()
status = main(["graph", "-C", repo, "--format", fmt, "-o", out])
prof.disable()
wall = time.perf_counter() - t0
assert status == 0, status
rows = [(path, line, fn, nc, tt, ct)
        for (path, line, fn), (cc, nc, tt, ct, _) in pstats.Stats(prof).stats.items()]
imports = max((r[5] for r in rows if r[2] == "_find_and_load"), default=0.0)
print(f"`gdag graph --format {fmt}`, one process, in-process cProfile of `gdag.main.main`: "
      f"{wall:.2f} s wall under the profiler, of which imports {imports:.2f} s")
print()
print("| gdag function | calls | cumulative s | own s |")
print("|---|---:|---:|---:|")
mine = [r for r in rows if "/gdag/" in r[0]]
for path, line, fn, nc, tt, ct in sorted(mine, key=lambda r: -r[5])[:top]:
    print(f"| `{path.split('/gdag/', 1)[1]}:{line}({fn})` | {nc} | {ct:.2f} | {tt:.2f} |")
print()
print("| any function, by own time | calls | own s |")
print("|---|---:|---:|")
for path, line, fn, nc, tt, ct in sorted(rows, key=lambda r: -r[4])[:top]:
    where = fn if path == "~" else f"{'/'.join(path.rsplit('/', 2)[-2:])}:{line}({fn})"
    print(f"| `{where}` | {nc} | {tt:.2f} |")
print()
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=1000, help="nodes in the DAG (default 1000)")
    ap.add_argument("--events", type=int, default=10_000, help="publish events (default 10000)")
    ap.add_argument("--runs", type=int, default=5, help="timed runs per case (default 5)")
    ap.add_argument("--ran", type=int, default=10, help="nodes run before timing (default 10)")
    ap.add_argument(
        "--profile", action="store_true", help="profile each format once in-process afterwards"
    )
    ap.add_argument("--top", type=int, default=20, help="rows of each profile table (default 20)")
    args = ap.parse_args()
    if args.runs < 3:
        ap.error("--runs must be at least 3")
    if args.nodes < 1 or not 0 <= args.ran <= args.nodes:
        ap.error("--nodes must be at least 1, --ran between 0 and --nodes")
    if args.events < args.nodes + SOURCES:
        ap.error(f"--events must be at least --nodes + {SOURCES}: every output gets a value")
    try:
        import gdag.workspace as _needed  # noqa: F401  (the in-process history builder)
    except ImportError:
        sys.exit(
            f"benchmark: gdag is not importable from {sys.executable}; run this script "
            "with the Python of the environment where gdag is installed"
        )

    gdag = gdag_command()
    n = args.nodes
    tmp = Path(tempfile.mkdtemp(prefix="gdag-bench-graph-"))
    try:
        home = tmp / "home"
        home.mkdir()
        env = clean_env(home)
        os.environ.clear()
        os.environ.update(env)  # the in-process builder obeys the same rules
        repo = tmp / "repo"
        run([*gdag, "init", "-C", str(repo)], tmp, env)
        offset, build_s = build(repo, n, args.events, args.ran)
        # o0..o<n-1> and the sources the first nodes read
        outputs = n + len(set(re.findall(r'"(src/s[0-9]+)"', definition(n))))
        want_states = Counter({"up-to-date": args.ran, "never-run": n - args.ran})
        html_file = tmp / "graph.html"

        def check_model(text: bytes | str, what: str, with_state: bool = True) -> None:
            try:
                model = json.loads(text)
            except json.JSONDecodeError as exc:
                fail(f"{what}: not JSON: {exc}")
            kinds = Counter(v["kind"] for v in model["vertices"])
            if kinds != Counter(node=n, output=outputs):
                fail(f"{what}: vertices {dict(kinds)}, expected {n} nodes and {outputs} outputs")
            if model["offset"] != offset:
                fail(f"{what}: at offset {model['offset']}, expected the tip {offset}")
            if len(model["edges"]) != 4 * n:
                fail(f"{what}: {len(model['edges'])} edges, expected {4 * n}")
            if not with_state:
                return
            states = Counter(v["state"] for v in model["vertices"] if v["kind"] == "node")
            if states != want_states:
                fail(f"{what}: node states {dict(states)}, expected {dict(want_states)}")
            valued = sum(1 for v in model["vertices"] if v["kind"] == "output" and v.get("version"))
            if valued != outputs:
                fail(f"{what}: {valued} outputs have a version, expected all {outputs}")

        def graph_json() -> None:
            check_model(run([*gdag, "graph", "--format", "json"], repo, env), "graph json")

        def graph_json_nostate() -> None:
            out = run([*gdag, "graph", "--format", "json", "--no-state"], repo, env)
            check_model(out, "graph json --no-state", with_state=False)

        def graph_html() -> None:
            html_file.unlink(missing_ok=True)
            run([*gdag, "graph", "--format", "html", "-o", str(html_file)], repo, env)
            text = html_file.read_text()
            found = text.count('data-id="node:')
            if found != n:
                fail(f"graph html: {found} node elements, expected {n}")
            if text.count('data-id="output:') != outputs or "const DATA = {" not in text:
                fail("graph html: output elements or the DATA object missing")

        def py_pass() -> None:
            run([sys.executable, "-c", "pass"], tmp, env)

        cases = [
            Case("`python -c pass` (interpreter floor)", py_pass),
            Case("`gdag graph --format json` (to a pipe)", graph_json),
            Case("`gdag graph --format html -o FILE`", graph_html),
            Case("`gdag graph --format json --no-state` (for comparison)", graph_json_nostate),
        ]
        for c in cases:  # untimed warm-up: page cache, .pyc files
            c.fn()
        t0 = time.perf_counter()
        for _ in range(args.runs):
            for c in cases:
                c.time_once()
        bench_s = time.perf_counter() - t0

        profile = None
        if args.profile:
            profile = "".join(
                run(
                    [
                        sys.executable,
                        "-c",
                        PROFILE,
                        str(repo),
                        fmt,
                        str(tmp / f"p.{fmt}"),
                        str(args.top),
                    ],
                    repo,
                    env,
                ).decode()
                for fmt in ("json", "html")
            )

        git_version = run(["git", "--version"], tmp, env).decode().strip()
        size = html_file.stat().st_size
        print(
            f"gdag: `{' '.join(gdag)}` · {git_version} · Python {sys.version.split()[0]} · "
            f"{os.cpu_count()} CPUs · {n:,} shell nodes, {outputs:,} outputs, {4 * n:,} edges · "
            f"{args.events:,} publish events, {args.ran} nodes run (log tip at offset "
            f"{offset:,}) · {args.runs} runs per case, round-robin after one warm-up · built in "
            f"{build_s:.1f} s, timed in {bench_s:.1f} s · HTML page {size / 1e6:.1f} MB"
        )
        print()
        print("| command | median ms | p90 ms | min – max ms |")
        print("|---|---:|---:|---:|")
        for c in cases:
            ms = [t * 1000 for t in c.times]
            print(
                f"| {c.name} | {statistics.median(ms):.0f} | {p90(ms):.0f} | "
                f"{min(ms):.0f} – {max(ms):.0f} |"
            )
        print()
        print(TARGET)
        verdicts = []
        for c, label in ((cases[1], "json"), (cases[2], "html")):
            med = statistics.median(c.times)
            verdicts.append(f"{label} {med * 1000:.0f} ms: {'met' if med < TARGET_S else 'MISSED'}")
        print("  " + "; ".join(verdicts))
        if profile:
            print()
            print(profile.rstrip())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

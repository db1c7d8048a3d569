#!/usr/bin/env python3
"""Wall time of `gdag replay --from 0` over a long log, against the original processing.

Usage: python benchmarks/replay.py [--events N] [--shell] [--runs N] [--profile]

  --events N  publish events in the log (default 1,000; the target is stated for 10,000)
  --shell     shell nodes instead of Python nodes
  --runs N    timed replays with nothing changed (default 1; each replays the whole log)
  --profile   then profile one more replay in-process (cProfile, worker thread included)
              and print gdag's hotspots

Run it with the Python of the environment where gdag is installed (e.g.
/tmp/dev/bin/python): the `gdag` script next to that interpreter is timed, or
`python -m gdag` when there is none. Standard library only.

The repository has a 5-node chain src → a → b → c → d → e: node a reads src
and publishes a, node b reads a and publishes b, and so on. Each node appends a
tag to its input (Python nodes `pipe:a` … `pipe:e` in pipe.py at the repository
root; with --shell, `{ cat "$GDAG_IN_X"; printf '|a'; } > "$GDAG_OUT/a"`).

1. Original processing (timed, in-process): for each event,
   `ws.publish("src", ValueSource(data=...))` then `Engine(ws, jobs=1).run()`;
   every run must run exactly a, b, c, d, e.
2. `gdag replay --from 0 --json` with nothing changed (timed as a whole
   process): its JSON must show no node ran and 5 cache hits per event, and
   every output must keep its value and version.
3. Node e's code is changed (pipe.py, or gdag.toml with --shell), then
   `gdag replay --from 0 --json` again: only e may run, once per event; a..d
   keep their values and versions, e holds the new function of d's value.

The repository lives in a temporary directory with HOME, XDG_CONFIG_HOME and
GIT_CONFIG_NOSYSTEM set, so no user or system git config is read; it is
removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import clean_env, gdag_command

NODES = ["a", "b", "c", "d", "e"]
OUTPUTS = ["src", *NODES]
OLD_TAG, NEW_TAG = "|e", "|E2"  # the change to node e; different lengths, so no stale .pyc
TARGET = (
    "targets: replay with nothing changed runs no node and is at least 10× faster than the "
    "original processing; after changing the last node, only it re-runs"
)


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


# -- the pipeline ----------------------------------------------------------------


def pipe_py(e_tag: str) -> str:
    fns = [f'def {n}(x):\n    return x + b"|{n}"\n' for n in NODES[:-1]]
    fns.append(f'def e(x):\n    return x + b"{e_tag}"\n')
    return '"""The nodes of the replay benchmark."""\n\n\n' + "\n\n".join(fns)


def definition(shell: bool, e_tag: str) -> str:
    lines = []
    prev = "src"
    for n in NODES:
        tag = e_tag if n == "e" else f"|{n}"
        lines.append(f"[nodes.{n}]")
        if shell:
            lines.append(f'run = \'{{ cat "$GDAG_IN_X"; printf "{tag}"; }} > "$GDAG_OUT/{n}"\'')
        else:
            lines.append(f'python = "pipe:{n}"')
        lines += [f'inputs = {{ x = "{prev}" }}', f'publishes = ["{n}"]', ""]
        prev = n
    return "\n".join(lines)


def event_value(i: int) -> bytes:
    return b"event %d" % i


def expected(last: bytes, e_tag: str) -> dict[str, bytes]:
    """The value of every output after the event whose value is `last`."""
    out = {"src": last}
    value = last
    for n in NODES:
        value += (e_tag if n == "e" else f"|{n}").encode()
        out[n] = value
    return out


def snapshot(repo: Path) -> dict[str, tuple[bytes, int]]:
    """(value, version) of every output at the log tip, read in-process."""
    from gdag.workspace import Workspace

    ws = Workspace.open(repo)
    found = {}
    for name in OUTPUTS:
        out = ws.lookup(name)
        found[name] = (ws.store.read_blob(out.value.sha), out.version)
    return found


def tip_offset(repo: Path) -> tuple[bytes, int]:
    from gdag.workspace import Workspace

    log = Workspace.open(repo).log
    sha = log.require_tip()
    return sha, log.event(sha).offset


def check_outputs(
    repo: Path, want: dict[str, bytes], versions: dict[str, int], what: str
) -> dict[str, tuple[bytes, int]]:
    got = snapshot(repo)
    for name in OUTPUTS:
        value, version = got[name]
        if value != want[name]:
            fail(f"{what}: output {name} is {value!r}, expected {want[name]!r}")
        if version != versions[name]:
            fail(f"{what}: output {name} is at version {version}, expected {versions[name]}")
    return got


# -- replay ----------------------------------------------------------------------


def timed_replay(gdag: list[str], repo: Path, env: dict[str, str]) -> tuple[float, dict]:
    t0 = time.perf_counter()
    out = run([*gdag, "replay", "--from", "0", "--json"], repo, env)
    elapsed = time.perf_counter() - t0
    try:
        return elapsed, json.loads(out)
    except json.JSONDecodeError:
        fail(f"gdag replay --json printed no JSON: {out[:500]!r}")
        raise  # unreachable


def check_replay(result: dict, events: int, ran: dict[str, int], what: str) -> None:
    """The replay re-applied `events` events, ran exactly `ran` (node -> times), cached the rest.

    With nothing changed (`ran` empty) the events recorded under the definition in
    force are kept as they are: none is re-applied, nothing runs, nothing is rewritten.
    """
    if not ran:
        if result.get("ran") or result.get("events") or result.get("kept") != events:
            fail(f"{what}: expected every event kept and nothing run, got {result}")
        return
    if result.get("failed"):
        fail(f"{what}: nodes failed: {result['failed']}")
    if len(result.get("events", [])) != events:
        fail(f"{what}: re-applied {len(result.get('events', []))} events, expected {events}")
    counts: dict[str, int] = {}
    for n in result["ran"]:
        counts[n] = counts.get(n, 0) + 1
    if counts != ran:
        fail(f"{what}: nodes ran {counts or 'none'}, expected {ran or 'none'}")
    want_cached = {n: events for n in NODES if n not in ran}
    cached: dict[str, int] = {}
    for n in result["cached"]:
        cached[n] = cached.get(n, 0) + 1
    if cached != want_cached:
        fail(f"{what}: cache hits {cached}, expected {want_cached}")
    if not result.get("archive"):
        fail(f"{what}: no archive ref: the live log was not replaced")


PROFILE = r"""
import cProfile, pstats, sys, time
from gdag import runner
from gdag.replay import Replay
from gdag.workspace import Workspace

main, worker = cProfile.Profile(), cProfile.Profile()
run_one = runner.Engine._run_one

def profiled(self, *args, **kwargs):  # nodes run on a pool thread: profile it too
    worker.enable()
    try:
        return run_one(self, *args, **kwargs)
    finally:
        worker.disable()

runner.Engine._run_one = profiled
ws = Workspace.open(sys.argv[1])
t0 = time.perf_counter()
main.enable()
result = Replay(ws, 1).run("0")
main.disable()
wall = time.perf_counter() - t0
assert not result.ran and not result.failed, (result.ran, result.failed)
stats = pstats.Stats(main)
stats.add(worker)
rows = []
for (path, line, fn), (cc, nc, tt, ct, _) in stats.stats.items():
    rows.append((path, line, fn, nc, tt, ct))
top = int(sys.argv[2])
print(f"profiled replay (jobs=1, in-process, {len(result.events)} events): {wall:.2f} s wall "
      "under cProfile; times include the profiler's overhead")
print()
print("by cumulative time, gdag functions (main and pool threads merged; a caller's time "
      "includes its wait for the pool):")
print()
print("| function | calls | cumulative s | per call ms |")
print("|---|---:|---:|---:|")
mine = [r for r in rows if "/gdag/" in r[0]]
for path, line, fn, nc, tt, ct in sorted(mine, key=lambda r: -r[5])[:top]:
    name = path.split("/gdag/", 1)[1]
    print(f"| `{name}:{line}({fn})` | {nc} | {ct:.2f} | {ct / nc * 1000:.2f} |")
print()
print("by own time, all functions (excluding thread waits):")
print()
print("| function | calls | own s |")
print("|---|---:|---:|")
rows = [r for r in rows if "acquire" not in r[2] and "wait" not in r[2]]
for path, line, fn, nc, tt, ct in sorted(rows, key=lambda r: -r[4])[:top]:
    where = fn if path == "~" else f"{'/'.join(path.rsplit('/', 2)[-2:])}:{line}({fn})"
    print(f"| `{where}` | {nc} | {tt:.2f} |")
"""


def fmt(seconds: float) -> str:
    if seconds >= 10:
        return f"{seconds:.1f} s"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1000:.0f} ms" if seconds >= 0.1 else f"{seconds * 1000:.1f} ms"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--events", type=int, default=1000, help="publish events in the log (default 1000)"
    )
    ap.add_argument("--shell", action="store_true", help="shell nodes instead of Python nodes")
    ap.add_argument(
        "--runs", type=int, default=1, help="timed replays with nothing changed (default 1)"
    )
    ap.add_argument(
        "--profile", action="store_true", help="profile one more replay in-process afterwards"
    )
    ap.add_argument("--top", type=int, default=20, help="rows of each profile table (default 20)")
    args = ap.parse_args()
    if args.events < 1 or args.runs < 1:
        ap.error("--events and --runs must be at least 1")
    try:
        from gdag.runner import Engine
        from gdag.workspace import ValueSource, Workspace
    except ImportError:
        sys.exit(
            f"benchmark: gdag is not importable from {sys.executable}; run this script "
            "with the Python of the environment where gdag is installed"
        )

    gdag = gdag_command()
    n = args.events
    kind = "shell" if args.shell else "Python"
    tmp = Path(tempfile.mkdtemp(prefix="gdag-bench-replay-"))
    try:
        home = tmp / "home"
        home.mkdir()
        env = clean_env(home)
        os.environ.clear()
        os.environ.update(env)  # the in-process history builder obeys the same rules
        repo = tmp / "repo"
        run([*gdag, "init", "-C", str(repo)], tmp, env)
        if not args.shell:
            (repo / "pipe.py").write_text(pipe_py(OLD_TAG))
        (repo / "gdag.toml").write_text(definition(args.shell, OLD_TAG))

        # 1. the original processing, in-process
        ws = Workspace.open(repo)
        t0 = time.perf_counter()
        for i in range(1, n + 1):
            ws.publish("src", ValueSource(data=event_value(i)))
            summary = Engine(ws, jobs=1).run()
            if summary.ran != NODES or summary.failed:
                fail(f"event {i}: ran {summary.ran}, failed {summary.failed}; expected {NODES}")
        original_s = time.perf_counter() - t0
        before = check_outputs(
            repo, expected(event_value(n), OLD_TAG), dict.fromkeys(OUTPUTS, n), "original"
        )
        tip0, offset0 = tip_offset(repo)

        # 2. replay, nothing changed
        unchanged: list[float] = []
        for r in range(args.runs):
            elapsed, result = timed_replay(gdag, repo, env)
            check_replay(result, n, {}, f"replay {r + 1} with nothing changed")
            got = snapshot(repo)
            if got != before:
                diff = [k for k in OUTPUTS if got[k] != before[k]]
                fail(f"replay with nothing changed altered outputs {diff}")
            tip, offset = tip_offset(repo)
            if tip != tip0 or offset != offset0:
                fail(
                    f"replay with nothing changed: log tip offset {offset} (was {offset0}), "
                    "tip moved; every event should have been kept as it was"
                )
            unchanged.append(elapsed)

        # 3. change the last node, replay again
        if args.shell:
            (repo / "gdag.toml").write_text(definition(True, NEW_TAG))
        else:
            shutil.rmtree(repo / "__pycache__", ignore_errors=True)
            (repo / "pipe.py").write_text(pipe_py(NEW_TAG))
        changed_s, result = timed_replay(gdag, repo, env)
        check_replay(result, n, {"e": n}, "replay after changing e")
        want = expected(event_value(n), NEW_TAG)
        check_outputs(repo, want, dict.fromkeys(OUTPUTS, n), "replay after changing e")
        last = run([*gdag, "lookup", "e"], repo, env)
        if last != want["e"]:
            fail(f"gdag lookup e printed {last!r}, expected {want['e']!r}")
        final_offset = tip_offset(repo)[1]

        profile = None
        if args.profile:
            profile = run(
                [sys.executable, "-c", PROFILE, str(repo), str(args.top)], repo, env
            ).decode()

        git_version = run(["git", "--version"], tmp, env).decode().strip()
        med = statistics.median(unchanged)
        print(
            f"gdag: `{' '.join(gdag)}` · {git_version} · Python {sys.version.split()[0]} · "
            f"{os.cpu_count()} CPUs · {n:,} publish events through a 5-node {kind} chain "
            f"(log of {offset0:,} events after the original processing, {final_offset:,} at "
            f"the end) · replays timed as whole processes"
        )
        print()
        print("| case | wall time | per publish event | original ÷ this | checked |")
        print("|---|---:|---:|---:|---|")
        print(
            f"| original processing (in-process: publish + `Engine(ws, jobs=1).run()` per "
            f"event) | {fmt(original_s)} | {fmt(original_s / n)} | ×1.0 | every event ran "
            f"a..e once |"
        )
        spread = ""
        if len(unchanged) > 1:
            spread = f" (median of {len(unchanged)}: {fmt(min(unchanged))} – {fmt(max(unchanged))})"
        print(
            f"| `gdag replay --from 0 --json`, nothing changed{spread}"
            f" | {fmt(med)} | {fmt(med / n)} | ×{original_s / med:.1f} | ran none, "
            f"all {n:,} events kept as they were; every output's value and version as before |"
        )
        print(
            f"| `gdag replay --from 0 --json` after changing e | {fmt(changed_s)} | "
            f"{fmt(changed_s / n)} | ×{original_s / changed_s:.1f} | ran e {n:,} times "
            f"and nothing else, {4 * n:,} cache hits; a..d as before, e new |"
        )
        print()
        print(TARGET)
        ratio = original_s / med
        print(
            f"  nothing changed: no node ran: met; ×{ratio:.1f} faster than the original: "
            f"{'met' if ratio >= 10 else 'MISSED'}; after changing e only e re-ran: met"
            + ("" if n >= 10_000 else f" (measured at {n:,} events; the target is for 10,000)")
        )
        if profile:
            print()
            print(profile.rstrip())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

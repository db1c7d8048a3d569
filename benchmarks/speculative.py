"""Speculative runs against plain runs on a chain whose nodes advise their output early.

    python benchmarks/speculative.py [--nodes 5] [--work 1.0] [--runs 2]

Each node publishes its output at once, then keeps working `--work` seconds
before finishing. Both modes run in one go on identical repositories; the
final states (every output's value and version) must be equal. Target: the
speculative run takes well under half the plain time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from common import clean_env, gdag_command


def definition(nodes: int, work: float) -> str:
    lines, prev = [], "src"
    for i in range(1, nodes + 1):
        lines += [
            f"[nodes.n{i}]",
            f'run = \'v="$(cat "$GDAG_IN_X")+{i}"; gdag publish o{i} "$v"; '
            f'sleep {work}; printf %s "$v" > "$GDAG_OUT/o{i}"\'',
            f'inputs = {{ x = "{prev}" }}',
            f'publishes = ["o{i}"]',
            "",
        ]
        prev = f"o{i}"
    return "\n".join(lines)


def final_state(repo: Path, env: dict[str, str]) -> dict[str, tuple[str, int]]:
    def run(*args: str) -> str:
        return subprocess.run(
            [*gdag_command(), *args, "-C", str(repo)],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    state = {}
    for name in run("lookup", "**").split():
        meta = json.loads(run("lookup", name, "--meta", "--json"))["meta"]
        state[name] = (run("lookup", name), meta["version"])
    return state


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=5)
    ap.add_argument("--work", type=float, default=1.0)
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gdag-bench-spec-"))
    env = clean_env(tmp)

    jobs = str(args.nodes)
    try:
        repos = {}
        for mode in ("plain", "speculative"):
            repo = tmp / mode
            subprocess.run(
                [*gdag_command(), "init", "-C", str(repo)], env=env, check=True, capture_output=True
            )
            (repo / "gdag.toml").write_text(definition(args.nodes, args.work))
            repos[mode] = repo
        times: dict[str, list[float]] = {"plain": [], "speculative": []}
        for i in range(args.runs):
            for mode, repo in repos.items():
                subprocess.run(
                    [*gdag_command(), "publish", "src", f"v{i}", "--no-run", "-C", str(repo)],
                    env=env,
                    check=True,
                    capture_output=True,
                )
                cmd = [*gdag_command(), "run", "-q", "-j", jobs, "-C", str(repo)]
                if mode == "speculative":
                    cmd.append("--speculative")
                t = time.perf_counter()
                subprocess.run(cmd, env=env, check=True)
                times[mode].append(time.perf_counter() - t)
        same = final_state(repos["plain"], env) == final_state(repos["speculative"], env)
        plain, spec = statistics.median(times["plain"]), statistics.median(times["speculative"])
        print(
            f"{args.nodes}-node chain, each node advising early then working {args.work:g} s; "
            f"-j {jobs}; {args.runs} runs each\n"
        )
        print("| mode | median s | min s | max s |\n|---|---:|---:|---:|")
        for mode in ("plain", "speculative"):
            ts = times[mode]
            print(f"| {mode} | {statistics.median(ts):.2f} | {min(ts):.2f} | {max(ts):.2f} |")
        print(f"\nspeculative / plain: {spec / plain:.2f}; final states identical: {same}")
        verdict = "met" if spec < plain / 2 and same else "MISSED"
        print(f"targets: speculative well under half the plain time, same final state ({verdict})")
        if not same:
            raise SystemExit("final states differ: the benchmark is not valid")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

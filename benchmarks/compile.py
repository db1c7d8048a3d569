"""Compile time of a large definition, and publish with a pydantic-model type.

    python benchmarks/compile.py [--nodes 1000] [--runs 5]

Prints a markdown table. Target: compiling a 1,000-node / 3,000-edge
definition in under 1 s.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import clean_env, gdag_command


def definition(nodes: int) -> str:
    """Node i reads three outputs of earlier nodes (or sources): 3 edges in per node."""
    lines = ['[outputs."src/*"]', 'type = "int"', ""]
    for i in range(nodes):
        ins = [f"o{j}" if j >= 0 else f"src/s{-j}" for j in (i - 1, i - 7, i - 31)]
        table = ", ".join(f"i{k} = {name!r}".replace("'", '"') for k, name in enumerate(ins))
        lines += [
            f"[nodes.n{i}]",
            f'run = \'cat "$GDAG_IN_I0" > "$GDAG_OUT/o{i}"\'',
            f"inputs = {{ {table} }}",
            f'publishes = ["o{i}"]',
            "",
        ]
    return "\n".join(lines)


def timed(cmd: list[str], cwd: Path, runs: int, env: dict[str, str]) -> list[float]:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True)
        times.append(time.perf_counter() - t)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.decode()}")
    return times


def row(what: str, times: list[float]) -> str:
    return f"| {what} | {statistics.median(times) * 1000:.0f} | {max(times) * 1000:.0f} |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gdag-bench-compile-"))
    env = clean_env(tmp)

    try:
        repo = tmp / "repo"
        subprocess.run(
            [*gdag_command(), "init", "-C", str(repo)], env=env, check=True, capture_output=True
        )
        (repo / "gdag.toml").write_text(definition(args.nodes))
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from gdag.definition import compile_definition, read_source

        src = read_source(repo)
        t = time.perf_counter()
        dag = compile_definition(src)
        in_process = time.perf_counter() - t
        edges = sum(len(n.inputs) + len(n.publishes) for n in dag.nodes.values())
        check = timed([*gdag_command(), "check"], repo, args.runs, env)
        (repo / "models.py").write_text(
            "from pydantic import BaseModel\n\n"
            "class Photo(BaseModel):\n    path: str\n    width: int\n    tags: list[str]\n"
        )
        (repo / "gdag.toml").write_text('[outputs.photo]\ntype = "models:Photo"\n')
        subprocess.run(
            [*gdag_command(), "check"], cwd=repo, env=env, check=True, capture_output=True
        )
        value = '{"path": "a.jpg", "width": 640, "tags": ["cat", "sofa"]}'
        typed = timed(
            [*gdag_command(), "publish", "photo", value, "--no-run"], repo, args.runs, env
        )
        raw = timed([*gdag_command(), "publish", "plain", value, "--no-run"], repo, args.runs, env)
        print(f"{args.nodes} nodes, {edges} edges (inputs + publishes), {args.runs} runs\n")
        print("| what | median ms | max ms |\n|---|---:|---:|")
        print(f"| compile in-process | {in_process * 1000:.0f} | {in_process * 1000:.0f} |")
        print(row("`gdag check` (whole process)", check))
        print(row("`gdag publish` to a `models:Photo` output", typed))
        print(row("`gdag publish` to an untyped output", raw))
        print("\ntarget: compile under 1 s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

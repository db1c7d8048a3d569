"""A node publishing a family of N dynamic outputs, and reading the family back.

Usage: python benchmarks/family.py [--sizes 1000,10000] [--baseline DIR]

For each N, a fresh repository with two nodes: `make` (a shell loop writing N
files `fam/m<i>` under `$GDAG_OUT`) and `total` (reads `fam/*`, counts lines).
Timed, one sample each (the cases take seconds to minutes):

  - `gdag publish n N` (runs both nodes: N outputs published, merged, read);
  - the same loop in plain `sh` writing N files into a directory (the floor:
    what the node's own command costs);
  - `gdag publish n N+1` (one new member on a family of N: the cost of an event
    on a big family, which must not grow with N);
  - `gdag lookup 'fam/*'` (names), `gdag status`, `gdag show total`,
    `gdag graph --format json`.

Targets (issue 18): publishing 10,000 members within 12x of 1,000 (linear);
the reads stay fast at 10,000. `--baseline DIR` also times a gdag checkout in
DIR (run from PYTHONPATH) on the same cases. Standard library only.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import clean_env, gdag_command  # noqa: E402

DEFINITION = """\
[nodes.make]
run = '''
mkdir -p "$GDAG_OUT/fam"; i=0; n=$(cat "$GDAG_IN_N")
while [ $i -lt $n ]; do echo $i > "$GDAG_OUT/fam/m$i"; i=$((i+1)); done
'''
inputs = { n = "n" }
publishes = ["fam/*"]

[nodes.total]
run = 'cat "$GDAG_IN_FAM"/* | wc -l > "$GDAG_OUT/total"'
inputs = { fam = "fam/*" }
publishes = ["total"]
"""
LOOP = 'i=0; while [ $i -lt {n} ]; do echo $i > "{d}/m$i"; i=$((i+1)); done'


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, bytes]:
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    return took, proc.stdout


def measure(gdag: list[str], n: int, tmp: Path, env: dict[str, str]) -> dict[str, float]:
    repo = Path(tempfile.mkdtemp(dir=tmp))
    subprocess.run(["git", "init", "-q"], cwd=repo, env=env, check=True)
    (repo / "gdag.toml").write_text(DEFINITION)
    timed([*gdag, "init"], repo, env)
    row: dict[str, float] = {}
    row["publish"], _ = timed([*gdag, "publish", "n", str(n)], repo, env)
    _, total = timed([*gdag, "lookup", "total"], repo, env)
    if int(total) != n:
        sys.exit(f"total is {total!r}, not {n}")
    row["one more"], _ = timed([*gdag, "publish", "n", str(n + 1)], repo, env)
    row["lookup fam/*"], names = timed([*gdag, "lookup", "fam/*"], repo, env)
    if len(names.splitlines()) != n + 1:
        sys.exit(f"lookup 'fam/*' listed {len(names.splitlines())} members, not {n + 1}")
    row["status"], _ = timed([*gdag, "status"], repo, env)
    row["show total"], _ = timed([*gdag, "show", "total"], repo, env)
    row["graph"], _ = timed([*gdag, "graph", "--format", "json"], repo, env)
    out = repo / "sh-out"
    out.mkdir()
    row["sh loop"], _ = timed(["sh", "-c", LOOP.format(n=n, d=out)], repo, env)
    return row


def fmt(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,10000", help="family sizes (default 1000,10000)")
    ap.add_argument("--baseline", type=Path, help="a gdag checkout to time beside this one")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.baseline is not None and not (args.baseline / "gdag" / "main.py").is_file():
        ap.error(f"--baseline {args.baseline}: not a gdag checkout (no gdag/main.py)")
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        (tmp / "home").mkdir()
        env = clean_env(tmp / "home")
        runs = [("gdag", gdag_command(), env)]
        if args.baseline is not None:
            launcher = [sys.executable, "-c", "import sys; from gdag.main import main; main()"]
            benv = {**env, "PYTHONPATH": str(args.baseline.resolve())}
            runs.append(("baseline", launcher, benv))
        rows = {(label, n): measure(cmd, n, tmp, e) for n in sizes for label, cmd, e in runs}
    cases = ["publish", "sh loop", "one more", "lookup fam/*", "status", "show total", "graph"]
    print(f"gdag: {' '.join(gdag_command())} · {os.cpu_count()} CPUs · one sample per cell\n")
    print("| case | " + " | ".join(f"{label} N={n:,}" for label, n in rows) + " |")
    print("|---|" + "---:|" * len(rows))
    for case in cases:
        print(f"| {case} | " + " | ".join(fmt(r[case]) for r in rows.values()) + " |")
    print(
        "| publish per member | "
        + " | ".join(f"{r['publish'] / n * 1000:.2f} ms" for (_, n), r in rows.items())
        + " |"
    )
    if len(sizes) > 1:
        small, big = sizes[0], sizes[-1]
        for label, _, _ in runs:
            ratio = rows[(label, big)]["publish"] / rows[(label, small)]["publish"]
            target = big / small * 1.2
            verdict = "met" if ratio <= target else "NOT met"
            print(
                f"\n{label}: publish of {big:,} members ÷ {small:,}: ×{ratio:.1f} "
                f"(target ≤ ×{target:.0f}: {verdict})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

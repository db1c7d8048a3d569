"""Files under `.git/objects/` after N events, with gdag's background packing on and off.

Usage: python benchmarks/storage.py [--events 10000] [--run-every 100] [--modes on,off]

Each mode starts a fresh repository with a 1-node chain (`copy` reads `x` and
publishes it again) and publishes `x` N times, one `gdag publish x <i> --no-run`
process each (as a shell loop or a git hook would), with a `gdag run` after every
`--run-every` publishes (the node coalesces what arrived meanwhile). Then it
waits for a background packer still at work and counts the files under
`.git/objects/`. Beside it, git itself: N commits of a one-line change with
git's own `gc --auto` after each (what `git commit` runs), in a repository of its
own. Target (issue 18): a 10,000-event history keeps at most a few thousand files.
Standard library only.
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
from common import clean_env, gdag_command, wait_for_packer  # noqa: E402

DEFINITION = """\
[store]
auto_pack = {auto_pack}

[nodes.copy]
run = 'cat "$GDAG_IN_X" > "$GDAG_OUT/copy"'
inputs = {{ x = "x" }}
publishes = ["copy"]
"""


def files_under(path: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(path))


def run_gdag(events: int, every: int, auto_pack: bool, tmp: Path, env: dict[str, str]) -> tuple:
    gdag = gdag_command()
    repo = Path(tempfile.mkdtemp(dir=tmp))
    subprocess.run(["git", "init", "-q"], cwd=repo, env=env, check=True)
    (repo / "gdag.toml").write_text(DEFINITION.format(auto_pack=str(auto_pack).lower()))
    subprocess.run([*gdag, "init"], cwd=repo, env=env, check=True, capture_output=True)
    start = time.perf_counter()
    for i in range(1, events + 1):
        subprocess.run(
            [*gdag, "publish", "x", str(i), "--no-run"],
            cwd=repo,
            env=env,
            check=True,
            capture_output=True,
        )
        if i % every == 0 or i == events:
            subprocess.run([*gdag, "run", "-q"], cwd=repo, env=env, check=True)
    took = time.perf_counter() - start
    wait_for_packer(repo)
    out = subprocess.run(
        [*gdag, "lookup", "copy"], cwd=repo, env=env, check=True, capture_output=True
    ).stdout
    assert out == str(events).encode(), out
    return files_under(repo / ".git" / "objects"), took


def run_git(events: int, tmp: Path, env: dict[str, str]) -> tuple:
    repo = Path(tempfile.mkdtemp(dir=tmp))
    subprocess.run(["git", "init", "-q"], cwd=repo, env=env, check=True)
    start = time.perf_counter()
    for i in range(1, events + 1):
        (repo / "x").write_text(f"{i}\n")
        subprocess.run(["git", "add", "x"], cwd=repo, env=env, check=True)
        subprocess.run(["git", "commit", "-q", "-m", str(i)], cwd=repo, env=env, check=True)
    took = time.perf_counter() - start
    return files_under(repo / ".git" / "objects"), took


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=10000)
    ap.add_argument("--run-every", type=int, default=100)
    ap.add_argument("--modes", default="on,off", help="auto_pack modes to run: on, off")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        (tmp / "home").mkdir()
        env = clean_env(tmp / "home")
        env.update(GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@localhost")
        env.update(GIT_COMMITTER_NAME="b", GIT_COMMITTER_EMAIL="b@localhost")
        rows = []
        for mode in args.modes.split(","):
            files, took = run_gdag(args.events, args.run_every, mode == "on", tmp, env)
            rows.append((f"gdag, `[store] auto_pack = {str(mode == 'on').lower()}`", files, took))
        files, took = run_git(args.events, tmp, env)
        rows.append(("git: a commit each (`git gc --auto` after each)", files, took))
    print(f"{args.events:,} events · `gdag run` every {args.run_every} · {os.cpu_count()} CPUs\n")
    print("| what | files under .git/objects/ | wall time |")
    print("|---|---:|---:|")
    for what, files, took in rows:
        print(f"| {what} | {files:,} | {took:.0f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""First paint and update latency of `gdag serve`'s page on a large DAG with a long log.

Usage: python benchmarks/serve.py [--nodes N] [--events N] [--ran N] [--runs N]

  --nodes N   shell nodes in the definition (default 1,000)
  --events N  publish events in the log (default 10,000)
  --ran N     nodes run before timing, so there are sessions to list (default 10)
  --runs N    timed page loads and timed updates (default 5, at least 3)

Run it with the Python of the environment where gdag is installed, with
Playwright and Chromium there (`pip install -e '.[test]'`; Chromium from
`GDAG_CHROMIUM`, else `chromium` on PATH, as tests/test_html_report.py finds
it). The repository is benchmarks/graph.py's: node n<i> reads o<i-1>, o<i-7>
and o<i-31>, the log is built in-process, the first --ran nodes are run.

- **first paint**: from `page.goto` to the DAG drawn (one SVG element per
  node), in a fresh browser page each time, with the server already running
  (`gdag serve --port 0`, a real process);
- **update**: from the end of a publish (in-process, of the input of an
  up-to-date node) to the page redrawn at the new offset with that node
  stale, without a reload.

The HTTP views are timed too (one request each, median of --runs). Prints a
Markdown table and whether the targets are met: first paint ≤ 2 s, an update
within a second.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import clean_env, gdag_command  # noqa: E402
from graph import SOURCES, build  # noqa: E402

TARGET_PAINT_S = 2.0
TARGET_UPDATE_S = 1.0
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
]


def wait_for_url(path: Path, timeout: float = 60.0) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and path.read_text().strip():
            return path.read_text().split()[0]
        time.sleep(0.05)
    sys.exit(f"benchmark: gdag serve printed no URL within {timeout} s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--events", type=int, default=10_000)
    ap.add_argument("--ran", type=int, default=10)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    if args.runs < 3 or args.ran < 1 or args.events < args.nodes + SOURCES:
        ap.error(f"--runs ≥ 3, --ran ≥ 1, --events ≥ --nodes + {SOURCES}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sys.exit("benchmark: Playwright is not installed (pip install -e '.[test]')")
    exe = os.environ.get("GDAG_CHROMIUM") or shutil.which("chromium")
    if not exe:
        sys.exit("benchmark: Chromium is not installed (GDAG_CHROMIUM or chromium on PATH)")

    gdag = gdag_command()
    tmp = Path(tempfile.mkdtemp(prefix="gdag-bench-serve-"))
    server = None
    try:
        home = tmp / "home"
        home.mkdir()
        env = clean_env(home)
        os.environ.clear()
        os.environ.update(env)
        repo = tmp / "repo"
        subprocess.run([*gdag, "init", "-C", str(repo)], check=True, capture_output=True, env=env)
        offset, build_s = build(repo, args.nodes, args.events, args.ran)

        out = tmp / "serve.out"
        server = subprocess.Popen(
            [*gdag, "serve", "--port", "0", "-C", str(repo)],
            stdout=out.open("wb"),
            stderr=subprocess.DEVNULL,
            env=env,
        )
        url = wait_for_url(out)

        views = {}
        for path in ("api/graph", "api/outputs", "api/sessions", "api/log?limit=50", "metrics"):
            times = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                with urllib.request.urlopen(url + path, timeout=120) as r:
                    r.read()
                times.append(time.perf_counter() - t0)
            views[path] = statistics.median(times)

        from gdag.workspace import ValueSource, Workspace

        ws = Workspace.open(repo)
        paints, updates = [], []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS)
            for _ in range(args.runs):
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                page.set_default_timeout(120_000)
                t0 = time.perf_counter()
                page.goto(url)
                page.locator("#graph g.v.node").nth(args.nodes - 1).wait_for(state="attached")
                paints.append(time.perf_counter() - t0)
                page.close()
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.set_default_timeout(120_000)
            page.goto(url)
            page.locator("#live.on").wait_for()
            node = page.locator('g.v[data-id="node:n0"]')
            node.and_(page.locator('[data-state="up-to-date"]')).wait_for(state="attached")
            # n0 reads src/s1 (benchmarks/compile.py's definition): a new value makes it stale
            # in the first round; every round moves the tip the header shows once redrawn.
            for i in range(args.runs):
                published = ws.publish("src/s1", ValueSource(data=b"%d" % (1_000_000 + i)))
                t0 = time.perf_counter()
                where = page.locator("#where", has_text=f"at offset {published.offset}")
                where.wait_for(state="attached")
                page.locator('g.v[data-id="node:n0"][data-state="stale"]').wait_for(
                    state="attached"
                )
                updates.append(time.perf_counter() - t0)
            browser.close()

        paint, update = statistics.median(paints), statistics.median(updates)
        print(
            f"gdag serve · {args.nodes} nodes · {offset + 1} events · Python "
            f"{sys.version.split()[0]} · {os.cpu_count()} CPUs · {args.runs} runs · "
            f"history built in {build_s:.0f} s\n"
        )
        print("| what | median s | max s |")
        print("|---|---:|---:|")
        drawn = f"goto → {args.nodes} nodes drawn"
        print(f"| first paint ({drawn}) | {paint:.2f} | {max(paints):.2f} |")
        print(f"| update (publish → DAG redrawn, node stale) | {update:.2f} | {max(updates):.2f} |")
        for path, s in views.items():
            print(f"| GET /{path} | {s:.3f} | |")
        print(
            f"\ntargets: first paint ≤ {TARGET_PAINT_S:.0f} s: "
            f"{'met' if paint <= TARGET_PAINT_S else 'NOT met'}; "
            f"update ≤ {TARGET_UPDATE_S:.0f} s: {'met' if update <= TARGET_UPDATE_S else 'NOT met'}"
        )
        return 0
    finally:
        if server is not None:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())

"""Peak memory (RSS) of gdag with large values and with many pending events.

    python benchmarks/memory.py [--mb 100,500] [--events 2000] [--run-seconds 120] [--large 0]

Each measurement is a fresh process that reports its own peak RSS. Target:
publish and lookup of a value use memory far below the value's size (they
stream it); a run over thousands of pending `each` events does not grow with
their number.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from common import clean_env

# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking process.
PROBE = textwrap.dedent("""
    import re, sys
    from gdag.main import main
    rc = main(sys.argv[1:])
    with open("/proc/self/status") as f:
        peak = re.search(r"VmHWM:\\s+(\\d+) kB", f.read()).group(1)
    print(rc, peak, file=sys.stderr)
""")


def peak_mib(
    args: list[str], cwd: Path, env: dict[str, str], stop_after: float | None = None
) -> float:
    """Peak RSS of one gdag process; with `stop_after`, SIGTERM it after that many seconds
    (gdag stops cleanly, and the probe still reports)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", PROBE, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, err = proc.communicate(timeout=stop_after)
        stopped = False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate()
        stopped = True
    rc, kib = err.strip().splitlines()[-1].split()
    if rc != "0" and not (stopped and rc == "130"):
        raise SystemExit(f"gdag {' '.join(args)} failed: {err}")
    return int(kib) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", default="100,500", help="value sizes in MiB, comma-separated")
    ap.add_argument("--events", type=int, default=2000)
    ap.add_argument(
        "--large",
        default="0",
        help="[values] large of the repository (default 0: values are git blobs, packed "
        'or loose; e.g. "32MiB" to measure them as git LFS objects)',
    )
    ap.add_argument(
        "--run-seconds",
        type=float,
        default=120.0,
        help="stop each run over pending events after this long (SIGTERM; default 120)",
    )
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gdag-bench-mem-"))
    env = clean_env(tmp)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    try:
        repo = tmp / "repo"
        subprocess.run(
            [sys.executable, "-m", "gdag", "init", "-C", str(repo)],
            env=env,
            check=True,
            capture_output=True,
        )
        (repo / "gdag.toml").write_text(f"[values]\nlarge = {json.dumps(args.large)}\n")
        print("| what | value or events | peak RSS MiB |\n|---|---:|---:|")
        print(
            f"| interpreter + gdag imports (publish of a tiny value) | – | "
            f"{peak_mib(['publish', 'tiny', 'x'], repo, env):.0f} |"
        )
        for mb in (int(x) for x in args.mb.split(",")):
            big = tmp / f"v{mb}"
            with open(big, "wb") as f:
                block = os.urandom(1 << 20)
                for _ in range(mb):
                    f.write(block)
            pub = peak_mib(["publish", f"big{mb}", "--file", str(big)], repo, env)
            out = tmp / f"out{mb}"
            look = peak_mib(["lookup", f"big{mb}", "-o", str(out)], repo, env)
            assert out.stat().st_size == big.stat().st_size
            # What `gdag doctor --repair` does once loose objects pile up.
            subprocess.run(["git", "repack", "-A", "-d", "-l", "-q"], cwd=repo, env=env, check=True)
            packed = peak_mib(["lookup", f"big{mb}", "-o", str(out)], repo, env)
            assert out.stat().st_size == big.stat().st_size
            print(f"| `gdag publish --file` | {mb} MiB | {pub:.0f} |")
            print(f"| `gdag lookup -o` | {mb} MiB | {look:.0f} |")
            print(
                f"| `gdag lookup -o`, the value packed (`git repack`) | {mb} MiB | {packed:.0f} |"
            )
            big.unlink()
            out.unlink()
        from gdag.workspace import ValueSource, Workspace

        for count in (max(1, args.events // 10), args.events):
            events_repo = tmp / f"events{count}"
            subprocess.run(
                [sys.executable, "-m", "gdag", "init", "-C", str(events_repo)],
                env=env,
                check=True,
                capture_output=True,
            )
            (events_repo / "gdag.toml").write_text(
                textwrap.dedent("""
                [nodes.each]
                run = 'cp "$GDAG_IN_X" "$GDAG_OUT/seen"'
                inputs = { x = "ev" }
                publishes = ["seen"]
                mode = "each"
            """)
            )
            ws = Workspace.open(events_repo)
            for i in range(count):
                ws.publish("ev", ValueSource(data=f"event {i}".encode()))
            before = ws.log.event(ws.log.require_tip()).offset
            # Pending work is found when the run starts: holding every event would show
            # at once, so a run stopped after a while still bounds its memory.
            peak = peak_mib(["run", "-q", "-j", "1"], events_repo, env, args.run_seconds)
            ws = Workspace.open(events_repo)
            done = ws.log.event(ws.log.require_tip()).offset - before
            label = "all" if done >= count else f"{done:,} in {args.run_seconds:.0f} s"
            print(
                f"| `gdag run` over pending `each` events (processed: {label}) "
                f"| {count:,} | {peak:.0f} |"
            )
        print(
            "\ntargets: publish/lookup peak far below the value size; run memory flat in "
            "the number of pending events"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

"""What every benchmark script shares: the gdag to time, and a clean environment."""

from __future__ import annotations

import itertools
import os
import statistics
import sys
import time
from pathlib import Path

_PROBES = itertools.count()


def gdag_command() -> list[str]:
    """The `gdag` installed beside this interpreter, else `python -m gdag`."""
    script = Path(sys.executable).parent / "gdag"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "gdag"]


def clean_env(home: Path, drop: tuple[str, ...] = ()) -> dict[str, str]:
    """The environment of every timed process: no user or system git config, no GIT_* or
    GDAG_* settings, and Python's bytecode caches allowed (start-up is what is measured)."""
    skip = ("GIT_", "GDAG_", *drop)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(skip) and k != "PYTHONDONTWRITEBYTECODE"
    }
    env.update(
        HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), GIT_CONFIG_NOSYSTEM="1", LC_ALL="C"
    )
    return env


def filesystem(path: Path) -> str:
    """The file system `path` is on, as /proc/mounts names it: its type and, for ext4,
    whether it has a journal (an ext4 without one skips recently freed inodes when it
    allocates one, which makes creating files slow after many deletions)."""
    try:
        with open("/proc/mounts") as f:
            mounts = [line.split() for line in f]
    except OSError:
        return "unknown file system"
    real = os.path.realpath(path)
    best = max(
        (m for m in mounts if real == m[1] or real.startswith(m[1].rstrip("/") + "/")),
        key=lambda m: len(m[1]),
        default=None,
    )
    if best is None:
        return "unknown file system"
    device, mount, kind = best[0], best[1], best[2]
    if kind == "ext4":
        # Known only when /proc lists the device under ext4 (not for /dev/root, say):
        # then a journal shows as /proc/fs/jbd2/<device>-<journal inode>.
        name = os.path.basename(os.path.realpath(device))
        try:
            if os.path.isdir(f"/proc/fs/ext4/{name}"):
                jbd2 = os.listdir("/proc/fs/jbd2")
                kind += "" if any(e.startswith(name + "-") for e in jbd2) else " without a journal"
        except OSError:
            pass
    return f"{kind} on {mount}"


def create_cost(directory: Path, aside: Path, files: int = 100) -> float:
    """Median seconds to create (and close) an empty file in `directory`. The files are
    then moved into `aside`, not deleted: on an ext4 without a journal a deletion makes
    the next minute's creations slower, which is what is being measured."""
    aside.mkdir(parents=True, exist_ok=True)
    costs = []
    for _ in range(files):
        name = f"bench-create-{os.getpid()}-{next(_PROBES)}"
        t0 = time.perf_counter()
        fd = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        costs.append(time.perf_counter() - t0)
        os.close(fd)
        os.rename(directory / name, aside / name)
    return statistics.median(costs)


def wait_for_packer(repo: Path, limit: float = 600.0) -> float:
    """Wait until the background packer a gdag command last started in `repo` (its pid
    in `.git/gdag/pack.pid`, written before that command exits) is gone; the seconds
    waited. Its lock would not do: a packer just started may not hold it yet."""
    try:
        pid = int((repo / ".git" / "gdag" / "pack.pid").read_text())
    except (OSError, ValueError):
        return 0.0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"gdag.maintenance" not in f.read():
                    break  # that pid is another process now
        except OSError:
            break  # gone
        time.sleep(0.05)
    return time.perf_counter() - t0

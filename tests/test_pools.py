"""Pools: at most `size` sessions of a pool's nodes at once, across every process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import define, fsck, gdag, git

NODE = """
[nodes.n{i}]
run = 'echo "start $(date +%s%N)" >> "$GDAG_REPO/times"; sleep 0.3; echo "end $(date +%s%N)" >> "$GDAG_REPO/times"; echo {i} > "$GDAG_OUT/o{i}"'
inputs = {{ x = "x" }}
publishes = ["o{i}"]
pool = "gpu"
"""


def most_at_once(times: Path) -> int:
    """The most intervals open at once, from "start"/"end" lines with times in ns."""
    events = sorted(
        (int(t), 1 if kind == "start" else -1)
        for kind, t in (line.split() for line in times.read_text().splitlines())
    )
    # An end and a start at the same nanosecond: the end first.
    events.sort(key=lambda e: (e[0], e[1]))
    open_now = peak = 0
    for _, step in events:
        open_now += step
        peak = max(peak, open_now)
    return peak


@pytest.mark.parametrize("size", [1, 2])
def test_a_pool_bounds_sessions_across_processes(repo: Path, size: int) -> None:
    define(repo, f"[pools]\ngpu = {size}\n" + "".join(NODE.format(i=i) for i in range(5)))
    assert gdag("publish", "x", "1", "--no-run", cwd=repo).returncode == 0
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "gdag", "run", "-j", "4"],
            cwd=repo,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(3)
    ]
    for run in runs:
        _, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
    lines = (repo / "times").read_text().splitlines()
    assert len(lines) == 10  # each of the 5 nodes ran once, among the 3 processes
    assert most_at_once(repo / "times") == size
    refs = git("for-each-ref", "--format=%(refname)", "refs/gdag/leases/", cwd=repo).split()
    assert f"refs/gdag/leases/main/@pool.gpu.{size - 1}" in refs
    for ref in refs:  # every slot and node lease released
        assert '"released": true' in git("log", "-1", "--format=%B", ref, cwd=repo), ref
    fsck(repo)


@pytest.mark.parametrize(
    ("toml", "words"),
    [
        ('[pools]\ngpu = 0\n[nodes.n]\nrun = "true"\npool = "gpu"\n', "a pool's size"),
        ('[pools]\ngpu = "one"\n', "a pool's size"),
        ('[nodes.n]\nrun = "true"\npool = "gpu"\n', "pool = 'gpu' is not in [pools]"),
        ('[pools]\ngpu = 1\n[nodes.n]\nrun = "true"\npool = 1\n', "pool must name a pool"),
    ],
)
def test_bad_pools_are_definition_errors(repo: Path, toml: str, words: str) -> None:
    define(repo, toml)
    r = gdag("check", cwd=repo)
    assert r.returncode == 3 and words in r.stderr, r.stderr


def test_retry_failed_runs_every_failed_node_of_a_full_pool(repo: Path) -> None:
    """Two failed nodes of a pool of one, retried with two job slots: one waits for the
    other's slot, and both run again."""
    body = 'run = \'[ -e "$GDAG_REPO/fixed" ] || exit 1; echo ok > "$GDAG_OUT/{o}"\'\n'
    define(
        repo,
        "[pools]\ngpu = 1\n"
        + "".join(
            f'[nodes.{n}]\n{body.format(o=n + "o")}inputs = {{ x = "x" }}\n'
            f'publishes = ["{n}o"]\npool = "gpu"\n'
            for n in ("a", "b")
        ),
    )
    assert gdag("publish", "x", "1", cwd=repo).returncode == 1
    (repo / "fixed").write_text("")
    r = gdag("run", "--retry-failed", "-j", "2", cwd=repo)
    assert r.returncode == 0, r.stderr
    assert gdag("lookup", "ao", cwd=repo).stdout == b"ok\n"
    assert gdag("lookup", "bo", cwd=repo).stdout == b"ok\n"

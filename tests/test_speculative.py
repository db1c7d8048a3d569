"""Speculative runs: subscribers start on advised outputs; only confirmed results merge."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import fsck, gdag, git


def chain(repo: Path, n: int = 3, work: float = 0.3) -> None:
    """Nodes that advise their output at once, then keep working before finishing."""
    lines = []
    prev = "src"
    for i in range(1, n + 1):
        lines += [
            f"[nodes.n{i}]",
            f'run = \'v="$(cat "$GDAG_IN_X")+{i}"; gdag publish o{i} "$v"; '
            f'sleep {work}; printf %s "$v" > "$GDAG_OUT/o{i}"\'',
            f'inputs = {{ x = "{prev}" }}',
            f'publishes = ["o{i}"]',
            "",
        ]
        prev = f"o{i}"
    (repo / "gdag.toml").write_text("\n".join(lines))


def state(repo: Path) -> dict[str, tuple[str, int]]:
    """Every output's value and version at the log tip."""
    out = {}
    names = gdag("lookup", "**", cwd=repo).text.split()
    for name in names:
        meta = json.loads(git("show", f"refs/gdag/logs/main:outputs/{name}/@meta.json", cwd=repo))
        out[name] = (gdag("lookup", name, cwd=repo).text, meta["version"])
    return out


def merged_sessions(repo: Path) -> list[dict[str, str]]:
    fmt = (
        "%(trailers:key=Gdag-Node,valueonly,separator=)|"
        "%(trailers:key=Gdag-Status,valueonly,separator=)|"
        "%(trailers:key=Gdag-Speculated-On,valueonly,separator=)"
    )
    rows = git("log", "--first-parent", f"--format={fmt}", "refs/gdag/logs/main", cwd=repo)
    found = []
    for line in rows.splitlines():
        node, status, spec = line.split("|")
        if node:
            found.append({"node": node, "status": status, "speculated_on": spec})
    return found


def test_speculation_gives_the_same_state_faster(tmp_path: Path) -> None:
    repos = {}
    for mode in ("plain", "speculative"):
        repo = tmp_path / mode
        assert gdag("init", "-C", str(repo), cwd=tmp_path).returncode == 0
        chain(repo)
        for v in ("a", "b"):
            assert gdag("publish", "src", v, "--no-run", cwd=repo).returncode == 0
            args = ["run", "-j", "4"] + (["--speculative"] if mode == "speculative" else [])
            r = gdag(*args, cwd=repo)
            assert r.returncode == 0, r.stderr
        repos[mode] = repo
    assert state(repos["plain"]) == state(repos["speculative"])
    assert state(repos["plain"])["o3"] == ("b+1+2+3", 2)
    speculated = [s for s in merged_sessions(repos["speculative"]) if s["speculated_on"]]
    assert {s["node"] for s in speculated} == {"n2", "n3"}
    record = json.loads(
        git("show", "refs/gdag/logs/main:nodes/n3/@done.json", cwd=repos["speculative"])
    )
    assert record["speculated_on"].startswith("n2.") and record["inputs"] == {"o2": 2}
    for repo in repos.values():
        assert git("for-each-ref", "refs/gdag/sessions", cwd=repo) == ""
        fsck(repo)


def test_failed_producer_leaves_no_speculative_output(repo: Path) -> None:
    (repo / "gdag.toml").write_text(
        textwrap.dedent("""
        [nodes.producer]
        run = 'gdag publish mid advised; sleep 0.3; test -e ok.flag'
        inputs = { x = "src" }
        publishes = ["mid"]
        [nodes.consumer]
        run = 'cp "$GDAG_IN_M" "$GDAG_OUT/end"'
        inputs = { m = "mid" }
        publishes = ["end"]
        speculative = true
    """)
    )
    assert gdag("publish", "src", "1", "--no-run", cwd=repo).returncode == 0
    r = gdag("run", "-j", "2", cwd=repo)
    assert r.returncode == 1 and "dropped speculative run of consumer" in r.stderr
    assert gdag("lookup", "mid", cwd=repo).returncode == 3
    assert gdag("lookup", "end", cwd=repo).returncode == 3
    assert [s["node"] for s in merged_sessions(repo)] == ["producer"]
    # Once the producer succeeds, the subscriber runs (once) on its value.
    (repo / "ok.flag").write_text("")
    r = gdag("run", "-j", "2", "--retry-failed", cwd=repo)
    assert r.returncode == 0, r.stderr
    assert gdag("lookup", "end", cwd=repo).stdout == b"advised"
    assert [s["node"] for s in merged_sessions(repo)].count("consumer") == 1
    fsck(repo)


def test_changed_final_value_reruns_the_subscriber(repo: Path) -> None:
    (repo / "gdag.toml").write_text(
        textwrap.dedent("""
        [nodes.producer]
        run = 'gdag publish mid draft; sleep 0.3; printf final > "$GDAG_OUT/mid"'
        inputs = { x = "src" }
        publishes = ["mid"]
        [nodes.consumer]
        run = 'cat "$GDAG_IN_M" >> seen.txt; cp "$GDAG_IN_M" "$GDAG_OUT/end"'
        inputs = { m = "mid" }
        publishes = ["end"]
    """)
    )
    assert gdag("publish", "src", "1", "--no-run", cwd=repo).returncode == 0
    r = gdag("run", "-j", "2", "--speculative", cwd=repo)
    assert r.returncode == 0, r.stderr
    assert gdag("lookup", "end", cwd=repo).stdout == b"final"
    assert (repo / "seen.txt").read_text() == "draftfinal"  # ran on the draft, then again
    consumer = [s for s in merged_sessions(repo) if s["node"] == "consumer"]
    assert consumer == [{"node": "consumer", "status": "ok", "speculated_on": ""}]


def test_speculation_on_a_dynamic_output(repo: Path) -> None:
    (repo / "gdag.toml").write_text(
        textwrap.dedent("""
        [nodes.split]
        run = 'gdag publish parts/a A; sleep 0.3; printf B > "$GDAG_OUT/parts/b"'
        inputs = { x = "src" }
        publishes = ["parts/*"]
        [nodes.first]
        run = 'cp "$GDAG_IN_P" "$GDAG_OUT/first"'
        inputs = { p = "parts/a" }
        publishes = ["first"]
        speculative = true
    """)
    )
    assert gdag("publish", "src", "1", "--no-run", cwd=repo).returncode == 0
    r = gdag("run", "-j", "2", cwd=repo)
    assert r.returncode == 0, r.stderr
    assert gdag("lookup", "first", cwd=repo).stdout == b"A"
    first = [s for s in merged_sessions(repo) if s["node"] == "first"]
    assert len(first) == 1 and first[0]["speculated_on"].startswith("split.")


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_sigkill_speculative_runs_converge(tmp_path: Path, seed: int) -> None:
    """Kill speculative runs at random points (5 trials per seed): always the plain result."""
    rng = random.Random(seed)
    reference = tmp_path / "reference"
    assert gdag("init", "-C", str(reference), cwd=tmp_path).returncode == 0
    chain(reference, 3, 0.15)
    repo = tmp_path / "killed"
    assert gdag("init", "-C", str(repo), cwd=tmp_path).returncode == 0
    chain(repo, 3, 0.15)
    for trial in range(5):
        value = f"v{seed}-{trial}"
        for r in (reference, repo):
            assert gdag("publish", "src", value, "--no-run", cwd=r).returncode == 0
        assert gdag("run", "-j", "3", cwd=reference).returncode == 0
        proc = subprocess.Popen(
            [sys.executable, "-m", "gdag", "run", "-j", "3", "--speculative"],
            cwd=repo,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.05, 0.9))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for lock in (repo / ".git" / "refs" / "gdag").rglob("*.lock"):
            old = time.time() - 10  # gdag breaks locks older than 5 s: age them, do not wait
            os.utime(lock, (old, old))
        r = gdag("run", "-j", "3", "--speculative", cwd=repo)
        assert r.returncode == 0, r.stderr
        assert state(repo) == state(reference)
        assert git("for-each-ref", "refs/gdag/sessions", cwd=repo) == ""
    runs = [(s["node"]) for s in merged_sessions(repo) if s["status"] == "ok"]
    for node in ("n1", "n2", "n3"):
        records = [
            json.loads(git("show", f"{c}:nodes/{node}/@done.json", cwd=repo))["inputs"]
            for c in git(
                "log",
                "--first-parent",
                "--format=%H",
                f"--grep=session {node} ok",
                "refs/gdag/logs/main",
                cwd=repo,
            ).split()
        ]
        keys = [json.dumps(r, sort_keys=True) for r in records]
        assert len(keys) == len(set(keys)), f"{node} applied twice: {keys}"
    assert runs
    fsck(repo)

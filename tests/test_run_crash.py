"""`gdag run` killed at random moments, and many runners and publishers on one repository.

Nothing is mocked: every `gdag` here is the real entry point in its own process,
working on real repositories that the checks read back through the `git` binary.

To keep the file fast, a `gdag` process is started *pre-warmed*: a Python process
that imports gdag's modules (and dulwich, networkx), says it is ready, and then runs
`gdag.main.main(argv)` — exactly what `python -m gdag ARGV` does — once it is
told the command. That takes the ~0.25 s interpreter and import start-up out of
every command, and out of the window in which a kill is timed.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import fsck, gdag, git

LOG_REF = "refs/gdag/logs/main"

# A pre-warmed `gdag`: import everything, write "R" on stdout, read one JSON job
# {"cwd", "commands": [argv, ...]} from stdin, then redirect stdout to its file
# and run each command through gdag's own entry point; exit with the first
# non-zero status (or 0).
LAUNCHER = r"""
import importlib, json, os, sys
from gdag.main import main
for module in ("gdag.commands", "gdag.runner", "gdag.execute",
               "gdag.executors.local", "gdag.shellnode", "gdag.session", "gdag.lease",
               "gdag.workspace", "gdag.definition", "gdag.graph", "gdag.progress",
               "dulwich.object_store", "dulwich.objects"):
    try:
        importlib.import_module(module)  # warm up what `gdag run` and `publish` use
    except ImportError:
        pass
out_path = sys.argv[1]
sys.stdout.write("R")
sys.stdout.flush()
job = json.loads(sys.stdin.readline())
fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.dup2(fd, 1)
os.close(fd)
os.chdir(job["cwd"])
rc = 0
for argv in job["commands"]:
    rc = main(argv)
    if rc:
        break
sys.stdout.flush()
sys.stderr.flush()
raise SystemExit(rc)
"""


@dataclass
class Running:
    """One started gdag process."""

    proc: subprocess.Popen
    started: float
    out: Path
    err: Path
    killed: bool = False

    def wait(self, timeout: float = 90) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"gdag did not finish within {timeout} s:\n{self.stderr()}"
            ) from None

    def kill(self) -> bool:
        """SIGKILL the gdag process; True if it was still running."""
        if self.proc.poll() is not None:
            return False
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.killed = self.proc.returncode == -signal.SIGKILL
        return self.killed

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def check_ok(self, what: str) -> None:
        rc = self.wait()
        text = self.stderr()
        assert rc == 0, f"{what} exited {rc}:\n{text}"
        assert "Traceback" not in text and "internal error" not in text, f"{what}:\n{text}"


class Launcher:
    """Starts gdag commands in pre-warmed processes, keeping one spare ready."""

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.dir = tmp / "procs"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, **env}
        self.count = 0
        self.spare: tuple[subprocess.Popen, Path, Path] | None = None

    def _spawn(self) -> tuple[subprocess.Popen, Path, Path]:
        self.count += 1
        out, err = self.dir / f"{self.count}.out", self.dir / f"{self.count}.err"
        with open(err, "wb") as err_file:
            proc = subprocess.Popen(
                [sys.executable, "-c", LAUNCHER, str(out)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err_file,
                env=self.env,
            )
        return proc, out, err

    def start(self, cwd: Path, *commands: list[str]) -> Running:
        proc, out, err = self.spare or self._spawn()
        self.spare = None
        ready = proc.stdout.read(1)
        assert ready == b"R", f"launcher did not start: {err.read_text()}"
        proc.stdout.close()
        proc.stdin.write((json.dumps({"cwd": str(cwd), "commands": commands}) + "\n").encode())
        proc.stdin.close()
        started = time.monotonic()
        self.spare = self._spawn()
        return Running(proc, started, out, err)

    def run(self, cwd: Path, *commands: list[str], what: str = "gdag") -> float:
        """Run to completion, expecting success; the seconds it took."""
        r = self.start(cwd, *commands)
        r.check_ok(what)
        return time.monotonic() - r.started

    def close(self) -> None:
        if self.spare is not None:
            proc = self.spare[0]
            proc.kill()
            proc.wait()
            self.spare = None


# -- reading a repository back through git ----------------------------------------------


def cat_blobs(repo: Path, specs: list[str]) -> list[bytes]:
    """The contents of `<rev>:<path>` blobs, read in one `git cat-file --batch`."""
    if not specs:
        return []
    proc = subprocess.run(
        ["git", "cat-file", "--batch"],
        cwd=repo,
        input="".join(s + "\n" for s in specs).encode(),
        capture_output=True,
        check=True,
    )
    data, pos, found = proc.stdout, 0, []
    for spec in specs:
        nl = data.index(b"\n", pos)
        header = data[pos:nl].split()
        assert len(header) == 3 and header[1] == b"blob", (spec, data[pos:nl])
        size = int(header[2])
        found.append(data[nl + 1 : nl + 1 + size])
        pos = nl + 1 + size + 1
    return found


@dataclass
class State:
    outputs: dict[str, tuple[bytes, int]]  # output -> (value, version)
    nodes: dict[str, tuple[dict[str, int], str]]  # node -> (inputs of @done.json, status)


def snapshot(repo: Path) -> State:
    """Every output's value and version, every node's last consumed inputs and status."""
    tip = git("rev-parse", "--verify", LOG_REF, cwd=repo).strip()
    listing = git("ls-tree", "-r", "--full-tree", tip, "--", "outputs", "nodes", cwd=repo)
    outputs, nodes = [], []
    for line in listing.splitlines():
        info, _, path = line.partition("\t")
        if path.startswith("outputs/") and path.endswith("/@meta.json"):
            outputs.append(path[len("outputs/") : -len("/@meta.json")])
        elif path.startswith("nodes/") and path.endswith("/@done.json"):
            nodes.append(path.split("/")[1])
    specs = [f"{tip}:outputs/{o}/{f}" for o in outputs for f in ("@value", "@meta.json")]
    specs += [f"{tip}:nodes/{n}/@done.json" for n in nodes]
    blobs = cat_blobs(repo, specs)
    state = State({}, {})
    for i, name in enumerate(outputs):
        meta = json.loads(blobs[2 * i + 1])
        state.outputs[name] = (blobs[2 * i], int(meta["version"]))
    for i, node in enumerate(nodes):
        done = json.loads(blobs[2 * len(outputs) + i])
        state.nodes[node] = (done["inputs"], done["status"])
    return state


@dataclass
class SessionEvent:
    commit: str
    parents: list[str]
    node: str
    session: str
    status: str
    inputs: dict[str, int] = field(default_factory=dict)


def session_events(repo: Path) -> list[SessionEvent]:
    """The `session` events of the log's first-parent chain, oldest first, with @done inputs."""
    keys = ("Gdag-Event", "Gdag-Node", "Gdag-Session", "Gdag-Status")
    fmt = (
        "%x1f".join(["%H", "%P"] + [f"%(trailers:key={k},valueonly,separator=%x2C)" for k in keys])
        + "%x1e"
    )
    out = git("log", "--first-parent", "--reverse", f"--format={fmt}", LOG_REF, cwd=repo)
    found = []
    for rec in out.split("\x1e"):
        rec = rec.strip("\n")
        if not rec:
            continue
        sha, parents, event, node, session, status = rec.split("\x1f")
        if event == "session":
            found.append(SessionEvent(sha, parents.split(), node, session, status))
    dones = cat_blobs(repo, [f"{e.commit}:nodes/{e.node}/@done.json" for e in found])
    for e, blob in zip(found, dones, strict=True):
        done = json.loads(blob)
        assert done["session"] == e.session and done["status"] == e.status, (e, done)
        e.inputs = done["inputs"]
    return found


def check_sessions_once(repo: Path) -> list[SessionEvent]:
    """No session applied twice: unique session ids, unique (node, inputs) among ok runs."""
    events = session_events(repo)
    ids = Counter(e.session for e in events)
    twice = [s for s, n in ids.items() if n > 1]
    assert not twice, f"sessions merged more than once: {twice}"
    seen: dict[tuple[str, tuple], SessionEvent] = {}
    for e in events:
        assert len(e.parents) == 2, f"session event {e.commit} is not a merge: {e.parents}"
        if e.status != "ok":
            continue
        key = (e.node, tuple(sorted(e.inputs.items())))
        assert key not in seen, (
            f"node {e.node} completed twice on the same inputs {e.inputs}: sessions "
            f"{seen[key].session} ({seen[key].commit[:12]}) and {e.session} ({e.commit[:12]})"
        )
        seen[key] = e
    return events


def gdag_refs(repo: Path, prefix: str) -> dict[str, str]:
    out = git("for-each-ref", "--format=%(refname) %(objectname)", prefix, cwd=repo)
    return dict(line.split(" ", 1) for line in out.splitlines())


def lock_files(repo: Path) -> list[Path]:
    gitdir = repo / ".git"
    found = (
        list((gitdir / "refs" / "gdag").rglob("*.lock")) if (gitdir / "refs/gdag").exists() else []
    )
    if (gitdir / "packed-refs.lock").exists():
        found.append(gitdir / "packed-refs.lock")
    return found


def lease_holders(repo: Path) -> dict[str, dict]:
    """node -> the holder recorded in its lease token commit."""
    refs = gdag_refs(repo, "refs/gdag/leases/")
    if not refs:
        return {}
    proc = subprocess.run(
        ["git", "cat-file", "--batch"],
        cwd=repo,
        check=True,
        capture_output=True,
        input="".join(sha + "\n" for sha in refs.values()).encode(),
    )
    data, pos, holders = proc.stdout, 0, {}
    for ref in refs:
        nl = data.index(b"\n", pos)
        size = int(data[pos:nl].split()[2])
        message = data[nl + 1 : nl + 1 + size].decode().split("\n\n", 1)[1]
        holders[ref.rsplit("/", 1)[1]] = json.loads(message.split("\n\n", 1)[-1].split("\n")[0])
        pos = nl + 1 + size + 1
    return holders


def age_locks(repo: Path, stats: Counter[str], aged: set[Path]) -> None:
    """Make the lock files a kill left look 10 s old, past gdag's 5 s stale threshold."""
    old = time.time() - 10
    for lock in lock_files(repo):
        if lock not in aged:
            aged.add(lock)
            stats["stale locks aged"] += 1
            os.utime(lock, (old, old))


def make_repo(path: Path, definition: str) -> Path:
    path.mkdir(parents=True)
    (path / "gdag.toml").write_text(definition)
    r = gdag("init", "-C", str(path), cwd=path.parent)
    assert r.returncode == 0, r.stderr
    return path


# -- 1. SIGKILL `gdag run -j 2` at random moments, then resume ------------------------------

# Every node ends by dropping a marker file (when $MARKS is set) so the test can time a
# kill to land just after a node's command exited: while gdag collects its outputs,
# commits @done and merges the session back.
MARK = 'if [ -n "${MARKS:-}" ]; then : > "$MARKS/%s.$$"; fi'


def shell_node(
    name: str, run: str, inputs: dict[str, str], publishes: str, mode: str | None = None
) -> str:
    ins = ", ".join(f'{k} = "{v}"' for k, v in inputs.items())
    text = (
        f"[nodes.{name}]\nrun = '{run}; {MARK % name}'\n"
        f'inputs = {{ {ins} }}\npublishes = ["{publishes}"]\n'
    )
    if mode:
        text += f'mode = "{mode}"\n'
    return text + "\n"


# A chain c1..c6 fed by src/a, and a diamond d1 -> (d2, d3) -> d4 fed by src/b, with
# d4 also taking c6 (fan-in). Early cutoff: c2 drops digits, d2 keeps only a length,
# c6 only a line count, so many new inputs leave their outputs byte-identical.
PIPELINE = "".join(
    [
        shell_node(
            "c1",
            'cat "$GDAG_IN_X" > "$GDAG_OUT/c/1"; echo c1 >> "$GDAG_OUT/c/1"; sleep 0.05',
            {"x": "src/a"},
            "c/1",
        ),
        shell_node("c2", 'tr -d "0-9" < "$GDAG_IN_X" > "$GDAG_OUT/c/2"', {"x": "c/1"}, "c/2"),
        shell_node(
            "c3",
            'cat "$GDAG_IN_X" > "$GDAG_OUT/c/3"; echo c3 >> "$GDAG_OUT/c/3"; sleep 0.05',
            {"x": "c/2"},
            "c/3",
        ),
        shell_node(
            "c4",
            'sort "$GDAG_IN_X" > "$GDAG_OUT/c/4"; echo c4 >> "$GDAG_OUT/c/4"',
            {"x": "c/3"},
            "c/4",
        ),
        shell_node(
            "c5", 'cat "$GDAG_IN_X" "$GDAG_IN_X" > "$GDAG_OUT/c/5"; sleep 0.05', {"x": "c/4"}, "c/5"
        ),
        shell_node(
            "c6",
            'wc -l < "$GDAG_IN_X" | tr -d " " > "$GDAG_OUT/c/6"; echo c6 >> "$GDAG_OUT/c/6"',
            {"x": "c/5"},
            "c/6",
        ),
        shell_node(
            "d1",
            'cat "$GDAG_IN_Y" > "$GDAG_OUT/d/1"; echo d1 >> "$GDAG_OUT/d/1"; sleep 0.05',
            {"y": "src/b"},
            "d/1",
        ),
        shell_node("d2", 'wc -c < "$GDAG_IN_Y" | tr -d " " > "$GDAG_OUT/d/2"', {"y": "d/1"}, "d/2"),
        shell_node(
            "d3",
            'rev "$GDAG_IN_Y" > "$GDAG_OUT/d/3"; echo d3 >> "$GDAG_OUT/d/3"; sleep 0.05',
            {"y": "d/1"},
            "d/3",
        ),
        shell_node(
            "d4",
            'cat "${GDAG_IN_L:-/dev/null}" "${GDAG_IN_R:-/dev/null}" '
            '"${GDAG_IN_C:-/dev/null}" > "$GDAG_OUT/d/4"; echo d4 >> "$GDAG_OUT/d/4"',
            {"l": "d/2", "r": "d/3", "c": "c/6"},
            "d/4",
        ),
    ]
)
NODES = ["c1", "c2", "c3", "c4", "c5", "c6", "d1", "d2", "d3", "d4"]


def round_publishes(rng: random.Random, n: int, last_a: str | None) -> list[tuple[str, str]]:
    if n == 0:
        which = ["a", "b"]
    else:
        which = rng.choice([["a", "b"], ["a", "b"], ["a"], ["b"]])
    pubs = []
    for w in which:
        if w == "a":
            if last_a is not None and rng.random() < 0.2:
                value = last_a  # the same value again: c1's output is unchanged (cutoff)
            else:
                value = rng.choice(["alpha", "beta"]) + str(rng.randrange(100))
            pubs.append(("src/a", value))
        else:
            pubs.append(("src/b", "".join(rng.choice("xyz") for _ in range(rng.randint(3, 5)))))
    return pubs


def count_marks(marks: Path) -> int:
    return len(os.listdir(marks))


def session_names(repo: Path) -> set[str]:
    try:
        names = os.listdir(repo / ".git/refs/gdag/sessions/main")
    except FileNotFoundError:
        return set()
    return {name for name in names if not name.endswith(".lock")}


def done_sessions(repo: Path) -> set[str]:
    """Session refs whose head is the @done commit, read straight from the files, fast
    enough to poll (gdag writes loose objects, and its refs loose)."""
    gitdir = repo / ".git"
    found = set()
    for name in session_names(repo):
        try:
            sha = (gitdir / "refs/gdag/sessions/main" / name).read_text().strip()
            data = zlib.decompress((gitdir / "objects" / sha[:2] / sha[2:]).read_bytes())
        except (OSError, ValueError, zlib.error):
            continue
        if b"\nGdag-Event: done\n" in data:
            found.add(name)
    return found


@dataclass
class Trial:
    """One crash repository's part in a round: kill its run, resume, compare."""

    repo: Path
    launcher: Launcher
    marks: Path
    rng: random.Random
    stats: Counter[str]
    aged: set[Path] = field(default_factory=set)  # lock files a kill left
    orphans: set[Path] = field(default_factory=set)  # ... that stayed after the resume

    def run(self, n: int, timing: str, duration: float, executed: int, expected: State) -> None:
        rng, stats, crash, launcher = self.rng, self.stats, self.repo, self.launcher
        # The run to kill (`executed` node commands ran in the reference; cache hits run
        # none): after a delay spread over the whole run; or just after the k-th
        # node command exited (the kill lands in output collection, @done or merge-back);
        # or just after the k-th session branch got its @done commit (the kill lands in
        # the merge-back, before or after its compare-and-swap, or in the cleanup).
        marks0 = count_marks(self.marks)
        run = launcher.start(crash, ["run", "-j", "2"])
        k = 0
        if timing == "uniform":
            deadline = run.started + rng.uniform(0.0, duration * 1.05)
            while run.proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.002)
        elif timing == "end-of-node":
            k = rng.randint(1, executed)
            while run.proc.poll() is None and count_marks(self.marks) < marks0 + k:
                time.sleep(0.0005)
            time.sleep(rng.uniform(0.0, 0.02))
        else:
            # (A session seen that vanished unseen at @done, the poll being slow, counts.)
            k, seen, passed = rng.randint(1, executed), set(), set()
            while run.proc.poll() is None and len(passed) < k:
                now, done = session_names(crash), done_sessions(crash)
                passed |= done | (seen - now)
                seen |= now
                time.sleep(0.0003)
            time.sleep(rng.uniform(0.0, 0.004))
        killed = run.kill()
        at = time.monotonic() - run.started
        print(f"  {crash.name}: {timing} (k={k}): {'killed' if killed else 'ended'} at {at:.3f}s")
        stats["killed" if killed else "finished before the kill"] += 1
        stats[f"killed ({timing})"] += killed
        if not killed:
            run.check_ok("run that was to be killed")

        # What the kill left behind.
        for sha in gdag_refs(crash, "refs/gdag/sessions/").values():
            event = git(
                "log", "-1", "--format=%(trailers:key=Gdag-Event,valueonly)", sha, cwd=crash
            ).strip()
            stats["sessions left done" if event == "done" else "sessions left unfinished"] += 1
        dead = [
            node
            for node, h in lease_holders(crash).items()
            if not h["released"] and h["pid"] == run.proc.pid and h["expires"] > time.time()
        ]
        stats["leases left held by the dead run"] += len(dead)
        stats["trials with a dead run's lease"] += bool(dead)
        if dead and not stats["status read beside a dead run's lease"]:
            # A lease whose owner is dead on this host binds nobody: not shown as running.
            stats["status read beside a dead run's lease"] += 1
            r = gdag("status", "--json", cwd=crash)
            assert r.returncode == 0, r.stderr
            running = [s["node"] for s in json.loads(r.stdout) if s["state"] == "running"]
            assert running == [], f"nodes shown running under a dead run's lease: {running}"
        if killed and snapshot(crash) != expected:
            stats["killed with work left"] += 1
        age_locks(crash, stats, self.aged)

        # Sometimes the resume is killed too, and resumed again.
        if killed and rng.random() < 0.2:
            second = launcher.start(crash, ["run"])
            time.sleep(rng.uniform(0.0, duration))
            if second.kill():
                stats["resumes killed too"] += 1
                age_locks(crash, stats, self.aged)
            else:
                second.check_ok("resume")

        # The resume: finishes without waiting out the dead run's leases (30 s TTL).
        resume_wall = time.time()
        resume = launcher.start(crash, ["run"])
        resume.check_ok(f"round {n}: resume after SIGKILL")
        took = time.monotonic() - resume.started
        assert took < 10, f"round {n}: the resume took {took:.1f} s (dead leases: {dead})"

        got = snapshot(crash)
        assert got.outputs == expected.outputs, f"round {n}: outputs differ after the resume"
        assert got.nodes == expected.nodes, f"round {n}: nodes' @done differ after the resume"
        assert all(status == "ok" for _, status in got.nodes.values())
        check_sessions_once(crash)
        assert gdag_refs(crash, "refs/gdag/sessions/") == {}, f"round {n}: session refs left"
        # A lock the kill left on a ref that nothing updates again (say, a session ref
        # deleted just before the kill) stays, harmless; a fresh lock left is a leak.
        for lock in lock_files(crash):
            assert lock in self.aged and lock.stat().st_mtime < resume_wall - 5, (
                f"round {n}: {lock} left behind by the resume"
            )
            if lock not in self.orphans:
                self.orphans.add(lock)
                gone = not lock.with_name(lock.name.removesuffix(".lock")).exists()
                stats["killed run's locks never removed" + (" (ref gone)" if gone else "")] += 1
        holders = lease_holders(crash)
        assert not any(
            h["pid"] == resume.proc.pid and not h["released"] for h in holders.values()
        ), "the resume kept a lease"
        # The dead run's leases the resume needed, it took over at once.
        stats["dead run's leases taken over"] += sum(
            holders[node]["pid"] == resume.proc.pid for node in dead
        )
        fsck(crash)


ROUNDS = 8  # rounds per seed
COPIES = 2  # crash repositories per round, each killed at its own moment: 2 x 8 x 2 = 32


@pytest.mark.parametrize("seed", [11, 22])
def test_sigkill_run_then_resume(tmp_path: Path, seed: int) -> None:
    """Kill `gdag run -j 2` anywhere, resume with `gdag run`: the state of an unkilled run.

    Each round publishes the same values (`--no-run`) on a reference repository and on
    COPIES crash repositories; the reference runs uninterrupted (its duration spreads the
    kills), each crash repository's run is SIGKILLed, checked, resumed and compared.
    """
    rng = random.Random(seed)
    marks = tmp_path / "marks"
    marks.mkdir()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    launcher = Launcher(tmp_path, {"MARKS": str(marks), "TMPDIR": str(scratch)})
    ref = make_repo(tmp_path / "ref", PIPELINE)
    stats: Counter[str] = Counter()
    trials = [
        Trial(make_repo(tmp_path / f"crash{i}", PIPELINE), launcher, marks, rng, stats)
        for i in range(COPIES)
    ]
    last_a: str | None = None
    started = time.monotonic()
    try:
        for n in range(ROUNDS):
            # The same publishes on every repository.
            pubs = round_publishes(rng, n, last_a)
            last_a = next((v for o, v in pubs if o == "src/a"), last_a)
            launcher.run(
                tmp_path,
                *(
                    ["publish", o, v, "--no-run", "-C", str(repo)]
                    for repo in (ref, *(t.repo for t in trials))
                    for o, v in pubs
                ),
                what="publish",
            )

            # The uninterrupted run, on the twin repository: what every crash must end as.
            before, marks0 = len(session_events(ref)), count_marks(marks)
            duration = launcher.run(ref, ["run", "-j", "2"], what="reference run")
            sessions = len(session_events(ref)) - before
            executed = count_marks(marks) - marks0
            expected = snapshot(ref)
            stats["sessions in the reference"] += sessions
            stats["node commands run in the reference"] += executed

            for i, trial in enumerate(trials):
                kinds = ["uniform", "end-of-node", "at-done"]
                timing = kinds[(n * COPIES + i) % 3] if executed else "uniform"
                trial.run(n, timing, duration, executed, expected)
            print(
                f"round {n}: {sessions} sessions ({executed} not from the cache) "
                f"in {duration:.2f}s; "
                f"t={time.monotonic() - started:.1f}s"
            )
    finally:
        launcher.close()

    for trial in trials:
        r = gdag("status", "--json", cwd=trial.repo)
        assert r.returncode == 0, r.stderr
        assert {s["node"]: s["state"] for s in json.loads(r.stdout)} == dict.fromkeys(
            NODES, "up-to-date"
        )
    print(
        f"seed {seed}: {ROUNDS * COPIES} trials: "
        + ", ".join(f"{k} {v}" for k, v in sorted(stats.items()))
    )
    assert stats["killed"] >= ROUNDS * COPIES // 2, stats
    assert stats["killed with work left"] >= 4, stats
    assert stats["killed (at-done)"] >= 1 and stats["sessions left done"] >= 1, stats
    assert stats["sessions left unfinished"] >= 1, stats
    assert stats["trials with a dead run's lease"] >= 3, stats
    assert stats["dead run's leases taken over"] >= 1, stats


# -- 2. four runners and four publishers on one repository ---------------------------------

CONCURRENT = "".join(
    [
        shell_node(
            "e1",
            '{ echo seen; cat "$GDAG_IN_X"; } > "$GDAG_OUT/e/1"; sleep 0.02',
            {"x": "src/x"},
            "e/1",
            mode="each",
        ),
        shell_node(
            "l1",
            'cat "${GDAG_IN_X:-/dev/null}" "${GDAG_IN_Y:-/dev/null}" > "$GDAG_OUT/l/1"',
            {"x": "src/x", "y": "src/y"},
            "l/1",
        ),
        shell_node(
            "l2", 'tr -d "0-9" < "$GDAG_IN_A" > "$GDAG_OUT/l/2"; sleep 0.02', {"a": "l/1"}, "l/2"
        ),
        shell_node(
            "l3",
            'cat "${GDAG_IN_A:-/dev/null}" "${GDAG_IN_B:-/dev/null}" > "$GDAG_OUT/l/3"',
            {"a": "l/2", "b": "e/1"},
            "l/3",
        ),
        shell_node(
            "l4", 'wc -c < "$GDAG_IN_Y" | tr -d " " > "$GDAG_OUT/l/4"', {"y": "src/y"}, "l/4"
        ),
    ]
)

# argv: repo output prefix count seed — `count` publishes of "<prefix>-<i>" through gdag's
# entry point, a random pause between them.
PUBLISHER = r"""
import random, sys, time
from gdag.main import main

repo, output, prefix, count, seed = sys.argv[1:6]
rng = random.Random(seed)
for i in range(1, int(count) + 1):
    time.sleep(rng.uniform(0.0, 0.8))
    rc = main(["publish", output, f"{prefix}-{i}", "--no-run", "-C", repo])
    if rc != 0:
        sys.stderr.write(f"publisher {prefix}: publish {i} exited {rc}\n")
        sys.exit(rc)
"""

# argv: repo stop-file k — `gdag run` again and again, each a new process, until the stop
# file appears: `-j 2`, `-j 1` and `run src/y` (only what src/y reaches) in turn;
# prints one line per run: exit status and duration.
RUNNER = r"""
import os, subprocess, sys, time
repo, stop, k = sys.argv[1:4]
variants = [["-j", "2"], ["-j", "1"], ["src/y"]]
n = int(k)
while True:
    t = time.monotonic()
    args = variants[n % len(variants)]
    n += 1
    proc = subprocess.run([sys.executable, "-m", "gdag", "run", *args, "-C", repo],
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE)
    print(proc.returncode, round(time.monotonic() - t, 2), flush=True)
    if proc.returncode != 0 or b"Traceback" in proc.stderr:
        sys.stderr.buffer.write(proc.stderr)
    if os.path.exists(stop):
        break
"""

PUBLISH_LINE = re.compile(r"^(\S+) v(\d+) @ (\d+)$")


def test_concurrent_runs_and_publishers(tmp_path: Path) -> None:
    """Four `gdag run` loops beside four publishers: nothing lost, nothing run twice."""
    repo = make_repo(tmp_path / "repo", CONCURRENT)
    (tmp_path / "publisher.py").write_text(PUBLISHER)
    (tmp_path / "runner.py").write_text(RUNNER)
    stop = tmp_path / "stop"
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    per_publisher = 10
    # Two publishers per input: src/x feeds the `each` node e1.
    publishers = {f"p{k}": "src/x" if k < 2 else "src/y" for k in range(4)}

    def spawn(script: str, args: list[str], name: str) -> subprocess.Popen:
        with (
            open(tmp_path / f"{name}.out", "wb") as out,
            open(tmp_path / f"{name}.err", "wb") as err,
        ):
            return subprocess.Popen(
                [sys.executable, str(tmp_path / script), *args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )

    started = time.monotonic()
    runners = [spawn("runner.py", [str(repo), str(stop), str(k)], f"r{k}") for k in range(4)]
    pubs = {
        name: spawn("publisher.py", [str(repo), out, name, str(per_publisher), name], name)
        for name, out in publishers.items()
    }
    try:
        for name, proc in pubs.items():
            rc = proc.wait(timeout=120)
            assert rc == 0, f"{name} exited {rc}: {(tmp_path / f'{name}.err').read_text()}"
    finally:
        stop.touch()
        for proc in runners:
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    elapsed = time.monotonic() - started
    runs = []
    for k, proc in enumerate(runners):
        err = (tmp_path / f"r{k}.err").read_text()
        assert proc.returncode == 0 and err == "", f"runner loop r{k}: {err}"
        runs += [line.split() for line in (tmp_path / f"r{k}.out").read_text().splitlines()]
    assert all(rc == "0" for rc, _ in runs), runs

    r = gdag("run", cwd=repo)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr

    # Every publish is on the log, once, with the value and version its publisher was told.
    told: dict[str, list[tuple[str, int, int]]] = defaultdict(list)
    for name, out in publishers.items():
        lines = (tmp_path / f"{name}.out").read_text().splitlines()
        assert len(lines) == per_publisher, lines
        for i, line in enumerate(lines, 1):
            m = PUBLISH_LINE.match(line)
            assert m and m[1] == out, line
            told[out].append((f"{name}-{i}", int(m[2]), int(m[3])))
    fmt = (
        "%x1f".join(
            ["%H"]
            + [
                f"%(trailers:key={k},valueonly,separator=%x2C)"
                for k in ("Gdag-Offset", "Gdag-Event", "Gdag-Output")
            ]
        )
        + "%x1e"
    )
    log = [
        rec.strip("\n").split("\x1f")
        for rec in git(
            "log", "--first-parent", "--reverse", f"--format={fmt}", LOG_REF, cwd=repo
        ).split("\x1e")
        if rec.strip("\n")
    ]
    assert [int(off) for _, off, _, _ in log] == list(range(len(log))), "offsets not contiguous"
    publish_events = [(sha, int(off), out) for sha, off, event, out in log if event == "publish"]
    assert len(publish_events) == len(publishers) * per_publisher
    values = cat_blobs(repo, [f"{sha}:outputs/{out}/@value" for sha, _, out in publish_events])
    metas = cat_blobs(repo, [f"{sha}:outputs/{out}/@meta.json" for sha, _, out in publish_events])
    on_log: dict[str, list[tuple[str, int, int]]] = defaultdict(list)
    for (_, offset, out), value, meta in zip(publish_events, values, metas, strict=True):
        on_log[out].append((value.decode(), json.loads(meta)["version"], offset))
    for out in ("src/x", "src/y"):
        assert [v for _, v, _ in on_log[out]] == list(range(1, 2 * per_publisher + 1)), out
        assert sorted(on_log[out]) == sorted(told[out]), out
    x_values = {version: value for value, version, _ in on_log["src/x"]}

    # No session applied twice, none on older inputs than the one before it.
    events = check_sessions_once(repo)
    by_node: dict[str, list[SessionEvent]] = defaultdict(list)
    for e in events:
        assert e.status == "ok", e
        by_node[e.node].append(e)
    for node, evs in by_node.items():
        for older, newer in zip(evs, evs[1:], strict=False):
            assert all(newer.inputs.get(k, 0) >= v for k, v in older.inputs.items()), (
                f"{node}: session {newer.session} ran on {newer.inputs}, older than "
                f"{older.inputs} of {older.session} merged before it"
            )

    # The `each` node ran once per version of src/x, in order, each on the state of its event.
    e1 = by_node["e1"]
    assert [e.inputs for e in e1] == [{"src/x": v} for v in range(1, 2 * per_publisher + 1)]
    seen = cat_blobs(repo, [f"{e.commit}:outputs/e/1/@value" for e in e1])
    assert seen == [b"seen\n" + x_values[v].encode() for v in range(1, 2 * per_publisher + 1)]

    # The final outputs are what one sequential run makes of the final inputs.
    got = snapshot(repo)
    fresh = make_repo(tmp_path / "fresh", CONCURRENT)
    for out in ("src/x", "src/y"):
        r = gdag("publish", out, got.outputs[out][0].decode(), "--no-run", cwd=fresh)
        assert r.returncode == 0, r.stderr
    r = gdag("run", "-j", "1", cwd=fresh)
    assert r.returncode == 0, r.stderr
    want = snapshot(fresh)
    assert {o: v for o, (v, _) in got.outputs.items()} == {
        o: v for o, (v, _) in want.outputs.items()
    }
    assert set(got.nodes) == {"e1", "l1", "l2", "l3", "l4"}
    assert all(status == "ok" for _, status in got.nodes.values())

    r = gdag("status", "--json", cwd=repo)
    assert r.returncode == 0, r.stderr
    assert {s["state"] for s in json.loads(r.stdout)} == {"up-to-date"}, r.stdout
    assert gdag_refs(repo, "refs/gdag/sessions/") == {}
    assert lock_files(repo) == []
    fsck(repo)
    print(
        f"4 runner loops made {len(runs)} `gdag run`s beside {len(publish_events)} publishes "
        f"in {elapsed:.1f}s; {len(events)} sessions merged: "
        + ", ".join(f"{n} {len(e)}" for n, e in sorted(by_node.items()))
    )

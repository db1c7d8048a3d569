#!/usr/bin/env python3
"""Fault injection at scale: SIGKILL gdag anywhere, recover, check convergence and integrity.

    python scripts/faults.py [--trials N] [--seed S] [--kinds publish,run,replay,speculative]
                             [--lanes L] [--workdir DIR] [--keep] [-v]

Not part of the default test run (tests/test_faults_short.py runs a short version).
Standard library only; gdag must be importable by this interpreter (or from the
checkout this script lives in).

Each trial takes one pair of repositories: a *reference* and a *crash* twin that
have had exactly the same commands. Both get the same set-up commands (publishes,
sometimes a definition change); the reference then runs one command of the trial's
kind uninterrupted, and the crash twin runs the same command and is SIGKILLed:

- publish      `gdag publish` of a value (argument, stdin, a >1 MiB file or a
               directory), with or without the run of its subscribers;
- run          `gdag run -j 2` of a small pipeline of shell nodes (chain, fan-in,
               early cutoff, a `mode = "each"` node, a dir input);
- replay       `gdag replay --from 1`, mostly after a definition change or a publish
               whose subscribers did not run (else it has nothing to rewrite);
- speculative  `gdag run -j 3 --speculative` of a chain whose nodes `gdag publish`
               their output early, then finish.

Kills come two ways:

- *precise*: every gdag process here is a pre-warmed Python process that runs
  gdag's own entry point (`gdag.main.main`) with a few store functions wrapped:
  `ObjectStore.write_raw`, `ObjectStore.write_blob_stream`, `LocalRefs.cas_ref`,
  `LocalRefs.delete_ref`, the return of `LocalRefs._take_lock`, `os.replace` inside
  `gdag.objects` and `gdag.refs` (object installs and ref renames) and the removal of `*.lock` files. Each call is a numbered point;
  the process SIGKILLs itself at point N, N drawn from 1..(points the reference's
  run of the same command passed). So the kill lands between any two object
  writes and ref updates, with a ref lock held, or between a lock's write and its
  rename. gdag itself is not changed and has no such hook.
- *in-node*: in a quarter of the precise speculative trials the same hooks are
  armed (through a `sitecustomize` on PYTHONPATH) in the `gdag publish` that one
  node runs inside its session instead; the run itself goes on.
- *timed*: SIGKILL from outside after a random delay within the reference's
  duration (it lands in node commands, Python code, anywhere).

Node commands a killed `gdag run` started keep running (they have their own
process groups); they are waited for before the recovery. Then the crash twin
is recovered the normal way (lock files the kill left are aged by 10 s first,
since gdag breaks only locks older than 5 s; sometimes the refs are packed
first; sometimes `gdag doctor --repair` runs first, packing every object;
sometimes the recovery is killed too and recovered again):

- publish      the log must hold the killed publish 0 or 1 times (exactly once if
               it was not killed); if 0, publish again; then `gdag run OUTPUT -j 1`
               if the publish was to run its subscribers;
- run, speculative  the same `gdag run` again;
- replay       `gdag replay --from 1` again (replaying twice leaves the same state).

and checked:

- convergence: every output's value and version and every node's @done inputs
  and status equal the reference's; the sequence of published values on the
  log's first-parent chain equals the reference's; offsets are contiguous; no
  session was merged twice and no node completed twice on the same inputs; no
  session ref of the live log is left; no fresh lock file is left;
- integrity: `git fsck --strict --no-dangling` is clean;
- every command that was not killed exited 0 without a traceback.

Prints a markdown table per kind and exits 1 if any divergence, fsck failure or
command error was found (their repositories are kept under the work directory).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOG = "main"
LOG_REF = f"refs/gdag/logs/{LOG}"
KINDS = ("publish", "run", "replay", "speculative")
RECYCLE = 10  # trials on one pair of repositories before it is replaced by fresh copies
PRECISE_SHARE = 0.75  # the rest are timed kills
INNER_SHARE = 0.25  # of precise speculative trials: kill a `gdag publish` inside a node
INNER_POINTS = 18  # about the points an in-session `gdag publish` passes
WAIT = 180.0  # seconds any one gdag command may take

# -- the instrumented, pre-warmed gdag process ----------------------------------------

# A module (written to <workdir>/pylib/gdag_fault_hooks.py) that wraps gdag's store
# functions so that each call is a numbered point; `install(kill_at, site)` arms it: at
# point `kill_at` the process writes the point's name to `site` and SIGKILLs itself.
HOOKS = r"""
import functools, os, pathlib, signal, threading, time
import gdag.objects as objects_mod
import gdag.refs as refs_mod

_lock = threading.Lock()
state = {"n": 0, "kill_at": None, "site": None}

def point(site):
    with _lock:
        state["n"] += 1
        hit = state["n"] == state["kill_at"]
    if hit:
        fd = os.open(state["site"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.write(fd, site.encode() + b"\n")
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(60)

def category(ref):
    ref = str(ref)
    if ref.endswith("packed-refs") or ref.endswith("packed-refs.lock"):
        return "packed-refs"
    for key, name in (("refs/gdag/sessions/", "session"), ("refs/gdag/leases/", "lease"),
                      ("refs/gdag/archive/", "archive"), ("refs/gdag/logs/", "log")):
        if key in ref:
            log = ref.split(key, 1)[1].split("/", 1)[0]
            return ("replay work-log " if ".replay-" in log else "") + name
    return "other"

ObjectStore, LocalRefs = objects_mod.ObjectStore, refs_mod.LocalRefs

def _entry(cls, name, site):
    orig = getattr(cls, name)
    @functools.wraps(orig)
    def wrapper(self, *args, **kwargs):
        point(site(*args, **kwargs))
        return orig(self, *args, **kwargs)
    setattr(cls, name, wrapper)

_entry(ObjectStore, "write_raw", lambda type_name, data: f"before writing a {type_name.decode()}")
_entry(ObjectStore, "write_blob_stream", lambda stream, size: "before streaming a blob")
_entry(LocalRefs, "cas_ref", lambda ref, old, new, timeout=None: f"before CAS of a {category(ref)} ref")
_entry(LocalRefs, "delete_ref", lambda ref, old: f"before deleting a {category(ref)} ref")
_take_lock = LocalRefs._take_lock
def _locked(self, ref, *args, **kwargs):
    fd = _take_lock(self, ref, *args, **kwargs)
    point(f"holding a {category(ref)} ref lock")
    return fd
LocalRefs._take_lock = _locked

class _Os:
    # The store modules' view of `os`: os.replace (object installs, ref renames) is a point.
    def __getattr__(self, name):
        return getattr(os, name)
    @staticmethod
    def replace(src, dst, *args, **kwargs):
        d = str(dst)
        if os.sep + "objects" + os.sep in d:
            point("before installing an object")
        else:
            point(f"before renaming a {category(d)} ref lock into place")
        return os.replace(src, dst, *args, **kwargs)
objects_mod.os = refs_mod.os = _Os()

_unlink = pathlib.Path.unlink
def _unlink_lock(self, missing_ok=False):
    if self.name.endswith(".lock"):
        point(f"before removing a {category(self)} ref lock")
    return _unlink(self, missing_ok=missing_ok)
pathlib.Path.unlink = _unlink_lock

def install(kill_at, site):
    state["kill_at"], state["site"] = kill_at, site
"""

# Also in <workdir>/pylib: arms the hooks in a `gdag publish` run inside node NODE
# (through the `gdag` shim on the node's PATH) when GDAG_FAULTS_INNER="NODE:N:SITE".
SITECUSTOMIZE = r"""
import os
_spec = os.environ.pop("GDAG_FAULTS_INNER", None)
if _spec:
    _node, _at, _site = _spec.split(":", 2)
    if os.environ.get("GDAG_NODE") == _node and os.environ.get("GDAG_SESSION"):
        import gdag_fault_hooks
        gdag_fault_hooks.install(int(_at), _site)
"""

# A pre-warmed gdag: imports gdag (and what `run`, `publish` and `replay` use) and the
# hooks, writes "R" on stdout, reads one JSON job line from fd 0:
#   {"cwd", "commands": [argv, ...], "kill_at": N | null, "site": path, "report": path,
#    "stdin": path | null, "out": path, "inner": "NODE:N:SITE" | null}
# and runs each command through gdag's own entry point (what `python -m gdag` does),
# with the hooks armed at `kill_at` (counted over the whole job). Writes
# {"commands": [{"rc", "points", "seconds"}]} to `report`; exits with the first
# non-zero status.
LAUNCHER = r"""
import importlib, json, os, sys, time
from gdag.main import main
import gdag_fault_hooks as hooks
for module in ("gdag.commands", "gdag.runner", "gdag.execute",
               "gdag.executors.local", "gdag.shellnode", "gdag.session", "gdag.lease",
               "gdag.workspace", "gdag.definition", "gdag.graph", "gdag.progress",
               "gdag.speculate", "gdag.cache", "gdag.replay", "gdag.provenance", "gdag.cli",
               "dulwich.object_store", "dulwich.objects", "dulwich.repo"):
    try:
        importlib.import_module(module)
    except ImportError:
        pass
os.write(1, b"R")
line = b""
while not line.endswith(b"\n"):
    chunk = os.read(0, 65536)
    if not chunk:
        break
    line += chunk
job = json.loads(line)
fd = os.open(job["stdin"] or os.devnull, os.O_RDONLY)
os.dup2(fd, 0)
os.close(fd)
fd = os.open(job["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.dup2(fd, 1)
os.close(fd)
os.chdir(job["cwd"])
if job.get("inner"):
    os.environ["GDAG_FAULTS_INNER"] = job["inner"]
hooks.install(job.get("kill_at"), job["site"])
done, rc = [], 0
for argv in job["commands"]:
    before, t0 = hooks.state["n"], time.monotonic()
    rc = main(argv)
    done.append({"rc": rc, "points": hooks.state["n"] - before, "seconds": time.monotonic() - t0})
    if rc:
        break
sys.stdout.flush()
sys.stderr.flush()
with open(job["report"], "w") as f:
    json.dump({"commands": done}, f)
os._exit(rc)
"""


@dataclass
class Proc:
    """One started gdag job."""

    proc: subprocess.Popen
    started: float
    err: Path
    report: Path
    site: Path
    inner_site: Path
    signalled: bool = False

    def wait(self, timeout: float = WAIT) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise CommandError(f"gdag did not finish within {timeout:.0f} s") from None

    def kill(self) -> bool:
        """SIGKILL from outside; True if it was still running."""
        if self.proc.poll() is not None:
            return False
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=WAIT)
        self.signalled = True
        return True

    @property
    def killed(self) -> bool:
        return self.proc.returncode == -signal.SIGKILL

    def stderr(self) -> str:
        try:
            return self.err.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def results(self) -> list[dict]:
        try:
            return json.loads(self.report.read_text())["commands"]
        except (FileNotFoundError, ValueError):
            return []

    def kill_site(self) -> str | None:
        """Where the armed process killed itself (None: it was not killed that way)."""
        try:
            return self.site.read_text().strip() or None
        except FileNotFoundError:
            return None

    def inner_kills(self) -> int:
        """How many `gdag publish` runs inside nodes killed themselves."""
        try:
            return len(self.inner_site.read_text().splitlines())
        except FileNotFoundError:
            return 0

    def files(self) -> list[Path]:
        base = self.err.with_suffix("")
        return [self.err, self.report, self.site, self.inner_site, Path(str(base) + ".out")]


class CommandError(Exception):
    """A gdag command that was not killed failed."""


class Launcher:
    """Starts gdag jobs in pre-warmed processes, one spare kept ready."""

    def __init__(self, scratch: Path, env: dict[str, str]) -> None:
        self.dir = scratch
        self.dir.mkdir(parents=True, exist_ok=True)
        self.env = env
        self.count = 0
        self.spare: tuple[subprocess.Popen, Path] | None = None
        self.used: list[Proc] = []

    def _spawn(self) -> tuple[subprocess.Popen, Path]:
        self.count += 1
        err = self.dir / f"{self.count}.err"
        with open(err, "wb") as err_file:
            proc = subprocess.Popen(
                [sys.executable, "-c", LAUNCHER],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err_file,
                env=self.env,
            )
        return proc, err

    def start(
        self,
        commands: list[list[str]],
        kill_at: int | None = None,
        stdin: Path | None = None,
        inner: tuple[str, int] | None = None,
    ) -> Proc:
        proc, err = self.spare or self._spawn()
        self.spare = None
        assert proc.stdout is not None and proc.stdin is not None
        ready = proc.stdout.read(1)
        if ready != b"R":
            proc.wait()
            raise CommandError(f"launcher did not start: {err.read_text(errors='replace')}")
        proc.stdout.close()
        base = err.with_suffix("")
        job: dict[str, object] = {
            "cwd": str(self.dir),
            "commands": commands,
            "kill_at": kill_at,
            "site": str(base) + ".site",
            "report": str(base) + ".json",
            "out": str(base) + ".out",
            "stdin": str(stdin) if stdin else None,
            "inner": f"{inner[0]}:{inner[1]}:{base}.inner-site" if inner else None,
        }
        proc.stdin.write((json.dumps(job) + "\n").encode())
        proc.stdin.close()
        started = time.monotonic()
        self.spare = self._spawn()
        p = Proc(
            proc,
            started,
            err,
            Path(f"{base}.json"),
            Path(f"{base}.site"),
            Path(f"{base}.inner-site"),
        )
        self.used.append(p)
        return p

    def forget(self) -> None:
        """Remove the files of the jobs run so far."""
        for p in self.used:
            for f in p.files():
                f.unlink(missing_ok=True)
        self.used = []

    def run(self, commands: list[list[str]], what: str, stdin: Path | None = None) -> list[dict]:
        """Run a job to completion, expecting success; per-command results."""
        p = self.start(commands, stdin=stdin)
        rc = p.wait()
        check_clean(p, rc, what)
        return p.results()

    def close(self) -> None:
        if self.spare is not None:
            proc = self.spare[0]
            proc.kill()
            proc.wait()
            self.spare = None


def check_clean(p: Proc, rc: int, what: str) -> None:
    text = p.stderr()
    if rc != 0:
        raise CommandError(f"{what} exited {rc}:\n{text[-3000:]}")
    if "Traceback" in text or "internal error" in text:
        raise CommandError(f"{what} printed a traceback:\n{text[-3000:]}")


# -- reading repositories back through git ------------------------------------------------


class Git:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def __call__(self, repo: Path, *args: str, check: bool = True) -> str:
        proc = subprocess.run(
            ["git", *args], cwd=repo, env=self.env, capture_output=True, text=True
        )
        if check and proc.returncode != 0:
            raise CommandError(f"git {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
        return proc.stdout

    def objects(self, repo: Path, specs: list[str]) -> list[tuple[str, bytes] | None]:
        """(type, content) of each `<rev>:<path>`, read in one `git cat-file --batch`."""
        if not specs:
            return []
        proc = subprocess.run(
            ["git", "cat-file", "--batch"],
            cwd=repo,
            env=self.env,
            input="".join(s + "\n" for s in specs).encode(),
            capture_output=True,
            check=True,
        )
        data, pos = proc.stdout, 0
        found: list[tuple[str, bytes] | None] = []
        for _ in specs:
            nl = data.index(b"\n", pos)
            header = data[pos:nl].split()
            if len(header) != 3:  # "<spec> missing"
                found.append(None)
                pos = nl + 1
                continue
            size = int(header[2])
            found.append((header[1].decode(), data[nl + 1 : nl + 1 + size]))
            pos = nl + 1 + size + 1
        return found

    def refs(self, repo: Path, prefix: str) -> dict[str, str]:
        out = self(repo, "for-each-ref", "--format=%(refname) %(objectname)", prefix)
        return dict(line.split(" ", 1) for line in out.splitlines())

    def fsck(self, repo: Path) -> str | None:
        """None if `git fsck --strict --no-dangling` is clean, else what it said. Run
        holding the pack lock, as `gdag doctor` does: a background packer removes the
        loose copies of what it packed, which a concurrent fsck reports as missing."""
        with packer_waited(repo):
            proc = subprocess.run(
                ["git", "fsck", "--strict", "--no-dangling"],
                cwd=repo,
                env=self.env,
                capture_output=True,
                text=True,
            )
        text = proc.stdout + proc.stderr
        if proc.returncode != 0 or "error" in text.lower() or "warning" in text.lower():
            return f"exit {proc.returncode}: {text.strip()[:2000]}"
        return None


@contextlib.contextmanager
def packer_waited(repo: Path) -> Iterator[None]:
    """Hold the repository's pack lock (`gdag.maintenance`): no background packer moves
    objects meanwhile."""
    from gdag.maintenance import pack_lock
    from gdag.repo import Store

    with pack_lock(Store.find(repo)):
        yield


@dataclass
class Event:
    sha: str
    offset: str
    kind: str
    outputs: list[str]
    node: str
    session: str
    status: str


EVENT_KEYS = ("Gdag-Offset", "Gdag-Event", "Gdag-Output", "Gdag-Node", "Gdag-Session")


def log_events(git: Git, repo: Path) -> list[Event]:
    """The log's first-parent chain, oldest first."""
    fields = ["%H"] + [
        f"%(trailers:key={k},valueonly,separator=%x2C)" for k in (*EVENT_KEYS, "Gdag-Status")
    ]
    fmt = "%x1f".join(fields) + "%x1e"
    out = git(repo, "log", "--first-parent", "--reverse", f"--format={fmt}", LOG_REF)
    events = []
    for rec in out.split("\x1e"):
        rec = rec.strip("\n")
        if not rec:
            continue
        sha, offset, kind, outputs, node, session, status = rec.split("\x1f")
        events.append(
            Event(sha, offset, kind, [o for o in outputs.split(",") if o], node, session, status)
        )
    return events


@dataclass
class Snapshot:
    outputs: dict[str, tuple[bytes, int]]  # output -> (value object, version)
    nodes: dict[str, tuple[dict, str]]  # node -> (@done inputs, status)
    published: list[tuple[str, bytes]]  # (output, value) of every publish event, in order
    problems: list[str]  # what is wrong with the log on its own


def snapshot(git: Git, repo: Path) -> Snapshot:
    tip = git(repo, "rev-parse", "--verify", LOG_REF).strip()
    listing = git(repo, "ls-tree", "-r", "--full-tree", tip, "--", "outputs", "nodes")
    outputs, nodes = set(), []
    for line in listing.splitlines():
        _, _, path = line.partition("\t")
        if path.startswith("outputs/") and "/@meta.json" in path:
            outputs.add(path[len("outputs/") : path.index("/@meta.json")])
        elif path.startswith("nodes/") and path.endswith("/@done.json"):
            nodes.append(path.split("/")[1])
    outs = sorted(outputs)
    events = log_events(git, repo)
    publishes = [e for e in events if e.kind == "publish"]
    sessions = [e for e in events if e.kind == "session"]
    specs = [f"{tip}:outputs/{o}/{f}" for o in outs for f in ("@value", "@meta.json")]
    specs += [f"{tip}:nodes/{n}/@done.json" for n in nodes]
    specs += [f"{e.sha}:outputs/{e.outputs[0]}/@value" for e in publishes if e.outputs]
    specs += [f"{e.sha}:nodes/{e.node}/@done.json" for e in sessions]
    objs = iter(git.objects(repo, specs))
    snap = Snapshot({}, {}, [], [])
    for name in outs:
        value, meta = next(objs), next(objs)
        assert value is not None and meta is not None, name
        snap.outputs[name] = (value[1], int(json.loads(meta[1])["version"]))
    for node in nodes:
        done = next(objs)
        assert done is not None, node
        record = json.loads(done[1])
        snap.nodes[node] = (record["inputs"], record["status"])
    for e in publishes:
        if not e.outputs:
            snap.problems.append(f"publish event {e.sha[:12]} names no output")
            continue
        value = next(objs)
        snap.published.append((e.outputs[0], value[1] if value else b"<missing>"))
    # The log on its own: contiguous offsets, no session merged twice, no node
    # completed twice on the same inputs.
    offsets = [e.offset for e in events]
    if offsets != [str(i) for i in range(len(events))]:
        snap.problems.append(f"offsets not contiguous: {offsets}")
    seen_ids: set[str] = set()
    seen_runs: dict[tuple, str] = {}
    for e in sessions:
        done_obj = next(objs)
        if e.session in seen_ids:
            snap.problems.append(f"session {e.session} merged twice")
        seen_ids.add(e.session)
        if done_obj is None:
            snap.problems.append(f"session event {e.sha[:12]} has no @done.json for {e.node}")
            continue
        record = json.loads(done_obj[1])
        if record.get("session") != e.session:
            snap.problems.append(f"session event {e.sha[:12]}: @done.json of another session")
        if e.status == "ok":
            key = (e.node, tuple(sorted(record.get("inputs", {}).items())))
            if key in seen_runs:
                snap.problems.append(
                    f"node {e.node} completed twice on inputs {record.get('inputs')}: "
                    f"sessions {seen_runs[key]} and {e.session}"
                )
            seen_runs[key] = e.session
    return snap


def differences(ref: Snapshot, crash: Snapshot) -> list[str]:
    found = [f"crash log: {p}" for p in crash.problems]
    found += [f"reference log: {p}" for p in ref.problems]
    for name in sorted(set(ref.outputs) | set(crash.outputs)):
        r, c = ref.outputs.get(name), crash.outputs.get(name)
        if r != c:
            show = [(v[0][:40], v[1]) if v else None for v in (r, c)]
            found.append(f"output {name}: reference {show[0]}, crash {show[1]}")
    for node in sorted(set(ref.nodes) | set(crash.nodes)):
        rn, cn = ref.nodes.get(node), crash.nodes.get(node)
        if rn != cn:
            found.append(f"node {node} @done: reference {rn}, crash {cn}")
    if ref.published != crash.published:
        found.append(
            f"publish history differs: reference {len(ref.published)} events, "
            f"crash {len(crash.published)}: "
            + next(
                (
                    f"first difference at #{i}: {a!r} vs {b!r}"
                    for i, (a, b) in enumerate(zip(ref.published, crash.published, strict=False))
                    if a != b
                ),
                "one is a prefix of the other",
            )
        )
    return found


def lock_files(repo: Path) -> list[Path]:
    gitdir = repo / ".git"
    found = list((gitdir / "refs").rglob("*.lock"))
    if (gitdir / "packed-refs.lock").exists():
        found.append(gitdir / "packed-refs.lock")
    return found


def tmp_objects(repo: Path) -> set[str]:
    return {e.name for e in os.scandir(repo / ".git" / "objects") if e.name.startswith("tmp_obj_")}


def node_processes(repo: Path) -> list[int]:
    """Processes of node commands working on `repo` (their environment has GDAG_REPO)."""
    key = f"GDAG_REPO={repo.resolve()}".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if key in env.split(b"\0"):
            found.append(int(name))
    return found


# -- the pipelines ------------------------------------------------------------------------


def shell_node(name: str, run: str, inputs: dict[str, str], publishes: str, extra: str = "") -> str:
    ins = ", ".join(f'{k} = "{v}"' for k, v in inputs.items())
    return (
        f"[nodes.{name}]\nrun = '{run}'\ninputs = {{ {ins} }}\n"
        f'publishes = ["{publishes}"]\n{extra}\n'
    )


def pipeline(tag: str) -> str:
    """A chain with early cutoff, a fan-in, an `each` node, a dir input and a large input."""
    return "".join(
        [
            '[outputs."tree"]\ntype = "dir"\n\n',
            shell_node(
                "a1",
                'cat "$GDAG_IN_X" > "$GDAG_OUT/a/1"; echo a1 >> "$GDAG_OUT/a/1"',
                {"x": "src/a"},
                "a/1",
            ),
            shell_node(
                "a2",
                f'tr -d "0-9" < "$GDAG_IN_X" > "$GDAG_OUT/a/2"; echo {tag} >> "$GDAG_OUT/a/2"',
                {"x": "a/1"},
                "a/2",
            ),
            shell_node("b1", 'rev "$GDAG_IN_Y" > "$GDAG_OUT/b/1"', {"y": "src/b"}, "b/1"),
            shell_node(
                "w", 'wc -c < "$GDAG_IN_Y" | tr -d " " > "$GDAG_OUT/w"', {"y": "src/b"}, "w"
            ),
            shell_node(
                "j",
                'cat "${GDAG_IN_L:-/dev/null}" "${GDAG_IN_R:-/dev/null}" "${GDAG_IN_W:-/dev/null}"'
                ' "${GDAG_IN_T:-/dev/null}" > "$GDAG_OUT/j"',
                {"l": "a/2", "r": "b/1", "w": "w", "t": "t"},
                "j",
            ),
            shell_node(
                "e",
                '{ echo seen; cat "$GDAG_IN_X"; } > "$GDAG_OUT/e"',
                {"x": "src/a"},
                "e",
                'mode = "each"\n',
            ),
            shell_node(
                "t",
                'cd "$GDAG_IN_D" && find . -type f | sort > "$GDAG_OUT/t"',
                {"d": "tree"},
                "t",
            ),
            shell_node("bs", 'cksum < "$GDAG_IN_B" > "$GDAG_OUT/bs"', {"b": "big"}, "bs"),
        ]
    )


def spec_chain(n: int = 3, work: float = 0.05) -> str:
    """Nodes that advise their output at once (`gdag publish` in the node), then finish."""
    text, prev = "", "src"
    for i in range(1, n + 1):
        text += shell_node(
            f"n{i}",
            f'v="$(cat "$GDAG_IN_X")+{i}"; gdag publish o{i} "$v"; sleep {work}; '
            f'printf %s "$v" > "$GDAG_OUT/o{i}"',
            {"x": prev},
            f"o{i}",
        )
        prev = f"o{i}"
    return text


# -- trials -------------------------------------------------------------------------------


@dataclass
class Pair:
    ref: Path
    crash: Path
    uses: int = 0
    last: dict[str, str] = field(default_factory=dict)  # output -> last value published
    tag: str = "t0"


@dataclass
class Outcome:
    kind: str
    injected: bool = False
    divergences: list[str] = field(default_factory=list)
    fsck: str | None = None
    errors: list[str] = field(default_factory=list)
    aged: int = 0
    seconds: float = 0.0
    notes: Counter = field(default_factory=Counter)
    site: str | None = None
    label: str = ""

    @property
    def failed(self) -> bool:
        return bool(self.divergences or self.fsck or self.errors)


class Lane:
    """One set of repositories and one launcher; trials on a lane run one after another."""

    def __init__(self, index: int, root: Path, env: dict[str, str], templates: dict) -> None:
        self.root = root / f"lane{index}"
        self.root.mkdir(parents=True)
        self.env = env
        self.git = Git(env)
        self.launcher = Launcher(self.root / "procs", env)
        self.templates = templates
        self.pairs: dict[str, Pair] = {}
        self.made = 0
        self.values = self.root / "values"
        self.values.mkdir()

    def pair(self, family: str) -> Pair:
        pair = self.pairs.get(family)
        if pair is not None and pair.uses < RECYCLE:
            return pair
        if pair is not None:
            shutil.rmtree(pair.ref, ignore_errors=True)
            shutil.rmtree(pair.crash, ignore_errors=True)
        self.made += 1
        dirs = []
        for role in ("ref", "crash"):
            dest = self.root / f"{family}{self.made}-{role}"
            shutil.copytree(self.templates[family], dest, symlinks=True)
            dirs.append(dest)
        pair = Pair(dirs[0], dirs[1])
        self.pairs[family] = pair
        return pair

    def close(self) -> None:
        self.launcher.close()


def on(repo: Path, argv: list[str]) -> list[str]:
    return ["-C", str(repo), *argv]


def random_text(rng: random.Random) -> str:
    return rng.choice(["alpha", "beta", "gamma"]) + str(rng.randrange(1000))


class Trial:
    def __init__(self, lane: Lane, number: int, kind: str, seed: int) -> None:
        self.lane = lane
        self.number = number
        self.kind = kind
        self.rng = random.Random(f"{seed}-{number}")
        self.git = lane.git
        self.out = Outcome(kind)
        self.aged: set[Path] = set()
        self.pair: Pair | None = None

    # -- plans ------------------------------------------------------------------

    def plan(self, pair: Pair) -> tuple[list[list[str]], list[str], Path | None, dict]:
        """(set-up commands for both, the command to kill, its stdin file, facts)."""
        rng, kind = self.rng, self.kind
        setup: list[list[str]] = []
        facts: dict = {}
        if kind == "speculative":
            setup.append(["publish", "src", random_text(rng), "--no-run"])
            return setup, ["run", "-j", "3", "--speculative", "-q"], None, facts
        if kind == "run":
            for out in rng.choice([["src/a"], ["src/b"], ["src/a", "src/b"], ["src/a", "src/a"]]):
                value = pair.last.get(out) if rng.random() < 0.2 else None
                value = value or random_text(rng)  # an unchanged value now and then: cutoff
                pair.last[out] = value
                setup.append(["publish", out, value, "--no-run"])
            if rng.random() < 0.2:
                setup.append(self._publish_dir())
            if rng.random() < 0.1:
                setup.append(self._publish_big())
            return setup, ["run", "-j", "2", "-q"], None, facts
        if kind == "replay":
            # A replay rewrites the log from the first event it would not reproduce (a
            # publish whose subscribers did not run yet, a definition change) and keeps
            # it as it is otherwise: mostly give it something to rewrite.
            out = rng.choice(["src/a", "src/b"])
            no_run = ["--no-run"] if rng.random() < 0.6 else []
            setup.append(["publish", out, random_text(rng), *no_run])
            if rng.random() < 0.7:
                pair.tag = rng.choice([f"t{k}" for k in range(5) if f"t{k}" != pair.tag])
            return setup, ["replay", "--from", "1", "-j", "2", "-q"], None, facts
        # publish
        if rng.random() < 0.3:
            setup.append(["publish", rng.choice(["src/a", "src/b"]), random_text(rng), "--no-run"])
        choice = rng.random()
        stdin = None
        if choice < 0.45:
            out = rng.choice(["src/a", "src/b"])
            argv = ["publish", out, random_text(rng)]
        elif choice < 0.6:
            out = "src/b"
            stdin = self.lane.values / f"stdin-{self.number}"
            stdin.write_bytes(random_text(rng).encode() * rng.randint(1, 3))
            argv = ["publish", out, "-"]
        elif choice < 0.8:
            argv = self._publish_dir()
            out = "tree"
        else:
            argv = self._publish_big()
            out = "big"
        if rng.random() < 0.4:
            argv.append("--no-run")
        facts["output"] = out
        facts["runs"] = "--no-run" not in argv
        return setup, argv, stdin, facts

    def _publish_dir(self) -> list[str]:
        d = self.lane.values / f"dir-{self.number}"
        for k in range(self.rng.randint(1, 4)):
            f = d / self.rng.choice(["x", "y", "sub"]) / f"f{k}"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(random_text(self.rng))
        return ["publish", "tree", "--dir", str(d)]

    def _publish_big(self) -> list[str]:
        f = self.lane.values / f"big-{self.number}"
        chunk = self.rng.randbytes(64 * 1024)
        f.write_bytes(chunk * 19 + self.rng.randbytes(100))  # > 1 MiB: written in chunks
        return ["publish", "big", "--file", str(f)]

    # -- the trial --------------------------------------------------------------

    def run(self) -> Outcome:
        t0 = time.monotonic()
        try:
            self._run()
        except CommandError as exc:
            self.out.errors.append(str(exc))
        except Exception as exc:  # a harness failure is reported, not hidden
            import traceback

            self.out.errors.append(f"harness: {exc!r}\n{traceback.format_exc()}")
        if self.out.failed and self.pair is not None:
            self._keep(self.pair)
        else:
            self.lane.launcher.forget()
        for f in self.lane.values.iterdir():
            shutil.rmtree(f) if f.is_dir() else f.unlink()
        self.out.seconds = time.monotonic() - t0
        return self.out

    def _run(self) -> None:
        lane, rng, git, kind = self.lane, self.rng, self.git, self.kind
        pair = self.pair = lane.pair("spec" if kind == "speculative" else "pipe")
        pair.uses += 1
        tag_before = pair.tag
        setup, argv, stdin, facts = self.plan(pair)
        if pair.tag != tag_before:
            for repo in (pair.ref, pair.crash):
                (repo / "gdag.toml").write_text(pipeline(pair.tag))
        precise = rng.random() < PRECISE_SHARE
        mode = "precise" if precise else "timed"
        inner = None
        if kind == "speculative" and precise and rng.random() < INNER_SHARE:
            # Kill the `gdag publish` inside one node instead (the run goes on).
            inner = (f"n{rng.randint(1, 3)}", rng.randint(1, INNER_POINTS))
            mode = "in-node publish"

        # The same set-up on both, then the command on the reference, uninterrupted.
        commands = [on(r, c) for r in (pair.ref, pair.crash) for c in setup]
        if stdin is not None:
            # stdin is one file per job: the reference's publish reads it in its own job
            results = lane.launcher.run(commands, "set-up") if commands else []
            results += lane.launcher.run([on(pair.ref, argv)], "reference", stdin=stdin)
        else:
            results = lane.launcher.run([*commands, on(pair.ref, argv)], "set-up and reference")
        ref_points, ref_seconds = results[-1]["points"], results[-1]["seconds"]

        # The command on the crash twin, killed.
        before = log_events(git, pair.crash)
        self._before(pair.crash)
        if rng.random() < 0.1:
            self._pack_refs(pair.crash, "the command")
        kill_at = rng.randint(1, max(1, ref_points)) if precise and not inner else None
        p = lane.launcher.start([on(pair.crash, argv)], kill_at=kill_at, stdin=stdin, inner=inner)
        if not precise:
            deadline = p.started + rng.uniform(0.0, ref_seconds * 1.05)
            while p.proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.002)
            p.kill()
        rc = p.wait()
        self.out.label = (
            f"trial {self.number} {kind} {mode}"
            + (f" N={kill_at}/{ref_points}" if kill_at else "")
            + (f" in {inner[0]} N={inner[1]}" if inner else "")
            + f": {' '.join(argv)}"
        )
        if inner:
            self.out.injected = p.inner_kills() > 0
            self.out.notes["in-node publishes killed"] += p.inner_kills()
            if self.out.injected:
                first = p.inner_site.read_text().splitlines()[0]
                self.out.site = f"in-node `gdag publish`: {first}"
        else:
            self.out.injected = p.killed
            self.out.site = (p.kill_site() if precise else "timed kill") if p.killed else None
        if not p.killed:
            check_clean(p, rc, "the command that was to be killed (it finished first)")
        landed = self.out.injected
        self.out.notes[f"{mode} kills landed" if landed else f"{mode}: command finished first"] += 1
        self._orphans(pair.crash)
        self._aftermath(pair.crash)
        self._age_locks(pair.crash)

        # Recovery.
        if kind == "publish":
            self._check_publish(pair, before, facts, argv, stdin, p.killed)
            recovery = [["run", facts["output"], "-j", "1", "-q"]] if facts["runs"] else []
        elif kind == "replay":
            recovery = [["replay", "--from", "1", "-j", "2", "-q"]]
        else:
            recovery = [argv]
        if p.killed and rng.random() < 0.15:
            self._pack_refs(pair.crash, "the recovery")
        if p.killed and rng.random() < 0.1:
            # The user's other way back: doctor settles the dead run's sessions and, with
            # gc.auto = 1, packs every loose object, what nothing refers to too.
            git(pair.crash, "config", "gc.auto", "1")
            lane.launcher.run(
                [on(pair.crash, ["doctor", "--repair"])], "`gdag doctor --repair` after the kill"
            )
            self.out.notes[
                "doctor --repair (settles sessions, packs objects) before the recovery"
            ] += 1
        if recovery and p.killed and rng.random() < 0.1:
            self._kill_recovery(pair.crash, recovery, ref_seconds)
        recovered_at = time.time()
        for cmd in recovery:
            took = lane.launcher.run([on(pair.crash, cmd)], f"recovery `gdag {' '.join(cmd)}`")
            if took and took[0]["seconds"] > max(5.0, 3 * ref_seconds):
                self.out.notes["recoveries slower than 5 s and 3x the reference"] += 1

        # Checks.
        ref, crash = snapshot(git, pair.ref), snapshot(git, pair.crash)
        self.out.divergences += differences(ref, crash)
        live = git.refs(pair.crash, f"refs/gdag/sessions/{LOG}/")
        if live:
            self.out.divergences.append(f"session refs left after the recovery: {sorted(live)}")
        for lock in lock_files(pair.crash):
            if lock not in self.aged or lock.stat().st_mtime > recovered_at - 5:
                self.out.divergences.append(f"fresh lock file left after the recovery: {lock}")
            else:
                self.out.notes["kill's lock files still there after the recovery"] += 1
        work = [r for r in git.refs(pair.crash, "refs/gdag/") if ".replay-" in r]
        leaked = [r for r in work if r not in self.refs_before]
        for name in leaked:
            what = "session" if name.startswith("refs/gdag/sessions/") else "log"
            self.out.notes[f"replay work-log refs leaked by a kill ({what})"] += 1
        self.out.fsck = git.fsck(pair.crash)

    def _pack_refs(self, repo: Path, before: str) -> None:
        """`git pack-refs --all`, so that gdag finds refs packed (it fails on a held lock)."""
        proc = subprocess.run(
            ["git", "pack-refs", "--all"], cwd=repo, env=self.git.env, capture_output=True
        )
        ok = "" if proc.returncode == 0 else " (failed: a ref lock was held)"
        self.out.notes[f"refs packed before {before}{ok}"] += 1

    def _before(self, repo: Path) -> None:
        self.refs_before = set(self.git.refs(repo, "refs/gdag/"))
        self.counted = set(self.refs_before)  # session refs not to count as left by a kill
        self.tmp_before = tmp_objects(repo)

    def _aftermath(self, repo: Path) -> None:
        """Count what the kill left behind (what was not there before the command)."""
        sessions = self.git.refs(repo, "refs/gdag/sessions/")
        for ref, sha in sessions.items():
            if ref in self.counted:
                continue
            self.counted.add(ref)
            kind = self.git(
                repo, "log", "-1", "--format=%(trailers:key=Gdag-Event,valueonly)", sha
            ).strip()
            where = "replay work-log " if ".replay-" in ref else ""
            state = "done" if kind == "done" else "unfinished"
            self.out.notes[f"{where}sessions left {state} by a kill"] += 1
        tmp = tmp_objects(repo)
        if tmp - self.tmp_before:
            self.out.notes["kills that left tmp_obj_* files"] += 1
        self.tmp_before |= tmp
        if any(lock not in self.aged for lock in lock_files(repo)):
            self.out.notes["kills that left ref lock files"] += 1

    def _orphans(self, repo: Path) -> None:
        """Let the node commands a killed gdag left running finish (SIGKILL after 30 s).

        A SIGKILLed gdag cannot stop its nodes (each runs in its own process group). One
        still running may `gdag publish` into its session while the recovery drops it;
        the checks below would then see that session ref, rightly or not, at random.
        """
        deadline = time.monotonic() + 30
        pids = node_processes(repo)
        if pids:
            self.out.notes["kills that left node processes running (waited for)"] += 1
        while pids and time.monotonic() < deadline:
            time.sleep(0.02)
            pids = node_processes(repo)
        for pid in pids:
            self.out.notes["orphaned node processes killed after 30 s"] += 1
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _age_locks(self, repo: Path) -> None:
        old = time.time() - 10
        for lock in lock_files(repo):
            if lock not in self.aged:
                self.aged.add(lock)
                self.out.aged += 1
                os.utime(lock, (old, old))

    def _kill_recovery(self, repo: Path, recovery: list[list[str]], seconds: float) -> None:
        p = self.lane.launcher.start([on(repo, c) for c in recovery])
        deadline = p.started + self.rng.uniform(0.0, seconds * 1.5)
        while p.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        if p.kill():
            self.out.notes["recoveries killed too"] += 1
            self._orphans(repo)
            self._aftermath(repo)
            self._age_locks(repo)
        else:
            check_clean(p, p.proc.returncode, "recovery (was to be killed)")

    def _check_publish(
        self,
        pair: Pair,
        before: list[Event],
        facts: dict,
        argv: list[str],
        stdin: Path | None,
        killed: bool,
    ) -> None:
        """The killed publish is on the log 0 or 1 times; publish again if 0."""
        after = log_events(self.git, pair.crash)
        if [e.sha for e in after[: len(before)]] != [e.sha for e in before]:
            self.out.divergences.append("the log's history before the publish changed")
            return
        new = [e for e in after[len(before) :] if e.kind == "publish"]
        mine = [e for e in new if e.outputs == [facts["output"]]]
        if len(new) != len(mine) or len(mine) > 1 or (not killed and len(mine) != 1):
            self.out.divergences.append(
                f"publish {'killed' if killed else 'not killed'} appears {len(mine)} times "
                f"({len(new)} publish events appended)"
            )
            return
        if mine:
            got = snapshot_value(self.git, pair.crash, mine[0])
            want = snapshot_value(self.git, pair.ref, last_publish(self.git, pair.ref))
            if got != want:
                self.out.divergences.append("the publish on the log holds another value")
            if killed:
                self.out.notes["killed publishes already on the log"] += 1
        else:
            self.out.notes["killed publishes not on the log (published again)"] += 1
            again = [a for a in argv if a != "--no-run"] + ["--no-run"]
            self.lane.launcher.run([on(pair.crash, again)], "publish again", stdin=stdin)

    def _keep(self, pair: Pair) -> None:
        dest = self.lane.root.parent / "failures" / f"trial-{self.number}-{self.kind}"
        dest.mkdir(parents=True, exist_ok=True)
        for repo, name in ((pair.ref, "ref"), (pair.crash, "crash")):
            with packer_waited(repo):  # a copy taken mid-pack misses what moved
                shutil.copytree(repo, dest / name, symlinks=True, dirs_exist_ok=True)
        self.out.notes[f"kept in {dest}"] += 1
        self.out.label += f" [kept in {dest}]"
        self.lane.launcher.used = []  # their stderr files stay too
        # The pair is not trusted after a failure: start the next trial on fresh copies.
        pair.uses = RECYCLE


def last_publish(git: Git, repo: Path) -> Event:
    return [e for e in log_events(git, repo) if e.kind == "publish"][-1]


def snapshot_value(git: Git, repo: Path, event: Event) -> bytes | None:
    obj = git.objects(repo, [f"{event.sha}:outputs/{event.outputs[0]}/@value"])[0]
    return obj[1] if obj else None


# -- driving ------------------------------------------------------------------------------


def make_env(work: Path) -> dict[str, str]:
    home = work / "home"
    home.mkdir(parents=True, exist_ok=True)
    (home / ".gitconfig").write_text("")
    tmp = work / "tmp"
    tmp.mkdir(exist_ok=True)
    pylib = work / "pylib"
    pylib.mkdir(exist_ok=True)
    (pylib / "gdag_fault_hooks.py").write_text(HOOKS)
    (pylib / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GDAG_", "GIT_")) and k not in ("PYTHONSTARTUP",)
    }
    env.update(
        HOME=str(home),
        GIT_CONFIG_GLOBAL=str(home / ".gitconfig"),
        GIT_CONFIG_NOSYSTEM="1",
        NO_COLOR="1",
        TMPDIR=str(tmp),
        PYTHONPATH=os.pathsep.join(
            p for p in (str(pylib), str(ROOT), env.get("PYTHONPATH", "")) if p
        ),
    )
    return env


def make_templates(work: Path, env: dict[str, str]) -> dict[str, Path]:
    templates = {}
    for family, text in (("pipe", pipeline("t0")), ("spec", spec_chain())):
        path = work / "templates" / family
        path.mkdir(parents=True)
        (path / "gdag.toml").write_text(text)
        proc = subprocess.run(
            [sys.executable, "-m", "gdag", "init", "-C", str(path)],
            env=env,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            sys.exit(f"faults: gdag init failed: {proc.stderr}")
        templates[family] = path
    return templates


def table(rows: dict[str, list[Outcome]], elapsed: float) -> str:
    head = (
        "| kind | trials | faults injected | divergences | fsck failures | errors "
        "| leftover-lock ages applied | time |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    lines, total = [], [0, 0, 0, 0, 0, 0, 0.0]
    for kind, outs in rows.items():
        vals = [
            len(outs),
            sum(o.injected for o in outs),
            sum(bool(o.divergences) for o in outs),
            sum(bool(o.fsck) for o in outs),
            sum(bool(o.errors) for o in outs),
            sum(o.aged for o in outs),
            sum(o.seconds for o in outs),
        ]
        total = [a + b for a, b in zip(total, vals, strict=True)]
        lines.append(f"| {kind} | " + " | ".join(str(v) for v in vals[:6]) + f" | {vals[6]:.1f}s |")
    lines.append(
        "| **total** | "
        + " | ".join(f"**{v}**" for v in total[:6])
        + f" | **{total[6]:.1f}s** (wall {elapsed:.1f}s) |"
    )
    return head + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--lanes", type=int, default=2, help="trials run side by side")
    parser.add_argument("--workdir", help="where the work directory goes (default: $TMPDIR)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per trial")
    args = parser.parse_args(argv)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds or args.trials < 1 or args.lanes < 1:
        parser.error(f"--kinds takes {','.join(KINDS)}; --trials and --lanes at least 1")

    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
    # A fresh directory (inside --workdir if given): the only thing removed at the end.
    work = Path(tempfile.mkdtemp(prefix="gdag-faults-", dir=args.workdir)).resolve()
    env = make_env(work)
    templates = make_templates(work, env)
    lanes = [Lane(i, work, env, templates) for i in range(args.lanes)]

    # Trial i is of kind kinds[i % K], on lane (i // K) % L: every lane sees every kind.
    per_lane: list[list[tuple[int, str]]] = [[] for _ in lanes]
    for i in range(args.trials):
        per_lane[(i // len(kinds)) % len(lanes)].append((i, kinds[i % len(kinds)]))
    outcomes: dict[int, Outcome] = {}
    guard = threading.Lock()
    started = time.monotonic()
    step = max(1, args.trials // 20)

    def work_lane(lane: Lane, trials: list[tuple[int, str]]) -> None:
        try:
            for number, kind in trials:
                out = Trial(lane, number, kind, args.seed).run()
                with guard:
                    outcomes[number] = out
                    n = len(outcomes)
                    bad = sum(o.failed for o in outcomes.values())
                if args.verbose or out.failed:
                    state = "FAILED" if out.failed else ("killed" if out.injected else "finished")
                    where = f" at {out.site!r}" if out.site else ""
                    print(
                        f"[{n}/{args.trials}] {out.label}: {state}{where} ({out.seconds:.1f}s)",
                        file=sys.stderr,
                        flush=True,
                    )
                    for d in out.divergences + out.errors + ([out.fsck] if out.fsck else []):
                        print(f"    {d}", file=sys.stderr, flush=True)
                elif n % step == 0:
                    print(
                        f"{n}/{args.trials} trials, {bad} failed, "
                        f"{time.monotonic() - started:.0f}s",
                        file=sys.stderr,
                        flush=True,
                    )
        finally:
            lane.close()

    threads = [
        threading.Thread(target=work_lane, args=(lane, trials), daemon=True)
        for lane, trials in zip(lanes, per_lane, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started

    rows = {k: [o for _, o in sorted(outcomes.items()) if o.kind == k] for k in kinds}
    notes: Counter = Counter()
    sites: Counter = Counter()
    for o in outcomes.values():
        notes.update({k: v for k, v in o.notes.items() if k and not k.startswith("kept in ")})
        if o.site:
            sites[o.site] += 1
    failed = sorted((n, o) for n, o in outcomes.items() if o.failed)
    print(f"## gdag fault injection: {args.trials} trials, seed {args.seed}, {len(lanes)} lanes\n")
    print(table(rows, elapsed))
    print("Kill sites (where the killed command died):\n")
    print("| site | kills |\n|---|---:|")
    for site, n in sorted(sites.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"| {site} | {n} |")
    print("\nObserved:\n")
    for key, n in sorted(notes.items()):
        print(f"- {key}: {n}")
    if failed:
        print(f"\n{len(failed)} failed trials (repositories kept under {work / 'failures'}):\n")
        for _, o in failed:
            print(f"- {o.label}" + (f" (killed at {o.site!r})" if o.site else ""))
            for d in o.divergences + o.errors + ([f"fsck: {o.fsck}"] if o.fsck else []):
                print("    " + d.replace("\n", "\n    "))
    if args.keep or failed:
        print(f"\nwork directory kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    missing = args.trials - len(outcomes)
    if missing:
        print(f"\n{missing} trials did not run (a lane crashed)")
    return 1 if failed or missing else 0


if __name__ == "__main__":
    sys.exit(main())

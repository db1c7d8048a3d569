"""Model-based tests: random sequences of operations against a reference model of the semantics.

A hypothesis `RuleBasedStateMachine` drives a real repository with a small fixed
DAG of shell nodes through publishes, runs, replays, definition changes and
SIGKILLed `gdag run` processes. Beside it, `Model` is a pure-Python simulation
of what DESIGN.md §5 and docs/architecture.md promise:

- an external publish always makes a new version; a node's output gets a new
  version only when its bytes change (early cutoff), so downstream does not run;
- a node is stale when the versions of its inputs differ from those its last
  session consumed, or its code changed; a node runs only when no node upstream
  of it is stale;
- `mode = "latest"` runs once on the current values; `mode = "each"` runs once
  per new input event, in log order, on the state as of that event;
- `replay --from 1` equals publishing the same values, in order, into a fresh
  log under the current definition, running to quiescence after each one
  (fresh versions on the new chain: they count again from 1).

After every completed run (and replay) the repository, read back with the `git`
binary, must equal the model: every output's value and version, every node's
`@done.json` inputs, status and code, no session refs left, no session merged
twice; and `git fsck --strict` is clean at the end of every sequence.

A killed run leaves the log somewhere along the run's sequence of merges, so
after a kill the model holds every state that sequence (in any order the
scheduler may take) can reach; the next completed run must land on one of them
run to quiescence, and the model follows that one.

Counterexamples (hypothesis's shrunk ones, and one built by hand while modelling
crashes across replays) are plain regression tests at the end.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conftest import fsck, git
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    precondition,
    rule,
    run_state_machine_as_test,
)

from gdag.execute import run_session
from gdag.executors import executor_for
from gdag.replay import Replay
from gdag.runner import Engine, Pending
from gdag.session import Session, Spec
from gdag.workspace import ValueSource, Workspace

LOG_REF = "refs/gdag/logs/main"

# -- the DAG ---------------------------------------------------------------------
#
#   src ──> up ──> a ──> tag ──> b ──┐
#    │                               ├──> report ──> r
#   num ──> parity ──> par ──────────┘
#    │
#    └────> hist (mode = "each", inputs src and num) ──> h
#
# `up` cuts off ("a" and "A" both give "A"), `parity` cuts off most of the time,
# `hist` runs once per event of src or num. `up`, `parity` and `hist` each have
# two variants of their command: switching one is a definition change.

SRC_VALUES = ["a", "A", "b", "ab"]
NUM_VALUES = ["0", "1", "2", "3", "4", "5"]

COMMANDS: dict[str, list[str]] = {
    "up": [
        'tr a-z A-Z < "$GDAG_IN_X" > "$GDAG_OUT/a"',
        '{ tr a-z A-Z < "$GDAG_IN_X"; printf "!"; } > "$GDAG_OUT/a"',
    ],
    "tag": ['printf "t:" > "$GDAG_OUT/b"; cat "$GDAG_IN_X" >> "$GDAG_OUT/b"'],
    "parity": [
        'n=$(cat "$GDAG_IN_N"); if [ $((n % 2)) -eq 0 ]; then printf even; else printf odd; fi > "$GDAG_OUT/par"',
        'n=$(cat "$GDAG_IN_N"); printf "r%s" $((n % 3)) > "$GDAG_OUT/par"',
    ],
    "hist": [
        'x=-; n=-; if [ -n "${GDAG_IN_X:-}" ]; then x=$(cat "$GDAG_IN_X"); fi; '
        'if [ -n "${GDAG_IN_N:-}" ]; then n=$(cat "$GDAG_IN_N"); fi; '
        'printf "%s/%s" "$x" "$n" > "$GDAG_OUT/h"',
        'x=-; n=-; if [ -n "${GDAG_IN_X:-}" ]; then x=$(cat "$GDAG_IN_X"); fi; '
        'if [ -n "${GDAG_IN_N:-}" ]; then n=$(cat "$GDAG_IN_N"); fi; '
        'printf "%s+%s" "$n" "$x" > "$GDAG_OUT/h"',
    ],
    "report": [
        'p=-; b=-; if [ -n "${GDAG_IN_P:-}" ]; then p=$(cat "$GDAG_IN_P"); fi; '
        'if [ -n "${GDAG_IN_B:-}" ]; then b=$(cat "$GDAG_IN_B"); fi; '
        'printf "%s|%s" "$p" "$b" > "$GDAG_OUT/r"'
    ],
}
INPUTS: dict[str, dict[str, str]] = {
    "up": {"x": "src"},
    "tag": {"x": "a"},
    "parity": {"n": "num"},
    "hist": {"x": "src", "n": "num"},
    "report": {"p": "par", "b": "b"},
}
OUTPUT = {"up": "a", "tag": "b", "parity": "par", "hist": "h", "report": "r"}
MODE = {"hist": "each"}
UPSTREAM: dict[str, set[str]] = {
    "up": set(),
    "tag": {"up"},
    "parity": set(),
    "hist": set(),
    "report": {"up", "tag", "parity"},
}
ORDER = ["hist", "parity", "up", "tag", "report"]  # a topological order
VARIANT_NODES = ["up", "parity", "hist"]


def compute(node: str, variant: int, args: dict[str, str | None]) -> str:
    """What a node's command writes, given its inputs (None: absent)."""
    if node == "up":
        return str(args["x"]).upper() + ("!" if variant else "")
    if node == "tag":
        return "t:" + str(args["x"])
    if node == "parity":
        n = int(str(args["n"]))
        return ("even" if n % 2 == 0 else "odd") if variant == 0 else f"r{n % 3}"
    if node == "hist":
        x, n = args["x"] or "-", args["n"] or "-"
        return f"{x}/{n}" if variant == 0 else f"{n}+{x}"
    if node == "report":
        return f"{args['p'] or '-'}|{args['b'] or '-'}"
    raise AssertionError(node)


def definition_text(variants: dict[str, int]) -> str:
    parts = []
    for node in ORDER:
        cmd = COMMANDS[node][variants.get(node, 0)]
        inputs = ", ".join(f'{arg} = "{out}"' for arg, out in INPUTS[node].items())
        parts.append(
            f"[nodes.{node}]\nrun = '{cmd}'\ninputs = {{ {inputs} }}\n"
            f'publishes = ["{OUTPUT[node]}"]\n'
            + (f'mode = "{MODE[node]}"\n' if node in MODE else "")
        )
    return "\n".join(parts)


def write_definition(repo: Path, variants: dict[str, int]) -> None:
    (repo / "gdag.toml").write_text(definition_text(variants))


# -- the reference model -------------------------------------------------------------

# Known gdag bugs. Each gets a regression test at the end of this file that
# asserts the specified behaviour (strict xfail while the bug is open), and a
# flag: while it is True the state machine stays green around the bug (the model
# emulates it, or the rules avoid what triggers it); once the bug is fixed and
# its test passes, set the flag to False. GDAG_MODEL_STRICT=1 turns every flag
# off, to hunt with the specified semantics only:
#   GDAG_MODEL_STRICT=1 GDAG_MODEL_EXAMPLES=300 pytest tests/test_model.py
STRICT = os.environ.get("GDAG_MODEL_STRICT") == "1"
# (fixed in 2b8d815) When an `each` node's code changed while it had unconsumed
# input events, gdag ran it once on the latest state and never on the events in
# between (runner.Engine._job). With the flag, the model emulates that.
EACH_CODE_CHANGE_SKIPS_EVENTS = False
# (fixed in 2b8d815) A finished session a crash left unmerged before a replay was
# merged into the replayed log by the next run's recovery; when its input versions
# (numbers on the replaced chain) were above the new chain's, the node then re-ran
# forever, every re-run refused as superseded. With the flag, the rules do not
# replay while the model holds a crashed session.
CRASHED_SESSION_CROSSES_REPLAY = False

# A run that merges more sessions than this is taken to run forever.
MAX_SESSIONS_PER_RUN = 100


class RunawayRun(AssertionError):
    pass


def bounded(limit: int = MAX_SESSIONS_PER_RUN) -> Any:
    """A progress callback that stops a run (by raising) after `limit` sessions."""
    count = 0

    def report(kind: str, data: dict[str, Any]) -> None:
        nonlocal count
        if kind == "finish":
            count += 1
            if count > limit:
                raise RunawayRun(
                    f"more than {limit} sessions in one run: {data['node']} "
                    f"again ({data['merged']}); the run never ends"
                )

    return report


def run(ws: Workspace) -> None:
    """`gdag run` in-process, to quiescence (failing if it never gets there)."""
    Engine(ws, jobs=1, report=bounded()).run()


def replay(ws: Workspace) -> None:
    """`gdag replay --from 1` in-process."""
    Replay(ws, 1, report=bounded()).run("1")


@dataclass(frozen=True)
class Version:
    version: int
    value: str
    pos: int  # the model's event counter: only the order matters
    external: bool  # an external publish (else a node's session)


@dataclass(frozen=True)
class Crashed:
    """A finished session whose process died before merging it (or before deleting its ref)."""

    node: str
    variant: int
    inputs: tuple[tuple[str, int], ...]
    value: str
    merged: bool


@dataclass
class Model:
    """Outputs (with their history), nodes' last sessions, sessions left by crashes."""

    history: dict[str, list[Version]] = field(default_factory=dict)
    done: dict[str, tuple[int, dict[str, int]]] = field(default_factory=dict)
    crashed: list[Crashed] = field(default_factory=list)  # in the order recovery takes them
    pos: int = 0

    def copy(self) -> Model:
        return copy.deepcopy(self)

    # -- reading -----------------------------------------------------------------

    def at(self, name: str, pos: int | None = None) -> Version | None:
        found = None
        for v in self.history.get(name, []):
            if pos is None or v.pos <= pos:
                found = v
        return found

    def versions(self, node: str, pos: int | None = None) -> dict[str, int]:
        """Input output -> version, of the inputs present (as of `pos`)."""
        found = {}
        for out in INPUTS[node].values():
            v = self.at(out, pos)
            if v is not None:
                found[out] = v.version
        return found

    def work(self, node: str, variant: int) -> tuple[bool, int | None]:
        """(stale, event position to run on; None = the latest state)."""
        current = self.versions(node)
        if not current:
            return False, None  # waiting for inputs (when = "any")
        done = self.done.get(node)
        code_changed = done is not None and done[0] != variant
        if done is not None and not code_changed and done[1] == current:
            return False, None
        if MODE.get(node) != "each":
            return True, None
        if code_changed and EACH_CODE_CHANGE_SKIPS_EVENTS:
            return True, None
        recorded = done[1] if done is not None else {}
        earliest = None
        for out, version in current.items():
            seen = recorded.get(out, 0)
            if version > seen:
                pos = self.history[out][seen].pos  # version seen+1: the oldest unconsumed
                earliest = pos if earliest is None else min(earliest, pos)
        return True, earliest

    def ready(self, variants: dict[str, int]) -> list[str]:
        stale = {n for n in ORDER if self.work(n, variants[n] if n in variants else 0)[0]}
        return [n for n in ORDER if n in stale and not UPSTREAM[n] & stale]

    def observable(self) -> tuple[Any, ...]:
        outputs = tuple(
            sorted((name, hist[-1].version, hist[-1].value) for name, hist in self.history.items())
        )
        done = tuple(
            sorted(
                (node, variant, tuple(sorted(ins.items())))
                for node, (variant, ins) in self.done.items()
            )
        )
        return outputs, done

    def key(self) -> tuple[Any, ...]:
        """Observable state, crashed sessions, and the order of external events."""
        order = tuple(
            sorted(
                (name, tuple((v.version, v.value, v.pos if v.external else None) for v in hist))
                for name, hist in self.history.items()
            )
        )
        return self.observable(), tuple(self.crashed), order

    # -- events ------------------------------------------------------------------

    def publish(self, name: str, value: str) -> None:
        self.pos += 1
        hist = self.history.setdefault(name, [])
        hist.append(Version(len(hist) + 1, value, self.pos, True))

    def session(self, node: str, variant: int) -> tuple[dict[str, int], str]:
        """What a session of `node` would consume and compute now."""
        stale, pos = self.work(node, variant)
        assert stale, node
        args = {
            arg: (v.value if (v := self.at(out, pos)) else None)
            for arg, out in INPUTS[node].items()
        }
        return self.versions(node, pos), compute(node, variant, args)

    def merge(self, node: str, variant: int, inputs: dict[str, int], value: str) -> None:
        """A session's merge-back: one event; the output cut off if its bytes are unchanged."""
        self.pos += 1
        hist = self.history.setdefault(OUTPUT[node], [])
        if not hist or hist[-1].value != value:
            hist.append(Version(len(hist) + 1, value, self.pos, False))
        self.done[node] = (variant, dict(inputs))

    def run_node(self, node: str, variant: int) -> None:
        self.merge(node, variant, *self.session(node, variant))

    def crash(self, node: str, variant: int, merged: bool) -> None:
        """A session of `node` finishes; its process dies before merging (or after)."""
        inputs, value = self.session(node, variant)
        if merged:
            self.merge(node, variant, inputs, value)
        self.crashed.append(Crashed(node, variant, tuple(sorted(inputs.items())), value, merged))
        self.crashed.sort(key=lambda c: c.node)  # recovery takes them by id: node, then time

    def recover_one(self, variants: dict[str, int], keep_ref: bool = False) -> None:
        """Recovery of the first crashed session: merged unless superseded.

        Superseded: the node's last session has the same code and consumed input
        versions at least as new, or the node's code in force is another one.
        """
        c = self.crashed.pop(0)
        done = self.done.get(c.node)
        covered = (
            done is not None
            and done[0] == c.variant
            and all(done[1].get(name, 0) >= v for name, v in c.inputs)
        )
        if not covered and variants.get(c.node, 0) == c.variant:
            self.merge(c.node, c.variant, dict(c.inputs), c.value)
            if keep_ref:  # killed between the merge and deleting the ref
                self.crashed.insert(0, Crashed(c.node, c.variant, c.inputs, c.value, True))

    def run(self, variants: dict[str, int]) -> None:
        """`gdag run` to quiescence: recovery, then any ready node (the result is the same)."""
        while self.crashed:
            self.recover_one(variants)
        while ready := self.ready(variants):
            self.run_node(ready[0], variants.get(ready[0], 0))

    def reachable(self, variants: dict[str, int]) -> list[Model]:
        """Every state a run can leave behind when killed, whatever its scheduling."""
        seen: dict[Any, Model] = {}
        m = self
        while True:  # killed during recovery
            seen.setdefault(m.key(), m)
            if not m.crashed:
                break
            kept = m.copy()
            kept.recover_one(variants, keep_ref=True)
            seen.setdefault(kept.key(), kept)
            m = m.copy()
            m.recover_one(variants)
        todo = [m]
        while todo:  # killed between sessions
            m = todo.pop()
            for node in m.ready(variants):
                nxt = m.copy()
                nxt.run_node(node, variants.get(node, 0))
                if nxt.key() not in seen:
                    seen[nxt.key()] = nxt
                    todo.append(nxt)
        return list(seen.values())

    @staticmethod
    def replayed(publishes: list[tuple[str, str]], variants: dict[str, int]) -> Model:
        """A fresh log with the same publishes, running to quiescence after each."""
        m = Model()
        for name, value in publishes:
            m.publish(name, value)
            m.run(variants)
        return m  # sessions crashed on the replaced chain are dropped


# -- reading the repository back with git ------------------------------------------


@dataclass
class Real:
    outputs: dict[str, tuple[int, str]]
    done: dict[str, dict[str, Any]]
    codes: dict[str, str]  # node -> code hash in the tip's dag.json


def read_repo(repo: Path) -> Real:
    listing = git("ls-tree", "-r", "--full-tree", LOG_REF, cwd=repo).splitlines()
    wanted: dict[str, str] = {}
    for line in listing:
        meta, path = line.split("\t", 1)
        sha = meta.split()[2]
        if (
            path == "dag.json"
            or (path.startswith("outputs/") and path.endswith(("/@value", "/@meta.json")))
            or (path.startswith("nodes/") and path.endswith("/@done.json"))
        ):
            wanted[path] = sha
    blobs = cat_blobs(repo, list(wanted.values()))
    data = {path: blobs[sha] for path, sha in wanted.items()}
    outputs = {}
    for path, blob in data.items():
        if path.startswith("outputs/") and path.endswith("/@value"):
            name = path[len("outputs/") : -len("/@value")]
            meta = json.loads(data[f"outputs/{name}/@meta.json"])
            outputs[name] = (meta["version"], blob.decode())
    done = {
        path.split("/")[1]: json.loads(blob)
        for path, blob in data.items()
        if path.startswith("nodes/")
    }
    dag = json.loads(data["dag.json"])
    codes = {name: node["code"] for name, node in dag["nodes"].items()}
    return Real(outputs, done, codes)


def cat_blobs(repo: Path, shas: list[str]) -> dict[str, bytes]:
    proc = subprocess.run(
        ["git", "cat-file", "--batch"],
        cwd=repo,
        input="".join(f"{s}\n" for s in shas).encode(),
        capture_output=True,
        check=True,
    )
    out, found, i = proc.stdout, {}, 0
    while i < len(out):
        nl = out.index(b"\n", i)
        sha, _, size = out[i:nl].decode().split()
        start = nl + 1
        found[sha] = out[start : start + int(size)]
        i = start + int(size) + 1
    return found


def session_refs(repo: Path) -> list[str]:
    return git("for-each-ref", "--format=%(refname)", "refs/gdag/sessions", cwd=repo).split()


def merged_sessions(repo: Path) -> list[str]:
    """The session ids of the session events on the log's first-parent chain."""
    text = git(
        "log",
        "--first-parent",
        "--format=%(trailers:key=Gdag-Session,valueonly,separator=%x2C)",
        LOG_REF,
        cwd=repo,
    )
    return [line for line in text.split() if line]


def real_view(real: Real) -> tuple[Any, ...]:
    """The repository in the model's terms: outputs and (node, inputs) of last sessions."""
    outputs = tuple(sorted((name, v, value) for name, (v, value) in real.outputs.items()))
    done = tuple(
        sorted((node, tuple(sorted(d.get("inputs", {}).items()))) for node, d in real.done.items())
    )
    return outputs, done


def model_view(m: Model) -> tuple[Any, ...]:
    outputs, done = m.observable()
    return outputs, tuple((node, ins) for node, _, ins in done)


def check_against(repo: Path, m: Model, variants: dict[str, int], settled: bool = True) -> None:
    """The repository equals the model: values, versions, consumed inputs, status, code.

    `settled`: after a completed run, which leaves no session refs behind.
    """
    real = read_repo(repo)
    assert real_view(real) == model_view(m), explain(real, m)
    for node, d in real.done.items():
        assert d.get("status") == "ok", (node, d)
        expect_current = m.done[node][0] == variants.get(node, 0)
        assert (d.get("code") == real.codes[node]) == expect_current, (node, d, variants)
    if settled:
        assert session_refs(repo) == []
    sessions = merged_sessions(repo)
    assert len(sessions) == len(set(sessions)), f"a session was merged twice: {sessions}"


def explain(real: Real, m: Model) -> str:
    r_out, r_done = real_view(real)
    m_out, m_done = model_view(m)
    return (
        "repository and model differ\n"
        f"  outputs (name, version, value):\n    repo : {r_out}\n    model: {m_out}\n"
        f"  last sessions (node, inputs):\n    repo : {r_done}\n    model: {m_done}"
    )


def crash_session(ws: Workspace, node: str, merged: bool) -> None:
    """What a run killed between a session's `done` commit and its merge-back leaves.

    With `merged`, killed between the merge-back and deleting the session's ref.
    The node must be stale; its session is real (its command runs).
    """
    dag = ws.current_dag(ws.log.require_tip())
    tip = ws.log.require_tip()
    spec_node = dag.nodes[node]
    p = Engine(ws, jobs=1).pending(node, spec_node, tip, retry_failed=False)
    assert isinstance(p, Pending), f"{node} is not stale: {p}"
    session = Session.start(ws.log, Spec(node, spec_node.code, p.inputs, tip, p.state_at))
    executor = executor_for("local")
    session.finish(run_session(executor, ws.store, session, spec_node, dag, ws.log.name))
    executor.close()
    if merged:
        session.merge_back()
        assert ws.store.cas_ref(session.ref, None, session.head)


# -- the state machine -------------------------------------------------------------


def step(method: Any) -> Any:
    """Mark the machine broken when a rule fails, so teardown does not check on top."""

    @functools.wraps(method)
    def wrapper(self: GdagMachine, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except BaseException:
            self.broken = True
            raise

    return wrapper


KILL_DELAYS = [0.0, 0.005, 0.01, 0.02, 0.035, 0.05]


class GdagMachine(RuleBasedStateMachine):
    def __init__(self, base: Path) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="model-", dir=base))
        self.repo = self.dir / "repo"
        self.ws, _ = Workspace.init(self.repo, None)
        self.variants = {node: 0 for node in VARIANT_NODES}
        write_definition(self.repo, self.variants)
        self.publishes: list[tuple[str, str]] = []
        # Every state the repository may be in (more than one after a kill).
        self.models: list[Model] = [Model()]
        self.broken = False  # a step failed: teardown only cleans up

    # -- rules -------------------------------------------------------------------

    @rule(value=st.sampled_from(SRC_VALUES))
    @step
    def publish_src(self, value: str) -> None:
        self._publish("src", value)

    @rule(value=st.sampled_from(NUM_VALUES))
    @step
    def publish_num(self, value: str) -> None:
        self._publish("num", value)

    def _publish(self, name: str, value: str) -> None:
        self.ws.publish(name, ValueSource(data=value.encode()))
        self.publishes.append((name, value))
        for m in self.models:
            m.publish(name, value)

    @rule(node=st.sampled_from(VARIANT_NODES))
    @step
    def change_definition(self, node: str) -> None:
        """Switch the node's command to its other variant: the node is stale."""
        self.variants[node] = 1 - self.variants[node]
        write_definition(self.repo, self.variants)

    @rule()
    @step
    def run(self) -> None:
        run(self.ws)
        self._converged()

    # Preconditions depend only on what the rules drew, never on how a kill landed
    # (`self.models` after `kill_run`): hypothesis replays draws and needs the same
    # rules enabled each time. A rule that needs one known state runs first instead.
    def _settle(self) -> None:
        """After a kill the model holds several possible states: run, and know which."""
        if len(self.models) != 1:
            run(self.ws)
            self._converged()

    @precondition(
        lambda self: (
            bool(self.publishes) and not (CRASHED_SESSION_CROSSES_REPLAY and self.models[0].crashed)
        )
    )
    @rule()
    @step
    def replay(self) -> None:
        """`gdag replay --from 1` under the definition in force.

        Not right after a kill (before the next run): the model does not know which
        sessions a kill left finished but unmerged; `crash_session` covers those.
        """
        self._settle()
        replay(self.ws)
        expected = Model.replayed(self.publishes, self.variants)
        check_against(self.repo, expected, self.variants, settled=False)
        self.models = [expected]

    @rule(after=st.integers(0, 5), delay=st.sampled_from(KILL_DELAYS), jobs=st.integers(1, 2))
    @step
    def kill_run(self, after: int, delay: float, jobs: int) -> None:
        """`gdag run` in its own process, SIGKILLed `delay` s after its `after`-th event.

        Its events (`--json`: a session started or finished, one recovered, ...) time
        the kill within the run whatever the machine's load; `after = 0` counts from
        the start of the process (a kill while it starts up, recovers, or schedules).
        """
        err = self.dir / "kill.err"
        with open(err, "wb") as err_file:
            proc = subprocess.Popen(
                [sys.executable, "-m", "gdag", "run", "-j", str(jobs), "--json"],
                cwd=self.repo,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err_file,
            )
            assert proc.stdout is not None
            seen = 0
            while seen < after and proc.stdout.readline():
                seen += 1
            time.sleep(delay if after else 0.1 + 4 * delay)
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.stdout.read()
            rc = proc.wait(timeout=60)
        if rc == -signal.SIGKILL:
            candidates = [c for m in self.models for c in m.reachable(self.variants)]
            self.models = list({m.key(): m for m in candidates}.values())
        else:
            assert rc == 0, err.read_text()
            self._converged()

    @rule(choice=st.integers(0, 4), merged=st.booleans())
    @step
    def crash_session(self, choice: int, merged: bool) -> None:
        """A run dies right after a session's `done` commit (or right after its merge-back).

        Those windows last milliseconds, so `kill_run` seldom lands in them: this
        builds the same leftover exactly, with a ready node's real session.
        """
        self._settle()
        ready = self.models[0].ready(self.variants)
        if not ready:
            return
        node = ready[choice % len(ready)]
        crash_session(self.ws, node, merged)
        self.models[0].crash(node, self.variants.get(node, 0), merged)

    # -- checks ------------------------------------------------------------------

    def _converged(self) -> None:
        """After a completed run: the repository is one of the model's states, run through."""
        for m in self.models:
            m.run(self.variants)
        real = read_repo(self.repo)
        matching = [m for m in self.models if model_view(m) == real_view(real)]
        if not matching:
            raise AssertionError(
                f"the repository is none of the model's {len(self.models)} possible states; "
                "the first one:\n" + explain(real, self.models[0])
            )
        self.models = [matching[0]]
        check_against(self.repo, self.models[0], self.variants)

    def teardown(self) -> None:
        """Every sequence ends with a run: the repository equals the model, fsck is clean."""
        try:
            if not self.broken:
                run(self.ws)
                self._converged()
                fsck(self.repo)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


EXAMPLES = int(os.environ.get("GDAG_MODEL_EXAMPLES", "15"))
STEPS = int(os.environ.get("GDAG_MODEL_STEPS", "12"))


def test_state_machine(tmp_path: Path) -> None:
    sequences = 0

    def machine() -> GdagMachine:
        nonlocal sequences
        sequences += 1
        if sequences % 100 == 0:  # progress of a long run (pytest -s)
            print(f"model: {sequences} sequences so far", flush=True)
        return GdagMachine(tmp_path)

    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        ),
    )
    # What a long run reports (pytest -s): sequences run, each checked to the end.
    print(f"\nmodel: {sequences} sequences of up to {STEPS} steps (max_examples={EXAMPLES})")
    assert sequences >= EXAMPLES


# -- shrunk counterexamples ----------------------------------------------------------


def new_repo(tmp_path: Path) -> tuple[Path, Workspace]:
    repo = tmp_path / "repo"
    ws, _ = Workspace.init(repo, None)
    write_definition(repo, {})
    return repo, ws


def publish(ws: Workspace, name: str, value: str) -> None:
    ws.publish(name, ValueSource(data=value.encode()))


def value_history(repo: Path, output: str) -> list[tuple[int, str]]:
    """(version, value) of every version of `output` along the log, oldest first."""
    commits = git("log", "--first-parent", "--reverse", "--format=%H", LOG_REF, cwd=repo).split()
    found: list[tuple[int, str]] = []
    for c in commits:
        proc = subprocess.run(
            ["git", "show", f"{c}:outputs/{output}/@meta.json"], cwd=repo, capture_output=True
        )
        if proc.returncode != 0:
            continue
        version = json.loads(proc.stdout)["version"]
        if not found or found[-1][0] != version:
            found.append((version, git("show", f"{c}:outputs/{output}/@value", cwd=repo)))
    return found


def test_each_node_with_changed_code_runs_once_per_unconsumed_event(tmp_path: Path) -> None:
    """Shrunk by the state machine (there with a replay as the first run).

    gdag ran hist once, on num v3 only: h went "-/0" v1 -> "2+-" v2.
    """
    repo, ws = new_repo(tmp_path)
    publish(ws, "num", "0")
    run(ws)  # hist consumed num v1: h = "-/0"
    write_definition(repo, {"hist": 1})  # hist now writes "n+x"
    publish(ws, "num", "0")
    publish(ws, "num", "2")
    run(ws)
    # hist runs on num v2, then on num v3, each under its new code.
    assert value_history(repo, "h") == [(1, "-/0"), (2, "0+-"), (3, "2+-")]
    assert read_repo(repo).done["hist"]["inputs"] == {"num": 3}
    fsck(repo)


def test_session_crashed_before_replay_does_not_reach_the_new_log(tmp_path: Path) -> None:
    """Found while modelling crashed sessions (`crash_session`) across replays.

    Written by hand: hypothesis did not reach it in 300 strict examples (it needs a
    definition change that is undone, a crash downstream of it, then a replay).
    The run after the replay never ended (`RunawayRun` after 100 sessions).
    """
    repo, ws = new_repo(tmp_path)
    publish(ws, "src", "a")
    run(ws)  # a = "A" v1, b = "t:A" v1
    write_definition(repo, {"up": 1})  # up now appends "!"
    crash_session(ws, "up", merged=True)  # a = "A!" v2
    crash_session(ws, "tag", merged=False)  # tag computed "t:A!" on a v2; killed before merging
    write_definition(repo, {"up": 0})
    replay(ws)  # the new chain: a = "A" v1, b = "t:A" v1, tag consumed a v1
    # Recovery merges tag's session (a v2 is above the new chain's v1): b = "t:A!",
    # tag consumed "a v2". tag is stale (a v1 != v2) and runs on a v1, but its merge
    # is refused as superseded (v2 >= v1), so it is stale again: the run never ends.
    run(ws)
    expected = Model.replayed([("src", "a")], {"up": 0})
    check_against(repo, expected, {"up": 0})
    assert all(value != "t:A!" for _, value in value_history(repo, "b"))
    fsck(repo)


def test_session_merged_by_a_killed_run_is_never_merged_again(tmp_path: Path) -> None:
    """Shrunk by hypothesis (a 2,000-example run, seed 20261127).

    A run killed between a session's merge-back and deleting its ref leaves the
    session behind, already applied. Recovery took it as unmerged whenever the node's
    @done no longer covered it: here a later session of the same node (under other
    code) had replaced @done, and the first session's code was in force again, so the
    first session was merged a second time.
    """
    repo, ws = new_repo(tmp_path)
    m, variants = Model(), {node: 0 for node in VARIANT_NODES}
    publish(ws, "src", "a")
    m.publish("src", "a")
    crash_session(ws, "hist", merged=True)
    m.crash("hist", 0, True)
    variants["hist"] = 1
    write_definition(repo, variants)
    crash_session(ws, "hist", merged=True)
    m.crash("hist", 1, True)
    variants["hist"] = 0
    write_definition(repo, variants)  # the first session's code is in force again
    run(ws)
    m.run(variants)
    check_against(repo, m, variants)  # includes: no session merged twice
    fsck(repo)


def test_replay_from_a_session_after_the_last_publish_runs_what_it_leaves_stale(
    tmp_path: Path,
) -> None:
    """Shrunk by hypothesis (a 2,000-example run, seed 20261128), made deterministic.

    Sessions recorded under another definition after the last publish: replay starts
    from the first of them, with no publish left to republish, and used to run nothing,
    leaving the nodes those sessions had served without outputs.
    """
    repo, ws = new_repo(tmp_path)
    publish(ws, "num", "0")
    write_definition(repo, {"up": 1})
    run(ws)  # hist, parity, report run under the definition with up = 1
    write_definition(repo, {"up": 0})
    run(ws)  # only a dag event: their code did not change
    replay(ws)
    expected = Model.replayed([("num", "0")], {"up": 0})
    check_against(repo, expected, {"up": 0})
    fsck(repo)

"""Node semantics through real runs: chains, diamonds, modes, failures, cutoff, staleness."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import define, fsck, gdag, git, wait_for


def run(repo: Path, *args: str, code: int = 0) -> str:
    r = gdag("run", *args, cwd=repo)
    assert r.returncode == code, r.stderr
    return r.stderr


def pub(repo: Path, output: str, value: str, *args: str) -> None:
    r = gdag("publish", output, value, "--no-run", *args, cwd=repo)
    assert r.returncode == 0, r.stderr


def value(repo: Path, output: str) -> str:
    r = gdag("lookup", output, cwd=repo)
    assert r.returncode == 0, r.stderr
    return r.text


def meta(repo: Path, output: str) -> dict:
    return json.loads(git("show", f"refs/gdag/logs/main:outputs/{output}/@meta.json", cwd=repo))


def done(repo: Path, node: str, rev: str = "refs/gdag/logs/main") -> dict:
    return json.loads(git("show", f"{rev}:nodes/{node}/@done.json", cwd=repo))


def sessions(repo: Path, node: str) -> list[str]:
    """Statuses of the merged sessions of `node`, oldest first."""
    out = git(
        "log",
        "--first-parent",
        "--reverse",
        "--format=%(trailers:key=Gdag-Node,valueonly,separator=)|"
        "%(trailers:key=Gdag-Status,valueonly,separator=)",
        "refs/gdag/logs/main",
        cwd=repo,
    )
    return [line.split("|")[1] for line in out.splitlines() if line.split("|")[0] == node]


COPY = 'cp "$GDAG_IN_X" "$GDAG_OUT/{out}"'


def test_chain_propagates_and_merges_as_session_commits(repo: Path) -> None:
    define(
        repo,
        """
        [nodes.a]
        run = 'cp "$GDAG_IN_X" "$GDAG_OUT/b"; printf "+a" >> "$GDAG_OUT/b"'
        inputs = { x = "src" }
        publishes = ["b"]
        [nodes.b]
        run = 'cp "$GDAG_IN_X" "$GDAG_OUT/c"; printf "+b" >> "$GDAG_OUT/c"'
        inputs = { x = "b" }
        publishes = ["c"]
    """,
    )
    r = gdag("publish", "src", "v", cwd=repo)  # publish runs the subscribers itself
    assert r.returncode == 0, r.stderr
    assert value(repo, "c") == "v+a+b"
    assert done(repo, "b")["inputs"] == {"b": 1}
    # One merge commit per session, second parent the session branch.
    merges = git(
        "log", "--first-parent", "--merges", "--format=%s|%P", "refs/gdag/logs/main", cwd=repo
    ).splitlines()
    assert [m.split("|")[0] for m in merges] == ["session b ok", "session a ok"]
    for m in merges:
        second = m.split("|")[1].split()[1]
        assert "done" in git("log", "-1", "--format=%s", second, cwd=repo)
    assert git("for-each-ref", "refs/gdag/sessions", cwd=repo) == ""
    assert "nothing to do" in run(repo)
    fsck(repo)


def test_diamond_runs_join_once_with_both_inputs(repo: Path) -> None:
    define(
        repo,
        """
        [nodes.left]
        run = 'printf L > "$GDAG_OUT/l"'
        inputs = { x = "src" }
        publishes = ["l"]
        [nodes.right]
        run = 'printf R > "$GDAG_OUT/r"'
        inputs = { x = "src" }
        publishes = ["r"]
        [nodes.join]
        run = 'cat "$GDAG_IN_L" "$GDAG_IN_R" > "$GDAG_OUT/j"'
        inputs = { l = "l", r = "r" }
        publishes = ["j"]
    """,
    )
    pub(repo, "src", "1")
    run(repo, "-j", "2")
    assert value(repo, "j") == "LR"
    assert sessions(repo, "join") == ["ok"]
    assert done(repo, "join")["inputs"] == {"l": 1, "r": 1}


def test_fan_out_fan_in_with_patterns(repo: Path) -> None:
    define(
        repo,
        """
        [nodes.split]
        run = 'for w in $(cat "$GDAG_IN_X"); do printf "$w" > "$GDAG_OUT/words/$w"; done'
        inputs = { x = "text" }
        publishes = ["words/*"]
        [nodes.gather]
        run = 'ls "$GDAG_IN_W" | sort | tr "\\n" , > "$GDAG_OUT/all"'
        inputs = { w = "words/*" }
        publishes = ["all"]
    """,
    )
    pub(repo, "text", "b a c")
    run(repo)
    assert value(repo, "words/a") == "a"
    assert value(repo, "all") == "a,b,c,"
    assert gdag("lookup", "words/*", cwd=repo).text.split() == ["words/a", "words/b", "words/c"]


@pytest.mark.parametrize(("mode", "runs"), [("each", 3), ("latest", 1)])
def test_each_runs_per_event_latest_coalesces(repo: Path, mode: str, runs: int) -> None:
    define(
        repo,
        f"""
        [nodes.acc]
        run = 'cat "$GDAG_IN_X" >> seen.txt; cp "$GDAG_IN_X" "$GDAG_OUT/last"'
        inputs = {{ x = "ev" }}
        publishes = ["last"]
        mode = "{mode}"
    """,
    )
    for v in ("1", "2", "3"):
        pub(repo, "ev", v)
    run(repo)
    assert sessions(repo, "acc") == ["ok"] * runs
    assert (repo / "seen.txt").read_text() == ("123" if mode == "each" else "3")
    assert value(repo, "last") == "3"
    assert done(repo, "acc")["inputs"] == {"ev": 3}


def test_node_shape_masks_are_the_transitive_upstream_nodes() -> None:
    """The scheduler's upstream bit masks name exactly the nodes networkx finds as
    ancestors, on random definitions with plain and pattern outputs and inputs."""
    import random

    import networkx as nx

    from gdag.dag import Dag
    from gdag.graph import build_graph, node_shape

    rng = random.Random(7)
    for _ in range(20):
        nodes: dict[str, dict] = {}
        for i in range(40):
            publishes = [f"o{i}"] + ([f"dyn/{i}/*"] if rng.random() < 0.2 else [])
            pool = [f"o{j}" for j in range(i)] + [
                f"dyn/{j}/*" for j in range(i) if rng.random() < 0.1
            ]
            pool += ["dyn/*/x"] if i > 30 and rng.random() < 0.3 else []
            picks = rng.sample(pool, k=min(len(pool), rng.randint(0, 3)))
            nodes[f"n{i:02d}"] = {
                "kind": "shell",
                "command": "true",
                "inputs": {f"i{k}": p for k, p in enumerate(picks)},
                "publishes": publishes,
            }
        dag = Dag.from_json({"nodes": nodes})
        order, bit, masks = node_shape(dag)
        assert sorted(order) == sorted(nodes)
        g = build_graph(dag)
        for name in nodes:
            expected = {n for kind, n in nx.ancestors(g, ("node", name)) if kind == "node"}
            got = {order[i] for i in range(len(order)) if masks[name] >> i & 1}
            assert got == expected, name
            assert all(order.index(u) < order.index(name) for u in got)
            assert bit[name] == 1 << order.index(name)


def test_each_consumes_many_events_in_order_across_checkpoints(repo: Path) -> None:
    """45 pending events of `ev`, with events of another output between them (90
    offsets, past a checkpoint): one run serves every event once, oldest first."""
    from gdag.workspace import ValueSource, Workspace

    define(
        repo,
        f"""
        [nodes.acc]
        run = 'cat "$GDAG_IN_X" >> seen.txt; echo >> seen.txt; {COPY.format(out="last")}'
        inputs = {{ x = "ev" }}
        publishes = ["last"]
        mode = "each"
    """,
    )
    ws = Workspace.open(repo)
    for i in range(1, 46):
        ws.publish("ev", ValueSource(data=str(i).encode()))
        for k in range(i % 3):
            ws.publish("noise", ValueSource(data=f"{i}.{k}".encode()))
    run(repo)
    assert (repo / "seen.txt").read_text().split() == [str(i) for i in range(1, 46)]
    assert sessions(repo, "acc") == ["ok"] * 45
    assert done(repo, "acc")["inputs"] == {"ev": 45}
    fsck(repo)


def test_store_cache_keeps_within_its_budget(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A long run reads and writes a state tree per event: the store's cache of parsed
    objects and tree entries evicts its least recently used items at its budget instead
    of growing with the history; what is used again and again stays, and reads after
    evictions still return the right objects."""
    import gdag.objects
    from gdag.workspace import ValueSource, Workspace

    monkeypatch.setattr(gdag.objects, "CACHE_BYTES", 64 << 10)
    ws = Workspace.open(repo)
    for i in range(150):
        ws.publish(f"o/{i % 30}", ValueSource(data=b"%d" % i))
    store, peak = ws.store.objects, 0
    tip = ws.log.require_tip()
    family = store.tree_get(store.read_commit(tip).tree, [b"outputs", b"o"])
    assert family is not None
    kept = store.tree_entries(family.sha)
    cur: bytes | None = tip
    walked, seen = 0, set()
    while cur is not None:
        root = store.read_commit(cur).tree
        for name in store.tree_entries(store.tree_get(root, [b"outputs", b"o"]).sha):
            seen.add(store.tree_get(root, [b"outputs", b"o", name]).sha)
            store.tree_entries(store.tree_get(root, [b"outputs", b"o", name]).sha)
        # The tip's family tree, used at every step, is never evicted and read again.
        assert store.tree_entries(family.sha) is kept
        peak = max(peak, store._cached_bytes)
        assert store._cached_bytes == sum(store._costs.values())
        assert set(store._cache) | set(store._entries) | set(store._sorted) <= set(store._costs)
        walked += 1
        parents = store.read_commit(cur).parents
        cur = parents[0] if parents and walked < 150 else None
    assert peak <= 64 << 10
    assert len(seen) > len(store._entries)  # some were evicted
    assert len(store._cache) < 150
    assert store.read_blob(ws.lookup("o/29").value.sha) == b"149"


def test_each_offsets_learned_before_a_replay_are_checked_after_it(repo: Path) -> None:
    """An engine remembers where each version of an input was published; a replay
    that moves those versions to other offsets must not make it serve a wrong event."""
    from gdag.runner import Engine
    from gdag.workspace import Workspace

    define(
        repo,
        f"""
        [nodes.acc]
        run = '{COPY.format(out="last")}'
        inputs = {{ x = "ev" }}
        publishes = ["last"]
        mode = "each"
    """,
    )
    for v in ("1", "2", "3"):
        pub(repo, "ev", v)  # one after the other, no session between them
    before = {v: meta_at(repo, "ev", v)["offset"] for v in (1, 2, 3)}
    ws = Workspace.open(repo)
    engine = Engine(ws)
    root = ws.store.read_commit(ws.log.require_tip()).tree
    assert engine._offset_of(root, "ev", 1) == before[1]
    assert engine._version_offsets["ev"] == {1: before[1], 2: before[2]}
    # Replayed, each publish is followed by its session: v2 moves to a later offset.
    r = gdag("replay", "--from", "0", cwd=repo)
    assert r.returncode == 0, r.stderr
    root = ws.store.read_commit(ws.log.require_tip()).tree
    moved = meta_at(repo, "ev", 2)["offset"]
    assert moved > before[2]
    assert engine._offset_of(root, "ev", 2) == moved
    fsck(repo)


def meta_at(repo: Path, output: str, version: int) -> dict:
    """The metadata of `output` as the commit that published `version` left it (read
    with git, walking the log's first parents)."""
    log = git("log", "--first-parent", "--format=%H", "refs/gdag/logs/main", cwd=repo)
    for commit in log.split():
        r = subprocess.run(
            ["git", "show", f"{commit}:outputs/{output}/@meta.json"],
            cwd=repo,
            capture_output=True,
            text=True,
        )
        if r.returncode == 0 and json.loads(r.stdout)["version"] == version:
            found = json.loads(r.stdout)
            offset = git(
                "log", "-1", "--format=%(trailers:key=Gdag-Offset,valueonly)", commit, cwd=repo
            )
            if found["offset"] == int(offset):
                return found
    raise AssertionError(f"no commit published {output} v{version}")


def test_when_all_waits_and_absent_inputs_are_unset(repo: Path) -> None:
    define(
        repo,
        """
        [nodes.any]
        run = 'echo "a=${GDAG_IN_A-unset} b=${GDAG_IN_B-unset}" | sed "s#/[^ ]*/in/#in/#g" > "$GDAG_OUT/any"; cp "$GDAG_INPUTS" "$GDAG_OUT/manifest"'
        inputs = { a = "a", b = "b" }
        publishes = ["any", "manifest"]
        [nodes.all]
        run = 'cat "$GDAG_IN_A" "$GDAG_IN_B" > "$GDAG_OUT/both"'
        inputs = { a = "a", b = "b" }
        publishes = ["both"]
        when = "all"
    """,
    )
    pub(repo, "a", "A")
    run(repo)
    assert value(repo, "any") == "a=in/a b=unset\n"
    manifest = json.loads(value(repo, "manifest"))
    assert manifest["b"] is None and manifest["a"]["version"] == 1
    assert gdag("lookup", "both", cwd=repo).returncode == 3
    status = {s["node"]: s["state"] for s in json.loads(gdag("status", "--json", cwd=repo).stdout)}
    assert status == {"any": "up-to-date", "all": "waiting"}
    pub(repo, "b", "B")
    run(repo)
    assert value(repo, "both") == "AB"


def test_early_cutoff_stops_downstream(repo: Path) -> None:
    define(
        repo,
        """
        [nodes.parity]
        run = 'if [ $(( $(cat "$GDAG_IN_X") % 2 )) = 0 ]; then printf even; else printf odd; fi > "$GDAG_OUT/p"'
        inputs = { x = "n" }
        publishes = ["p"]
        [nodes.shout]
        run = 'tr a-z A-Z < "$GDAG_IN_P" > "$GDAG_OUT/loud"'
        inputs = { p = "p" }
        publishes = ["loud"]
    """,
    )
    pub(repo, "n", "1")
    run(repo)
    pub(repo, "n", "3")
    run(repo)
    assert meta(repo, "p")["version"] == 1
    assert sessions(repo, "parity") == ["ok", "ok"]
    assert sessions(repo, "shout") == ["ok"]
    pub(repo, "n", "4")
    run(repo)
    assert value(repo, "loud") == "EVEN" and meta(repo, "p")["version"] == 2


def test_failing_node_and_its_independent_sibling(repo: Path) -> None:
    define(
        repo,
        """
        [nodes.bad]
        run = 'echo boom >&2; exit 7'
        inputs = { x = "src" }
        publishes = ["bad_out"]
        [nodes.after_bad]
        run = 'cp "$GDAG_IN_X" "$GDAG_OUT/z"'
        inputs = { x = "bad_out" }
        publishes = ["z"]
        [nodes.good]
        run = 'cp "$GDAG_IN_X" "$GDAG_OUT/g"'
        inputs = { x = "src" }
        publishes = ["g"]
    """,
    )
    pub(repo, "src", "s")
    err = run(repo, code=1)
    assert "FAILED bad" in err and "boom" in err
    assert value(repo, "g") == "s"
    record = done(repo, "bad")
    assert record["status"] == "failed" and record["exit_code"] == 7
    assert "boom" in git("show", "refs/gdag/logs/main:nodes/bad/@log", cwd=repo)
    assert gdag("lookup", "z", cwd=repo).returncode == 3
    states = {s["node"]: s["state"] for s in json.loads(gdag("status", "--json", cwd=repo).stdout)}
    assert states == {"bad": "failed", "good": "up-to-date", "after_bad": "waiting"}
    assert "nothing to do" in run(repo)  # a failure is not retried on the same inputs...
    run(repo, "--retry-failed", code=1)  # ...unless asked
    assert sessions(repo, "bad") == ["failed", "failed"]


def test_fail_fast_stops_starting_new_nodes(repo: Path) -> None:
    define(
        repo,
        """
        [nodes.a_bad]
        run = 'exit 1'
        inputs = { x = "src" }
        [nodes.b_good]
        run = 'true'
        inputs = { x = "src" }
    """,
    )
    pub(repo, "src", "s")
    run(repo, "-j", "1", "--fail-fast", code=1)
    assert sessions(repo, "b_good") == []


def test_code_change_makes_node_stale(repo: Path) -> None:
    toml = """
        [nodes.greet]
        run = 'printf "{word} " > "$GDAG_OUT/g"; cat "$GDAG_IN_X" >> "$GDAG_OUT/g"'
        inputs = {{ x = "name" }}
        publishes = ["g"]
    """
    define(repo, toml.format(word="hello"))
    pub(repo, "name", "ann")
    run(repo)
    define(repo, toml.format(word="bye"))
    states = json.loads(gdag("status", "--json", cwd=repo).stdout)
    assert states[0]["state"] == "stale" and "code changed" in states[0]["reason"]
    run(repo)
    assert value(repo, "g") == "bye ann"
    kinds = git(
        "log",
        "--first-parent",
        "--format=%(trailers:key=Gdag-Event,valueonly)",
        "refs/gdag/logs/main",
        cwd=repo,
    ).split()
    assert kinds.count("dag") == 2


def test_a_definition_recorded_during_a_run_is_followed_by_it(repo: Path) -> None:
    """gdag.toml edited while `gdag run` runs, and the edit recorded by another command
    (a publish from a hook, say): the run finishes the node it runs, then goes on under
    the definition now in force, instead of running the node again and again only to
    have each merge superseded by the code check."""
    toml = """
        [nodes.greet]
        run = 'while [ ! -e "$GDAG_REPO/.git/go" ]; do sleep 0.02; done; printf {word} > "$GDAG_OUT/g"'
        inputs = {{ x = "name" }}
        publishes = ["g"]
    """
    define(repo, toml.format(word="hello"))
    pub(repo, "name", "ann")
    running = subprocess.Popen(
        [sys.executable, "-m", "gdag", "run"],
        cwd=repo,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not git("for-each-ref", "refs/gdag/sessions", cwd=repo):
        assert time.monotonic() < deadline and running.poll() is None
        time.sleep(0.02)
    define(repo, toml.format(word="bye"))
    pub(repo, "name", "bob")  # records the new definition
    (repo / ".git" / "go").write_text("")
    _, err = running.communicate(timeout=60)
    assert running.returncode == 0, err
    assert value(repo, "g") == "bye"
    states = json.loads(gdag("status", "--json", cwd=repo).stdout)
    assert states[0]["state"] == "up-to-date", states


def test_publishing_outside_publishes_is_refused(repo: Path) -> None:
    define(
        repo,
        """
        [nodes.sneaky]
        run = 'printf x > "$GDAG_OUT/elsewhere"'
        inputs = { x = "src" }
        publishes = ["mine"]
        [nodes.sneaky_cli]
        run = 'gdag publish other/place 1'
        inputs = { x = "src" }
        publishes = ["mine2"]
    """,
    )
    pub(repo, "src", "s")
    err = run(repo, code=1)
    assert "may not publish 'elsewhere'" in err
    assert "may not publish 'other/place'" in err
    for name in ("elsewhere", "other/place"):
        assert gdag("lookup", name, cwd=repo).returncode == 3


def test_gdag_publish_inside_a_session_writes_into_it(repo: Path) -> None:
    define(
        repo,
        """
        [nodes.multi]
        run = 'gdag publish parts/one "$(cat "$GDAG_IN_X")-1" && printf 2 | gdag publish parts/two -'
        inputs = { x = "src" }
        publishes = ["parts/*"]
    """,
    )
    pub(repo, "src", "s")
    run(repo)
    assert value(repo, "parts/one") == "s-1" and value(repo, "parts/two") == "2"
    assert meta(repo, "parts/one")["session"] == done(repo, "multi")["session"]
    # Both outputs land in the one session merge, not as separate events.
    events = git(
        "log",
        "--first-parent",
        "--format=%(trailers:key=Gdag-Event,valueonly)",
        "refs/gdag/logs/main",
        cwd=repo,
    ).split()
    assert events.count("session") == 1 and events.count("publish") == 1


def test_values_are_never_spliced_into_the_command(repo: Path) -> None:
    define(
        repo,
        """
        [nodes.safe]
        run = 'cp "$GDAG_IN_X" "$GDAG_OUT/copy"'
        inputs = { x = "src" }
        publishes = ["copy"]
    """,
    )
    evil = '$(touch pwned); `touch pwned2`; "; touch pwned3'
    pub(repo, "src", evil)
    run(repo)
    assert value(repo, "copy") == evil
    assert not any((repo / p).exists() for p in ("pwned", "pwned2", "pwned3"))


def test_python_nodes_typed_and_with_context(repo: Path) -> None:
    (repo / "pipeline.py").write_text(
        textwrap.dedent("""
        import gdag

        def count(words: str | None, extra: int | None) -> int:
            return len(words.split()) + (extra or 0)

        @gdag.node(inputs={"n": "stats/count"}, publishes=["stats/by/*"])
        def fan(n, ctx):
            for i in range(n):
                ctx.publish(f"stats/by/{i}", i * i)

        def broken(words):
            raise ValueError("no good")
    """)
    )
    define(
        repo,
        """
        [dag]
        modules = ["pipeline"]
        [outputs."stats/count"]
        type = "int"
        [outputs."stats/by/*"]
        type = "int"
        [outputs.words]
        type = "str"
        [nodes.count]
        python = "pipeline:count"
        inputs = { words = "words", extra = "extra" }
        publishes = ["stats/count"]
        [nodes.broken]
        python = "pipeline:broken"
        inputs = { words = "words" }
    """,
    )
    pub(repo, "words", "a b c")
    err = run(repo, code=1)
    assert value(repo, "stats/count") == "3\n"
    assert gdag("lookup", "stats/by/*", cwd=repo).text.split() == [
        "stats/by/0",
        "stats/by/1",
        "stats/by/2",
    ]
    assert value(repo, "stats/by/2") == "4\n"
    assert "FAILED broken" in err and "ValueError: no good" in err
    assert "Traceback" in git("show", "refs/gdag/logs/main:nodes/broken/@log", cwd=repo)
    # Editing the function's source makes the node stale.
    src = (repo / "pipeline.py").read_text().replace("(extra or 0)", "(extra or 0) + 100")
    (repo / "pipeline.py").write_text(src)
    states = {s["node"]: s for s in json.loads(gdag("status", "--json", cwd=repo).stdout)}
    assert states["count"]["state"] == "stale"
    run(repo, "count")
    assert value(repo, "stats/count") == "103\n"


def test_targets_limit_the_run_to_their_traversal(repo: Path) -> None:
    define(
        repo,
        """
        [nodes.a]
        run = 'cp "$GDAG_IN_X" "$GDAG_OUT/a"'
        inputs = { x = "s1" }
        publishes = ["a"]
        [nodes.b]
        run = 'cp "$GDAG_IN_X" "$GDAG_OUT/b"'
        inputs = { x = "s2" }
        publishes = ["b"]
    """,
    )
    pub(repo, "s1", "1")
    pub(repo, "s2", "2")
    out = gdag("run", "--dry-run", cwd=repo).stderr
    assert "would run a" in out and "would run b" in out
    run(repo, "s1")
    assert sessions(repo, "a") == ["ok"] and sessions(repo, "b") == []
    run(repo, "b")
    assert sessions(repo, "b") == ["ok"]


@pytest.mark.parametrize(
    ("toml", "needle"),
    [
        ('[nodes.x]\nrun = "true"\nbogus = 1\n', "[nodes.x]: unknown key 'bogus'"),
        ('[nodes."a/b"]\nrun = "true"\n', "bad node name"),
        ('[nodes.x]\nrun = "true"\ninputs = { i = "../up" }\n', "inputs.i"),
        ('[nodes.x]\nrun = "true"\npython = "m:f"\n', "exactly one of 'run' or 'python'"),
        ('[nodes.x]\nrun = "true"\nmode = "sometimes"\n', "mode = 'sometimes'"),
        ('[nodes.x]\nrun = "true"\ninputs = { i = "o" }\npublishes = ["o"]\n', "cycle"),
        (
            '[nodes.x]\nrun = "t"\ninputs = { i = "a/*" }\npublishes = ["b"]\n'
            '[nodes.y]\nrun = "t"\ninputs = { i = "b" }\npublishes = ["a/x"]\n',
            "cycle",
        ),
        ('[nodes.x]\npython = "nosuchmodule:f"\n', "cannot import 'nosuchmodule'"),
        (
            '[nodes.x]\nrun = "t"\ninputs = { a-b = "o1", a_b = "o2" }\n',
            "would both be $GDAG_IN_A_B",
        ),
        ('[nodes.x]\nrun = "t"\nenv = { "A=B" = "1" }\n', "cannot be an environment variable"),
        ('[nodes.x]\nrun = "t"\nenv = { "" = "1" }\n', "cannot be an environment variable"),
        ('[nodes.x]\nrun = "t"\nenv = { A = "x\\u0000y" }\n', "cannot be an environment"),
        ('[nodes.x]\nrun = "t"\nenv = { GDAG_OUT = "/tmp" }\n', "GDAG_OUT is gdag's to set"),
        ('[nodes.x]\nrun = "t"\ninputs = { "a b" = "o" }\n', "an input name matches"),
    ],
)
def test_bad_definitions_refused_naming_file_node_and_key(
    repo: Path, toml: str, needle: str
) -> None:
    (repo / "gdag.toml").write_text(toml)
    tip = git("rev-parse", "refs/gdag/logs/main", cwd=repo)
    r = gdag("run", cwd=repo)
    assert r.returncode == 3, r.stderr
    assert r.stderr.startswith("gdag: error: gdag.toml") and needle in r.stderr
    assert git("rev-parse", "refs/gdag/logs/main", cwd=repo) == tip


def test_timeout_env_cwd_and_gdag_on_path(repo: Path) -> None:
    (repo / "sub").mkdir()
    define(
        repo,
        """
        [nodes.slow]
        run = 'sleep 30'
        inputs = { x = "src" }
        timeout = 0.5
        [nodes.where]
        run = 'printf "%s %s" "$(basename "$PWD")" "$GREETING" > "$GDAG_OUT/w"; gdag publish via/cli 1'
        inputs = { x = "src" }
        publishes = ["w", "via/cli"]
        env = { GREETING = "hi" }
        cwd = "sub"
    """,
    )
    pub(repo, "src", "s")
    r = gdag("run", cwd=repo, env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 1
    assert "timed out" in git("show", "refs/gdag/logs/main:nodes/slow/@log", cwd=repo)
    assert done(repo, "slow")["error"] == "timeout"
    assert value(repo, "w") == "sub hi" and value(repo, "via/cli") == "1"


@pytest.mark.parametrize("parent", ["plain", "proj:v2"])
def test_nodes_find_this_gdag_on_path_whatever_the_repository_path(
    tmp_path: Path, parent: str
) -> None:
    """The `gdag` command a shell node finds first on PATH runs this interpreter's gdag,
    also when the repository's path holds `:` (which splits a PATH entry)."""
    repo = tmp_path / parent / "repo"
    repo.parent.mkdir()
    assert gdag("init", "-C", str(repo), cwd=tmp_path).returncode == 0
    define(
        repo,
        """
        [nodes.inner]
        run = 'command -v gdag > "$GDAG_OUT/which"; gdag publish via/cli 1'
        inputs = { x = "src" }
        publishes = ["which", "via/cli"]
    """,
    )
    pub(repo, "src", "s")
    r = gdag("run", cwd=repo, env={"PATH": "/usr/bin:/bin"})  # no other gdag on PATH
    assert r.returncode == 0, r.stderr
    assert value(repo, "via/cli") == "1"
    which = value(repo, "which").strip()
    assert (":" in parent) != which.startswith(str(repo / ".git" / "gdag" / "bin")), which


def test_publish_detach_runs_in_background(repo: Path) -> None:
    import time

    define(
        repo,
        """
        [nodes.copy]
        run = 'cp "$GDAG_IN_X" "$GDAG_OUT/c"'
        inputs = { x = "src" }
        publishes = ["c"]
    """,
    )
    r = gdag("publish", "src", "bg", "--detach", cwd=repo)
    assert r.returncode == 0, r.stderr
    for _ in range(200):
        if gdag("lookup", "c", cwd=repo).stdout == b"bg":
            break
        time.sleep(0.05)
    assert value(repo, "c") == "bg"
    logs = list((repo / ".git" / "gdag" / "logs").glob("run-*.log"))
    assert len(logs) == 1


def test_run_json_summary(repo: Path) -> None:
    define(
        repo,
        """
        [nodes.copy]
        run = 'cp "$GDAG_IN_X" "$GDAG_OUT/c"'
        inputs = { x = "src" }
        publishes = ["c"]
    """,
    )
    pub(repo, "src", "1")
    r = gdag("run", "--json", cwd=repo)
    assert r.returncode == 0 and r.stderr == ""
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert [e["event"] for e in lines] == ["start", "finish", "summary"]
    assert lines[1]["node"] == "copy" and lines[1]["status"] == "ok"
    assert lines[-1]["ran"] == ["copy"]


def test_run_cache_reuses_a_session_with_the_same_inputs(repo: Path) -> None:
    define(
        repo,
        """
        [nodes.count]
        run = 'echo run >> runs.txt; wc -c < "$GDAG_IN_X" | tr -d " " > "$GDAG_OUT/n"'
        inputs = { x = "src" }
        publishes = ["n"]
        [nodes.fresh]
        run = 'echo run >> fresh.txt'
        inputs = { x = "src" }
        cache = false
    """,
    )
    for v in ("aaa", "bb", "aaa"):
        pub(repo, "src", v)
        err = run(repo)
    assert "cached count" in err
    assert (repo / "runs.txt").read_text() == "run\nrun\n"
    assert (repo / "fresh.txt").read_text() == "run\nrun\nrun\n"
    assert value(repo, "n") == "3\n" and meta(repo, "n")["version"] == 3
    record = done(repo, "count")
    assert record["cached"] and record["inputs"] == {"src": 3}
    caches = git(
        "log",
        "--first-parent",
        "--format=%(trailers:key=Gdag-Cache,valueonly)",
        "refs/gdag/logs/main",
        cwd=repo,
    ).split()
    assert caches == [record["cached"]]


def test_unknown_run_target_is_refused(repo: Path) -> None:
    r = gdag("run", "nosuch", cwd=repo)
    assert r.returncode == 3 and "no node or output 'nosuch'" in r.stderr
    pub(repo, "lonely", "1")
    assert "nothing to do" in run(repo, "lonely")


def test_run_sweeps_stale_locks_and_temp_objects(repo: Path) -> None:
    import os
    import time

    define(
        repo,
        """
        [nodes.copy]
        run = 'cp "$GDAG_IN_X" "$GDAG_OUT/c"'
        inputs = { x = "src" }
        publishes = ["c"]
    """,
    )
    sessions = repo / ".git" / "refs" / "gdag" / "sessions" / "main"
    sessions.mkdir(parents=True)
    stale, fresh = sessions / "gone.1.a.lock", sessions / "busy.2.b.lock"
    tmp_obj = repo / ".git" / "objects" / "tmp_obj_leftover"
    for path in (stale, fresh, tmp_obj):
        path.write_text("")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    os.utime(tmp_obj, (old, old))
    pub(repo, "src", "1")
    run(repo)
    assert not stale.exists() and not tmp_obj.exists()
    assert fresh.exists()  # a young lock may belong to a live writer


def test_python_node_bad_results_fail_the_node_not_the_run(repo: Path) -> None:
    (repo / "bad.py").write_text(
        textwrap.dedent("""
        def wrong_type(x):
            return "not a number"

        def wrong_output(x, ctx):
            ctx.publish("elsewhere", 1)
    """)
    )
    define(
        repo,
        """
        [outputs.n]
        type = "int"
        [nodes.wrong_type]
        python = "bad:wrong_type"
        inputs = { x = "src" }
        publishes = ["n"]
        [nodes.wrong_output]
        python = "bad:wrong_output"
        inputs = { x = "src" }
        publishes = ["mine"]
        [nodes.fine]
        run = 'cp "$GDAG_IN_X" "$GDAG_OUT/ok"'
        inputs = { x = "src" }
        publishes = ["ok"]
    """,
    )
    pub(repo, "src", "1")
    err = run(repo, code=1)
    assert "FAILED wrong_type" in err and "not a valid int" in err
    assert "FAILED wrong_output" in err and "may not publish 'elsewhere'" in err
    assert value(repo, "ok") == "1"
    assert done(repo, "wrong_type")["status"] == "failed"
    assert git("for-each-ref", "refs/gdag/sessions", cwd=repo) == ""
    assert "nothing to do" in run(repo)


def test_status_names_the_session_a_killed_run_left(repo: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    define(
        repo,
        """
        [nodes.slow]
        run = 'echo $$ > "$GDAG_REPO/node.pid"; exec sleep 60'
        inputs = { x = "src" }
        publishes = ["o"]
    """,
    )
    pub(repo, "src", "1")
    proc = subprocess.Popen([sys.executable, "-m", "gdag", "run"], cwd=repo)
    pid_file = repo / "node.pid"
    for _ in range(600):
        if pid_file.exists() and pid_file.read_text().strip():
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    os.kill(int(pid_file.read_text()), signal.SIGKILL)  # the node outlives its run
    left = git("for-each-ref", "--format=%(refname:lstrip=4)", "refs/gdag/sessions/", cwd=repo)
    assert left.startswith("slow.")
    (state,) = json.loads(gdag("status", "--json", cwd=repo).stdout)
    assert state["state"] == "never-run"
    assert f"a killed run left {left.strip()} (`gdag run` recovers it)" in state["reason"]
    assert gdag("doctor", "--repair", cwd=repo).returncode == 0  # drops the unfinished one
    (state,) = json.loads(gdag("status", "--json", cwd=repo).stdout)
    assert state["state"] == "never-run" and "killed" not in state["reason"]
    fsck(repo)


def test_renaming_a_node_reuses_its_results_without_a_crash(repo: Path) -> None:
    """A renamed node (same command, same inputs) is a run-cache hit of the session
    its old name ran: merged as such, not a crash on the missing record."""
    define(
        repo,
        '[nodes.a]\nrun = "cat $GDAG_IN_X > $GDAG_OUT/o"\ninputs = { x = "x" }\npublishes = ["o"]\n',
    )
    assert gdag("publish", "x", "1", cwd=repo).returncode == 0
    define(
        repo,
        '[nodes.b]\nrun = "cat $GDAG_IN_X > $GDAG_OUT/o"\ninputs = { x = "x" }\npublishes = ["o"]\n',
    )
    r = gdag("run", cwd=repo)
    assert r.returncode == 0, r.stderr
    assert gdag("lookup", "o", cwd=repo).stdout == b"1"
    why = gdag("why", "b", cwd=repo)
    assert why.returncode == 0 and "up-to-date" in why.text and "cache hit of a." in why.text
    fsck(repo)


def test_outputs_left_in_gdag_out_are_committed_with_done(repo: Path) -> None:
    """A shell node's outputs, found after it exits, are one commit with its @done: the
    session branch is its start and that commit, whose trailers name every output and
    whose summary names them (or counts them, past three). What a failed attempt left
    (collected before one of its files was refused) is not in the retry's commit."""
    define(
        repo,
        """
        [nodes.few]
        run = 'for o in a b; do echo "$o" > "$GDAG_OUT/$o"; done'
        inputs = { x = "src" }
        publishes = ["a", "b"]

        [nodes.many]
        run = '''
        if test -e "$GDAG_REPO/.again"; then
            for o in a b c d; do echo "$o" > "$GDAG_OUT/m/$o"; done
        else  # m/e is collected, then zz is refused (not published): the attempt fails
            touch "$GDAG_REPO/.again"; echo e > "$GDAG_OUT/m/e"; echo z > "$GDAG_OUT/zz"
        fi
        '''
        inputs = { x = "src" }
        publishes = ["m/*"]
        retries = 1
        retry_delay = 0.01

        [nodes.lots]
        run = 'for i in 01 02 03 04 05 06 07 08 09 10 11 12; do echo $i > "$GDAG_OUT/l/$i"; done'
        inputs = { x = "src" }
        publishes = ["l/*"]
        """,
    )
    pub(repo, "src", "1")
    said = run(repo)
    # The run's line for a node with many outputs names the first few and counts the rest.
    assert (
        "l/01 v1, l/02 v1, l/03 v1, l/04 v1, l/05 v1, l/06 v1, l/07 v1, l/08 v1 and 4 more" in said
    )
    assert "l/12" not in said
    for node, summary, outputs in (
        ("few", "done few ok: a, b", ["a", "b"]),
        ("many", "done many ok: 4 outputs", ["m/a", "m/b", "m/c", "m/d"]),
    ):
        merge = git(
            "log", "--first-parent", "--format=%H", "--grep", f"^Gdag-Node: {node}$",
            "refs/gdag/logs/main", cwd=repo,
        ).split()[0]  # fmt: skip
        branch = git(
            "log", "--format=%s|%(trailers:key=Gdag-Output,valueonly,separator=%x2C)",
            f"{merge}^1..{merge}^2", cwd=repo,
        ).splitlines()  # fmt: skip
        assert branch == [f"{summary}|{','.join(outputs)}", f"start {node}|"]
        merged = git(
            "log",
            "-1",
            "--format=%(trailers:key=Gdag-Output,valueonly,separator=%x2C)",
            merge,
            cwd=repo,
        )
        assert merged.strip() == ",".join(outputs)  # in the order they were published
    assert [value(repo, o) for o in ("a", "b", "m/a", "m/d")] == ["a\n", "b\n", "a\n", "d\n"]
    assert gdag("lookup", "m/e", cwd=repo).returncode == 3  # the failed attempt's
    assert done(repo, "many")["attempts"][0]["error"].startswith("node 'many' may not publish")
    fsck(repo)


def _merge_of(repo: Path, node: str) -> str:
    return git(
        "log", "--first-parent", "--format=%H", "--grep", f"^Gdag-Node: {node}$",
        "refs/gdag/logs/main", cwd=repo,
    ).split()[0]  # fmt: skip


def test_a_merge_keeps_the_versions_its_session_predicted_only_when_they_hold(
    repo: Path,
) -> None:
    """A session's @done commit writes its outputs' metadata as the merge will if the
    log does not move meanwhile: then the merge finds the session's trees (same ids),
    else it writes its own. Either way the merged metadata names the merge's offset."""
    define(
        repo,
        """
        [nodes.quick]
        run = 'cp "$GDAG_IN_X" "$GDAG_OUT/q"'
        inputs = { x = "src" }
        publishes = ["q"]

        [nodes.slow]
        run = '''
        echo started > "$GDAG_REPO/.started"
        i=0; while [ ! -e "$GDAG_REPO/.go" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
        cp "$GDAG_IN_X" "$GDAG_OUT/s"
        '''
        inputs = { x = "q" }
        publishes = ["s"]
        """,
    )
    pub(repo, "src", "1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gdag", "run"], cwd=repo, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for(repo / ".started")
        pub(repo, "other", "x")  # the log moves while `slow` runs
        (repo / ".go").touch()
        assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        proc.kill()
    for node, output, moved in (("quick", "q", False), ("slow", "s", True)):
        merge = _merge_of(repo, node)
        offset = int(
            git("log", "-1", "--format=%(trailers:key=Gdag-Offset,valueonly)", merge, cwd=repo)
        )
        merged = json.loads(git("show", f"{merge}:outputs/{output}/@meta.json", cwd=repo))
        predicted = json.loads(git("show", f"{merge}^2:outputs/{output}/@meta.json", cwd=repo))
        assert (merged["offset"], merged["version"], merged["event"]) == (offset, 1, "session")
        assert (
            json.loads(git("show", f"{merge}:nodes/{node}/@done.json", cwd=repo))["offset"]
            == offset
        )
        trees = [
            git("rev-parse", f"{rev}:outputs/{output}", cwd=repo) for rev in (merge, f"{merge}^2")
        ]
        if moved:  # predicted one offset too early: the merge wrote its own
            assert predicted["offset"] == offset - 1 and trees[0] != trees[1]
        else:
            assert predicted == merged and trees[0] == trees[1]
            assert git("rev-parse", f"{merge}:nodes", cwd=repo) == git(
                "rev-parse", f"{merge}^2:nodes", cwd=repo
            )
    fsck(repo)

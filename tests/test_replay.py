"""gdag replay: rebuilding history under the current definition, without losing events."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import fsck, gdag, git

PIPELINE = """
    [nodes.up]
    run = 'tr a-z A-Z < "$GDAG_IN_X" > "$GDAG_OUT/up"'
    inputs = {{ x = "src" }}
    publishes = ["up"]
    [nodes.tag]
    run = 'printf "{tag}:" > "$GDAG_OUT/tagged"; cat "$GDAG_IN_X" >> "$GDAG_OUT/tagged"'
    inputs = {{ x = "up" }}
    publishes = ["tagged"]
    [nodes.other]
    run = 'wc -c < "$GDAG_IN_X" | tr -d " " > "$GDAG_OUT/size"'
    inputs = {{ x = "src" }}
    publishes = ["size"]
    [nodes.hist]
    run = 'cat "$GDAG_IN_X" >> "$GDAG_OUT/h" 2>/dev/null; cp "$GDAG_IN_X" "$GDAG_OUT/h"'
    inputs = {{ x = "tagged" }}
    publishes = ["h"]
    mode = "each"
"""


def setup(repo: Path, tag: str = "t") -> None:
    (repo / "gdag.toml").write_text(textwrap.dedent(PIPELINE.format(tag=tag)))


def publish_all(repo: Path, values: list[str]) -> None:
    for v in values:
        r = gdag("publish", "src", v, cwd=repo)
        assert r.returncode == 0, r.stderr


def snapshot(repo: Path, ref: str = "refs/gdag/logs/main") -> dict[str, tuple[str, int]]:
    """Every output's value and version at `ref`."""
    listing = git("ls-tree", "-r", "--name-only", f"{ref}:outputs", cwd=repo).split()
    out = {}
    for path in listing:
        if path.endswith("/@value"):
            name = path[: -len("/@value")]
            value = git("show", f"{ref}:outputs/{path}", cwd=repo)
            meta = json.loads(git("show", f"{ref}:outputs/{name}/@meta.json", cwd=repo))
            out[name] = (value, meta["version"])
    return out


def history(repo: Path, output: str, ref: str = "refs/gdag/logs/main") -> list[str]:
    """The sequence of values `output` took, oldest first."""
    commits = git("log", "--first-parent", "--reverse", "--format=%H", ref, cwd=repo).split()
    seen: list[str] = []
    for c in commits:
        r = subprocess.run(
            ["git", "show", f"{c}:outputs/{output}/@value"],
            cwd=repo,
            capture_output=True,
            text=True,
        )
        if r.returncode == 0 and (not seen or seen[-1] != r.stdout):
            seen.append(r.stdout)
    return seen


def replay(repo: Path, *args: str) -> dict:
    r = gdag("replay", *args, "--json", cwd=repo)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_replay_unchanged_runs_nothing_and_equals_fresh_run(repo: Path, tmp_path: Path) -> None:
    setup(repo)
    values = ["a", "bb", "a", "ccc"]
    publish_all(repo, values)
    before = snapshot(repo)
    old_tip = git("rev-parse", "refs/gdag/logs/main", cwd=repo).strip()
    old_log = git("log", "--first-parent", "--format=%H %s", old_tip, cwd=repo)
    res = replay(repo, "--from", "1")
    # Recorded under the definition in force: every event is kept as it is, nothing runs.
    assert res["ran"] == [] and res["cached"] == [] and res["kept"] == len(values)
    assert snapshot(repo) == before
    assert git("rev-parse", "refs/gdag/logs/main", cwd=repo).strip() == old_tip
    assert git("log", "--first-parent", "--format=%H %s", "refs/gdag/logs/main", cwd=repo) == (
        old_log
    )
    # Under another definition whose results come out the same, the cache does the work.
    setup(repo, tag="t")
    (repo / "gdag.toml").write_text((repo / "gdag.toml").read_text() + "\n# a comment\n")
    (repo / "gdag.toml").write_text(
        (repo / "gdag.toml")
        .read_text()
        .replace("[nodes.other]", '[nodes.other]\nenv = { X = "1" }')
    )
    res = replay(repo, "--from", "1")
    assert set(res["ran"]) == {"other"} and len(res["cached"]) > 0 and res["failed"] == []
    assert snapshot(repo) == {**before, "size": (before["size"][0], before["size"][1])}
    # The archive keeps the old chain whole (with the `dag` event of the new definition).
    archived = git("log", "--first-parent", "--format=%H %s", res["archive"], cwd=repo)
    assert archived.endswith(old_log) and "dag: definition changed" in archived.split("\n")[0]
    # A fresh repository with the same publishes ends in the same state.
    fresh = tmp_path / "fresh"
    assert gdag("init", "-C", str(fresh), cwd=tmp_path).returncode == 0
    setup(fresh)
    publish_all(fresh, values)
    assert snapshot(fresh) == snapshot(repo)
    for output in ("up", "tagged", "h", "size"):
        assert history(fresh, output) == history(repo, output)
    fsck(repo)


def test_replay_after_fix_changes_exactly_downstream(repo: Path) -> None:
    setup(repo)
    publish_all(repo, ["a", "bb"])
    before = snapshot(repo)
    setup(repo, tag="fixed")
    res = replay(repo, "--from", "1")
    after = snapshot(repo)
    changed = {k for k in after if after[k][0] != before[k][0]}
    assert changed == {"tagged", "h"}
    assert after["tagged"][0] == "fixed:BB"
    assert set(res["ran"]) == {"tag", "hist"}
    assert history(repo, "h") == ["fixed:A", "fixed:BB"]


def test_replay_twice_is_idempotent(repo: Path) -> None:
    setup(repo)
    publish_all(repo, ["x", "y"])
    replay(repo, "--from", "1")
    first = snapshot(repo)
    res = replay(repo, "--from", "1")
    assert res["ran"] == [] and snapshot(repo) == first


def test_onto_leaves_the_live_log_alone(repo: Path) -> None:
    setup(repo)
    publish_all(repo, ["a", "b", "c"])
    live = git("rev-parse", "refs/gdag/logs/main", cwd=repo)
    setup(repo, tag="new")
    replay(repo, "--from", "-6", "--onto", "whatif")
    assert git("rev-parse", "refs/gdag/logs/main", cwd=repo) == live
    assert snapshot(repo, "refs/gdag/logs/whatif")["tagged"][0] == "new:C"
    assert gdag("lookup", "tagged", cwd=repo).stdout == b"t:C"
    r = gdag("replay", "--from", "1", "--onto", "whatif", cwd=repo)
    assert r.returncode == 3 and "exists already" in r.stderr


def test_bad_offsets_and_to_without_onto(repo: Path) -> None:
    setup(repo)
    publish_all(repo, ["a"])
    r = gdag("replay", "--from", "999", cwd=repo)
    assert r.returncode == 3 and "valid offsets: 0.." in r.stderr
    r = gdag("replay", "--from", "zz", cwd=repo)
    assert r.returncode == 3
    r = gdag("replay", "--from", "1", "--to", "2", cwd=repo)
    assert r.returncode == 2 and "--onto" in r.stderr
    r = gdag("replay", "--from", "1", "--dry-run", "--json", cwd=repo)
    assert json.loads(r.stdout)["events"] == [2]


def test_replay_while_others_publish_loses_nothing(repo: Path) -> None:
    setup(repo, tag="slow")
    (repo / "gdag.toml").write_text(
        (repo / "gdag.toml").read_text().replace("tr a-z A-Z", "sleep 0.05; tr a-z A-Z")
    )
    publish_all(repo, [f"v{i}" for i in range(6)])
    # A changed definition, so the replay has work to do while the others publish.
    (repo / "gdag.toml").write_text((repo / "gdag.toml").read_text().replace("slow", "slower"))
    code = textwrap.dedent("""
        import sys
        from gdag.main import main
        for i in range(15):
            assert main(["publish", f"side/{sys.argv[1]}", str(i), "--no-run"]) == 0
    """)
    pubs = [
        subprocess.Popen([sys.executable, "-c", code, str(k)], cwd=repo, stdout=subprocess.DEVNULL)
        for k in range(2)
    ]
    res = replay(repo, "--from", "1")
    for p in pubs:
        assert p.wait(timeout=120) == 0
    for k in range(2):
        assert gdag("lookup", f"side/{k}", cwd=repo).stdout == b"14"
        seq = git(
            "log",
            "--first-parent",
            "--format=%(trailers:key=Gdag-Output,valueonly)",
            "refs/gdag/logs/main",
            cwd=repo,
        ).split()
        assert seq.count(f"side/{k}") == 15
    assert res["archive"]
    fsck(repo)

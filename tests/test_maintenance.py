"""Storage that maintains itself: a command that wrote objects past git's `gc.auto`
threshold starts a background packer, one at a time, unless `[store] auto_pack = false`.

`gc.auto` is read as git reads it: each case is checked against `git config`.
"""

from __future__ import annotations

import fcntl
import subprocess
import time
from pathlib import Path

import pytest
from conftest import blob_id, define, fanout_17_values, fsck, gdag, git

from gdag.maintenance import gc_auto, loose_sample
from gdag.repo import Store

# (files to write: {relative to the test dir: text}, environment, git config args)
CASES: list[tuple[dict[str, str], dict[str, str]]] = [
    ({}, {}),
    ({"repo/.git/config+": "[gc]\n\tauto = 300\n"}, {}),
    ({"home/.gitconfig": "[gc]\n\tauto = 2k\n"}, {}),
    ({"home/.gitconfig": "[gc]\n\tauto = 50\n", "repo/.git/config+": "[gc]\n\tauto = 0\n"}, {}),
    (
        {"home/.gitconfig": "[gc]\n\tauto = 50\n"},
        {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "gc.auto", "GIT_CONFIG_VALUE_0": "9"},
    ),
    ({}, {"GIT_CONFIG_PARAMETERS": "'gc.auto'='1m'"}),
    (
        {"xdg/git/config": "[GC]\n\tAuto = 700\n"},
        {"XDG_CONFIG_HOME": "{tmp}/xdg", "GIT_CONFIG_GLOBAL": ""},
    ),
]


@pytest.mark.parametrize(("files", "env"), CASES)
def test_gc_auto_is_read_as_git_reads_it(
    repo: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    files: dict[str, str],
    env: dict[str, str],
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    for rel, text in files.items():
        path = tmp_path / rel.rstrip("+")
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a" if rel.endswith("+") else "w") as f:
            f.write(text)
    for key, value in env.items():
        if key == "GIT_CONFIG_GLOBAL" and not value:
            monkeypatch.delenv(key)
        else:
            monkeypatch.setenv(key, value.replace("{tmp}", str(tmp_path)))
    proc = subprocess.run(
        ["git", "config", "--int", "--get", "gc.auto"], cwd=repo, capture_output=True, text=True
    )
    expected = int(proc.stdout) if proc.returncode == 0 else 6700
    assert gc_auto(Store.find(repo)) == expected


def loose_17(repo: Path) -> int:
    return loose_sample(Store.find(repo))


def packs(repo: Path) -> int:
    return len(list((repo / ".git" / "objects" / "pack").glob("*.pack")))


def publish_into_17(repo: Path, count: int) -> None:
    for i, data in enumerate(fanout_17_values(count)):
        r = gdag("publish", f"v/{i}", "-", "--no-run", cwd=repo, input=data)
        assert r.returncode == 0, r.stderr


def wait_packed(repo: Path) -> None:
    """Until the background packer has packed (bounded: a wedged packer fails)."""
    end = time.monotonic() + 60
    while time.monotonic() < end:
        if packs(repo) and loose_17(repo) <= 1:  # a later publish may have added one
            return
        time.sleep(0.05)
    raise AssertionError("the background packer never packed")


def test_a_command_past_gc_auto_packs_in_the_background(repo: Path) -> None:
    git("config", "gc.auto", "256", cwd=repo)  # packs from 2 loose objects in 17/
    publish_into_17(repo, 3)
    assert (repo / ".git" / "gdag" / "pack.pid").exists()
    wait_packed(repo)
    for i, data in enumerate(fanout_17_values(3)):
        assert gdag("lookup", f"v/{i}", cwd=repo).stdout == data
    fsck(repo)
    # Packed objects stay readable while later commands add loose ones.
    publish_into_17(repo, 1)
    assert gdag("lookup", "v/0", cwd=repo).stdout == fanout_17_values(1)[0]


@pytest.mark.parametrize(
    ("toml", "gc"),
    [("[store]\nauto_pack = false\n", "256"), ("", "0")],
    ids=["auto_pack", "gc.auto=0"],
)
def test_packing_turned_off(repo: Path, toml: str, gc: str) -> None:
    define(repo, toml)
    git("config", "gc.auto", gc, cwd=repo)
    publish_into_17(repo, 4)
    assert loose_17(repo) >= 4
    # The packer is started before the command exits: none was.
    assert not (repo / ".git" / "gdag" / "pack.pid").exists()
    assert packs(repo) == 0


def test_one_packer_at_a_time(repo: Path) -> None:
    git("config", "gc.auto", "256", cwd=repo)
    (repo / ".git" / "gdag").mkdir(exist_ok=True)
    with open(repo / ".git" / "gdag" / "pack.lock", "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # a packer at work
        publish_into_17(repo, 3)
        assert not (repo / ".git" / "gdag" / "pack.pid").exists()
        assert packs(repo) == 0
    r = gdag("publish", "again", "x", "--no-run", cwd=repo)
    assert r.returncode == 0
    assert (repo / ".git" / "gdag" / "pack.pid").exists()
    wait_packed(repo)
    fsck(repo)


def test_a_bad_auto_pack_is_refused(repo: Path) -> None:
    define(repo, '[store]\nauto_pack = "no"\n')
    r = gdag("check", cwd=repo)
    assert r.returncode == 3 and "[store] auto_pack must be true or false" in r.stderr
    define(repo, "[store]\nauto_packing = false\n")
    r = gdag("check", cwd=repo)
    assert r.returncode == 3 and "[store]: unknown key 'auto_packing'" in r.stderr


def test_a_long_running_process_packs_after_each_round(repo: Path) -> None:
    """`gdag watch` never exits: it looks after every round, and keeps noticing writes."""
    from gdag import maintenance
    from gdag import repo as repo_module
    from gdag.workspace import ValueSource, Workspace

    git("config", "gc.auto", "256", cwd=repo)
    ws = Workspace.open(repo)
    try:
        for i, data in enumerate(fanout_17_values(3)):
            ws.publish(f"v/{i}", ValueSource(data=data))
        maintenance.after_round()
        assert (repo / ".git" / "gdag" / "pack.pid").exists()
        wait_packed(repo)
        ws.publish("w", ValueSource(data=b"x"))
        assert str(ws.store.gitdir) in repo_module.WROTE
    finally:
        repo_module.WROTE.clear()
    fsck(repo)


def test_a_failing_packer_is_not_started_again_for_every_command(repo: Path) -> None:
    """A repository that forbids `git repack -d` (preciousObjects): the packer fails,
    says why in .git/gdag/pack.failed, and later commands do not start one each."""
    git("config", "core.repositoryformatversion", "1", cwd=repo)
    git("config", "extensions.preciousObjects", "true", cwd=repo)
    git("config", "gc.auto", "256", cwd=repo)
    publish_into_17(repo, 3)
    failed = repo / ".git" / "gdag" / "pack.failed"
    end = time.monotonic() + 60
    while not failed.exists():
        assert time.monotonic() < end, "the packer never reported its failure"
        time.sleep(0.05)
    assert "packing failed: the repository's objects are precious" in failed.read_text()
    (repo / ".git" / "gdag" / "pack.pid").unlink()
    assert gdag("publish", "again", "x", "--no-run", cwd=repo).returncode == 0
    assert not (repo / ".git" / "gdag" / "pack.pid").exists()
    r = gdag("doctor", "--repair", cwd=repo)
    assert "the repository's objects are precious" in r.stderr  # doctor says so, loses nothing
    fsck(repo)


def pack_names(repo: Path) -> set[str]:
    return {p.stem for p in (repo / ".git" / "objects" / "pack").glob("*.pack")}


def loose_count(repo: Path) -> int:
    out = git("count-objects", "-v", cwd=repo)
    return int(next(line.split()[1] for line in out.splitlines() if line.startswith("count:")))


def git_input(repo: Path, text: str, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, input=text, check=True, capture_output=True, text=True
    ).stdout.strip()


def test_packing_deletes_no_pack_a_reader_may_have_listed(repo: Path) -> None:
    """Loose objects (reachable or not) go to a new pack; past gc.autoPackLimit one
    pack replaces the ordinary ones, which stay on disk, retired, for RETIRE_AFTER;
    a kept pack is never replaced. Nothing is lost at any step (lookups, fsck)."""
    from gdag import maintenance

    git("config", "gc.autoPackLimit", "4", cwd=repo)  # one pack of all past 2 of ours
    git("config", "gc.auto", "0", cwd=repo)  # only the packing this test does
    store = Store.find(repo)
    stray = git_input(repo, "nothing refers to me\n", "hash-object", "-w", "--stdin")
    kept = git_input(repo, "kept\n", "hash-object", "-w", "--stdin")
    base = repo / ".git" / "objects" / "pack" / "pack"
    kept_pack = "pack-" + git_input(repo, kept + "\n", "pack-objects", "-q", str(base))
    (repo / ".git" / "objects" / "pack" / f"{kept_pack}.keep").write_text("")

    def pack_round(i: int) -> set[str]:
        before = pack_names(repo)
        assert gdag("publish", f"v/{i}", f"value {i}", "--no-run", cwd=repo).returncode == 0
        with maintenance.pack_lock(store):
            proc = maintenance.repack(store)
        assert proc.ok, proc.stderr
        assert loose_count(repo) == 0  # every loose object packed, the stray one too
        return before

    for i in range(3):  # packs added, none replaced: the kept one and three of ours
        pack_round(i)
    assert len(pack_names(repo)) == 4
    before = pack_round(3)  # past the limit: one pack of everything
    ours = before - {kept_pack}
    retired = (repo / ".git" / "gdag" / "pack.retired").read_text().split()[1::2]
    assert set(retired) == ours
    new = pack_names(repo) - before
    assert len(new) == 1 and pack_names(repo) == before | new  # nothing deleted yet
    for i in range(4):
        assert gdag("lookup", f"v/{i}", cwd=repo).stdout == f"value {i}".encode()
    fsck(repo)

    # An hour later (the retired list's times moved back), the next packer deletes them.
    listed = (repo / ".git" / "gdag" / "pack.retired").read_text().splitlines()
    (repo / ".git" / "gdag" / "pack.retired").write_text(
        "".join(f"{float(line.split()[0]) - 3601:.0f} {line.split()[1]}\n" for line in listed)
    )
    pack_round(4)
    assert not pack_names(repo) & ours
    assert kept_pack in pack_names(repo)
    assert not (repo / ".git" / "gdag" / "pack.retired").exists()
    for i in range(5):
        assert gdag("lookup", f"v/{i}", cwd=repo).stdout == f"value {i}".encode()
    for sha in (stray, kept):
        git("cat-file", "-e", sha, cwd=repo)
    fsck(repo)


def test_no_retired_pack_is_deleted_beside_a_multi_pack_index(repo: Path) -> None:
    """git's maintenance may write a multi-pack-index naming the retired packs:
    deleting them would break git's lookups, so they stay (git's repack removes them)."""
    from gdag import maintenance

    git("config", "gc.autoPackLimit", "4", cwd=repo)
    git("config", "gc.auto", "0", cwd=repo)
    store = Store.find(repo)
    for i in range(4):  # the fourth round packs everything and retires three packs
        assert gdag("publish", f"v/{i}", f"value {i}", "--no-run", cwd=repo).returncode == 0
        with maintenance.pack_lock(store):
            assert maintenance.repack(store).ok
    retired = repo / ".git" / "gdag" / "pack.retired"
    listed = retired.read_text().splitlines()
    assert len(listed) == 3
    git("multi-pack-index", "write", cwd=repo)
    retired.write_text("".join(f"0 {line.split()[1]}\n" for line in listed))  # long ago
    assert gdag("publish", "v/4", "value 4", "--no-run", cwd=repo).returncode == 0
    with maintenance.pack_lock(store):
        assert maintenance.repack(store).ok
    assert {line.split()[1] for line in listed} <= pack_names(repo)
    git("rev-list", "--objects", "--all", cwd=repo)
    fsck(repo)
    for i in range(5):
        assert gdag("lookup", f"v/{i}", cwd=repo).stdout == f"value {i}".encode()


def test_a_file_in_place_of_a_fan_out_directory_is_named(repo: Path) -> None:
    data = b"a value whose object goes in a blocked directory"
    fan = repo / ".git" / "objects" / blob_id(data)[:2]
    if fan.exists():
        for f in fan.iterdir():
            f.chmod(0o644)
            f.unlink()
        fan.rmdir()
    fan.write_text("not a directory")
    r = gdag("publish", "x", "-", "--no-run", cwd=repo, input=data)
    assert r.returncode == 3 and "is in the way of gdag's files" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr

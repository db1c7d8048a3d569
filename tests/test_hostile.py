"""Hostile inputs: each refused cleanly, or handled without writing where it must not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import blob_id, fanout_17_values, fsck, gdag, git

from gdag import state
from gdag.log import format_message
from gdag.repo import MODE_BLOB, MODE_LINK, MODE_TREE, Entry
from gdag.workspace import Workspace


@pytest.mark.parametrize(
    "name",
    [
        "../../etc/passwd",
        "a/../../b",
        "/abs/path",
        "a\\b",
        "a:b",
        "a~b",
        "a^b",
        "a?b",
        "a*b",
        "a[b",
        "a b",
        "a\tb",
        "a.lock",
        "a/b.lock",
        "a..b",
        ".hidden",
        "-flag",
        "@{u}",
        "HEAD@{1}",
        "\u0430bc",  # Cyrillic a: looks like "abc"
        "ab\u200bc",
        "x/" * 10_000 + "y",
    ],
)
def test_hostile_output_names_refused(repo: Path, name: str) -> None:
    tip = git("rev-parse", "refs/gdag/logs/main", cwd=repo)
    for args in (["publish", "--", name, "v"], ["lookup", "--", name]):
        r = gdag(*args, cwd=repo)
        assert r.returncode in (2, 3), (args, r.stderr)
        assert r.stderr.startswith("gdag: error: ") and "Traceback" not in r.stderr
    assert git("rev-parse", "refs/gdag/logs/main", cwd=repo) == tip


@pytest.mark.parametrize("name", ["../x", "a/b", "x.lock", "\u0430", "", "-x", "HEAD@{0}"])
def test_hostile_log_names_refused(repo: Path, name: str) -> None:
    r = gdag("publish", "x", "1", "--log", name, cwd=repo)
    assert r.returncode in (2, 3) and "Traceback" not in r.stderr
    assert git("for-each-ref", "--format=%(refname)", "refs/gdag/logs", cwd=repo).split() == [
        "refs/gdag/logs/main"
    ]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (b"\xff\xfe[nodes]\n", "not UTF-8"),
        (b"a = " + b"[" * 5000 + b"]" * 5000 + b"\n", "gdag.toml"),
        (
            b"[nodes.x]\nrun = 'true'\ninputs = " + b"{ a = " * 300 + b"1" + b" }" * 300 + b"\n",
            "gdag.toml",
        ),
        (
            b"[outputs]\n" + b"".join(b'[outputs."o%d"]\ntype = "int"\n' % i for i in range(20000)),
            None,
        ),
    ],
)
def test_hostile_definitions(repo: Path, text: bytes, needle: str | None) -> None:
    (repo / "gdag.toml").write_bytes(text)
    r = gdag("check", cwd=repo)
    assert "Traceback" not in r.stderr
    if needle is None:
        assert r.returncode == 0, r.stderr  # huge but valid: handled
    else:
        assert r.returncode == 3 and needle in r.stderr


# gdag's entry point, then its exit status and peak RSS in KiB on stderr. VmHWM, not
# ru_maxrss: Linux carries ru_maxrss over from the forking process (here pytest).
PEAK = textwrap.dedent("""
    import re, sys
    from gdag.main import main
    rc = main(sys.argv[1:])
    with open("/proc/self/status") as f:
        peak = re.search(r"VmHWM:\\s+(\\d+) kB", f.read()).group(1)
    print(rc, peak, file=sys.stderr)
""")


@pytest.mark.parametrize("large", ["0", None], ids=["git blob", "git LFS"])
def test_large_value_streams_with_bounded_memory(
    repo: Path, tmp_path: Path, large: str | None
) -> None:
    """200 MB in and out, as a git blob and (by default) as a git LFS object; the
    processes' peak memory stays far below the value's size."""
    if large is not None:
        (repo / "gdag.toml").write_text(f"[values]\nlarge = {large}\n")
    size = 200 * 1024 * 1024
    big = tmp_path / "big"
    with open(big, "wb") as f:
        chunk = os.urandom(1 << 20)
        for _ in range(size >> 20):
            f.write(chunk)
    out = tmp_path / "out"
    for args in (["publish", "big", "--file", str(big)], ["lookup", "big", "-o", str(out)]):
        proc = subprocess.run(
            [sys.executable, "-c", PEAK, *args], cwd=repo, capture_output=True, text=True
        )
        rc, peak_kib = proc.stderr.strip().splitlines()[-1].split()
        assert rc == "0", proc.stderr
        assert int(peak_kib) < 64 * 1024, f"{args[0]} peaked at {int(peak_kib) // 1024} MiB"
    assert out.stat().st_size == size
    with open(big, "rb") as a, open(out, "rb") as b:
        while chunk := a.read(1 << 22):
            assert chunk == b.read(1 << 22)


def forge_tree_value(repo: Path, output: str, entries: dict[bytes, Entry]) -> None:
    """Publish a directory value whose tree git itself would never make."""
    ws = Workspace.open(repo)
    tree = ws.store.write_tree(entries)

    def build(parent: bytes | None, offset: int) -> tuple[bytes, str, list[bytes]]:
        meta = {"version": 1, "type": "dir", "offset": offset, "kind": "tree"}
        root = state.write_output(ws.store, parent, output, Entry(MODE_TREE, tree), meta, "forged")
        trailers = [
            ("Gdag-Offset", str(offset)),
            ("Gdag-Event", "publish"),
            ("Gdag-Output", output),
        ]
        return root, format_message(f"publish {output} v1", trailers), []

    ws.log.append(build)


@pytest.mark.parametrize("bad", [b"..", b".", b"a/b", b"/etc", b".git", b".GIT"])
def test_directory_values_with_unsafe_names_never_escape(
    repo: Path, tmp_path: Path, bad: bytes
) -> None:
    ws = Workspace.open(repo)
    blob = ws.store.write_blob(b"pwned")
    forge_tree_value(repo, "evil", {bad: Entry(MODE_BLOB, blob), b"ok": Entry(MODE_BLOB, blob)})

    def outside_repo() -> set[Path]:
        return {p for p in tmp_path.rglob("*") if repo not in p.parents and p != repo}

    before = outside_repo()
    target = tmp_path / "deep" / "target"
    r = gdag("lookup", "evil", "-o", str(target), cwd=repo)
    assert r.returncode == 3 and "unsafe name" in r.stderr and "Traceback" not in r.stderr
    written = {p.relative_to(tmp_path) for p in outside_repo() - before}
    assert written <= {Path("deep"), Path("deep/target"), Path("deep/target/ok")}


def test_directory_value_symlink_outside_is_never_written_through(
    repo: Path, tmp_path: Path
) -> None:
    ws = Workspace.open(repo)
    outside = tmp_path / "outside"
    outside.mkdir()
    link = ws.store.write_blob(str(outside).encode())
    blob = ws.store.write_blob(b"data")
    sub = ws.store.write_tree({b"file": Entry(MODE_BLOB, blob)})
    # "escape" is a symlink to a directory outside; "escape2/file" a normal file. A tree
    # cannot hold "escape" as both a link and a directory, so nothing goes through it.
    forge_tree_value(
        repo, "links", {b"escape": Entry(MODE_LINK, link), b"escape2": Entry(MODE_TREE, sub)}
    )
    target = tmp_path / "target"
    r = gdag("lookup", "links", "-o", str(target), cwd=repo)
    assert r.returncode == 0, r.stderr
    assert os.readlink(target / "escape") == str(outside)
    assert (target / "escape2" / "file").read_bytes() == b"data"
    assert list(outside.iterdir()) == []
    # A shell node gets the same safe materialisation.
    (repo / "gdag.toml").write_text(
        textwrap.dedent("""
        [nodes.look]
        run = 'ls "$GDAG_IN_D" > "$GDAG_OUT/listing"'
        inputs = { d = "links" }
        publishes = ["listing"]
    """)
    )
    assert gdag("run", cwd=repo).returncode == 0
    assert gdag("lookup", "listing", cwd=repo).text.split() == ["escape", "escape2"]
    assert list(outside.iterdir()) == []


def test_case_colliding_names_in_a_directory_value(repo: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "Readme").write_text("upper")
    (src / "readme").write_text("lower")
    assert gdag("publish", "docs", "--dir", str(src), cwd=repo).returncode == 0
    r = gdag("lookup", "docs", "-o", str(tmp_path / "out"), cwd=repo)
    assert r.returncode == 0  # a case-sensitive file system keeps both
    assert (tmp_path / "out" / "Readme").read_text() == "upper"
    assert (tmp_path / "out" / "readme").read_text() == "lower"
    fsck(repo)


def test_corrupted_object_and_ref_are_named_and_doctor_reports(repo: Path) -> None:
    assert gdag("publish", "x", "payload", cwd=repo).returncode == 0
    blob = git("rev-parse", "refs/gdag/logs/main:outputs/x/@value", cwd=repo).strip()
    path = repo / ".git" / "objects" / blob[:2] / blob[2:]
    path.chmod(0o644)
    path.write_bytes(b"this is not zlib")
    r = gdag("lookup", "x", cwd=repo)
    assert r.returncode == 3 and blob in r.stderr and "Traceback" not in r.stderr
    r = gdag("doctor", "--json", cwd=repo)
    assert r.returncode == 3
    findings = json.loads(r.stdout)
    assert any(f["severity"] == "error" and "fsck" in f["what"] for f in findings)
    # A ref holding garbage: the error names it.
    (repo / ".git" / "refs" / "gdag" / "logs" / "main").write_text("garbage\n")
    r = gdag("lookup", "x", cwd=repo)
    assert r.returncode == 3 and "refs/gdag/logs/main" in r.stderr and "Traceback" not in r.stderr


def test_doctor_repairs_leftovers_of_killed_processes(repo: Path) -> None:
    import time

    sessions = repo / ".git" / "refs" / "gdag" / "sessions" / "main"
    sessions.mkdir(parents=True)
    lock = sessions / "gone.1.a.lock"
    lock.write_text("")
    old = time.time() - 3600
    os.utime(lock, (old, old))
    r = gdag("doctor", cwd=repo)
    assert r.returncode == 0 and "stale ref locks" in r.stderr and lock.exists()
    r = gdag("doctor", "--repair", cwd=repo)
    assert r.returncode == 0 and "repaired" in r.stderr and not lock.exists()
    assert "no problems found" in gdag("doctor", cwd=repo).stderr


def test_doctor_removes_work_logs_of_killed_replays(repo: Path) -> None:
    import time

    tip = git("rev-parse", "refs/gdag/logs/main", cwd=repo).strip()
    old = f"{int((time.time() - 7200) * 1000):x}"
    work = f"refs/gdag/logs/main.replay-{old}-abcdef"
    fresh = f"refs/gdag/logs/main.replay-{int(time.time() * 1000):x}-abcdef"
    git("update-ref", work, tip, cwd=repo)
    git("update-ref", fresh, tip, cwd=repo)  # a replay running now: left alone
    git("update-ref", f"refs/gdag/sessions/main.replay-{old}-abcdef/n.1.x", tip, cwd=repo)
    r = gdag("doctor", cwd=repo)
    assert r.returncode == 0 and "work log(s) of killed replays" in r.stderr
    r = gdag("doctor", "--repair", cwd=repo)
    assert r.returncode == 0 and "removed 1 work log(s)" in r.stderr
    refs = git("for-each-ref", "--format=%(refname)", "refs/gdag", cwd=repo).split()
    assert refs == ["refs/gdag/logs/main", fresh]
    assert git("rev-parse", "refs/gdag/logs/main", cwd=repo).strip() == tip


@pytest.mark.parametrize("private", [False, True], ids=["plain", "private"])
def test_doctor_packs_loose_objects_and_values_still_stream(
    repo: Path, tmp_path: Path, private: bool
) -> None:
    """Past git's `gc.auto` threshold doctor says so, and `--repair` packs every loose
    object, reachable or not; values read back the same (a large packed one streamed with
    bounded memory), and a private store keeps its own copy of what the user's repository
    also holds."""
    # The large value stays a git blob (not LFS): a packed one must stream too.
    (repo / "gdag.toml").write_text("[values]\nlarge = 0\n")
    shared = b"a value the user's repository holds too"
    (repo / "shared.txt").write_bytes(shared)
    git("add", "shared.txt", cwd=repo)
    git("commit", "-qm", "shared", cwd=repo)
    git("gc", "-q", cwd=repo)
    if private:
        assert gdag("init", "--private", cwd=repo).returncode == 0
    store = repo / ".git" / "gdag" / "store.git" if private else repo / ".git"
    reachable, unreachable = fanout_17_values(6)[:3], fanout_17_values(6)[3:]
    for k, data in enumerate(reachable):
        assert gdag("publish", f"v{k}", data.decode(), cwd=repo).returncode == 0
    for data in unreachable:  # what killed or losing writers leave
        subprocess.run(
            ["git", f"--git-dir={store}", "hash-object", "-w", "--stdin"], input=data, check=True
        )
    assert gdag("publish", "shared", shared.decode(), cwd=repo).returncode == 0
    big = tmp_path / "big"
    big.write_bytes(os.urandom(48 << 20))  # incompressible, above BIG_PACKED
    assert gdag("publish", "big", "--file", str(big), cwd=repo).returncode == 0

    git("config", "gc.auto", "0", cwd=repo)  # off, as in git: no warning
    assert "loose objects" not in gdag("doctor", cwd=repo).stderr
    git("config", "gc.auto", "256", cwd=repo)  # more than one object in 17/
    r = gdag("doctor", cwd=repo)
    assert r.returncode == 0 and "loose objects" in r.stderr and "--repair" in r.stderr
    tip = subprocess.run(
        ["git", f"--git-dir={store}", "rev-parse", "refs/gdag/logs/main"],
        capture_output=True,
        check=True,
    ).stdout
    r = gdag("doctor", "--repair", cwd=repo)
    assert r.returncode == 0 and "packed about" in r.stderr and "(0 left loose)" in r.stderr
    assert "loose objects" not in gdag("doctor", cwd=repo).stderr  # nothing left to pack
    assert not list((store / "objects" / "17").glob("*"))
    for data in unreachable:  # packed too, not dropped
        subprocess.run(["git", f"--git-dir={store}", "cat-file", "-e", blob_id(data)], check=True)
    assert (
        subprocess.run(
            ["git", f"--git-dir={store}", "rev-parse", "refs/gdag/logs/main"],
            capture_output=True,
            check=True,
        ).stdout
        == tip
    )
    if private:  # self-contained: fsck is clean without the user's objects
        (store / "objects" / "info" / "alternates").unlink(missing_ok=True)
        proc = subprocess.run(
            ["git", f"--git-dir={store}", "fsck", "--strict", "--no-dangling"],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr
    fsck(repo)
    for k, data in enumerate(reachable):
        assert gdag("lookup", f"v{k}", cwd=repo).stdout == data
    assert gdag("lookup", "shared", cwd=repo).stdout == shared
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-c", PEAK, "lookup", "big", "-o", str(out)],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    rc, peak_kib = proc.stderr.strip().splitlines()[-1].split()
    assert rc == "0", proc.stderr
    assert int(peak_kib) < 40 * 1024, f"lookup of a packed value peaked at {int(peak_kib)} KiB"
    assert out.read_bytes() == big.read_bytes()
    # The store goes on as before.
    assert gdag("publish", "after", "x", cwd=repo).returncode == 0
    assert gdag("lookup", "after", cwd=repo).stdout == b"x"
    fsck(repo)


def test_lookup_output_file_is_replaced_whole_or_named_in_an_error(repo: Path) -> None:
    assert gdag("publish", "x", "new value", cwd=repo).returncode == 0
    target = repo / "out.txt"
    target.write_text("old value")
    assert gdag("lookup", "x", "-o", str(target), cwd=repo).returncode == 0
    assert target.read_text() == "new value"
    assert sorted(p.name for p in repo.iterdir() if p.name.startswith(".out")) == []
    r = gdag("lookup", "x", "-o", str(repo / "no" / "such" / "dir"), cwd=repo)
    assert r.returncode == 3 and r.stderr.startswith("gdag: error: cannot write ")
    assert "Traceback" not in r.stderr
    r = gdag("lookup", "x", "-o", "/dev/null", cwd=repo)  # not a regular file: written in place
    assert r.returncode == 0 and Path("/dev/null").exists()

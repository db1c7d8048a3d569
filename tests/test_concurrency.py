"""Concurrency and crash safety of the log, with real processes racing on real refs.

Nothing is mocked: publishers are separate Python processes running gdag's own
entry point in a loop (so start-up cost does not hide the races), `git` itself
repacks refs and collects garbage beside them, and every check reads the store
back through the `git` binary. The one exception replays an interleaving a loop found
once in thousands of runs (a directory pruned between two system calls) by making
`os.mkdir` lose that race every time.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import fanout_17_values, fsck, gdag, git

LOG_REF = "refs/gdag/logs/main"
LOCK = LOG_REF + ".lock"

# One publisher: a single Python process calling gdag's real entry point in a loop.
# argv: repo output prefix count mode(value|file) [scratch dir]
WORKER = r"""
import os, sys
from gdag.main import main

repo, output, prefix, count, mode = sys.argv[1:6]
if mode == "file":
    scratch = sys.argv[6]
    os.makedirs(scratch, exist_ok=True)
    bulk = os.urandom(5 << 20)
for i in range(1, int(count) + 1):
    label = f"{prefix}-{i}"
    if mode == "file":
        path = os.path.join(scratch, label)
        with open(path, "wb") as f:
            f.write(label.encode() + b"\n" + bulk)
        args = ["publish", output, "--file", path, "-C", repo]
    else:
        args = ["publish", output, label, "-C", repo]
    rc = main(args)
    if rc != 0:
        sys.stderr.write(f"worker {prefix}: publish {i} exited {rc}\n")
        sys.exit(rc)
"""

# `git pack-refs --all` again and again until a stop file appears; prints "ok failed".
PACKER = r"""
ok=0; failed=0
while [ ! -e "$1" ]; do
    if git pack-refs --all 2>>"$2"; then ok=$((ok+1)); else failed=$((failed+1)); fi
done
echo "$ok $failed"
"""

PUBLISHED = re.compile(rb"^(\S+) v(\d+) @ (\d+)$")


@dataclass
class LogEntry:
    commit: str
    parents: list[str]
    offset: int
    event: str
    outputs: list[str]
    versions: list[str]


def read_log(repo: Path) -> list[LogEntry]:
    """Every commit of the log, newest first, parsed from its trailers by `git log`."""
    fmt = (
        "%x1f".join(
            ["%H", "%P"]
            + [
                f"%(trailers:key={k},valueonly,separator=%x2C)"
                for k in ("Gdag-Offset", "Gdag-Event", "Gdag-Output", "Gdag-Version")
            ]
        )
        + "%x1e"
    )
    out = git("log", f"--format={fmt}", LOG_REF, cwd=repo)
    entries = []
    for rec in out.split("\x1e"):
        rec = rec.strip("\n")
        if not rec:
            continue
        sha, parents, offset, event, outputs, versions = rec.split("\x1f")
        entries.append(
            LogEntry(
                sha,
                parents.split(),
                int(offset),
                event,
                outputs.split(",") if outputs else [],
                versions.split(",") if versions else [],
            )
        )
    return entries


def check_log_shape(repo: Path) -> list[LogEntry]:
    """The log ref resolves, is one linear chain, and its offsets are exactly N..0."""
    tip = git("rev-parse", "--verify", "--quiet", LOG_REF, cwd=repo).strip()
    assert re.fullmatch(r"[0-9a-f]{40}", tip), tip
    entries = read_log(repo)
    assert entries[0].commit == tip
    assert [e.offset for e in entries] == list(range(len(entries) - 1, -1, -1)), (
        "offsets are not contiguous: " + str([e.offset for e in entries][:20])
    )
    for newer, older in zip(entries, entries[1:], strict=False):
        assert newer.parents == [older.commit], f"{newer.commit} does not extend {older.commit}"
    assert entries[-1].parents == [] and entries[-1].event == "init"
    return entries


def cat_values(repo: Path, specs: list[str]) -> list[bytes]:
    """The contents of `<rev>:<path>` objects, read in one `git cat-file --batch`."""
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


def start_worker(
    script: Path,
    repo: Path,
    output: str,
    prefix: str,
    count: int,
    stdout: Path,
    stderr: Path,
    mode: str = "value",
    scratch: Path | None = None,
) -> subprocess.Popen:
    args = [sys.executable, str(script), str(repo), output, prefix, str(count), mode]
    if scratch is not None:
        args.append(str(scratch))
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        return subprocess.Popen(args, stdout=out, stderr=err, stdin=subprocess.DEVNULL)


def reported(stdout: Path) -> list[tuple[str, int, int]]:
    """(output, version, offset) of every publish the worker reported as done."""
    found = []
    for line in stdout.read_bytes().splitlines():
        m = PUBLISHED.match(line)
        assert m, f"unexpected worker output line {line!r}"
        found.append((m[1].decode(), int(m[2]), int(m[3])))
    return found


# -- 1. many publishers, pack-refs beside them -------------------------------------------

PROCS = 8
PER_PROC = 50


def test_parallel_publishers_lose_nothing(repo: Path, tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    packer = tmp_path / "packer.sh"
    packer.write_text(PACKER)
    stop = tmp_path / "stop"
    pack_proc = subprocess.Popen(
        ["bash", str(packer), str(stop), str(tmp_path / "packer.err")],
        cwd=repo,
        stdout=subprocess.PIPE,
        text=True,
    )
    names = [f"p{k}" for k in range(PROCS)]
    started = time.monotonic()
    try:
        workers = {
            name: start_worker(
                script,
                repo,
                f"out/{name}",
                name,
                PER_PROC,
                tmp_path / f"{name}.out",
                tmp_path / f"{name}.err",
            )
            for name in names
        }
        for name, proc in workers.items():
            rc = proc.wait(timeout=180)
            assert rc == 0, f"worker {name} exited {rc}: {(tmp_path / f'{name}.err').read_text()}"
    finally:
        stop.touch()
        packs = pack_proc.communicate(timeout=60)[0].split()
    elapsed = time.monotonic() - started
    ok, failed = int(packs[0]), int(packs[1])
    print(
        f"{PROCS}x{PER_PROC} publishes in {elapsed:.1f}s; "
        f"git pack-refs --all ran {ok} times beside them ({failed} failed on a busy lock)"
    )
    assert ok >= 1, "pack-refs never ran while the publishers did"
    for name in names:
        err = (tmp_path / f"{name}.err").read_text()
        assert err == "", f"worker {name} wrote to stderr:\n{err}"

    # What git sees: 1 init + 400 publishes, offsets 0..400 on one linear chain.
    events = git("log", "--format=%(trailers:key=Gdag-Event,valueonly)", LOG_REF, cwd=repo)
    kinds = [line for line in events.splitlines() if line]
    assert kinds.count("init") == 1 and kinds.count("publish") == PROCS * PER_PROC
    assert len(kinds) == PROCS * PER_PROC + 1
    entries = check_log_shape(repo)
    assert len(entries) == PROCS * PER_PROC + 1
    publishes = [e for e in entries if e.event == "publish"]
    by_offset = {e.offset: e for e in entries}

    # Every (proc, i) exactly once: versions per output exactly 1..50, and the value
    # stored at the commit of version i is "<proc>-i".
    versions: dict[str, list[int]] = defaultdict(list)
    specs, expected = [], []
    for e in publishes:
        assert len(e.outputs) == 1 and len(e.versions) == 1, e
        out, version = e.outputs[0], int(e.versions[0])
        versions[out].append(version)
        proc_name = out.removeprefix("out/")
        specs.append(f"{e.commit}:outputs/{out}/@value")
        expected.append(f"{proc_name}-{version}".encode())
    assert sorted(versions) == sorted(f"out/{n}" for n in names)
    for out, vs in versions.items():
        assert sorted(vs) == list(range(1, PER_PROC + 1)), f"{out}: versions {sorted(vs)}"
        assert vs == sorted(vs, reverse=True), f"{out}: versions out of order on the log"
    assert cat_values(repo, specs) == expected

    # What each publisher was told is what the log holds.
    for name in names:
        told = reported(tmp_path / f"{name}.out")
        assert [v for _, v, _ in told] == list(range(1, PER_PROC + 1))
        for out, version, offset in told:
            e = by_offset[offset]
            assert e.outputs == [out] and e.versions == [str(version)], (name, offset, e)

    # `gdag lookup --at` agrees with git for a sample of (output, offset), including
    # offsets where the output's value was set by an earlier event.
    rng = random.Random(1234)
    first_offset = {
        f"out/{n}": min(e.offset for e in publishes if e.outputs == [f"out/{n}"]) for n in names
    }
    sample = [max(e.offset for e in publishes), 1] + rng.sample(range(1, len(entries)), 10)
    for offset in sample:
        out = rng.choice([o for o, first in first_offset.items() if first <= offset])
        commit = by_offset[offset].commit
        truth = subprocess.run(
            ["git", "show", f"{commit}:outputs/{out}/@value"],
            cwd=repo,
            capture_output=True,
            check=True,
        ).stdout
        r = gdag("lookup", out, "--at", str(offset), cwd=repo)
        assert r.returncode == 0, r.stderr
        assert r.stdout == truth, (out, offset, r.stdout, truth)
    fsck(repo)


# -- 2. SIGKILL at random moments ----------------------------------------------------------

SMALL_TRIALS = 18
LARGE_TRIALS = 6


def _wait_for_first_publish(stdout: Path, proc: subprocess.Popen, limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while not stdout.read_bytes():
        assert proc.poll() is None, f"publisher exited {proc.returncode} before publishing"
        assert time.monotonic() < deadline, "publisher never published"
        time.sleep(0.005)


def test_sigkill_publisher_never_breaks_log(repo: Path, tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    rng = random.Random(20240611)
    lock = repo / ".git" / LOCK
    # (mode, how the kill is timed): spread from process start, or just after the
    # first publish so the kill lands inside the publish loop.
    trials = (
        [("value", "from-start")] * (SMALL_TRIALS // 2)
        + [("value", "in-loop")] * (SMALL_TRIALS - SMALL_TRIALS // 2)
        + [("file", "in-loop")] * LARGE_TRIALS
    )
    rng.shuffle(trials)
    locks_left = killed_in_loop = 0
    previous_top = 0
    for n, (mode, timing) in enumerate(trials):
        name = f"k{n}"
        out, err = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
        proc = start_worker(
            script,
            repo,
            f"kill/{mode}",
            name,
            10_000,
            out,
            err,
            mode=mode,
            scratch=tmp_path / "scratch" if mode == "file" else None,
        )
        try:
            if timing == "from-start":
                time.sleep(rng.uniform(0.0, 0.3))
            else:
                _wait_for_first_publish(out, proc)
                time.sleep(rng.uniform(0.0, 0.08 if mode == "file" else 0.03))
            assert proc.poll() is None, f"publisher exited early: {err.read_text()}"
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        killed_in_loop += bool(out.read_bytes())

        # The log is whole: the ref resolves, git can walk it, offsets 0..N, fsck clean.
        entries = check_log_shape(repo)
        top = entries[0].offset
        assert top >= previous_top, f"trial {n}: the log went back from {previous_top} to {top}"
        by_offset = {e.offset: e for e in entries}
        for output, version, offset in reported(out):
            assert by_offset[offset].outputs == [output], (n, offset)
            assert by_offset[offset].versions == [str(version)], (n, offset)
        fsck(repo)

        # A normal publish then works without manual cleanup; a lock the kill left
        # behind is aged past gdag's stale threshold so the test does not wait 5 s.
        if lock.exists():
            locks_left += 1
            old = time.time() - 10
            os.utime(lock, (old, old))
        value = f"after-{n}"
        r = gdag("publish", "after/kill", value, cwd=repo)
        assert r.returncode == 0, f"trial {n}: publish after SIGKILL failed: {r.stderr}"
        assert r.text.endswith(f"@ {top + 1}\n"), r.text
        assert not lock.exists()
        assert gdag("lookup", "after/kill", cwd=repo).stdout == value.encode()
        previous_top = top + 1

    # Temporary object files of killed writers stay behind (git gc removes them once
    # they are two weeks old, or at once with --prune=now): counted, not judged.
    tmp_files = list((repo / ".git" / "objects").glob("tmp_obj_*"))
    print(
        f"{len(trials)} SIGKILLs ({killed_in_loop} inside the publish loop): "
        f"{locks_left} left {LOCK} behind, {len(tmp_files)} tmp_obj_* files left "
        f"({sum(f.stat().st_size for f in tmp_files) >> 20} MiB); "
        f"the log ended at offset {previous_top}"
    )
    assert killed_in_loop >= LARGE_TRIALS
    check_log_shape(repo)
    fsck(repo)


def test_stale_lock_is_broken(repo: Path) -> None:
    """A lock file left 10 s ago (a killed writer) does not stop the next publish."""
    lock = repo / ".git" / LOCK
    lock.write_bytes(b"")
    old = time.time() - 10
    os.utime(lock, (old, old))
    started = time.monotonic()
    r = gdag("publish", "a", "1", cwd=repo)
    elapsed = time.monotonic() - started
    assert r.returncode == 0, r.stderr
    assert r.text == "a v1 @ 1\n"
    assert not lock.exists()
    assert not list(lock.parent.glob("main.lock*")), "the broken lock was not cleaned up"
    assert elapsed < 4.5, f"a 10 s old lock was waited on for {elapsed:.1f}s"
    check_log_shape(repo)
    fsck(repo)


# -- 3. the user runs git gc and pack-refs between commands --------------------------------


def test_publish_survives_gc(repo: Path, tmp_path: Path) -> None:
    expected: list[tuple[str, int, bytes]] = []  # (output, offset, value)
    big = os.urandom(200_000)
    gcs = 0
    for i in range(1, 31):
        output = ("gc/a", "gc/b", "gc/file")[i % 3]
        if output == "gc/file":
            value = b"file %d\n" % i + big
            src = tmp_path / f"v{i}"
            src.write_bytes(value)
            r = gdag("publish", output, "--file", str(src), cwd=repo)
        else:
            # Every 4th value repeats an earlier one: its blob is by then only in a pack.
            value = b"v%d" % (i - 8 if i % 4 == 0 and i > 8 else i)
            r = gdag("publish", output, value.decode(), cwd=repo)
        assert r.returncode == 0, f"publish {i}: {r.stderr}"
        m = PUBLISHED.match(r.stdout.rstrip(b"\n"))
        assert m and m[1].decode() == output, r.stdout
        offset = int(m[3])
        assert offset == i
        expected.append((output, offset, value))
        if i % 5 == 0:
            git("gc", "--prune=now", "--quiet", cwd=repo)
            gcs += 1
            counts = git("count-objects", "-v", cwd=repo)
            assert re.search(r"^count: 0$", counts, re.M), counts
            assert not (repo / ".git" / LOG_REF).exists(), "gc left the log ref loose"
        elif i % 5 == 2:
            git("pack-refs", "--all", cwd=repo)
            assert not (repo / ".git" / LOG_REF).exists()
    assert gcs == 6

    entries = check_log_shape(repo)
    assert len(entries) == 31
    for output, offset, value in expected:
        r = gdag("lookup", output, "--at", str(offset), cwd=repo)
        assert r.returncode == 0, f"lookup {output} --at {offset}: {r.stderr}"
        assert r.stdout == value, (output, offset, r.stdout[:40])
    for output in ("gc/a", "gc/b", "gc/file"):
        latest = [v for o, _, v in expected if o == output][-1]
        assert gdag("lookup", output, cwd=repo).stdout == latest
    fsck(repo)


def git_hash(data: bytes) -> str:
    """The id git gives a blob of `data`."""
    import hashlib

    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def test_directory_pruned_between_mkdir_and_its_check_is_no_error(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`git prune-packed` and `git pack-refs` remove the directories they empty. A
    publisher beside `doctor --repair` once saw mkdir fail with EEXIST and the directory
    gone a moment later (pathlib's `exist_ok` then raises): exit 4, a traceback. Here
    each first mkdir of a directory loses that race; the writes still land."""
    from gdag.repo import Store

    store = Store.find(repo)
    real_mkdir, lost = os.mkdir, []

    def mkdir_losing_the_race(path, mode=0o777, **kw):  # type: ignore[no-untyped-def]
        if str(path) not in lost:  # it "existed", then a prune removed it
            lost.append(str(path))
            raise FileExistsError(17, "File exists", str(path))
        return real_mkdir(path, mode, **kw)

    # A value whose fan-out directory is not there yet, so writing it makes one.
    value = next(
        v
        for v in (b"a value written while git prunes %d\n" % i for i in range(1000))
        if not (repo / ".git" / "objects" / git_hash(v)[:2]).exists()
    )
    monkeypatch.setattr(os, "mkdir", mkdir_losing_the_race)
    sha = store.write_blob(value)
    assert store.cas_ref("refs/gdag/test/deep/ref", None, sha)
    monkeypatch.undo()
    assert any("/objects/" in p for p in lost) and any("/refs/gdag/test" in p for p in lost)
    assert git("cat-file", "blob", sha.decode(), cwd=repo) == value.decode()
    assert git("rev-parse", "refs/gdag/test/deep/ref", cwd=repo).strip() == sha.decode()
    fsck(repo)


def test_parent_pruned_before_its_child_is_made_is_made_again(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`git pack-refs` removes every ref directory it empties, up to `refs/gdag`: a
    lock for `refs/gdag/a/b/c` may find `refs/gdag/a` gone between making it and
    making `a/b`. Here that mkdir meets ENOENT once (after removing the parent, as
    the prune would); the ref is still written. A file where a directory belongs is
    a clear store error, not a traceback or an endless retry."""
    from gdag.errors import StoreError
    from gdag.repo import Store

    store = Store.find(repo)
    real_mkdir, lost = os.mkdir, []

    def mkdir_after_prune(path, mode=0o777, **kw):  # type: ignore[no-untyped-def]
        p = Path(path)
        if p.name == "b" and p.parent.name == "a" and not lost:
            lost.append(str(p))
            os.rmdir(p.parent)
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return real_mkdir(path, mode, **kw)

    sha = store.write_blob(b"v\n")
    monkeypatch.setattr(os, "mkdir", mkdir_after_prune)
    assert store.cas_ref("refs/gdag/a/b/c", None, sha)
    monkeypatch.undo()
    assert lost
    assert git("rev-parse", "refs/gdag/a/b/c", cwd=repo).strip() == sha.decode()

    (repo / ".git" / "refs" / "gdag" / "blocked").write_text("not a directory\n")
    with pytest.raises(StoreError, match="in the way"):
        store.cas_ref("refs/gdag/blocked/x", None, sha, timeout=1.0)
    (repo / ".git" / "refs" / "gdag" / "blocked").unlink()
    (repo / ".git" / "refs" / "gdag" / "dangling").symlink_to(repo / "nowhere")
    with pytest.raises(StoreError, match="in the way"):
        store.cas_ref("refs/gdag/dangling/x", None, sha, timeout=1.0)
    (repo / ".git" / "refs" / "gdag" / "dangling").unlink()
    fsck(repo)


@pytest.mark.parametrize("auto_pack", [False, True], ids=["doctor", "doctor+background"])
def test_doctor_packing_beside_publishers_loses_nothing(
    repo: Path, tmp_path: Path, auto_pack: bool
) -> None:
    """`gdag doctor --repair` packs loose objects (git repack) again and again while two
    processes publish (and, with auto_pack, their background packers pack too): every
    value is in the log once, in order; doctor reports no damage meanwhile (objects
    written while its fsck runs are not "missing"); fsck clean."""
    if not auto_pack:
        (repo / "gdag.toml").write_text("[store]\nauto_pack = false\n")
    git("config", "gc.auto", "1", cwd=repo)  # pack whenever 17/ holds two loose objects
    for k, data in enumerate(fanout_17_values(2)):  # so the first repair has work
        assert gdag("publish", f"seed{k}", data.decode(), "--no-run", cwd=repo).returncode == 0
    procs, per_proc = 2, 100
    names = [f"p{k}" for k in range(procs)]
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(repo), f"out/{n}", n, str(per_proc), "value"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for n in names
    ]
    packed = repairs = 0
    deadline = time.monotonic() + 300
    try:
        while any(w.poll() is None for w in workers):
            assert time.monotonic() < deadline, "the publishers never finished"
            r = gdag("doctor", "--repair", cwd=repo)
            assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
            packed += "packed about" in r.stderr
            repairs += 1
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    for w in workers:
        assert w.wait() == 0, w.stderr.read() if w.stderr else ""
    print(f"{repairs} repairs beside the publishers, {packed} of them packed")
    # With background packers at work, they may have left doctor nothing to pack.
    assert packed >= 1 or auto_pack, (repairs, packed)
    if auto_pack:
        assert list((repo / ".git" / "objects" / "pack").glob("*.pack"))

    entries = check_log_shape(repo)
    before = 3 if auto_pack else 4  # init, [the dag event of auto_pack = false,] 2 seeds
    assert len(entries) == procs * per_proc + before
    specs, expected = [], []
    for e in entries[:-before]:
        (out,), (version,) = e.outputs, e.versions
        specs.append(f"{e.commit}:outputs/{out}/@value")
        expected.append(f"{out.removeprefix('out/')}-{version}".encode())
    assert cat_values(repo, specs) == expected
    for n in names:
        assert gdag("lookup", f"out/{n}", cwd=repo).stdout == f"{n}-{per_proc}".encode()
    fsck(repo)

"""One DAG, several machines: clones sharing a bare repository over git daemon and file://."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import gdag, git

PIPELINE = """
    [nodes.up]
    run = 'tr a-z A-Z < "$GDAG_IN_X" > "$GDAG_OUT/up"'
    inputs = { x = "src" }
    publishes = ["up"]
    [nodes.tally]
    run = 'cat "$GDAG_IN_X" >> "$GDAG_REPO/.git/tally.txt"; printf "%s," "$(cat "$GDAG_IN_X")" > "$GDAG_OUT/last"'
    inputs = { x = "up" }
    publishes = ["last"]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Daemon:
    """`git daemon` serving one directory on 127.0.0.1, pushes allowed."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "git",
                "daemon",
                "--reuseaddr",
                f"--base-path={self.base}",
                "--export-all",
                "--enable=receive-pack",
                "--listen=127.0.0.1",
                f"--port={self.port}",
                str(self.base),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("git daemon did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    @property
    def url(self) -> str:
        return f"git://127.0.0.1:{self.port}/shared.git"


@pytest.fixture(params=["git-daemon", "file"])
def cluster(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A bare remote and three clones ("machines") sharing one gdag log."""
    bare = tmp_path / "shared.git"
    git("init", "-q", "--bare", "-b", "main", str(bare), cwd=tmp_path)
    daemon = Daemon(tmp_path)
    if request.param == "git-daemon":
        daemon.start()
        url = daemon.url
    else:
        url = f"file://{bare}"
    seed = tmp_path / "m0"
    git("init", "-q", "-b", "main", str(seed), cwd=tmp_path)
    assert gdag("init", cwd=seed).returncode == 0
    (seed / "gdag.toml").write_text(textwrap.dedent(PIPELINE))
    git("add", "gdag.toml", cwd=seed)
    git("commit", "-qm", "definition", cwd=seed)
    git("remote", "add", "origin", url, cwd=seed)
    git("push", "-q", "origin", "main", cwd=seed)
    assert gdag("sync", cwd=seed).returncode == 0
    machines = [seed]
    for i in (1, 2):
        clone = tmp_path / f"m{i}"
        git("clone", "-q", url, str(clone), cwd=tmp_path)
        r = gdag("sync", cwd=clone)
        assert r.returncode == 0 and "adopted" in r.text, r.stderr
        machines.append(clone)
    yield machines, bare, daemon
    daemon.stop()


def remote_sessions(bare: Path) -> list[tuple[str, str]]:
    """(node, input versions) of every ok session on the remote log."""
    found = []
    for c in subprocess.run(
        [
            "git",
            f"--git-dir={bare}",
            "log",
            "--first-parent",
            "--format=%H",
            "--grep=^session .* ok$",
            "refs/gdag/logs/main",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split():
        msg = subprocess.run(
            ["git", f"--git-dir={bare}", "log", "-1", "--format=%B", c],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        node = msg.split()[1]
        done = subprocess.run(
            ["git", f"--git-dir={bare}", "show", f"{c}:nodes/{node}/@done.json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        found.append((node, json.dumps(json.loads(done)["inputs"], sort_keys=True)))
    return found


def fsck_bare(path: Path) -> None:
    proc = subprocess.run(
        ["git", f"--git-dir={path}", "fsck", "--strict", "--no-dangling"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr


WORKER = textwrap.dedent("""
    import sys, time, os
    from gdag.main import main
    stop = sys.argv[1]
    while not os.path.exists(stop):
        main(["run", "--remote", "origin", "-q", "-j", "2"])
        time.sleep(0.05)
    main(["run", "--remote", "origin", "-q"])
""")

PUBLISHER = textwrap.dedent("""
    import sys
    from gdag.main import main
    name, count = sys.argv[1], int(sys.argv[2])
    for i in range(count):
        assert main(["publish", "src", f"{name}-{i}", "--no-run"]) == 0
        if i % 5 == 4:
            assert main(["sync", "origin"]) == 0
    assert main(["sync", "origin"]) == 0
""")


def test_three_machines_one_dag(cluster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    machines, bare, _ = cluster
    # 15 a machine keeps the suite quick; GDAG_REMOTE_EVENTS=100 gives the full 300.
    per_machine = int(os.environ.get("GDAG_REMOTE_EVENTS", "15"))
    stop = tmp_path / "stop"
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(stop)],
            cwd=m,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for m in machines
    ]
    pubs = [
        subprocess.Popen(
            [sys.executable, "-c", PUBLISHER, f"m{i}", str(per_machine)],
            cwd=m,
            stdout=subprocess.DEVNULL,
        )
        for i, m in enumerate(machines)
    ]
    for p in pubs:
        assert p.wait(timeout=300) == 0
    stop.write_text("")
    for w in workers:
        assert w.wait(timeout=300) == 0
    for m in machines:
        assert gdag("sync", cwd=m).returncode == 0
        assert gdag("run", "--remote", "origin", cwd=m).returncode == 0
    tips = {git("rev-parse", "refs/gdag/logs/main", cwd=m) for m in machines}
    assert len(tips) == 1
    remote_tip = subprocess.run(
        ["git", f"--git-dir={bare}", "rev-parse", "refs/gdag/logs/main"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert tips == {remote_tip}
    # Every publish event arrived exactly once.
    values = subprocess.run(
        [
            "git",
            f"--git-dir={bare}",
            "log",
            "--first-parent",
            "--format=%H",
            "--grep=^publish src",
            "refs/gdag/logs/main",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    published = sorted(
        subprocess.run(
            ["git", f"--git-dir={bare}", "show", f"{c}:outputs/src/@value"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for c in values
    )
    assert published == sorted(f"m{i}-{k}" for i in range(3) for k in range(per_machine))
    # Each (node, input versions) completed once on the remote log.
    sessions = remote_sessions(bare)
    assert len(sessions) == len(set(sessions))
    final = gdag("lookup", "src", cwd=machines[0]).text
    assert gdag("lookup", "up", cwd=machines[1]).text == final.upper()
    for m in machines:
        assert gdag("status", "--json", cwd=m).returncode == 0
        fsck_bare(m / ".git")
    fsck_bare(bare)


def test_killed_worker_is_taken_over_and_never_applies_its_stale_session(
    cluster,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    machines, bare, _ = cluster
    a, b, _c = machines
    slow = textwrap.dedent(PIPELINE).replace("tr a-z A-Z", "sleep 3; tr a-z A-Z")
    for m in (a, b):
        (m / "gdag.toml").write_text(slow)
    assert gdag("publish", "src", "x", "--no-run", cwd=a).returncode == 0
    assert gdag("sync", cwd=a).returncode == 0
    env = {**os.environ, "GDAG_LEASE_TTL": "2"}
    victim = subprocess.Popen(
        [sys.executable, "-m", "gdag", "run", "--remote", "origin"],
        cwd=a,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.5)  # it holds the lease of `up` and runs it
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    r = subprocess.run(
        [sys.executable, "-m", "gdag", "run", "--remote", "origin"],
        cwd=b,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert gdag("sync", cwd=a).returncode == 0
    assert gdag("lookup", "up", cwd=a).stdout == b"X"
    # The killed worker, restarted, recovers or drops its own session: never applied twice.
    r = subprocess.run(
        [sys.executable, "-m", "gdag", "run", "--remote", "origin"],
        cwd=a,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    sessions = remote_sessions(bare)
    assert sessions.count(("up", '{"src": 1}')) == 1
    assert git("for-each-ref", "refs/gdag/sessions", cwd=a) == ""
    fsck_bare(bare)


@pytest.mark.parametrize("cluster", ["git-daemon"], indirect=True)
def test_offline_publishes_arrive_once_in_order(cluster) -> None:  # type: ignore[no-untyped-def]
    machines, bare, daemon = cluster
    a, b, _ = machines
    daemon.stop()  # the remote is unreachable
    for i in range(50):
        assert gdag("publish", "src", f"offline-{i}", "--no-run", cwd=a).returncode == 0
    r = gdag("sync", cwd=a)
    assert r.returncode == 3 and "cannot fetch" in r.stderr  # unreachable: a clear error
    daemon.start()
    for i in range(3):
        assert gdag("publish", "src", f"online-{i}", "--no-run", cwd=b).returncode == 0
    assert gdag("sync", cwd=b).returncode == 0
    r = gdag("sync", cwd=a)
    assert r.returncode == 0 and "re-applied 50" in r.text, r.stderr
    order = subprocess.run(
        [
            "git",
            f"--git-dir={bare}",
            "log",
            "--first-parent",
            "--reverse",
            "--format=%H",
            "--grep=^publish src",
            "refs/gdag/logs/main",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    values = [
        subprocess.run(
            ["git", f"--git-dir={bare}", "show", f"{c}:outputs/src/@value"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for c in order
    ]
    assert values == [f"online-{i}" for i in range(3)] + [f"offline-{i}" for i in range(50)]
    fsck_bare(bare)


def test_remote_refs_move_only_from_the_expected_value(tmp_path: Path) -> None:
    """RemoteRefs is the Refs protocol on a remote: read by fetch, compare-and-swap and
    delete by push --force-with-lease, listed by ls-remote. git reads the results back."""
    from gdag.remote import Remote, RemoteRefs
    from gdag.repo import Store

    bare = tmp_path / "shared.git"
    git("init", "-q", "--bare", str(bare), cwd=tmp_path)
    assert gdag("init", "-C", str(tmp_path / "m"), cwd=tmp_path).returncode == 0
    store = Store.find(tmp_path / "m")
    tree = store.write_tree({})
    a, b = (store.make_commit(tree, [], f"token {i}\n") for i in "ab")
    refs = RemoteRefs(Remote(store, f"file://{bare}"))
    ref, other = "refs/gdag/leases/main/up", "refs/gdag/leases/main/down"

    assert refs.read_ref(ref) is None
    assert refs.cas_ref(ref, None, a)
    assert not refs.cas_ref(ref, None, b)  # exists already
    assert refs.cas_ref(other, None, b)
    assert not refs.cas_ref(ref, b, b)  # not at b
    assert refs.read_ref(ref) == a
    assert refs.list_refs("refs/gdag/leases/") == {ref: a, other: b}
    assert not refs.delete_ref(other, a)  # not at a: kept
    assert refs.delete_ref(other, b)
    assert not refs.delete_ref(other, b)  # gone already
    assert git("for-each-ref", "--format=%(refname) %(objectname)", cwd=bare).split("\n")[:-1] == [
        f"{ref} {a.decode()}"
    ]
    fsck_bare(bare)


def _source_with_values(tmp_path: Path) -> tuple[Path, Path]:
    """A repository whose log holds a value, a directory value and a value equal to a file
    that only an old commit has, synced with a bare repository that serves partial clones."""
    src = tmp_path / "src"
    assert gdag("init", "-C", str(src), cwd=tmp_path).returncode == 0
    (src / "old.txt").write_text("only in history\n")
    git("add", "-A", cwd=src)
    git("commit", "-qm", "old", cwd=src)
    git("rm", "-q", "old.txt", cwd=src)
    git("commit", "-qm", "gone", cwd=src)
    (src / "d").mkdir()
    (src / "d" / "f").write_text("in a tree\n")
    for args in (["x", "hello"], ["old", "only in history\n"], ["tree", "--dir", "d"]):
        r = gdag("publish", *args, "--no-run", cwd=src)
        assert r.returncode == 0, r.stderr
    bare = tmp_path / "shared.git"
    git("init", "-q", "--bare", str(bare), cwd=tmp_path)
    git("config", "uploadpack.allowFilter", "true", cwd=bare)
    git("push", "-q", str(bare), "HEAD:refs/heads/main", cwd=src)
    r = gdag("sync", str(bare), cwd=src)
    assert r.returncode == 0, r.stderr
    return src, bare


def _values_are_whole(clone: Path) -> None:
    assert gdag("lookup", "x", cwd=clone).stdout == b"hello"
    assert gdag("lookup", "old", cwd=clone).stdout == b"only in history\n"
    r = gdag("lookup", "tree", "-o", "copy", cwd=clone)
    assert r.returncode == 0, r.stderr
    assert (clone / "copy" / "f").read_text() == "in a tree\n"
    missing = git("rev-list", "--objects", "--missing=print", "refs/gdag/logs/main", cwd=clone)
    assert [line for line in missing.splitlines() if line.startswith("?")] == []


@pytest.mark.parametrize("kind", ["--filter=blob:none", "--depth=1"])
def test_sync_in_a_partial_or_shallow_clone(tmp_path: Path, kind: str) -> None:
    src, bare = _source_with_values(tmp_path)
    clone = tmp_path / "clone"
    git("clone", "-q", kind, f"file://{bare}", str(clone), cwd=tmp_path)
    r = gdag("sync", cwd=clone)
    assert r.returncode == 0 and "adopted" in r.text, r.stderr
    _values_are_whole(clone)
    r = gdag("publish", "y", "from the clone", "--no-run", cwd=clone)
    assert r.returncode == 0, r.stderr
    assert gdag("sync", cwd=clone).returncode == 0
    assert gdag("sync", str(bare), cwd=src).returncode == 0
    assert gdag("lookup", "y", cwd=src).stdout == b"from the clone"
    r = gdag("doctor", cwd=clone)
    assert r.returncode == 0, r.stderr


def test_sync_with_a_relative_path(tmp_path: Path) -> None:
    src, _ = _source_with_values(tmp_path)
    git("init", "-q", "--bare", str(tmp_path / "other.git"), cwd=tmp_path)
    r = gdag("sync", "../other.git", cwd=src)
    assert r.returncode == 0 and "pushed" in r.text, r.stderr
    assert gdag("sync", "../other.git", cwd=src).text == "main: up to date\n"
    # With -C the path is read from the directory -C names, as git reads it.
    r = gdag("-C", "src", "sync", "../other.git", cwd=tmp_path)
    assert r.returncode == 0 and r.text == "main: up to date\n", r.stderr
    r = gdag("-C", "src", "run", "--remote", "../other.git", "--dry-run", cwd=tmp_path)
    assert r.returncode == 0, r.stderr

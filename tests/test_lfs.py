"""Large values through git LFS: local objects, pointers, `gdag sync` past a host's size
limit, a fresh clone reading them back, an upload broken off by a killed server.

The LFS endpoint is dulwich's test server, run for real on 127.0.0.1 in a process
of its own; the remote is a bare repository whose `pre-receive` hook refuses blobs
over 1 MiB, as git hosts refuse files over 100 MB. `git lfs fsck` and `git fsck
--strict` check what gdag left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from hashlib import sha256
from pathlib import Path

import pytest
from conftest import define, fsck, gdag, git, wait_for

MiB = 1 << 20

SERVER = """
import sys, time
from pathlib import Path
from dulwich import lfs_server

lfs_dir, url_file, stall = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
if stall:
    def do_PUT(self):
        self.rfile.read(64 * 1024)  # part of the object, then nothing more
        Path(stall).write_text("uploading")
        time.sleep(3600)
    lfs_server.LFSRequestHandler.do_PUT = do_PUT
server, url = lfs_server.run_lfs_server("127.0.0.1", 0, lfs_dir)
url_file.write_text(url)
server.serve_forever()
"""

# Refuses any pushed blob over 1 MiB, as a git host refuses large files.
PRE_RECEIVE = """#!/bin/sh
while read old new ref; do
    [ "$new" = 0000000000000000000000000000000000000000 ] && continue
    big=$(git rev-list --objects "$new" | cut -d" " -f1 |
        git cat-file --batch-check='%(objecttype) %(objectsize) %(objectname)' |
        awk '$1 == "blob" && $2 > 1048576 { print $3 }')
    if [ -n "$big" ]; then
        echo "refused: blob $big is over 1 MiB" >&2
        exit 1
    fi
done
"""


class Server:
    """dulwich's LFS server in a process of its own, storing under `lfs_dir`."""

    def __init__(self, lfs_dir: Path, work: Path, stall: bool = False) -> None:
        self.lfs_dir = lfs_dir
        url_file = work / f"url-{os.urandom(4).hex()}"
        self.stalled = work / f"stalled-{os.urandom(4).hex()}"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                SERVER,
                str(lfs_dir),
                str(url_file),
                str(self.stalled) if stall else "",
            ]
        )
        self.url = wait_for(url_file)

    def objects(self) -> set[str]:
        return {p.name for p in (self.lfs_dir / "objects").rglob("*") if p.is_file()}

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        if server.proc.poll() is None:
            server.kill()


def bare_remote(tmp_path: Path) -> Path:
    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", str(remote), cwd=tmp_path)
    hook = remote / "hooks" / "pre-receive"
    hook.write_text(PRE_RECEIVE)
    hook.chmod(0o755)
    return remote


DEFINITION = """
[values]
large = "512KiB"
[nodes.copy]
run = 'cat "$GDAG_IN_X" > "$GDAG_OUT/copy"'
inputs = { x = "big/a" }
publishes = ["copy"]
"""


def publisher(tmp_path: Path, remote: Path, lfs_url: str) -> Path:
    """A repository publishing into a log whose values go to `lfs_url` (.lfsconfig,
    committed, so clones find the endpoint too), with `remote` as origin."""
    repo = tmp_path / "repo"
    assert gdag("init", "-C", str(repo), cwd=tmp_path).returncode == 0
    define(repo, DEFINITION)
    (repo / ".lfsconfig").write_text(f'[lfs]\n\turl = "{lfs_url}"\n')
    git("add", "gdag.toml", ".lfsconfig", cwd=repo)
    git("commit", "-q", "-m", "definition", cwd=repo)
    git("remote", "add", "origin", str(remote), cwd=repo)
    git("push", "-q", "origin", "HEAD", cwd=repo)
    return repo


def publish_big(repo: Path, tmp_path: Path, name: str, size: int = 5 * MiB) -> bytes:
    data = os.urandom(size)
    path = tmp_path / f"{name.replace('/', '_')}.bin"
    path.write_bytes(data)
    r = gdag("publish", name, "--file", str(path), cwd=repo)
    assert r.returncode == 0, r.stderr
    return data


def lookup(repo: Path, output: str) -> bytes:
    r = gdag("lookup", output, cwd=repo)
    assert r.returncode == 0, r.stderr
    return r.stdout


def lfs_fsck(repo: Path) -> None:
    proc = subprocess.run(
        ["git", "lfs", "fsck", "refs/gdag/logs/main"], cwd=repo, capture_output=True, text=True
    )
    assert proc.returncode == 0 and "Git LFS fsck OK" in proc.stdout, proc.stdout + proc.stderr


def test_large_values_are_lfs_objects_and_pointers(repo: Path, tmp_path: Path) -> None:
    define(repo, DEFINITION)
    data = publish_big(repo, tmp_path, "big/a", MiB)
    small = b"x" * (512 * 1024 - 1)
    assert gdag("publish", "small", "-", cwd=repo, input=small).returncode == 0
    oid = __import__("hashlib").sha256(data).hexdigest()
    # The object where git-lfs keeps it; the state tree holds the standard pointer.
    obj = repo / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid
    assert obj.read_bytes() == data
    pointer = git("cat-file", "blob", "refs/gdag/logs/main:outputs/big/a/@value", cwd=repo)
    assert pointer == f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {MiB}\n"
    # Below the threshold nothing changes.
    assert (
        git("cat-file", "-s", "refs/gdag/logs/main:outputs/small/@value", cwd=repo)
        == f"{len(small)}\n"
    )
    assert lookup(repo, "big/a") == data and lookup(repo, "copy") == data
    assert lookup(repo, "small") == small
    out = tmp_path / "out.bin"
    assert gdag("lookup", "big/a", "-o", str(out), cwd=repo).returncode == 0
    assert out.read_bytes() == data
    # A damaged object is refused, and -o keeps the file it would have replaced.
    obj.chmod(0o644)
    obj.write_bytes(b"\0" + data[1:])
    r = gdag("lookup", "big/a", "-o", str(out), cwd=repo)
    assert r.returncode != 0 and "is damaged" in r.stderr
    assert out.read_bytes() == data
    obj.write_bytes(data)
    lfs_fsck(repo)
    fsck(repo)


def test_typed_and_python_large_values(repo: Path) -> None:
    (repo / "fns.py").write_text("def double(t: str) -> str:\n    return t + t\n")
    define(
        repo,
        """
        [values]
        large = "1KiB"
        [outputs.text]
        type = "str"
        [nodes.double]
        python = "fns:double"
        inputs = { t = "text" }
        publishes = ["twice"]
        [nodes.shell]
        run = 'cat "$GDAG_IN_T" > "$GDAG_OUT/echo"'
        inputs = { t = "text" }
        publishes = ["echo"]
        """,
    )
    text = "\u00e9" * 2000
    assert gdag("publish", "text", "-", cwd=repo, input=text.encode()).returncode == 0
    meta = gdag("lookup", "text", "--meta", cwd=repo).text
    assert "kind: lfs" in meta
    assert lookup(repo, "text") == text.encode()
    assert lookup(repo, "echo") == text.encode()
    assert lookup(repo, "twice") == (text + text).encode()
    assert "kind: lfs" in gdag("lookup", "twice", "--meta", cwd=repo).text
    fsck(repo)


@pytest.mark.parametrize(
    ("large", "says"),
    [
        ('"12 parsecs"', "[values] large must be a size such as"),
        ('"-1MiB"', "[values] large must be a size such as"),
        ("true", "[values] large must be a size such as"),
        ('"1MB"', "[values] large must be a size such as"),
    ],
)
def test_bad_sizes_are_refused(repo: Path, large: str, says: str) -> None:
    define(repo, f"[values]\nlarge = {large}\n")
    r = gdag("check", cwd=repo)
    assert r.returncode == 3 and says in r.stderr and "hint: units are B, KiB" in r.stderr


def test_zero_turns_large_values_off_and_dag_json_names_it_only_when_set(
    repo: Path, tmp_path: Path
) -> None:
    assert '"values"' not in git("show", "refs/gdag/logs/main:dag.json", cwd=repo)
    define(repo, "[values]\nlarge = 0\n")
    publish_big(repo, tmp_path, "big", 40 * MiB // 8)
    assert "kind: blob" in gdag("lookup", "big", "--meta", cwd=repo).text
    assert '"large": 0' in git("show", "refs/gdag/logs/main:dag.json", cwd=repo)
    assert not (repo / ".git" / "lfs").exists()


ENDPOINTS = [
    ("https://host/foo/bar", "https://host/foo/bar.git/info/lfs"),
    ("https://host/foo/bar.git", "https://host/foo/bar.git/info/lfs"),
    ("https://host/foo/bar/", "https://host/foo/bar.git/info/lfs"),
    ("git@host:foo/bar.git", "https://host/foo/bar.git/info/lfs"),
    ("ssh://git@host/foo/bar.git", "https://host/foo/bar.git/info/lfs"),
    ("ssh://host:2222/foo/bar", "https://host/foo/bar.git/info/lfs"),
]


@pytest.mark.parametrize(("url", "endpoint"), ENDPOINTS)
def test_endpoints_are_derived_as_git_lfs_derives_them(url: str, endpoint: str) -> None:
    from gdag.lfsclient import derive

    assert derive(url).url == endpoint


def test_endpoint_configuration_order(repo: Path, tmp_path: Path) -> None:
    """remote.<name>.lfsurl, then lfs.url, each from git config over .lfsconfig, as
    git-lfs reads them; a path remote keeps objects in its own lfs/ directory."""
    from gdag.lfsclient import endpoint
    from gdag.repo import Store

    remote = bare_remote(tmp_path)
    git("remote", "add", "origin", str(remote), cwd=repo)
    store = Store.find(repo)
    assert endpoint(store, "origin", upload=True).path == remote / "lfs"
    (repo / ".lfsconfig").write_text("[lfs]\n\turl = https://from-lfsconfig/x\n")
    assert endpoint(store, "origin", upload=False).url == "https://from-lfsconfig/x"
    git("config", "remote.origin.lfsurl", "https://per-remote/y", cwd=repo)
    assert endpoint(store, "origin", upload=False).url == "https://from-lfsconfig/x"
    git("config", "lfs.url", "https://from-config/z", cwd=repo)
    assert endpoint(store, "origin", upload=False).url == "https://from-config/z"
    git("config", "lfs.pushurl", "https://push/w", cwd=repo)
    assert endpoint(store, "origin", upload=True).url == "https://push/w"
    assert endpoint(store, "origin", upload=False).url == "https://from-config/z"


def test_sync_sends_large_values_through_lfs_past_a_host_limit(
    tmp_path: Path, servers: list[Server]
) -> None:
    remote = bare_remote(tmp_path)
    server = Server(tmp_path / "lfs-store", tmp_path)
    servers.append(server)
    repo = publisher(tmp_path, remote, server.url)
    a = publish_big(repo, tmp_path, "big/a")
    b = publish_big(repo, tmp_path, "big/b")
    # The host's limit is real: a 5 MiB blob is refused.
    (repo / "blob.bin").write_bytes(a)
    git("checkout", "-q", "-b", "fat", cwd=repo)
    git("add", "blob.bin", cwd=repo)
    git("commit", "-q", "-m", "fat", cwd=repo)
    refused = subprocess.run(
        ["git", "push", "origin", "fat"], cwd=repo, capture_output=True, text=True
    )
    assert refused.returncode != 0 and "is over 1 MiB" in refused.stderr
    git("checkout", "-q", "-", cwd=repo)

    r = gdag("sync", "origin", cwd=repo)
    assert r.returncode == 0, r.stderr
    assert r.text.endswith("; sent 2 large value(s) first\n"), r.text
    assert len(server.objects()) == 2  # a and b; copy is a's bytes
    assert git("ls-remote", str(remote), "refs/gdag/logs/main", cwd=repo).strip()

    clone = tmp_path / "clone"
    git("clone", "-q", str(remote), str(clone), cwd=tmp_path)
    r = gdag("sync", "origin", cwd=clone)
    assert r.returncode == 0, r.stderr
    assert not (clone / ".git" / "lfs").exists()  # fetched on demand, not before
    assert lookup(clone, "big/a") == a
    assert lookup(clone, "big/b") == b
    assert lookup(clone, "copy") == a
    lfs_fsck(clone)
    lfs_fsck(repo)
    fsck(clone)
    fsck(repo)
    fsck(remote)


def test_an_upload_broken_off_leaves_the_log_unpushed_and_the_next_sync_completes(
    tmp_path: Path, servers: list[Server]
) -> None:
    remote = bare_remote(tmp_path)
    store = tmp_path / "lfs-store"
    stalling = Server(store, tmp_path, stall=True)
    servers.append(stalling)
    repo = publisher(tmp_path, remote, stalling.url)
    a = publish_big(repo, tmp_path, "big/a")

    sync = subprocess.Popen(
        [sys.executable, "-m", "gdag", "sync", "origin"],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(stalling.stalled)  # the object is half sent
    stalling.kill()
    _, err = sync.communicate(timeout=60)
    assert sync.returncode == 3, err
    assert "gdag: error: LFS endpoint" in err and "hint: a log is pushed only after" in err
    assert git("ls-remote", str(remote), "refs/gdag/", cwd=repo).strip() == ""

    server = Server(store, tmp_path)
    servers.append(server)
    git("config", "lfs.url", server.url, cwd=repo)
    r = gdag("sync", "origin", cwd=repo)
    assert r.returncode == 0, r.stderr
    assert git("ls-remote", str(remote), "refs/gdag/logs/main", cwd=repo).strip()

    clone = tmp_path / "clone"
    git("clone", "-q", str(remote), str(clone), cwd=tmp_path)
    git("config", "lfs.url", server.url, cwd=clone)
    assert gdag("sync", "origin", cwd=clone).returncode == 0
    assert lookup(clone, "big/a") == a and lookup(clone, "copy") == a
    lfs_fsck(clone)
    fsck(clone)
    fsck(remote)


def test_a_path_remote_keeps_large_values_in_its_lfs_directory(tmp_path: Path) -> None:
    remote = tmp_path / "plain.git"
    git("init", "-q", "--bare", str(remote), cwd=tmp_path)
    repo = tmp_path / "repo"
    assert gdag("init", "-C", str(repo), cwd=tmp_path).returncode == 0
    define(repo, '[values]\nlarge = "512KiB"\n')
    a = publish_big(repo, tmp_path, "big", MiB)
    assert gdag("sync", str(remote), cwd=repo).returncode == 0
    assert len(list((remote / "lfs" / "objects").rglob("*/*/*"))) == 1
    clone = tmp_path / "clone"
    git("init", "-q", str(clone), cwd=tmp_path)
    assert gdag("sync", "../plain.git", cwd=clone).returncode == 0  # relative to the clone
    r = gdag("lookup", "big", "-C", "clone", cwd=tmp_path)  # fetched, from anywhere
    assert r.returncode == 0 and r.stdout == a, r.stderr
    fsck(clone)


def test_the_cache_evicts_least_recently_used_values_the_remote_holds(tmp_path: Path) -> None:
    """`[values] cache = "3MiB"`: past it, the least recently used objects that the
    remote holds (pushed, or fetched from it) go; unpushed ones never do; a lookup marks
    its value used, and an evicted value is fetched again when read."""
    remote = tmp_path / "plain.git"
    git("init", "-q", "--bare", str(remote), cwd=tmp_path)
    repo = tmp_path / "repo"
    assert gdag("init", "-C", str(repo), cwd=tmp_path).returncode == 0
    define(repo, '[values]\nlarge = "512KiB"\ncache = "3MiB"\n')
    objects = repo / ".git" / "lfs" / "objects"

    def here() -> set[int]:
        names = {p.name for p in objects.rglob("*/*/*")}
        return {i for i, data in enumerate(values) if sha256(data).hexdigest() in names}

    values = [publish_big(repo, tmp_path, f"v{i}", MiB) for i in range(4)]
    assert here() == {0, 1, 2, 3}  # 4 MiB, but the remote holds none of them
    assert gdag("sync", str(remote), cwd=repo).returncode == 0
    assert lookup(repo, "v0") == values[0]  # v0 used now
    values.append(publish_big(repo, tmp_path, "v4", MiB))  # 5 MiB: v1 and v2 go
    assert here() == {0, 3, 4}
    assert lookup(repo, "v1") == values[1]  # fetched again; v3 (least used) goes
    assert here() == {0, 1, 4}
    for i, data in enumerate(values):
        assert lookup(repo, f"v{i}") == data
    fsck(repo)


@pytest.mark.parametrize("size", ["big", "-1"])
def test_a_bad_cache_size_is_refused(repo: Path, size: str) -> None:
    define(repo, f'[values]\ncache = "{size}"\n')
    r = gdag("check", cwd=repo)
    assert r.returncode == 3 and "[values] cache must be a size" in r.stderr, r.stderr


def test_small_publish_and_lookup_import_no_lfs_code(repo: Path) -> None:
    code = textwrap.dedent(
        """
        import sys
        from gdag.main import main
        rc = main(sys.argv[1:])
        found = [m for m in ("gdag.lfs", "gdag.lfsclient", "gdag.lfstransfer", "dulwich.lfs", "urllib3", "fsspec") if m in sys.modules]
        print(rc, found, file=sys.stderr)
        """
    )
    for argv in (["publish", "x", "1"], ["lookup", "x"]):
        proc = subprocess.run(
            [sys.executable, "-c", code, *argv], cwd=repo, capture_output=True, text=True
        )
        assert proc.stderr.strip().splitlines()[-1] == "0 []", proc.stderr


def test_a_clone_fetches_node_inputs_on_demand_for_runs_and_replays(tmp_path: Path) -> None:
    remote = tmp_path / "plain.git"
    git("init", "-q", "--bare", str(remote), cwd=tmp_path)
    repo = tmp_path / "repo"
    assert gdag("init", "--private", "-C", str(repo), cwd=tmp_path).returncode == 0
    define(repo, DEFINITION)
    a = publish_big(repo, tmp_path, "big/a", MiB)
    assert gdag("sync", str(remote), cwd=repo).returncode == 0

    def fresh_clone(name: str, copies: int) -> Path:
        clone = tmp_path / name
        git("init", "-q", str(clone), cwd=tmp_path)
        # The node's code differs here: its run needs its input, which is not here yet.
        define(clone, DEFINITION.replace('cat "$GDAG_IN_X"', "cat" + ' "$GDAG_IN_X"' * copies))
        assert gdag("sync", str(remote), cwd=clone).returncode == 0
        assert not (clone / ".git" / "lfs").exists()
        return clone

    ran = fresh_clone("ran", 2)
    r = gdag("run", cwd=ran)
    assert r.returncode == 0, r.stderr
    assert lookup(ran, "copy") == a + a
    assert "kind: lfs" in gdag("lookup", "copy", "--meta", cwd=ran).text
    # ... and the new value goes to the remote with the log.
    assert gdag("sync", str(remote), cwd=ran).returncode == 0
    assert len(list((remote / "lfs" / "objects").rglob("*/*/*"))) == 2
    assert gdag("sync", str(remote), cwd=repo).returncode == 0
    assert lookup(repo, "copy") == a + a

    replayed = fresh_clone("replayed", 3)
    r = gdag("replay", "--from", "1", cwd=replayed)
    assert r.returncode == 0, r.stderr
    assert lookup(replayed, "copy") == a + a + a
    fsck(ran)
    fsck(replayed)
    fsck(remote)


def test_an_unreachable_endpoint_is_a_clear_error_and_nothing_is_pushed(tmp_path: Path) -> None:
    remote = bare_remote(tmp_path)
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    repo = publisher(tmp_path, remote, f"http://127.0.0.1:{port}")
    publish_big(repo, tmp_path, "big/a", MiB)
    r = gdag("sync", "origin", cwd=repo)
    assert r.returncode == 3 and f"LFS endpoint http://127.0.0.1:{port}" in r.stderr
    assert "Traceback" not in r.stderr
    assert git("ls-remote", str(remote), "refs/gdag/", cwd=repo).strip() == ""
    git("config", "lfs.url", "ftp://nowhere/x", cwd=repo)
    r = gdag("sync", "origin", cwd=repo)
    assert r.returncode == 3 and "lfs.url = 'ftp://nowhere/x' is no LFS endpoint" in r.stderr


def test_a_job_that_leaves_the_machine_carries_large_inputs(repo: Path) -> None:
    """A cluster worker has no `.git/lfs`: the job carries the value's bytes, checked."""
    (repo / "fns.py").write_text("def size(x: bytes) -> int:\n    return len(x)\n")
    define(
        repo,
        """
        [values]
        large = "1KiB"
        [nodes.copy]
        run = 'cat "$GDAG_IN_X" > "$GDAG_OUT/copy"'
        inputs = { x = "big" }
        publishes = ["copy"]
        [nodes.size]
        python = "fns:size"
        inputs = { x = "big" }
        publishes = ["n"]
        """,
    )
    data = os.urandom(64 * 1024)
    assert gdag("publish", "big", "-", "--no-run", cwd=repo, input=data).returncode == 0
    r = gdag("run", "--cluster", "local:1", cwd=repo, timeout=120)
    assert r.returncode == 0, r.stderr
    assert lookup(repo, "copy") == data and lookup(repo, "n") == b"65536\n"
    fsck(repo)


def test_a_large_git_blob_input_reaches_nodes_as_a_file_and_leaves_nothing(
    repo: Path, tmp_path: Path
) -> None:
    """`large = 0`: a 6 MiB value is a git blob; a local job gets it as a file written a
    chunk at a time under .git/gdag/inputs/<session>/ (removed when the job ends), and
    both kinds of node read it byte for byte. A run killed mid-job leaves its file,
    which `gdag doctor --repair` removes once the session is settled and it is old."""
    gate = tmp_path / "gate"
    (repo / "fns.py").write_text(
        "import hashlib\n\ndef digest(x: bytes) -> str:\n    return hashlib.sha256(x).hexdigest()\n"
    )
    define(
        repo,
        f"""
        [values]
        large = 0
        [nodes.copy]
        run = 'cat "$GDAG_IN_X" > "$GDAG_OUT/copy"'
        inputs = {{ x = "big" }}
        publishes = ["copy"]
        [nodes.digest]
        python = "fns:digest"
        inputs = {{ x = "big" }}
        publishes = ["sha"]
        [nodes.stuck]
        run = 'while [ ! -e {gate} ]; do sleep 0.05; done; echo done > "$GDAG_OUT/late"'
        inputs = {{ x = "big" }}
        publishes = ["late"]
        """,
    )
    data = os.urandom(6 * MiB)
    assert gdag("publish", "big", "-", "--no-run", cwd=repo, input=data).returncode == 0
    r = gdag("run", "copy", "digest", cwd=repo, timeout=120)
    assert r.returncode == 0, r.stderr
    assert lookup(repo, "copy") == data
    assert lookup(repo, "sha").strip() == sha256(data).hexdigest().encode()
    spilled = repo / ".git" / "gdag" / "inputs"
    assert not spilled.exists() or not list(spilled.iterdir())

    run = subprocess.Popen(
        [sys.executable, "-m", "gdag", "run", "stuck"], cwd=repo, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 60
        # Written a chunk at a time: wait for all of it (the job starts after that).
        while not (
            spilled.exists() and [f for f in spilled.glob("*/*") if f.stat().st_size == len(data)]
        ):
            assert time.monotonic() < deadline and run.poll() is None, "no input was spilled"
            time.sleep(0.05)
        (left,) = spilled.glob("*/*")
        assert left.read_bytes() == data
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    assert gdag("doctor", "--repair", cwd=repo).returncode == 0  # settles the dead session
    assert left.exists()  # young: a run may still be starting its job
    old = time.time() - 3600
    os.utime(left, (old, old))
    r = gdag("doctor", cwd=repo)
    assert "old temporary objects left by killed processes" in r.stderr, r.stderr
    assert gdag("doctor", "--repair", cwd=repo).returncode == 0
    assert not left.exists() and not left.parent.exists()
    gate.touch()
    assert gdag("run", "stuck", cwd=repo, timeout=120).returncode == 0
    assert lookup(repo, "late") == b"done\n"
    fsck(repo)


S3_SERVER = """
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
server.start()
host, port = server.get_host_and_port()
with open(sys.argv[1], "w") as f:
    f.write(f"http://{host}:{port}")
server._thread.join()
"""


@pytest.fixture
def s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An S3 API on 127.0.0.1 (moto's server, in a process of its own) with a bucket;
    gdag's processes reach it through the standard AWS environment variables."""
    url_file = tmp_path / "s3-url"
    proc = subprocess.Popen([sys.executable, "-c", S3_SERVER, str(url_file)])
    try:
        endpoint = wait_for(url_file)
        for key, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL_S3": endpoint,
        }.items():
            monkeypatch.setenv(key, value)
        import fsspec

        fsspec.filesystem("s3", endpoint_url=endpoint).mkdir("gdag-values")
        yield endpoint
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def read_store(url: str, key: str) -> bytes:
    import fsspec

    with fsspec.open(f"{url}/{key}", "rb") as f:
        return f.read()


@pytest.mark.parametrize("kind", ["file", "s3"])
def test_values_remote_keeps_large_values_in_an_fsspec_store(
    tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    """For hosts without LFS: `[values] remote` names any fsspec store (a directory, or
    an S3 API on loopback); the log goes to the git remote, past its size limit, the
    values to the store."""
    if kind == "s3":
        request.getfixturevalue("s3")
        store_url = "s3://gdag-values/team/values"
    else:
        store_url = f"file://{tmp_path / 'values'}"
    remote = bare_remote(tmp_path)
    repo = tmp_path / "repo"
    assert gdag("init", "-C", str(repo), cwd=tmp_path).returncode == 0
    define(repo, DEFINITION)
    text = (
        (repo / "gdag.toml")
        .read_text()
        .replace('large = "512KiB"', f'large = "512KiB"\nremote = "{store_url}"')
    )
    (repo / "gdag.toml").write_text(text)
    git("add", "gdag.toml", cwd=repo)
    git("commit", "-q", "-m", "definition", cwd=repo)
    git("remote", "add", "origin", str(remote), cwd=repo)
    git("push", "-q", "origin", "HEAD", cwd=repo)
    a = publish_big(repo, tmp_path, "big/a")
    r = gdag("sync", "origin", cwd=repo)
    assert r.returncode == 0, r.stderr
    oid = __import__("hashlib").sha256(a).hexdigest()
    assert read_store(store_url, f"{oid[:2]}/{oid[2:4]}/{oid}") == a
    assert not (remote / "lfs").exists()  # nothing went to the git remote's LFS store

    clone = tmp_path / "clone"
    git("clone", "-q", str(remote), str(clone), cwd=tmp_path)
    assert gdag("sync", "origin", cwd=clone).returncode == 0
    assert lookup(clone, "big/a") == a and lookup(clone, "copy") == a
    lfs_fsck(clone)
    fsck(clone)
    fsck(remote)


@pytest.mark.parametrize("url", ["/no/scheme", "", 3])
def test_a_bad_values_remote_is_refused(repo: Path, url: object) -> None:
    define(repo, f"[values]\nremote = {url!r}\n".replace("'", '"'))
    r = gdag("check", cwd=repo)
    assert r.returncode == 3 and "[values] remote must be a URL" in r.stderr


def test_an_unwritable_values_remote_pushes_nothing(tmp_path: Path) -> None:
    remote = bare_remote(tmp_path)
    repo = tmp_path / "repo"
    assert gdag("init", "-C", str(repo), cwd=tmp_path).returncode == 0
    (tmp_path / "blocked").write_text("a file where the store's directory would be")
    define(repo, f'[values]\nlarge = "512KiB"\nremote = "file://{tmp_path}/blocked/values"\n')
    publish_big(repo, tmp_path, "big", MiB)
    r = gdag("sync", str(remote), cwd=repo)
    assert r.returncode == 3 and "gdag: error: [values] remote file://" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert git("ls-remote", str(remote), "refs/gdag/", cwd=repo).strip() == ""


def test_a_worker_sends_its_large_outputs_before_its_merge(tmp_path: Path) -> None:
    """`gdag run --remote`: each merge is a push of the log, so the values it names go
    to the remote's LFS store first."""
    remote = tmp_path / "plain.git"
    git("init", "-q", "--bare", str(remote), cwd=tmp_path)
    repo = tmp_path / "repo"
    assert gdag("init", "-C", str(repo), cwd=tmp_path).returncode == 0
    define(repo, DEFINITION.replace('cat "$GDAG_IN_X"', 'cat "$GDAG_IN_X" "$GDAG_IN_X"'))
    a = publish_big(repo, tmp_path, "big/a", MiB)
    assert gdag("sync", str(remote), cwd=repo).returncode == 0
    r = gdag("run", "--remote", str(remote), cwd=repo)
    assert r.returncode == 0, r.stderr
    clone = tmp_path / "clone"
    git("init", "-q", str(clone), cwd=tmp_path)
    assert gdag("sync", str(remote), cwd=clone).returncode == 0
    assert lookup(clone, "copy") == a + a
    fsck(remote)


def test_doctor_clears_what_a_killed_writer_left_in_lfs_tmp(repo: Path) -> None:
    tmp = repo / ".git" / "lfs" / "tmp"
    tmp.mkdir(parents=True)
    old, fresh = tmp / "tmpkilled", tmp / "tmpwriting"
    old.write_bytes(b"half a value")
    fresh.write_bytes(b"a value being written now")
    os.utime(old, (1, 1))
    r = gdag("doctor", cwd=repo)
    assert "old temporary objects left by killed processes" in r.stderr
    r = gdag("doctor", "--repair", cwd=repo)
    assert r.returncode == 0, r.stderr
    assert not old.exists() and fresh.exists()
    fresh.unlink()
    old.write_bytes(b"the last leftover")
    os.utime(old, (1, 1))
    assert gdag("doctor", "--repair", cwd=repo).returncode == 0
    assert not old.exists() and tmp.is_dir()  # the directory stays: writers are using it


def test_a_push_to_another_remote_sends_values_the_cache_evicted(tmp_path: Path) -> None:
    """Synced to A and evicted here, a value is fetched back from A and sent to B before
    B takes the log: a pushed log never names a value its remote lacks."""
    a_remote, b_remote = tmp_path / "A.git", tmp_path / "B.git"
    for bare in (a_remote, b_remote):
        git("init", "-q", "--bare", str(bare), cwd=tmp_path)
    repo = tmp_path / "repo"
    assert gdag("init", "-C", str(repo), cwd=tmp_path).returncode == 0
    define(repo, '[values]\nlarge = "512KiB"\ncache = "1MiB"\n')
    big = publish_big(repo, tmp_path, "big", MiB)
    assert gdag("sync", str(a_remote), cwd=repo).returncode == 0
    publish_big(repo, tmp_path, "other", MiB)  # past the cache: big (synced) is evicted
    oid = sha256(big).hexdigest()
    assert not (repo / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid).exists()
    r = gdag("sync", str(b_remote), cwd=repo)
    assert r.returncode == 0, r.stderr
    clone = tmp_path / "clone"
    git("init", "-q", str(clone), cwd=tmp_path)
    assert gdag("sync", str(b_remote), cwd=clone).returncode == 0
    assert lookup(clone, "big") == big
    fsck(clone)

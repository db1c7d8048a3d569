"""LocalRefs: git's lock-file protocol on real files, with stale locks aged by a fake clock."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from gdag.refs import STALE_LOCK_SECONDS, LocalRefs
from gdag.repo import Store
from gdag.retry import RetryError
from unit.clock import FakeClock

REF = "refs/gdag/logs/main"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    return path


@pytest.fixture
def shas(repo: Path) -> list[bytes]:
    """Three commits' ids (refs must point at objects for git to read them back)."""
    store = Store.find(repo)
    tree = store.write_tree({})
    return [store.make_commit(tree, [], f"c{i}\n", when=1_700_000_000 + i) for i in range(3)]


@pytest.fixture
def refs(repo: Path, clock: FakeClock) -> LocalRefs:
    return LocalRefs(repo / ".git", clock=clock)


def lock_of(repo: Path, ref: str = REF) -> Path:
    path = repo / ".git" / (ref + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_compare_and_swap_moves_only_from_the_expected_value(
    repo: Path, refs: LocalRefs, shas: list[bytes]
) -> None:
    a, b, c = shas
    assert refs.cas_ref(REF, None, a)
    assert not refs.cas_ref(REF, None, b)  # exists already
    assert not refs.cas_ref(REF, b, c)  # not at b
    assert refs.cas_ref(REF, a, b)
    assert git(repo, "rev-parse", REF) == b.decode()
    assert not lock_of(repo).exists()


def test_packed_refs_are_read_moved_and_deleted(
    repo: Path, refs: LocalRefs, shas: list[bytes]
) -> None:
    a, b, _ = shas
    other = "refs/gdag/logs/other"
    assert refs.cas_ref(REF, None, a) and refs.cas_ref(other, None, a)
    git(repo, "pack-refs", "--all")
    assert not (repo / ".git" / REF).exists()
    assert refs.read_ref(REF) == a
    assert refs.list_refs("refs/gdag/logs/") == {REF: a, other: a}
    assert not refs.delete_ref(other, b)  # not at b: kept
    assert refs.delete_ref(other, a)
    assert refs.cas_ref(REF, a, b)  # loose now, over the packed value
    assert refs.list_refs("refs/gdag/") == {REF: b}
    assert git(repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/gdag") == (
        f"{REF} {b.decode()}"
    )


def test_a_stale_lock_is_broken_at_once(
    repo: Path, refs: LocalRefs, clock: FakeClock, shas: list[bytes]
) -> None:
    lock_of(repo).write_bytes(b"")
    clock.advance(STALE_LOCK_SECONDS + 5)  # a writer killed ten seconds ago
    assert refs.cas_ref(REF, None, shas[0])
    assert clock.slept == 0
    assert not list(lock_of(repo).parent.glob("main.lock*"))


def test_a_fresh_lock_is_waited_out_then_broken(
    repo: Path, refs: LocalRefs, clock: FakeClock, shas: list[bytes]
) -> None:
    """A lock just taken is respected; once it is older than STALE_LOCK_SECONDS, nobody
    will release it (git holds locks for milliseconds): it is broken."""
    lock_of(repo).write_bytes(b"")
    assert refs.cas_ref(REF, None, shas[0])
    assert STALE_LOCK_SECONDS <= clock.slept < STALE_LOCK_SECONDS + 1
    assert git(repo, "rev-parse", REF) == shas[0].decode()
    assert not list(lock_of(repo).parent.glob("main.lock*"))


def test_a_lock_held_past_the_timeout_is_a_clear_error(
    repo: Path, refs: LocalRefs, clock: FakeClock, shas: list[bytes]
) -> None:
    lock = lock_of(repo)
    lock.write_bytes(b"")
    with pytest.raises(RetryError) as info:
        refs.cas_ref(REF, None, shas[0], timeout=1.0)
    assert f"lock of ref {REF}" in info.value.message
    assert str(lock) in (info.value.hint or "")
    assert lock.exists()  # not ours to remove
    assert refs.read_ref(REF) is None


def test_sweep_breaks_stale_locks_only(repo: Path, refs: LocalRefs, clock: FakeClock) -> None:
    old = lock_of(repo, "refs/gdag/sessions/main/a")
    old.write_bytes(b"")
    clock.advance(STALE_LOCK_SECONDS + 1)
    fresh = lock_of(repo, "refs/gdag/sessions/main/b")
    fresh.write_bytes(b"")
    os.utime(fresh, (clock.time(), clock.time()))
    assert refs.stale_locks() == [old]
    assert refs.sweep() == 1
    assert not old.exists() and fresh.exists()


def test_an_empty_ref_file_is_retried_then_refused(repo: Path, refs: LocalRefs) -> None:
    """A ref caught between its creation and its write reads again; one that stays
    empty is an error naming it, not an endless loop."""
    path = repo / ".git" / REF
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    with pytest.raises(RetryError, match=f"reading ref {REF}"):
        refs.read_ref(REF)

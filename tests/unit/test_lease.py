"""Leases on real refs, aged by a fake clock: taken, held, expired, released, orphaned."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gdag.lease import HOST, Holder, Leases, lease_ref
from gdag.repo import Store
from unit.clock import FakeClock

TTL = 30.0


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Store:
    subprocess.run(["git", "init", "-q", str(tmp_path / "repo")], check=True)
    return Store(tmp_path / "repo" / ".git", tmp_path / "repo", clock=clock)


def leases(store: Store, clock: FakeClock) -> Leases:
    return Leases(store, "main", ttl=TTL, clock=clock)


def test_a_held_lease_binds_others_until_it_expires(store: Store, clock: FakeClock) -> None:
    mine = leases(store, clock).take("up", "up.1")
    assert mine is not None
    other = leases(store, clock)
    assert other.take("up", "up.2") is None
    holder = other.holder("up")
    assert holder is not None and holder.session == "up.1" and holder.host == HOST
    clock.advance(TTL - 1)
    assert other.take("up", "up.2") is None
    clock.advance(2)  # not renewed in time (its owner hung): anyone may take it over
    assert other.holder("up") is None
    theirs = other.take("up", "up.2")
    assert theirs is not None
    mine.release()  # the hung owner wakes up: its release no longer frees the lease
    holder = other.holder("up")
    assert holder is not None and holder.session == "up.2"
    theirs.release()


def test_a_renewal_moves_the_expiry_and_a_lost_lease_cannot_be_renewed(
    store: Store, clock: FakeClock
) -> None:
    ours = leases(store, clock)
    held = ours.take("up", "up.1")
    assert held is not None
    clock.advance(TTL - 1)
    renewed = ours.renew("up", held.token, "up.1")
    assert renewed is not None
    clock.advance(TTL - 1)
    assert ours.holder("up") is not None  # renewed: still bound
    assert ours.renew("up", held.token, "up.1") is None  # the old token is gone
    held.token = renewed
    held.release()


def test_a_released_lease_is_free_at_once(store: Store, clock: FakeClock) -> None:
    held = leases(store, clock).take("up", "up.1")
    assert held is not None
    held.release()
    assert leases(store, clock).holder("up") is None
    again = leases(store, clock).take("up", "up.2")
    assert again is not None
    again.release()


def test_the_ref_only_ever_moves_forward_to_fresh_tokens(store: Store, clock: FakeClock) -> None:
    """Never deleted, never set back (both race with pack-refs): every take, renewal
    and release points the ref at a new token commit."""
    ours = leases(store, clock)
    ref = lease_ref("main", "up")
    seen = []
    held = ours.take("up", "up.1")
    assert held is not None
    seen.append(store.read_ref(ref))
    new = ours.renew("up", held.token, "up.1")
    assert new is not None
    held.token = new
    seen.append(store.read_ref(ref))
    held.release()
    seen.append(store.read_ref(ref))
    assert None not in seen and len(set(seen)) == 3


def test_a_lease_of_a_dead_process_on_this_host_binds_nobody(clock: FakeClock) -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    dead = Holder(HOST, proc.pid, "12345", "up.1", clock.time() + TTL)
    assert not dead.is_alive(clock)
    elsewhere = Holder("another-host", proc.pid, None, "up.1", clock.time() + TTL)
    assert elsewhere.is_alive(clock)  # its process cannot be checked from here
    clock.advance(TTL + 1)
    assert not elsewhere.is_alive(clock)


def test_a_renewal_stuck_on_a_lock_holds_up_no_other_lease(tmp_path: Path) -> None:
    """Renewals run each on a thread of their own: while another process holds the ref
    lock of one lease (its renewal waits), the other leases are still renewed in time."""
    import time

    subprocess.run(["git", "init", "-q", str(tmp_path / "repo")], check=True)
    store = Store.find(tmp_path / "repo")
    ours = Leases(store, "main", ttl=0.6)  # renewed every 0.2 s, real time
    stuck, free = ours.take("stuck", "s.1"), ours.take("free", "f.1")
    assert stuck is not None and free is not None
    lock = tmp_path / "repo" / ".git" / lease_ref("main", "stuck")
    lock = lock.with_name(lock.name + ".lock")
    lock.write_text("")  # another process is updating it
    try:
        seen = {store.read_ref(lease_ref("main", "free"))}
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            seen.add(store.read_ref(lease_ref("main", "free")))
            time.sleep(0.05)
        assert len(seen) >= 4  # renewed all along (about every 0.2 s)
        assert ours.holder("free") is not None
    finally:
        lock.unlink()
        stuck.release()
        free.release()

"""Leases: who runs a node, until when. A ref moved by compare-and-swap between tokens.

A lease ref is never deleted and never set back to an earlier value (both race
with `git pack-refs`): every take, renewal and release points it at a fresh,
unique token commit whose message holds the owner and the expiry. Leases only
avoid duplicate work; correctness rests on the merge-back, which refuses
superseded sessions.

The lease refs live in a `refs.Refs`: the store's own by default, a remote's
for workers of `gdag run --remote` (`remote.remote_leases`). Expiry is read
from a `retry.Clock`, so tests age leases without waiting.
"""

from __future__ import annotations

import json
import math
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass
from typing import Protocol

from gdag.errors import StoreError
from gdag.refs import Refs
from gdag.repo import Store
from gdag.retry import SYSTEM_CLOCK, Clock
from gdag.ticker import Ticker

LEASE_PREFIX = "refs/gdag/leases/"
# How long a lease binds without renewal; GDAG_LEASE_TTL overrides (seconds).
DEFAULT_TTL = float(os.environ.get("GDAG_LEASE_TTL", "30"))


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of `pid` (clock ticks since boot); None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after the last ')'.
    fields = data[data.rfind(b")") + 2 :].split()
    return fields[19].decode() if len(fields) > 19 else None


HOST = socket.gethostname()
_OWN_START: dict[int, str | None] = {}


def _own_start_time(pid: int) -> str | None:
    """This process's start time, read once (per pid: a forked child reads its own)."""
    if pid not in _OWN_START:
        _OWN_START[pid] = process_start_time(pid)
    return _OWN_START[pid]


@dataclass(frozen=True)
class Holder:
    """The owner and terms of a lease, as stored in its token commit."""

    host: str
    pid: int
    start: str | None
    session: str | None
    expires: float
    released: bool = False

    @classmethod
    def me(cls, session: str | None, ttl: float, clock: Clock = SYSTEM_CLOCK) -> Holder:
        pid = os.getpid()
        return cls(HOST, pid, _own_start_time(pid), session, clock.time() + ttl)

    def is_alive(self, clock: Clock = SYSTEM_CLOCK) -> bool:
        """Whether the lease still binds others: held, unexpired, and its owner not dead."""
        if self.released or clock.time() > self.expires:
            return False
        if self.host == HOST:
            return process_start_time(self.pid) == self.start
        return True


def lease_ref(log: str, node: str) -> str:
    return f"{LEASE_PREFIX}{log}/{node}"


class HeldLease(Protocol):
    """A lease this process holds."""

    def release(self) -> None: ...


class NodeLeases(Protocol):
    """Who runs a node: git leases (`Leases`, local or on a remote's refs) or a
    cluster's semaphores (`executors.dask.ClusterLeases`)."""

    def take(self, node: str, session: str | None) -> HeldLease | None: ...

    def holder(self, node: str) -> Holder | None: ...


class Leases:
    """Taking, renewing and releasing node leases on one log.

    `store` holds the token commits; `refs` the lease refs (default: the store's)."""

    def __init__(
        self,
        store: Store,
        log: str,
        ttl: float = DEFAULT_TTL,
        *,
        refs: Refs | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.store = store
        self.log = log
        self.ttl = ttl
        self.refs: Refs = refs if refs is not None else store.refs
        self.clock = clock

    def _token(self, holder: Holder) -> bytes:
        body = json.dumps(asdict(holder), sort_keys=True)
        nonce = os.urandom(8).hex()
        empty = self.store.write_tree({})
        return self.store.make_commit(empty, [], f"gdag lease\n\n{body}\n{nonce}\n")

    def read(self, node: str) -> tuple[bytes | None, Holder | None]:
        ref = lease_ref(self.log, node)
        sha = self.refs.read_ref(ref)
        if sha is None:
            return None, None
        message = self.store.read_commit(sha).message.decode()
        try:
            body = message.split("\n\n", 1)[1].split("\n", 1)[0]
            return sha, Holder(**json.loads(body))
        except (IndexError, ValueError, TypeError):
            raise StoreError(f"lease {ref} holds no readable token") from None

    def take(self, node: str, session: str | None) -> Held | None:
        """Take the lease if it is free, expired or its owner is dead; None if held."""
        sha, holder = self.read(node)
        if holder is not None and holder.is_alive(self.clock):
            return None
        token = self._token(Holder.me(session, self.ttl, self.clock))
        if self.refs.cas_ref(lease_ref(self.log, node), sha, token):
            return Held(self, node, session, token)
        return None

    def renew(self, node: str, token: bytes, session: str | None) -> bytes | None:
        """Extend a lease we hold; None if it was lost (taken over after expiry)."""
        new = self._token(Holder.me(session, self.ttl, self.clock))
        return new if self.refs.cas_ref(lease_ref(self.log, node), token, new) else None

    def release(self, node: str, token: bytes) -> None:
        holder = Holder(HOST, os.getpid(), None, None, 0.0, released=True)
        self.refs.cas_ref(lease_ref(self.log, node), token, self._token(holder))

    def holder(self, node: str) -> Holder | None:
        """The live holder of a node's lease, if any."""
        _, holder = self.read(node)
        return holder if holder is not None and holder.is_alive(self.clock) else None


class Held:
    """A lease this process holds, renewed in the background until released: every
    ttl/3 the renewal ticker starts a renewal on a thread of its own (a slow one, a
    push to a remote say, holds up no other lease's)."""

    def __init__(self, leases: Leases, node: str, session: str | None, token: bytes) -> None:
        self.leases = leases
        self.node = node
        self.session = session
        self.token = token
        self.lost = False
        self.released = False
        self.due = time.monotonic() + leases.ttl / 3  # when it is renewed next
        self._lock = threading.Lock()  # a renewal and the release never overlap
        _RENEWALS.add(self)

    def tick(self, now: float) -> bool:
        self.due = math.inf  # until this renewal is done
        threading.Thread(target=self._renew_quietly, name="gdag-renew", daemon=True).start()
        return True

    def _renew_quietly(self) -> None:
        try:
            self.renew()
        except Exception:  # a store or remote that failed: it expires, as a hung owner's
            _RENEWALS.remove(self)

    def renew(self) -> None:
        with self._lock:
            if self.released or self.lost:
                return
            new = self.leases.renew(self.node, self.token, self.session)
            if new is None:
                self.lost = True  # taken over after expiry: the merge-back still decides
                _RENEWALS.remove(self)
                return
            self.token = new
            self.due = time.monotonic() + self.leases.ttl / 3
            _RENEWALS.add(self)  # its next renewal is planned

    def release(self) -> None:
        with self._lock:
            _RENEWALS.remove(self)
            if self.released:
                return
            self.released = True
            if not self.lost:
                self.leases.release(self.node, self.token)


_RENEWALS = Ticker("gdag-leases")

"""The netsem: node leases from a Dask cluster's semaphores, for coordinators sharing a log.

Imported only when a run has both a cluster and a shared remote; `distributed`
is imported here and in `gdag.executors.dask` only.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict
from typing import Any

from gdag.errors import GdagError
from gdag.executors.dask import CONNECT_TIMEOUT, check_address
from gdag.lease import Holder

LEASE_TIMEOUT = 6  # seconds without a refresh before the scheduler frees a node's lease


class ClusterLeases:
    """Node leases from the cluster's own semaphores (the "netsem"): coordinators on
    several machines, sharing a log through a git remote, take a node's lease from the
    scheduler (`distributed.Semaphore`, one lease per node and log) instead of pushing a
    lease ref, so a session costs one git round trip, its merge. A holder that dies
    stops refreshing its lease, and the scheduler frees it: a semaphore's lease timeout
    is its first registrant's, gdag's `LEASE_TIMEOUT` (refreshed every fifth of it),
    checked at the scheduler's `lease-validation-interval` (10 s by default)."""

    def __init__(self, address: str, log: str) -> None:
        import dask
        import distributed

        # Before any semaphore registers: the timeout it registers with.
        dask.config.set({"distributed.scheduler.locks.lease-timeout": f"{LEASE_TIMEOUT}s"})

        if not (address == "local" or address.startswith("local:")):
            check_address(address)
        try:
            self.client = distributed.Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise GdagError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
        self.log = log
        self._sems: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _names(self, node: str) -> tuple[str, str]:
        return f"gdag-lease/{self.log}/{node}", f"gdag-holder/{self.log}/{node}"

    def _semaphore(self, node: str) -> Any:
        from distributed import Semaphore

        name = self._names(node)[0]
        with self._lock:
            sem = self._sems.get(name)
            if sem is None:
                sem = Semaphore(
                    max_leases=1,
                    name=name,
                    scheduler_rpc=self.client.scheduler,
                    loop=self.client.loop,
                )
                self._sems[name] = sem
        return sem

    def take(self, node: str, session: str | None) -> ClusterHeld | None:
        """The node's lease if no one holds it; None if someone does."""
        from distributed import Variable

        sem = self._semaphore(node)
        if not sem.acquire(timeout=0):
            return None
        holder = Holder.me(session, float("inf"))
        var = Variable(self._names(node)[1], client=self.client)
        var.set(json.dumps(asdict(holder)))
        return ClusterHeld(sem, var)

    def holder(self, node: str) -> Holder | None:
        """Who holds the node's lease, if anyone (host, pid, session, as they said)."""
        from distributed import Variable

        if self._semaphore(node).get_value() == 0:
            return None
        try:
            info = json.loads(Variable(self._names(node)[1], client=self.client).get(timeout=1))
            return Holder(**info)
        except (TimeoutError, ValueError, TypeError):
            return Holder("cluster", 0, None, None, float("inf"))  # taken, not yet described

    def close(self) -> None:
        self.client.close()


class ClusterHeld:
    """A lease held on the cluster; Dask refreshes it while this process lives."""

    def __init__(self, sem: Any, var: Any) -> None:
        self.sem = sem
        self.var = var
        self.lost = False

    def release(self) -> None:
        try:
            self.var.delete()
        finally:
            self.sem.release()

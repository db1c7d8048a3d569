"""Speculative runs: subscribers start on an output a running producer advised.

The producer's session branch gains an `output` commit as soon as the node
publishes (`gdag publish` inside it, or `ctx.publish`). The scheduler polls the
branches of running sessions; each advised output starts its speculative
subscribers on a branch forked from the producer's session head. A speculative
session merges only after its producer's session is resolved, and only if
every input value it read is the one the log then holds (so the advised value
was final); otherwise it is dropped and the node runs again normally.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from gdag import trailers
from gdag.log import Log
from gdag.session import session_ref

MERGED = "merged"
DROPPED = "dropped"


@dataclass
class Producer:
    node: str
    session: str
    seen: bytes | None = None
    advised: set[str] = field(default_factory=set)


class Speculator:
    """Tracks running sessions' advised outputs and their producers' resolution."""

    def __init__(self, log: Log, enabled_for: Any) -> None:
        self.log = log
        self.enabled_for = enabled_for  # (producer node, subscriber node) -> bool
        self.producers: dict[str, Producer] = {}
        self.events: dict[str, threading.Event] = {}
        self.outcomes: dict[str, str] = {}
        self.lock = threading.Lock()

    def watch(self, node: str, session: str) -> None:
        with self.lock:
            self.producers[session] = Producer(node, session)
            self.events.setdefault(session, threading.Event())

    def resolve(self, session: str, outcome: str) -> None:
        with self.lock:
            self.outcomes[session] = outcome
            self.producers.pop(session, None)
            self.events.setdefault(session, threading.Event()).set()

    def wait(self, session: str) -> str:
        with self.lock:
            event = self.events.setdefault(session, threading.Event())
        event.wait()
        return self.outcomes.get(session, DROPPED)

    def poll(self) -> list[tuple[str, str, bytes, str]]:
        """New advised outputs: (producer node, producer session, head, output)."""
        found = []
        with self.lock:
            producers = list(self.producers.values())
        for prod in producers:
            head = self.log.store.read_ref(session_ref(self.log.name, prod.session))
            if head is None or head == prod.seen:
                continue
            prod.seen = head
            for output in self._advised(head):
                if output not in prod.advised:
                    prod.advised.add(output)
                    found.append((prod.node, prod.session, head, output))
        return found

    def _advised(self, head: bytes) -> list[str]:
        """Outputs published so far on a running session's branch (none once it is done)."""
        names: list[str] = []
        cur = head
        while True:
            commit = self.log.store.read_commit(cur)
            found = trailers.parse(commit.message)
            event = found.get(trailers.EVENT, [""])[0]
            if event == trailers.SESSION_DONE:
                return []  # about to merge: nothing to gain by speculating
            if event == trailers.SESSION_START:
                return names
            names += found.get(trailers.OUTPUT, [])
            cur = commit.parents[0]


def producer_merged(log: Log, producer_session: str) -> bool:
    """Whether a (finished, no longer running) producer session was merged with status ok."""
    from gdag.provenance import node_sessions
    from gdag.workspace import Workspace

    node = producer_session.rsplit(".", 2)[0]
    ws = Workspace(log.store, log.name)
    return any(
        d.get("session") == producer_session and d.get("status") == "ok"
        for d in node_sessions(ws, node, limit=50)
    )

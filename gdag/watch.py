"""`gdag watch`: a foreground loop that runs pending work as events arrive.

It keeps no state that matters: each tick reads HEAD (when following the
branch), the log ref and the definition file's stat, and runs the engine only
when one of them changed; kill it at any moment and the next start carries on
from what is in git. SIGINT and SIGTERM stop it after the sessions in flight
finish (or, on a second signal, leave them for the next run to recover).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gdag.repo import Store
from gdag.workspace import Workspace, log_name

Report = Callable[[str, dict[str, Any]], None]


def _stamp(path: Path | None) -> tuple[int, int] | None:
    try:
        st = os.stat(path) if path is not None else None
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size) if st else None


class Watcher:
    def __init__(
        self,
        path: str | None,
        log: str | None,
        jobs: int,
        report: Report,
        interval: float = 0.5,
        remote: str | None = None,
    ) -> None:
        self.store = Store.find(path or ".")
        self.log_arg = log
        self.jobs = jobs
        self.report = report
        self.interval = interval
        self.definition = self.store.workdir / "gdag.toml" if self.store.workdir else None
        self.remote: Any = None
        if remote is not None:
            from gdag.remote import Remote

            self.remote = Remote(self.store, remote)

    def tick(self, last: tuple[Any, ...] | None) -> tuple[Any, ...]:
        """Run the engine if the branch, the log tip or the definition changed since `last`."""
        name = log_name(self.log_arg, self.store)
        ws = Workspace(self.store, name)
        if self.remote is not None:
            from gdag.errors import GdagError
            from gdag.remote import sync_log

            try:
                sync_log(self.remote, ws.log)
            except GdagError as exc:  # offline: keep working locally, catch up later
                self.report("offline", {"node": "", "error": exc.message})
        seen = (name, ws.log.tip(), _stamp(self.definition))
        if seen == last or seen[1] is None:
            return seen
        if last is not None and last[0] != name:
            self.report("switched", {"node": "", "log": name})
        from gdag.runner import Engine

        summary = Engine(ws, self.jobs, self.report, remote=self.remote).run()
        if summary.ran or summary.failed:
            self.report(
                "idle", {"node": "", "ran": len(summary.ran), "failed": len(summary.failed)}
            )
        # What was seen before the run, not after: an event published while the engine
        # ran must make the next tick look again (our own merges cost one no-op run).
        return seen

    def loop(self, max_ticks: int | None = None) -> None:
        last = None
        ticks = 0
        while max_ticks is None or ticks < max_ticks:
            last = self.tick(last)
            ticks += 1
            time.sleep(self.interval)

"""`gdag metrics`: the log's and the nodes' metrics in the Prometheus text format."""

from __future__ import annotations

from gdag.commands import LOG, PATH, Spec
from gdag.output import out

SPEC = Spec((PATH, LOG))


def run(*, path: str | None, log: str | None) -> int:
    from gdag.metrics import collect
    from gdag.workspace import Workspace

    out(collect(Workspace.open(path, log)).encode())
    return 0

"""Outputs that must not go stale: `[outputs."x"] fresh_within = "1h"`.

When an output's current value is older than its `fresh_within`, `gdag watch`
publishes `gdag/stale/<output>` (JSON: output, version, when it was published,
fresh_within) once for that version, however many watchers run: the skip test
runs inside the log's compare-and-swap, and is "the stale event already names
this version". A new value of the output makes it fresh again.
"""

from __future__ import annotations

import calendar
import json
import time
from typing import Any

from gdag import state
from gdag.dag import Dag
from gdag.names import is_pattern
from gdag.repo import Store
from gdag.workspace import ValueSource, Workspace

STALE = "gdag/stale/"


def stale_output(output: str) -> str:
    return STALE + output


def _changed_at(meta: dict[str, Any]) -> float | None:
    try:
        return float(calendar.timegm(time.strptime(str(meta["time"]), "%Y-%m-%dT%H:%M:%SZ")))
    except (KeyError, ValueError):
        return None


def _reported(store: Store, root: bytes | None, output: str, version: int) -> bool:
    """Whether the stale event of `output` already names `version`."""
    stale = state.read_output(store, root, stale_output(output))
    if stale is None:
        return False
    try:
        return int(json.loads(store.read_blob(stale.value.sha))["version"]) >= version
    except (ValueError, KeyError, TypeError):
        return False


def _watched(dag: Dag) -> list[tuple[str, float]]:
    return [
        (name, decl.fresh_within)
        for name, decl in sorted(dag.outputs.items())
        if decl.fresh_within is not None and not is_pattern(name)
    ]


def overdue(store: Store, root: bytes | None, dag: Dag, at: float) -> list[dict[str, Any]]:
    """The stale events due at `at`: outputs with a value older than their
    fresh_within whose stale event does not name that value yet."""
    found = []
    for name, within in _watched(dag):
        out = state.read_output(store, root, name)
        changed = _changed_at(out.meta) if out is not None else None
        if out is None or changed is None or changed + within > at:
            continue
        if _reported(store, root, name, out.version):
            continue
        found.append(
            {
                "output": name,
                "version": out.version,
                "changed": out.meta["time"],
                "fresh_within": within,
            }
        )
    return found


def next_check(store: Store, root: bytes | None, dag: Dag) -> float | None:
    """When the next output goes stale (an epoch time), if any will."""
    times = []
    for name, within in _watched(dag):
        out = state.read_output(store, root, name)
        changed = _changed_at(out.meta) if out is not None else None
        if out is not None and changed is not None:
            if not _reported(store, root, name, out.version):
                times.append(changed + within)
    return min(times) if times else None


def publish_stale(ws: Workspace, dag: Dag, at: float) -> list[str]:
    """Publish the stale events due at `at`; the outputs this call reported."""
    done = []
    root = ws.store.read_commit(ws.log.require_tip()).tree
    for event in overdue(ws.store, root, dag, at):
        name, version = event["output"], event["version"]

        def already(parent: bytes | None, name: str = name, version: int = version) -> bool:
            return _reported(ws.store, parent, name, version)

        published = ws.publish(
            stale_output(name),
            ValueSource(data=json.dumps(event, sort_keys=True).encode()),
            "json",
            publish_id=f"stale:{name}:v{version}",
            skip_if=already,
        )
        if published.changed:
            done.append(name)
    return done

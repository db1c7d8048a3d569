"""`gdag show`: a session, a node's last run, or an output and where its value came from.

Everything is found from the log tip by following recorded offsets (each
`@done.json` and `@meta.json` names the offset of the event that wrote it, and
`prev` the one before), never by scanning the whole history.
"""

from __future__ import annotations

from typing import Any

from gdag import state, trailers
from gdag.errors import UnknownError
from gdag.session import read_done
from gdag.workspace import Workspace

LOG_TAIL = 4000


def session_record(ws: Workspace, done: dict[str, Any]) -> dict[str, Any]:
    """A merged session as shown: its @done.json plus the commits of its branch."""
    offset = done.get("offset")
    record: dict[str, Any] = dict(done)
    if offset is None:
        return record
    merge = ws.log.commit_at(int(offset))
    commit = ws.store.read_commit(merge)
    record["merge_commit"] = merge.decode()
    if len(commit.parents) > 1:
        head = commit.parents[1]
        record["session_head"] = head.decode()
        record["branch"] = session_branch(ws, head)
        entry = state.node_log(ws.store, commit.tree, done["node"])
        if entry is not None:
            text = ws.store.read_blob(entry.sha)[-LOG_TAIL:]
            record["log_tail"] = text.decode("utf-8", "replace")
    return record


def session_branch(ws: Workspace, head: bytes) -> list[str]:
    """Subjects of a session branch's commits, oldest first."""
    subjects = []
    cur: bytes | None = head
    while cur is not None:
        commit = ws.store.read_commit(cur)
        subjects.append(commit.message.decode("utf-8", "replace").split("\n", 1)[0])
        if trailers.kind(commit.message) == trailers.SESSION_START:
            break
        cur = commit.parents[0] if commit.parents else None
    return subjects[::-1]


def node_sessions(ws: Workspace, node: str, limit: int = 50) -> list[dict[str, Any]]:
    """The node's completed sessions, newest first, following each record's offset back."""
    found: list[dict[str, Any]] = []
    root: bytes | None = ws.store.read_commit(ws.log.require_tip()).tree
    while root is not None and len(found) < limit:
        done = read_done(ws.store, root, node)
        if done is None or done.get("offset") is None:
            break
        found.append(done)
        offset = int(done["offset"])
        if offset == 0:
            break
        root = ws.store.read_commit(ws.log.commit_at(offset - 1)).tree
    return found


def show_session(ws: Workspace, session_id: str) -> dict[str, Any]:
    node = session_id.rsplit(".", 2)[0]
    for done in node_sessions(ws, node, limit=10_000):
        if done.get("session") == session_id:
            return {"kind": "session", **session_record(ws, done)}
    raise UnknownError(
        f"no merged session {session_id!r} on log {ws.log.name!r}",
        hint=f"`gdag show {node}` lists that node's recent sessions",
    )


def show_node(ws: Workspace, node: str) -> dict[str, Any]:
    sessions = node_sessions(ws, node, limit=10)
    latest = session_record(ws, sessions[0]) if sessions else None
    return {
        "kind": "node",
        "node": node,
        "last": latest,
        "recent": [
            {k: d.get(k) for k in ("session", "status", "offset", "duration", "inputs", "cached")}
            for d in sessions
        ],
    }


def version_meta(ws: Workspace, name: str, version: int) -> dict[str, Any] | None:
    """The metadata of one version of an output, walking its `prev` links from the tip."""
    root = ws.store.read_commit(ws.log.require_tip()).tree
    out = state.read_output(ws.store, root, name)
    while out is not None and out.version > version and out.meta.get("prev") is not None:
        root = ws.store.read_commit(ws.log.commit_at(int(out.meta["prev"]))).tree
        out = state.read_output(ws.store, root, name)
    return out.meta if out is not None and out.version == version else None


def show_output(ws: Workspace, name: str, depth: int = 3) -> dict[str, Any]:
    out = ws.lookup(name)
    return {
        "kind": "output",
        "output": name,
        "meta": out.meta,
        "provenance": _provenance(ws, name, out.meta, depth),
    }


def provenance_of(ws: Workspace, name: str, meta: dict[str, Any], depth: int = 3) -> dict[str, Any]:
    """Where the version of `name` that `meta` describes came from, `depth` steps back."""
    return _provenance(ws, name, meta, depth)


def _provenance(ws: Workspace, name: str, meta: dict[str, Any], depth: int) -> dict[str, Any]:
    step: dict[str, Any] = {
        "output": name,
        "version": meta.get("version"),
        "offset": meta.get("offset"),
        "event": meta.get("event"),
    }
    if meta.get("event") != trailers.SESSION or depth <= 0:
        if meta.get("event") == trailers.PUBLISH:
            step["published"] = meta.get("id")
        return step
    root = ws.store.read_commit(ws.log.commit_at(int(meta["offset"]))).tree
    done = read_done(ws.store, root, str(meta.get("node")))
    step["session"] = meta.get("session")
    step["node"] = meta.get("node")
    if done is None:
        return step
    step["inputs"] = []
    for input_name, version in sorted(done.get("inputs", {}).items()):
        input_meta = version_meta(ws, input_name, int(version))
        if input_meta is None:
            step["inputs"].append({"output": input_name, "version": version})
        else:
            step["inputs"].append(_provenance(ws, input_name, input_meta, depth - 1))
    return step


def show(ws: Workspace, what: str, depth: int = 3) -> dict[str, Any]:
    """Decide whether `what` is a node, a session id or an output, and show it."""
    from gdag.dag import Dag
    from gdag.state import read_dag

    root = ws.store.read_commit(ws.log.require_tip()).tree
    dag = read_dag(ws.store, root) or Dag.empty()
    if what in dag.nodes:
        return show_node(ws, what)
    if what.count(".") >= 2 and what.rsplit(".", 2)[0] in dag.nodes:
        return show_session(ws, what)
    if what not in dag.outputs and state.read_output(ws.store, root, what) is None:
        raise UnknownError(
            f"no node, session or output {what!r} on log {ws.log.name!r}",
            hint="`gdag status` lists the nodes, `gdag lookup '**'` the outputs",
        )
    return show_output(ws, what, depth)

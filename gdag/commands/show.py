"""`gdag show`: a session, a node's recent runs, or an output and where its value came from."""

from __future__ import annotations

from typing import Any

from gdag.commands import JSON, LOG, PATH, Argument, Option, Spec
from gdag.output import Block, Node, Segments, print_blocks, print_json

SPEC = Spec(
    (
        Argument("what", "What to show.", metavar="SESSION|NODE|OUTPUT", complete="node-or-output"),
        Option(
            "depth",
            ("--depth",),
            "Provenance steps back (outputs).",
            "int",
            "N",
            default=3,
            minimum=0,
        ),
        JSON,
        PATH,
        LOG,
    )
)


def run(*, what: str, depth: int, json_out: bool, path: str | None, log: str | None) -> int:
    from gdag.provenance import show
    from gdag.workspace import Workspace

    info = show(Workspace.open(path, log), what, depth)
    if json_out:
        print_json(info)
    else:
        print_blocks(blocks(info))
    return 0


def blocks(info: dict[str, Any]) -> list[Block]:
    """What `gdag show` prints for people: a session, a node's runs, or an output's provenance."""
    if info["kind"] == "output":
        meta = info["meta"]
        heading: Segments = [
            (info["output"], "bold cyan"),
            (
                f"  v{meta.get('version')}  type {meta.get('type')}"
                f"  offset {meta.get('offset')}  {meta.get('time')}",
                "",
            ),
        ]
        tree = Node([("provenance", "bold")])
        _provenance(tree, info["provenance"])
        return [heading, tree]
    found: list[Block] = []
    record = info.get("last") if info["kind"] == "node" else info
    if info["kind"] == "node":
        found.append([("node ", "bold"), (info["node"], "")])
        for run in info["recent"]:
            text = (
                f"  {run['session']}  {run['status']}  offset {run['offset']}"
                f"  {run.get('duration')}s"
                + (f"  cache hit of {run['cached']}" if run.get("cached") else "")
            )
            found.append([(text, "red" if run["status"] == "failed" else "")])
        if not record:
            found.append([("  never ran", "dim")])
            return found
    return found + _session(record or {})


def _session(rec: dict[str, Any]) -> list[Block]:
    found: list[Block] = [
        [
            ("session ", "bold"),
            (rec.get("session") or "?", ""),
            (f"  node {rec.get('node')}  {rec.get('status')}", ""),
            (f"  {rec.get('duration')}s  merged at offset {rec.get('offset')}", ""),
        ]
    ]
    for name, version in sorted((rec.get("inputs") or {}).items()):
        found.append([(f"  input  {name} v{version}", "")])
    for name, version in sorted((rec.get("outputs") or {}).items()):
        found.append([(f"  output {name} v{version}", "")])
    if rec.get("cached"):
        found.append([(f"  cache hit of {rec['cached']}", "dim")])
    attempts = rec.get("attempts") or []
    for a in attempts:  # the failed attempts before the last (a node with retries)
        found.append(
            [(f"  attempt {a.get('attempt')}  {a.get('status')}  {a.get('duration')}s", ""),
             (f"  ({a.get('error')})", "red")]
        )  # fmt: skip
    if attempts:
        found.append([(f"  attempt {len(attempts) + 1}  {rec.get('status')}", "")])
    for subject in rec.get("branch", []):
        found.append([(f"  | {subject}", "dim")])
    if rec.get("log_tail"):
        found.append([("  log:", "bold")])
        for line in rec["log_tail"].rstrip("\n").splitlines()[-20:]:
            found.append([(f"    {line}", "")])
    return found


def _provenance(parent: Node, step: dict[str, Any]) -> None:
    label: Segments = [
        (step["output"], "cyan"),
        (f" v{step.get('version')}", ""),
        (f"  @ offset {step.get('offset')}", "dim"),
    ]
    if step.get("published"):
        label.append((f"  published ({step['published']})", "dim"))
    if step.get("node"):
        label.append((f"  by node {step['node']} session {step.get('session')}", ""))
    branch = parent.add(label)
    for child in step.get("inputs", []):
        _provenance(branch, child)

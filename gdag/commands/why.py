"""`gdag why NODE`: why a node is stale, or why it last ran."""

from __future__ import annotations

from gdag.commands import JSON, LOG, PATH, Argument, Spec
from gdag.output import out_lines, print_json

SPEC = Spec((Argument("node", "The node to explain.", complete="node"), JSON, PATH, LOG))


def run(*, node: str, json_out: bool, path: str | None, log: str | None) -> int:
    from gdag.runner import Engine
    from gdag.workspace import Workspace

    info = Engine(Workspace.open(path, log)).why(node)
    if json_out:
        print_json(info)
        return 0
    lines = [f"{node}: {info['state']}" + (f" ({info['reason']})" if info["reason"] else "")]
    last = info.get("last") or {}
    if last:
        lines.append(
            f"last session: {last.get('session')} {last.get('status')} "
            f"at offset {last.get('offset')}"
            + (f", cache hit of {last['cached']}" if last.get("cached") else "")
        )
        for name, version in sorted((last.get("inputs") or {}).items()):
            now = info["current"].get(name)
            mark = "" if now == version else f"  (now v{now})" if now else "  (now absent)"
            lines.append(f"  consumed {name} v{version}{mark}")
    for name in sorted(set(info["current"]) - set(last.get("inputs") or {})):
        lines.append(f"  new input {name} v{info['current'][name]}")
    out_lines(lines)
    return 0

"""`gdag graph`: the DAG of nodes and outputs with their state, as a tree, DOT, Mermaid, JSON, SVG,
PNG or HTML."""

from __future__ import annotations

import sys
from typing import Any

from gdag.commands import LOG, PATH, Option, Spec
from gdag.nodestates import FAILED, HAS_WORK
from gdag.output import STATE_STYLE, Node, Segments, out, print_blocks

FORMATS = ("tree", "dot", "mermaid", "json", "svg", "png", "html")

SPEC = Spec(
    (
        Option(
            "format_",
            ("--format",),
            "tree (default on a terminal), dot, mermaid, json, svg, png, html.",
            "text",
            "FORMAT",
            choices=FORMATS,
            retired=("-f",),
        ),
        Option(
            "start", ("--from",), "Only what X reaches.", "text", "X", complete="node-or-output"
        ),
        Option("end", ("--to",), "Only what reaches X.", "text", "X", complete="node-or-output"),
        Option(
            "with_state",
            ("--state",),
            "Show states, versions and values.",
            "switch",
            default=True,
            off="--no-state",
        ),
        Option("output", ("-o", "--out"), "Write to FILE.", "text", "FILE"),
        PATH,
        LOG,
    )
)


def run(
    *,
    format_: str | None,
    start: str | None,
    end: str | None,
    with_state: bool,
    output: str | None,
    path: str | None,
    log: str | None,
) -> int:
    from gdag import graphview
    from gdag.workspace import Workspace

    fmt = format_ or ("tree" if sys.stdout.isatty() and output is None else "dot")
    if fmt not in FORMATS:
        from gdag.errors import UsageError

        raise UsageError(f"unknown format {fmt!r}", hint="formats: " + ", ".join(FORMATS))
    target = None
    if output is not None:
        from gdag.commands._paths import writable_file

        target = writable_file(path, output)
    ws = Workspace.open(path, log)
    model = graphview.build_model(ws, start, end, with_state)
    if fmt == "tree":
        if target is None:
            print_blocks([tree(model)])
        else:
            with open(target, "w") as f:
                print_blocks([tree(model)], f)
        return 0
    if fmt in ("svg", "png"):
        data = graphview.render_with_graphviz(graphview.to_dot(model), fmt)
    else:
        render = {
            "dot": graphview.to_dot,
            "mermaid": graphview.to_mermaid,
            "json": graphview.to_json,
            "html": graphview.to_html,
        }[fmt]
        data = render(model).encode()
    if target is None:
        out(data)
    else:
        target.write_bytes(data)
    return 0


def tree(model: dict[str, Any]) -> Node:
    """The DAG as a tree: sources first, each node under the outputs it reads."""
    by_id = {v["id"]: v for v in model["vertices"]}
    children: dict[str, list[str]] = {vid: [] for vid in by_id}
    has_parent = set()
    for e in model["edges"]:
        children[e["from"]].append(e["to"])
        has_parent.add(e["to"])
    root = Node([(f"log {model['log']} @ offset {model['offset']}", "bold")])
    shown: set[str] = set()
    # Depth first, by an explicit stack: a chain of a thousand nodes is a thousand levels.
    stack = [(root, vid) for vid in sorted(v for v in by_id if v not in has_parent)][::-1]
    while stack:
        parent, vid = stack.pop()
        branch = parent.add(_label(by_id[vid]))
        if vid in shown:
            if children[vid]:
                branch.add([("(shown above)", "dim")])
            continue
        shown.add(vid)
        stack += [(branch, child) for child in sorted(children[vid])][::-1]
    return root


def _label(v: dict[str, Any]) -> Segments:
    if v["kind"] == "node":
        st = v.get("state") or ""
        label: Segments = [("node ", "bold"), (v["name"], "")]
        if st:
            label.append((f"  [{st}]", STATE_STYLE.get(st, "")))
        if v.get("reason") and st in (*HAS_WORK, FAILED):
            label.append((f" {v['reason']}", "dim"))
        return label
    label = [(v["name"], "cyan")]
    if v.get("pattern"):
        label.append((f"  ({v.get('members', 0)} outputs)", "dim"))
    elif v.get("version"):
        label.append((f"  v{v['version']}", "dim"))
        if v.get("preview") is not None:
            label.append((f"  {v['preview']!r}", "dim"))
    return label

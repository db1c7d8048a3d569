"""`gdag graph`: the DAG with its state as a model, and that model as DOT, Mermaid, JSON, HTML.

The model is plain data (sorted, so the text formats diff well); the renderers
are pure functions of it. The terminal tree lives in render.py (rich).
"""

from __future__ import annotations

import json
from html import escape
from typing import TYPE_CHECKING, Any

from gdag import nodestates, state
from gdag.names import is_pattern
from gdag.workspace import Workspace

if TYPE_CHECKING:
    from gdag.dag import Dag

PREVIEW = 40


def build_model(
    ws: Workspace, start: str | None = None, end: str | None = None, with_state: bool = True
) -> dict[str, Any]:
    """Vertices (nodes and outputs) and edges of the DAG at the log tip, with their state."""
    from gdag.graph import adjacency, subgraph_between
    from gdag.runner import Engine

    tip = ws.log.require_tip()
    dag = ws.current_dag(tip, record=False)
    root = ws.store.read_commit(tip).tree
    adj = adjacency(dag)
    keep = subgraph_between(adj, dag, start, end)
    states = {s.node: s for s in Engine(ws).status()} if with_state else {}
    vertices: list[dict[str, Any]] = []
    for kind, name in sorted(keep):
        if kind == "node":
            vertices.append(_node_vertex(ws, dag, name, states.get(name)))
        else:
            vertices.append(_output_vertex(ws, dag, root, name, with_state))
    edges = sorted(
        (f"{a[0]}:{a[1]}", f"{b[0]}:{b[1]}") for a, b in adj.edges() if a in keep and b in keep
    )
    return {
        "log": ws.log.name,
        "tip": tip.decode(),
        "offset": ws.log.event(tip).offset,
        "vertices": vertices,
        "edges": [{"from": a, "to": b} for a, b in edges],
    }


def _node_vertex(ws: Workspace, dag: Dag, name: str, st: Any) -> dict[str, Any]:
    node = dag.nodes[name]
    last = (st.last if st else None) or {}
    log_tail = ""
    if last:
        root = ws.store.read_commit(ws.log.require_tip()).tree
        entry = state.node_log(ws.store, root, name)
        if entry is not None:
            log_tail = ws.store.read_blob(entry.sha)[-2000:].decode("utf-8", "replace")
    return {
        "id": f"node:{name}",
        "kind": "node",
        "name": name,
        "state": st.state if st else None,
        "reason": st.reason if st else None,
        "command": node.command,
        "mode": node.mode,
        "when": node.when,
        "inputs": dict(node.inputs),
        "publishes": list(node.publishes),
        "last_session": last.get("session"),
        "last_status": last.get("status"),
        "duration": last.get("duration"),
        "finished": _iso(last.get("finished")),
        "consumed": last.get("inputs"),
        "log_tail": log_tail,
    }


def _output_vertex(
    ws: Workspace, dag: Dag, root: bytes, name: str, with_state: bool
) -> dict[str, Any]:
    typ = dag.output_type(name)
    vertex: dict[str, Any] = {
        "id": f"output:{name}",
        "kind": "output",
        "name": name,
        "type": str(typ) if typ else None,
        "pattern": is_pattern(name),
    }
    if not with_state:
        return vertex
    if is_pattern(name):
        members = list(state.list_outputs(ws.store, root, name))
        vertex["members"] = len(members)
        vertex["member_names"] = members[:50]
        return vertex
    out = state.read_output(ws.store, root, name)
    if out is not None:
        vertex.update(version=out.version, meta=out.meta, preview=_preview(ws, out))
    return vertex


def _preview(ws: Workspace, out: state.OutputState) -> str:
    if out.value.is_tree:
        return f"<dir: {len(ws.store.tree_entries(out.value.sha))} entries>"
    if out.meta.get("kind") == "lfs":  # not fetched for a preview
        return f"<{out.meta.get('size')} bytes, in LFS>"
    data = ws.store.read_blob(out.value.sha)[: PREVIEW * 4]
    text = data.decode("utf-8", "replace")
    if "\ufffd" in text:
        return f"<{out.meta.get('size', len(data))} bytes>"
    text = " ".join(text.split())
    return text if len(text) <= PREVIEW else text[: PREVIEW - 1] + "…"


def _iso(ts: Any) -> str | None:
    import time

    if not isinstance(ts, int | float):
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def to_json(model: dict[str, Any]) -> str:
    return json.dumps(model, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _label(v: dict[str, Any]) -> str:
    if v["kind"] == "node":
        return f"{v['name']}\n{v['state'] or ''}".strip()
    if v.get("pattern"):
        return f"{v['name']}\n({v.get('members', 0)} outputs)"
    version = f" v{v['version']}" if v.get("version") else ""
    return f"{v['name']}{version}"


DOT_COLOURS = {
    nodestates.UP_TO_DATE: "palegreen",
    nodestates.STALE: "khaki",
    nodestates.NEVER_RUN: "khaki",
    nodestates.RUNNING: "lightblue",
    nodestates.FAILED: "salmon",
    nodestates.WAITING: "gray90",
}


def _dot_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(model: dict[str, Any]) -> str:
    lines = ["digraph gdag {", "  rankdir=LR;", '  node [fontname="Helvetica"];']
    for v in model["vertices"]:
        if v["kind"] == "node":
            colour = DOT_COLOURS.get(v.get("state") or "", "white")
            attrs = f'shape=box, style="rounded,filled", fillcolor={colour}'
        else:
            attrs = "shape=ellipse" + (", peripheries=2" if v.get("pattern") else "")
        lines.append(f"  {_dot_str(v['id'])} [label={_dot_str(_label(v))}, {attrs}];")
    for e in model["edges"]:
        lines.append(f"  {_dot_str(e['from'])} -> {_dot_str(e['to'])};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_mermaid(model: dict[str, Any]) -> str:
    ids = {v["id"]: f"v{i}" for i, v in enumerate(model["vertices"])}
    lines = ["flowchart LR"]
    for v in model["vertices"]:
        label = _label(v).replace('"', "'").replace("\n", "<br/>")
        shape = f'["{label}"]' if v["kind"] == "node" else f'(["{label}"])'
        lines.append(f"  {ids[v['id']]}{shape}")
    for e in model["edges"]:
        lines.append(f"  {ids[e['from']]} --> {ids[e['to']]}")
    for state_name in sorted({v.get("state") for v in model["vertices"] if v.get("state")}):
        members = [ids[v["id"]] for v in model["vertices"] if v.get("state") == state_name]
        cls = state_name.replace("-", "_")
        lines.append(f"  classDef {cls} fill:{_MERMAID_FILL.get(state_name, '#fff')}")
        lines.append(f"  class {','.join(members)} {cls}")
    return "\n".join(lines) + "\n"


_MERMAID_FILL = {
    nodestates.UP_TO_DATE: "#b7f0b1",
    nodestates.STALE: "#f3e9a0",
    nodestates.NEVER_RUN: "#f3e9a0",
    nodestates.RUNNING: "#add8e6",
    nodestates.FAILED: "#f4a6a0",
    nodestates.WAITING: "#eeeeee",
}


def layout(model: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """Layered positions (column by longest path from a source, row by order)."""
    preds: dict[str, list[str]] = {v["id"]: [] for v in model["vertices"]}
    for e in model["edges"]:
        preds[e["to"]].append(e["from"])
    depth: dict[str, int] = {}

    def level(vid: str) -> int:
        if vid not in depth:
            depth[vid] = 0  # guards against cycles, which compile refuses anyway
            depth[vid] = 1 + max((level(p) for p in preds[vid]), default=-1)
        return depth[vid]

    columns: dict[int, list[str]] = {}
    for v in model["vertices"]:
        columns.setdefault(level(v["id"]), []).append(v["id"])
    pos: dict[str, tuple[int, int]] = {}
    for col in sorted(columns):
        # Order each column by where its inputs sit, to avoid needless crossings.
        def weight(vid: str) -> tuple[float, str]:
            rows = [pos[p][1] for p in preds[vid] if p in pos]
            return (sum(rows) / len(rows) if rows else 0.0, vid)

        for row, vid in enumerate(sorted(columns[col], key=weight)):
            pos[vid] = (col, row)
    return pos


def _edge_path(x1: float, y1: float, x2: float, y2: float) -> str:
    """A smooth curve, so an edge skipping columns does not hide behind the boxes between."""
    bend = max(40.0, (x2 - x1) / 2)
    return f"M{x1},{y1} C{x1 + bend},{y1 + (12 if x2 - x1 > 200 else 0)} {x2 - bend},{y2} {x2},{y2}"


def to_svg(model: dict[str, Any]) -> tuple[str, int, int]:
    """The DAG drawn as SVG elements (a `g.v` per vertex, with `data-id` and
    `data-state`), and the drawing's width and height."""
    import sys

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    pos = layout(model)
    longest = max((len(_label(v).replace("\n", " · ")) for v in model["vertices"]), default=0)
    w, h = max(170, 7 * longest + 24), 44
    gx, gy = w + 60, 70
    fills = _MERMAID_FILL  # the same colours
    parts = []
    for e in model["edges"]:
        (c1, r1), (c2, r2) = pos[e["from"]], pos[e["to"]]
        d = _edge_path(c1 * gx + w + 10, r1 * gy + h / 2 + 10, c2 * gx + 10, r2 * gy + h / 2 + 10)
        parts.append(f'<path d="{d}" class="edge" marker-end="url(#arrow)"/>')
    for v in model["vertices"]:
        col, row = pos[v["id"]]
        x, y = col * gx + 10, row * gy + 10
        fill = fills.get(v.get("state") or "", "#ffffff")
        rx = 6 if v["kind"] == "node" else 22
        label = escape(_label(v).replace("\n", " · "))
        parts.append(
            f'<g class="v {v["kind"]}" data-id="{escape(v["id"])}"'
            f' data-state="{escape(v.get("state") or "")}" tabindex="0">'
            f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="{rx}" fill="{fill}"/>'
            f'<text x="{x + w / 2}" y="{y + h / 2 + 4}">{label}</text></g>'
        )
    cols = max((c for c, _ in pos.values()), default=0) + 1
    rows = max((r for _, r in pos.values()), default=0) + 1
    return "\n".join(parts), cols * gx + 20, rows * gy + 20


def to_html(model: dict[str, Any]) -> str:
    """One self-contained page: an SVG drawing and a details panel, no network needed."""
    svg, width, height = to_svg(model)
    data = json.dumps({v["id"]: v for v in model["vertices"]}, ensure_ascii=False)
    data = data.replace("</", "<\\/")
    title = escape(f"gdag: log {model['log']} at offset {model['offset']}")
    return _HTML.format(title=title, width=width, height=height, svg=svg, data=data)


_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy"
 content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 0; display: flex; height: 100vh; }}
#graph {{ flex: 1; min-width: 0; overflow: auto; border-right: 1px solid #ccc; }}
#graph svg {{ width: 100%; max-width: {width}px; height: auto; }}
#details {{ flex: 0 0 26em; padding: 1em; overflow: auto; font-size: 14px; }}
.v {{ cursor: pointer; }}
.v rect {{ stroke: #555; }}
.v.selected rect {{ stroke: #06c; stroke-width: 3; }}
.v text {{ text-anchor: middle; font-size: 12px; pointer-events: none; }}
.edge {{ stroke: #888; stroke-width: 1.2; fill: none; }}
pre {{ background: #f6f6f6; padding: .5em; white-space: pre-wrap; }}
h1 {{ font-size: 16px; }}
</style></head>
<body>
<div id="graph"><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}">
<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8"
 markerHeight="8" orient="auto"><path d="M0,0L10,5L0,10z" fill="#888"/></marker></defs>
{svg}
</svg></div>
<div id="details"><h1>{title}</h1><p>Click a node or an output to see its details.</p></div>
<script>
const DATA = {data};
function show(id) {{
  const v = DATA[id];
  document.querySelectorAll('.v').forEach(g => g.classList.toggle('selected', g.dataset.id === id));
  const panel = document.getElementById('details');
  panel.textContent = '';
  const h = document.createElement('h1');
  h.textContent = (v.kind === 'node' ? 'node ' : 'output ') + v.name;
  const pre = document.createElement('pre');
  const shown = Object.assign({{}}, v);
  delete shown.log_tail;
  pre.textContent = JSON.stringify(shown, null, 2);
  panel.append(h, pre);
  if (v.log_tail) {{
    const h2 = document.createElement('h2'); h2.textContent = 'log (tail)';
    const log = document.createElement('pre'); log.textContent = v.log_tail;
    panel.append(h2, log);
  }}
}}
document.querySelectorAll('.v').forEach(g => {{
  g.addEventListener('click', () => show(g.dataset.id));
  g.addEventListener('keydown', e => {{ if (e.key === 'Enter') show(g.dataset.id); }});
}});
</script>
</body></html>
"""


def render_with_graphviz(dot_text: str, fmt: str) -> bytes:
    """SVG or PNG from Graphviz's `dot`, which must be installed."""
    import shutil
    import subprocess

    from gdag.errors import GdagError

    exe = shutil.which("dot")
    if exe is None:
        raise GdagError(
            f"--format {fmt} needs Graphviz's `dot`, which is not installed",
            hint="install the graphviz package (e.g. `apt-get install graphviz`), "
            "or use --format dot, mermaid, json or html",
        )
    proc = subprocess.run([exe, f"-T{fmt}"], input=dot_text.encode(), capture_output=True)
    if proc.returncode != 0:
        raise GdagError(f"dot failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout

"""gdag graph in every format, on a DAG with dynamic outputs, a failed and a stale node."""

from __future__ import annotations

import json
import shutil
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import networkx as nx
import pytest
from conftest import gdag

DEFINITION = """
    [nodes.split]
    run = 'for w in $(cat "$GDAG_IN_X"); do printf "$w" > "$GDAG_OUT/parts/$w"; done'
    inputs = { x = "doc" }
    publishes = ["parts/*"]
    [nodes.join]
    run = 'cat "$GDAG_IN_P"/* > "$GDAG_OUT/joined"'
    inputs = { p = "parts/*" }
    publishes = ["joined"]
    [nodes.broken]
    run = 'echo "it broke" >&2; exit 3'
    inputs = { x = "doc" }
    publishes = ["never"]
    [nodes.lazy]
    run = 'cp "$GDAG_IN_X" "$GDAG_OUT/copy"'
    inputs = { x = "other" }
    publishes = ["copy"]
"""

VERTICES = {
    "node:split",
    "node:join",
    "node:broken",
    "node:lazy",
    "output:doc",
    "output:parts/*",
    "output:joined",
    "output:never",
    "output:other",
    "output:copy",
}


@pytest.fixture
def dag_repo(repo: Path) -> Path:
    (repo / "gdag.toml").write_text(textwrap.dedent(DEFINITION))
    assert gdag("publish", "doc", "a b", cwd=repo).returncode == 1  # broken fails
    assert gdag("publish", "other", "x", "--no-run", cwd=repo).returncode == 0  # lazy stale
    return repo


def graph(repo: Path, *args: str) -> bytes:
    r = gdag("graph", *args, cwd=repo)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_json_model(dag_repo: Path) -> None:
    model = json.loads(graph(dag_repo, "--format", "json"))
    by_id = {v["id"]: v for v in model["vertices"]}
    assert set(by_id) == VERTICES
    assert by_id["node:broken"]["state"] == "failed"
    assert "it broke" in by_id["node:broken"]["log_tail"]
    assert by_id["node:lazy"]["state"] == "never-run"
    assert by_id["node:join"]["state"] == "up-to-date"
    assert by_id["node:join"]["last_session"].startswith("join.")
    assert by_id["output:parts/*"]["members"] == 2
    assert by_id["output:joined"]["version"] == 1 and by_id["output:joined"]["preview"] == "ab"
    assert {"from": "output:parts/*", "to": "node:join"} in model["edges"]
    # Stable ordering: the same state gives byte-identical output.
    assert graph(dag_repo, "--format", "json") == graph(dag_repo, "--format", "json")


def test_dot_parses_back_to_the_same_graph(dag_repo: Path) -> None:
    import pydot

    text = graph(dag_repo, "--format", "dot").decode()
    (parsed,) = pydot.graph_from_dot_data(text)
    g = nx.nx_pydot.from_pydot(parsed)
    assert {n.strip('"') for n in g.nodes} == VERTICES
    model = json.loads(graph(dag_repo, "--format", "json"))
    edges = {(e["from"], e["to"]) for e in model["edges"]}
    assert {(a.strip('"'), b.strip('"')) for a, b, *_ in g.edges} == edges
    assert "fillcolor=salmon" in text  # the failed node


def test_mermaid_snapshot(dag_repo: Path) -> None:
    text = graph(dag_repo, "--format", "mermaid", "--no-state").decode()
    assert text == textwrap.dedent("""\
        flowchart LR
          v0["broken"]
          v1["join"]
          v2["lazy"]
          v3["split"]
          v4(["copy"])
          v5(["doc"])
          v6(["joined"])
          v7(["never"])
          v8(["other"])
          v9(["parts/*<br/>(0 outputs)"])
          v0 --> v7
          v1 --> v6
          v2 --> v4
          v3 --> v9
          v5 --> v0
          v5 --> v3
          v8 --> v2
          v9 --> v1
    """)


def test_svg_by_graphviz(dag_repo: Path, tmp_path: Path) -> None:
    if shutil.which("dot") is None:
        r = gdag("graph", "--format", "svg", cwd=dag_repo)
        assert r.returncode == 3 and "graphviz" in r.stderr
        pytest.fail("Graphviz is not installed: .ci/run installs it")
    out = tmp_path / "g.svg"
    graph(dag_repo, "--format", "svg", "-o", str(out))
    root = ET.parse(out).getroot()
    titles = {t.text for t in root.iter("{http://www.w3.org/2000/svg}title")}
    assert VERTICES <= titles


def test_tree_is_readable_without_colour(dag_repo: Path) -> None:
    text = graph(dag_repo, "--format", "tree").decode()
    assert "\x1b[" not in text
    assert "node broken  [failed]" in text and "parts/*  (2 outputs)" in text
    assert "joined  v1  'ab'" in text


def test_from_and_to_limit_the_drawing(dag_repo: Path) -> None:
    model = json.loads(graph(dag_repo, "--format", "json", "--from", "parts/a"))
    assert {v["id"] for v in model["vertices"]} == {"output:parts/*", "node:join", "output:joined"}
    model = json.loads(graph(dag_repo, "--format", "json", "--to", "join"))
    assert {v["id"] for v in model["vertices"]} == {
        "output:doc",
        "node:split",
        "output:parts/*",
        "node:join",
    }
    r = gdag("graph", "--from", "nowhere", cwd=dag_repo)
    assert r.returncode == 3 and "nowhere" in r.stderr


def test_html_is_self_contained(dag_repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    graph(dag_repo, "--format", "html", "-o", str(out))
    page = out.read_text()
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in page and "<script src" not in page
    for vid in VERTICES:
        assert f'data-id="{vid}"' in page


def test_unknown_format(dag_repo: Path) -> None:
    r = gdag("graph", "--format", "gif", cwd=dag_repo)
    assert r.returncode == 2 and "formats: tree, dot" in r.stderr

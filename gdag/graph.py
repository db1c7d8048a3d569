"""The DAG as a networkx graph: building it, checking cycles, ordering and traversal."""

from __future__ import annotations

from typing import Any

import networkx as nx

from gdag.errors import DefinitionError
from gdag.names import overlaps


def build_graph(dag: dict[str, Any]) -> nx.DiGraph:
    """Nodes and output names (or patterns) as vertices; edges output->node->output."""
    g = nx.DiGraph()
    nodes = dag.get("nodes", {})
    for name, node in nodes.items():
        g.add_node(("node", name))
        for out in node["publishes"]:
            g.add_edge(("node", name), ("output", out))
        for out in node["inputs"].values():
            g.add_edge(("output", out), ("node", name))
    outs = [v for kind, v in g.nodes if kind == "output"]
    # A published pattern feeds every input name or pattern it overlaps.
    for name, node in nodes.items():
        for pub in node["publishes"]:
            for other in outs:
                if other != pub and overlaps(pub, other):
                    g.add_edge(("output", pub), ("output", other))
    return g


def check_graph(dag: dict[str, Any], where: str) -> None:
    """Refuse cycles (through names or patterns)."""
    g = build_graph(dag)
    try:
        cycle = nx.find_cycle(g)
    except nx.NetworkXNoCycle:
        return
    path = " -> ".join(f"{kind} {name}" for (kind, name), _ in cycle)
    raise DefinitionError(
        f"{where}: the graph has a cycle: {path}",
        hint="a node may not (even indirectly) subscribe to what it publishes",
    )

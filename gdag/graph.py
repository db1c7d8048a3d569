"""The DAG as a networkx graph: building it, checking cycles, ordering and traversal."""

from __future__ import annotations

from typing import Any, NamedTuple

import networkx as nx

from gdag.errors import DefinitionError
from gdag.names import is_pattern, overlaps


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
    subscribed = {out for node in nodes.values() for out in node["inputs"].values()}
    published = {out for node in nodes.values() for out in node["publishes"]}
    # A published name or pattern feeds every subscribed name or pattern it overlaps.
    # Two plain names overlap only when equal (one vertex already), so only pairs
    # with a pattern on one side need the test: patterns are few.
    sub_patterns = [s for s in subscribed if is_pattern(s)]
    for pub in published:
        for sub in subscribed if is_pattern(pub) else sub_patterns:
            if sub != pub and overlaps(pub, sub):
                g.add_edge(("output", pub), ("output", sub))
    return g


def check_graph(dag: dict[str, Any], where: str) -> None:
    """Refuse cycles (through names or patterns)."""
    g = build_graph(dag)
    if nx.is_directed_acyclic_graph(g):
        return
    cycle = nx.find_cycle(g)
    path = " -> ".join(f"{kind} {name}" for (kind, name), _ in cycle)
    raise DefinitionError(
        f"{where}: the graph has a cycle: {path}",
        hint="a node may not (even indirectly) subscribe to what it publishes",
    )


def node_order(dag: dict[str, Any]) -> list[str]:
    """Node names in a dependency order (upstream first), ties broken by name."""
    return node_shape(dag).order


class Shape(NamedTuple):
    """A definition's nodes in dependency order (upstream first, ties broken by
    name); each node's bit (bit i for the i-th name of that order); and for every
    node the mask of the nodes it (transitively) depends on."""

    order: list[str]
    bit: dict[str, int]
    upstream: dict[str, int]


def node_shape(dag: dict[str, Any]) -> Shape:
    """The definition's `Shape`, in one pass in dependency order: a node's mask is
    the union of its predecessors' masks and bits, so a chain of N nodes costs N
    integer ORs, where ancestor sets would cost N²/2 set entries."""
    g = build_graph(dag)
    topo = list(nx.lexicographical_topological_sort(g, key=lambda v: (v[0], v[1])))
    order = [name for kind, name in topo if kind == "node"]
    bit = {name: 1 << i for i, name in enumerate(order)}
    below: dict[tuple[str, str], int] = {}
    for v in topo:
        mask = 0
        for p in g.predecessors(v):
            mask |= below[p] | (bit[p[1]] if p[0] == "node" else 0)
        below[v] = mask
    return Shape(order, bit, {name: below[("node", name)] for name in order})


def traversal(dag: dict[str, Any], targets: list[str]) -> set[str]:
    """The nodes a run from `targets` (nodes, outputs or patterns) may reach; known up front."""
    from gdag.names import is_pattern, matches

    g = build_graph(dag)
    nodes = dag.get("nodes", {})
    start: set[tuple[str, str]] = set()
    for target in targets:
        if target in nodes:
            start.add(("node", target))
            continue
        for kind, name in g.nodes:
            if kind != "output":
                continue
            if (
                name == target
                or (is_pattern(name) and matches(name, target))
                or (is_pattern(target) and overlaps(target, name))
            ):
                start.add((kind, name))
    reach: set[str] = set()
    for vertex in start:
        if vertex[0] == "node":
            reach.add(vertex[1])
        reach.update(n for kind, n in nx.descendants(g, vertex) if kind == "node")
    return reach


def resolve_vertices(g: nx.DiGraph, dag: dict[str, Any], target: str) -> set[tuple[str, str]]:
    """The graph vertices a node or output name (or pattern) stands for."""
    from gdag.errors import UnknownError
    from gdag.names import matches

    if target in dag.get("nodes", {}):
        return {("node", target)}
    found = {
        (kind, name)
        for kind, name in g.nodes
        if kind == "output" and (name == target or (is_pattern(name) and matches(name, target)))
    }
    if not found:
        raise UnknownError(
            f"no node or output {target!r} in the graph",
            hint="`gdag graph` shows every node and output",
        )
    return found


def subgraph_between(
    g: nx.DiGraph, dag: dict[str, Any], start: str | None, end: str | None
) -> set[tuple[str, str]]:
    """Vertices reachable from `start` and reaching `end` (either may be None)."""
    keep = set(g.nodes)
    if start is not None:
        first = resolve_vertices(g, dag, start)
        keep &= first.union(*(nx.descendants(g, v) for v in first))
    if end is not None:
        last = resolve_vertices(g, dag, end)
        keep &= last.union(*(nx.ancestors(g, v) for v in last))
    return keep

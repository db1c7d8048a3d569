"""The DAG as a graph: vertices and edges, cycles, order and traversal.

Ordering, the cycle check and traversal run on every `gdag run`, `status` and
`check` and `graph`, so they are plain Python over adjacency sets. networkx is
imported only to name the vertices of a cycle, and `build_graph` gives the
graph to networkx for anyone who wants its algorithms (the tests check the
scheduler's masks against it).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

from gdag.errors import DefinitionError, UnknownError
from gdag.names import is_pattern, matches, overlaps

if TYPE_CHECKING:
    import networkx as nx

    from gdag.dag import Dag

Vertex = tuple[str, str]  # ("node", name) or ("output", name or pattern)


class Adjacency(NamedTuple):
    """Vertices and successor sets of a definition's graph."""

    vertices: set[Vertex]
    succ: dict[Vertex, set[Vertex]]

    def edges(self) -> Iterable[tuple[Vertex, Vertex]]:
        for a, targets in self.succ.items():
            for b in targets:
                yield a, b


def adjacency(dag: Dag) -> Adjacency:
    """Nodes and output names (or patterns) as vertices; edges output->node->output, and
    output->output where a published name or pattern overlaps a subscribed one."""
    vertices: set[Vertex] = set()
    succ: dict[Vertex, set[Vertex]] = {}

    def edge(a: Vertex, b: Vertex) -> None:
        vertices.update((a, b))
        succ.setdefault(a, set()).add(b)

    for name, node in dag.nodes.items():
        vertices.add(("node", name))
        for out in node.publishes:
            edge(("node", name), ("output", out))
        for out in node.inputs.values():
            edge(("output", out), ("node", name))
    subscribed = {out for node in dag.nodes.values() for out in node.inputs.values()}
    published = {out for node in dag.nodes.values() for out in node.publishes}
    # Two plain names overlap only when equal (one vertex already), so only pairs
    # with a pattern on one side need the test: patterns are few.
    sub_patterns = [s for s in subscribed if is_pattern(s)]
    for pub in published:
        for sub in subscribed if is_pattern(pub) else sub_patterns:
            if sub != pub and overlaps(pub, sub):
                edge(("output", pub), ("output", sub))
    return Adjacency(vertices, succ)


def topological(adj: Adjacency) -> list[Vertex] | None:
    """Vertices upstream first, ties broken by (kind, name); None if there is a cycle."""
    indegree = dict.fromkeys(adj.vertices, 0)
    for _, b in adj.edges():
        indegree[b] += 1
    ready = [v for v, n in indegree.items() if n == 0]
    heapq.heapify(ready)
    order: list[Vertex] = []
    while ready:
        v = heapq.heappop(ready)
        order.append(v)
        for w in adj.succ.get(v, ()):
            indegree[w] -= 1
            if indegree[w] == 0:
                heapq.heappush(ready, w)
    return order if len(order) == len(adj.vertices) else None


def check_graph(dag: Dag, where: str) -> None:
    """Refuse cycles (through names or patterns)."""
    adj = adjacency(dag)
    if topological(adj) is not None:
        return
    import networkx as nx

    g = nx.DiGraph()
    g.add_edges_from(adj.edges())
    cycle = nx.find_cycle(g)
    path = " -> ".join(f"{kind} {name}" for (kind, name), _ in cycle)
    raise DefinitionError(
        f"{where}: the graph has a cycle: {path}",
        hint="a node may not (even indirectly) subscribe to what it publishes",
    )


def node_order(dag: Dag) -> list[str]:
    """Node names in a dependency order (upstream first), ties broken by name."""
    return node_shape(dag).order


class Shape(NamedTuple):
    """A definition's nodes in dependency order (upstream first, ties broken by
    name); each node's bit (bit i for the i-th name of that order); and for every
    node the mask of the nodes it (transitively) depends on."""

    order: list[str]
    bit: dict[str, int]
    upstream: dict[str, int]


def node_shape(dag: Dag) -> Shape:
    """The definition's `Shape`, in one pass in dependency order: a node's mask is
    the union of its predecessors' masks and bits, so a chain of N nodes costs N
    integer ORs, where ancestor sets would cost N²/2 set entries."""
    adj = adjacency(dag)
    topo = topological(adj)
    if topo is None:
        raise DefinitionError("the graph has a cycle", hint="`gdag check` names it")
    order = [name for kind, name in topo if kind == "node"]
    bit = {name: 1 << i for i, name in enumerate(order)}
    below: dict[Vertex, int] = dict.fromkeys(topo, 0)
    for v in topo:
        mask = below[v] | (bit[v[1]] if v[0] == "node" else 0)
        for w in adj.succ.get(v, ()):
            below[w] |= mask
    return Shape(order, bit, {name: below[("node", name)] for name in order})


def _reachable(adj: Adjacency, start: Iterable[Vertex]) -> set[Vertex]:
    """`start` and every vertex below it."""
    seen = set(start)
    todo = list(seen)
    while todo:
        for w in adj.succ.get(todo.pop(), ()):
            if w not in seen:
                seen.add(w)
                todo.append(w)
    return seen


def traversal(dag: Dag, targets: list[str]) -> set[str]:
    """The nodes a run from `targets` (nodes, outputs or patterns) may reach; known up front."""
    adj = adjacency(dag)
    start: set[Vertex] = set()
    for target in targets:
        if target in dag.nodes:
            start.add(("node", target))
            continue
        for kind, name in adj.vertices:
            if kind != "output":
                continue
            if (
                name == target
                or (is_pattern(name) and matches(name, target))
                or (is_pattern(target) and overlaps(target, name))
            ):
                start.add((kind, name))
    return {name for kind, name in _reachable(adj, start) if kind == "node"}


def build_graph(dag: Dag) -> nx.DiGraph:
    """The definition's graph as a networkx DiGraph (for `gdag graph`'s views)."""
    import networkx as nx

    adj = adjacency(dag)
    g = nx.DiGraph()
    g.add_nodes_from(adj.vertices)
    g.add_edges_from(adj.edges())
    return g


def resolve_vertices(adj: Adjacency, dag: Dag, target: str) -> set[Vertex]:
    """The graph vertices a node or output name (or pattern) stands for."""
    if target in dag.nodes:
        return {("node", target)}
    found = {
        (kind, name)
        for kind, name in adj.vertices
        if kind == "output" and (name == target or (is_pattern(name) and matches(name, target)))
    }
    if not found:
        raise UnknownError(
            f"no node or output {target!r} in the graph",
            hint="`gdag graph` shows every node and output",
        )
    return found


def subgraph_between(adj: Adjacency, dag: Dag, start: str | None, end: str | None) -> set[Vertex]:
    """Vertices reachable from `start` and reaching `end` (either may be None)."""
    keep = set(adj.vertices)
    if start is not None:
        keep &= _reachable(adj, resolve_vertices(adj, dag, start))
    if end is not None:
        reverse: dict[Vertex, set[Vertex]] = {}
        for a, b in adj.edges():
            reverse.setdefault(b, set()).add(a)
        keep &= _reachable(Adjacency(adj.vertices, reverse), resolve_vertices(adj, dag, end))
    return keep

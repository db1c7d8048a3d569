"""gdag's module map holds: no import cycles, no upward imports, one owner per library.

Imports are read from the source (top-level and inside functions alike: a cycle
hidden behind a function-level import is still a cycle); only `if TYPE_CHECKING:`
blocks are left out, since they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

GDAG = Path(__file__).resolve().parent.parent / "gdag"

# Layers, lowest first: a module may import its own layer and those below it.
LAYERS: list[tuple[str, set[str]]] = [
    (
        "base",
        {"gdag", "gdag.errors", "gdag.names", "gdag.nodestates", "gdag.trailers", "gdag.retry"}
        | {"gdag.records"}
        | {"gdag.dirs"}
        | {"gdag.clock", "gdag.cron", "gdag.ticker"},
    ),
    ("values and user code", {"gdag.types", "gdag.schema", "gdag.usercode"}),
    ("definition model", {"gdag.dag", "gdag.binding", "gdag.graph", "gdag.stubs"}),
    (
        "jobs (no git)",
        {
            "gdag.job",
            "gdag.shellnode",
            "gdag.pynode",
            "gdag.executors",
            "gdag.executors.local",
            "gdag.executors.child",
            "gdag.executors.dask",
        },
    ),
    ("git binary", {"gdag.gitcmd", "gdag.gitconfig"}),
    ("store", {"gdag.objects", "gdag.refs", "gdag.repo", "gdag.private", "gdag.lfs"}),
    (
        "state and log",
        {"gdag.layout", "gdag.state", "gdag.values", "gdag.cache", "gdag.log", "gdag.lease"},
    ),
    ("remote", {"gdag.remote", "gdag.netsem", "gdag.lfsclient", "gdag.lfstransfer"}),
    ("sessions", {"gdag.session", "gdag.definition", "gdag.groupcommit"}),
    ("workspace", {"gdag.workspace", "gdag.branch"}),
    ("running", {"gdag.execute", "gdag.speculate", "gdag.provenance", "gdag.runner"}),
    (
        "features",
        {"gdag.replay", "gdag.graphview", "gdag.doctor", "gdag.hooks", "gdag.hookqueue"}
        | {"gdag.hookevents"}
        | {"gdag.watch", "gdag.schedule", "gdag.maintenance", "gdag.freshness"}
        | {"gdag.metrics", "gdag.serve", "gdag.servepage", "gdag.retention"},
    ),
    ("output", {"gdag.output", "gdag.render", "gdag.progress"}),
    ("api", {"gdag.api"}),
    ("commands", {"gdag.commands", "gdag.cli", "gdag.main", "gdag.__main__"}),
]
# Each outside library is imported by these modules only.
OWNERS = {
    "typer": {"gdag.cli"},
    "click": {"gdag.cli"},
    "rich": {"gdag.render"},
    "networkx": {"gdag.graph"},
    # gdag.lfstransfer: dulwich's LFS batch client and its HTTP pool, for large values.
    "dulwich": {"gdag.objects", "gdag.repo", "gdag.private", "gdag.lfstransfer"},
    "pydantic": {"gdag.types"},
    "jsonschema": {"gdag.schema"},
    "referencing": {"gdag.schema"},
    "distributed": {"gdag.executors.dask", "gdag.netsem"},
    "dask": {"gdag.executors.dask", "gdag.netsem"},
    "fsspec": {"gdag.lfstransfer"},  # [values] remote: large values in any fsspec store
}


def module_name(path: Path) -> str:
    parts = path.relative_to(GDAG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(GDAG.rglob("*.py"))}


def layer_of(module: str) -> int:
    while module:
        for i, (_, members) in enumerate(LAYERS):
            if module in members:
                return i
        module = module.rpartition(".")[0]  # gdag.commands.run is in gdag.commands' layer
    raise AssertionError(f"{module} has no layer")


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(name: str, path: Path) -> set[str]:
    """Every module `name` imports at run time (gdag's own resolved to its modules)."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    resolved = set()
    for imported in found:
        if imported == "gdag" or imported.startswith("gdag."):
            while imported not in MODULES:
                imported = imported.rpartition(".")[0]
            if imported != name:
                resolved.add(imported)
        else:
            resolved.add(imported)
    return resolved


GRAPH = {name: imports_of(name, path) for name, path in MODULES.items()}


def test_every_module_has_a_layer() -> None:
    for name in MODULES:
        layer_of(name)


def test_no_import_cycles() -> None:
    """Depth-first search for a back edge among gdag's own modules."""
    own = {n: {m for m in deps if m in MODULES} for n, deps in GRAPH.items()}
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        stack.append(name)
        for dep in sorted(own[name]):
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep) :] + [dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[name] = 2

    for name in sorted(own):
        if name not in state:
            visit(name)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_upward_imports(name: str) -> None:
    """A module imports only its own layer and the layers below it (`gdag`, the
    package of the `@gdag.node` decorator and the version, counts as the base)."""
    mine = layer_of(name)
    upward = sorted(
        f"{dep} ({LAYERS[layer_of(dep)][0]})"
        for dep in GRAPH[name]
        if dep in MODULES and layer_of(dep) > mine
    )
    assert not upward, f"{name} ({LAYERS[mine][0]}) imports upward: {', '.join(upward)}"


@pytest.mark.parametrize("library", sorted(OWNERS))
def test_each_library_has_one_owner(library: str) -> None:
    users = {
        name
        for name, deps in GRAPH.items()
        if any(dep == library or dep.startswith(library + ".") for dep in deps)
    }
    assert users <= OWNERS[library], f"{library} imported by {sorted(users - OWNERS[library])}"


def test_the_rules_can_fail() -> None:
    """The checks see a real import: the engine imports the session layer, and a
    function-level import (graph's networkx) counts."""
    assert "gdag.session" in GRAPH["gdag.runner"]
    assert "networkx" in GRAPH["gdag.graph"]
    assert layer_of("gdag.commands.run") > layer_of("gdag.runner")

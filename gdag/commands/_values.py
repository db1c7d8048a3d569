"""The values Tab offers for a parameter: choices, and node, output, log and hook names
read from the log tip with dulwich only. Shared by gdag's own completion and typer's."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from gdag.commands import Option, Param

if TYPE_CHECKING:
    from gdag.repo import Store


def values(param: Param, path: str | None, log: str | None, incomplete: str) -> list[str]:
    """The values offered for `param` that start with `incomplete`."""
    choices: Iterable[str] = param.choices if isinstance(param, Option) else ()
    if param.complete is not None:
        try:
            choices = SOURCES[param.complete](path, log)
        except Exception:  # noqa: BLE001 - not a repository, no log yet: nothing to offer
            choices = []
    return [c for c in choices if c.startswith(incomplete)]


def _tip(path: str | None, log: str | None) -> tuple[Store, bytes | None]:
    """The store and the tree of the log's tip (None before the log's first event)."""
    from gdag.workspace import Workspace

    ws = Workspace.open(path, log)
    tip = ws.log.tip()
    return ws.store, ws.store.read_commit(tip).tree if tip is not None else None


def node_names(path: str | None, log: str | None) -> list[str]:
    from gdag.state import read_dag

    dag = read_dag(*_tip(path, log))
    return sorted(dag.nodes) if dag is not None else []


def output_names(path: str | None, log: str | None) -> list[str]:
    from gdag.state import list_outputs

    return list(list_outputs(*_tip(path, log)))


def declared_outputs(path: str | None, log: str | None) -> list[str]:
    """Outputs with a value, and the plain names the definition declares or publishes."""
    from gdag.names import is_pattern
    from gdag.state import list_outputs, read_dag

    store, root = _tip(path, log)
    dag = read_dag(store, root)
    declared = [*dag.outputs, *(o for n in dag.nodes.values() for o in n.publishes)] if dag else []
    plain = {name for name in declared if not is_pattern(name)}
    return sorted(plain | set(list_outputs(store, root)))


def nodes_and_outputs(path: str | None, log: str | None) -> list[str]:
    return node_names(path, log) + output_names(path, log)


def log_names(path: str | None, log: str | None) -> list[str]:
    from gdag.log import LOG_PREFIX
    from gdag.repo import Store

    refs = Store.find(path or ".").list_refs(LOG_PREFIX)
    return sorted(ref.removeprefix(LOG_PREFIX) for ref in refs)


def hook_names(path: str | None, log: str | None) -> list[str]:
    from gdag.hooks import HOOKS

    return list(HOOKS)


SOURCES: dict[str, Callable[[str | None, str | None], Iterable[str]]] = {
    "node": node_names,
    "output": output_names,
    "output-or-declared": declared_outputs,
    "node-or-output": nodes_and_outputs,
    "log": log_names,
    "hook": hook_names,
}

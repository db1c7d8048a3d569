"""`gdag hook NAME [ARG]...`: what the hook shims run: publish the git event, run subscribers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gdag.commands import PATH, Argument, Spec

if TYPE_CHECKING:
    from gdag.workspace import Workspace

SPEC = Spec(
    (
        Argument("name", "The git hook being run.", complete="hook"),
        Argument("args", "Git's arguments to it.", default=None, many=True),
        PATH,
    )
)


def run(*, name: str, args: list[str] | None, path: str | None) -> int:
    from gdag import hooks

    if name not in hooks.HOOKS:
        from gdag.errors import UsageError

        raise UsageError(f"gdag has no {name!r} hook")
    return hooks.run_hook(path, name, args or [], _run_subscribers)


def _run_subscribers(ws: Workspace, output: str) -> None:
    import os

    from gdag.commands.publish import has_subscribers
    from gdag.commands.run import run_nodes

    if has_subscribers(ws, output):
        run_nodes(ws, [output], jobs=os.cpu_count() or 1, quiet=False)

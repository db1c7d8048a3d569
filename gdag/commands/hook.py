"""`gdag hook NAME [ARG]...`, `gdag hook --drain`: publish git events queued by the hook shims."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gdag.commands import PATH, Argument, Option, Spec

if TYPE_CHECKING:
    from gdag.workspace import Workspace

SPEC = Spec(
    (
        Argument("name", "The git hook being run.", default=None, complete="hook"),
        Argument("args", "Git's arguments to it.", default=None, many=True),
        Option(
            "drain",
            ("--drain",),
            "Publish the events the hook shims queued, in order (what they run in the background).",
        ),
        PATH,
    )
)


def run(*, name: str | None, args: list[str] | None, drain: bool, path: str | None) -> int:
    import os

    from gdag import hooks
    from gdag.errors import UsageError

    # git sets these for its hooks; the events name their repository themselves.
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_PREFIX", "GIT_COMMON_DIR"):
        os.environ.pop(var, None)
    if drain:
        if name is not None:
            raise UsageError("gdag hook --drain takes no hook name")
        return hooks.drain_queue(path, _run_subscribers)
    if name is None:
        raise UsageError(
            "gdag hook needs a hook name, or --drain", hint="hooks: " + ", ".join(hooks.HOOKS)
        )
    if name not in hooks.HOOKS:
        raise UsageError(f"gdag has no {name!r} hook", hint="hooks: " + ", ".join(hooks.HOOKS))
    return hooks.run_hook(path, name, args or [], _run_subscribers)


def _run_subscribers(ws: Workspace, output: str) -> None:
    import os

    from gdag.commands.publish import has_subscribers
    from gdag.commands.run import run_nodes

    if has_subscribers(ws, output):
        run_nodes(ws, [output], jobs=os.cpu_count() or 1, quiet=False)

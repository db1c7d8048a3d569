"""`gdag hook NAME [ARG]...`: what the hook shims run: publish the git event, run subscribers."""

from __future__ import annotations

from gdag.commands import PATH, Argument, Spec

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
    return hooks.run_hook(path, name, args or [])

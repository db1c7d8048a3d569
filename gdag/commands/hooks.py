"""`gdag hooks install|uninstall|list`: gdag's git hooks."""

from __future__ import annotations

from typing import Any

from gdag.commands import JSON, PATH, Option, Spec
from gdag.output import out, print_json

HOOK = Option(
    "hook",
    ("--hook",),
    "Only this hook (post-commit, post-merge, post-checkout, post-rewrite).",
    "list",
    "NAME",
    complete="hook",
)

SPEC = Spec(
    subcommands={
        "install": Spec(
            (HOOK, JSON, PATH),
            run="install",
            help="Install hooks that publish git/commit, git/merge, git/checkout, git/rewrite.",
        ),
        "uninstall": Spec(
            (HOOK, JSON, PATH),
            run="uninstall",
            help="Remove gdag's hooks, putting back any hook they chained.",
        ),
        "list": Spec(
            (JSON, PATH),
            run="list_hooks",
            help="Show each hook: gdag's, gdag's chaining a foreign one, foreign, or absent.",
        ),
    }
)


def install(*, hook: list[str] | None, json_out: bool, path: str | None) -> int:
    from gdag import hooks
    from gdag.workspace import Workspace

    return _print(hooks.install(Workspace.open(path).store, hook), json_out)


def uninstall(*, hook: list[str] | None, json_out: bool, path: str | None) -> int:
    from gdag import hooks
    from gdag.workspace import Workspace

    return _print(hooks.uninstall(Workspace.open(path).store, hook), json_out)


def list_hooks(*, json_out: bool, path: str | None) -> int:
    from gdag import hooks
    from gdag.workspace import Workspace

    return _print(hooks.status(Workspace.open(path).store), json_out)


def _print(states: list[Any], json_out: bool) -> int:
    if json_out:
        print_json([h.to_json() for h in states])
    else:
        out("".join(f"{h.name:<14} {h.state:<13} {h.path}\n" for h in states).encode())
    return 0

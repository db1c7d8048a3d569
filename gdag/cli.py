"""The typer app, built from the commands' declarations: help, usage errors, completion scripts.

`gdag.main` parses the usual forms of every command itself; typer gets what is
left (`--help`, mistakes, unusual spellings such as `-j4`). Only the invoked
command is built in full, from its module's `SPEC`; the others are listed by
name and summary (`gdag --help`, "No such command") without importing them.
`build_app()` with no verb builds them all, for tests and the completion
scripts.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from typing import Any

import typer

from gdag import __version__
from gdag.commands import COMMANDS, REQUIRED, Argument, Option, Param, Spec, check_start, load
from gdag.errors import EXIT_INTERRUPTED, EXIT_USAGE

HELP = "A git-native reactive dataflow engine: publish values, run nodes, keep every result."


def build_app(only: str | None = None) -> typer.Typer:
    """The app with command `only` built in full (every command when None)."""
    app = typer.Typer(
        name="gdag",
        help=HELP,
        add_completion=True,
        context_settings={"help_option_names": ["-h", "--help"]},
        rich_markup_mode=None,
        pretty_exceptions_enable=False,
    )
    app.callback()(_top)
    for verb, entry in COMMANDS.items():
        if only is None or verb == only:
            _add(app, verb)
        else:
            app.command(verb, help=entry.help, hidden=entry.hidden)(_listed)
    return app


def _version(value: bool) -> None:
    if value:
        print(f"gdag {__version__}")
        raise typer.Exit()


def _top(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """A git-native reactive dataflow engine."""


def _listed() -> None:
    """A command that is listed but not built: never invoked."""


def _add(app: typer.Typer, verb: str) -> None:
    module, entry = load(verb), COMMANDS[verb]
    spec: Spec = module.SPEC
    if not spec.subcommands:
        command = _callback(verb, getattr(module, spec.run), spec)
        app.command(verb, help=entry.help, hidden=entry.hidden)(command)
        return
    group = typer.Typer(help=entry.help, no_args_is_help=True)
    for name, sub in spec.subcommands.items():
        group.command(name, help=sub.help)(_callback(verb, getattr(module, sub.run), sub))
    app.add_typer(group, name=verb, hidden=entry.hidden)


def _callback(verb: str, func: Callable[..., int], spec: Spec) -> Callable[..., int]:
    """A function whose signature declares `spec`'s parameters to typer."""
    params = [
        inspect.Parameter(
            p.name, inspect.Parameter.KEYWORD_ONLY, default=_info(p), annotation=_type(p)
        )
        for p in spec.params
    ]

    def command(**kwargs: Any) -> int:
        check_start(verb, kwargs)
        return int(func(**kwargs))

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    return command


def _type(p: Param) -> Any:
    if isinstance(p, Argument):
        if p.many:
            return list[str] | None
        return str | None if p.default is None else str
    kind: Any = {"flag": bool, "switch": bool, "text": str, "int": int, "float": float}.get(
        p.kind, list[str]
    )
    return kind | None if p.default is None and kind is not bool else kind


def _info(p: Param) -> Any:
    default = ... if p.default is REQUIRED else p.default
    extra: dict[str, Any] = {"help": p.help}
    if p.metavar is not None:
        extra["metavar"] = p.metavar
    if p.complete or (isinstance(p, Option) and p.choices):
        extra["autocompletion"] = _completer(p)
    if isinstance(p, Argument):
        return typer.Argument(default, **extra)
    if p.minimum is not None:
        extra["min"] = p.minimum
    if p.envvar is not None:
        extra["envvar"] = p.envvar
    decls = list(p.flags)
    if p.off is not None:
        decls[0] = f"{decls[0]}/{p.off}"
    return typer.Option(default, *decls, **extra)


def _completer(p: Param) -> Callable[..., list[str]]:
    """Tab completion of a parameter's values, the same as `gdag.commands._complete` gives."""

    def complete(ctx: typer.Context, incomplete: str) -> list[str]:
        from gdag.commands._values import values

        return values(p, ctx.params.get("path"), ctx.params.get("log"), incomplete)

    return complete


def retired_hint(argv: list[str], flag: str) -> str | None:
    """For a short option a command had once, the option it is now."""
    from gdag.commands import spec_of

    if not argv or argv[0] not in COMMANDS:
        return None
    spec = spec_of(argv[0])
    if spec.subcommands and len(argv) > 1:
        spec = spec.subcommands.get(argv[1], spec)
    for opt in spec.options:
        if flag in opt.retired:
            return f"use {opt.long}; {flag} is short for {_meaning(flag)}"
    return None


def _meaning(flag: str) -> str:
    """What a short option stands for now, and where (it means one thing everywhere)."""
    from gdag.commands import spec_of

    for verb in COMMANDS:
        spec = spec_of(verb)
        for name, sub in [("", spec), *((f" {n}", s) for n, s in spec.subcommands.items())]:
            for opt in sub.options:
                if flag in opt.flags:
                    return f"{opt.long} (gdag {verb}{name})"
    return "nothing now"


def run_app(argv: list[str]) -> int:
    """Run the typer app on `argv`, mapping its outcomes to gdag's exit statuses."""
    cmd = typer.main.get_command(build_app(argv[0] if argv else None))
    try:
        result = cmd.main(args=argv or ["--help"], prog_name="gdag", standalone_mode=False)
    except typer.TyperException as exc:
        sys.stderr.write(f"gdag: error: {exc.format_message()}\n")
        ctx = getattr(exc, "ctx", None)
        if exc.exit_code == EXIT_USAGE:
            flag = getattr(exc, "option_name", None)
            hint = retired_hint(argv, flag) if flag else None
            command = ctx.command_path if ctx else "gdag"
            sys.stderr.write(f"hint: {hint or f'see `{command} --help`'}\n")
        return exc.exit_code
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        sys.stderr.write("gdag: interrupted\n")
        return EXIT_INTERRUPTED
    return int(result or 0)


def __getattr__(name: str) -> Any:
    # `gdag.cli.app`: every command built, for tests (typer's CliRunner) and tools.
    if name == "app":
        return build_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

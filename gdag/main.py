"""The `gdag` entry point: a standard-library parser for the usual forms of every command,
typer for the rest, and the one place that turns a GdagError into a message and a status.

typer (and pydantic, which it imports) costs ~150 ms per start: more than most
commands take to do their work, and `gdag publish`, `lookup`, `status` and the
hook shims run in shell loops, prompts and git hooks. So the usual forms are
parsed here from each command's `SPEC` (`gdag.commands`), the same declaration
the typer app is built from; anything unusual (`--help`, a mistake, `-j4`)
falls through to typer, which owns every message about usage. A shell's Tab
is answered from the same declarations (`gdag.commands._complete`).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, MutableMapping
from typing import Any

from gdag.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, GdagError

_DIGITS = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")


class NotFast(Exception):
    """The arguments need the full parser."""


def parse_fast(argv: list[str]) -> tuple[Callable[..., int], dict[str, Any]]:
    """The function and keyword arguments for `argv` (after `hoist_global_options`), or
    NotFast when only typer can say what they mean."""
    from gdag.commands import COMMANDS, load

    if argv == ["--version"]:
        return print_version, {}
    if not argv or argv[0] not in COMMANDS:
        raise NotFast
    module = load(argv[0])
    spec, rest = module.SPEC, argv[1:]
    if spec.subcommands:
        if not rest or rest[0] not in spec.subcommands:
            raise NotFast
        spec, rest = spec.subcommands[rest[0]], rest[1:]
    return getattr(module, spec.run), parse_args(spec, rest)


def parse_args(spec: Any, args: list[str]) -> dict[str, Any]:
    """Every parameter of `spec` from `args` as click would read them, defaults included."""
    from gdag.commands import REQUIRED

    flags = {flag: (opt, True) for opt in spec.options for flag in opt.flags}
    flags.update({opt.off: (opt, False) for opt in spec.options if opt.off})
    kwargs: dict[str, Any] = {}
    positional: list[str] = []
    rest = iter(args)
    for tok in rest:
        if tok == "--":
            positional += rest
            break
        if tok == "-" or not tok.startswith("-"):
            positional.append(tok)
            continue
        name, eq, inline = tok.partition("=") if tok.startswith("--") else (tok, "", "")
        if name not in flags:
            raise NotFast
        opt, on = flags[name]
        if not opt.takes_value:
            if eq or opt.name in kwargs:
                raise NotFast
            kwargs[opt.name] = on
            continue
        value = inline if eq else next(rest, None)
        if value is None:
            raise NotFast
        if opt.kind == "list":
            kwargs.setdefault(opt.name, []).append(value)
        elif opt.name in kwargs:
            raise NotFast  # given twice: click keeps the last; let it
        else:
            kwargs[opt.name] = _number(opt, value)
    for arg in spec.arguments:  # a `many` argument comes last, as in click
        if positional:
            kwargs[arg.name] = positional if arg.many else positional.pop(0)
            positional = [] if arg.many else positional
    if positional:
        raise NotFast
    for param in spec.params:
        if param.name not in kwargs:
            if param.default is REQUIRED:
                raise NotFast
            kwargs[param.name] = param.default
    return kwargs


def _number(opt: Any, value: str) -> Any:
    """An int or float option's value, when it is plainly one within bounds."""
    if opt.kind == "text":
        return value
    pattern = _DIGITS if opt.kind == "int" else _DECIMAL
    if not pattern.fullmatch(value):
        raise NotFast
    number = int(value) if opt.kind == "int" else float(value)
    if opt.minimum is not None and number < opt.minimum:
        raise NotFast
    return number


def print_version() -> int:
    from gdag import __version__

    sys.stdout.write(f"gdag {__version__}\n")
    return 0


def hoist_global_options(argv: list[str], env: MutableMapping[str, str] | None = None) -> list[str]:
    """Move `-C PATH` / `--log NAME` given before the command to after it (like git -C):
    after the subcommand of a group (`hooks install`). A command without a `--log` option
    (`hooks`, `hook`) takes a global `--log NAME` as `GDAG_LOG=NAME` in `env`."""
    from gdag.commands import COMMANDS, GLOBAL_FLAGS, spec_of

    moved: list[str] = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        name = tok.partition("=")[0]
        if name in GLOBAL_FLAGS and i + (0 if "=" in tok else 1) < len(argv):
            if "=" in tok:
                moved.append(tok)
                i += 1
            else:
                moved += argv[i : i + 2]
                i += 2
            continue
        break
    if not moved or i == len(argv):
        return argv
    verb, rest = argv[i], argv[i + 1 :]
    if verb not in COMMANDS:
        return [verb, *moved, *rest]
    spec, head = spec_of(verb), [verb]
    if spec.subcommands:
        if not rest or rest[0] not in spec.subcommands:
            return [verb, *moved, *rest]  # typer says what is missing
        spec, head, rest = spec.subcommands[rest[0]], [verb, rest[0]], rest[1:]
    flags = {flag for opt in spec.options for flag in opt.flags}
    kept: list[str] = []
    pairs = [tok.partition("=")[::2] if "=" in tok else None for tok in moved]
    j = 0
    while j < len(moved):
        flag, value = pairs[j] or (moved[j], moved[j + 1])
        given = moved[j : j + (1 if pairs[j] else 2)]
        j += len(given)
        if flag in flags:
            kept += given
        elif flag == "--log" and env is not None:
            env["GDAG_LOG"] = value
    return [*head, *kept, *rest]


def report_error(exc: GdagError) -> int:
    sys.stderr.write(f"gdag: error: {exc.message}\n")
    if exc.hint:
        sys.stderr.write(f"hint: {exc.hint}\n")
    return exc.exit_code


def report_bug() -> int:
    import traceback

    traceback.print_exc()
    sys.stderr.write(
        "gdag: internal error: this is a bug in gdag; please report it with the "
        "traceback above and the command that caused it\n"
    )
    return EXIT_INTERNAL


def _terminate(signum: int, frame: Any) -> None:
    # SIGTERM unwinds like Ctrl-C, so lock files are removed on the way out.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    import signal

    signal.signal(signal.SIGTERM, _terminate)
    args = list(sys.argv[1:] if argv is None else argv)
    if os.environ.get("_GDAG_COMPLETE", "").startswith("complete_"):
        from gdag.commands._complete import answer

        return answer(os.environ["_GDAG_COMPLETE"])
    args = hoist_global_options(args, os.environ)
    try:
        try:
            command, kwargs = parse_fast(args)
        except NotFast:
            from gdag.cli import run_app

            return run_app(args)
        from gdag.commands import check_start

        check_start(args[0], kwargs)
        return int(command(**kwargs))
    except GdagError as exc:
        return report_error(exc)
    except KeyboardInterrupt:
        sys.stderr.write("gdag: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`gdag log | head`): not an error, and no noise at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception:
        return report_bug()
    finally:
        _maintain()


def entry() -> int:
    """The `gdag` command and `python -m gdag`: `main`, with the status it returns.

    CPython marks a KeyboardInterrupt raised inside `exec()` of a string (the code
    the dataclass decorator generates, while a module is first imported, say) as
    unhandled even when gdag catches it, and then ends the process by SIGINT
    whatever status it exits with: `gdag watch` stopped by Ctrl-C during such an
    import exited -2 instead of 0. A completed `exec()` clears the mark."""
    status = main()
    exec("")  # noqa: S102 - clears CPython's "unhandled KeyboardInterrupt" mark
    return status


def _maintain() -> None:
    """After a command that wrote objects: pack in the background when git would; after
    one that wrote or fetched large values, keep them within `[values] cache`."""
    repo = sys.modules.get("gdag.repo")
    if repo is None:
        return
    lfs = sys.modules.get("gdag.lfs")
    try:
        due = [store for store in repo.WROTE.values() if store.past_gc_auto()]
        repo.WROTE.clear()
        if due:
            from gdag.maintenance import after_command

            after_command(due)
        if lfs is not None and lfs.GREW:
            from gdag.maintenance import trim_grown

            trim_grown()
    except (Exception, KeyboardInterrupt):  # maintenance never changes how it ended
        pass


if __name__ == "__main__":
    raise SystemExit(main())

"""The `gdag` entry point: a stdlib-only fast path for publish/lookup/run, typer for the rest.

`gdag publish` and `gdag lookup` are called from shell loops and git hooks,
where the ~150 ms that typer (and pydantic, which it imports) add to every
start would dominate. Their usual forms are parsed here by a small table kept
in step with the typer app by a test; anything unusual (`--help`, a mistake)
falls through to typer, which owns every message about usage.
"""

from __future__ import annotations

import sys
import traceback
from typing import Any

from gdag.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, GdagError

# command -> (positional parameters, {option: (parameter, kind)}); a final positional
# ending in "*" takes the rest. Kinds: "value", "int" (>= 1), "flag" (True), "off" (False).
COMMON = {"-C": ("path", "value"), "--log": ("log", "value")}
FAST_COMMANDS: dict[str, tuple[list[str], dict[str, tuple[str, str]]]] = {
    "publish": (
        ["output", "value"],
        {
            "--file": ("file", "value"),
            "-f": ("file", "value"),
            "--dir": ("directory", "value"),
            "--type": ("type_", "value"),
            "-t": ("type_", "value"),
            "--if-changed": ("if_changed", "flag"),
            "--json": ("json_out", "flag"),
            "--no-run": ("no_run", "flag"),
            "--detach": ("detach", "flag"),
            **COMMON,
        },
    ),
    "lookup": (
        ["output"],
        {
            "--at": ("at", "value"),
            "--meta": ("meta", "flag"),
            "--json": ("json_out", "flag"),
            "-o": ("out_path", "value"),
            "--out": ("out_path", "value"),
            **COMMON,
        },
    ),
    "run": (
        ["targets*"],
        {
            "--jobs": ("jobs", "int"),
            "-j": ("jobs", "int"),
            "--dry-run": ("dry_run", "flag"),
            "-n": ("dry_run", "flag"),
            "--keep-going": ("keep_going", "flag"),
            "-k": ("keep_going", "flag"),
            "--fail-fast": ("keep_going", "off"),
            "--retry-failed": ("retry_failed", "flag"),
            "--speculative": ("speculative", "flag"),
            "--remote": ("remote", "value"),
            "--quiet": ("quiet", "flag"),
            "-q": ("quiet", "flag"),
            "--json": ("json_out", "flag"),
            **COMMON,
        },
    ),
}
GLOBAL_OPTIONS = ("-C", "--log")


class _NotFast(Exception):
    """The arguments need the full parser."""


def parse_fast(argv: list[str]) -> tuple[str, dict[str, Any]]:
    """Parse `argv` (after global options were moved) for a fast command, or raise _NotFast."""
    if not argv or argv[0] not in FAST_COMMANDS:
        raise _NotFast
    positional, options = FAST_COMMANDS[argv[0]]
    kwargs: dict[str, Any] = {}
    args: list[str] = []
    rest = iter(argv[1:])
    only_positional = False
    for tok in rest:
        if only_positional or tok == "-" or not tok.startswith("-"):
            args.append(tok)
            continue
        if tok == "--":
            only_positional = True
            continue
        name, eq, inline = tok.partition("=")
        if name not in options:
            raise _NotFast
        param, kind = options[name]
        if param in kwargs:
            raise _NotFast
        if kind in ("flag", "off"):
            if eq:
                raise _NotFast
            kwargs[param] = kind == "flag"
            continue
        value = inline if eq else next(rest, None)
        if value is None:
            raise _NotFast
        if kind == "int":
            if not value.isdigit() or int(value) < 1:
                raise _NotFast
            kwargs[param] = int(value)
        else:
            kwargs[param] = value
    if positional and positional[-1].endswith("*"):
        fixed = positional[:-1]
        if len(args) < len(fixed):
            raise _NotFast
        kwargs.update(zip(fixed, args, strict=False))
        kwargs[positional[-1].rstrip("*")] = args[len(fixed) :]
        return argv[0], kwargs
    if not args or len(args) > len(positional):
        raise _NotFast
    kwargs.update(zip(positional, args, strict=False))
    return argv[0], kwargs


def hoist_global_options(argv: list[str]) -> list[str]:
    """Move `-C PATH` / `--log NAME` given before the command to after it (like git -C)."""
    moved: list[str] = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        name = tok.partition("=")[0]
        if name in GLOBAL_OPTIONS and i + (0 if "=" in tok else 1) < len(argv):
            if "=" in tok:
                moved.append(tok)
                i += 1
            else:
                moved += argv[i : i + 2]
                i += 2
            continue
        break
    if moved and i < len(argv):
        return [argv[i], *moved, *argv[i + 1 :]]
    return argv


def report_error(exc: GdagError) -> int:
    sys.stderr.write(f"gdag: error: {exc.message}\n")
    if exc.hint:
        sys.stderr.write(f"hint: {exc.hint}\n")
    return exc.exit_code


def report_bug() -> int:
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
    argv = hoist_global_options(list(sys.argv[1:] if argv is None else argv))
    try:
        try:
            command, kwargs = parse_fast(argv)
        except _NotFast:
            from gdag.cli import run_app

            return run_app(argv)
        from gdag import commands

        return int(getattr(commands, command)(**kwargs))
    except GdagError as exc:
        return report_error(exc)
    except KeyboardInterrupt:
        sys.stderr.write("gdag: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`gdag log | head`): not an error, and no noise at exit.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception:
        return report_bug()


if __name__ == "__main__":
    raise SystemExit(main())

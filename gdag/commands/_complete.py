"""A shell's Tab, answered from the commands' declarations without typer.

The completion scripts in completions/ are typer's: on Tab they run
`_GDAG_COMPLETE=complete_<shell> gdag` with the words typed so far. Building the
typer app for that would cost ~150 ms (it imports pydantic), so `gdag.main` sends
those requests here: the same protocol and the same answers as click's
`shell_completion` (tests compare the two), from `SPEC`s and the standard
library. Values come from the repository: node names from the compiled
definition in the log tip's `dag.json`, output names from the tip's tree, log
names from the refs, with dulwich and the standard library only.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING

from gdag.commands import COMMANDS, GLOBAL_FLAGS, Option, Param, Spec, load
from gdag.commands._values import values

if TYPE_CHECKING:
    pass

HELP_FLAGS = ("-h", "--help")
HELP_TEXT = "Show this message and exit."
# The options typer gives the app itself (besides help).
TOP_OPTIONS = (
    ("--version", "Print the version."),
    ("--install-completion", "Install completion for the current shell."),
    (
        "--show-completion",
        "Show completion for the current shell, to copy it or customize the installation.",
    ),
)

Item = tuple[str, str]  # (candidate, help)


def answer(instruction: str) -> int:
    """Print the candidates for `complete_<shell>` as that shell's script expects them."""
    shell = instruction.partition("_")[2]
    if shell not in ("bash", "zsh", "fish"):
        from gdag.cli import run_app  # typer knows the other shells

        return run_app([])
    try:
        items = candidates(*_request(shell))
    except Exception:  # noqa: BLE001 - a Tab never prints a traceback into the shell
        items = []
    return _print(shell, items)


def _request(shell: str) -> tuple[list[str], str]:
    """The words before the one being completed, and that word, as the script passed them."""
    if shell == "bash":
        words = split_words(os.environ.get("COMP_WORDS", ""))
        cword = int(os.environ.get("COMP_CWORD", "0") or 0)
        return words[1:cword], words[cword] if cword < len(words) else ""
    line = os.environ.get("_TYPER_COMPLETE_ARGS", "")
    args = split_words(line)[1:]
    return args, args.pop() if args and not line.endswith(" ") else ""


def _print(shell: str, items: list[Item]) -> int:
    if shell == "bash":
        text = "\n".join(value for value, _ in items)
    elif shell == "zsh":
        if not items:
            text = "_files"
        else:
            listed = "\n".join(
                f'"{_zsh(value)}":"{_zsh(help)}"' if help else f'"{_zsh(value)}"'
                for value, help in items
            )
            text = f"_arguments '*: :(({listed}))'"
    else:
        action = os.environ.get("_TYPER_COMPLETE_FISH_ACTION", "")
        if action == "is-args":
            return 0 if items else 1
        text = "\n".join(f"{value}\t{_one_line(help)}" if help else value for value, help in items)
    sys.stdout.write(text + "\n")
    return 0


def _one_line(text: str) -> str:
    return re.sub(r"\s", " ", text)


def _zsh(text: str) -> str:
    return (
        text.replace('"', '""')
        .replace("'", "''")
        .replace("$", "\\$")
        .replace("`", "\\`")
        .replace(":", r"\\:")
    )


def split_words(line: str) -> list[str]:
    """Words as the shell split them (click's `split_arg_string`)."""
    import shlex

    lex = shlex.shlex(line, posix=True)
    lex.whitespace_split = True
    lex.commenters = ""
    words: list[str] = []
    try:
        words.extend(lex)
    except ValueError:  # an open quote: keep the partial word
        words.append(lex.token)
    return words


# -- what to offer -------------------------------------------------------------------


def candidates(args: list[str], incomplete: str) -> list[Item]:
    """What click would offer after `args` for the word `incomplete`."""
    i = 0
    while i < len(args) and args[i].startswith("-"):
        # The app's own options (--version and the like), and -C/--log given before the verb.
        i += 2 if args[i] in GLOBAL_FLAGS else 1
    if i == len(args) or args[i] not in COMMANDS:
        return _group_items(None, incomplete)
    verb, rest = args[i], args[i + 1 :]
    module = load(verb)
    spec: Spec = module.SPEC
    if spec.subcommands:
        j = 0
        while j < len(rest) and rest[j].startswith("-"):
            j += 1
        if j == len(rest) or rest[j] not in spec.subcommands:
            return _group_items(spec, incomplete)
        spec, rest = spec.subcommands[rest[j]], rest[j + 1 :]
    return _command_items(spec, rest, args, incomplete)


def _is_option(word: str) -> bool:
    return word.startswith("-")  # as click decides it: an option prefix, even "-" alone


def _group_items(group: Spec | None, incomplete: str) -> list[Item]:
    """Command names (and, for a word starting with -, the group's options)."""
    if group is None:
        names = [(v, _short_help(e.help)) for v, e in COMMANDS.items() if not e.hidden]
        options = list(TOP_OPTIONS)
    else:
        names = [(n, _short_help(s.help)) for n, s in group.subcommands.items()]
        options = []
    items = [(name, help) for name, help in names if name.startswith(incomplete)]
    if incomplete and not incomplete[0].isalnum():
        items += [(flag, help) for flag, help in options if flag.startswith(incomplete)]
        items += [(flag, HELP_TEXT) for flag in HELP_FLAGS if flag.startswith(incomplete)]
    return items


def _command_items(spec: Spec, rest: list[str], args: list[str], incomplete: str) -> list[Item]:
    """click's `_resolve_incomplete`: an option name, an option's value, or an argument's."""
    given, filled = _parse(spec, rest)
    if incomplete == "=":
        incomplete = ""
    elif "=" in incomplete and _is_option(incomplete):
        name, _, incomplete = incomplete.partition("=")
        args = [*args, name]
    if "--" not in args and _is_option(incomplete):
        return _options(spec.options, given, incomplete)
    last = args[-1] if args else ""
    for opt in spec.options:
        if opt.takes_value and _is_option(last) and last in opt.flags:
            return _values(opt, args, incomplete)
    for arg in spec.arguments:
        if arg.many or arg.name not in filled:
            return _values(arg, args, incomplete)
    return _options(spec.options, given, incomplete)


def _options(options: list[Option], given: set[str], incomplete: str) -> list[Item]:
    """Option names starting with `incomplete`, but not those given already."""
    if not incomplete or incomplete[0].isalnum():
        return []
    items = []
    for opt in options:
        if opt.kind != "list" and opt.name in given:
            continue
        flags = [*opt.flags, *([opt.off] if opt.off else [])]
        items += [(flag, opt.help) for flag in flags if flag.startswith(incomplete)]
    return items + [(flag, HELP_TEXT) for flag in HELP_FLAGS if flag.startswith(incomplete)]


def _parse(spec: Spec, rest: list[str]) -> tuple[set[str], set[str]]:
    """The options given and the arguments filled in `rest`, read as leniently as click."""
    flags = {flag: opt for opt in spec.options for flag in (*opt.flags, opt.off) if flag}
    given: set[str] = set()
    positional: list[str] = []
    words = iter(rest)
    for word in words:
        if word == "--":
            positional += words
            break
        if not _is_option(word) or word == "-":
            positional.append(word)
            continue
        name, eq, _ = word.partition("=") if word.startswith("--") else (word, "", "")
        if name in flags:
            opt = flags[name]
            given.add(opt.name)
            if opt.takes_value and not eq:
                next(words, None)
        elif not word.startswith("--"):
            _short_cluster(word, flags, given, words)
    filled = {a.name for a, _ in zip(spec.arguments, positional, strict=False)}
    return given, filled


def _short_cluster(
    word: str, flags: dict[str, Option], given: set[str], words: Iterable[str]
) -> None:
    for k, char in enumerate(word[1:], 1):
        opt = flags.get(f"-{char}")
        if opt is None:
            continue
        given.add(opt.name)
        if opt.takes_value:
            if k == len(word) - 1:
                next(iter(words), None)
            return


def _values(param: Param, args: list[str], incomplete: str) -> list[Item]:
    path, log = _where(args)
    return [(value, "") for value in values(param, path, log, incomplete)]


def _where(args: list[str]) -> tuple[str | None, str | None]:
    """-C PATH and --log NAME among the words, so values come from that repository and log."""
    path = log = None
    for k, word in enumerate(args):
        following = args[k + 1] if k + 1 < len(args) else None
        if word == "-C":
            path = following
        elif word == "--log":
            log = following
        elif word.startswith("--log="):
            log = word.partition("=")[2]
    return path, log


# -- values from the repository ----------------------------------------------------------


def _short_help(text: str, limit: int = 45) -> str:
    """A help text cut to `limit` characters at a word, as click lists commands."""
    words = text.split()
    total = 0
    for i, word in enumerate(words):
        total += len(word) + (i > 0)
        if total > limit:
            break
        if word[-1] == ".":
            return " ".join(words[: i + 1])
        if total == limit and i != len(words) - 1:
            break
    else:
        return " ".join(words)
    total += len("...")
    while i > 0:
        total -= len(words[i]) + (i > 0)
        if total <= limit:
            break
        i -= 1
    return " ".join(words[:i]) + "..."

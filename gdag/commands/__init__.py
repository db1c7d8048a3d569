"""The commands: which module runs each verb, and how their arguments are declared.

Like pip's `commands_dict`, `COMMANDS` maps a verb to the module that runs it,
and only the invoked command's module is imported. Each module holds `SPEC`,
its arguments and options declared once as data, and the function `SPEC`
names, which takes every parameter as a keyword argument. Two parsers read
`SPEC`: the standard-library fast path in `gdag.main` (the usual forms of every
command) and the typer builder in `gdag.cli` (`--help`, usage errors, and
whatever the fast path leaves to it); `gdag.commands._complete` answers a
shell's Tab from it too.

A command module imports the core inside its function, not at its top, so
that reading its `SPEC` (for help or completion) costs next to nothing.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

# Kinds of option: flag (True when given), switch (a flag with an `off` flag for
# False), text, int, float (one value each), list (text, repeatable).
KINDS = ("flag", "switch", "text", "int", "float", "list")


class Required:
    """The default of a parameter that must be given."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = Required()


# Plain classes, not dataclasses: building a dataclass costs ~0.5 ms at import,
# and every start imports these.


class Option:
    __slots__ = (
        "name", "flags", "help", "kind", "metavar", "default", "choices", "minimum", "off",
        "envvar", "complete", "retired",
    )  # fmt: skip

    def __init__(
        self,
        name: str,  # the keyword argument of the command's function
        flags: tuple[str, ...],  # in the order help shows them
        help: str,
        kind: str = "flag",
        metavar: str | None = None,
        *,
        default: Any = None,  # a flag's is False
        choices: tuple[str, ...] = (),  # offered on Tab; the command itself checks them
        minimum: float | None = None,
        off: str | None = None,  # switch: the flag that sets it False
        envvar: str | None = None,
        complete: str | None = None,  # what Tab offers as values (see _values.SOURCES)
        retired: tuple[str, ...] = (),  # short forms it had once: refused with a hint
    ) -> None:
        assert kind in KINDS, kind
        assert (off is not None) == (kind == "switch"), name
        self.name, self.flags, self.help, self.kind, self.metavar = name, flags, help, kind, metavar
        self.default = False if kind == "flag" and default is None else default
        self.choices, self.minimum, self.off, self.envvar = choices, minimum, off, envvar
        self.complete, self.retired = complete, retired

    @property
    def takes_value(self) -> bool:
        return self.kind not in ("flag", "switch")

    @property
    def long(self) -> str:
        """The name messages use: the long flag, else the only one."""
        return next((f for f in self.flags if f.startswith("--")), self.flags[0])


class Argument:
    __slots__ = ("name", "help", "metavar", "default", "many", "complete")

    def __init__(
        self,
        name: str,
        help: str,
        metavar: str | None = None,
        *,
        default: Any = REQUIRED,
        many: bool = False,  # takes the rest of the positional arguments (comes last)
        complete: str | None = None,
    ) -> None:
        self.name, self.help, self.metavar, self.default = name, help, metavar, default
        self.many, self.complete = many, complete


Param = Option | Argument


class Spec:
    """A command's parameters in the order its help shows them, and its function."""

    __slots__ = ("params", "run", "help", "subcommands")

    def __init__(
        self,
        params: tuple[Param, ...] = (),
        *,
        run: str = "run",
        help: str = "",  # subcommands only: a top-level command's help is in COMMANDS
        subcommands: dict[str, Spec] | None = None,
    ) -> None:
        self.params, self.run, self.help = params, run, help
        self.subcommands = subcommands or {}

    @property
    def options(self) -> list[Option]:
        return [p for p in self.params if isinstance(p, Option)]

    @property
    def arguments(self) -> list[Argument]:
        return [p for p in self.params if isinstance(p, Argument)]


class Entry:
    __slots__ = ("module", "help", "hidden")

    def __init__(self, module: str, help: str, hidden: bool = False) -> None:
        self.module, self.help, self.hidden = module, help, hidden


def _entry(verb: str, help: str, hidden: bool = False) -> Entry:
    return Entry(f"gdag.commands.{verb}", help, hidden)


COMMANDS: dict[str, Entry] = {
    "init": _entry(
        "init", "Make the repository ready: a starter gdag.toml and the log's init event."
    ),
    "publish": _entry(
        "publish", "Append a new value of OUTPUT to the log, then run its subscribers."
    ),
    "lookup": _entry(
        "lookup", "Print the value of OUTPUT (byte-exact), or list the outputs a pattern matches."
    ),
    "run": _entry("run", "Run every stale node, in dependency order, until nothing is stale."),
    "replay": _entry(
        "replay",
        "Rebuild the log from OFFSET as if the current definition had always been in force.",
    ),
    "why": _entry("why", "Explain why NODE is stale, or why it last ran."),
    "graph": _entry("graph", "Draw the DAG of nodes and outputs, with their state."),
    "show": _entry(
        "show", "Show a session, a node's recent runs, or an output and where its value came from."
    ),
    "sync": _entry(
        "sync", "Exchange the log with a git remote: fetch theirs, push ours, nothing lost."
    ),
    "tick": _entry(
        "tick", "Publish every schedule tick that is due now, then run the ticks' subscribers."
    ),
    "schedules": _entry("schedules", "List the schedules: rule, last tick, next tick, due now."),
    "watch": _entry(
        "watch", "Run pending work as events arrive, until interrupted (follows the branch if set)."
    ),
    "doctor": _entry(
        "doctor",
        "Check gdag's store (objects, logs, leftovers of killed processes); repair what is safe.",
    ),
    "gc": _entry(
        "gc", "Prune the stored bytes of large values past the retention rules; keep the log."
    ),
    "check": _entry(
        "check", "Compile the definition and report problems; change nothing in the log."
    ),
    "status": _entry("status", "Show every node: up to date, stale (and why), running, failed."),
    "log": _entry("log", "List the log's events, newest first."),
    "metrics": _entry(
        "metrics", "Print the log's and the nodes' metrics in the Prometheus text format."
    ),
    "serve": _entry(
        "serve", "Serve a read-only web view of the log that follows it live, until interrupted."
    ),
    "hooks": _entry("hooks", "Install, remove or list gdag's git hooks."),
    "hook": _entry(
        "hook", "Run by the hook shims: publish the git event, then run its subscribers.", True
    ),
}


def load(verb: str) -> ModuleType:
    """The module of a command in COMMANDS."""
    return importlib.import_module(COMMANDS[verb].module)


def check_start(verb: str, kwargs: dict[str, Any]) -> None:
    """Refuse a `-C PATH` that names no directory, before the command does anything."""
    if kwargs.get("path") is not None:
        from gdag.commands._paths import start_dir

        start_dir(kwargs["path"], creates=verb == "init")


def spec_of(verb: str) -> Spec:
    spec: Spec = load(verb).SPEC
    return spec


# -- options many commands share ----------------------------------------------------

PATH = Option("path", ("-C",), "Run as if started in PATH (like git -C).", "text", "PATH")
LOG = Option(
    "log",
    ("--log",),
    "The log to use (default: main, or $GDAG_LOG).",
    "text",
    "NAME",
    envvar="GDAG_LOG",
    complete="log",
)
JSON = Option("json_out", ("--json",), "Machine-readable JSON on stdout.")
CLUSTER = Option(
    "cluster",
    ("--cluster",),
    "Run node jobs on the Dask cluster at ADDRESS (default: $GDAG_CLUSTER).",
    "text",
    "ADDRESS",
)


def cluster_and_jobs(
    cluster: str | None, jobs: int | None, default: int = 0
) -> tuple[str | None, int]:
    """The cluster a run sends jobs to (`--cluster`, else $GDAG_CLUSTER) and how many
    run at once: `-j`, else 0 with a cluster (its slots), else `default` (0: CPUs)."""
    import os

    cluster = cluster or os.environ.get("GDAG_CLUSTER") or None
    return cluster, jobs or (0 if cluster else default or os.cpu_count() or 1)


JOBS = Option("jobs", ("--jobs", "-j"), "Parallel nodes (default: CPUs).", "int", "N", minimum=1)
QUIET = Option("quiet", ("--quiet", "-q"), "No progress output.")
# Global options: also accepted before the command (`gdag -C repo log`), as with git.
GLOBAL_FLAGS = ("-C", "--log")

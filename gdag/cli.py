"""The typer app: every command, thin — parse, call the core, render."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from gdag import __version__, commands
from gdag.errors import EXIT_INTERRUPTED, EXIT_USAGE
from gdag.workspace import Workspace

app = typer.Typer(
    name="gdag",
    help="A git-native reactive dataflow engine: publish values, run nodes, keep every result.",
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

PathOpt = Annotated[
    str | None,
    typer.Option("-C", metavar="PATH", help="Run as if started in PATH (like git -C)."),
]
LogOpt = Annotated[
    str | None,
    typer.Option(
        "--log",
        metavar="NAME",
        envvar="GDAG_LOG",
        help="The log to use (default: main, or $GDAG_LOG).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]


def _version(value: bool) -> None:
    if value:
        print(f"gdag {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """A git-native reactive dataflow engine."""


@app.command()
def init(
    private: Annotated[
        bool,
        typer.Option(
            "--private", help="Keep gdag's refs and objects in a private store inside .git."
        ),
    ] = False,
    path: PathOpt = None,
    log: LogOpt = None,
    json_out: JsonOpt = False,
) -> int:
    """Make the repository ready: a starter gdag.toml and the log's init event."""
    _, res = Workspace.init(path, log, private)
    if json_out:
        commands.print_json(res.__dict__)
        return 0
    lines = []
    if res.created_repository:
        lines.append(f"created git repository {res.root}")
    if res.wrote_definition:
        lines.append("wrote starter gdag.toml")
    lines += res.notes
    if res.created_log:
        lines.append(f"created log {res.log} (refs/gdag/logs/{res.log}) at offset 0")
    if not lines:
        lines.append(
            f"already initialised: log {res.log} is at offset {res.offset}; nothing changed"
        )
    commands.out("".join(f"{line}\n" for line in lines).encode())
    return 0


@app.command()
def publish(
    output: Annotated[str, typer.Argument(help="The output to publish to, e.g. photos/new.")],
    value: Annotated[
        str | None, typer.Argument(help="The value; '-' reads standard input.")
    ] = None,
    file: Annotated[
        str | None, typer.Option("--file", "-f", metavar="PATH", help="Read the value from a file.")
    ] = None,
    directory: Annotated[
        str | None,
        typer.Option("--dir", metavar="PATH", help="Publish a directory (stored as a git tree)."),
    ] = None,
    type_: Annotated[
        str | None,
        typer.Option(
            "--type", "-t", metavar="TYPE", help="The output's type (it sticks once set)."
        ),
    ] = None,
    if_changed: Annotated[
        bool, typer.Option("--if-changed", help="Append nothing if the value is unchanged.")
    ] = False,
    json_out: JsonOpt = False,
    no_run: Annotated[
        bool, typer.Option("--no-run", help="Do not run the subscribers of OUTPUT.")
    ] = False,
    detach: Annotated[
        bool, typer.Option("--detach", help="Run the subscribers in a background process.")
    ] = False,
    path: PathOpt = None,
    log: LogOpt = None,
) -> int:
    """Append a new value of OUTPUT to the log, then run its subscribers."""
    return commands.publish(
        output,
        value,
        file=file,
        directory=directory,
        type_=type_,
        if_changed=if_changed,
        json_out=json_out,
        no_run=no_run,
        detach=detach,
        path=path,
        log=log,
    )


@app.command()
def lookup(
    output: Annotated[str, typer.Argument(help="An output, or a pattern such as 'thumbs/*'.")],
    at: Annotated[
        str | None,
        typer.Option("--at", metavar="OFFSET", help="Read at an offset (N, -N or a commit id)."),
    ] = None,
    meta: Annotated[bool, typer.Option("--meta", help="Show the value's metadata.")] = False,
    json_out: JsonOpt = False,
    out_path: Annotated[
        str | None, typer.Option("-o", "--out", metavar="PATH", help="Write the value to PATH.")
    ] = None,
    path: PathOpt = None,
    log: LogOpt = None,
) -> int:
    """Print the value of OUTPUT (byte-exact), or list the outputs a pattern matches."""
    return commands.lookup(
        output, at=at, meta=meta, json_out=json_out, out_path=out_path, path=path, log=log
    )


@app.command()
def run(
    targets: Annotated[
        list[str] | None,
        typer.Argument(metavar="[NODE|OUTPUT]...", help="Only what these nodes/outputs reach."),
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option("--jobs", "-j", min=1, metavar="N", help="Parallel nodes (default: CPUs)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", "-n", help="Show what would run; run nothing.")
    ] = False,
    keep_going: Annotated[
        bool,
        typer.Option(
            "--keep-going/--fail-fast",
            "-k",
            help="After a failure, go on with independent nodes (default) or stop.",
        ),
    ] = True,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Run failed nodes again on the same inputs.")
    ] = False,
    speculative: Annotated[
        bool,
        typer.Option(
            "--speculative", help="Start subscribers on outputs a running node advises early."
        ),
    ] = False,
    remote: Annotated[
        str | None,
        typer.Option(
            "--remote",
            metavar="REMOTE",
            help="Work on the log of a shared git remote (leases and merges by push).",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    json_out: JsonOpt = False,
    path: PathOpt = None,
    log: LogOpt = None,
) -> int:
    """Run every stale node, in dependency order, until nothing is stale."""
    return commands.run(
        targets,
        jobs=jobs,
        dry_run=dry_run,
        keep_going=keep_going,
        retry_failed=retry_failed,
        speculative=speculative,
        remote=remote,
        quiet=quiet,
        json_out=json_out,
        path=path,
        log=log,
    )


@app.command()
def replay(
    from_: Annotated[
        str,
        typer.Option(
            "--from",
            metavar="OFFSET",
            help="Replay the external publish events from this offset on.",
        ),
    ],
    to: Annotated[
        str | None,
        typer.Option("--to", metavar="OFFSET", help="Stop after this offset (needs --onto)."),
    ] = None,
    onto: Annotated[
        str | None,
        typer.Option("--onto", metavar="LOG", help="Write the result to a new log (a what-if)."),
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option("--only", metavar="NODE", help="Run only these nodes and what they reach."),
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option("--jobs", "-j", min=1, metavar="N", help="Parallel nodes (default: CPUs)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List the events it would replay; change nothing.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    json_out: JsonOpt = False,
    path: PathOpt = None,
    log: LogOpt = None,
) -> int:
    """Rebuild the log from OFFSET as if the current definition had always been in force."""
    import os

    from gdag.progress import ReplayView
    from gdag.replay import Replay

    ws = Workspace.open(path, log)
    view = ReplayView(quiet=quiet or json_out)
    result = Replay(ws, jobs or os.cpu_count() or 1, view).run(
        from_, to, onto, only or None, dry_run
    )
    view.close(result, dry_run)
    if json_out:
        commands.print_json(result.to_json())
    return 1 if result.failed else 0


@app.command()
def why(
    node: Annotated[str, typer.Argument(help="The node to explain.")],
    json_out: JsonOpt = False,
    path: PathOpt = None,
    log: LogOpt = None,
) -> int:
    """Explain why NODE is stale, or why it last ran."""
    from gdag.runner import Engine

    ws = Workspace.open(path, log)
    info = Engine(ws).why(node)
    if json_out:
        commands.print_json(info)
        return 0
    lines = [f"{node}: {info['state']}" + (f" ({info['reason']})" if info["reason"] else "")]
    last = info.get("last") or {}
    if last:
        lines.append(
            f"last session: {last.get('session')} {last.get('status')} "
            f"at offset {last.get('offset')}"
            + (f", cache hit of {last['cached']}" if last.get("cached") else "")
        )
        for name, version in sorted((last.get("inputs") or {}).items()):
            now = info["current"].get(name)
            mark = "" if now == version else f"  (now v{now})" if now else "  (now absent)"
            lines.append(f"  consumed {name} v{version}{mark}")
    for name in sorted(set(info["current"]) - set(last.get("inputs") or {})):
        lines.append(f"  new input {name} v{info['current'][name]}")
    commands.out("".join(f"{line}\n" for line in lines).encode())
    return 0


FORMATS = ("tree", "dot", "mermaid", "json", "svg", "png", "html")


@app.command()
def graph(
    format_: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            metavar="FORMAT",
            help="tree (default on a terminal), dot, mermaid, json, svg, png, html.",
        ),
    ] = None,
    start: Annotated[
        str | None, typer.Option("--from", metavar="X", help="Only what X reaches.")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", metavar="X", help="Only what reaches X.")
    ] = None,
    with_state: Annotated[
        bool, typer.Option("--state/--no-state", help="Show states, versions and values.")
    ] = True,
    output: Annotated[
        str | None, typer.Option("-o", "--out", metavar="FILE", help="Write to FILE.")
    ] = None,
    path: PathOpt = None,
    log: LogOpt = None,
) -> int:
    """Draw the DAG of nodes and outputs, with their state."""
    from gdag import graphview

    fmt = format_ or ("tree" if sys.stdout.isatty() and output is None else "dot")
    if fmt not in FORMATS:
        from gdag.errors import UsageError

        raise UsageError(f"unknown format {fmt!r}", hint="formats: " + ", ".join(FORMATS))
    ws = Workspace.open(path, log)
    model = graphview.build_model(ws, start, end, with_state)
    if fmt == "tree":
        from gdag.render import graph_tree

        if output is None:
            graph_tree(model)
        else:
            with open(output, "w") as f:
                graph_tree(model, f)
        return 0
    if fmt in ("svg", "png"):
        data = graphview.render_with_graphviz(graphview.to_dot(model), fmt)
    else:
        render = {
            "dot": graphview.to_dot,
            "mermaid": graphview.to_mermaid,
            "json": graphview.to_json,
            "html": graphview.to_html,
        }[fmt]
        data = render(model).encode()
    if output is None:
        commands.out(data)
    else:
        from pathlib import Path

        Path(output).write_bytes(data)
    return 0


@app.command()
def show(
    what: Annotated[str, typer.Argument(metavar="SESSION|NODE|OUTPUT", help="What to show.")],
    depth: Annotated[
        int, typer.Option("--depth", min=0, metavar="N", help="Provenance steps back (outputs).")
    ] = 3,
    json_out: JsonOpt = False,
    path: PathOpt = None,
    log: LogOpt = None,
) -> int:
    """Show a session, a node's recent runs, or an output and where its value came from."""
    from gdag.provenance import show as show_what
    from gdag.render import print_shown

    ws = Workspace.open(path, log)
    info = show_what(ws, what, depth)
    if json_out:
        commands.print_json(info)
    else:
        print_shown(info)
    return 0


@app.command()
def sync(
    remote: Annotated[
        str, typer.Argument(metavar="[REMOTE]", help="A git remote name, URL or path.")
    ] = "origin",
    json_out: JsonOpt = False,
    path: PathOpt = None,
    log: LogOpt = None,
) -> int:
    """Exchange the log with a git remote: fetch theirs, push ours, nothing lost."""
    from gdag.remote import Remote, sync_log

    ws = Workspace.open(path, log)
    result = sync_log(Remote(ws.store, remote), ws.log)
    if json_out:
        commands.print_json(result.to_json())
        return 0
    text = {
        "up-to-date": "up to date",
        "pushed": f"pushed {result.pushed} events",
        "fast-forward": f"fetched {result.fetched} events",
        "adopted": f"adopted the remote's log ({result.fetched} events)",
        "replayed": f"re-applied {result.pushed} local events onto the remote's log",
    }[result.action]
    if result.archive:
        text += f"; the local chain is kept at {result.archive}"
    commands.out(f"{ws.log.name}: {text}\n".encode())
    return 0


@app.command()
def watch(
    interval: Annotated[
        float,
        typer.Option("--interval", min=0.05, metavar="S", help="Seconds between checks."),
    ] = 0.5,
    jobs: Annotated[
        int | None,
        typer.Option("--jobs", "-j", min=1, metavar="N", help="Parallel nodes (default: CPUs)."),
    ] = None,
    remote: Annotated[
        str | None,
        typer.Option("--remote", metavar="REMOTE", help="Sync with and work for a git remote."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    path: PathOpt = None,
    log: LogOpt = None,
) -> int:
    """Run pending work as events arrive, until interrupted (follows the branch if set)."""
    import os

    from gdag.progress import RunView
    from gdag.watch import Watcher

    view = RunView(quiet=quiet)
    watcher = Watcher(path, log, jobs or os.cpu_count() or 1, view, interval, remote)
    if not quiet:
        where = watcher.store.workdir or watcher.store.gitdir
        view.emit([(f"watching {where} every {interval:g}s; Ctrl-C stops", "dim")])
    try:
        watcher.loop()
    except KeyboardInterrupt:
        view.stop()
        if not quiet:
            view.emit([("stopped", "dim")])
    return 0


hooks_app = typer.Typer(help="Install, remove or list gdag's git hooks.", no_args_is_help=True)
app.add_typer(hooks_app, name="hooks")
HookOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--hook",
        metavar="NAME",
        help="Only this hook (post-commit, post-merge, post-checkout, post-rewrite).",
    ),
]


def _print_hooks(states: list, json_out: bool) -> int:
    if json_out:
        commands.print_json([h.to_json() for h in states])
    else:
        commands.out("".join(f"{h.name:<14} {h.state:<13} {h.path}\n" for h in states).encode())
    return 0


@hooks_app.command("install")
def hooks_install(hook: HookOpt = None, json_out: JsonOpt = False, path: PathOpt = None) -> int:
    """Install hooks that publish git/commit, git/merge, git/checkout, git/rewrite."""
    from gdag import hooks

    return _print_hooks(hooks.install(Workspace.open(path).store, hook), json_out)


@hooks_app.command("uninstall")
def hooks_uninstall(hook: HookOpt = None, json_out: JsonOpt = False, path: PathOpt = None) -> int:
    """Remove gdag's hooks, putting back any hook they chained."""
    from gdag import hooks

    return _print_hooks(hooks.uninstall(Workspace.open(path).store, hook), json_out)


@hooks_app.command("list")
def hooks_list(json_out: JsonOpt = False, path: PathOpt = None) -> int:
    """Show each hook: gdag's, gdag's chaining a foreign one, foreign, or absent."""
    from gdag import hooks

    return _print_hooks(hooks.status(Workspace.open(path).store), json_out)


@app.command("hook", hidden=True)
def hook_cmd(
    name: Annotated[str, typer.Argument(help="The git hook being run.")],
    args: Annotated[list[str] | None, typer.Argument(help="Git's arguments to it.")] = None,
    path: PathOpt = None,
) -> int:
    """Run by the hook shims: publish the git event, then run its subscribers."""
    from gdag import hooks

    if name not in hooks.HOOKS:
        from gdag.errors import UsageError

        raise UsageError(f"gdag has no {name!r} hook")
    return hooks.run_hook(path, name, args or [])


@app.command()
def doctor(
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Repair what is safe: leftovers of killed processes; pack loose objects.",
        ),
    ] = False,
    json_out: JsonOpt = False,
    path: PathOpt = None,
    log: LogOpt = None,
) -> int:
    """Check gdag's store (objects, logs, leftovers of killed processes); repair what is safe."""
    from gdag.doctor import examine

    ws = Workspace.open(path, log)
    findings = examine(ws, repair)
    if json_out:
        commands.print_json([f.to_json() for f in findings])
    else:
        for f in findings:
            sys.stderr.write(
                f"{f.severity}: {f.what}\n" + (f"  hint: {f.hint}\n" if f.hint else "")
            )
        if not findings:
            sys.stderr.write("no problems found\n")
    return 3 if any(f.severity == "error" for f in findings) else 0


@app.command()
def check(
    stubs: Annotated[
        str | None,
        typer.Option(
            "--stubs",
            metavar="PATH",
            help="Also write typed input containers (a Python module) to PATH.",
        ),
    ] = None,
    json_out: JsonOpt = False,
    path: PathOpt = None,
    log: LogOpt = None,
) -> int:
    """Compile the definition and report problems; change nothing in the log."""
    from pathlib import Path

    from gdag.definition import compile_definition

    ws = Workspace.open(path, log)
    src = ws.definition_source()
    if stubs is not None:
        from gdag.stubs import render_stubs

        # Written before Python nodes are imported: they may import the stubs themselves.
        Path(stubs).write_text(render_stubs(compile_definition(src, load_python=False)))
    dag = compile_definition(src)
    summary = {"ok": True, "nodes": len(dag.nodes), "outputs": len(dag.outputs)}
    if json_out:
        commands.print_json(summary)
    else:
        commands.out(
            f"ok: {summary['nodes']} nodes, {summary['outputs']} declared outputs\n".encode()
        )
    return 0


@app.command()
def status(json_out: JsonOpt = False, path: PathOpt = None, log: LogOpt = None) -> int:
    """Show every node: up to date, stale (and why), running, failed."""
    from gdag.runner import Engine

    ws = Workspace.open(path, log)
    states = Engine(ws).status()
    from gdag.hooks import recent_errors

    for line in recent_errors(ws.store):
        sys.stderr.write(f"gdag: warning: hook failed: {line}\n")
    if json_out:
        commands.print_json([s.to_json() for s in states])
        return 0
    from gdag.render import print_status

    print_status(states)
    return 0


@app.command("log")
def log_cmd(
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", min=1, metavar="N", help="Show at most N events.")
    ] = None,
    output: Annotated[
        str | None,
        typer.Option("--output", metavar="NAME", help="Only events that changed this output."),
    ] = None,
    node: Annotated[
        str | None, typer.Option("--node", metavar="NODE", help="Only sessions of this node.")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            metavar="WHEN",
            help="Only events since a time: ISO date/time, or 30m, 2h, 7d ago.",
        ),
    ] = None,
    graph: Annotated[
        bool, typer.Option("--graph", help="Show each session's own commits under it.")
    ] = False,
    json_out: JsonOpt = False,
    path: PathOpt = None,
    log: LogOpt = None,
) -> int:
    """List the log's events, newest first."""
    from gdag.log import select_events
    from gdag.workspace import now_iso

    ws = Workspace.open(path, log)
    shown = select_events(ws.log, limit=limit, output=output, node=node, since=since)
    if json_out:
        commands.print_json([e.to_json() for e in shown])
        return 0
    lines = []
    for e in shown:
        who = e.first("Gdag-Node")
        what = (f"{who} {e.first('Gdag-Status') or ''} -> " if who else "") + (
            " ".join(e.outputs) or ("" if who else e.summary)
        )
        lines.append(f"{e.offset:>6}  {e.kind:<8} {now_iso(e.time)}  {what.strip()}")
        if graph and e.kind == "session":
            from gdag.provenance import session_branch

            parents = ws.store.read_commit(e.sha).parents
            if len(parents) > 1:
                lines += [f"{'':>6}  | {subject}" for subject in session_branch(ws, parents[1])]
    commands.out("".join(f"{line}\n" for line in lines).encode())
    return 0


def run_app(argv: list[str]) -> int:
    """Run the typer app on `argv`, mapping its outcomes to gdag's exit statuses."""
    cmd = typer.main.get_command(app)
    try:
        result = cmd.main(args=argv or ["--help"], prog_name="gdag", standalone_mode=False)
    except typer.TyperException as exc:
        sys.stderr.write(f"gdag: error: {exc.format_message()}\n")
        ctx = getattr(exc, "ctx", None)
        if exc.exit_code == EXIT_USAGE:
            sys.stderr.write(f"hint: see `{ctx.command_path if ctx else 'gdag'} --help`\n")
        return exc.exit_code
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        sys.stderr.write("gdag: interrupted\n")
        return EXIT_INTERRUPTED
    return int(result or 0)

"""`gdag publish`: append a value to the log, then run the output's subscribers."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from gdag.commands import CLUSTER, JSON, LOG, PATH, Argument, Option, Spec, cluster_and_jobs
from gdag.errors import UsageError
from gdag.output import out, print_json

if TYPE_CHECKING:
    from gdag.workspace import ValueSource, Workspace

SPEC = Spec(
    (
        Argument(
            "output", "The output to publish to, e.g. photos/new.", complete="output-or-declared"
        ),
        Argument("value", "The value; '-' reads standard input.", default=None),
        Option("file", ("--file", "-f"), "Read the value from a file.", "text", "PATH"),
        Option(
            "directory", ("--dir",), "Publish a directory (stored as a git tree).", "text", "PATH"
        ),
        Option(
            "type_", ("--type", "-t"), "The output's type (it sticks once set).", "text", "TYPE"
        ),
        Option("if_changed", ("--if-changed",), "Append nothing if the value is unchanged."),
        JSON,
        Option("no_run", ("--no-run",), "Do not run the subscribers of OUTPUT."),
        Option("detach", ("--detach",), "Run the subscribers in a background process."),
        CLUSTER,
        PATH,
        LOG,
    )
)


def run(
    *,
    output: str,
    value: str | None,
    file: str | None,
    directory: str | None,
    type_: str | None,
    if_changed: bool,
    json_out: bool,
    no_run: bool,
    detach: bool,
    cluster: str | None,
    path: str | None,
    log: str | None,
) -> int:
    from gdag.workspace import Workspace

    source = value_source(value, file, directory, path)
    if path is None and _in_job_without_repository():
        return _publish_into_job(output, source, json_out)
    ws = Workspace.open(path, log)
    result = ws.publish(output, source, type_, if_changed)
    if json_out:
        print_json(result.to_json())
    elif result.session:
        out(f"{result.output} (in session {result.session})\n".encode())
    else:
        state = "" if result.changed else " (unchanged)"
        out(f"{result.output} v{result.version} @ {result.offset}{state}\n".encode())
    if no_run or result.session or not result.changed or not has_subscribers(ws, output):
        return 0
    from gdag.commands.run import run_detached, run_nodes

    if detach:
        run_detached(ws, [output], cluster)
        return 0

    cluster, jobs = cluster_and_jobs(cluster, None, default=1)
    return run_nodes(ws, [output], jobs=jobs, quiet=json_out, cluster=cluster)


def value_source(
    value: str | None, file: str | None, directory: str | None, start: str | None = None
) -> ValueSource:
    """Where the value comes from; a file or directory is read from `-C start`."""
    import os

    from gdag.workspace import ValueSource

    given = [x for x in (value, file, directory) if x is not None]
    if len(given) != 1:
        raise UsageError(
            "give exactly one value"
            + (": " if given else "")
            + ", ".join(
                n for n, x in (("VALUE", value), ("--file", file), ("--dir", directory)) if x
            ),
            hint="gdag publish OUTPUT VALUE | --file PATH | --dir PATH | - (stdin)",
        )
    if value == "-" or file == "-":
        return ValueSource(stream=sys.stdin.buffer)
    if value is not None:
        return ValueSource(data=os.fsencode(value))
    from gdag.commands import _paths

    if file is not None:
        return ValueSource(file=_paths.readable_file(start, file))
    return ValueSource(directory=_paths.readable_dir(start, directory or "."))


def has_subscribers(ws: Workspace, output: str) -> bool:
    """Whether any node subscribes to `output` (checked without the graph library)."""
    from gdag.state import read_dag

    dag = read_dag(ws.store, ws.store.read_commit(ws.log.require_tip()).tree)
    return dag is not None and bool(dag.subscribers(output))


def _in_job_without_repository() -> bool:
    """Inside a node's job on a machine without the repository (a cluster worker)."""
    import os

    env = os.environ
    return bool(env.get("GDAG_SESSION") and env.get("GDAG_OUT")) and "GDAG_REPO" not in env


def _publish_into_job(output: str, source: ValueSource, json_out: bool) -> int:
    """`gdag publish` in a node's job without a repository: the value becomes a file (or
    directory) under `$GDAG_OUT`, which the coordinator records like any other output."""
    import os
    import shutil
    from pathlib import Path

    from gdag.names import check_output_name

    check_output_name(output)
    target = Path(os.environ["GDAG_OUT"], *output.split("/"))
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.directory is not None:
        shutil.copytree(source.directory, target, symlinks=True, dirs_exist_ok=True)
    elif source.file is not None:
        shutil.copyfile(source.file, target)
    elif source.stream is not None:
        with open(target, "wb") as f:
            shutil.copyfileobj(source.stream, f)
    else:
        target.write_bytes(source.data or b"")
    session = os.environ["GDAG_SESSION"]
    if json_out:
        print_json({"output": output, "session": session, "changed": True})
    else:
        out(f"{output} (in session {session})\n".encode())
    return 0

"""`gdag sync`: exchange the log with a git remote, nothing lost on either side."""

from __future__ import annotations

from gdag.commands import JSON, LOG, PATH, Argument, Spec
from gdag.output import out, print_json

SPEC = Spec(
    (
        Argument("remote", "A git remote name, URL or path.", metavar="[REMOTE]", default="origin"),
        JSON,
        PATH,
        LOG,
    )
)


def run(*, remote: str, json_out: bool, path: str | None, log: str | None) -> int:
    from gdag.remote import Remote, sync_log
    from gdag.workspace import Workspace

    ws = Workspace.open(path, log)
    result = sync_log(Remote(ws.store, remote, path), ws.log)
    if json_out:
        print_json(result.to_json())
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
    if result.large:
        text += f"; sent {result.large} large value(s) first"
    out(f"{ws.log.name}: {text}\n".encode())
    return 0

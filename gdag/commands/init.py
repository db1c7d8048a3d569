"""`gdag init`: a repository ready for gdag, with a starter gdag.toml and the log."""

from __future__ import annotations

from gdag.commands import JSON, LOG, PATH, Option, Spec
from gdag.output import out_lines, print_json

SPEC = Spec(
    (
        Option(
            "private",
            ("--private",),
            "Keep gdag's refs and objects in a private store inside .git.",
        ),
        PATH,
        LOG,
        JSON,
    )
)


def run(*, private: bool, path: str | None, log: str | None, json_out: bool) -> int:
    from gdag.workspace import Workspace

    _, res = Workspace.init(path, log, private)
    if json_out:
        print_json(res.__dict__)
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
    out_lines(lines)
    return 0

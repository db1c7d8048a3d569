"""`gdag doctor`: check gdag's store and repair what is safe."""

from __future__ import annotations

import sys

from gdag.commands import JSON, LOG, PATH, Option, Spec
from gdag.errors import EXIT_REFUSED
from gdag.output import print_json

SPEC = Spec(
    (
        Option(
            "repair",
            ("--repair",),
            "Repair what is safe: leftovers of killed processes; pack loose objects.",
        ),
        JSON,
        PATH,
        LOG,
    )
)


def run(*, repair: bool, json_out: bool, path: str | None, log: str | None) -> int:
    import os

    from gdag.doctor import examine
    from gdag.workspace import Workspace

    ws = Workspace.open(path, log)
    if log is not None or os.environ.get("GDAG_LOG"):
        ws.log.require_tip()  # a log named that does not exist is refused, not examined
    findings = examine(ws, repair)
    if json_out:
        print_json([f.to_json() for f in findings])
    else:
        for f in findings:
            sys.stderr.write(
                f"{f.severity}: {f.what}\n" + (f"  hint: {f.hint}\n" if f.hint else "")
            )
        if not findings:
            sys.stderr.write("no problems found\n")
    return EXIT_REFUSED if any(f.severity == "error" for f in findings) else 0

"""`gdag check`: compile the definition and report problems; the log is left alone."""

from __future__ import annotations

from gdag.commands import JSON, LOG, PATH, Option, Spec
from gdag.output import out, print_json

SPEC = Spec(
    (
        Option(
            "stubs",
            ("--stubs",),
            "Also write typed input containers (a Python module) to PATH.",
            "text",
            "PATH",
        ),
        JSON,
        PATH,
        LOG,
    )
)


def run(*, stubs: str | None, json_out: bool, path: str | None, log: str | None) -> int:
    from gdag.commands._paths import writable_file
    from gdag.definition import compile_definition
    from gdag.workspace import Workspace

    target = writable_file(path, stubs) if stubs is not None else None
    src = Workspace.open(path, log).definition_source()
    if target is not None:
        from gdag.stubs import render_stubs

        # Written before Python nodes are imported: they may import the stubs themselves.
        target.write_text(render_stubs(compile_definition(src, load_python=False)))
    dag = compile_definition(src)
    summary = {"ok": True, "nodes": len(dag.nodes), "outputs": len(dag.outputs)}
    if json_out:
        print_json(summary)
    else:
        out(f"ok: {summary['nodes']} nodes, {summary['outputs']} declared outputs\n".encode())
    return 0

"""`gdag serve`: a read-only, live web view of the log, until interrupted."""

from __future__ import annotations

from gdag.commands import LOG, PATH, Option, Spec

SPEC = Spec(
    (
        Option(
            "host",
            ("--host",),
            "The address to listen on; anything but loopback needs the printed token.",
            "text",
            "ADDRESS",
            default="127.0.0.1",
        ),
        Option("port", ("--port",), "The port; 0 picks a free one.", "int", "N", default=8765),
        Option("open_browser", ("--open",), "Open the page in a web browser."),
        PATH,
        LOG,
    )
)


def run(*, host: str, port: int, open_browser: bool, path: str | None, log: str | None) -> int:
    import sys

    from gdag.errors import UsageError
    from gdag.output import out
    from gdag.serve import Server, check_host, serve
    from gdag.workspace import Workspace

    if not 0 <= port <= 65535:
        raise UsageError(f"--port must be 0..65535, not {port}")
    ws = Workspace.open(path, log)
    ws.log.require_tip()
    server = Server(check_host(host), port, path, ws.log.name)

    def ready(url: str) -> None:
        out(f"{url}\n".encode())
        if server.token is not None:
            sys.stderr.write(
                f"gdag: note: serving on {host}, beyond this machine: the page needs the token"
                " in this URL; anyone with it can read every value in the log\n"
            )

    try:
        serve(server, open_browser, ready)
    except KeyboardInterrupt:
        pass
    return 0

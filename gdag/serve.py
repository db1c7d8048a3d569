"""`gdag serve`: a read-only, live web view of a log over HTTP, from the standard library.

`http.server.ThreadingHTTPServer` answers the page (`servepage`), JSON views of
the log, values (a download is streamed from the store), `/metrics`, and
`/events`, a server-sent event stream that says "changed" whenever the log's
tip or the set of sessions in flight moves (polled every 0.2 s), so the page
redraws within a second of a publish, a session starting or a merge. Every
request opens its own `Workspace` (the stores' caches are not shared between
threads). Nothing is written.

A loopback server answers only requests whose `Host` is a loopback name (a web
page elsewhere cannot rebind a name to it); any other address needs a token,
printed in the URL, on every request.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from gdag import metrics, servepage, trailers
from gdag.errors import GdagError, UnknownError
from gdag.workspace import Workspace

POLL = 0.2  # seconds between two looks at the log for /events
KEEPALIVE = 10.0  # seconds between comments on an idle event stream
PREVIEW_BYTES = 64 * 1024
GRID_EVENTS = 100
LIST_LIMIT = 200
SESSION_SCAN = 10_000  # events read back for the sessions of every node
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Server(ThreadingHTTPServer):
    daemon_threads = True  # event streams end with the process

    def __init__(self, host: str, port: int, start: str | None, log: str) -> None:
        self.start, self.log = start, log
        self.token = None if is_loopback(host) else secrets.token_urlsafe(18)
        self.stats_lock = threading.Lock()
        self.stats: metrics.LogStats | None = None
        family = ipaddress.ip_address(host).version if host != "localhost" else 4
        if family == 6:
            import socket

            self.address_family = socket.AF_INET6
        try:
            super().__init__((host, port), Handler)
        except OSError as exc:
            raise GdagError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                hint="choose another --port, or --port 0 for a free one",
            ) from None

    @property
    def url(self) -> str:
        host, port = str(self.server_address[0]), self.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/" + (f"?token={self.token}" if self.token else "")

    def workspace(self) -> Workspace:
        return Workspace.open(self.start, self.log)

    def metrics_text(self) -> str:
        with self.stats_lock:
            ws = self.workspace()
            if self.stats is None:
                self.stats = metrics.LogStats(ws.log)
            self.stats.log = ws.log
            return metrics.collect(ws, self.stats)


def check_host(host: str) -> str:
    """The address to bind: an IP address or `localhost`."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise GdagError(
            f"--host must be an IP address, not {host!r}",
            hint="127.0.0.1 (the default) serves this machine only; 0.0.0.0 every interface",
        ) from None
    return host


class Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a quiet server: the URL is all it prints

    # -- routing ---------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if not self._allowed(query):
            return
        route = ROUTES.get(parts.path)
        if route is None:
            return self._json({"error": f"no such page: {parts.path}"}, 404)
        try:
            route(self, query)
        except GdagError as exc:
            status = 404 if isinstance(exc, UnknownError) else 400
            self._json({"error": exc.message, "hint": exc.hint}, status)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_HEAD(self) -> None:  # noqa: N802
        self._refuse_method()

    def do_POST(self) -> None:  # noqa: N802
        self._refuse_method()

    do_PUT = do_DELETE = do_PATCH = do_POST  # noqa: N815

    def _refuse_method(self) -> None:
        self._send(405, b"read-only: GET only\n", "text/plain", {"Allow": "GET"})

    def _allowed(self, query: dict[str, str]) -> bool:
        if self.server.token is not None:
            given = query.get("token", "")
            if not secrets.compare_digest(given, self.server.token):
                self._send(
                    403, b"a token is needed: open the URL gdag serve printed\n", "text/plain"
                )
                return False
            return True
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
        if not is_loopback(host):
            self._send(403, b"this server answers loopback names only\n", "text/plain")
            return False
        return True

    # -- answers ---------------------------------------------------------------------

    def _send(
        self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, doc: Any, status: int = 200) -> None:
        body = json.dumps(doc, ensure_ascii=False, sort_keys=True).encode()
        self._send(status, body, "application/json; charset=utf-8")

    def page(self, query: dict[str, str]) -> None:
        self._send(
            200,
            servepage.PAGE.encode(),
            "text/html; charset=utf-8",
            {"Content-Security-Policy": CSP},
        )

    def script(self, query: dict[str, str]) -> None:
        self._send(200, servepage.SCRIPT.encode(), "text/javascript; charset=utf-8")

    def icon(self, query: dict[str, str]) -> None:
        self._send(200, servepage.ICON.encode(), "image/svg+xml")

    def style(self, query: dict[str, str]) -> None:
        self._send(200, servepage.CSS.encode(), "text/css; charset=utf-8")

    def metrics(self, query: dict[str, str]) -> None:
        text = self.server.metrics_text().encode()
        self._send(200, text, "text/plain; version=0.0.4; charset=utf-8")

    def graph(self, query: dict[str, str]) -> None:
        from gdag import graphview

        model = graphview.build_model(self.server.workspace())
        svg, width, height = graphview.to_svg(model)
        vertices = {v["id"]: v for v in model["vertices"]}
        self._json(
            {"log": model["log"], "offset": model["offset"], "svg": svg, "width": width}
            | {"height": height, "vertices": vertices}
        )

    def outputs(self, query: dict[str, str]) -> None:
        self._json(output_grid(self.server.workspace()))

    def sessions(self, query: dict[str, str]) -> None:
        self._json(session_list(self.server.workspace(), query.get("node") or None))

    def session(self, query: dict[str, str]) -> None:
        from gdag.provenance import show_session

        ws = self.server.workspace()
        sid = _required(query, "id")
        running = running_session(ws, sid)
        self._json(running if running is not None else show_session(ws, sid))

    def log_page(self, query: dict[str, str]) -> None:
        self._json(log_page(self.server.workspace(), query.get("before"), query.get("limit")))

    def value(self, query: dict[str, str]) -> None:
        self._json(value_view(self.server.workspace(), _required(query, "name"), query.get("at")))

    def raw(self, query: dict[str, str]) -> None:
        ws = self.server.workspace()
        name = _required(query, "name")
        st = ws.lookup(name, query.get("at"))
        if st.value.is_tree:
            raise GdagError(
                f"output {name!r} is a directory", hint=f"gdag lookup {name} -o DIR writes it out"
            )
        large = ws.large_object(st)
        size = large[0].size if large is not None else st.meta.get("size")
        if not isinstance(size, int):
            size = len(ws.store.read_blob(st.value.sha))
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        filename = name.rsplit("/", 1)[-1]
        self.send_header("Content-Disposition", f'attachment; filename="{filename}"')
        self.end_headers()
        for chunk in ws.value_chunks(st):
            self.wfile.write(chunk)

    def events(self, query: dict[str, str]) -> None:
        """Server-sent events: `change` at once, then whenever the log or its sessions move."""
        from gdag.session import list_sessions

        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        ws = self.server.workspace()
        seen: tuple[Any, ...] | None = None
        quiet_since = time.monotonic()
        try:
            while True:
                now = (ws.log.tip(), tuple(list_sessions(ws.log)))
                if now != seen:
                    seen = now
                    offset = ws.log.event(now[0]).offset if now[0] else None
                    self._event("change", {"offset": offset, "sessions": len(now[1])})
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since > KEEPALIVE:
                    self.wfile.write(b": still here\n\n")
                    self.wfile.flush()
                    quiet_since = time.monotonic()
                time.sleep(POLL)
        except (BrokenPipeError, ConnectionResetError):
            return

    def _event(self, kind: str, data: Any) -> None:
        self.wfile.write(f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode())
        self.wfile.flush()


ROUTES: dict[str, Callable[[Handler, dict[str, str]], None]] = {
    "/": Handler.page,
    "/static/app.js": Handler.script,
    "/static/app.css": Handler.style,
    "/static/icon.svg": Handler.icon,
    "/favicon.ico": Handler.icon,
    "/metrics": Handler.metrics,
    "/events": Handler.events,
    "/api/graph": Handler.graph,
    "/api/outputs": Handler.outputs,
    "/api/sessions": Handler.sessions,
    "/api/session": Handler.session,
    "/api/log": Handler.log_page,
    "/api/value": Handler.value,
    "/api/raw": Handler.raw,
}


def _required(query: dict[str, str], key: str) -> str:
    if not query.get(key):
        raise GdagError(f"the request needs ?{key}=")
    return query[key]


# -- the views, as plain data ---------------------------------------------------------


def output_grid(ws: Workspace, events: int = GRID_EVENTS) -> dict[str, Any]:
    """The outputs each of the last `events` events changed, and their versions."""
    from gdag import state

    offsets: list[int] = []
    rows: dict[str, dict[int, int]] = {}
    for event in ws.log.events():
        if len(offsets) >= events:
            break
        if not event.outputs:
            continue
        offsets.append(event.offset)
        root = ws.store.read_commit(event.sha).tree
        for name in event.outputs:
            out = state.read_output(ws.store, root, name)
            if out is not None:
                rows.setdefault(name, {})[event.offset] = out.version
    offsets.reverse()
    return {
        "offsets": offsets,
        "rows": [{"output": name, "cells": cells} for name, cells in sorted(rows.items())],
    }


def sessions_in_flight(ws: Workspace) -> dict[str, Path | None]:
    """Session refs not merged yet: id -> the file its output is being written to, when
    a live process holds the node's lease for it and runs it here (None: running
    elsewhere, starting, or left by a killed run, whose pointer is stale)."""
    from gdag.execute import running_log_pointer
    from gdag.lease import Leases
    from gdag.session import list_sessions

    leases = Leases(ws.store, ws.log.name)
    found: dict[str, Path | None] = {}
    for sid in list_sessions(ws.log):
        holder = leases.holder(sid.rsplit(".", 2)[0])
        found[sid] = None
        if holder is not None and holder.session == sid:
            try:
                found[sid] = Path(running_log_pointer(ws.store, ws.log.name, sid).read_text())
            except OSError:
                pass
    return found


def running_session(ws: Workspace, sid: str) -> dict[str, Any] | None:
    """A session in flight with the end of its output so far; None when it is not in
    flight (merged, or no such session)."""
    flight = sessions_in_flight(ws)
    if sid not in flight:
        return None
    path, tail = flight[sid], b""
    if path is not None:
        try:
            with open(path, "rb") as f:
                f.seek(max(0, os.fstat(f.fileno()).st_size - PREVIEW_BYTES))
                tail = f.read(PREVIEW_BYTES)
        except OSError:
            path = None  # it finished meanwhile
    return {
        "session": sid,
        "node": sid.rsplit(".", 2)[0],
        "status": "running" if path is not None else "in flight",
        "offset": None,
        "log_tail": tail.decode("utf-8", "replace"),
    }


def session_list(ws: Workspace, node: str | None, limit: int = LIST_LIMIT) -> list[dict[str, Any]]:
    """Sessions in flight, then merged sessions newest first: start, duration, status,
    node, cached (at most `limit`; of every node, those among the last SESSION_SCAN
    events)."""
    from gdag.session import read_done

    found: list[dict[str, Any]] = []
    for sid, path in sorted(sessions_in_flight(ws).items(), reverse=True):
        name = sid.rsplit(".", 2)[0]
        if node is None or name == node:
            status = "running" if path is not None else "in flight"
            found.append(
                {"offset": None, "node": name, "session": sid, "status": status}
                | {"duration": None, "start": None, "cached": None}
            )
    if node is not None:
        # A node's sessions: its @done.json records, each naming the offset of the one
        # before (O(its sessions), however long the log).
        from gdag.provenance import node_sessions

        found += [_session_row(d, d.get("offset")) for d in node_sessions(ws, node, limit)]
        return found[:limit]
    for scanned, event in enumerate(ws.log.events()):
        if len(found) >= limit or scanned >= SESSION_SCAN:
            break  # the page lists recent sessions; a node's own go further back
        if event.kind != trailers.SESSION:
            continue
        name = event.first(trailers.NODE) or "?"
        done = read_done(ws.store, ws.store.read_commit(event.sha).tree, name) or {}
        found.append(_session_row({"node": name, **done}, event.offset))
    return found


def _session_row(done: dict[str, Any], offset: Any) -> dict[str, Any]:
    duration, finished = done.get("duration"), done.get("finished")
    start = None
    if isinstance(duration, int | float) and isinstance(finished, int | float):
        start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(finished - duration))
    return {
        "offset": offset,
        "node": done.get("node"),
        "session": done.get("session"),
        "status": done.get("status"),
        "duration": duration,
        "start": start,
        "cached": done.get("cached"),
    }


def log_page(ws: Workspace, before: str | None, limit: str | None) -> dict[str, Any]:
    """Events newest first from offset `before` down (default: the tip), `limit` a page."""
    from gdag.log import select_events

    size = int(limit) if limit and limit.isdigit() and int(limit) > 0 else 50
    start = ws.log.resolve_offset(before) if before is not None else None
    shown = select_events(ws.log, limit=size, start=start)
    last = shown[-1].offset if shown else 0
    return {"events": [e.to_json() for e in shown], "next": last - 1 if last > 0 else None}


def value_view(ws: Workspace, name: str, at: str | None) -> dict[str, Any]:
    """An output's value (a text preview), size, metadata and provenance."""
    from gdag import values
    from gdag.provenance import provenance_of
    from gdag.types import parse_type, stored_to_display

    st = ws.lookup(name, at)
    doc: dict[str, Any] = {"output": name, "meta": st.meta, "size": st.meta.get("size")}
    if st.value.is_tree:
        doc["files"] = list(values.describe_tree(ws.store, st.value.sha))[:LIST_LIMIT]
    else:
        head = b"".join(_head(ws.value_chunks(st), PREVIEW_BYTES))
        typ = parse_type(st.type)
        shown = head if typ.is_raw else stored_to_display(head, typ)
        doc["preview"] = shown.decode("utf-8", "replace")
        doc["truncated"] = len(head) >= PREVIEW_BYTES
    doc["provenance"] = provenance_of(ws, name, st.meta)
    return doc


def _head(chunks: Any, limit: int) -> list[bytes]:
    got: list[bytes] = []
    total = 0
    for chunk in chunks:
        got.append(chunk[: limit - total])
        total += len(got[-1])
        if total >= limit:
            break
    return got


def serve(
    server: Server, open_browser: bool = False, ready: Callable[[str], None] | None = None
) -> None:
    """Answer requests until interrupted."""
    if ready is not None:
        ready(server.url)
    if open_browser:
        import webbrowser

        webbrowser.open(server.url)
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()

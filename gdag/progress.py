"""Run and replay progress: plain lines on a pipe, a live rich view on a terminal.

rich is imported only for a terminal, so `gdag run` in scripts and hooks does
not pay for it.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

Segments = list[tuple[str, str]]  # (text, rich style)


class RunView:
    """Receives the runner's reports and shows them on stderr."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.started: dict[str, float] = {}
        self.lock = threading.Lock()
        self.live: Any = None
        if not quiet and sys.stderr.isatty():
            from gdag.render import LiveRunning

            self.live = LiveRunning(self.started)
        self.t0 = time.monotonic()

    def emit(self, segments: Segments) -> None:
        if self.live is not None:
            self.live.print(segments)
        else:
            sys.stderr.write("".join(text for text, _ in segments) + "\n")
            sys.stderr.flush()

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        with self.lock:
            if kind == "start":
                self.started[data["node"]] = time.monotonic()
                return
            if kind == "finish":
                self.started.pop(data["node"], None)
            if not self.quiet:
                self.emit(self.line(kind, data))

    def line(self, kind: str, data: dict[str, Any]) -> Segments:
        node = data.get("node", "")
        if kind == "finish":
            return self._finish(node, data)
        if kind == "would-run":
            return [("would run ", "yellow"), (node, ""), (f"  {data['reason']}", "dim")]
        if kind == "retry":
            return [
                ("retrying ", "yellow"),
                (node, ""),
                (f" in {data['delay']:.1f}s (attempt {data['attempt']})", ""),
                (f"  after: {data['error']}", "dim"),
            ]
        if kind == "recovered":
            return [("recovered ", "cyan"), (node, ""), (f" ({data['result']})", "")]
        if kind == "dropped":
            return [("dropped unfinished session of ", "dim"), (node, "")]
        if kind == "speculation-dropped":
            return [
                ("dropped speculative run of ", "yellow"),
                (node, ""),
                (f" (producer {data['producer']} did not confirm it)", "dim"),
            ]
        if kind == "offline":
            return [("remote unreachable, working locally: ", "yellow"), (data["error"], "dim")]
        if kind == "definition-error":
            return [
                ("definition does not compile, waiting for a fix: ", "bold red"),
                (data["error"], ""),
            ]
        if kind == "refused":
            return [("not started: ", "bold red"), (data["error"], "")]
        if kind == "stale":
            return [("stale: ", "yellow"), (data["output"], "")]
        if kind == "write-error":
            return [("cannot write, waiting: ", "bold red"), (data["error"], "")]
        if kind == "switched":
            return [("switched to log ", "cyan"), (data["log"], "")]
        if kind == "tick-error":
            return [("cannot publish schedule ticks yet: ", "yellow"), (data["error"], "")]
        if kind == "tick":
            return [("tick ", "cyan"), (data["output"], ""), (f" {data['time']}", "dim")]
        if kind == "idle":
            return [(f"idle: {data['ran']} ran, {data['failed']} failed", "dim")]
        return [(f"{kind} {node}", "")]

    def _finish(self, node: str, data: dict[str, Any]) -> Segments:
        if data["merged"] == "superseded":
            return [("superseded ", "dim"), (node, "")]
        if data.get("cached"):
            return [("cached ", "green"), (node, ""), (f"  (reused {data['cached']})", "dim")]
        ok = data["status"] == "ok"
        line: Segments = [
            ("ok " if ok else "FAILED ", "green" if ok else "bold red"),
            (node, ""),
            (f" {data['duration']:.2f}s", ""),
        ]
        if data.get("speculative"):
            line.append(("  speculative, confirmed", "cyan"))
        outs = data.get("outputs") or {}
        if outs:
            line.append(("  -> " + _listed([f"{k} v{v}" for k, v in outs.items()]), "dim"))
        if data.get("unchanged"):
            line.append(("  unchanged: " + _listed(data["unchanged"]), "dim"))
        if not ok and data.get("error"):
            line.append((f"  ({data['error']})", "red"))
        if not ok and data.get("log"):
            tail = data["log"].decode("utf-8", "replace").rstrip("\n").splitlines()[-10:]
            line.append(("".join(f"\n  | {t}" for t in tail), "dim"))
        return line

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def close(self, summary: Any) -> None:
        self.stop()
        if self.quiet:
            return
        took = time.monotonic() - self.t0
        parts = [f"{len(summary.ran)} ran"]
        if summary.failed:
            parts.append(f"{len(summary.failed)} failed")
        if summary.superseded:
            parts.append(f"{len(summary.superseded)} superseded")
        if summary.recovered:
            parts.append(f"{len(summary.recovered)} recovered")
        if not summary.ran and not summary.failed and not summary.superseded:
            parts = ["nothing to do"]
        self.emit(
            [(", ".join(parts) + f" ({took:.2f}s)", "bold red" if summary.failed else "green")]
        )


class ReplayView(RunView):
    """Progress of a replay: the node runs as in `gdag run`, then what was replayed."""

    def line(self, kind: str, data: dict[str, Any]) -> Segments:
        if kind == "would-replay":
            return [
                ("would replay ", "yellow"),
                (f"offset {data['offset']} ", ""),
                (" ".join(data["outputs"]), "dim"),
            ]
        return super().line(kind, data)

    def close(self, result: Any, dry_run: bool = False) -> None:  # type: ignore[override]
        self.stop()
        if self.quiet or dry_run:
            return
        took = time.monotonic() - self.t0
        text = (
            f"replayed {len(result.events)} events from offset {result.from_offset}: "
            f"{len(result.ran)} ran, {len(result.cached)} cached, "
            f"{len(result.failed)} failed ({took:.2f}s)"
        )
        if result.archive:
            text += f"; old log kept at {result.archive}"
        self.emit([(text, "bold red" if result.failed else "green")])


class JsonLines:
    """`--json` progress: one JSON object per event on stdout, then a summary."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def _write(self, obj: dict[str, Any]) -> None:
        import json

        with self.lock:
            sys.stdout.write(json.dumps(obj, sort_keys=True, default=_jsonable) + "\n")
            sys.stdout.flush()

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        self._write({"event": kind, "time": time.time(), **data})

    def stop(self) -> None:
        pass

    def close(self, summary: Any) -> None:
        self._write(
            {
                "event": "summary",
                "ran": summary.ran,
                "failed": summary.failed,
                "superseded": summary.superseded,
                "recovered": summary.recovered,
                "planned": summary.planned,
            }
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _listed(items: list[str], limit: int = 8) -> str:
    """`items` joined by commas, the first `limit` of a longer list and how many more
    (a node publishing 10,000 outputs made one line of 200 KB)."""
    if len(items) <= limit:
        return ", ".join(items)
    return ", ".join(items[:limit]) + f" and {len(items) - limit:,} more"

"""Running a node's code: shell commands in a subprocess, Python functions in-process.

Inputs reach shell nodes as files named by environment variables, never
spliced into the command; outputs come back as files under `$GDAG_OUT` or
through `gdag publish` inside the session.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gdag import state
from gdag.errors import GdagError
from gdag.names import check_output_name, env_name, is_pattern, matches
from gdag.repo import MODE_BLOB, Entry, Store
from gdag.session import Outcome, Session
from gdag.types import Type, canonical_json, check_value, parse_type, stored_to_display


@dataclass
class InputValue:
    """One output a node receives: its name, version and stored value."""

    name: str
    version: int
    type: Type
    entry: Entry


def gather_inputs(store: Store, root: bytes, node: dict[str, Any]) -> dict[str, Any]:
    """arg -> InputValue | {name: InputValue} for patterns | None when absent."""
    found: dict[str, Any] = {}
    for arg, target in node["inputs"].items():
        if is_pattern(target):
            members = {}
            for name in state.list_outputs(store, root, target):
                members[name] = _input(store, root, name)
            found[arg] = members or None
        else:
            found[arg] = _input(store, root, target)
    return found


def _input(store: Store, root: bytes, name: str) -> InputValue | None:
    out = state.read_output(store, root, name)
    if out is None:
        return None
    return InputValue(name, out.version, parse_type(out.type), out.value)


def members(value: Any) -> list[InputValue]:
    """The InputValues of one gathered input: none, one, or a pattern's members."""
    if value is None:
        return []
    if isinstance(value, dict):
        return list(value.values())
    return [value]


def allowed(node: dict[str, Any], name: str) -> bool:
    return any(p == name or (is_pattern(p) and matches(p, name)) for p in node["publishes"])


def check_publishable(node_name: str, node: dict[str, Any], name: str) -> None:
    check_output_name(name)
    if not allowed(node, name):
        raise GdagError(
            f"node {node_name!r} may not publish {name!r}: not in its publishes "
            f"({', '.join(node['publishes']) or 'none'})",
            hint=f"add {name!r} (or a pattern) to publishes of [nodes.{node_name}] in gdag.toml",
        )


class Runner:
    """Executes one session's node code and records its outputs on the session branch."""

    def __init__(
        self,
        store: Store,
        session: Session,
        node: dict[str, Any],
        dag: dict[str, Any],
        log_name: str,
    ) -> None:
        self.store = store
        self.session = session
        self.node = node
        self.dag = dag
        self.log_name = log_name
        self.name = session.spec.node

    def run(self) -> Outcome:
        try:
            return self._run()
        except GdagError as exc:  # e.g. an input that cannot be materialised
            return Outcome("failed", None, f"gdag: {exc.message}\n".encode(), error=exc.message)

    def _run(self) -> Outcome:
        root = self.store.read_commit(self.session.spec.state_at).tree
        inputs = gather_inputs(self.store, root, self.node)
        started = time.monotonic()
        tmp = Path(tempfile.mkdtemp(prefix=f"gdag-{self.name}-"))
        try:
            if self.node["kind"] == "shell":
                outcome = self._run_shell(inputs, tmp)
            else:
                outcome = self._run_python(inputs)
        finally:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
        outcome.duration = time.monotonic() - started
        return outcome

    # -- shell -----------------------------------------------------------------

    def _run_shell(self, inputs: dict[str, Any], tmp: Path) -> Outcome:
        env = self._shell_env(inputs, tmp)
        out_dir = Path(env["GDAG_OUT"])
        log_path = tmp / "log"
        cwd = self._cwd()
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                ["/bin/sh", "-c", self.node["command"]],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                code = proc.wait(timeout=self.node.get("timeout"))
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                text = (
                    _tail(log_path) + f"\ngdag: timed out after {self.node['timeout']} s\n".encode()
                )
                return Outcome("failed", None, text, error="timeout")
            except BaseException:
                _kill_group(proc)
                raise
        text = _tail(log_path)
        if code != 0:
            return Outcome("failed", code, text, error=f"exit status {code}")
        try:
            self._collect_out_dir(out_dir)
        except GdagError as exc:
            return Outcome(
                "failed", code, text + f"gdag: {exc.message}\n".encode(), error=exc.message
            )
        return Outcome("ok", 0, text)

    def _cwd(self) -> Path:
        workdir = self.store.workdir or self.store.gitdir
        cwd = (workdir / self.node.get("cwd", ".")).resolve()
        if not cwd.is_relative_to(workdir.resolve()):
            raise GdagError(f"node {self.name!r}: cwd {self.node['cwd']!r} leaves the repository")
        return cwd

    def _shell_env(self, inputs: dict[str, Any], tmp: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GDAG_IN_")}
        env["GDAG_HOOK_GUARD"] = "1"  # git commands of the node do not publish git events
        env.update(self.node.get("env", {}))
        manifest: dict[str, Any] = {}
        in_dir = tmp / "in"
        for arg, value in inputs.items():
            if value is None:
                manifest[arg] = None
                continue
            path = in_dir / arg
            if isinstance(value, dict):
                path.mkdir(parents=True)
                manifest[arg] = {}
                for name, iv in value.items():
                    rel = name[len(_literal_head(self.node["inputs"][arg])) :].lstrip("/")
                    self._write_input(iv, path / rel)
                    manifest[arg][name] = {
                        "path": str(path / rel),
                        "version": iv.version,
                        "type": str(iv.type),
                    }
            else:
                self._write_input(value, path)
                manifest[arg] = {
                    "output": value.name,
                    "path": str(path),
                    "version": value.version,
                    "type": str(value.type),
                }
            env[env_name(arg)] = str(path)
        (tmp / "inputs.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
        (tmp / "out").mkdir()
        for target in self.node["publishes"]:
            # Parent directories exist already, so `> "$GDAG_OUT/a/b"` just works.
            head = _literal_head(target) if is_pattern(target) else target.rpartition("/")[0]
            if head:
                (tmp / "out" / head).mkdir(parents=True, exist_ok=True)
        bin_dir = tmp / "bin"
        bin_dir.mkdir()
        shim = bin_dir / "gdag"
        shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m gdag "$@"\n')
        shim.chmod(0o755)
        env.update(
            {
                "GDAG_INPUTS": str(tmp / "inputs.json"),
                "GDAG_OUT": str(tmp / "out"),
                "GDAG_SESSION": self.session.id,
                "GDAG_LOG": self.log_name,
                "GDAG_NODE": self.name,
                "GDAG_REPO": str(self.store.workdir or self.store.gitdir),
                "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', os.defpath)}",
            }
        )
        return env

    def _write_input(self, iv: InputValue, path: Path) -> None:
        from gdag.values import materialise

        path.parent.mkdir(parents=True, exist_ok=True)
        if iv.entry.is_tree:
            materialise(self.store, iv.entry.sha, path)
            return
        data = self.store.read_blob(iv.entry.sha)
        if iv.type.kind == "str":
            data = stored_to_display(data, iv.type)
        path.write_bytes(data)

    def _collect_out_dir(self, out_dir: Path) -> None:
        """Publish every file (or dir-typed directory) written under $GDAG_OUT."""
        for name, path in sorted(_out_files(out_dir, self._is_dir_output)):
            check_publishable(self.name, self.node, name)
            typ = self._type_of(name)
            if path.is_dir():
                from gdag.values import tree_from_dir

                entry, size = tree_from_dir(self.store, path)
            else:
                entry, size = self._encode(name, typ, path.read_bytes())
            self.session.publish(name, entry, str(typ), size)

    def _is_dir_output(self, name: str) -> bool:
        return self._type_of(name).kind == "dir"

    def _type_of(self, name: str) -> Type:
        from gdag.definition import output_type

        declared = output_type(self.dag, name)
        if declared is not None:
            return declared
        root = self.store.read_commit(self.session.spec.base).tree
        prev = state.read_output(self.store, root, name)
        return parse_type(prev.type) if prev else Type("bytes")

    def _encode(self, name: str, typ: Type, data: bytes) -> tuple[Entry, int]:
        from gdag.types import decode_text_value

        if typ.kind == "bytes":
            return Entry(MODE_BLOB, self.store.write_blob(data)), len(data)
        if typ.kind == "dir":
            raise GdagError(f"output {name!r} has type dir: write a directory there")
        encoded = canonical_json(decode_text_value(data, typ, name))
        return Entry(MODE_BLOB, self.store.write_blob(encoded)), len(encoded)

    # -- python ------------------------------------------------------------------

    def _run_python(self, inputs: dict[str, Any]) -> Outcome:
        from gdag.pynode import call_node

        os.environ["GDAG_HOOK_GUARD"] = "1"  # git commands of the node publish no git events
        try:
            results, text = call_node(self, inputs)
        except GdagError as exc:
            return Outcome("failed", None, f"gdag: {exc.message}\n".encode(), error=exc.message)
        except Exception as exc:
            tb = traceback.format_exc().encode()
            return Outcome("failed", None, tb, error=f"{type(exc).__name__}: {exc}")
        try:
            for name, value in results:
                check_publishable(self.name, self.node, name)
                self.publish_value(name, value)
        except GdagError as exc:  # a bad result is the node's failure, not the run's
            return Outcome("failed", None, f"gdag: {exc.message}\n".encode(), error=exc.message)
        return Outcome("ok", None, text)

    def publish_value(self, name: str, value: Any) -> None:
        """Encode a Python value for output `name` by its type and record it."""
        typ = self._type_of(name)
        if typ.kind == "bytes":
            if isinstance(value, str):
                value = value.encode("utf-8")
            if not isinstance(value, bytes | bytearray):
                value = canonical_json(value)
            entry = Entry(MODE_BLOB, self.store.write_blob(bytes(value)))
            self.session.publish(name, entry, str(typ), len(value))
            return
        if typ.kind == "dir":
            from gdag.values import tree_from_dir

            entry, size = tree_from_dir(self.store, Path(value))
            self.session.publish(name, entry, str(typ), size)
            return
        if hasattr(value, "model_dump"):
            value = value.model_dump(mode="json")
        encoded = canonical_json(check_value(value, typ, name))
        entry = Entry(MODE_BLOB, self.store.write_blob(encoded))
        self.session.publish(name, entry, str(typ), len(encoded))


def _literal_head(pattern: str) -> str:
    head = []
    for seg in pattern.split("/"):
        if seg in ("*", "**"):
            break
        head.append(seg)
    return "/".join(head)


def _out_files(out_dir: Path, is_dir_output: Any) -> list[tuple[str, Path]]:
    found: list[tuple[str, Path]] = []

    def walk(d: Path, prefix: str) -> None:
        for child in sorted(d.iterdir()):
            name = f"{prefix}{child.name}"
            if child.is_symlink():
                raise GdagError(f"$GDAG_OUT/{name} is a symlink; write a file there")
            if child.is_dir():
                if is_dir_output(name):
                    found.append((name, child))
                else:
                    walk(child, name + "/")
            elif child.is_file():
                found.append((name, child))

    walk(out_dir, "")
    return found


def _tail(path: Path, limit: int = 64 * 1024) -> bytes:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - limit))
        return f.read()


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()

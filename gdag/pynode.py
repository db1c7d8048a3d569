"""Python nodes: importing `module:function` from the repository and calling it in-process."""

from __future__ import annotations

import importlib
import inspect
import json
import sys
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gdag.errors import DefinitionError, GdagError

if TYPE_CHECKING:
    from gdag.execute import InputValue, Runner

_import_lock = threading.Lock()


class Context:
    """Handed to a Python node that takes a `ctx` parameter: publish to dynamic names."""

    def __init__(self, runner: Runner) -> None:
        self._runner = runner
        self.session = runner.session.id
        self.node = runner.name

    def publish(self, name: str, value: Any) -> None:
        from gdag.execute import check_publishable

        check_publishable(self._runner.name, self._runner.node, name)
        self._runner.publish_value(name, value)


def load_module(module_name: str, root: Path | None, what: str) -> Any:
    """Import a module of the repository (its root goes first on sys.path)."""
    with _import_lock:
        if root is not None and str(root) not in sys.path:
            sys.path.insert(0, str(root))
        try:
            return importlib.import_module(module_name)
        except Exception as exc:  # a broken user module is a definition error, not a crash
            raise DefinitionError(
                f"{what}: cannot import {module_name!r}: {type(exc).__name__}: {exc}"
            ) from None


def load_function(ref: str, root: Path | None) -> Any:
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise DefinitionError(f"python = {ref!r}: expected 'module:function'")
    obj: Any = load_module(module_name, root, f"python = {ref!r}")
    try:
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError as exc:
        raise DefinitionError(f"python = {ref!r}: {exc}") from None
    if not callable(obj):
        raise DefinitionError(f"python = {ref!r} is not callable")
    return obj


def function_identity(ref: str, root: Path | None) -> tuple[str, Path | None]:
    """A hash of the function's source (editing it makes the node stale) and its file."""
    import hashlib

    fn = load_function(ref, root)
    try:
        src = inspect.getsource(fn)
        path: Path | None = Path(inspect.getfile(fn)).resolve()
    except (OSError, TypeError):
        src, path = ref, None
    return hashlib.sha256(src.encode()).hexdigest()[:16], path


def decode(runner: Runner, iv: InputValue, tmp: Path) -> Any:
    """A stored input value as the Python value a node receives."""
    store = runner.store
    if iv.entry.is_tree:
        from gdag.values import materialise

        target = Path(tempfile.mkdtemp(dir=tmp)) / iv.name.replace("/", "_")
        materialise(store, iv.entry.sha, target)
        return target
    data = store.read_blob(iv.entry.sha)
    if iv.type.kind == "bytes":
        return data
    return json.loads(data)


def call_node(runner: Runner, inputs: dict[str, Any]) -> tuple[list[tuple[str, Any]], bytes]:
    fn = load_function(runner.node["command"], runner.store.workdir)
    params = inspect.signature(fn).parameters
    with tempfile.TemporaryDirectory(prefix=f"gdag-{runner.name}-") as tmpdir:
        kwargs: dict[str, Any] = {}
        for arg, value in inputs.items():
            if value is None:
                kwargs[arg] = None
            elif isinstance(value, dict):
                kwargs[arg] = {n: decode(runner, iv, Path(tmpdir)) for n, iv in value.items()}
            else:
                kwargs[arg] = decode(runner, value, Path(tmpdir))
            kwargs[arg] = _coerce(params.get(arg), kwargs[arg])
        if "ctx" in params:
            kwargs["ctx"] = Context(runner)
        missing = [p for p in params if p not in kwargs and params[p].default is inspect._empty]
        if missing:
            raise GdagError(f"node {runner.name!r}: function needs {missing}, not among its inputs")
        result = fn(**{k: v for k, v in kwargs.items() if k in params})
    return _results(runner, result), b""


def _coerce(param: inspect.Parameter | None, value: Any) -> Any:
    """Turn JSON data into the annotated pydantic model, when the parameter asks for one."""
    if param is None or value is None or param.annotation is inspect._empty:
        return value
    ann = param.annotation
    if isinstance(ann, type) and hasattr(ann, "model_validate"):
        return ann.model_validate(value)
    return value


def _results(runner: Runner, result: Any) -> list[tuple[str, Any]]:
    if result is None:
        return []
    publishes = runner.node["publishes"]
    from gdag.names import is_pattern

    if len(publishes) == 1 and not is_pattern(publishes[0]):
        return [(publishes[0], result)]
    if isinstance(result, dict):
        return list(result.items())
    raise GdagError(
        f"node {runner.name!r} returned a {type(result).__name__}, but it publishes "
        f"{len(publishes)} outputs: return a dict of output name -> value, or use ctx.publish"
    )

"""Python nodes: importing `module:function` from the repository and calling it in-process."""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gdag.errors import DefinitionError, GdagError
from gdag.types import Type, check_value, decode_text_value

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


# A long-lived process (`gdag watch`) imports the repository's modules once; when their
# files change, the code hash follows the files but the imported code would not. So,
# between runs, `refresh_user_modules` drops every module of the repository once any of
# them changed, and the next run imports them afresh.
_seen_modules: dict[str, tuple[str, tuple[int, int] | None]] = {}
_last_refresh_ns: list[int] = []


def _stat(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def _user_modules(root: Path) -> dict[str, str]:
    """The imported modules whose files are the repository's own: below its root, but
    not installed packages (a virtualenv inside the work tree) and not gdag."""
    top = os.path.abspath(root) + os.sep
    installed = tuple(
        os.path.abspath(p) + os.sep for p in {sys.prefix, sys.exec_prefix, sys.base_prefix}
    )
    found = {}
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if not path or name == "gdag" or name.startswith("gdag."):
            continue
        path = os.path.abspath(path)
        parts = path.split(os.sep)
        if (
            path.startswith(top)
            and not path.startswith(installed)
            and "site-packages" not in parts
            and "dist-packages" not in parts
        ):
            found[name] = path
    return found


def refresh_user_modules(root: Path) -> bool:
    """Drop the repository's modules from sys.modules if any changed on disk since the
    last call (True then). Call it only while no node runs in this process.

    A module first seen now was imported since the last call; if its file is newer than
    that call, it may have changed after the import, and counts as changed."""
    now = time.time_ns()
    modules = _user_modules(root)
    last = _last_refresh_ns[0] if _last_refresh_ns else None
    changed = False
    for name, path in modules.items():
        stamp = _stat(path)
        known = _seen_modules.get(name)
        if known is not None:
            changed = changed or known != (path, stamp)
        elif last is not None:
            changed = changed or stamp is None or stamp[0] >= last
    _last_refresh_ns[:] = [now]
    _seen_modules.clear()
    if not changed:
        _seen_modules.update({name: (path, _stat(path)) for name, path in modules.items()})
        return False
    with _import_lock:
        for name in modules:
            cached = getattr(sys.modules.pop(name, None), "__cached__", None)
            if cached:  # bytecode keyed on whole seconds could outlive a quick edit
                with contextlib.suppress(OSError):
                    os.unlink(cached)
        importlib.invalidate_caches()
    return True


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


def decode(runner: Runner, iv: InputValue, tmp: Path, want: Type | None) -> Any:
    """A stored input value as the Python value a node receives, checked against `want`."""
    store = runner.store
    if iv.entry.is_tree:
        from gdag.values import materialise

        target = Path(tempfile.mkdtemp(dir=tmp)) / iv.name.replace("/", "_")
        materialise(store, iv.entry.sha, target)
        return target
    data = store.read_blob(iv.entry.sha)
    if iv.type.kind == "bytes":
        if want is None or want.kind == "bytes":
            return data
        # An untyped output bound to a typed parameter: checked now (gradual typing).
        value = decode_text_value(data, want, iv.name)
    else:
        value = json.loads(data)
        if want is not None and want.kind not in ("bytes", "json"):
            value = check_value(value, want, iv.name)
    return _as_model(want, value)


def _as_model(want: Type | None, value: Any) -> Any:
    base = want.arg if want is not None and want.kind == "optional" else want
    if base is None or base.kind != "model" or value is None:
        return value
    from gdag.types import load_model

    return load_model(base.ref or "").model_validate(value)


def call_node(runner: Runner, inputs: dict[str, Any]) -> tuple[list[tuple[str, Any]], bytes]:
    from gdag.binding import from_annotation, member_type, resolved_hints

    fn = load_function(runner.node["command"], runner.store.workdir)
    params = inspect.signature(fn).parameters
    hints = resolved_hints(fn)
    with tempfile.TemporaryDirectory(prefix=f"gdag-{runner.name}-") as tmpdir:
        kwargs: dict[str, Any] = {}
        for arg, value in inputs.items():
            ann = from_annotation(hints.get(arg, inspect.Parameter.empty))
            want = member_type(runner.dag, runner.node, arg, ann) if ann is not None else None
            if value is None:
                kwargs[arg] = None
            elif isinstance(value, dict):
                kwargs[arg] = {n: decode(runner, iv, Path(tmpdir), want) for n, iv in value.items()}
            else:
                kwargs[arg] = decode(runner, value, Path(tmpdir), want)
        if "ctx" in params:
            kwargs["ctx"] = Context(runner)
        if "inputs" in params and "inputs" not in runner.node["inputs"]:
            kwargs["inputs"] = _container(params["inputs"], hints.get("inputs"), kwargs)
        missing = [p for p in params if p not in kwargs and params[p].default is inspect._empty]
        if missing:
            raise GdagError(f"node {runner.name!r}: function needs {missing}, not among its inputs")
        result = fn(**{k: v for k, v in kwargs.items() if k in params})
    return _results(runner, result), b""


def _container(param: inspect.Parameter, ann: Any, values: dict[str, Any]) -> Any:
    """All inputs in one object: the generated `<Node>Inputs` class, else a namespace."""
    fields = {k: v for k, v in values.items() if k != "ctx"}
    if isinstance(ann, type):
        return ann(**fields)
    from types import SimpleNamespace

    return SimpleNamespace(**fields)


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

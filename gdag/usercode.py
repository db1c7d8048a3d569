"""User code: importing `module:attr` from the repository, and dropping changed modules.

The one place that imports the user's Python (nodes, `@gdag.node` modules,
`module:Name` types), with the repository root first on `sys.path`.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from gdag.errors import DefinitionError

_import_lock = threading.Lock()


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
    fn = load_function(ref, root)
    try:
        path: Path | None = Path(inspect.getfile(fn)).resolve()
    except (OSError, TypeError):
        path = None
    return source_hash(fn, ref), path


def source_hash(fn: Any, ref: str) -> str:
    """`function_identity`'s hash of a function already loaded (`ref` names it)."""
    import hashlib

    try:
        src = inspect.getsource(fn)
    except (OSError, TypeError):
        src = ref
    return hashlib.sha256(src.encode()).hexdigest()[:16]

"""gdag: a git-native reactive dataflow engine for the command line, and its Python API.

`gdag.Repository` and the error classes are imported on first use (PEP 562): every
`gdag` command imports this package, and its start-up must not pay for the API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> the module that defines it, imported when the name is first used.
_LAZY = {
    "Repository": "gdag.api",
    "RunSummary": "gdag.api",
    "Version": "gdag.api",
    "Event": "gdag.log",
    "Published": "gdag.workspace",
    "GdagError": "gdag.errors",
    "UsageError": "gdag.errors",
    "NotARepositoryError": "gdag.errors",
    "NoLogError": "gdag.errors",
    "DefinitionError": "gdag.errors",
    "ValueRefusedError": "gdag.errors",
    "UnknownError": "gdag.errors",
    "StoreError": "gdag.errors",
}

__all__ = [
    "DefinitionError",
    "Event",
    "GdagError",
    "NoLogError",
    "NotARepositoryError",
    "Published",
    "Repository",
    "RunSummary",
    "StoreError",
    "UnknownError",
    "UsageError",
    "ValueRefusedError",
    "Version",
    "__version__",
    "node",
]

if TYPE_CHECKING:
    from gdag.api import Repository, RunSummary, Version
    from gdag.errors import (
        DefinitionError,
        GdagError,
        NoLogError,
        NotARepositoryError,
        StoreError,
        UnknownError,
        UsageError,
        ValueRefusedError,
    )
    from gdag.log import Event
    from gdag.workspace import Published


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gdag' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


def node(
    fn=None,
    *,
    name=None,
    inputs=None,
    publishes=None,
    mode=None,
    when=None,
    timeout=None,
    env=None,
    speculative=None,
):
    """Declare a Python node in a module listed under `[dag] modules` of gdag.toml."""

    def mark(f):
        f.__gdag_node__ = {
            "name": name,
            "inputs": inputs,
            "publishes": publishes,
            "mode": mode,
            "when": when,
            "timeout": timeout,
            "env": env,
            "speculative": speculative,
        }
        return f

    return mark(fn) if fn is not None else mark

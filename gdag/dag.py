"""The compiled definition as frozen dataclasses: `Dag`, `Node`, `OutputDecl`.

`definition.compile_definition` builds the JSON form stored in the log as
`dag.json`, and this module turns it into typed objects once; the rest of the
code reads attributes. `Dag.to_json` gives back exactly the stored form (a
golden test pins its bytes and the node code hashes: a log must not see its
nodes turn stale after an upgrade).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from gdag.names import is_pattern, matches
from gdag.types import BYTES, Type, parse_type

SHELL = "shell"
PYTHON = "python"
MODES = ("latest", "each")
WHENS = ("any", "all")
# Git hosts refuse files of 100 MB (GitHub) or 100 MiB: values from here on go to LFS.
DEFAULT_LARGE = 32 << 20

_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _frozen(d: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(d)) if d else _EMPTY


@dataclass(frozen=True)
class OutputDecl:
    """A declared output (a name or a pattern) and its type."""

    name: str
    type: str
    origin: str | None = None  # e.g. "return of <node>" for a type taken from an annotation

    @property
    def parsed(self) -> Type:
        return parse_type(self.type) if self.type else BYTES

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, **({"from": self.origin} if self.origin else {})}


@dataclass(frozen=True)
class Node:
    """A compiled node: what it runs, what it reads and publishes, and its code hash."""

    name: str
    kind: str  # SHELL | PYTHON
    command: str  # the shell command, or module:function
    inputs: Mapping[str, str]  # argument -> output name or pattern
    publishes: tuple[str, ...]
    code: str
    mode: str = "latest"
    when: str = "any"
    timeout: float | None = None
    env: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    cwd: str = "."
    speculative: bool = False
    cache: bool = True
    sources: tuple[str, ...] = ()
    local: bool = False  # runs on the coordinating machine even with a cluster

    @classmethod
    def from_json(cls, name: str, d: Mapping[str, Any]) -> Node:
        return cls(
            name=name,
            kind=d["kind"],
            command=d["command"],
            inputs=_frozen(d.get("inputs")),
            publishes=tuple(d.get("publishes", ())),
            code=d.get("code", ""),
            mode=d.get("mode", "latest"),
            when=d.get("when", "any"),
            timeout=d.get("timeout"),
            env=_frozen(d.get("env")),
            cwd=d.get("cwd", "."),
            speculative=bool(d.get("speculative", False)),
            cache=bool(d.get("cache", True)),
            sources=tuple(d.get("sources", ())),
            local=bool(d.get("local", False)),
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "kind": self.kind,
            "command": self.command,
            "inputs": dict(self.inputs),
            "publishes": list(self.publishes),
            "mode": self.mode,
            "when": self.when,
            "timeout": self.timeout,
            "env": dict(self.env),
            "cwd": self.cwd,
            "speculative": self.speculative,
            "cache": self.cache,
            "code": self.code,
        }
        if self.sources:
            d["sources"] = list(self.sources)
        if self.local:
            d["local"] = True
        return d

    @property
    def is_python(self) -> bool:
        return self.kind == PYTHON

    def may_publish(self, output: str) -> bool:
        """Whether `output` is among the node's publishes (by name or pattern)."""
        return any(p == output or (is_pattern(p) and matches(p, output)) for p in self.publishes)

    def subscribes_to(self, output: str) -> bool:
        return any(
            t == output or (is_pattern(t) and matches(t, output)) for t in self.inputs.values()
        )


@dataclass(frozen=True)
class Dag:
    """The compiled definition in force: outputs, nodes, and what it was compiled from."""

    format: int
    source: str  # sha256 of the definition file
    modules: tuple[str, ...] = ()
    outputs: Mapping[str, OutputDecl] = field(default_factory=lambda: _EMPTY)
    nodes: Mapping[str, Node] = field(default_factory=lambda: _EMPTY)
    # Files (relative to the definition) -> sha256; sources patterns -> files matched.
    watch: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    globs: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: _EMPTY)
    cluster: str | None = None  # [cluster] address: where runs send node jobs by default
    # [values] large: values of this many bytes or more are stored as git LFS objects
    # (0: never); None when the definition does not say, which means DEFAULT_LARGE.
    large: int | None = None
    # [values] remote: an fsspec URL where large values go instead of the git remote's
    # LFS endpoint (hosts without LFS); None: the LFS endpoint.
    values_remote: str | None = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Dag:
        """The typed form of a `dag.json` document (older formats read with defaults)."""
        return cls(
            format=int(d.get("format", 0)),
            source=str(d.get("source", "")),
            modules=tuple(d.get("modules", ())),
            outputs=MappingProxyType(
                {
                    n: OutputDecl(n, s.get("type", "bytes"), s.get("from"))
                    for n, s in d.get("outputs", {}).items()
                }
            ),
            nodes=MappingProxyType(
                {n: Node.from_json(n, spec) for n, spec in d.get("nodes", {}).items()}
            ),
            watch=_frozen(d.get("watch")),
            globs=MappingProxyType({g: tuple(f) for g, f in d.get("globs", {}).items()}),
            cluster=d.get("cluster"),
            large=d.get("values", {}).get("large"),
            values_remote=d.get("values", {}).get("remote"),
        )

    @classmethod
    def empty(cls) -> Dag:
        return cls(format=0, source="")

    def to_json(self) -> dict[str, Any]:
        """The stored form, `dag.json`."""
        d: dict[str, Any] = {
            "format": self.format,
            "source": self.source,
            "modules": list(self.modules),
            "outputs": {n: o.to_json() for n, o in self.outputs.items()},
            "nodes": {n: node.to_json() for n, node in self.nodes.items()},
            "watch": dict(self.watch),
        }
        if self.globs:
            d["globs"] = {g: list(f) for g, f in self.globs.items()}
        if self.cluster:
            d["cluster"] = self.cluster
        values: dict[str, Any] = {}
        if self.large is not None:
            values["large"] = self.large
        if self.values_remote is not None:
            values["remote"] = self.values_remote
        if values:
            d["values"] = values
        return d

    @property
    def large_threshold(self) -> int:
        """The size from which a value is stored as a git LFS object; 0 for never."""
        return DEFAULT_LARGE if self.large is None else self.large

    def to_bytes(self) -> bytes:
        """`dag.json`'s bytes as the log stores them."""
        return json.dumps(self.to_json(), sort_keys=True, indent=1).encode() + b"\n"

    def output_type(self, name: str) -> Type | None:
        """The declared type of output `name`: its exact declaration, else the first
        declared pattern that matches it, else None."""
        decl = self.outputs.get(name)
        if decl is None:
            decl = next(
                (d for p, d in self.outputs.items() if is_pattern(p) and matches(p, name)), None
            )
        return decl.parsed if decl is not None else None

    def subscribers(self, output: str) -> list[str]:
        return [name for name, node in self.nodes.items() if node.subscribes_to(output)]

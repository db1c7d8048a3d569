"""The compiled definition as frozen records: `Dag`, `Node`, `OutputDecl`.

`definition.compile_definition` builds the JSON form stored in the log as
`dag.json`, and this module turns it into typed objects once; the rest of the
code reads attributes. `Dag.to_json` gives back exactly the stored form (a
golden test pins its bytes and the node code hashes: a log must not see its
nodes turn stale after an upgrade).

The records are `gdag.records.Frozen` (as `@dataclass(frozen=True)`, without
its start-up cost: `publish` and `lookup` import this module).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from gdag.names import is_pattern, matches, overlaps
from gdag.records import Frozen
from gdag.types import BYTES, Type, parse_type

SHELL = "shell"
PYTHON = "python"
MODES = ("latest", "each")
WHENS = ("any", "all")
FAILURES = "gdag/failures/"  # a failed session of node N publishes gdag/failures/N


def failure_output(node: str) -> str:
    """The output a failed session of `node` publishes."""
    return FAILURES + node


# Git hosts refuse files of 100 MB (GitHub) or 100 MiB: values from here on go to LFS.
DEFAULT_LARGE = 32 << 20

_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _frozen(d: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(d)) if d else _EMPTY


class OutputDecl(Frozen):
    """A declared output (a name or a pattern) and its type."""

    __slots__ = ("name", "type", "origin", "fresh_within")
    name: str
    type: str
    origin: str | None  # e.g. "return of <node>" for a type taken from an annotation
    fresh_within: float | None  # seconds: older than that, `gdag watch` says it is stale

    def __init__(
        self,
        name: str,
        type: str,
        origin: str | None = None,
        fresh_within: float | None = None,
    ) -> None:
        self._set(name=name, type=type, origin=origin, fresh_within=fresh_within)

    @property
    def parsed(self) -> Type:
        return parse_type(self.type) if self.type else BYTES

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            **({"from": self.origin} if self.origin else {}),
            **({"fresh_within": self.fresh_within} if self.fresh_within is not None else {}),
        }


class Node(Frozen):
    """A compiled node: what it runs, what it reads and publishes, and its code hash."""

    __slots__ = (
        "name",
        "kind",
        "command",
        "inputs",
        "publishes",
        "code",
        "mode",
        "when",
        "timeout",
        "env",
        "cwd",
        "speculative",
        "cache",
        "sources",
        "local",
        "secrets",
        "retries",
        "retry_delay",
        "retry_on",
        "pool",
    )
    name: str
    kind: str  # SHELL | PYTHON
    command: str  # the shell command, or module:function
    inputs: Mapping[str, str]  # argument -> output name or pattern
    publishes: tuple[str, ...]
    code: str
    mode: str
    when: str
    timeout: float | None
    env: Mapping[str, str]
    cwd: str
    speculative: bool
    cache: bool
    sources: tuple[str, ...]
    local: bool  # runs on the coordinating machine even with a cluster
    secrets: tuple[str, ...]  # environment variables passed from gdag's, never stored
    retries: int  # attempts after the first failed one
    retry_delay: float  # seconds before the first retry; doubled each time, jittered
    retry_on: tuple[int | str, ...]  # exit statuses (or "timeout") to retry; () any
    pool: str | None  # a pool of [pools]: at most its size of its nodes' sessions at once

    def __init__(
        self,
        *,
        name: str,
        kind: str,
        command: str,
        inputs: Mapping[str, str],
        publishes: tuple[str, ...],
        code: str,
        mode: str = "latest",
        when: str = "any",
        timeout: float | None = None,
        env: Mapping[str, str] = _EMPTY,
        cwd: str = ".",
        speculative: bool = False,
        cache: bool = True,
        sources: tuple[str, ...] = (),
        local: bool = False,
        secrets: tuple[str, ...] = (),
        retries: int = 0,
        retry_delay: float = 1.0,
        retry_on: tuple[int | str, ...] = (),
        pool: str | None = None,
    ) -> None:
        self._set(
            name=name,
            kind=kind,
            command=command,
            inputs=inputs,
            publishes=publishes,
            code=code,
            mode=mode,
            when=when,
            timeout=timeout,
            env=env,
            cwd=cwd,
            speculative=speculative,
            cache=cache,
            sources=sources,
            local=local,
            secrets=secrets,
            retries=retries,
            retry_delay=retry_delay,
            retry_on=retry_on,
            pool=pool,
        )

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
            secrets=tuple(d.get("secrets", ())),
            retries=int(d.get("retries", 0)),
            retry_delay=float(d.get("retry_delay", 1.0)),
            retry_on=tuple(d.get("retry_on", ())),
            pool=d.get("pool"),
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
        if self.secrets:
            d["secrets"] = list(self.secrets)
        if self.retries:
            d["retries"] = self.retries
            if self.retry_delay != 1.0:
                d["retry_delay"] = self.retry_delay
            if self.retry_on:
                d["retry_on"] = list(self.retry_on)
        if self.pool is not None:
            d["pool"] = self.pool
        return d

    @property
    def is_python(self) -> bool:
        return self.kind == PYTHON

    def may_publish(self, output: str) -> bool:
        """Whether `output` is among the node's publishes (by name or pattern)."""
        return any(p == output or (is_pattern(p) and matches(p, output)) for p in self.publishes)

    def subscribes_to(self, output: str) -> bool:
        return self.sees(output) and any(
            t == output or (is_pattern(t) and matches(t, output)) for t in self.inputs.values()
        )

    @property
    def watches_failures(self) -> bool:
        """Whether the node subscribes to failure events (`gdag/failures/...`). Such a
        node's own failures publish none, so two failing notifiers cannot wake each
        other for ever."""
        return any(overlaps(t, FAILURES + "*") for t in self.inputs.values())

    def sees(self, output: str) -> bool:
        """Whether `output` can be among the node's inputs: any but its own failure event
        (a node subscribed to `gdag/failures/*` that fails must not wake itself)."""
        return output != FAILURES + self.name


CATCHUPS = ("latest", "all", "none")  # the first is the default
TICKS = "ticks/"  # a schedule NAME publishes ticks/NAME


class Schedule(Frozen):
    """A `[schedules.NAME]` table: when it ticks, and what a missed stretch publishes.

    Each tick is a publish to `ticks/NAME` (type str) whose value is the scheduled
    time in ISO 8601."""

    __slots__ = ("name", "cron", "every", "timezone", "catchup")
    name: str
    cron: str | None
    every: str | None
    timezone: str | None  # cron only; None is UTC
    catchup: str  # CATCHUPS

    def __init__(
        self,
        name: str,
        *,
        cron: str | None = None,
        every: str | None = None,
        timezone: str | None = None,
        catchup: str = "latest",
    ) -> None:
        self._set(name=name, cron=cron, every=every, timezone=timezone, catchup=catchup)

    @property
    def output(self) -> str:
        return TICKS + self.name

    @property
    def rule_text(self) -> str:
        return f"cron {self.cron}" if self.cron is not None else f"every {self.every}"

    @classmethod
    def from_json(cls, name: str, d: Mapping[str, Any]) -> Schedule:
        return cls(
            name,
            cron=d.get("cron"),
            every=d.get("every"),
            timezone=d.get("timezone"),
            catchup=d.get("catchup", "latest"),
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"catchup": self.catchup}
        if self.cron is not None:
            d["cron"] = self.cron
        if self.every is not None:
            d["every"] = self.every
        if self.timezone is not None:
            d["timezone"] = self.timezone
        return d


class Dag(Frozen):
    """The compiled definition in force: outputs, nodes, and what it was compiled from."""

    __slots__ = (
        "format",
        "source",
        "modules",
        "outputs",
        "nodes",
        "watch",
        "globs",
        "cluster",
        "schedules",
        "large",
        "values_remote",
        "pools",
        "retention",
    )
    format: int
    source: str  # sha256 of the definition file
    modules: tuple[str, ...]
    outputs: Mapping[str, OutputDecl]
    nodes: Mapping[str, Node]
    # Files (relative to the definition) -> sha256; sources patterns -> files matched.
    watch: Mapping[str, str]
    globs: Mapping[str, tuple[str, ...]]
    cluster: str | None  # [cluster] address: where runs send node jobs by default
    schedules: Mapping[str, Schedule]
    # [values] large: values of this many bytes or more are stored as git LFS objects
    # (0: never); None when the definition does not say, which means DEFAULT_LARGE.
    large: int | None
    # [values] remote: an fsspec URL where large values go instead of the git remote's
    # LFS endpoint (hosts without LFS); None: the LFS endpoint.
    values_remote: str | None
    pools: Mapping[str, int]  # [pools]: name -> how many sessions of its nodes at once
    # [retention]: {"grace": seconds, "rules": [{"pattern", "keep_last", "keep_for"}]}
    # as compiled (see gdag.retention); empty when the definition has none.
    retention: Mapping[str, Any]

    def __init__(
        self,
        *,
        format: int,
        source: str,
        modules: tuple[str, ...] = (),
        outputs: Mapping[str, OutputDecl] = _EMPTY,
        nodes: Mapping[str, Node] = _EMPTY,
        watch: Mapping[str, str] = _EMPTY,
        globs: Mapping[str, tuple[str, ...]] = _EMPTY,
        cluster: str | None = None,
        schedules: Mapping[str, Schedule] = _EMPTY,
        large: int | None = None,
        values_remote: str | None = None,
        pools: Mapping[str, int] = _EMPTY,
        retention: Mapping[str, Any] = _EMPTY,
    ) -> None:
        self._set(
            format=format,
            source=source,
            modules=modules,
            outputs=outputs,
            nodes=nodes,
            watch=watch,
            globs=globs,
            cluster=cluster,
            schedules=schedules,
            large=large,
            values_remote=values_remote,
            pools=pools,
            retention=retention,
        )

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Dag:
        """The typed form of a `dag.json` document (older formats read with defaults)."""
        return cls(
            format=int(d.get("format", 0)),
            source=str(d.get("source", "")),
            modules=tuple(d.get("modules", ())),
            outputs=MappingProxyType(
                {
                    n: OutputDecl(n, s.get("type", "bytes"), s.get("from"), s.get("fresh_within"))
                    for n, s in d.get("outputs", {}).items()
                }
            ),
            nodes=MappingProxyType(
                {n: Node.from_json(n, spec) for n, spec in d.get("nodes", {}).items()}
            ),
            watch=_frozen(d.get("watch")),
            globs=MappingProxyType({g: tuple(f) for g, f in d.get("globs", {}).items()}),
            cluster=d.get("cluster"),
            schedules=MappingProxyType(
                {n: Schedule.from_json(n, spec) for n, spec in d.get("schedules", {}).items()}
            ),
            large=d.get("values", {}).get("large"),
            values_remote=d.get("values", {}).get("remote"),
            pools=_frozen(d.get("pools")),
            retention=_frozen(d.get("retention")),
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
        if self.schedules:
            d["schedules"] = {n: s.to_json() for n, s in self.schedules.items()}
        values: dict[str, Any] = {}
        if self.large is not None:
            values["large"] = self.large
        if self.values_remote is not None:
            values["remote"] = self.values_remote
        if values:
            d["values"] = values
        if self.pools:
            d["pools"] = dict(self.pools)
        if self.retention:
            d["retention"] = dict(self.retention)
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

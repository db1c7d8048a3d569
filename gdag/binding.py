"""Type-checking the wiring: every node input must accept every output it can receive.

Producer types come from `[outputs]` declarations (a pattern's type is its
members' type) and from Python nodes' return annotations; consumer types from
Python parameters' annotations. Untyped outputs are checked when values arrive.
"""

from __future__ import annotations

import inspect
import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gdag.errors import DefinitionError
from gdag.names import is_pattern, overlaps
from gdag.types import BYTES, Type

if TYPE_CHECKING:
    from gdag.dag import Dag, Node

JSON_KINDS = ("str", "int", "float", "bool", "json", "list", "dict", "optional", "model", "schema")


def accepts(consumer: Type, producer: Type) -> bool:
    """Whether an input of type `consumer` can take every value of type `producer`."""
    c, p = consumer.kind, producer.kind
    if c == "bytes":
        return p != "dir"  # a directory arrives as a path, never as bytes
    if c == "optional":
        inner = consumer.arg or BYTES
        return (
            accepts(inner, producer.arg or BYTES) if p == "optional" else accepts(inner, producer)
        )
    if p == "optional":
        return False  # None could arrive where the consumer does not take it
    if c == "json":
        return p in JSON_KINDS
    if c == "float":
        return p in ("float", "int")
    if c in ("list", "dict"):
        return p == c and accepts(consumer.arg or BYTES, producer.arg or BYTES)
    if c in ("model", "schema"):
        return p == c and consumer.ref == producer.ref
    return c == p


def from_annotation(ann: Any) -> Type | None:
    """The gdag type a Python annotation asks for; None when it says nothing."""
    if ann is inspect.Parameter.empty or ann is typing.Any or ann is None:
        return None
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            inner = from_annotation(rest[0])
            if inner is None:
                return None
            return Type("optional", inner) if len(rest) < len(args) else inner
        return Type("json")
    if origin is list:
        inner = from_annotation(args[0]) if args else Type("json")
        return Type("list", inner or Type("json"))
    if origin is dict:
        inner = from_annotation(args[1]) if len(args) == 2 else Type("json")
        return Type("dict", inner or Type("json"))
    simple = {
        bytes: "bytes",
        str: "str",
        int: "int",
        float: "float",
        bool: "bool",
        list: "json",
        dict: "json",
        Path: "dir",
    }
    if ann in simple:
        kind = simple[ann]
        return Type("list", Type("json")) if kind == "json" and ann is list else Type(kind)
    if isinstance(ann, type) and hasattr(ann, "model_validate"):
        return Type("model", ref=f"{ann.__module__}:{ann.__qualname__}")
    return None


def producer_types(dag: Dag, target: str) -> list[tuple[str, Type]]:
    """(declared name or pattern, type) of every declaration an input can receive values of."""
    found = []
    for name, decl in dag.outputs.items():
        if name == target or overlaps(name, target) and (is_pattern(name) or is_pattern(target)):
            found.append((name, decl.parsed))
    return found


def member_type(node: Node, arg: str, ann: Type) -> Type:
    """For a pattern input, the annotation is a dict of members: check the member type."""
    return member_type_of(node.inputs[arg], ann)


def member_type_of(target: str, ann: Type) -> Type:
    """The type one value of an input subscribed to `target` is checked against."""
    if is_pattern(target):
        base = ann.arg if ann.kind == "optional" and ann.arg else ann
        if base.kind == "dict" and base.arg is not None:
            return base.arg
        return Type("bytes")
    return ann


def check_bindings(dag: Dag, functions: dict[str, Any], where: str) -> None:
    """Refuse any Python node input that cannot take the type of an output it is bound to."""
    for name, node in dag.nodes.items():
        fn = functions.get(name)
        if fn is None:
            continue
        params = inspect.signature(fn).parameters
        if "inputs" in params and "inputs" not in node.inputs:
            continue  # takes one container of all inputs: typed by `gdag check --stubs`
        for arg, target in node.inputs.items():
            param = params.get(arg)
            if param is None:
                if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
                    raise DefinitionError(
                        f"{where}: [nodes.{name}]: input {arg!r} is not a parameter of "
                        f"{node.command}",
                        hint="name the inputs after the function's parameters",
                    )
                continue
            ann = from_annotation(resolved_hints(fn).get(arg, param.annotation))
            if ann is None:
                continue
            want = member_type(node, arg, ann)
            for out, typ in producer_types(dag, target):
                if not accepts(want, typ):
                    raise DefinitionError(
                        f"{where}: [nodes.{name}]: input {arg!r} is bound to output {out!r} "
                        f"of type {typ}, but {node.command} takes {want}",
                        hint=f"change the annotation of {arg!r} or the type of {out!r}",
                    )


def resolved_hints(fn: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:  # forward references a module cannot resolve: fall back to raw
        return {}


def return_type(fn: Any) -> Type | None:
    return from_annotation(resolved_hints(fn).get("return", inspect.Parameter.empty))


def check_returns(dag: Dag, functions: dict[str, Any], where: str) -> None:
    """A Python node's return annotation must fit its single declared output's type."""
    for name, node in dag.nodes.items():
        fn = functions.get(name)
        pubs = node.publishes
        if fn is None or len(pubs) != 1 or is_pattern(pubs[0]):
            continue
        ret = return_type(fn)
        if ret is None:
            continue
        for out, typ in producer_types(dag, pubs[0]):
            if not accepts(typ, ret if ret.kind != "optional" else ret.arg or ret):
                raise DefinitionError(
                    f"{where}: [nodes.{name}]: {node.command} returns {ret}, "
                    f"but output {out!r} has type {typ}",
                    hint=f"change the return annotation or the type of {out!r}",
                )

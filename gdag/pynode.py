"""Running a Python node's job: import `module:function`, call it with decoded inputs.

Inputs are decoded from the job's bytes by the parameters' annotations (an
untyped output bound to a typed parameter is checked now); return values and
`ctx.publish` go to the executor's `emit` as tagged values that the
coordinator encodes by the output's type.
"""

from __future__ import annotations

import inspect
import json
import tempfile
from pathlib import Path
from typing import Any

from gdag.binding import from_annotation, member_type_of, resolved_hints
from gdag.errors import GdagError, ValueRefusedError
from gdag.job import Emit, Job, Value, check_publishable, tag, write_value
from gdag.names import is_pattern
from gdag.types import Type, check_value, decode_text_value, parse_type, stored_to_display
from gdag.usercode import load_function, source_hash


class Context:
    """Handed to a Python node that takes a `ctx` parameter: publish to dynamic names."""

    def __init__(self, job: Job, emit: Emit) -> None:
        self._job = job
        self._emit = emit
        self.session = job.id
        self.node = job.node

    def publish(self, name: str, value: Any) -> None:
        check_publishable(self._job.node, self._job.publishes, name)
        self._emit(name, tag(value))


def decode(value: Value, tmp: Path, want: Type | None) -> Any:
    """An input value as the Python value a node receives, by its parameter's annotation
    (`want`, for typed and untyped outputs alike): `bytes` gets the value as it was
    published (what `gdag lookup` prints), `str` its text, other types the decoded value,
    checked; without an annotation, a raw value's bytes or a typed value decoded."""
    base = want.arg if want is not None and want.kind == "optional" else want
    if value.tree is not None:
        if base is not None and base.kind != "dir":
            raise ValueRefusedError(
                f"input {value.name!r} is a directory value, which arrives as a path, "
                f"not as {want}",
                hint="annotate the parameter as pathlib.Path",
            )
        target = Path(tempfile.mkdtemp(dir=tmp)) / value.name.replace("/", "_")
        write_value(value, target)
        return target
    data = value.read()
    typ = parse_type(value.type)
    if base is not None and base.kind == "bytes":
        return stored_to_display(data, typ)
    if typ.is_raw:
        if base is None:
            return data
        # An untyped output bound to a typed parameter: checked now (gradual typing).
        decoded = decode_text_value(data, base if base.kind == "str" else want or base, value.name)
    else:
        decoded = json.loads(data)
        if want is not None and want.kind != "json":
            decoded = check_value(decoded, want, value.name)
    return _as_model(want, decoded)


def _as_model(want: Type | None, value: Any) -> Any:
    base = want.arg if want is not None and want.kind == "optional" else want
    if base is None or base.kind != "model" or value is None:
        return value
    from gdag.types import load_model

    return load_model(base.ref or "").model_validate(value)


def call_python(job: Job, tmp: Path, emit: Emit) -> bytes:
    """Call the node's function on the job's inputs; emit what it returns. Its log."""
    fn = load_function(job.command, Path(job.workdir) if job.workdir else None)
    if job.source and source_hash(fn, job.command) != job.source:
        raise GdagError(
            f"node {job.node!r}: {job.command} here is not the code the coordinator "
            f"compiled (source {source_hash(fn, job.command)}, expected {job.source}): "
            "refusing to run other code",
            hint="install the same version of its module where the job runs, or keep the "
            "module in the work tree (it is shipped with the job), or set local = true",
        )
    params = inspect.signature(fn).parameters
    hints = resolved_hints(fn)
    kwargs: dict[str, Any] = {}
    for arg, value in job.inputs.items():
        ann = from_annotation(hints.get(arg, inspect.Parameter.empty))
        want = _member_want(job.targets[arg], ann)
        if value is None:
            kwargs[arg] = None
        elif isinstance(value, Value):
            kwargs[arg] = decode(value, tmp, want)
        else:
            kwargs[arg] = {n: decode(v, tmp, want) for n, v in value.items()}
    if "ctx" in params:
        kwargs["ctx"] = Context(job, emit)
    if "inputs" in params and "inputs" not in job.inputs:
        kwargs["inputs"] = _container(hints.get("inputs"), kwargs)
    missing = [p for p in params if p not in kwargs and params[p].default is inspect._empty]
    if missing:
        raise GdagError(f"node {job.node!r}: function needs {missing}, not among its inputs")
    result = fn(**{k: v for k, v in kwargs.items() if k in params})
    for name, value in _results(job, result):
        check_publishable(job.node, job.publishes, name)
        emit(name, tag(value))
    return b""


def _member_want(target: str, ann: Type | None) -> Type | None:
    """What one value of an input is decoded as: a pattern's members by the value type
    of a `dict[str, T]` annotation (another annotation says nothing about them)."""
    if ann is None:
        return None
    if is_pattern(target):
        base = ann.arg if ann.kind == "optional" and ann.arg else ann
        if base.kind != "dict":
            return None
    return member_type_of(target, ann)


def _container(ann: Any, values: dict[str, Any]) -> Any:
    """All inputs in one object: the generated `<Node>Inputs` class, else a namespace."""
    fields = {k: v for k, v in values.items() if k != "ctx"}
    if isinstance(ann, type):
        return ann(**fields)
    from types import SimpleNamespace

    return SimpleNamespace(**fields)


def _results(job: Job, result: Any) -> list[tuple[str, Any]]:
    if result is None:
        return []
    publishes = job.publishes
    if len(publishes) == 1 and not is_pattern(publishes[0]):
        return [(publishes[0], result)]
    if isinstance(result, dict):
        return list(result.items())
    raise GdagError(
        f"node {job.node!r} returned a {type(result).__name__}, but it publishes "
        f"{len(publishes)} outputs: return a dict of output name -> value, or use ctx.publish"
    )

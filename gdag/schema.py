"""JSON Schema file types (`schema:path/to/file.json`): loading, `$ref`s and checks by jsonschema.

gdag.types imports this module only when it checks a value of a schema type, so
publishing any other type never pays for importing jsonschema.

- The dialect is the schema's `$schema` (default: 2020-12). The schema, and every
  file its `$ref`s reach, is checked against its dialect's metaschema when loaded.
- `$ref`s resolve against the schema file's own location (or its `$id`; a URI under
  the directory of the top schema's `$id` is read from the same place under the
  file's directory). Every `$ref` is followed when the schema is loaded; one that
  leaves the repository, or is on the network, is refused: gdag never downloads.
- `format` is checked for the formats jsonschema checks with the standard library
  alone (FORMATS); others are annotations, as the specification allows.
- Loaded schemas are kept per file for the process, and loaded again once the
  schema or any file it refers to changes (a long `gdag watch` sees edits).
"""

from __future__ import annotations

import json
import os
import re
import reprlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

import referencing.exceptions
import referencing.jsonschema
from jsonschema import FormatChecker, validators
from jsonschema.exceptions import ValidationError, best_match
from jsonschema.protocols import Validator
from jsonschema_specifications import REGISTRY as METASCHEMAS
from referencing import Registry, Resource, Specification

from gdag.errors import DefinitionError, GdagError

LATEST: type[Validator] = validators.Draft202012Validator  # a schema without `$schema`
# Formats that jsonschema checks with the standard library (others need extra packages,
# and a check should not depend on what else happens to be installed).
FORMATS = ("date", "email", "idn-email", "ipv4", "ipv6", "ip-address", "regex", "uuid")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")
_SHORT = reprlib.Repr()
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlevel = 40, 40, 2

# A recursion error on a value less deep than this is a schema that loops (a schema
# recursing with the value takes ~5 frames a level: a value 200 deep checks).
LOOP_DEPTH = 100
DRAFTS: dict[type[Validator], str] = {
    validators.Draft202012Validator: "2020-12",
    validators.Draft201909Validator: "2019-09",
    validators.Draft7Validator: "draft 7",
    validators.Draft6Validator: "draft 6",
    validators.Draft4Validator: "draft 4",
    validators.Draft3Validator: "draft 3",
}

MAX_MESSAGE = 300  # an enum of many values would otherwise fill the terminal

Stamp = tuple[int, int, int]  # st_mtime_ns, st_size, st_ino (editors often replace files)


@dataclass
class Loaded:
    """A compiled schema and the files it was read from, with their stamps when read."""

    validator: Validator
    files: dict[Path, Stamp]

    def is_current(self) -> bool:
        return all(_stamp(path) == stamp for path, stamp in self.files.items())


_cache: dict[tuple[Path, Path], Loaded] = {}


def check_schema(
    value: Any, ref: str, root: str | None, refuse: Callable[[str], Exception], where: str = "value"
) -> Any:
    """Validate `value` against the schema file; return it unchanged or raise refuse(why)."""
    validator = load_schema(ref, root)
    try:
        error = best_match(validator.iter_errors(value))
    except referencing.exceptions.Unresolvable as exc:  # a $dynamicRef, followed only now
        raise DefinitionError(f"JSON Schema {ref!r}: cannot resolve {exc.ref!r}") from None
    except RecursionError:
        if _depth(value) < LOOP_DEPTH:
            raise DefinitionError(
                f"JSON Schema {ref!r} loops: checking even a shallow value never ends",
                hint="a $ref (or allOf, anyOf...) leads back to the same schema without "
                "going into the value",
            ) from None
        raise refuse(f"{where} is nested too deeply to check") from None
    if error is not None:
        raise refuse(f"{value_path(where, error.absolute_path)}: {describe(error)}")
    return value


def load_schema(ref: str, root: str | None) -> Validator:
    """The validator for `schema:path`, loaded afresh when one of its files changed."""
    top = Path(root or ".").resolve()
    path = (top / ref[len("schema:") :]).resolve()
    if not path.is_relative_to(top):
        raise DefinitionError(
            f"JSON Schema {ref!r} is outside the repository ({path})",
            hint="schema paths are relative to the repository's top directory",
        )
    loaded = _cache.get((top, path))
    if loaded is None or not loaded.is_current():
        loaded = _cache[top, path] = _Loader(ref, top).load(path)
    return loaded.validator


def value_path(where: str, path: Iterable[str | int]) -> str:
    """`value.items[2]`: where in the value an error is (keys that are not names quoted)."""
    for part in path:
        if isinstance(part, int):
            where += f"[{part}]"
        elif _KEY.match(part):
            where += f".{part}"
        else:
            where += f"[{part!r}]"
    return where


def describe(error: ValidationError) -> str:
    """jsonschema's message, with a long value in it shortened."""
    text, whole = error.message, repr(error.instance)
    if len(whole) > 60 and whole in text:
        text = text.replace(whole, _SHORT.repr(error.instance), 1)
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


REF_HINT = "a $ref names a file of the repository relative to the schema that holds it"


def _depth(value: Any) -> int:
    """How deeply lists and objects nest in `value` (without recursing)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(item, list | dict):
            stack.extend(
                (sub, depth + 1) for sub in (item.values() if isinstance(item, dict) else item)
            )
    return deepest


def _stamp(path: Path) -> Stamp | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


class _RefError(Exception):
    """Why a `$ref` cannot be followed (raised in retrieval, named with the `$ref`)."""

    def __init__(self, why: str, hint: str = REF_HINT) -> None:
        super().__init__(why)
        self.hint = hint


class _Loader:
    """Reads one schema and every file its `$ref`s reach, checking them all once."""

    def __init__(self, ref: str, top: Path) -> None:
        self.ref = ref
        self.top = top
        self.cls = LATEST
        self.id_base: str | None = None  # the directory of the top schema's $id
        self.file_base = ""
        self.files: dict[Path, Stamp] = {}
        self.retrieved: dict[str, Resource[Any]] = {}
        self.labels: dict[str, str] = {}  # document URI -> path in the repository

    def load(self, path: Path) -> Loaded:
        self.file_base = path.as_uri()
        contents = self.read(path)
        if contents is None:
            raise DefinitionError(
                f"cannot load JSON Schema {self.ref!r}: no such file",
                hint="schema paths are relative to the repository's top directory",
            )
        self.cls = self.dialect(contents, self.label(path))
        self.check(self.cls, contents, self.label(path))
        resource = self.resource(contents)
        top_id = urljoin(self.file_base, resource.id() or "")
        if urlsplit(top_id).netloc:  # an http(s) $id: its directory maps to the file's
            self.id_base = urljoin(top_id, ".")
        self.labels[self.file_base] = self.label(path)
        registry: Registry[Any] = Registry(retrieve=self.retrieve)  # type: ignore[call-arg]
        registry = METASCHEMAS.combine(registry).with_resource(self.file_base, resource)
        self.crawl(resource, registry.resolver(self.file_base), self.file_base, set())
        registry = registry.with_resources(self.retrieved.items())
        # The top schema is reached through its file URI, so that relative $refs resolve
        # against the file when it has no $id.
        validator = self.cls(
            {"$ref": self.file_base}, registry=registry, format_checker=_formats(self.cls)
        )
        return Loaded(validator, self.files)

    def label(self, path: Path) -> str:
        return path.relative_to(self.top).as_posix()

    def read(self, path: Path) -> Any:
        """The JSON in `path` (None if there is no such file), its stamp recorded first."""
        stamp = _stamp(path)
        if stamp is None:
            return None
        self.files[path] = stamp
        try:
            return json.loads(path.read_bytes())
        except OSError as exc:
            raise DefinitionError(
                f"cannot load JSON Schema {self.ref!r}: {self.label(path)}: {exc.strerror}"
            ) from None
        except (ValueError, RecursionError) as exc:
            raise DefinitionError(
                f"cannot load JSON Schema {self.ref!r}: {self.label(path)} is not JSON ({exc})"
            ) from None

    def dialect(self, contents: Any, label: str) -> type[Validator]:
        if not isinstance(contents, dict) or "$schema" not in contents:
            return self.cls
        uri = contents["$schema"]
        try:
            referencing.jsonschema.specification_with(uri if isinstance(uri, str) else "")
        except referencing.jsonschema.UnknownDialect:
            raise DefinitionError(
                f"JSON Schema {self.ref!r}: {label} names an unknown $schema {uri!r}",
                hint="use a JSON Schema draft: 2020-12, 2019-09, 7, 6, 4 or 3 "
                "(e.g. https://json-schema.org/draft/2020-12/schema), or leave $schema out",
            ) from None
        return validators.validator_for(contents, default=self.cls)

    def check(self, cls: type[Validator], contents: Any, label: str) -> None:
        meta = cls(cls.META_SCHEMA, registry=Registry(), format_checker=cls.FORMAT_CHECKER)
        error = best_match(meta.iter_errors(contents))
        if error is not None:
            at = "#/" + "/".join(str(p) for p in error.absolute_path)
            draft = DRAFTS.get(cls, cls.__name__)
            hint = f"it is read as JSON Schema {draft}; name another draft with $schema"
            if list(error.absolute_path)[-1:] == ["items"] and isinstance(error.instance, list):
                hint = f"an array of schemas is `prefixItems` in {draft}; `items` takes one " + (
                    "schema, or name draft 7 in $schema (http://json-schema.org/draft-07/schema#)"
                )
            raise DefinitionError(
                f"JSON Schema {self.ref!r}: {label} is not a valid schema: "
                f"at {at}: {describe(error)}",
                hint=hint,
            )

    def resource(self, contents: Any) -> Resource[Any]:
        spec: Specification[Any] = referencing.jsonschema.specification_with(
            str(self.cls.ID_OF(self.cls.META_SCHEMA)), default=referencing.jsonschema.DRAFT202012
        )
        return Resource.from_contents(contents, default_specification=spec)

    def retrieve(self, uri: str) -> Resource[Any]:
        """Read a `$ref`ed document from the repository: never from anywhere else."""
        if uri not in self.retrieved:
            path = self.local_path(uri)
            contents = self.read(path)
            if contents is None:
                raise _RefError(f"names a missing file ({self.label(path)})")
            self.labels[uri] = self.label(path)
            self.check(self.dialect(contents, self.label(path)), contents, self.label(path))
            self.retrieved[uri] = self.resource(contents)
        return self.retrieved[uri]

    def local_path(self, uri: str) -> Path:
        if self.id_base is not None and uri.startswith(self.id_base):
            uri = urljoin(self.file_base, uri[len(self.id_base) :])
        parts = urlsplit(uri)
        if self.id_base is not None and urlsplit(self.id_base)[:2] == parts[:2]:
            raise _RefError(
                f"resolves to {uri}, outside {self.id_base} (the directory of the top "
                "schema's $id, read from the schema file's directory)",
                hint="a $ref below a schema with a $id stays under that $id's directory",
            )
        if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
            raise _RefError(
                f"is on the network ({uri}): gdag never downloads schemas"
                if parts.netloc
                else f"resolves to {uri}, not to a file of the repository",
                hint="copy that schema into the repository and $ref it by its relative path",
            )
        path = Path(unquote(parts.path)).resolve()
        if not path.is_relative_to(self.top):
            raise _RefError(f"leaves the repository ({path})")
        return path

    def crawl(self, resource: Resource[Any], resolver: Any, base: str, seen: set[int]) -> None:
        """Follow every `$ref` reachable from `resource` now, so that a bad one is a
        DefinitionError when the schema is loaded, whichever values reach it."""
        if id(resource.contents) in seen:
            return
        seen.add(id(resource.contents))
        if resource.id() is not None:
            resolver = resolver.in_subresource(resource)
            base = urljoin(base, resource.id())
        contents = resource.contents
        if isinstance(contents, dict) and isinstance(contents.get("$ref"), str):
            ref = contents["$ref"]
            try:
                resolved = resolver.lookup(ref)
            except referencing.exceptions.Unresolvable as exc:
                raise self.unresolvable(ref, base, exc) from None
            target = urldefrag(urljoin(base, ref))[0] if not ref.startswith("#") else base
            self.crawl(self.resource(resolved.contents), resolved.resolver, target, seen)
        for sub in resource.subresources():
            self.crawl(sub, resolver, base, seen)

    def unresolvable(self, ref: str, base: str, exc: Exception) -> GdagError:
        where = self.labels.get(urldefrag(base)[0], self.labels[self.file_base])
        cause: BaseException | None = exc
        hint = REF_HINT
        while cause is not None:
            if isinstance(cause, GdagError):
                return cause
            if isinstance(cause, _RefError):
                why, hint = str(cause), cause.hint
                break
            cause = cause.__cause__
        else:
            if isinstance(exc, referencing.exceptions.PointerToNowhere):
                why = f"points to nothing ({exc.ref!r} is not in the document)"
            elif isinstance(exc, referencing.exceptions.NoSuchAnchor):
                why = f"names no anchor of the document ({exc.anchor!r})"
            else:
                why = "cannot be resolved"
        return DefinitionError(f"JSON Schema {self.ref!r}: $ref {ref!r} in {where} {why}", hint)


def _formats(cls: type[Validator]) -> FormatChecker:
    """The dialect's own checkers (draft 3 names some formats differently), in FORMATS."""
    checker = FormatChecker(formats=())
    checker.checkers = {k: v for k, v in cls.FORMAT_CHECKER.checkers.items() if k in FORMATS}
    return checker

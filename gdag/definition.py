"""Loading and compiling the definition (`gdag.toml` or `[tool.gdag]`) into `dag.json`.

The compiled form is plain JSON-able data: it is stored in the log, and a
command that finds the definition unchanged (same source hash as the log's
`dag.json`) uses the stored form without compiling again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gdag.dag import CATCHUPS, TICKS, Dag
from gdag.errors import DefinitionError, GdagError
from gdag.names import check_output_name, check_simple_name, env_name, is_pattern, matches
from gdag.records import Frozen
from gdag.types import parse_type

if TYPE_CHECKING:
    from gdag.repo import Store

FORMAT = 2  # bumped whenever compiled nodes gain keys: older dag.json recompiles
DEFINITION_FILE = "gdag.toml"

STARTER = """\
# gdag.toml: the dataflow definition of this repository.
# Every key is optional; see `man gdag` or docs/ for the whole format.
#
# Outputs are named streams of values.  Declaring one fixes its type:
#
# [outputs."photos/new"]
# type = "str"              # bytes (default), str, int, float, bool, json, dir,
#                           # list[T], dict[str, T], T | None, module:Name
#
# [outputs."thumbs/*"]      # a family of dynamic outputs
# type = "bytes"
#
# Nodes subscribe to outputs and publish further outputs:
#
# [nodes.thumbnail]
# run = 'convert "$GDAG_IN_PHOTO" -resize 64x64 "$GDAG_OUT/thumbs/$(basename "$GDAG_IN_PHOTO")"'
# inputs = { photo = "photos/new" }
# publishes = ["thumbs/*"]
# mode = "each"             # run once per event; "latest" (default) coalesces
"""

NODE_KEYS = {
    "run",
    "python",
    "inputs",
    "publishes",
    "mode",
    "when",
    "timeout",
    "env",
    "cwd",
    "speculative",
    "description",
    "cache",
    "sources",
    "local",
    "secrets",
    "retries",
    "retry_delay",
    "retry_on",
    "pool",
}
OUTPUT_KEYS = {"type", "description", "fresh_within"}
DAG_KEYS = {"modules"}
SCHEDULE_KEYS = {"cron", "every", "timezone", "catchup", "description"}
TOP_KEYS = {
    "outputs",
    "nodes",
    "dag",
    "log",
    "cluster",
    "schedules",
    "values",
    "store",
    "pools",
    "retention",
}
SIZE_UNITS = {"b": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}


class Source(Frozen):
    """Where the definition came from and its raw bytes."""

    __slots__ = ("path", "data", "name", "commit")
    path: Path | None
    data: bytes
    # Where a definition inside the repository came from (`HEAD:gdag.toml` of a bare
    # repository), and the commit whose tree holds it.
    name: str | None
    commit: bytes | None

    def __init__(
        self,
        path: Path | None,
        data: bytes,
        name: str | None = None,
        commit: bytes | None = None,
    ) -> None:
        self._set(path=path, data=data, name=name, commit=commit)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def label(self) -> str:
        return self.name or (self.path.name if self.path else DEFINITION_FILE)


def read_source(root: Path | None) -> Source:
    """The definition's bytes: gdag.toml, else [tool.gdag] in pyproject.toml, else empty."""
    if root is None:
        return Source(None, b"")
    path = root / DEFINITION_FILE
    try:
        return Source(path, path.read_bytes())
    except FileNotFoundError:
        if path.is_symlink():
            raise DefinitionError(
                f"{path}: a symbolic link to nothing ({os.readlink(path)})",
                hint="point it at the definition, or remove it",
            ) from None
    except OSError as exc:
        raise DefinitionError(f"{path}: cannot read the definition: {exc.strerror}") from None
    py = root / "pyproject.toml"
    try:
        data = py.read_bytes()
    except FileNotFoundError:
        return Source(None, b"")
    except OSError as exc:
        raise DefinitionError(f"{py}: cannot read it: {exc.strerror}") from None
    if b"[tool.gdag" in data:
        return Source(py, data)
    return Source(None, b"")


DEFINITION_KEY = "gdag.definition"


def read_stored_source(store: Store) -> Source:
    """A bare repository's definition: the blob `git config gdag.definition` names as
    `<rev>:<path>` (a branch, tag, `refs/…`, HEAD or a commit id), by default
    `HEAD:gdag.toml`, else `[tool.gdag]` in `HEAD:pyproject.toml`, else empty."""
    spec = store.config.get(DEFINITION_KEY)
    if spec is None:
        src = _stored_blob(store, "HEAD", DEFINITION_FILE)
        if src is None:
            src = _stored_blob(store, "HEAD", "pyproject.toml")
            src = src if src is not None and b"[tool.gdag" in src.data else None
        return src or Source(None, b"")
    rev, sep, path = spec.partition(":")
    if not sep or not rev or not path.strip("/"):
        raise DefinitionError(
            f"{DEFINITION_KEY} is {spec!r}, not <rev>:<path>",
            hint=f"git config {DEFINITION_KEY} HEAD:gdag.toml",
        )
    found = _stored_blob(store, rev, path.strip("/"))
    if found is None:
        raise DefinitionError(
            f"{DEFINITION_KEY} names {spec}, which is not a file in this repository",
            hint=f"push a commit with {path} to {rev}, or change {DEFINITION_KEY}",
        )
    return found


def _stored_blob(store: Store, rev: str, path: str) -> Source | None:
    """The blob at `rev:path` in the user's repository, or None where there is none."""
    from gdag.refs import LocalRefs

    refs = LocalRefs(store.user_commondir)
    commit: bytes | None = None
    if rev == "HEAD":
        try:
            head = (store.user_gitdir / "HEAD").read_text().strip()
        except OSError:
            return None
        commit = refs.read_ref(head[5:]) if head.startswith("ref: ") else head.encode()
    elif re.fullmatch(r"[0-9a-f]{40}", rev):
        commit = rev.encode()
    else:
        for ref in (rev, f"refs/heads/{rev}", f"refs/tags/{rev}"):
            commit = refs.read_ref(ref) if ref.startswith("refs/") else None
            if commit is not None:
                break
    if commit is None or not store.has(commit):
        return None
    obj = store.read(commit)
    while obj.type_name == b"tag":
        obj = store.read(obj.object[1])  # type: ignore[attr-defined]
    if obj.type_name != b"commit":
        return None
    commit = obj.id
    entry = store.tree_get(obj.tree, [p.encode() for p in path.split("/")])  # type: ignore[attr-defined]
    if entry is None or entry.is_tree:
        return None
    if not store.has(entry.sha):
        raise DefinitionError(
            f"{rev}:{path} is not among this repository's objects (a partial clone?)",
            hint=f"fetch it: git cat-file blob {rev}:{path} >/dev/null",
        )
    return Source(None, store.read_blob(entry.sha), f"{rev}:{path}", commit)


# A definition that names files beside it: Python nodes, [dag] modules, sources.
_NAMES_FILES = re.compile(rb"^\s*(python|modules|sources)\s*=|@node|\[tool\.gdag", re.MULTILINE)
TREES = "trees"  # under the gdag dir: bare repositories' definition commits, unpacked
KEEP_TREES = 3


def with_stored_files(store: Store, src: Source) -> Source:
    """A bare repository's definition that names files beside it (Python nodes, `[dag]
    modules`, `sources`), read from the tree of the commit it came from, unpacked once
    under `gdag/trees/<commit>` in the common git dir: compiled, hashed and shipped to
    nodes as from a work tree. It keeps its label (`HEAD:gdag.toml`)."""
    if src.commit is None or src.name is None or not _NAMES_FILES.search(src.data):
        return src
    root = unpack_commit(store, src.commit)
    return Source(root / src.name.partition(":")[2], src.data, src.name, src.commit)


def unpack_commit(store: Store, commit: bytes) -> Path:
    """The tree of `commit` as files under the gdag dir (written once, atomically; the
    oldest beyond the newest few are removed). Submodules are empty directories."""
    import shutil

    from gdag.values import materialise

    trees = store.gdag_dir / TREES
    target = trees / commit.decode()
    if target.is_dir():
        return target
    trees.mkdir(parents=True, exist_ok=True)
    tmp = trees / f".tmp-{commit.decode()}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    materialise(store, store.read_commit(commit).tree, tmp)
    try:
        os.rename(tmp, target)
    except OSError:  # another process unpacked it first
        shutil.rmtree(tmp, ignore_errors=True)
    done = sorted(
        (p for p in trees.iterdir() if not p.name.startswith(".")),
        key=lambda p: p.stat().st_mtime,
    )
    for old in done[:-KEEP_TREES]:
        if old != target:
            shutil.rmtree(old, ignore_errors=True)
    return target


def parse_source(src: Source) -> dict[str, Any]:
    import tomllib

    try:
        text = src.data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DefinitionError(f"{src.label}: not UTF-8 (byte {exc.start})") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DefinitionError(f"{src.label}: {exc}", hint="fix the TOML syntax there") from None
    except RecursionError:
        raise DefinitionError(f"{src.label}: nested too deeply to read") from None
    if src.label.endswith("pyproject.toml"):
        doc = doc.get("tool", {}).get("gdag", {})
    return doc


def compile_definition(src: Source, load_python: bool = True, digest: Digests | None = None) -> Dag:
    """Check the definition and return its compiled, JSON-able form (dag.json).

    With `load_python=False`, Python nodes are not imported (no source hashes,
    no annotation checks, no @node discovery): enough to write typed stubs.
    """
    toml = parse_source(src)
    where = src.label
    _no_unknown(toml, TOP_KEYS, where, "top level")
    outputs = _compile_outputs(toml.get("outputs", {}), where)
    log_section = toml.get("log", {})
    _no_unknown(log_section, {"follow"}, where, "[log]")
    if log_section.get("follow", "none") not in ("branch", "none"):
        raise DefinitionError(f'{where}: [log] follow must be "branch" or "none"')
    dag_section = toml.get("dag", {})
    _no_unknown(dag_section, DAG_KEYS, where, "[dag]")
    modules = dag_section.get("modules", [])
    if not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
        raise DefinitionError(f"{where}: [dag] modules must be a list of module names")
    root = src.path.parent if src.path else None
    table = dict(toml.get("nodes", {})) if isinstance(toml.get("nodes", {}), dict) else {}
    for name, spec in _decorated_nodes(modules if load_python else [], root, where):
        if name in table:
            raise DefinitionError(f"{where}: node {name!r} is defined twice (table and @node)")
        table[name] = spec
    nodes = _compile_nodes(table, where)
    watch, functions = _hash_python_nodes(nodes, root, where) if load_python else ({}, {})
    globs = _hash_sources(nodes, root, where, watch, digest or PLAIN)
    schedules = _compile_schedules(toml.get("schedules", {}), where, outputs, nodes)
    _type_returns(outputs, nodes, functions)
    _fold_types(outputs, nodes)
    doc: dict[str, Any] = {
        "format": FORMAT,
        "source": src.digest,
        "modules": list(modules),
        "outputs": outputs,
        "nodes": nodes,
        "watch": watch,
    }
    if globs:
        doc["globs"] = globs
    if schedules:
        doc["schedules"] = schedules
    cluster = toml.get("cluster", {})
    _no_unknown(cluster, {"address"}, where, "[cluster]")
    if "address" in cluster:
        if not isinstance(cluster["address"], str) or not cluster["address"].strip():
            raise DefinitionError(f"{where}: [cluster] address must be a non-empty string")
        doc["cluster"] = cluster["address"]
    pools = _compile_pools(toml.get("pools", {}), nodes, where)
    if pools:
        doc["pools"] = pools
    store = toml.get("store", {})
    _no_unknown(store, {"auto_pack"}, where, "[store]")
    if not isinstance(store.get("auto_pack", True), bool):
        raise DefinitionError(f"{where}: [store] auto_pack must be true or false")
    values = toml.get("values", {})
    _no_unknown(values, {"large", "remote", "cache"}, where, "[values]")
    if "cache" in values and parse_size(values["cache"]) is None:
        # A local limit, not part of what runs: checked here, not compiled.
        raise DefinitionError(
            f'{where}: [values] cache must be a size such as "10GiB", not {values["cache"]!r}',
            hint="units are B, KiB, MiB, GiB and TiB (powers of 1024); 0 keeps no synced "
            "large value here",
        )
    if "large" in values:
        doc.setdefault("values", {})["large"] = _size(values["large"], where, "[values] large")
    if "remote" in values:
        doc.setdefault("values", {})["remote"] = _values_remote(values["remote"], where)
    retention = _retention(toml.get("retention", {}), where)
    if retention:
        doc["retention"] = retention
    dag = Dag.from_json(doc)
    if nodes:
        from gdag.graph import check_graph

        check_graph(dag, where)
    if functions:
        from gdag.binding import check_bindings, check_returns

        check_returns(dag, functions, where)
        check_bindings(dag, functions, where)
    return dag


def parse_size(text: object) -> int | None:
    """A size: bytes as a whole number, or a string with a binary unit (`512KiB`,
    `32MiB`, `1GiB`, `0`); None when it is none of those."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text if text >= 0 else None
    if not isinstance(text, str):
        return None
    m = re.fullmatch(r"\s*(\d+)\s*([A-Za-z]*)\s*", text)
    if m is None:
        return None
    unit = m.group(2).lower() or "b"
    return int(m.group(1)) * SIZE_UNITS[unit] if unit in SIZE_UNITS else None


def _size(value: object, where: str, what: str) -> int:
    size = parse_size(value)
    if size is None:
        raise DefinitionError(
            f'{where}: {what} must be a size such as "512KiB", "32MiB" or "1GiB", '
            f"or 0 to turn it off, not {value!r}",
            hint="units are B, KiB, MiB, GiB and TiB (powers of 1024)",
        )
    return size


def _values_remote(url: object, where: str) -> str:
    """`[values] remote`: an fsspec URL (`file:///srv/values`, `s3://bucket/prefix`)."""
    if not isinstance(url, str) or not re.fullmatch(r"[a-z][a-z0-9+.-]*://\S+", url):
        raise DefinitionError(
            f'{where}: [values] remote must be a URL such as "file:///srv/values" or '
            f'"s3://bucket/prefix", not {url!r}',
            hint="any fsspec store works; `pip install 'gdag[s3]'` adds S3",
        )
    return url.rstrip("/")


def _retention(table: object, where: str) -> dict[str, Any]:
    """`[retention]`: `grace` (a duration) and, one table per output pattern, rules for
    how long large values stay (`keep_last`, `keep_for`), in the order written."""
    if not isinstance(table, dict):
        raise DefinitionError(f"{where}: [retention] must be a table")
    found: dict[str, Any] = {}
    rules = []
    for key, value in table.items():
        if key == "grace":
            grace = parse_duration(value)
            if grace is None:
                raise DefinitionError(
                    f'{where}: [retention] grace must be a duration such as "24h" or "0s", '
                    f"not {value!r}",
                    hint="units are ms, s, m, h and d; a number is seconds",
                )
            found["grace"] = grace
            continue
        what = f'[retention."{key}"]'
        if not isinstance(value, dict):
            raise DefinitionError(
                f"{where}: [retention] {key!r} must be grace or a table of rules for the "
                "outputs matching it",
                hint='e.g. [retention."raw/*"] keep_last = 10',
            )
        try:
            check_output_name(key, allow_pattern=True, what="pattern")
        except GdagError as exc:
            raise DefinitionError(f"{where}: {what}: {exc}", hint=exc.hint) from None
        _no_unknown(value, {"keep_last", "keep_for"}, where, what)
        rule: dict[str, Any] = {"pattern": key}
        if "keep_last" in value:
            last = value["keep_last"]
            if isinstance(last, bool) or not isinstance(last, int) or last < 1:
                raise DefinitionError(
                    f"{where}: {what}: keep_last must be a whole number of versions, 1 or "
                    f"more, not {last!r}",
                    hint="the current value is always kept: keep_last = 1 keeps only it",
                )
            rule["keep_last"] = last
        if "keep_for" in value:
            within = parse_duration(value["keep_for"])
            if within is None:
                raise DefinitionError(
                    f'{where}: {what}: keep_for must be a duration such as "30d", '
                    f"not {value['keep_for']!r}",
                    hint="units are ms, s, m, h and d; a number is seconds",
                )
            rule["keep_for"] = within
        if len(rule) == 1:
            raise DefinitionError(
                f"{where}: {what} says nothing to keep",
                hint="give keep_last (versions) or keep_for (a duration), or both",
            )
        rules.append(rule)
    if rules:
        found["rules"] = rules
    return found


def _fold_types(outputs: dict[str, Any], nodes: dict[str, Any]) -> None:
    """A node whose inputs' or outputs' declared types change is stale: fold them in."""
    dag = Dag.from_json({"outputs": outputs})
    for node in nodes.values():
        names = [*node["inputs"].values(), *node["publishes"]]
        sig = json.dumps([str(dag.output_type(n)) for n in names])
        node["code"] = hashlib.sha256((node["code"] + sig).encode()).hexdigest()[:16]


def _type_returns(
    outputs: dict[str, Any], nodes: dict[str, Any], functions: dict[str, Any]
) -> None:
    """An undeclared single output of a Python node takes its return annotation's type."""
    from gdag.binding import return_type

    for name, fn in functions.items():
        pubs = nodes[name]["publishes"]
        if len(pubs) != 1 or is_pattern(pubs[0]):
            continue
        if Dag.from_json({"outputs": outputs}).output_type(pubs[0]) is not None:
            continue
        ret = return_type(fn)
        if ret is not None:
            base = ret.arg if ret.kind == "optional" and ret.arg else ret
            outputs[pubs[0]] = {"type": str(base), "from": f"return of {name}"}


def _decorated_nodes(modules: list[str], root: Path | None, where: str) -> list[tuple[str, Any]]:
    """Nodes declared with the @gdag.node decorator in the listed modules."""
    from gdag.usercode import load_module

    found = []
    for module_name in modules:
        module = load_module(module_name, root, where)
        for attr in sorted(vars(module)):
            spec = getattr(getattr(module, attr), "__gdag_node__", None)
            if isinstance(spec, dict):
                found.append(
                    (
                        spec.get("name") or attr,
                        {
                            "python": f"{module_name}:{attr}",
                            **{k: v for k, v in spec.items() if k != "name" and v is not None},
                        },
                    )
                )
    return found


def _hash_python_nodes(
    nodes: dict[str, Any], root: Path | None, where: str
) -> tuple[dict[str, str], dict[str, Any]]:
    """Fold each Python node's function source into its code hash; (files to watch, functions)."""
    from gdag.usercode import function_identity, load_function

    watch: dict[str, str] = {}
    functions: dict[str, Any] = {}
    for name, node in nodes.items():
        if node["kind"] != "python":
            continue
        try:
            source_hash, path = function_identity(node["command"], root)
            functions[name] = load_function(node["command"], root)
        except GdagError as exc:
            raise DefinitionError(f"{where}: [nodes.{name}]: {exc.message}", exc.hint) from None
        node["code"] = code_hash(node, source_hash)
        if path is not None:
            watch[watch_key(path, root)] = file_digest(path)
    return watch, functions


def watch_key(path: Path, root: Path | None) -> str:
    """How `dag.json` names a file the definition depends on: relative to the definition's
    directory when inside it, so that clones, copies and worktrees check their own."""
    if root is not None:
        try:
            return path.relative_to(root.resolve()).as_posix()
        except ValueError:
            pass
    return str(path)


GLOB_CHARS = frozenset("*?[")
# Never part of a node's sources: git's own directory, and Python's bytecode caches
# (written by running the code, and different per Python version).
NEVER_SOURCES = frozenset({".git", "__pycache__"})


def expand_sources(pattern: str, root: Path) -> list[str]:
    """The regular files (paths relative to `root`, sorted) that a `sources` entry names.

    Glob rules per path segment (`*`, `?`, `[...]`; a leading dot is matched only by a
    leading dot), and `**` for any number of directories. `.git` and `__pycache__` are
    never entered, `*.pyc` never matched: a pattern is expanded on every command that
    checks the definition, and bytecode is not code the user wrote."""
    parts = [seg for seg in pattern.strip("/").split("/") if seg]
    parts = [seg for i, seg in enumerate(parts) if not (seg == "**" and parts[i - 1 : i] == ["**"])]
    pattern = "/".join(parts)
    first = next((i for i, seg in enumerate(parts) if GLOB_CHARS & set(seg)), None)
    if first is None:
        if (root / pattern).is_dir():  # a directory: every file below it
            return expand_sources(f"{pattern.rstrip('/')}/**", root)
        return [pattern] if (root / pattern).is_file() else []
    found: set[str] = set()
    _walk_sources(root.joinpath(*parts[:first]), parts[first:], "/".join(parts[:first]), found)
    return sorted(found)


def _walk_sources(directory: Path, rest: list[str], rel: str, found: set[str]) -> None:
    import os
    from fnmatch import fnmatchcase

    seg, prefix = rest[0], f"{rel}/" if rel else ""
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    if seg == "**":  # zero or more directories; last, every file below
        if len(rest) > 1:
            _walk_sources(directory, rest[1:], rel, found)
        for entry in entries:
            if entry.name.startswith(".") or entry.name in NEVER_SOURCES:
                continue
            if entry.is_dir(follow_symlinks=False):
                _walk_sources(Path(entry.path), rest, prefix + entry.name, found)
            elif len(rest) == 1 and entry.is_file() and not entry.name.endswith((".pyc", ".pyo")):
                found.add(prefix + entry.name)
        return
    for entry in entries:
        if entry.name in NEVER_SOURCES or not fnmatchcase(entry.name, seg):
            continue
        if entry.name.endswith((".pyc", ".pyo")):
            continue
        if entry.name.startswith(".") and not seg.startswith("."):
            continue
        if len(rest) == 1:
            if entry.is_file():
                found.add(prefix + entry.name)
        elif entry.is_dir():
            _walk_sources(Path(entry.path), rest[1:], prefix + entry.name, found)


def _check_source_pattern(pattern: Any, where: str, what: str) -> str:
    if not isinstance(pattern, str) or not pattern.strip():
        raise DefinitionError(f"{where}: {what}: sources must be a list of paths or patterns")
    if pattern.startswith("/") or ".." in pattern.split("/") or "\0" in pattern:
        raise DefinitionError(
            f"{where}: {what}: sources: {pattern!r} is not inside the repository",
            hint="sources are relative paths or patterns without '..', e.g. scripts/*.sh",
        )
    return pattern


def _hash_sources(
    nodes: dict[str, Any],
    root: Path | None,
    where: str,
    watch: dict[str, str],
    digest: Digests,
) -> dict[str, list[str]]:
    """Fold the content of each node's `sources` files into its code hash; add the files
    to `watch`, and return every glob pattern with what it matched (new files count)."""
    globs: dict[str, list[str]] = {}
    for name, node in nodes.items():
        patterns = node.get("sources", [])
        if not patterns:
            continue
        what = f"[nodes.{name}]"
        if root is None:
            raise DefinitionError(f"{where}: {what}: sources need a definition file")
        real_root = root.resolve()
        digests: dict[str, str] = {}
        for pattern in patterns:
            files = expand_sources(pattern, root)
            if not files:
                raise DefinitionError(
                    f"{where}: {what}: sources: {pattern!r} matches no file",
                    hint=f"paths and patterns are relative to {root}",
                )
            for rel in files:
                path = (root / rel).resolve()
                if not path.is_relative_to(real_root):
                    raise DefinitionError(
                        f"{where}: {what}: sources: {rel!r} leads outside the repository"
                    )
                digests[rel] = watch[rel] = digest(path)
            if files != [pattern]:  # a pattern or a directory: new files count too
                globs[pattern] = files
        extra = json.dumps(sorted(digests.items()))
        node["code"] = hashlib.sha256((node["code"] + extra).encode()).hexdigest()[:16]
    return globs


def file_digest(path: Path | str) -> str:
    """The sha256 of a file's content, read a chunk at a time ("" when unreadable)."""
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return ""


class Digests:
    """File digests, with those of big files remembered by (mtime, size, inode) in a JSON
    file, so that every command checking the definition does not read them again.

    A file changed within 2 s of being hashed is not remembered (a later edit in the
    same clock tick, with the same size, would look unchanged: git's "racily clean")."""

    BIG = 1 << 20
    LIMIT = 4096  # entries kept

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._known: dict[str, list[Any]] | None = None

    def _load(self) -> dict[str, list[Any]]:
        if self._known is None:
            self._known = {}
            if self.path is not None:
                try:
                    loaded = json.loads(self.path.read_bytes())
                    self._known = loaded if isinstance(loaded, dict) else {}
                except (OSError, ValueError):
                    pass
        return self._known

    def __call__(self, path: Path | str) -> str:
        import os
        import time

        try:
            st = os.stat(path)
        except OSError:
            return ""
        if self.path is None or st.st_size < self.BIG:
            return file_digest(path)
        key, stamp = os.path.abspath(path), [st.st_mtime_ns, st.st_size, st.st_ino]
        known = self._load()
        entry = known.get(key)
        if isinstance(entry, list) and entry[:3] == stamp:
            return str(entry[3])
        digest = file_digest(path)
        if time.time_ns() - st.st_mtime_ns > 2_000_000_000:
            known[key] = [*stamp, digest]
            while len(known) > self.LIMIT:
                known.pop(next(iter(known)))
            self._save()
        return digest

    def _save(self) -> None:
        import os
        import tempfile

        assert self.path is not None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".digests.", dir=self.path.parent)
            with os.fdopen(fd, "w") as f:
                json.dump(self._known, f)
            os.replace(tmp, self.path)
        except OSError:
            pass  # only a cache


PLAIN = Digests(None)


def is_current(dag: Dag, src: Source, digest: Digests = PLAIN) -> bool:
    """Whether a compiled definition still matches its sources (toml and Python files)."""
    if dag.source != src.digest or dag.format != FORMAT:
        return False
    root = src.path.parent if src.path is not None else Path()
    if not all(digest(root / p) == h for p, h in dag.watch.items()):
        return False
    return all(expand_sources(g, root) == list(files) for g, files in dag.globs.items())


def _no_unknown(table: Any, allowed: set[str], where: str, what: str) -> None:
    if not isinstance(table, dict):
        raise DefinitionError(f"{where}: {what} must be a table")
    for key in table:
        if key not in allowed:
            raise DefinitionError(
                f"{where}: {what}: unknown key {key!r}",
                hint=f"allowed keys: {', '.join(sorted(allowed))}",
            )


def _compile_outputs(table: Any, where: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise DefinitionError(f"{where}: [outputs] must be a table")
    out: dict[str, Any] = {}
    for name, spec in sorted(table.items()):
        what = f'[outputs."{name}"]'
        _named(check_output_name, name, where, what, allow_pattern=True)
        if not isinstance(spec, dict):
            raise DefinitionError(f'{where}: {what} must be a table, e.g. {{ type = "str" }}')
        _no_unknown(spec, OUTPUT_KEYS, where, what)
        try:
            typ = parse_type(str(spec.get("type", "bytes")))
        except GdagError as exc:
            raise DefinitionError(f"{where}: {what}: {exc.message}", exc.hint) from None
        out[name] = {"type": str(typ)}
        if "fresh_within" in spec:
            within = parse_duration(spec["fresh_within"])
            if not within:
                raise DefinitionError(
                    f"{where}: {what}: fresh_within = {spec['fresh_within']!r} is not a "
                    "positive duration",
                    hint='e.g. fresh_within = "1h" (s, m, h, d; a number is seconds)',
                )
            out[name]["fresh_within"] = within
    return out


def _compile_schedules(
    table: Any, where: str, outputs: dict[str, Any], nodes: dict[str, Any]
) -> dict[str, Any]:
    """`[schedules.NAME]`: each publishes `ticks/NAME` (declared here, type str)."""
    if not isinstance(table, dict):
        raise DefinitionError(f"{where}: [schedules] must be a table")
    compiled: dict[str, Any] = {}
    for name, spec in sorted(table.items()):
        what = f"[schedules.{name}]"
        _named(check_simple_name, name, where, what, what="schedule")
        if not isinstance(spec, dict):
            raise DefinitionError(f'{where}: {what} must be a table, e.g. {{ every = "15m" }}')
        _no_unknown(spec, SCHEDULE_KEYS, where, what)
        compiled[name] = _compile_schedule(spec, where, what)
        output = TICKS + name
        if output in outputs:
            raise DefinitionError(
                f'{where}: [outputs."{output}"]: schedule {name!r} publishes {output}',
                hint=f"drop the declaration: {output} is a str holding the scheduled time",
            )
        for node, body in nodes.items():
            pubs = body["publishes"]
            if any(p == output or (is_pattern(p) and matches(p, output)) for p in pubs):
                raise DefinitionError(
                    f"{where}: [nodes.{node}]: publishes {output}, which schedule {name!r} "
                    "publishes",
                    hint="a node subscribes to a schedule's ticks; it cannot publish them",
                )
        outputs[output] = {"type": "str", "from": f"schedule {name}"}
    return compiled


def _compile_schedule(spec: dict[str, Any], where: str, what: str) -> dict[str, Any]:
    import zoneinfo

    from gdag.cron import Cron, Every, RuleError

    if ("cron" in spec) == ("every" in spec):
        raise DefinitionError(
            f"{where}: {what}: needs exactly one of 'cron' or 'every'",
            hint='e.g. cron = "0 2 * * *" (minute hour day month weekday) or every = "15m"',
        )
    out: dict[str, Any] = {"catchup": _choice(spec, "catchup", CATCHUPS, where, what)}
    for key in ("cron", "every", "timezone"):
        if key in spec and not isinstance(spec[key], str):
            raise DefinitionError(f"{where}: {what}: {key} must be a string")
    try:
        if "every" in spec:
            if "timezone" in spec:
                raise DefinitionError(
                    f"{where}: {what}: timezone applies to cron rules only",
                    hint="intervals count from the Unix epoch; drop timezone",
                )
            Every(spec["every"])
            out["every"] = spec["every"]
            return out
        tz = spec.get("timezone")
        try:
            zone = zoneinfo.ZoneInfo(tz) if tz is not None else None
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise DefinitionError(
                f"{where}: {what}: unknown timezone {tz!r}",
                hint="an IANA name such as Europe/Paris or America/New_York",
            ) from None
        Cron(spec["cron"], *((zone,) if zone is not None else ()))
    except RuleError as exc:
        raise DefinitionError(f"{where}: {what}: {exc}") from None
    out["cron"] = spec["cron"]
    if tz is not None:
        out["timezone"] = tz
    return out


def _named(check: Any, name: str, where: str, label: str, **kw: Any) -> None:
    try:
        check(name, **kw)
    except GdagError as exc:
        raise DefinitionError(f"{where}: {label}: {exc.message}", exc.hint) from None


def _compile_nodes(table: Any, where: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise DefinitionError(f"{where}: [nodes] must be a table")
    nodes: dict[str, Any] = {}
    for name, spec in sorted(table.items()):
        what = f"[nodes.{name}]"
        _named(check_simple_name, name, where, what, what="node")
        if not isinstance(spec, dict):
            raise DefinitionError(f"{where}: {what} must be a table")
        _no_unknown(spec, NODE_KEYS, where, what)
        nodes[name] = _compile_node(spec, where, what)
    return nodes


def _compile_node(spec: dict[str, Any], where: str, what: str) -> dict[str, Any]:
    if ("run" in spec) == ("python" in spec):
        raise DefinitionError(f"{where}: {what}: needs exactly one of 'run' or 'python'")
    inputs = spec.get("inputs", {})
    if not isinstance(inputs, dict):
        raise DefinitionError(f"{where}: {what}: 'inputs' must be a table of name = output")
    for arg, output in inputs.items():
        _named(check_simple_name, arg, where, f"{what} inputs", what="input")
        if not isinstance(output, str):
            raise DefinitionError(f"{where}: {what}: input {arg!r} must name an output")
        _named(check_output_name, output, where, f"{what} inputs.{arg}", allow_pattern=True)
    _check_env_names(list(inputs), where, what)
    publishes = spec.get("publishes", [])
    if isinstance(publishes, str):
        publishes = [publishes]
    if not isinstance(publishes, list) or not all(isinstance(p, str) for p in publishes):
        raise DefinitionError(f"{where}: {what}: 'publishes' must be a list of output names")
    for p in publishes:
        _named(check_output_name, p, where, f"{what} publishes", allow_pattern=True)
    node = {
        "kind": "shell" if "run" in spec else "python",
        "command": spec.get("run") or spec.get("python"),
        "inputs": dict(sorted(inputs.items())),
        "publishes": sorted(publishes),
        "mode": _choice(spec, "mode", ("latest", "each"), where, what),
        "when": _choice(spec, "when", ("any", "all"), where, what),
        "timeout": _timeout(spec, where, what),
        "env": _env(spec, where, what),
        "cwd": str(spec.get("cwd", ".")),
        "speculative": bool(spec.get("speculative", False)),
        "cache": bool(spec.get("cache", True)),
    }
    sources = spec.get("sources", [])
    if isinstance(sources, str):
        sources = [sources]
    if not isinstance(sources, list):
        raise DefinitionError(f"{where}: {what}: sources must be a list of paths or patterns")
    if sources:
        node["sources"] = sorted({_check_source_pattern(p, where, what) for p in sources})
    local = spec.get("local", False)
    if not isinstance(local, bool):
        raise DefinitionError(f"{where}: {what}: local must be true or false")
    if local:  # absent when false: definitions without it compile to the same bytes
        node["local"] = True
    secrets = _secrets(spec, spec.get("env") or {}, where, what)
    if secrets:  # names only: values come from gdag's environment, never the log
        node["secrets"] = secrets
    node.update(_retries(spec, where, what))  # absent unless set, like local
    if "pool" in spec:  # checked against [pools] once every node is compiled
        if not isinstance(spec["pool"], str):
            raise DefinitionError(f"{where}: {what}: pool must name a pool of [pools]")
        node["pool"] = spec["pool"]
    if not isinstance(node["command"], str) or not node["command"].strip():
        raise DefinitionError(f"{where}: {what}: the command must be a non-empty string")
    node["code"] = code_hash(node)
    return node


def _check_env_names(args: list[str], where: str, what: str) -> None:
    """Two inputs must not map to one $GDAG_IN_<NAME> variable (`a-b` and `a_b` would)."""
    seen: dict[str, str] = {}
    for arg in args:
        var = env_name(arg)
        if var in seen:
            raise DefinitionError(
                f"{where}: {what}: inputs {seen[var]!r} and {arg!r} would both be ${var}",
                hint="rename one of them",
            )
        seen[var] = arg


def _choice(spec: dict[str, Any], key: str, allowed: tuple[str, ...], where: str, what: str) -> str:
    value = spec.get(key, allowed[0])
    if value not in allowed:
        raise DefinitionError(
            f"{where}: {what}: {key} = {value!r} is not one of {', '.join(allowed)}"
        )
    return str(value)


def _timeout(spec: dict[str, Any], where: str, what: str) -> float | None:
    value = spec.get("timeout")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise DefinitionError(f"{where}: {what}: timeout must be a positive number of seconds")
    return float(value)


def _compile_pools(table: Any, nodes: dict[str, Any], where: str) -> dict[str, int]:
    """[pools] NAME = size; each node's `pool` names one of them."""
    if not isinstance(table, dict):
        raise DefinitionError(f"{where}: [pools] must be a table of pool = size")
    for name, size in table.items():
        check_simple_name(name, "pool")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise DefinitionError(
                f"{where}: [pools] {name} = {size!r}: a pool's size is a whole number from 1",
                hint=f"{name} = 1",
            )
    for node_name, node in nodes.items():
        pool = node.get("pool")
        if pool is not None and pool not in table:
            raise DefinitionError(
                f"{where}: [nodes.{node_name}]: pool = {pool!r} is not in [pools]",
                hint=f"declare it: [pools] {pool} = 1" if isinstance(pool, str) else None,
            )
    return dict(sorted(table.items()))


MAX_RETRIES = 100
DEFAULT_RETRY_DELAY = 1.0
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*\Z")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: object) -> float | None:
    """Seconds from `5`, `2.5`, `"500ms"`, `"5s"`, `"10m"`, `"1h"` or `"2d"`; None if not
    one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if value >= 0 else None
    m = _DURATION.match(value) if isinstance(value, str) else None
    return float(m.group(1)) * _UNITS[m.group(2)] if m else None


def _retries(spec: dict[str, Any], where: str, what: str) -> dict[str, Any]:
    """retries = N, retry_delay (the first wait; doubled each time, jittered) and
    retry_on (exit codes, or "timeout"; default: any failure)."""
    found: dict[str, Any] = {}
    retries = spec.get("retries", 0)
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= MAX_RETRIES:
        raise DefinitionError(
            f"{where}: {what}: retries must be a whole number from 0 to {MAX_RETRIES}"
        )
    if retries:
        found["retries"] = retries
    if "retry_delay" in spec:
        delay = parse_duration(spec["retry_delay"])
        if delay is None:
            raise DefinitionError(
                f"{where}: {what}: retry_delay = {spec['retry_delay']!r} is not a duration",
                hint='e.g. retry_delay = "5s" (ms, s, m, h; a number is seconds)',
            )
        if delay != DEFAULT_RETRY_DELAY:  # the default is not stored (as Node.to_json)
            found["retry_delay"] = delay
    if "retry_on" in spec:
        codes = spec["retry_on"]
        if (
            not isinstance(codes, list)
            or not codes
            or not all(
                code == "timeout" or (type(code) is int and 1 <= code <= 255) for code in codes
            )
        ):
            raise DefinitionError(
                f'{where}: {what}: retry_on must list exit statuses (1-255) or "timeout"',
                hint='e.g. retry_on = [75, "timeout"]',
            )
        found["retry_on"] = sorted(set(codes), key=str)
    if ("retry_delay" in spec or "retry_on" in spec) and not retries:
        raise DefinitionError(f"{where}: {what}: retry_delay and retry_on need retries = N (N > 0)")
    return found


SECRET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _secrets(spec: dict[str, Any], env: dict[str, Any], where: str, what: str) -> list[str]:
    names = spec.get("secrets", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise DefinitionError(
            f"{where}: {what}: secrets must be a list of environment variable names",
            hint='secrets = ["API_TOKEN"]',
        )
    for name in names:
        if not SECRET_NAME.match(name) or name.startswith("GDAG_"):
            raise DefinitionError(
                f"{where}: {what}: secrets: {name!r} is not an environment variable name "
                "gdag can pass",
                hint="letters, digits and _, not starting with a digit or GDAG_",
            )
        if name in env:
            raise DefinitionError(
                f"{where}: {what}: {name} is both a secret and in env (which is stored in the log)",
                hint="keep the value out of gdag.toml: leave it in secrets only",
            )
    return sorted(set(names))


def _env(spec: dict[str, Any], where: str, what: str) -> dict[str, str]:
    env = spec.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise DefinitionError(f"{where}: {what}: env must be a table of strings")
    for key, value in env.items():
        if not key or "=" in key or "\0" in key or "\0" in value:
            raise DefinitionError(
                f"{where}: {what}: env: {key!r} = {value!r} cannot be an environment variable",
                hint="names are non-empty without '=' and NUL; values have no NUL",
            )
        if key.startswith("GDAG_"):
            raise DefinitionError(
                f"{where}: {what}: env: {key} is gdag's to set (GDAG_* names are reserved)",
                hint="rename the variable",
            )
    return dict(sorted(env.items()))


def code_hash(node: dict[str, Any], extra: str = "") -> str:
    """What makes a node's results valid: its command, its interface, its function's source."""
    keys = ("kind", "command", "inputs", "publishes", "mode", "when", "env", "cwd")
    blob = json.dumps({k: node[k] for k in keys}, sort_keys=True).encode() + extra.encode()
    return hashlib.sha256(blob).hexdigest()[:16]

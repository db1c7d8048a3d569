"""Following the current git branch: one log per branch, forked when a branch is first seen.

The log in force is read from `HEAD` at every command (one small file read).
A branch seen for the first time gets a log that starts at the tip of the log
of the branch HEAD was on before (from HEAD's reflog), else of the default
log, so the new log shares the history before the fork. A detached HEAD uses
the default log.
"""

from __future__ import annotations

import re

from gdag.log import LOG_PREFIX
from gdag.names import check_simple_name
from gdag.repo import Store

DEFAULT_LOG = "main"


def current_branch(store: Store) -> str | None:
    """The branch HEAD points to, or None when HEAD is detached."""
    try:
        head = (store.user_gitdir / "HEAD").read_text().strip()
    except OSError:
        return None
    if head.startswith("ref: refs/heads/"):
        return head[len("ref: refs/heads/") :]
    return None


def log_for_branch(branch: str) -> str:
    """A log name for a branch: `/` becomes `--`, other characters outside names become `-`."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", branch.replace("/", "--"))
    name = re.sub(r"\.\.+", ".", name)
    if not re.match(r"[A-Za-z0-9_]", name):
        name = "_" + name
    if name.endswith(".lock"):
        name = name[: -len(".lock")] + "-lock"
    return check_simple_name(name[:200], "log")


def previous_branch(store: Store, branch: str) -> str | None:
    """The branch HEAD left when it last moved to `branch` (from HEAD's reflog)."""
    try:
        lines = (store.user_gitdir / "logs" / "HEAD").read_text(errors="replace").splitlines()
    except OSError:
        return None
    suffix = f" to {branch}"
    for line in reversed(lines):
        message = line.split("\t", 1)[-1]
        if message.startswith("checkout: moving from ") and message.endswith(suffix):
            previous = message[len("checkout: moving from ") : -len(suffix)]
            return previous if previous != branch else None
    return None


def following_log(store: Store, default: str = DEFAULT_LOG) -> str:
    """The log of the current branch, forking it from its parent's log on first sight."""
    branch = current_branch(store)
    if branch is None:
        return default
    name = log_for_branch(branch)
    ref = LOG_PREFIX + name
    if store.read_ref(ref) is None:
        parent = previous_branch(store, branch)
        source = store.read_ref(LOG_PREFIX + log_for_branch(parent)) if parent else None
        source = source or store.read_ref(LOG_PREFIX + default)
        if source is not None:
            store.cas_ref(ref, None, source)  # losing this race means someone forked it
    return name


def follows_branch(store: Store) -> bool:
    """Whether the definition says `[log] follow = "branch"` (cheap when it does not)."""
    if store.workdir is None:
        return False
    try:
        data = (store.workdir / "gdag.toml").read_bytes()
    except OSError:
        return False
    if b"follow" not in data:
        return False
    import tomllib

    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return False  # the compile reports it properly
    return doc.get("log", {}).get("follow") == "branch"

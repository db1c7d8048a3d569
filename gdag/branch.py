"""Following the current git branch: one log per branch, forked when a branch is first seen.

The log in force is read from `HEAD` at every command (one small file read).
A branch seen for the first time gets a log that starts at the tip of the log
of the branch HEAD was on before (from HEAD's reflog), else of the default
log, so the new log shares the history before the fork. A detached HEAD uses
the log of the branch it works for: the branch being rebased or bisected, else
the branch HEAD last left (from HEAD's reflog), else the default log.
"""

from __future__ import annotations

import re

from gdag.errors import GdagError
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


def _reflog(store: Store) -> list[str]:
    """HEAD's reflog messages, oldest first."""
    try:
        text = (store.user_gitdir / "logs" / "HEAD").read_text(errors="replace")
    except OSError:
        return []
    return [line.split("\t", 1)[-1] for line in text.splitlines()]


def _left_branch(store: Store, messages: list[str], other_than: str | None) -> str | None:
    """The branch the latest checkout among `messages` left, looking past detached ones."""
    for message in reversed(messages):
        if message.startswith("checkout: moving from "):
            source = message[len("checkout: moving from ") :].partition(" to ")[0]
            if source != other_than and _is_branch(store, source):
                return source
    return None


def _is_branch(store: Store, name: str) -> bool:
    from gdag.refs import LocalRefs

    if not name or re.fullmatch(r"[0-9a-f]{40}", name):
        return False
    return LocalRefs(store.user_commondir).read_ref("refs/heads/" + name) is not None


def previous_branch(store: Store, branch: str) -> str | None:
    """The branch HEAD left when it last moved to `branch` (from HEAD's reflog); when it
    came from a detached HEAD, the branch that HEAD was detached from."""
    messages = _reflog(store)
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].startswith("checkout: moving from ") and messages[i].endswith(
            f" to {branch}"
        ):
            return _left_branch(store, messages[: i + 1], branch)
    return None


def detached_branch(store: Store) -> str | None:
    """The branch a detached HEAD works for: a rebase's or bisect's, else the one HEAD left."""
    for name in ("rebase-merge/head-name", "rebase-apply/head-name", "BISECT_START"):
        try:
            text = (store.user_gitdir / name).read_text().strip()
        except OSError:
            continue
        branch = text.removeprefix("refs/heads/")
        if _is_branch(store, branch):
            return branch
    return _left_branch(store, _reflog(store), None)


def following_log(store: Store, default: str = DEFAULT_LOG) -> str:
    """The log of the current branch, forking it from its parent's log on first sight."""
    branch = current_branch(store) or detached_branch(store)
    if branch is None:
        return default
    name = log_for_branch(branch)
    ref = LOG_PREFIX + name
    if store.read_ref(ref) is None:
        for parent in _parents(store, branch):
            source = store.read_ref(LOG_PREFIX + log_for_branch(parent))
            if source is not None:
                store.cas_ref(ref, None, source)  # losing this race means someone forked it
                break
        else:
            source = store.read_ref(LOG_PREFIX + default)
            if source is not None:
                store.cas_ref(ref, None, source)
    return name


def _parents(store: Store, branch: str) -> list[str]:
    """Whose log a new branch's log forks from, in order: the branch HEAD left for it, the
    branch it was created from (its reflog), the main worktree's branch (a linked worktree's
    new branch was made from there)."""
    found = [previous_branch(store, branch)]
    try:
        first = (store.user_commondir / "logs" / "refs" / "heads" / branch).open().readline()
    except OSError:
        first = ""
    created = first.partition("\t")[2].strip().removeprefix("branch: Created from ")
    found.append(created.removeprefix("refs/heads/") if created != first.strip() else None)
    try:
        head = (store.user_commondir / "HEAD").read_text().strip()
    except OSError:
        head = ""
    found.append(head.removeprefix("ref: refs/heads/") if head.startswith("ref: ") else None)
    return [p for p in found if p and p != branch and _is_branch(store, p)]


def follows_branch(store: Store) -> bool:
    """Whether the definition says `[log] follow = "branch"` (cheap when it does not)."""
    try:
        if store.workdir is None:  # a bare repository's definition is inside it
            from gdag.definition import read_stored_source

            data = read_stored_source(store).data
        else:
            data = (store.workdir / "gdag.toml").read_bytes()
    except (OSError, GdagError):
        return False
    if b"follow" not in data:
        return False
    import tomllib

    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return False  # the compile reports it properly
    return doc.get("log", {}).get("follow") == "branch"

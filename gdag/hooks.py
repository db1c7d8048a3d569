"""Git hooks: small shims that queue git events, published as typed outputs by gdag.

A shim is recognised by its marker line. A foreign hook in its place is kept
as `<hook>.gdag-chained`, run with the same arguments and input, and put back
on uninstall; where pre-commit manages a hook, the shim is pre-commit's
`<hook>.legacy` instead. The shim never changes the exit status git sees from
the chained hook, and never waits for gdag: it writes what names its event to
the queue (`gdag.hookqueue`) and one background gdag publishes the queue in
order and runs the subscribers, its output in `.git/gdag/hooks.log`.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gdag import gitcmd
from gdag.errors import GdagError, UsageError
from gdag.hookevents import commit_details, payloads
from gdag.repo import Store

if TYPE_CHECKING:
    from gdag.hookqueue import Event
    from gdag.workspace import Workspace

MARKER = "# gdag-hook-shim"  # a version follows: v1 backgrounded gdag, v2 spools
VERSION = "v2"
CHAINED = ".gdag-chained"
LEGACY = ".legacy"  # pre-commit's name for the hook it found in its place
HOOKS = ("post-commit", "post-merge", "post-checkout", "post-rewrite", "post-receive")
CLIENT_HOOKS = HOOKS[:4]  # what `gdag hooks install` installs unless told
GUARD = "GDAG_HOOK_GUARD"
ERRORS_FILE = "hook-errors"

# What the shim asks git: one process gives the store, the git dir, the work tree,
# HEAD and its ref (a server hook has no work tree, and no HEAD that names the push).
# The common dir comes relative to the current directory where it is not absolute (no
# `--path-format=absolute`: git before 2.31 would print it back as a line of output).
QUERY = "git rev-parse --git-common-dir --absolute-git-dir"
WORKTREE_QUERY = QUERY + " --show-toplevel HEAD --symbolic-full-name HEAD"

SHIM = r"""#!/bin/sh
{marker} {version}
# Installed by `gdag hooks install`; `gdag hooks uninstall` removes it (and puts
# back any hook it chained). It never holds git up: it writes what identifies this
# event to gdag's queue (.git/gdag/spool/) and one gdag in the background publishes
# the queue in order.
hook={hook}
python={python}
status=0
queued=
info=
# Recursion guard: git commands run by gdag's own nodes do not publish again.
# (The query alone in its $(...), so the shell execs git without another fork.)
if [ -z "${guard}" ]; then info=$({query} 2>/dev/null); fi
if [ -n "$info" ]; then
    nl='
'
    common=${{info%%"$nl"*}}
    case $common in
    /*) ;;
    *) common="$PWD/$common"; info="$common$nl${{info#*"$nl"}}" ;;
    esac
    spool="$common/gdag/spool"
    # Capture order: a counter, all shell builtins (a process costs git ~1-4 ms).
    seq=0
    [ -d "$spool" ] || mkdir -p "$spool" 2>/dev/null
    [ -f "$spool/seq" ] && read seq 2>/dev/null <"$spool/seq"
    case $seq in ''|*[!0-9]*) seq=0 ;; esac
    seq=$((seq + 1))
    echo "$seq" >"$spool/seq" 2>/dev/null
    queued="$spool/$seq-$$.event"
    tmp={tmp}
    if ! {{
        printf 'gdag-event 1\n%s\n%s\n%s\n--args %s\n' "$hook" "$seq" "$info" "$#"
        for arg in "$@"; do printf '%s\n' "$arg"; done
        printf -- '--stdin\n'
    }} >"$tmp" 2>/dev/null; then
        queued=
    fi
fi
# The hook this shim chained; pre-commit's install renames a shim `.legacy` and its
# uninstall renames it back, so the chained hook may carry the other name.
chained="$0{chained}"
[ -e "$chained" ] || chained="${{0%.legacy}}{chained}"
[ -e "$chained" ] || chained="$0.legacy{chained}"
{stdin}if [ -x "$chained" ]; then
    {chain}
    status=$?
fi
if [ -n "$queued" ]; then
    {append}if [ -f "$spool/drain.pid" ] && read pid <"$spool/drain.pid" &&
        kill -0 "$pid" 2>/dev/null; then :
    else
        if [ ! -x "$python" ]; then
            printf '%s %s: %s %s (%s)\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$hook" \
                "the interpreter of gdag's hooks is gone:" "$python" \
                "events stay queued; run 'gdag hooks install' again" \
                >>"$common/gdag/{errors}"
            python=
        fi
        if [ -n "$python" ]; then
            (unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE GIT_PREFIX GIT_COMMON_DIR
             {guard}=1 exec "$python" -m gdag hook --drain -C "$common") \
                </dev/null >>"$common/gdag/hooks.log" 2>&1 &
        fi
    fi
fi
{cleanup}exit $status
"""
# Hooks with standard input keep it in a file: the chained hook reads it byte for
# byte, and so does the queued event.
STDIN_SAVE = """input="${tmp:-${TMPDIR:-/tmp}/gdag-hook-$$}.in"
cat >"$input"
"""
STDIN_CHAIN = '"$chained" "$@" <"$input"'
STDIN_APPEND = 'cat "$input" >>"$tmp" && mv -f "$tmp" "$queued"\n    '
PLAIN_CHAIN = '"$chained" "$@"'


def shim_text(hook: str, python: str) -> str:
    from gdag.hookqueue import STDIN_HOOKS

    has_stdin = hook in STDIN_HOOKS
    chain = STDIN_CHAIN if has_stdin else PLAIN_CHAIN
    return SHIM.format(
        marker=MARKER,
        version=VERSION,
        hook=hook,
        python=shlex.quote(python),
        guard=GUARD,
        query=QUERY if hook == "post-receive" else WORKTREE_QUERY,
        stdin=STDIN_SAVE if has_stdin else "",
        chained=CHAINED,
        chain=chain,
        append=STDIN_APPEND if has_stdin else "",
        # An event without standard input is written in place: the drainer waits
        # for a file's last header line; one with it is renamed in once whole.
        tmp='"$spool/.tmp-$seq-$$"' if has_stdin else '"$queued"',
        errors=ERRORS_FILE,
        cleanup='rm -f "$input"\n' if has_stdin else "",
    )


@dataclass
class HookState:
    name: str
    state: str  # gdag | gdag+chained | gdag via pre-commit | foreign | absent | broken
    path: str
    problem: str | None = None

    def to_json(self) -> dict[str, str | None]:
        return self.__dict__.copy()


def hooks_dir(store: Store) -> Path:
    """Where git runs hooks from: core.hooksPath if set, else .git/hooks."""
    found = gitcmd.run(
        ["config", "--get", "core.hooksPath"],
        git_dir=store.user_gitdir,
        check=False,
        what="finding the hooks directory",
    )
    configured = found.stdout.strip() if found.ok else ""
    if not configured:
        return store.user_commondir / "hooks"
    path = Path(os.path.expanduser(configured))
    if not path.is_absolute():
        path = (store.workdir or store.user_gitdir) / path
    return path


def _check_writable(store: Store, directory: Path) -> None:
    inside = [p.resolve() for p in (store.user_commondir, store.workdir) if p is not None]
    resolved = directory.resolve()
    if not any(resolved == p or resolved.is_relative_to(p) for p in inside):
        raise GdagError(
            f"core.hooksPath points outside this repository: {directory}",
            hint="gdag does not write there; call `gdag hook NAME` from the hooks that "
            "manage that directory, or unset core.hooksPath",
        )


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


def is_pre_commit(text: str | None) -> bool:
    return text is not None and "File generated by pre-commit" in text and MARKER not in text


def _slot(path: Path) -> Path:
    """Where gdag's shim goes for hook `path`: in its place, or, when pre-commit
    manages it, as pre-commit's `.legacy` hook (which pre-commit runs first)."""
    return Path(str(path) + LEGACY) if is_pre_commit(_read(path)) else path


def install(store: Store, names: list[str] | None = None) -> list[HookState]:
    names = _names(names)
    directory = hooks_dir(store)
    _check_writable(store, directory)
    if directory.exists() and not directory.is_dir():
        raise GdagError(
            f"{directory} is not a directory: git cannot run hooks from it",
            hint="move it aside, or point core.hooksPath at a directory",
        )
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = _slot(directory / name)
        text = _read(path)
        if text is not None and MARKER not in text:
            os.replace(path, str(path) + CHAINED)
        tmp = path.with_name(f".{name}.gdag-tmp")
        tmp.write_text(shim_text(name, sys.executable))
        tmp.chmod(0o755)
        os.replace(tmp, path)
    return status(store, names)


def uninstall(store: Store, names: list[str] | None = None) -> list[HookState]:
    directory = hooks_dir(store)
    for name in _names(names):
        for path in (directory / name, Path(str(directory / name) + LEGACY)):
            text = _read(path)
            if text is None or MARKER not in text:
                continue
            chained = chained_of(path)
            if chained is not None:
                os.replace(chained, path)
            else:
                path.unlink()
    return status(store, names)


def status(store: Store, names: list[str] | None = None) -> list[HookState]:
    directory = hooks_dir(store)
    shown = list(names) if names else list(CLIENT_HOOKS)
    if not names and (directory / "post-receive").exists():
        shown.append("post-receive")
    return [_state(name, directory / name) for name in shown]


def _state(name: str, path: Path) -> HookState:
    text = _read(path)
    where = path
    if is_pre_commit(text):
        legacy = Path(str(path) + LEGACY)
        if MARKER not in (_read(legacy) or ""):
            return HookState(name, "foreign", str(path))
        where, text, state = legacy, _read(legacy), "gdag via pre-commit"
    elif text is None:
        return HookState(name, "absent", str(path))
    elif MARKER not in text:
        return HookState(name, "foreign", str(path))
    else:
        state = "gdag+chained" if chained_of(path) else "gdag"
    problem = shim_problem(text or "")
    if problem:
        return HookState(name, "broken", str(where), problem)
    return HookState(name, state, str(where))


def chained_of(shim: Path) -> Path | None:
    """The hook a shim chained: beside it, or beside the name it had before pre-commit's
    install renamed it `<hook>.legacy`, or its uninstall renamed it back."""
    name = str(shim)
    for candidate in (name, name.removesuffix(LEGACY), name + LEGACY):
        if Path(candidate + CHAINED).exists():
            return Path(candidate + CHAINED)
    return None


def shim_problem(text: str) -> str | None:
    """Why an installed shim cannot run gdag, or None."""
    if f"{MARKER} {VERSION}" not in text:
        return "an older gdag's shim (it can name the wrong commit): run `gdag hooks install`"
    for line in text.splitlines():
        if line.startswith("python="):
            python = shlex.split(line[len("python=") :])[0]
            if not os.access(python, os.X_OK):
                return f"its interpreter is gone: {python}; run `gdag hooks install` again"
    return None


def broken_hooks(store: Store) -> list[HookState]:
    """Installed shims that cannot run (for `gdag status` and `gdag doctor`)."""
    try:
        return [h for h in status(store) if h.state == "broken"]
    except GdagError:
        return []


def _names(names: list[str] | None) -> list[str]:
    chosen = names or list(CLIENT_HOOKS)
    for name in chosen:
        if name not in HOOKS:
            raise UsageError(f"gdag has no {name!r} hook", hint="hooks: " + ", ".join(HOOKS))
    return chosen


def run_hook(
    store_path: str | None, hook: str, args: list[str], run: Callable[[Workspace, str], object]
) -> int:
    """`gdag hook NAME ARGS` (a hook calling gdag itself, e.g. from pre-commit): capture
    the event now, queue it behind any others, and drain the queue in the foreground."""
    from gdag.hookqueue import capture, enqueue

    try:
        stdin = os.environ.get("GDAG_HOOK_INPUT", "").encode()
        event = capture(hook, args, stdin, cwd=store_path)
        enqueue(event)
    except Exception as exc:  # noqa: BLE001 - a hook reports every failure, never raises
        record_error(store_path, hook, exc)
        return 0
    return drain_queue(event.common, run, linger=0.0)


def drain_queue(
    common: str | Path | None, run: Callable[[Workspace, str], object], linger: float | None = None
) -> int:
    """`gdag hook --drain`: publish every queued event in order, then run subscribers;
    `linger`: seconds to wait for more once the queue is empty (default: a burst's)."""
    from gdag.hookqueue import drain, spool_dir

    try:
        spool = spool_dir(_common_of(common))
    except Exception as exc:  # noqa: BLE001
        record_error(str(common) if common else None, "drain", exc)
        return 0
    opened: dict[str, Workspace] = {}
    outputs: dict[str, set[str]] = {}

    def publish(event: Event) -> None:
        from gdag.workspace import ValueSource

        ws = _workspace_of(event, opened)
        publish_id = f"h{event.id}"
        already = set()
        if event.resumed:  # a killed drainer was publishing it: what got into the log?
            from gdag.log import published_under

            already = published_under(ws.log, publish_id, event.resumed)
        for output, value in payloads(event):
            if output in already:
                continue  # published before a drainer was killed, and not again
            data = ValueSource(data=json.dumps(value).encode())
            done = ws.publish(output, data, "json", publish_id=publish_id, lenient=True)
            for note in done.notes:
                record_error(event.where, event.hook, GdagError(note))
            if not done.notes:
                outputs.setdefault(event.where, set()).add(output)

    def settle(events: list[Event]) -> None:
        for where, names in sorted(outputs.items()):
            for output in sorted(names):
                try:
                    run(opened[where], output)
                except Exception as exc:  # noqa: BLE001
                    record_error(where, output, exc)
        outputs.clear()

    def failed(path: Path, exc: BaseException) -> None:
        record_error(str(common) if common else None, f"event {path.name}", exc)

    drain(spool, commit_details, publish, settle, failed, linger=linger)
    return 0


def _workspace_of(event: Event, opened: dict[str, Workspace]) -> Workspace:
    """The repository the event names, with the log of the branch it was captured on
    when logs follow branches (HEAD may have moved on since)."""
    from gdag.branch import follows_branch, log_for_branch
    from gdag.log import LOG_PREFIX
    from gdag.workspace import Workspace

    ws = opened.get(event.where) or Workspace.open(event.where)
    opened[event.where] = ws
    if event.branch and follows_branch(ws.store):
        log = log_for_branch(event.branch)
        if ws.log.name != log and ws.store.read_ref(LOG_PREFIX + log) is not None:
            return Workspace(ws.store, log)
    return ws


def _common_of(path: str | Path | None) -> Path:
    return Store.find(path or ".").user_commondir


def pending(store: Store) -> int:
    """Events the hooks queued that no drainer has published yet."""
    from gdag.hookqueue import queued, spool_dir

    return len(queued(spool_dir(store.user_commondir)))


def record_error(store_path: str | None, hook: str, exc: BaseException) -> None:
    """Keep a hook failure where `gdag status` shows it."""
    message = exc.message if isinstance(exc, GdagError) else f"{type(exc).__name__}: {exc}"
    line = f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {hook}: {message}\n"
    sys.stderr.write(f"gdag: hook {hook} failed: {message}\n")
    try:
        store = Store.find(store_path or ".")
        store.gdag_dir.mkdir(parents=True, exist_ok=True)
        with open(store.gdag_dir / ERRORS_FILE, "a") as f:
            f.write(line)
    except Exception:  # noqa: BLE001 - nowhere left to report
        pass


def recent_errors(store: Store, limit: int = 5) -> list[str]:
    text = _read(store.gdag_dir / ERRORS_FILE) or ""
    return text.splitlines()[-limit:]

"""What a git event publishes: each hook's output and JSON value, from what the shim captured."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gdag import gitcmd
from gdag.hookqueue import Event

OUTPUTS = {
    "post-commit": "git/commit",
    "post-merge": "git/merge",
    "post-checkout": "git/checkout",
    "post-rewrite": "git/rewrite",
    "post-receive": "git/push",
}

COMMIT_FORMAT = "%H%x00%an <%ae>%x00%aI%x00%B%x00%x01"
_details: dict[str, tuple[str, str, str]] = {}


def commit_details(events: list[Event]) -> dict[str, tuple[str, str, str]]:
    """(author, time, message) of the post-commit events' commits: one `git log` for a
    whole batch, kept until asked again."""
    wanted: dict[str, list[str]] = {}
    for event in events:
        if event.hook == "post-commit" and event.head and event.head not in _details:
            wanted.setdefault(event.gitdir, []).append(event.head)
    for gitdir, shas in wanted.items():
        found = gitcmd.run(
            ["log", "--no-walk=unsorted", f"--format={COMMIT_FORMAT}", "--stdin"],
            git_dir=Path(gitdir),
            input="".join(sha + "\n" for sha in shas),
            check=False,
        )
        for record in found.stdout.split("\0\x01"):
            sha, author, when, message = (record.lstrip("\n") + "\0" * 3).split("\0")[:4]
            if sha:
                _details[sha] = (author, when, message)
    return _details


def payloads(event: Event) -> list[tuple[str, dict[str, Any]]]:
    """The (output, JSON value) pairs an event publishes, from what the shim captured."""
    hook, args, branch = event.hook, event.args, event.branch
    if hook == "post-commit":
        author, when, message = commit_details([event]).get(event.head, ("", "", ""))
        value: dict[str, Any] = {
            "sha": event.head,
            "branch": branch,
            "author": author,
            "time": when,
            "message": message.strip(),
        }
    elif hook == "post-merge":
        value = {"sha": event.head, "branch": branch, "squash": bool(args and args[0] == "1")}
    elif hook == "post-checkout":
        prev, new, flag = (args + ["", "", ""])[:3]
        value = {"from": prev, "to": new, "branch": branch, "branch_checkout": flag == "1"}
    elif hook == "post-rewrite":
        text = event.stdin.decode(errors="replace")
        rewritten = [line.split()[:2] for line in text.splitlines() if line.strip()]
        value = {"command": args[0] if args else "", "branch": branch, "rewritten": rewritten}
    else:  # post-receive: one event per updated ref
        pushed = []
        for line in event.stdin.decode(errors="replace").splitlines():
            old, new, ref = (line.split(None, 2) + ["", "", ""])[:3]
            # gdag's own pushes (sync, remote runs) are not git events: publishing them
            # would move the log they are racing to update.
            if ref and not ref.startswith("refs/gdag/"):
                pushed.append((OUTPUTS[hook], {"ref": ref, "old": old, "new": new}))
        return pushed
    return [(OUTPUTS[hook], value)]

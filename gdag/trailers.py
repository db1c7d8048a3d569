"""Commit message trailers: every key and event kind gdag writes, and how they are read.

A gdag commit message is a readable first line, a blank line, and one
`Key: value` line per trailer. The keys and kinds below are the only spellings;
`git log --format=%(trailers:key=Gdag-Offset)` reads them too.
"""

from __future__ import annotations

# -- keys ------------------------------------------------------------------------------
OFFSET = "Gdag-Offset"  # the event's offset on its log
EVENT = "Gdag-Event"  # the event kind (below)
OUTPUT = "Gdag-Output"  # one per output the event changed
VERSION = "Gdag-Version"  # a publish: the output's new version
PUBLISH_ID = "Gdag-Publish"  # a publish: its id, kept when it is re-applied
NODE = "Gdag-Node"
SESSION_ID = "Gdag-Session"
STATUS = "Gdag-Status"  # ok | failed
LOG = "Gdag-Log"  # init: the log's name
# The start commit of a session branch: what it runs on.
CODE = "Gdag-Code"
ATTEMPT = "Gdag-Attempt"
STATE = "Gdag-State"  # the log commit whose state the node sees
INPUT = "Gdag-Input"  # output=version, one per input
CACHE_KEY = "Gdag-Cache-Key"
CACHE = "Gdag-Cache"  # a cache hit: the session whose results were reused
SPECULATES_ON = "Gdag-Speculates-On"  # the producer session a speculative one read
REDO = "Gdag-Redo"  # a session redoing an "each" node's failed event (`--retry-failed`)
CONSUMED = "Gdag-Consumed"  # output=value id, one per input a speculative session read
SPECULATED_ON = "Gdag-Speculated-On"  # on the merge of a speculative session
# Replays.
REPLAY_FROM = "Gdag-Replay-From"
REPLAY_OF = "Gdag-Replay-Of"
REPLAYED_FROM = "Gdag-Replayed-From"

# -- event kinds (the value of Gdag-Event) ---------------------------------------------
# On a log:
INIT = "init"
PUBLISH = "publish"
DAG = "dag"
SESSION = "session"  # a session merged back
REPLAY = "replay"
# On a session branch:
SESSION_START = "session-start"
SESSION_OUTPUT = "output"  # an output published by the running node
SESSION_DONE = "done"


def parse(message: bytes) -> dict[str, list[str]]:
    """Trailers of the last paragraph of a commit message, `Key: value` per line."""
    text = message.decode("utf-8", "replace").rstrip("\n")
    last = text.rsplit("\n\n", 1)[-1]
    out: dict[str, list[str]] = {}
    for line in last.splitlines():
        key, sep, value = line.partition(": ")
        if sep and key and " " not in key:
            out.setdefault(key, []).append(value)
    return out


def format_message(summary: str, trailers: list[tuple[str, str]]) -> str:
    lines = "\n".join(f"{k}: {v}" for k, v in trailers)
    return f"{summary}\n\n{lines}\n"


def kind(message: bytes) -> str | None:
    """The event kind of a commit message (its first Gdag-Event), or None."""
    values = parse(message).get(EVENT)
    return values[0] if values else None

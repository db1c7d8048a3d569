"""The hook queue: git events captured by the shims, spooled in order, drained by one process.

A shim writes what identifies its event (git's arguments and standard input,
`HEAD` and the branch, the git dir and work tree) to a file in
`.git/gdag/spool/` *before* anything runs in the background, so a burst of
commits is captured commit by commit. One drainer at a time (a lock file)
publishes the queued events in capture order; a file goes only once its
event is published, so a killed drainer loses nothing: the next hook, or
`gdag hook --drain`, picks up what is left. Nor does it publish twice: the
drainer names the event it is publishing in `spool/inflight` first, and the
next drainer, finding that name, is told which event may already be in the log
(`Event.resumed`, when that drainer began it; a drainer resuming an event
leaves the marker as it is, so a third still has the first one's time) so that
the outputs already published under its publish id are skipped. The file format is the shim's:

    gdag-event 1
    <hook>
    <capture number: the shims' shared counter, spool/seq>
    <lines of `git rev-parse`: common dir, git dir[, work tree, HEAD, HEAD's ref]>
    --args <n>
    <n lines: git's arguments>
    --stdin
    <git's standard input, byte for byte>
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from gdag import gitcmd

SPOOL = "spool"
SUFFIX = ".event"
LOCK = "drain.lock"
PIDFILE = "drain.pid"
INFLIGHT = "inflight"  # the event a drainer is publishing, while it publishes it
LINGER = 1.0  # seconds an idle drainer waits for the next event of a burst
POLL = 0.02
WRITING_AGE = 60.0  # an event file incomplete for longer was left by a killed shim
# Hooks whose standard input carries the event (the shim keeps it byte for byte).
STDIN_HOOKS = ("post-rewrite", "post-receive")
# Hooks of a bare repository: no work tree, no HEAD to name.
SERVER_HOOKS = ("post-receive",)


@dataclass
class Event:
    hook: str
    ts: int
    common: str
    gitdir: str
    toplevel: str = ""
    head: str = ""
    symref: str = ""
    args: list[str] = field(default_factory=list)
    stdin: bytes = b""
    path: Path | None = None
    # When a killed drainer began publishing this event (0.0: none did): some of its
    # outputs may be in the log already.
    resumed: float = 0.0

    @property
    def id(self) -> str:
        return self.path.name[: -len(SUFFIX)] if self.path is not None else str(self.ts)

    @property
    def branch(self) -> str | None:
        prefix = "refs/heads/"
        return self.symref[len(prefix) :] if self.symref.startswith(prefix) else None

    @property
    def where(self) -> str:
        """The repository to open for this event: its work tree, else its git dir."""
        return self.toplevel or self.gitdir


def parse(data: bytes, path: Path | None = None) -> Event:
    head, sep, stdin = data.partition(b"\n--stdin\n")
    lines = head.decode(errors="surrogateescape").split("\n")
    if not sep or len(lines) < 4 or lines[0] != "gdag-event 1":
        raise ValueError("not a complete gdag event")
    at = next(i for i, line in enumerate(lines) if line.startswith("--args "))
    count = int(lines[at][len("--args ") :])
    info = lines[3:at]
    args = lines[at + 1 : at + 1 + count]
    return _event(lines[1], int(lines[2] or 0), info, args, stdin, path)


def _event(
    hook: str, ts: int, info: list[str], args: list[str], stdin: bytes, path: Path | None = None
) -> Event:
    common, gitdir, toplevel, head, symref = (info + [""] * 5)[:5]
    return Event(hook, ts, common, gitdir, toplevel, head, symref, args, stdin, path)


def encode(event: Event) -> bytes:
    info = [event.common, event.gitdir]
    if event.hook not in SERVER_HOOKS:
        info += [event.toplevel, event.head, event.symref]
    text = "\n".join(
        ["gdag-event 1", event.hook, str(event.ts), *info, f"--args {len(event.args)}", *event.args]
    )
    return (text + "\n--stdin\n").encode(errors="surrogateescape") + event.stdin


def spool_dir(common: Path) -> Path:
    return common / "gdag" / SPOOL


def capture(hook: str, args: list[str], stdin: bytes, cwd: str | None = None) -> Event:
    """What a shim captures, captured in-process (`gdag hook NAME` called by hand)."""
    query = ["rev-parse", "--git-common-dir", "--absolute-git-dir"]
    if hook not in SERVER_HOOKS:
        query += ["--show-toplevel", "HEAD", "--symbolic-full-name", "HEAD"]
    found = gitcmd.run(["-C", cwd or ".", *query], check=False)
    info = (found.stdout.splitlines() + [""] * 5)[:5]
    if not info[0]:
        from gdag.errors import NotARepositoryError

        raise NotARepositoryError(f"not a git repository: {cwd or os.getcwd()}")
    info[0] = os.path.join(os.path.abspath(cwd or "."), info[0])  # relative to `cwd`
    return _event(hook, 0, info, list(args), stdin)


def next_seq(spool: Path) -> int:
    """The next capture number, from the counter the shims share (`spool/seq`)."""
    try:
        text = (spool / "seq").read_text().strip()
    except OSError:
        text = ""
    seq = (int(text) if text.isdigit() else 0) + 1
    (spool / "seq").write_text(f"{seq}\n")
    return seq


def enqueue(event: Event) -> Path:
    spool = spool_dir(Path(event.common))
    spool.mkdir(parents=True, exist_ok=True)
    event.ts = next_seq(spool)
    name = f"{event.ts}-{os.getpid()}{SUFFIX}"
    tmp = spool / f".tmp-{name}"
    tmp.write_bytes(encode(event))
    os.replace(tmp, spool / name)
    event.path = spool / name
    return spool / name


def queued(spool: Path) -> list[Path]:
    """The queued events in capture order (the names start with the capture number)."""
    try:
        names = [n for n in os.listdir(spool) if n.endswith(SUFFIX) and not n.startswith(".")]
    except FileNotFoundError:
        return []
    return [spool / n for n in sorted(names, key=_order)]


def _order(name: str) -> tuple[int, str]:
    stamp = name.split("-", 1)[0]
    return (int(stamp) if stamp.isdigit() else 0, name)


@contextlib.contextmanager
def draining(spool: Path) -> Iterator[None]:
    """Hold the drain lock (waiting for another drainer to finish) and advertise this
    process in the pid file the shims check before starting a drainer."""
    spool.mkdir(parents=True, exist_ok=True)
    with open(spool / LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                (spool / PIDFILE).unlink()


def drain(
    spool: Path,
    prepare: Callable[[list[Event]], object],
    publish: Callable[[Event], None],
    settle: Callable[[list[Event]], None],
    failed: Callable[[Path, BaseException], None],
    linger: float | None = None,
) -> int:
    """Hand every queued event to `publish` in capture order (each batch to `prepare`
    first, for what is cheaper asked once per batch), removing its file once
    published (or once `failed` has recorded why it could not be), then the batch to
    `settle` (running subscribers once per batch, not once per commit). Returns how
    many events were handled. With the queue empty it waits `linger` seconds for
    more before it goes: a burst of commits then costs one start-up, not one each.

    The pid file goes *before* the last look at the queue: a shim that finds no pid
    file starts a drainer of its own, and one that found it wrote its event before
    the look, so no event is left behind."""
    done = 0
    linger = LINGER if linger is None else linger
    with draining(spool):
        try:
            interrupted = (spool / INFLIGHT).read_text().strip()
            interrupted_at = (spool / INFLIGHT).stat().st_mtime
        except OSError:
            interrupted, interrupted_at = "", 0.0
        (spool / PIDFILE).write_text(f"{os.getpid()}\n")
        idle_since = time.monotonic()
        while True:
            paths = queued(spool)
            if not paths and time.monotonic() - idle_since < linger:
                time.sleep(POLL)  # a burst's next commit is likely: one drainer for it all
                continue
            if not paths:
                with contextlib.suppress(OSError):
                    (spool / PIDFILE).unlink()
                paths = queued(spool)
                if not paths:
                    return done
                (spool / PIDFILE).write_text(f"{os.getpid()}\n")
            events = []
            for path in paths:
                try:
                    events.append(parse(path.read_bytes(), path))
                except (OSError, ValueError) as exc:
                    if _is_being_written(path):
                        break  # later events wait behind it: order is kept
                    failed(path, exc)
                    _discard(path)
            if not events and paths:
                time.sleep(POLL)
                continue
            prepare(events)
            for event in events:
                assert event.path is not None
                event.resumed = interrupted_at if event.path.name == interrupted else 0.0
                if not event.resumed:  # a resumed one keeps the first drainer's time
                    (spool / INFLIGHT).write_text(event.path.name + "\n")
                try:
                    publish(event)
                except Exception as exc:  # noqa: BLE001 - recorded; the queue moves on
                    failed(event.path, exc)
                _discard(event.path)
                (spool / INFLIGHT).unlink()
            settle(events)
            done += len(events)
            idle_since = time.monotonic()


def _is_being_written(path: Path) -> bool:
    """A shim writes an event without standard input in place: a file without its last
    header line is still being written, unless it is old (the shim was killed)."""
    try:
        return time.time() - path.stat().st_mtime < WRITING_AGE
    except FileNotFoundError:
        return False


def _discard(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def is_draining(spool: Path) -> bool:
    """Whether a drainer holds the lock now."""
    try:
        with open(spool / LOCK, "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(lock, fcntl.LOCK_UN)
            return False
    except OSError:
        return False

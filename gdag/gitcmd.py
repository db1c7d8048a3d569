"""The `git` binary: every git process gdag starts, and one policy for how they fail.

A missing binary, a timeout or a non-zero exit is a `GitError` (a `StoreError`)
naming the command and git's last line on stderr, unless the caller asks to
inspect the result itself (`check=False`: then only a missing binary or a
timeout raise). Nothing else in gdag starts git.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from gdag.errors import StoreError

# Seconds a git command may take unless the caller says otherwise (None: no limit).
# Network commands fit in it; fsck and repack of a large store may not, and say so.
TIMEOUT = 120.0
CHUNK = 1 << 20


class GitError(StoreError):
    """A git command could not start, did not finish in time, or failed."""

    def __init__(
        self, message: str, hint: str | None = None, *, returncode: int | None = None
    ) -> None:
        super().__init__(message, hint)
        self.returncode = returncode


@dataclass(frozen=True)
class Result:
    """A finished git command: exit status and output (decoded as UTF-8, lossily)."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def last_line(self) -> str:
        """git's last non-empty line on stderr (else stdout): usually the reason."""
        return last_line(self.stderr) or last_line(self.stdout) or f"exit status {self.returncode}"

    @property
    def reason(self) -> str:
        """git's first `fatal:` or `error:` line without its prefix, else the last line: the
        cause, not the advice git prints after it ("…and the repository exists.")."""
        for line in self.stderr.splitlines():
            head, colon, rest = line.partition(":")
            if colon and head in ("fatal", "error") and rest.strip():
                return rest.strip()
        return self.last_line


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def available() -> bool:
    """Whether a git binary is on PATH (for work that is skipped without one)."""
    return shutil.which("git") is not None


def binary(what: str | None = None) -> str:
    """The git binary on PATH; a clear error when there is none."""
    git = shutil.which("git")
    if git is None:
        raise GitError(
            f"{what + ' needs' if what else 'this needs'} the git command, which is not on PATH",
            hint="install git",
        )
    return git


def _name(args: Sequence[str]) -> str:
    """`git <subcommand>` for messages (options before it skipped)."""
    sub = next((a for a in args if not a.startswith("-")), None)
    return f"`git {sub}`" if sub else "`git`"


def _argv(
    args: Sequence[str], git_dir: Path | str | None, config: Sequence[str], what: str | None
) -> list[str]:
    argv = [binary(what)]
    if git_dir is not None:
        argv.append(f"--git-dir={git_dir}")
    for item in config:
        argv += ["-c", item]
    return argv + list(args)


def run(
    args: Sequence[str],
    *,
    git_dir: Path | str | None = None,
    config: Sequence[str] = (),
    input: str | None = None,
    stdin: Path | None = None,
    check: bool = True,
    timeout: float | None = TIMEOUT,
    what: str | None = None,
) -> Result:
    """Run `git [--git-dir=…] [-c key=value…] args…` and wait for it.

    `input` is written to git's stdin, or `stdin` names a file to read it from.
    `check`: a non-zero exit raises GitError; pass False to inspect the result.
    `what`: what the caller was doing, put before the error message.
    """
    import subprocess  # here, not above: publish and lookup never start git

    argv = _argv(args, git_dir, config, what)
    prefix = f"{what}: " if what else ""
    try:
        with open(stdin, "rb") if stdin is not None else contextlib.nullcontext() as source:
            proc = subprocess.run(
                argv,
                input=input.encode() if input is not None else None,
                capture_output=True,
                timeout=timeout,
                stdin=source or (None if input is not None else subprocess.DEVNULL),
            )
    except subprocess.TimeoutExpired:
        raise GitError(
            f"{prefix}{_name(args)} did not finish within {timeout:g} s",
            hint="is a remote unreachable, or the repository very large?",
        ) from None
    except OSError as exc:
        raise GitError(f"{prefix}cannot run {_name(args)}: {exc.strerror}") from None
    result = Result(
        tuple(argv),
        proc.returncode,
        proc.stdout.decode("utf-8", "replace"),
        proc.stderr.decode("utf-8", "replace"),
    )
    if check and not result.ok:
        raise GitError(
            f"{prefix}{_name(args)} failed: {result.last_line}", returncode=result.returncode
        )
    return result


def stream(
    args: Sequence[str],
    *,
    git_dir: Path | str | None = None,
    config: Sequence[str] = (),
    chunk: int = CHUNK,
) -> Iterator[bytes]:
    """Run a git command and yield its stdout a chunk at a time (held: one chunk).

    A non-zero exit raises GitError once the output is read; stderr goes to a
    temporary file, so a chatty git can never block on a full pipe.
    """
    import subprocess
    import tempfile

    argv = _argv(args, git_dir, config, None)
    with tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err
            )
        except OSError as exc:
            raise GitError(f"cannot run {_name(args)}: {exc.strerror}") from None
        try:
            assert proc.stdout is not None
            while data := proc.stdout.read(chunk):
                yield data
            returncode = proc.wait()
        finally:
            if proc.poll() is None:  # the reader stopped early
                proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        if returncode != 0:
            err.seek(0)
            reason = last_line(err.read().decode("utf-8", "replace")) or f"exit {returncode}"
            raise GitError(f"{_name(args)} failed: {reason}", returncode=returncode)

"""gitcmd: the git binary's one error policy, run for real."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gdag import gitcmd
from gdag.errors import StoreError


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    return path


def test_output_of_a_command_that_succeeds(repo: Path) -> None:
    result = gitcmd.run(["rev-parse", "--git-dir"], git_dir=repo / ".git")
    assert result.ok and Path(result.stdout.strip()) == repo / ".git"


def test_a_failure_names_the_command_and_git_s_last_line(repo: Path) -> None:
    with pytest.raises(gitcmd.GitError) as info:
        gitcmd.run(["cat-file", "-p", "0" * 40], git_dir=repo / ".git", what="reading it")
    assert isinstance(info.value, StoreError)
    message = info.value.message
    assert message.startswith("reading it: `git cat-file` failed: ")
    assert "\n" not in message and "0" * 40 in message  # git's own reason, one line
    assert info.value.returncode == 128


def test_a_caller_may_inspect_the_failure_instead(repo: Path) -> None:
    result = gitcmd.run(["config", "--get", "no.such"], git_dir=repo / ".git", check=False)
    assert not result.ok and result.returncode == 1
    assert result.last_line == "exit status 1"  # git said nothing


def test_a_missing_binary_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert not gitcmd.available()
    with pytest.raises(gitcmd.GitError, match="syncing needs the git command"):
        gitcmd.run(["status"], check=False, what="syncing")
    with pytest.raises(gitcmd.GitError, match="not on PATH"):
        list(gitcmd.stream(["cat-file", "blob", "0" * 40]))


def test_a_command_past_its_timeout_is_stopped(repo: Path) -> None:
    with pytest.raises(gitcmd.GitError, match=r"`git hang` did not finish within 0.2 s"):
        gitcmd.run(["hang"], config=["alias.hang=!sleep 2"], git_dir=repo / ".git", timeout=0.2)


def test_stream_yields_output_in_chunks_and_fails_after_it(repo: Path) -> None:
    data = bytes(range(256)) * 40
    sha = subprocess.run(
        ["git", "hash-object", "-w", "--stdin"], cwd=repo, input=data, capture_output=True
    ).stdout.strip()
    chunks = list(
        gitcmd.stream(["cat-file", "blob", sha.decode()], git_dir=repo / ".git", chunk=4096)
    )
    assert b"".join(chunks) == data and len(chunks) > 1
    with pytest.raises(gitcmd.GitError, match="`git cat-file` failed: fatal: "):
        list(gitcmd.stream(["cat-file", "blob", "1" * 40], git_dir=repo / ".git"))

"""Tab completion: gdag's own answer (no typer) is click's answer, with the repository's names."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from conftest import define

from gdag.cli import build_app
from gdag.main import main

ROOT = Path(__file__).resolve().parent.parent
COMPLETION_VARS = (
    "COMP_WORDS",
    "COMP_CWORD",
    "_TYPER_COMPLETE_ARGS",
    "_TYPER_COMPLETE_FISH_ACTION",
)


def isolated_env(home: Path) -> dict[str, str]:
    """The environment the autouse fixture gives each test, for a fixture shared by many."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "GDAG_"))}
    env.update(HOME=str(home), GIT_CONFIG_GLOBAL=str(home / ".gitconfig"), GIT_CONFIG_NOSYSTEM="1")
    env.update(GIT_AUTHOR_NAME="Test User", GIT_COMMITTER_NAME="Test User")
    env.update(GIT_AUTHOR_EMAIL="test@example.com", GIT_COMMITTER_EMAIL="test@example.com")
    return env


@pytest.fixture(scope="module")
def dag_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Nodes a → b, outputs x (published), y, z (made by the nodes), and a second log."""
    env = isolated_env(tmp_path_factory.mktemp("home"))
    repo = tmp_path_factory.mktemp("completion") / "repo"

    def run(*args: str) -> None:
        proc = subprocess.run(
            [sys.executable, "-m", "gdag", *args], cwd=repo.parent, env=env, capture_output=True
        )
        assert proc.returncode == 0, proc.stderr

    run("init", "-C", str(repo))
    define(
        repo,
        """
        [outputs."declared/only"]
        type = "int"

        [nodes.a]
        run = 'cp "$GDAG_IN_X" "$GDAG_OUT/y"'
        inputs = { x = "x" }
        publishes = ["y"]

        [nodes.b]
        run = 'cp "$GDAG_IN_Y" "$GDAG_OUT/z"'
        inputs = { y = "y" }
        publishes = ["z", "pics/*"]
        """,
    )
    run("publish", "x", "1", "-C", str(repo))
    run("init", "--log", "other", "-C", str(repo))
    return repo


def set_request(monkeypatch: pytest.MonkeyPatch, shell: str, line: str, action: str = "") -> None:
    for var in COMPLETION_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("_GDAG_COMPLETE", f"complete_{shell}")
    if shell == "bash":
        words = line.split(" ")
        monkeypatch.setenv("COMP_WORDS", line)
        monkeypatch.setenv("COMP_CWORD", str(len(words) - 1))
    else:
        monkeypatch.setenv("_TYPER_COMPLETE_ARGS", line)
    if action:
        monkeypatch.setenv("_TYPER_COMPLETE_FISH_ACTION", action)


def typer_answer(capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """click's answer, from the app with every command built."""
    cmd = typer.main.get_command(build_app())
    try:
        cmd.main(args=[], prog_name="gdag", complete_var="_GDAG_COMPLETE")
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().out


def gdag_answer(capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main([])
    return code, capsys.readouterr().out


def candidates(shell: str, text: str) -> list[str]:
    """The lines of an answer, in a stable order: click lists -h and --help in a set's order."""
    if shell == "zsh" and text.startswith("_arguments '*: :(("):
        text = text.removeprefix("_arguments '*: :((").removesuffix("))'\n")
    return sorted(text.splitlines())


LINES = [
    "gdag ",
    "gdag p",
    "gdag -",
    "gdag --",
    "gdag frob ",
    "gdag lookup --",
    "gdag lookup -",
    "gdag lookup ",
    "gdag lookup x --at ",
    "gdag lookup x --at=",
    "gdag publish ",
    "gdag publish x --type ",
    "gdag run -",
    "gdag run --keep",
    "gdag run ",
    "gdag run a ",
    "gdag run -- -",
    "gdag run -qk --",
    "gdag run -j ",
    "gdag graph -",
    "gdag graph --format ",
    "gdag graph --format s",
    "gdag graph --format=",
    "gdag graph --from ",
    "gdag why ",
    "gdag why a ",
    "gdag why b --",
    "gdag show ",
    "gdag show y --depth=",
    "gdag log --",
    "gdag log -n 3 --",
    "gdag log -n3 --",
    "gdag log --node ",
    "gdag log --output ",
    "gdag log --log ",
    "gdag log --json --",
    "gdag replay --only ",
    "gdag replay --only a --only ",
    "gdag sync ",
    "gdag hooks ",
    "gdag hooks l",
    "gdag hooks --",
    "gdag hooks install --",
    "gdag hooks install --hook ",
    "gdag hooks list -",
    "gdag hook ",
    "gdag hook post-commit ",
    "gdag init --",
]


@pytest.mark.parametrize("line", LINES)
def test_gdag_answers_tab_as_click_does(
    dag_repo: Path, line: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(dag_repo)
    for shell in ("bash", "zsh", "fish-get-args", "fish-is-args"):
        name, _, action = shell.partition("-")
        set_request(monkeypatch, name, line, action)
        code, text = gdag_answer(capsys)
        want_code, want = typer_answer(capsys)
        assert (code, candidates(name, text)) == (want_code, candidates(name, want)), shell


def tab(line: str, cwd: Path) -> list[str]:
    """bash's candidates for `line`, from a real `gdag` process."""
    env = {k: v for k, v in os.environ.items() if k not in COMPLETION_VARS}
    env.update(_GDAG_COMPLETE="complete_bash", COMP_WORDS=line, COMP_CWORD=str(line.count(" ")))
    proc = subprocess.run(
        [sys.executable, "-m", "gdag"], cwd=cwd, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    return proc.stdout.split()


def test_node_and_output_names_complete_for_real(dag_repo: Path, tmp_path: Path) -> None:
    assert tab("gdag why ", dag_repo) == ["a", "b"]
    assert tab("gdag show ", dag_repo) == ["a", "b", "x", "y", "z"]
    assert tab("gdag lookup ", dag_repo) == ["x", "y", "z"]
    assert tab("gdag lookup y", dag_repo) == ["y"]
    assert tab("gdag run a ", dag_repo) == ["a", "b", "x", "y", "z"]
    assert tab("gdag log --node ", dag_repo) == ["a", "b"]
    assert tab("gdag log --output ", dag_repo) == ["x", "y", "z"]
    # publish also offers what the definition declares or publishes, but not patterns.
    assert tab("gdag publish ", dag_repo) == ["declared/only", "x", "y", "z"]
    assert tab("gdag graph --format ", dag_repo) == [
        "tree", "dot", "mermaid", "json", "svg", "png", "html"
    ]  # fmt: skip
    assert tab("gdag log --log ", dag_repo) == ["main", "other"]
    # The repository named by -C, before or after the verb; a log with no nodes has none.
    assert tab(f"gdag -C {dag_repo} why ", tmp_path) == ["a", "b"]
    assert tab(f"gdag lookup -C {dag_repo} --log other ", tmp_path) == []
    assert tab(f"gdag --log other -C {dag_repo} show ", tmp_path) == ["a", "b"]
    # Outside a repository: nothing, silently (the shell falls back to file names).
    assert tab("gdag why ", tmp_path) == []


def test_tab_imports_no_heavy_library(dag_repo: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in COMPLETION_VARS}
    env.update(_GDAG_COMPLETE="complete_bash", COMP_WORDS="gdag show ", COMP_CWORD="2")
    code = (
        "import sys; from gdag.main import main; rc = main([]); "
        "heavy = sorted(m for m in ('networkx', 'rich', 'typer', 'pydantic', 'jsonschema') "
        "if m in sys.modules); print(rc, heavy, file=sys.stderr)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=dag_repo, env=env, capture_output=True, text=True
    )
    assert proc.stdout.split() == ["a", "b", "x", "y", "z"]
    assert proc.stderr.strip() == "0 []"


def test_bash_script_completes_node_names(dag_repo: Path, tmp_path: Path) -> None:
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "gdag").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m gdag "$@"\n')
    (bindir / "gdag").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in COMPLETION_VARS}
    env.update(PATH=f"{bindir}{os.pathsep}{env['PATH']}", PYTHONPATH=str(ROOT))
    script = f"""
        source {ROOT / "completions" / "gdag.bash"}
        COMP_WORDS=(gdag why ''); COMP_CWORD=2; _gdag_completion gdag
        printf '%s\\n' "${{COMPREPLY[@]}}"
    """
    proc = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", script],
        cwd=dag_repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["a", "b"]

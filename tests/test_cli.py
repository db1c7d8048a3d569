"""CLI wiring: exit statuses, error format, the fast path kept in step with typer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from conftest import gdag, git
from typer.testing import CliRunner

from gdag import __version__
from gdag.cli import app
from gdag.main import FAST_COMMANDS, _NotFast, hoist_global_options, parse_fast


def test_version_and_module_entry(tmp_path: Path) -> None:
    r = gdag("--version", cwd=tmp_path)
    assert r.returncode == 0 and r.text.strip() == f"gdag {__version__}"


def test_help_lists_commands(tmp_path: Path) -> None:
    r = gdag(cwd=tmp_path)
    assert r.returncode == 0
    for cmd in ("init", "publish", "lookup", "log"):
        assert cmd in r.text


def test_init_is_idempotent(tmp_path: Path) -> None:
    r = gdag("init", "-C", str(tmp_path / "r"), cwd=tmp_path)
    assert r.returncode == 0 and "created log main" in r.text
    assert (tmp_path / "r" / "gdag.toml").read_text().startswith("# gdag.toml")
    tip = git("rev-parse", "refs/gdag/logs/main", cwd=tmp_path / "r")
    r = gdag("init", cwd=tmp_path / "r")
    assert r.returncode == 0 and "nothing changed" in r.text
    assert git("rev-parse", "refs/gdag/logs/main", cwd=tmp_path / "r") == tip


def test_init_in_existing_repository_and_other_log(tmp_path: Path) -> None:
    git("init", "-q", str(tmp_path / "r"), cwd=tmp_path)
    r = gdag("init", "--log", "exp", cwd=tmp_path / "r")
    assert r.returncode == 0, r.stderr
    assert git("for-each-ref", "--format=%(refname)", "refs/gdag", cwd=tmp_path / "r").split() == [
        "refs/gdag/logs/exp"
    ]
    r = gdag("publish", "x", "1", cwd=tmp_path / "r", env={"GDAG_LOG": "exp"})
    assert r.returncode == 0, r.stderr
    r = gdag("lookup", "x", "--log", "exp", cwd=tmp_path / "r")
    assert r.stdout == b"1"


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["publish", "x", "1"], 3, "not a git repository"),
        (["lookup", "x"], 3, "not a git repository"),
        (["log"], 3, "not a git repository"),
    ],
)
def test_not_a_repository(tmp_path: Path, args: list[str], code: int, needle: str) -> None:
    r = gdag(*args, cwd=tmp_path)
    assert r.returncode == code and needle in r.stderr and "hint: " in r.stderr


def test_no_log_yet_hints_init(tmp_path: Path) -> None:
    git("init", "-q", cwd=tmp_path)
    r = gdag("publish", "x", "1", cwd=tmp_path)
    assert r.returncode == 3
    assert r.stderr == "gdag: error: no log 'main' in this repository yet\nhint: run `gdag init`\n"


def test_malformed_definition_names_file_and_line(repo: Path) -> None:
    (repo / "gdag.toml").write_text('[outputs."x"]\ntype = "int"\nbroken = \n')
    r = gdag("publish", "x", "1", cwd=repo)
    assert r.returncode == 3
    assert "gdag.toml" in r.stderr and "line 3" in r.stderr and "Traceback" not in r.stderr


def test_unknown_key_in_definition(repo: Path) -> None:
    (repo / "gdag.toml").write_text('[outputs."x"]\ntpye = "int"\n')
    r = gdag("publish", "x", "1", cwd=repo)
    assert r.returncode == 3 and "unknown key 'tpye'" in r.stderr


def test_usage_errors_exit_2(repo: Path) -> None:
    r = gdag("publish", cwd=repo)
    assert r.returncode == 2 and r.stderr.startswith("gdag: error: ")
    r = gdag("publish", "x", "1", "--file", "f", cwd=repo)
    assert r.returncode == 2 and "exactly one value" in r.stderr
    r = gdag("lookup", "x", "--bogus", cwd=repo)
    assert r.returncode == 2 and "--bogus" in r.stderr
    r = gdag("frobnicate", cwd=repo)
    assert r.returncode == 2


def test_unknown_output_exits_3(repo: Path) -> None:
    r = gdag("lookup", "never/published", cwd=repo)
    assert r.returncode == 3 and "has no value" in r.stderr and r.stdout == b""


def test_global_dash_c_before_command(repo: Path, tmp_path: Path) -> None:
    r = gdag("-C", str(repo), "publish", "x", "v", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert gdag("-C", str(repo), "lookup", "x", cwd=tmp_path).stdout == b"v"


def test_log_command(repo: Path) -> None:
    for i in range(3):
        gdag("publish", "a" if i % 2 else "b", str(i), cwd=repo)
    r = gdag("log", "--json", cwd=repo)
    events = json.loads(r.stdout)
    assert [e["offset"] for e in events] == [3, 2, 1, 0]
    assert [e["event"] for e in events] == ["publish", "publish", "publish", "init"]
    r = gdag("log", "--output", "b", "--json", cwd=repo)
    assert [e["offset"] for e in json.loads(r.stdout)] == [3, 1]
    r = gdag("log", "-n", "1", cwd=repo)
    assert len(r.text.splitlines()) == 1 and "publish" in r.text


def test_log_with_cli_runner(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo)
    result = CliRunner().invoke(app, ["log", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)[0]["event"] == "init"


def _typer_options(command: str) -> set[str]:
    cmd = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    names: set[str] = set()
    for p in cmd.params:
        if p.param_type_name == "option":
            names.update(n for n in p.opts + p.secondary_opts)
    return names - {"-h", "--help"}


@pytest.mark.parametrize("command", sorted(FAST_COMMANDS))
def test_fast_path_accepts_exactly_the_typer_options(command: str) -> None:
    _, fast = FAST_COMMANDS[command]
    assert set(fast) == _typer_options(command)


def test_fast_path_parse() -> None:
    assert parse_fast(["publish", "x", "-", "--json", "-C", "p"]) == (
        "publish",
        {"output": "x", "value": "-", "json_out": True, "path": "p"},
    )
    assert parse_fast(["lookup", "x", "--at=-1"]) == ("lookup", {"output": "x", "at": "-1"})
    assert parse_fast(["publish", "--", "x", "-v"]) == ("publish", {"output": "x", "value": "-v"})
    assert hoist_global_options(["-C", "p", "lookup", "x"]) == ["lookup", "-C", "p", "x"]


@pytest.mark.parametrize("args", [["publish", "x", "1"], ["lookup", "x"]])
def test_hot_commands_do_not_import_heavy_libraries(repo: Path, args: list[str]) -> None:
    import subprocess
    import sys

    assert gdag("publish", "x", "0", cwd=repo).returncode == 0
    code = (
        "import sys; from gdag.main import main; rc = main(sys.argv[1:]); "
        "heavy = sorted(m for m in ('networkx', 'rich', 'typer', 'pydantic') if m in sys.modules); "
        "print(rc, heavy, file=sys.stderr)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=repo, capture_output=True, text=True
    )
    assert proc.stderr.strip().splitlines()[-1] == "0 []"


def test_fast_path_run_options() -> None:
    assert parse_fast(["run", "a", "b", "-j", "3", "--fail-fast", "-q"]) == (
        "run",
        {"targets": ["a", "b"], "jobs": 3, "keep_going": False, "quiet": True},
    )
    assert parse_fast(["run"]) == ("run", {"targets": []})
    for bad in (["run", "-j", "0"], ["run", "--jobs=x"], ["run", "--help"]):
        with pytest.raises(_NotFast):  # left to the full CLI, which explains the error
            parse_fast(bad)


def test_noop_run_stays_off_the_graph_library(repo: Path) -> None:
    import subprocess
    import sys

    (repo / "gdag.toml").write_text(
        '[nodes.c]\nrun = \'cp "$GDAG_IN_X" "$GDAG_OUT/y"\'\ninputs = { x = "x" }\npublishes = ["y"]\n'
    )
    assert gdag("publish", "x", "1", cwd=repo).returncode == 0
    code = (
        "import sys; from gdag.main import main; rc = main(['run']); "
        "heavy = sorted(m for m in ('networkx', 'rich', 'typer') if m in sys.modules); "
        "print(rc, heavy, file=sys.stderr)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True)
    assert proc.stderr.strip().splitlines()[-1] == "0 []"
    assert "nothing to do" in proc.stderr

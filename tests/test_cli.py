"""CLI wiring: exit statuses, error format, the fast path and typer reading one declaration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from conftest import gdag, git
from typer.testing import CliRunner

from gdag import __version__
from gdag.cli import app
from gdag.commands import COMMANDS, Spec, load
from gdag.main import NotFast, hoist_global_options, parse_fast


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


def specs() -> list[tuple[str, Spec]]:
    """Every command's declaration, subcommands as `hooks install`."""
    found = []
    for verb in COMMANDS:
        spec = load(verb).SPEC
        found += [(f"{verb} {n}", sub) for n, sub in spec.subcommands.items()] or [(verb, spec)]
    return found


@pytest.mark.parametrize(("command", "spec"), specs(), ids=[c for c, _ in specs()])
def test_each_function_takes_exactly_its_declared_parameters(command: str, spec: Spec) -> None:
    import inspect

    func = getattr(load(command.split()[0]), spec.run)
    params = inspect.signature(func).parameters.values()
    assert [p.name for p in params] == [p.name for p in spec.params]
    # Defaults live in the declaration only.
    assert all(p.kind is p.KEYWORD_ONLY and p.default is p.empty for p in params)


# Command lines in their usual forms: the fast path must read each as typer does.
USUAL = [
    ["init"],
    ["init", "--private", "--json", "-C", "r", "--log", "exp"],
    ["publish", "x", "1"],
    ["publish", "x", "-", "--json", "-C", "p"],
    ["publish", "--", "x", "-v"],
    ["publish", "x", "--file", "f", "-t", "int", "--if-changed", "--no-run", "--detach"],
    ["publish", "x", "--dir=d", "--type=json"],
    ["lookup", "x"],
    ["lookup", "x", "--at=-1", "--meta"],
    ["lookup", "thumbs/*", "--at", "-3", "-o", "out", "--json"],
    ["run"],
    ["run", "a", "b", "-j", "3", "--fail-fast", "-q"],
    ["run", "--dry-run", "--keep-going", "--retry-failed", "--speculative", "--remote", "o"],
    ["replay", "--from", "3"],
    ["replay", "--from=0", "--to", "9", "--onto", "w", "--only", "a", "--only", "b", "--dry-run"],
    ["why", "a"],
    ["why", "a", "--json"],
    ["graph"],
    ["graph", "--from", "a", "--to", "b", "--no-state", "-o", "g.dot"],
    ["show", "a"],
    ["show", "x", "--depth", "0", "--json"],
    ["sync"],
    ["sync", "upstream", "--json"],
    ["watch", "--interval", "0.25", "-j", "2", "--quiet"],
    ["tick"],
    ["tick", "--no-run", "--remote", "o", "-j", "2", "--json", "-C", "p", "--log", "exp"],
    ["schedules", "--json"],
    ["hooks", "install"],
    ["hooks", "install", "--hook", "post-commit", "--hook", "post-merge", "--json"],
    ["hooks", "uninstall", "-C", "r"],
    ["hooks", "list", "--json"],
    ["hook", "post-checkout", "a", "b", "1"],
    ["doctor", "--repair"],
    ["check", "--stubs", "s.py", "--json"],
    ["status"],
    ["status", "--json", "--log", "exp"],
    ["log", "--limit", "1"],
    ["log", "--output", "x", "--node", "a", "--since", "2h", "--graph", "--json"],
    ["log", "--follow", "--json", "-n", "5"],
    ["metrics"],
    ["metrics", "-C", "r", "--log", "exp"],
    ["serve"],
    ["serve", "--host", "0.0.0.0", "--port", "0", "--open"],
]


@pytest.mark.parametrize("argv", USUAL, ids=" ".join)
def test_fast_path_reads_usual_forms_as_typer_does(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from gdag.cli import build_app

    monkeypatch.delenv("GDAG_LOG", raising=False)
    monkeypatch.chdir(tmp_path)
    for name in ("p", "r"):  # -C must name a directory, even before the command runs
        (tmp_path / name).mkdir()
    func, fast = parse_fast(argv)
    module = load(argv[0])
    seen: dict = {}
    monkeypatch.setattr(module, func.__name__, lambda **kw: seen.update(kw) or 0)
    cmd = typer.main.get_command(build_app(argv[0]))
    assert cmd.main(args=argv, prog_name="gdag", standalone_mode=False) == 0
    # typer passes () for an empty variadic argument, the fast path its default.
    assert fast == {k: (None if v == () else v) for k, v in seen.items()}


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--help"],
        ["frobnicate"],
        ["run", "--help"],
        ["run", "-h"],
        ["run", "-j", "0"],
        ["run", "--jobs=x"],
        ["run", "-j4"],
        ["run", "-qk"],
        ["publish"],
        ["publish", "x", "1", "2"],
        ["publish", "x", "--json=1"],
        ["lookup", "x", "--bogus"],
        ["lookup", "x", "--at"],
        ["lookup", "x", "-o=f"],
        ["replay"],
        ["show", "x", "--depth", "-1"],
        ["watch", "--interval", "0.01"],
        ["watch", "--interval", "1e3"],
        ["hooks"],
        ["hooks", "frob"],
        ["hooks", "--json", "list"],
        ["log", "-n", "1", "-n", "2"],
        ["log", "--limit", "\u00b2"],
        ["status", "x"],
    ],
    ids=lambda argv: " ".join(argv) or "(none)",
)
def test_unusual_forms_are_left_to_typer(argv: list[str]) -> None:
    with pytest.raises(NotFast):
        parse_fast(argv)


def test_fast_path_fills_defaults() -> None:
    from gdag.commands import run

    assert parse_fast(["run"]) == (
        run.run,
        {
            "targets": None,
            "jobs": None,
            "dry_run": False,
            "keep_going": True,
            "retry_failed": False,
            "speculative": False,
            "remote": None,
            "cluster": None,
            "quiet": False,
            "json_out": False,
            "path": None,
            "log": None,
        },
    )
    assert hoist_global_options(["-C", "p", "lookup", "x"]) == ["lookup", "-C", "p", "x"]
    assert hoist_global_options(["--log=b", "-C", "p", "log"]) == ["log", "--log=b", "-C", "p"]
    # A group's options go after its subcommand; a command that reads no log drops --log.
    assert hoist_global_options(["-C", "p", "hooks", "install", "--json"]) == [
        "hooks",
        "install",
        "-C",
        "p",
        "--json",
    ]
    env: dict[str, str] = {}
    assert hoist_global_options(["--log", "b", "-C", "p", "hooks", "list"], env) == [
        "hooks",
        "list",
        "-C",
        "p",
    ]
    assert env == {"GDAG_LOG": "b"}  # read by the commands that have no --log (`hook`)
    assert hoist_global_options(["-C", "p", "hooks"]) == ["hooks", "-C", "p"]


@pytest.mark.parametrize(
    ("argv", "typer_too"),
    [(["status"], False), (["log", "-n", "1"], False), (["why", "--help"], True)],
)
def test_only_the_invoked_command_is_imported(repo: Path, argv: list[str], typer_too: bool) -> None:
    import subprocess
    import sys

    code = (
        "import sys; from gdag.main import main; rc = main(sys.argv[1:]); "
        "print(rc, sorted(m for m in sys.modules if m.startswith('gdag.commands.')), "
        "'typer' in sys.modules, file=sys.stderr)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *argv], cwd=repo, capture_output=True, text=True
    )
    verb = argv[0]
    assert proc.stderr.strip().splitlines()[-1] == f"0 ['gdag.commands.{verb}'] {typer_too}"


def test_typer_builds_only_the_invoked_command() -> None:
    from gdag.cli import build_app

    group = typer.main.get_command(build_app("why"))
    assert isinstance(group, typer.core.TyperGroup)
    built = {n for n, c in group.commands.items() if c.params}
    assert built == {"why"}
    # The others are still listed, with their help, for `gdag --help` and typos.
    assert list(group.commands) == list(COMMANDS)
    assert group.commands["status"].help == COMMANDS["status"].help


def test_version_without_typer(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys; from gdag.main import main; main(['--version']); print('typer' in sys.modules)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.stdout == f"gdag {__version__}\nFalse\n"


def test_a_short_option_means_one_thing_in_every_command() -> None:
    """-n is --limit and -f is --file wherever they exist (`git log -n`), never something else."""
    group = typer.main.get_command(app)
    meanings: dict[str, set[str]] = {}
    commands = [(name, cmd) for name, cmd in group.commands.items()]  # type: ignore[attr-defined]
    for name, cmd in list(commands):
        commands += [(f"{name} {n}", c) for n, c in getattr(cmd, "commands", {}).items()]
    for _, cmd in commands:
        for param in cmd.params:
            if param.param_type_name != "option":
                continue
            names = [*param.opts, *param.secondary_opts]
            long = next((n for n in names if n.startswith("--")), names[0])
            for short in (n for n in names if not n.startswith("--")):
                meanings.setdefault(short, set()).add(long)
    assert meanings["-n"] == {"--limit"} and meanings["-f"] == {"--file"}
    clashes = {short: sorted(longs) for short, longs in meanings.items() if len(longs) > 1}
    assert not clashes, f"short options with more than one meaning: {clashes}"


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["run", "-n"], "use --dry-run; -n is short for --limit (gdag log)"),
        (["graph", "-f", "svg"], "use --format; -f is short for --file (gdag publish)"),
    ],
)
def test_a_retired_short_option_is_refused_naming_the_long_one(
    repo: Path, argv: list[str], hint: str
) -> None:
    r = gdag(*argv, cwd=repo)
    assert r.returncode == 2 and r.stdout == b""
    assert r.stderr == f"gdag: error: No such option: {argv[1]}\nhint: {hint}\n"
    with pytest.raises(NotFast):
        parse_fast(argv)

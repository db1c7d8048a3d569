"""The manual, the completion scripts and the README kept in step with the CLI."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from gdag.cli import app

ROOT = Path(__file__).resolve().parent.parent
MAN = ROOT / "man" / "gdag.1"
COMPLETIONS = ROOT / "completions"
GENERATOR = ROOT / "scripts" / "gen-completions"
COMPLETION_FILES = ("gdag.bash", "_gdag", "gdag.fish")
# Options every click app has, or that typer adds to the top level only.
SKIPPED_OPTIONS = {"-h", "--help", "--install-completion", "--show-completion"}


def cli_commands() -> dict[str, list[str]]:
    """Every command of the app and its option strings (long and short)."""
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    commands = {}
    for name, cmd in sorted(group.commands.items()):
        commands[name] = option_names(cmd)
        # A group (`gdag hooks`): its subcommands' names and options belong to its section.
        for sub_name, sub in sorted(getattr(cmd, "commands", {}).items()):
            commands[name] = sorted({*commands[name], sub_name, *option_names(sub)})
    return commands


def option_names(cmd: typer.core.TyperCommand | typer.core.TyperGroup) -> list[str]:
    names: list[str] = []
    for param in cmd.params:
        if param.param_type_name == "option":
            names += [n for n in (*param.opts, *param.secondary_opts) if n not in SKIPPED_OPTIONS]
    return sorted(set(names))


def man_text() -> str:
    """The page's source with font escapes dropped and `\\-` as `-`, for plain searching."""
    text = MAN.read_text()
    text = re.sub(r"\\f(\[[^]]*\]|\(..|.)", "", text)
    return text.replace("\\-", "-").replace("\\(aq", "'").replace("\\~", " ")


def man_subsections(text: str) -> dict[str, str]:
    """`.SS "gdag CMD ..."` subsections of COMMANDS: command -> its text."""
    found: dict[str, str] = {}
    for m in re.finditer(r'^\.SS "?gdag ([a-z-]+)[^\n]*\n(.*?)(?=^\.S[SH] )', text, re.M | re.S):
        found[m.group(1)] = m.group(2)
    return found


def mentions(text: str, option: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text) is not None


# -- the manual ------------------------------------------------------------------------


def test_every_command_has_a_subsection_with_all_its_options() -> None:
    sections = man_subsections(man_text())
    missing = []
    for command, options in cli_commands().items():
        if command not in sections:
            missing.append(f'gdag {command}: no `.SS "gdag {command} ..."` under COMMANDS')
            continue
        missing += [f"gdag {command} {o}" for o in options if not mentions(sections[command], o)]
    assert not missing, "man/gdag.1 does not document:\n  " + "\n  ".join(missing)


def test_top_level_options_and_sections() -> None:
    text = man_text()
    top = option_names(typer.main.get_command(app))
    assert top, "the app has no top-level options: was --version removed?"
    for option in [*top, "-C", "--log", "--json", "--help"]:
        assert mentions(text, option), f"man/gdag.1 does not mention {option}"
    sections = re.findall(r"^\.SH (.+)$", text, re.M)
    for wanted in (
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "COMMANDS",
        "OPTIONS",
        "EXIT STATUS",
        "ENVIRONMENT",
        "FILES",
        "EXAMPLES",
        "SEE ALSO",
    ):
        assert wanted in [s.strip('"') for s in sections], f"man/gdag.1 has no {wanted} section"


def test_exit_statuses_are_documented() -> None:
    from gdag import errors

    text = man_text()
    exit_section = text.split(".SH EXIT STATUS", 1)[1].split("\n.SH ", 1)[0]
    codes = {v for k, v in vars(errors).items() if k.startswith("EXIT_")}
    for code in codes:
        assert re.search(rf"^\.B {code}$", exit_section, re.M), f"exit status {code} undocumented"


def test_definition_file_keys_are_documented() -> None:
    from gdag import definition

    text = man_text()
    m = re.search(r'^\.SH "?THE DEFINITION FILE"?\n(.*?)(?=^\.SH )', text, re.M | re.S)
    assert m, "man/gdag.1 has no THE DEFINITION FILE section before another .SH"
    # A documented key is the tag of a `.TP` entry: `.B key` or `.BR key " = type"`.
    entries = set(re.findall(r"^\.TP\n\.BR? \"?([A-Za-z_]+)\b", m.group(1), re.M))
    keys = definition.NODE_KEYS | definition.OUTPUT_KEYS | definition.DAG_KEYS | {"follow"}
    keys |= definition.SCHEDULE_KEYS
    missing = sorted(keys - entries)
    assert not missing, "THE DEFINITION FILE in man/gdag.1 has no entry for: " + ", ".join(missing)


def test_man_page_renders_without_warnings() -> None:
    groff = shutil.which("groff")
    if groff is None:
        if os.environ.get("CI"):
            pytest.fail("groff is not installed; CI must install it (apt-get install groff-base)")
        pytest.skip("groff is not installed")
    proc = subprocess.run(
        [groff, "-man", "-Tutf8", "-ww", "-z", str(MAN)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # groff exits 0 even when it warns: stderr is the verdict.
    assert proc.stderr == "" and proc.returncode == 0, proc.stderr


# -- completions -----------------------------------------------------------------------


def test_completions_are_up_to_date(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(GENERATOR), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    stale = []
    for name in COMPLETION_FILES:
        committed = COMPLETIONS / name
        if not committed.is_file() or committed.read_text() != (tmp_path / name).read_text():
            stale.append(name)
    assert not stale, (
        f"completions/{', completions/'.join(stale)} differ from the CLI: "
        "run `python scripts/gen-completions` and commit the result"
    )


def test_completions_hold_no_path_of_this_machine() -> None:
    for name in COMPLETION_FILES:
        text = (COMPLETIONS / name).read_text()
        for path in {str(ROOT), sys.prefix, sys.exec_prefix, str(Path.home())}:
            assert path not in text, f"completions/{name} holds {path}"
        assert "_GDAG_COMPLETE=complete_" in text
    assert (COMPLETIONS / "_gdag").read_text().startswith("#compdef gdag\n")


@pytest.fixture
def gdag_on_path(tmp_path: Path) -> dict[str, str]:
    """An environment whose PATH finds `gdag` as this test run's interpreter would run it."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    shim = bindir / "gdag"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m gdag "$@"\n')
    shim.chmod(0o755)
    path = os.pathsep.join([str(bindir), os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path, "PYTHONPATH": str(ROOT)}


def run_shell(argv: list[str], script: str, env: dict[str, str]) -> str:
    if shutil.which(argv[0]) is None:
        pytest.skip(f"{argv[0]} is not installed")
    proc = subprocess.run(
        [*argv, script], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_bash_completion_completes(gdag_on_path: dict[str, str]) -> None:
    out = run_shell(
        ["bash", "--norc", "--noprofile", "-c"],
        f"""
        source {COMPLETIONS / "gdag.bash"}
        COMP_WORDS=(gdag lookup --); COMP_CWORD=2; _gdag_completion gdag
        printf '%s\\n' "${{COMPREPLY[@]}}"
        COMP_WORDS=(gdag pu); COMP_CWORD=1; _gdag_completion gdag
        printf '%s\\n' "${{COMPREPLY[@]}}"
    """,
        gdag_on_path,
    )
    assert {"--at", "--meta", "--out", "publish"} <= set(out.split())


def test_zsh_completion_works_autoloaded_from_fpath(gdag_on_path: dict[str, str]) -> None:
    # Autoloaded, the file is the completion function itself: the first Tab must complete.
    out = run_shell(
        ["zsh", "-df", "-c"],
        f"""
        fpath=({COMPLETIONS} $fpath); autoload -Uz compinit && compinit -u -D
        _arguments() {{ print -r -- "$*" }}
        words=(gdag lookup --); CURRENT=3
        _gdag
    """,
        gdag_on_path,
    )
    assert '"--meta"' in out


def test_fish_completion_completes(gdag_on_path: dict[str, str]) -> None:
    out = run_shell(
        ["fish", "--no-config", "-c"],
        f"""
        source {COMPLETIONS / "gdag.fish"}
        complete -C "gdag lookup --"
    """,
        gdag_on_path,
    )
    assert {"--at", "--meta"} <= {line.split("\t")[0] for line in out.splitlines()}


# -- README ----------------------------------------------------------------------------


def test_readme_mentions_every_command() -> None:
    readme = ROOT / "README.md"
    assert readme.is_file(), "README.md is missing"
    text = readme.read_text()
    missing = [c for c in cli_commands() if not re.search(rf"\bgdag {re.escape(c)}\b", text)]
    assert not missing, "README.md never shows " + ", ".join(f"`gdag {c}`" for c in missing)

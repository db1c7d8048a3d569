"""gitconfig: config text read as git reads it (checked against `git config`), and formats."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gdag.gitconfig import Config, ConfigError, check_format, parse_config, read_config

TEXTS = [
    "[core]\n\tbare = false\n\trepositoryformatversion = 1\n",
    "[core]\nbare\n[Core] Bare = no ; comment\n",
    '[remote "Origin"]\n\turl = "a b"  x\\\n y # z\n',
    '[a "sub \\" q"]\n\tk = "quoted ; not a comment"\n',
    "[extensions]\n\tobjectFormat = sha1\n\tworktreeConfig\n",
    "# only a comment\n; another\n\n[s.Sub]\n\tkey=value\t \n",
    "\ufeff[core]\r\n\tbare = true\r\n",
    '[x]\n\tv = tab\\there\\nnewline\\\\back\\"quote\n',
]


def git_list(path: Path) -> list[tuple[str, str | None]]:
    out = subprocess.run(
        ["git", "config", "--file", str(path), "--list", "--null"],
        check=True,
        capture_output=True,
    ).stdout.decode()
    items: list[tuple[str, str | None]] = []
    for record in out.split("\0")[:-1]:
        key, sep, value = record.partition("\n")
        items.append((key, value if sep else None))
    return items


def lowered(items: list[tuple[str, str | None]]) -> list[tuple[str, str | None]]:
    """git lists section and name lower-cased, a subsection as written."""
    out = []
    for key, value in items:
        section, _, rest = key.partition(".")
        sub, _, name = rest.rpartition(".")
        out.append((".".join(p for p in (section.lower(), sub, name.lower()) if p), value))
    return out


@pytest.mark.parametrize("text", TEXTS)
def test_reads_as_git_does(tmp_path: Path, text: str) -> None:
    path = tmp_path / "config"
    path.write_text(text, encoding="utf-8")
    assert parse_config(path.read_text(encoding="utf-8")) == lowered(git_list(path))


@pytest.mark.parametrize("text", ["[core\n", "[core]\n\t= x\n", 'k = "open\n', "key = v\n"])
def test_malformed_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "config"
    path.write_text(text)
    with pytest.raises(ConfigError, match="bad config line"):
        read_config(path)


def test_values_by_type() -> None:
    config = Config(parse_config("[core]\nbare\nn = 2k\nf = off\n[Core]\nF = 1\n"))
    assert config.get_bool("core.bare") is True
    assert config.get_bool("CORE.f") is True  # the last value wins
    assert config.get_int("core.n", 0) == 2048
    assert config.get_bool("core.missing") is None
    assert config.get_int("core.missing", 7) == 7


FORMATS = [
    ("", None),
    ("[core]\nrepositoryformatversion = 1\n", None),
    ("[core]\nrepositoryformatversion = 2\n", "format version 2"),
    ("[core]\nrepositoryformatversion = 1\n[extensions]\nobjectFormat = sha256\n", "sha256"),
    ("[core]\nrepositoryformatversion = 1\n[extensions]\nobjectformat = SHA1\n", None),
    ("[core]\nrepositoryformatversion = 1\n[extensions]\nrefStorage = reftable\n", "reftable"),
    ("[core]\nrepositoryformatversion = 1\n[extensions]\nrefStorage = files\n", None),
    ("[core]\nrepositoryformatversion = 1\n[extensions]\nfrobnicate = 1\n", "frobnicate"),
    ("[core]\nrepositoryformatversion = 0\n[extensions]\nfrobnicate = 1\n", None),
    ("[core]\nrepositoryformatversion = 0\n[extensions]\nobjectFormat = sha1\n", "version 1"),
    (
        "[core]\nrepositoryformatversion = 1\n[extensions]\nworktreeConfig = true\n"
        "noop\nnoop-v1\npartialClone = origin\npreciousObjects = true\n",
        None,
    ),
    ("[core]\nrepositoryformatversion = 0\n[extensions]\npartialclone = origin\n", None),
]


@pytest.mark.parametrize(("text", "refused"), FORMATS)
def test_formats(text: str, refused: str | None) -> None:
    config = Config(parse_config(text))
    if refused is None:
        check_format(config, Path("/r/.git"))
    else:
        with pytest.raises(ConfigError, match=refused):
            check_format(config, Path("/r/.git"))

"""What `pip install` puts beside the package: the manual page where `man gdag` finds it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def installed_man_page() -> Path:
    """Where pip put the page, from the RECORD of the gdag installed in this environment
    (not the gdag.egg-info of a checkout, which importlib.metadata may find first)."""
    purelib = Path(sysconfig.get_paths()["purelib"])
    infos = sorted(purelib.glob("gdag-*.dist-info"))
    if not infos:
        pytest.skip("gdag is not installed in this environment (pip install -e .)")
    record = (infos[0] / "RECORD").read_text().splitlines()
    found = [line.split(",")[0] for line in record if ",sha256=" in line]
    found = [f for f in found if f.endswith("share/man/man1/gdag.1")]
    assert found, f"{infos[0]}/RECORD has no share/man/man1/gdag.1"
    return (purelib / found[0]).resolve()


def test_man_page_is_installed_under_the_prefix() -> None:
    page = installed_man_page()
    assert page == (Path(sys.prefix) / "share" / "man" / "man1" / "gdag.1").resolve()
    assert page.is_file()
    assert any(line.startswith(".TH GDAG 1 ") for line in page.read_text().splitlines())


def test_man_finds_it_from_path() -> None:
    man = shutil.which("man")
    if man is None:
        pytest.skip("man is not installed")
    installed_man_page()
    # man-db looks in ../share/man beside each directory on PATH.
    env = {k: v for k, v in os.environ.items() if k != "MANPATH"}
    env["PATH"] = os.pathsep.join([str(Path(sys.prefix) / "bin"), "/usr/bin", "/bin"])
    proc = subprocess.run([man, "-w", "gdag"], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()).resolve() == installed_man_page()

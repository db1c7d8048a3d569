"""docs/tutorial.md runs as written; the docs name only commands and options that exist.

The tutorial's fenced blocks are read in order:

- a ```sh block is shell commands, run in one `bash -e` session, in a fresh
  temporary directory (lines that install gdag, `python3 -m venv …` and
  `pip install …`, are for readers and are left out: the gdag under test is
  first on PATH);
- a block right after `<!-- file: NAME -->` is written to NAME, and one after
  `<!-- append: NAME -->` is added to its end, at that point of the session
  and in its current directory;
- any other block (```text, ```diff) is for reading only.

Every `gdag COMMAND --option` in the tutorial, the cookbook and the comparison
(code blocks and inline code) must be a command and option of the CLI, and
their relative links must lead to a file and heading that exist.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import fsck, gdag, git
from test_docs import cli_commands

ROOT = Path(__file__).resolve().parent.parent
TUTORIAL = ROOT / "docs" / "tutorial.md"
DOCS = [TUTORIAL, ROOT / "docs" / "cookbook.md", ROOT / "docs" / "comparison.md"]
READER_ONLY = re.compile(r"^\s*(pip install|python3 -m venv)\b")
BLOCK = re.compile(
    r"^(?:<!-- (?P<action>file|append): (?P<name>[^ ]+) -->\n\s*)?"
    r"^```(?P<lang>[\w-]*)\n(?P<body>.*?)^```[ \t]*$",
    re.M | re.S,
)
EOF_MARK = "GDAG_TUTORIAL_EOF"
REPO_MARK = "@@tutorial-repo="


def tutorial_blocks() -> list[tuple[str, str, str | None, str | None]]:
    """(lang, body, action, file name) of every fenced block, in order."""
    text = TUTORIAL.read_text()
    blocks = [(m["lang"], m["body"], m["action"], m["name"]) for m in BLOCK.finditer(text)]
    markers = re.findall(r"^<!-- (?:file|append): ", text, re.M)
    assert len(markers) == sum(1 for b in blocks if b[2]), (
        "a <!-- file: --> or <!-- append: --> line is not directly followed by a fenced block"
    )
    return blocks


def tutorial_script() -> str:
    """The tutorial as one shell script."""
    parts = []
    for lang, body, action, name in tutorial_blocks():
        if action:
            assert EOF_MARK not in body
            redirect = ">" if action == "file" else ">>"
            parts.append(f"cat {redirect} '{name}' <<'{EOF_MARK}'\n{body}{EOF_MARK}\n")
        elif lang == "sh":
            lines = [line for line in body.splitlines() if not READER_ONLY.match(line)]
            parts.append("\n".join(lines) + "\n")
    parts.append(f'echo "{REPO_MARK}$PWD"\n')
    return "".join(parts)


def sh_commands() -> str:
    return "".join(
        body for lang, body, action, _ in tutorial_blocks() if lang == "sh" and not action
    )


def test_tutorial_blocks_are_well_formed() -> None:
    blocks = tutorial_blocks()
    langs = {lang for lang, *_ in blocks}
    assert langs <= {"sh", "text", "toml", "python", "diff"}, langs
    assert all(lang in ("toml", "python") for lang, _, action, _ in blocks if action)
    # The install line is there for readers, marked, and left out of the test.
    install = [line for line in sh_commands().splitlines() if READER_ONLY.match(line)]
    assert install and "pip install" in install[0]
    assert "already done if you ran the README's first command" in TUTORIAL.read_text()


def test_tutorial_runs_as_written(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    script = tmp_path / "tutorial.sh"
    script.write_text(tutorial_script())
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
        "TMPDIR": str(tmp_path),  # `mktemp -d` stays inside the test's directory
    }
    proc = subprocess.run(
        ["bash", "-e", str(script)],
        cwd=work,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
    )
    out = proc.stdout
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\n--- stdout\n{out}\n--- stderr\n{proc.stderr}"
    )

    # What the tutorial says the commands print.
    assert "hello again\nhello, world\n" in out
    assert out.count("refused, exit status 3") == 2
    assert "a node failed, exit status 1" in out
    assert "groceries: 3\npoem: 5\ntodo: 3\ntotal: 11\n" in out
    final_report = "groceries: 3\nmy-list: 2\npoem: 5\ntodo: 3\ntotal: 13\n"
    assert out.count(final_report) == 2  # after the replay, and the backup after the kill
    # The Python section: what `explore.py` prints is what the tutorial shows.
    python_out = re.search(
        r"^```sh\npython3 explore.py\n```\n\n```text\n(.*?)^```", TUTORIAL.read_text(), re.M | re.S
    )
    assert python_out, "the tutorial no longer runs explore.py"
    assert python_out[1] in out

    repo = Path(out.split(REPO_MARK, 1)[1].strip())
    assert repo.is_relative_to(tmp_path) and (repo / "gdag.toml").is_file()
    commits = gdag("lookup", "commits/*", cwd=repo).text.split()
    head = git("rev-parse", "--short=7", "HEAD", cwd=repo).strip()
    assert commits == [f"commits/{head}"]

    # The replay's offset in the text is the first note's: the new chain has its
    # replay event there, and every note after it.
    replay = re.search(r"gdag replay --from (\d+)\n", sh_commands())
    assert replay, "the tutorial no longer runs `gdag replay --from N`"
    offset = int(replay[1])
    events = json.loads(gdag("log", "--json", cwd=repo).stdout)
    by_offset = {e["offset"]: e for e in events}
    assert by_offset[offset]["event"] == "replay"
    notes = [e["offset"] for e in events if e["event"] == "publish" and "notes/new" in e["outputs"]]
    assert len(notes) == 5 and min(notes) == offset + 1  # the last one from explore.py

    # The kill left nothing behind: no session, an archive of the replaced log, a clean store.
    assert git("for-each-ref", "refs/gdag/sessions", cwd=repo) == ""
    assert git("for-each-ref", "refs/gdag/archive", cwd=repo) != ""
    fsck(repo)


# -- every command named in the docs exists ---------------------------------------------

CODE = re.compile(r"^```[\w-]*\n(.*?)^```$|`([^`\n]+)`", re.M | re.S)
COMMAND = re.compile(r"\bgdag[ \t]+([a-z][a-z-]*)([^|;&)`\n]*)")
OPTION = re.compile(r"(?<![\w$/.-])(--?[A-Za-z][\w-]*)")


def gdag_commands(text: str) -> list[tuple[str, list[str]]]:
    """(command, options) of every `gdag …` in code blocks and inline code."""
    found = []
    for m in CODE.finditer(text):
        code = m[1] if m[1] is not None else m[2]
        for c in COMMAND.finditer(code):
            args = c[2].split(" -- ", 1)[0]  # after `--`, values only
            args = re.sub(r"'[^']*'", "", args)  # quoted values such as patterns
            found.append((c[1], OPTION.findall(args)))
    return found


def test_docs_name_only_real_commands_and_options() -> None:
    commands = cli_commands()
    wrong = []
    for doc in DOCS:
        uses = gdag_commands(doc.read_text())
        assert uses, f"{doc.name} names no gdag command"
        for command, options in uses:
            if command not in commands:
                wrong.append(f"{doc.name}: gdag {command}")
                continue
            allowed = {*commands[command], "-C", "--log", "-h", "--help"}
            wrong += [f"{doc.name}: gdag {command} {o}" for o in options if o not in allowed]
    assert not wrong, "not in the CLI:\n  " + "\n  ".join(sorted(set(wrong)))


def anchors(text: str) -> set[str]:
    """GitHub's anchors for the headings of a Markdown text."""
    found = set()
    for heading in re.findall(
        r"^#+ (.+)$", re.sub(r"^```.*?^```$", "", text, flags=re.M | re.S), re.M
    ):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


def test_docs_links_lead_somewhere() -> None:
    broken = []
    for doc in [*DOCS, ROOT / "README.md"]:
        for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
            if re.match(r"[a-z]+:", target):
                continue  # a URL
            path, _, anchor = target.partition("#")
            dest = (doc.parent / path).resolve() if path else doc
            if not dest.exists():
                broken.append(f"{doc.name}: {target}")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text()):
                broken.append(f"{doc.name}: {target} (no such heading)")
    assert not broken, "broken links:\n  " + "\n  ".join(broken)

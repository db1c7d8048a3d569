"""The executor seam: jobs run from their own bytes in a temporary directory, no git."""

from __future__ import annotations

import ast
import sys
import threading
from pathlib import Path

import pytest

from gdag.executors import executor_for, run_job
from gdag.job import MODE_DIR, PYTHON, SHELL, Emitted, Job, TreeFile, Value

GDAG = Path(__file__).resolve().parent.parent / "gdag"
PURE = ["job.py", "shellnode.py", "pynode.py", "executors/__init__.py", "executors/local.py"]
GIT_SIDE = {"gdag.repo", "gdag.state", "gdag.session", "gdag.log", "gdag.workspace", "dulwich"}


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("module", PURE)
def test_the_job_side_needs_no_repository_and_no_git(module: str) -> None:
    imports = imported_modules(GDAG / module)
    assert not {m for m in imports if m in GIT_SIDE or m.startswith("dulwich")}, imports


def shell_job(tmp: Path, command: str, **kw: object) -> Job:
    fields: dict = {
        "id": "n.1.abc",
        "node": "n",
        "kind": SHELL,
        "command": command,
        "code": "c0de",
        "inputs": {},
        "targets": {},
        "publishes": ("out/*",),
        "workdir": None,
    }
    fields.update(kw)
    return Job(**fields)


def test_a_shell_job_runs_from_its_own_bytes_outside_any_repository(tmp_path: Path) -> None:
    work = tmp_path / "job"
    work.mkdir()
    job = shell_job(
        tmp_path,
        'cat "$GDAG_IN_TEXT" > "$GDAG_OUT/out/copy"; ls "$GDAG_IN_FAM" > "$GDAG_OUT/out/fam";'
        ' cat "$GDAG_IN_TREE/sub/f" > "$GDAG_OUT/out/tree"; pwd > "$GDAG_OUT/out/pwd";'
        ' test -z "${GDAG_IN_NONE+set}" && echo unset > "$GDAG_OUT/out/none"',
        inputs={
            "text": Value("t", 3, "str", data=b'"a $(rm -rf /) b"'),
            "fam": {
                "f/x": Value("f/x", 1, "bytes", data=b"1"),
                "f/y": Value("f/y", 2, "bytes", data=b"2"),
            },
            "tree": Value(
                "d", 1, "dir", tree=(TreeFile(b"sub", MODE_DIR), TreeFile(b"sub/f", 0o100644, b"F"))
            ),
            "none": None,
        },
        targets={"text": "t", "fam": "f/*", "tree": "d", "none": "n"},
    )
    result = run_job(job, work, lambda name, value: None)
    assert result.status == "ok", result.log
    out = Path(result.out_dir or "")
    assert (out / "out/copy").read_bytes() == b"a $(rm -rf /) b"
    assert (out / "out/fam").read_text().split() == ["x", "y"]
    assert (out / "out/tree").read_text() == "F"
    assert (out / "out/pwd").read_text().strip() == str(work)
    assert (out / "out/none").read_text().strip() == "unset"


def test_a_directory_value_cannot_write_outside_its_target(tmp_path: Path) -> None:
    job = shell_job(
        tmp_path,
        "true",
        inputs={"d": Value("d", 1, "dir", tree=(TreeFile(b"../escape", 0o100644, b"x"),))},
        targets={"d": "d"},
    )
    result = run_job(job, tmp_path / "w", lambda name, value: None)
    assert result.status == "failed" and "unsafe name" in (result.error or "")
    assert not (tmp_path / "escape").exists()


def test_a_python_job_emits_typed_values_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GDAG_HOOK_GUARD", "1")  # a Python job sets it in this process
    (tmp_path / "mod_exec_job.py").write_text(
        "def f(n: int, ctx):\n"
        "    ctx.publish('early', 'first')\n"
        "    return {'sum': n + 1, 'raw': b'\\x00'}\n"
    )
    job = Job(
        id="f.1.abc",
        node="f",
        kind=PYTHON,
        command="mod_exec_job:f",
        code="c0de",
        inputs={"n": Value("n", 1, "int", data=b"41")},
        targets={"n": "n"},
        publishes=("early", "sum", "raw"),
        workdir=str(tmp_path),
    )
    got: list[tuple[str, Emitted]] = []
    (tmp_path / "w").mkdir()
    result = run_job(job, tmp_path / "w", lambda name, value: got.append((name, value)))
    assert result.status == "ok", result.log
    assert got == [
        ("early", Emitted("str", b"first")),
        ("sum", Emitted("json", b"42")),
        ("raw", Emitted("bytes", b"\x00")),
    ]
    sys.modules.pop("mod_exec_job", None)


def test_a_python_job_publishing_outside_its_publishes_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GDAG_HOOK_GUARD", "1")  # a Python job sets it in this process
    (tmp_path / "mod_exec_bad.py").write_text("def f():\n    return {'other': 1}\n")
    job = Job(
        "f.1.x", "f", PYTHON, "mod_exec_bad:f", "c", {}, {}, ("a", "b"), workdir=str(tmp_path)
    )
    (tmp_path / "w").mkdir()
    result = run_job(job, tmp_path / "w", lambda name, value: None)
    assert result.status == "failed" and "may not publish 'other'" in (result.error or "")
    sys.modules.pop("mod_exec_bad", None)


def test_the_local_executor_cancels_a_running_job_and_forgets_it(tmp_path: Path) -> None:
    executor = executor_for("local")
    job = shell_job(tmp_path, "sleep 30")
    executor.submit(job, lambda name, value: None)
    threading.Timer(0.3, executor.cancel, [job.id]).start()
    result = executor.result(job.id, timeout=20)
    assert result.status == "failed" and result.error == "cancelled"
    assert executor.reattach(job.id)
    executor.forget(job.id)
    assert not executor.reattach(job.id)
    executor.close()


def test_an_unknown_executor_is_a_usage_error() -> None:
    from gdag.errors import UsageError

    with pytest.raises(UsageError, match="unknown executor 'nope'"):
        executor_for("nope")

"""The compiled definition: typed model, and dag.json bytes pinned across upgrades."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import gdag, git

GOLDEN = Path(__file__).parent / "golden"


def test_dag_json_and_code_hashes_match_the_pinned_bytes(tmp_path: Path) -> None:
    """An existing log must not see its nodes turn stale after an upgrade: the
    compiled form of a definition using every key is byte-identical to the one
    recorded before the typed model existed, code hashes included."""
    repo = tmp_path / "repo"
    shutil.copytree(GOLDEN / "repo", repo)
    git("init", "-q", cwd=repo)
    assert gdag("init", cwd=repo).returncode == 0
    tree = git("rev-parse", "refs/gdag/logs/main^{tree}", cwd=repo).strip()
    stored = git("cat-file", "blob", f"{tree}:dag.json", cwd=repo)
    assert stored == (GOLDEN / "dag.json").read_text()


def test_typed_dag_round_trips_to_the_stored_form() -> None:
    from gdag.dag import Dag

    doc = json.loads((GOLDEN / "dag.json").read_text())
    dag = Dag.from_json(doc)
    assert dag.to_json() == doc
    assert dag.to_bytes().decode() == (GOLDEN / "dag.json").read_text()
    node = dag.nodes["thumbnail"]
    assert node.mode == "each" and node.timeout == 30.0 and node.cwd == "scripts"
    assert node.may_publish("thumbs/a.jpg") and not node.may_publish("count")
    assert str(dag.output_type("thumbs/a.jpg")) == "bytes"
    assert dag.output_type("summary") is None
    assert str(dag.output_type("report")) == "dict[str, list[int | None]]"
    assert dag.outputs["half"].origin == "return of halve"

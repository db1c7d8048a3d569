"""The short version of scripts/faults.py: gdag SIGKILLed at random points, then recovered.

12 trials (3 each of publish, run, replay and speculative runs) with a fixed seed;
the script itself checks convergence with an uninterrupted twin, `git fsck` and
leftover session refs, prints a summary table and exits non-zero on any failure.
The full run (1,000 trials) is `python scripts/faults.py`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "faults.py"
KINDS = {"publish", "run", "replay", "speculative"}


def summary_rows(report: str) -> dict[str, dict[str, str]]:
    """kind -> {column: cell} from the script's markdown summary table."""
    lines = report.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| kind |"))
    columns = [c.strip() for c in lines[header].strip("|").split("|")]
    rows = {}
    for line in lines[header + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip().strip("*") for c in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(columns, cells, strict=True))
    return rows


def test_short_fault_injection(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--trials", "12", "--seed", "1", "--workdir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = proc.stdout
    assert proc.returncode == 0, report + proc.stderr[-5000:]
    rows = summary_rows(report)
    assert set(rows) == KINDS | {"total"}, report
    for kind in KINDS:
        assert rows[kind]["trials"] == "3", report
    total = rows["total"]
    assert total["trials"] == "12", report
    assert total["divergences"] == "0", report
    assert total["fsck failures"] == "0", report
    assert total["errors"] == "0", report
    # Most kills land before the command ends (a run may finish before its timed kill).
    assert int(total["faults injected"]) >= 6, report

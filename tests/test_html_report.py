"""`gdag graph --format html` in a real headless Chromium (Debian's `chromium`, driven by Playwright).

The page is opened from `file://` and must make no network request, show every
vertex, and fill its details panel when a node or an output is clicked. A
screenshot is kept as a test artifact: under pytest's `tmp_path` always, and also
as `.artifacts/graph-report.png` at the repository root when `GDAG_ARTIFACTS` is set.

Playwright's own browser download is never used: it drives the system Chromium
(`GDAG_CHROMIUM`, else `chromium` on PATH). Without Playwright or Chromium the
test skips locally, but fails under CI (`CI` set), where `.ci/run` installs both.
"""

from __future__ import annotations

import json
import os
import shutil
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import pytest
from conftest import gdag
from test_graphview import DEFINITION

# The same DAG as tests/test_graphview.py: dynamic outputs, a failed and a never-run node.

CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO_ROOT = Path(__file__).resolve().parent.parent
ON_SCREEN = """g => {
    const b = g.getBoundingClientRect(), pane = document.getElementById('graph');
    const p = pane.getBoundingClientRect();
    const inside = b.left >= p.left && b.right <= p.left + pane.clientWidth
        && b.top >= p.top && b.bottom <= p.top + pane.clientHeight;
    const hit = document.elementFromPoint(b.left + b.width / 2, b.top + b.height / 2);
    return inside && b.width > 0 && b.height > 0 && hit !== null && hit.closest('g.v') === g;
}"""


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def _unavailable(reason: str) -> NoReturn:
    if _env_flag("CI"):
        pytest.fail(f"{reason}: .ci/run installs it, so under CI this is a failure")
    pytest.skip(reason)


def _chromium_or_fail() -> tuple[Any, str]:
    """Playwright's `sync_playwright` and the system Chromium, or a skip (a failure under CI)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the Python package `playwright` is not installed (pip install -e '.[test]')")
    exe = os.environ.get("GDAG_CHROMIUM") or shutil.which("chromium")
    if not exe:
        _unavailable("Chromium is not installed (apt-get install chromium)")
    return sync_playwright, exe


@contextmanager
def _headless_page(sync_playwright: Any, exe: str) -> Iterator[Any]:
    """A Playwright page (1280x800) in the system's headless Chromium."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.set_default_timeout(5_000)
            yield page
        finally:
            browser.close()


def _build_dag(repo: Path) -> Path:
    (repo / "gdag.toml").write_text(textwrap.dedent(DEFINITION))
    assert gdag("publish", "doc", "a b", cwd=repo).returncode == 1  # broken fails
    assert gdag("publish", "other", "x", "--no-run", cwd=repo).returncode == 0  # lazy never ran
    return repo


def _keep_screenshot(page: Any, tmp_path: Path) -> None:
    shot = tmp_path / "artifacts" / "graph-report.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 5_000
    if _env_flag("GDAG_ARTIFACTS"):
        kept = REPO_ROOT / ".artifacts" / "graph-report.png"
        kept.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, kept)


def test_html_report_in_headless_chromium(repo: Path, tmp_path: Path) -> None:
    sync_playwright, exe = _chromium_or_fail()  # before any work: skips (or fails) at once
    dag_repo = _build_dag(repo)
    with _headless_page(sync_playwright, exe) as page:
        _check_report(page, dag_repo, tmp_path)


def _check_report(page: Any, dag_repo: Path, tmp_path: Path) -> None:
    model = gdag("graph", "--format", "json", cwd=dag_repo)
    assert model.returncode == 0, model.stderr
    vertices = {v["id"]: v for v in json.loads(model.stdout)["vertices"]}
    report = tmp_path / "report.html"
    r = gdag("graph", "--format", "html", "-o", str(report), cwd=dag_repo)
    assert r.returncode == 0, r.stderr

    requests: list[str] = []
    sockets: list[str] = []
    problems: list[str] = []
    page.on("request", lambda req: requests.append(req.url))
    page.on("websocket", lambda ws: sockets.append(ws.url))
    page.on("pageerror", lambda err: problems.append(f"page error: {err}"))

    def on_console(msg: Any) -> None:
        if msg.type in ("error", "warning"):  # a CSP violation would show up here
            problems.append(f"console {msg.type}: {msg.text}")

    page.on("console", on_console)

    url = report.as_uri()
    page.goto(url, wait_until="load")
    page.wait_for_load_state("networkidle")

    # No network: the only request is the file:// page itself (data: would be fine too).
    assert url in requests, requests
    assert all(u == url or u.startswith("data:") for u in requests), requests
    assert not sockets, sockets
    assert "gdag: log" in page.title()

    # Every vertex is drawn and visible, once.
    groups = page.locator("svg g.v")
    assert groups.count() == len(vertices)
    drawn = groups.evaluate_all("gs => gs.map(g => g.dataset.id)")
    assert sorted(drawn) == sorted(vertices)
    for vid, v in vertices.items():
        g = page.locator(f'g.v[data-id="{vid}"]')
        assert g.is_visible(), vid
        assert v["name"] in g.locator("text").text_content(), vid
        # On screen for real (scrolled to, if the drawing is wider than its pane), not hidden
        # by anything: the element under the middle of its box is the vertex itself.
        g.scroll_into_view_if_needed()
        assert g.evaluate(ON_SCREEN), f"{vid} is not on screen"
    page.locator("#graph").evaluate("el => el.scrollTo(0, 0)")

    # Boxes do not overlap each other, and each label fits inside its box.
    boxes = groups.evaluate_all(
        """gs => gs.map(g => {
             const r = g.querySelector('rect').getBBox(), t = g.querySelector('text').getBBox();
             return {id: g.dataset.id, x: r.x, y: r.y, w: r.width, h: r.height,
                     tx: t.x, tw: t.width};
           })"""
    )
    for i, a in enumerate(boxes):
        assert a["x"] <= a["tx"] and a["tx"] + a["tw"] <= a["x"] + a["w"], f"label overflows: {a}"
        for b in boxes[i + 1 :]:
            apart = (
                a["x"] + a["w"] <= b["x"]
                or b["x"] + b["w"] <= a["x"]
                or a["y"] + a["h"] <= b["y"]
                or b["y"] + b["h"] <= a["y"]
            )
            assert apart, f"{a['id']} overlaps {b['id']}"

    details = page.locator("#details")
    assert "Click a node" in details.inner_text()

    # A click on the failed node: its name, state and log tail in the panel.
    page.locator('g.v[data-id="node:broken"]').click()
    assert details.locator("h1").is_visible()
    assert details.locator("h1").inner_text() == "node broken"
    shown = json.loads(details.locator("pre").first.inner_text())
    assert shown["name"] == "broken" and shown["state"] == "failed"
    assert shown["last_status"] == vertices["node:broken"]["last_status"]
    assert "log (tail)" in details.locator("h2").inner_text()
    assert "it broke" in details.locator("pre").nth(1).inner_text()
    assert page.locator("g.v.selected").evaluate_all("gs => gs.map(g => g.dataset.id)") == [
        "node:broken"
    ]
    _keep_screenshot(page, tmp_path)

    # A click on an output: its panel replaces the node's, with no log section.
    page.locator('g.v[data-id="output:joined"]').click()
    assert details.locator("h1").inner_text() == "output joined"
    shown = json.loads(details.locator("pre").inner_text())
    assert shown["kind"] == "output" and shown["version"] == 1 and shown["preview"] == "ab"
    assert details.locator("h2").count() == 0
    assert page.locator("g.v.selected").count() == 1

    # The keyboard works too: Enter on a focused vertex.
    page.locator('g.v[data-id="output:parts/*"]').focus()
    page.keyboard.press("Enter")
    assert details.locator("h1").inner_text() == "output parts/*"
    assert json.loads(details.locator("pre").inner_text())["members"] == 2

    assert not problems, problems
    assert requests == [url], requests  # clicks loaded nothing either

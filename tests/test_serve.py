"""`gdag serve`: a real server on 127.0.0.1 (port 0), read over HTTP and in headless Chromium.

The server is a real `gdag serve` process, stopped with SIGINT; publishes and
runs come from other real `gdag` processes while the page is open, and the page
must follow them without a reload. The browser comes from tests/test_html_report.py
(the system Chromium driven by Playwright). Screenshots of each view are kept
under the test's `tmp_path/artifacts` (and `.artifacts/` with `GDAG_ARTIFACTS`).
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import define, fsck, gdag, wait_for
from prometheus_client.parser import text_string_to_metric_families
from test_html_report import REPO_ROOT, _chromium_or_fail, _env_flag, _headless_page

DEFINITION = """
[nodes.slow]
run = '''
echo "started on $(cat "$GDAG_IN_X")"
while [ ! -f go ]; do
  if [ -f half ] && [ ! -f half.done ]; then echo "half way"; touch half.done; fi
  sleep 0.05
done
cp "$GDAG_IN_X" "$GDAG_OUT/y"
'''
inputs = { x = "x" }
publishes = ["y"]

[nodes.broken]
run = 'echo "it broke on $(cat "$GDAG_IN_X")" >&2; exit 1'
inputs = { x = "x" }
publishes = ["z"]
"""


@contextmanager
def serving(repo: Path, tmp_path: Path, *args: str) -> Iterator[tuple[str, Path]]:
    """A `gdag serve --port 0` process: its URL, and the file holding its stderr."""
    out, err = tmp_path / "serve.out", tmp_path / "serve.err"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gdag", "serve", "--port", "0", *args],
        cwd=repo,
        stdout=out.open("wb"),
        stderr=err.open("wb"),
    )
    try:
        url = wait_for(out).splitlines()[0]
        yield url, err
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert proc.returncode == 0, err.read_text()


def fetch(url: str, method: str = "GET", host: str | None = None) -> tuple[int, bytes, Any]:
    request = urllib.request.Request(url, method=method)
    if host is not None:
        request.add_header("Host", host)
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, r.read(), r.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers


@pytest.fixture
def dag_repo(repo: Path) -> Path:
    define(repo, DEFINITION)
    (repo / "go").touch()
    assert gdag("publish", "x", "one", cwd=repo).returncode == 1  # slow ok, broken fails
    (repo / "go").unlink()
    return repo


def test_http_views_metrics_and_refusals(dag_repo: Path, tmp_path: Path) -> None:
    big = bytes(range(256)) * 8192  # 2 MiB, read back through the download
    (tmp_path / "big").write_bytes(big)
    assert gdag("publish", "big", "--file", str(tmp_path / "big"), cwd=dag_repo).returncode == 0
    with serving(dag_repo, tmp_path) as (url, err):
        assert url.startswith("http://127.0.0.1:") and url.endswith("/")
        status, body, headers = fetch(url)
        assert status == 200 and b"/static/app.js" in body
        assert "default-src 'none'" in headers["Content-Security-Policy"]

        # /metrics: the same families as `gdag metrics`, read by Prometheus' parser.
        status, body, headers = fetch(url + "metrics")
        assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
        names = {f.name for f in text_string_to_metric_families(body.decode())}
        cli = gdag("metrics", cwd=dag_repo).text
        assert names == {f.name for f in text_string_to_metric_families(cli)}
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(body.decode())
            for s in f.samples
        }
        assert (
            samples[
                "gdag_sessions_total", (("log", "main"), ("node", "broken"), ("status", "failed"))
            ]
            == 1
        )

        graph = json.loads(fetch(url + "api/graph")[1])
        states = {v["name"]: v["state"] for v in graph["vertices"].values() if v["kind"] == "node"}
        assert states == {"slow": "up-to-date", "broken": "failed"}
        assert 'data-id="node:slow"' in graph["svg"]

        value = json.loads(fetch(url + "api/value?name=y")[1])
        assert value["preview"] == "one" and value["meta"]["version"] == 1
        assert value["provenance"]["node"] == "slow"
        status, body, headers = fetch(url + "api/raw?name=big")
        assert status == 200 and body == big and headers["Content-Length"] == str(len(big))
        log = json.loads(fetch(url + "api/log?limit=2")[1])
        assert [e["offset"] for e in log["events"]] == [5, 4] and log["next"] == 3
        older = json.loads(fetch(url + "api/log?limit=2&before=3")[1])
        assert [e["offset"] for e in older["events"]] == [3, 2]
        sessions = json.loads(fetch(url + "api/sessions?node=broken")[1])
        assert [s["status"] for s in sessions] == ["failed"]
        session = json.loads(fetch(url + "api/session?id=" + sessions[0]["session"])[1])
        assert "it broke on one" in session["log_tail"]

        # Errors say what the CLI says; nothing but GET; loopback names only.
        status, body, _ = fetch(url + "api/value?name=nope")
        cli_err = gdag("lookup", "nope", cwd=dag_repo).stderr.splitlines()[0]
        assert status == 404 and cli_err == "gdag: error: " + json.loads(body)["error"]
        assert fetch(url + "api/value")[0] == 400
        assert fetch(url + "no/such/page")[0] == 404
        assert fetch(url, method="POST")[0] == 405
        assert fetch(url, host="attacker.example:80")[0] == 403
    assert err.read_text() == ""
    fsck(dag_repo)


def test_a_non_loopback_address_needs_the_token(dag_repo: Path, tmp_path: Path) -> None:
    with serving(dag_repo, tmp_path, "--host", "0.0.0.0") as (url, err):
        assert "?token=" in url
        base, token = url.split("?token=")
        local = base.replace("0.0.0.0", "127.0.0.1")
        assert fetch(local)[0] == 403
        assert fetch(local + "metrics?token=wrong")[0] == 403
        assert fetch(local + "metrics?token=" + token)[0] == 200
        assert fetch(local + "?token=" + token, host="any.name.example")[0] == 200
        assert "needs the token" in err.read_text()


def test_bad_arguments_are_refused(dag_repo: Path, tmp_path: Path) -> None:
    r = gdag("serve", "--host", "example.com", cwd=dag_repo)
    assert r.returncode == 3 and "--host must be an IP address" in r.stderr, r.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = gdag("serve", "--port", str(port), cwd=dag_repo)
    assert r.returncode == 3, r.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr and "--port 0" in r.stderr
    r = gdag("serve", "--port", "70000", cwd=dag_repo)
    assert r.returncode == 2 and "0..65535" in r.stderr, r.stderr
    subprocess.run(["git", "init", "-q", str(tmp_path / "fresh")], check=True)
    r = gdag("serve", cwd=tmp_path / "fresh")
    assert r.returncode == 3 and "no log 'main'" in r.stderr


def _shot(page: Any, tmp_path: Path, name: str) -> None:
    shot = tmp_path / "artifacts" / f"serve-{name}.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if _env_flag("GDAG_ARTIFACTS"):
        kept = REPO_ROOT / ".artifacts" / shot.name
        kept.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, kept)


def test_live_page_in_headless_chromium(dag_repo: Path, tmp_path: Path) -> None:
    sync_playwright, exe = _chromium_or_fail()
    with serving(dag_repo, tmp_path) as (url, _), _headless_page(sync_playwright, exe) as page:
        page.set_default_timeout(20_000)
        requests: list[str] = []
        problems: list[str] = []
        page.on("request", lambda req: requests.append(req.url))
        page.on("websocket", lambda ws: problems.append(f"websocket {ws.url}"))
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on(
            "console",
            lambda m: (
                problems.append(f"console {m.type}: {m.text}")
                if m.type in ("error", "warning")
                else None
            ),
        )
        page.goto(url, wait_until="load")
        page.wait_for_selector("#live.on")

        # Waits are selectors, not script: the page's policy forbids evaluating strings.
        def state_of(node: str, wanted: str) -> None:
            page.locator(f'g.v[data-id="node:{node}"][data-state="{wanted}"]').wait_for()

        state_of("slow", "up-to-date")
        state_of("broken", "failed")
        _shot(page, tmp_path, "graph")

        details = page.locator("#details")
        # Another process publishes: the node turns stale, with no reload.
        page.evaluate("() => { window.notReloaded = true; }")
        assert gdag("publish", "x", "two", "--no-run", cwd=dag_repo).returncode == 0
        state_of("slow", "stale")
        # A run starts: running while its session is held, then up to date.
        run = subprocess.Popen(
            [sys.executable, "-m", "gdag", "run"],
            cwd=dag_repo,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            state_of("slow", "running")
            _shot(page, tmp_path, "running")
            # Its session's log as it is written, in the open panel.
            page.locator('nav button[data-tab="sessions"]').click()
            page.locator("#sessions tbody tr.running").first.click()
            details.locator("pre.session-log", has_text="started on two").wait_for()
            (dag_repo / "half").touch()
            details.locator("pre.session-log", has_text="half way").wait_for()
            _shot(page, tmp_path, "running-log")
            page.locator('nav button[data-tab="outputs"]').click()
            (dag_repo / "go").touch()
            state_of("slow", "up-to-date")
        finally:
            run.wait(timeout=60)
        assert run.returncode == 1  # broken failed again
        assert list((dag_repo / ".git" / "gdag" / "running" / "main").iterdir()) == []
        assert page.evaluate("() => window.notReloaded") is True

        # A click on an output: its value and where it came from.
        page.locator('g.v[data-id="output:y"]').click()
        details.locator("pre.value", has_text="two").wait_for()
        assert details.locator("pre.value").inner_text() == "two"
        assert details.locator("h1").inner_text() == "output y"
        provenance = json.loads(details.locator("pre.provenance").inner_text())
        assert provenance["node"] == "slow" and provenance["version"] == 2
        link = details.locator("a[download]")
        assert "/api/raw?name=y" in link.get_attribute("href")
        _shot(page, tmp_path, "value")

        # The grid: an earlier version of x, by offset.
        first = page.locator('#outputs td.cell[title^="x v1 "]')
        first.click()
        details.locator("pre.value", has_text="one").wait_for()
        assert details.locator("pre.value").inner_text() == "one"
        provenance = json.loads(details.locator("pre.provenance").inner_text())
        assert provenance["version"] == 1 and provenance["event"] == "publish"
        _shot(page, tmp_path, "outputs")

        # Sessions, filtered by node; a failed session's log.
        page.locator('nav button[data-tab="sessions"]').click()
        page.locator("#node-filter").select_option("broken")
        page.locator("#sessions tbody tr.failed").nth(1).wait_for()
        page.locator("#sessions tbody tr:not(.failed)").first.wait_for(state="detached")
        assert page.locator("#sessions tbody tr").count() == 2
        assert page.locator("#sessions tbody tr td.timeline .span.failed").count() == 2
        page.locator("#sessions tbody tr").first.click()
        details.locator("pre.session-log", has_text="it broke on two").wait_for()
        _shot(page, tmp_path, "session-log")

        # The log, newest first, a page at a time.
        page.locator('nav button[data-tab="log"]').click()
        events = json.loads(gdag("log", "--json", cwd=dag_repo).stdout)
        page.locator("#log tbody tr").nth(len(events) - 1).wait_for()
        assert page.locator("#log tbody tr").count() == len(events)
        first_cells = page.locator("#log tbody tr").first.locator("td").all_inner_texts()
        assert first_cells[:2] == [str(events[0]["offset"]), events[0]["event"]]
        _shot(page, tmp_path, "log")

    assert not problems, problems
    base = url.rstrip("/")
    assert requests and all(r.startswith(base + "/") for r in requests), requests


def test_open_hands_the_url_to_the_web_browser(dag_repo: Path, tmp_path: Path) -> None:
    """`--open` starts the browser `$BROWSER` names (Python's webbrowser rules) on the URL."""
    opened = tmp_path / "opened"
    browser = tmp_path / "browser.py"
    browser.write_text(f"import sys; open({str(opened)!r}, 'w').write(sys.argv[1])\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BROWSER", f"{sys.executable} {browser} %s")
        with serving(dag_repo, tmp_path, "--open") as (url, _):
            assert wait_for(opened) == url
            assert fetch(url)[0] == 200


def test_a_killed_runs_session_shows_in_flight_until_recovered(
    dag_repo: Path, tmp_path: Path
) -> None:
    assert gdag("publish", "x", "two", "--no-run", cwd=dag_repo).returncode == 0
    pointers = dag_repo / ".git" / "gdag" / "running" / "main"
    with serving(dag_repo, tmp_path) as (url, _):
        run = subprocess.Popen([sys.executable, "-m", "gdag", "run", "slow"], cwd=dag_repo)
        try:
            end = time.monotonic() + 60
            while not (pointers.is_dir() and any(pointers.glob("slow.*"))):
                assert run.poll() is None and time.monotonic() < end, "no session started"
                time.sleep(0.05)
            sid = next(pointers.glob("slow.*")).name
            running = json.loads(fetch(url + "api/session?id=" + sid)[1])
            assert running["status"] == "running" and running["node"] == "slow"
        finally:
            run.kill()  # SIGKILL: its pointer and session ref stay behind
            run.wait()
        (dag_repo / "go").touch()  # the orphaned node process finishes too
        listed = json.loads(fetch(url + "api/sessions?node=slow")[1])
        assert listed[0]["session"] == sid and listed[0]["status"] == "in flight"
        left = json.loads(fetch(url + "api/session?id=" + sid)[1])
        assert left["status"] == "in flight" and left["log_tail"] == ""
        r = gdag("run", "slow", cwd=dag_repo)  # recovery drops it; the node runs again
        assert r.returncode == 0, r.stderr
        assert list(pointers.iterdir()) == []
        listed = json.loads(fetch(url + "api/sessions?node=slow")[1])
        assert all(s["status"] == "ok" for s in listed)
    fsck(dag_repo)


def test_a_large_value_is_served_as_its_bytes(repo: Path, tmp_path: Path) -> None:
    """A value kept as a git LFS object: /api/raw streams its bytes and /api/value
    previews them, never the pointer."""
    define(repo, '[values]\nlarge = "1KiB"\n')
    blob = b"large value\n" * 1000
    assert gdag("publish", "big", "-", cwd=repo, input=blob).returncode == 0
    with serving(repo, tmp_path) as (url, _):
        status, body, headers = fetch(f"{url}api/raw?name=big")
        assert status == 200 and body == blob and headers["Content-Length"] == str(len(blob))
        status, body, _ = fetch(f"{url}api/value?name=big")
        assert status == 200 and json.loads(body)["preview"].startswith("large value\n")

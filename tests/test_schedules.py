"""Schedules end to end: real gdag processes ticking one log, with GDAG_NOW as the clock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import define, fsck, gdag, git

HOURLY_ALL = """
    [schedules.h]
    every = "1h"
    catchup = "all"

    [schedules.paris]
    cron = "*/7 2-3 * * *"
    timezone = "Europe/Paris"
    catchup = "all"
"""


def tick_ids(git_dir: Path, ref: str = "refs/gdag/logs/main") -> list[str]:
    """The publish ids of every tick on the log's first-parent chain, oldest first."""
    out = subprocess.run(
        [
            "git",
            f"--git-dir={git_dir}",
            "log",
            "--first-parent",
            "--reverse",
            "--format=%(trailers:key=Gdag-Publish,valueonly)",
            ref,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line for line in out.split() if line.startswith("tick:")]


def lookup(repo: Path, output: str) -> str:
    r = gdag("lookup", output, cwd=repo)
    assert r.returncode == 0, r.stderr
    return r.text.strip()


def tick(repo: Path, now: str, *args: str) -> list[dict]:
    r = gdag("tick", "--json", *args, cwd=repo, env={"GDAG_NOW": now})
    assert r.returncode == 0, r.stderr
    return json.loads(r.text)


def start(repo: Path, now: str, *args: str, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "gdag", *args],
            cwd=repo,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={**os.environ, "GDAG_NOW": now},
        )


def wait_until(predicate, what: str, limit: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    """Poll until `predicate()` holds (a bound against hanging, not a timing assertion)."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


def test_tick_publishes_due_ticks_once_and_runs_subscribers(repo: Path) -> None:
    define(
        repo,
        """
        [schedules.nightly]
        cron = "0 2 * * *"
        timezone = "Europe/Paris"

        [nodes.stamp]
        run = 'cat "$GDAG_IN_T" > "$GDAG_OUT/stamped"'
        inputs = { t = "ticks/nightly" }
        publishes = ["stamped"]
        """,
    )
    first = tick(repo, "2026-01-10T08:00:00Z")
    assert [(t["output"], t["time"]) for t in first] == [
        ("ticks/nightly", "2026-01-10T02:00:00+01:00")
    ]
    assert lookup(repo, "ticks/nightly") == "2026-01-10T02:00:00+01:00"
    assert lookup(repo, "stamped") == "2026-01-10T02:00:00+01:00"  # the subscriber ran
    assert tick(repo, "2026-01-10T09:00:00Z") == []  # nothing new is due
    r = gdag("tick", cwd=repo, env={"GDAG_NOW": "2026-01-11T02:00:00+01:00"})
    assert r.returncode == 0 and r.text == "ticks/nightly 2026-01-11T02:00:00+01:00 v2 @ 4\n"
    dag = json.loads(git("show", "refs/gdag/logs/main:dag.json", cwd=repo))
    assert dag["schedules"] == {
        "nightly": {"catchup": "latest", "cron": "0 2 * * *", "timezone": "Europe/Paris"}
    }
    assert dag["outputs"]["ticks/nightly"] == {"from": "schedule nightly", "type": "str"}
    assert tick_ids(repo / ".git") == [
        "tick:nightly:2026-01-10T01:00:00Z",
        "tick:nightly:2026-01-11T01:00:00Z",
    ]
    fsck(repo)


def test_schedules_lists_last_next_and_due(repo: Path) -> None:
    define(repo, HOURLY_ALL)
    tick(repo, "2026-01-10T08:30:00Z")
    r = gdag("schedules", "--json", cwd=repo, env={"GDAG_NOW": "2026-01-10T10:30:00Z"})
    assert r.returncode == 0, r.stderr
    h, paris = json.loads(r.text)
    assert h == {
        "name": "h",
        "output": "ticks/h",
        "rule": "every 1h",
        "timezone": "UTC",
        "catchup": "all",
        "last": "2026-01-10T08:00:00Z",
        "next": "2026-01-10T11:00:00Z",
        "due": ["2026-01-10T09:00:00Z", "2026-01-10T10:00:00Z"],
    }
    assert paris["last"] == "2026-01-10T03:56:00+01:00" and paris["due"] == []
    assert paris["next"] == "2026-01-11T02:00:00+01:00"
    r = gdag("schedules", cwd=repo, env={"GDAG_NOW": "2026-01-10T10:30:00Z"})
    lines = r.text.splitlines()
    assert lines[0].split() == ["schedule", "rule", "catchup", "last", "tick", "next", "tick"] + [
        "due",
        "now",
    ]
    assert lines[1].split()[:1] + lines[1].split()[-3:] == [
        "h",
        "2026-01-10T08:00:00Z",
        "2026-01-10T11:00:00Z",
        "2",
    ]
    assert tick_ids(repo / ".git")[-1] == "tick:paris:2026-01-10T02:56:00Z"  # nothing written


def test_three_tickers_and_two_watchers_publish_each_tick_once(repo: Path, tmp_path: Path) -> None:
    define(repo, HOURLY_ALL)
    tick(repo, "2026-01-10T00:30:00Z")  # the first ticks; then a day and a half is missed
    now = "2026-01-11T12:30:00Z"
    expected = [f"tick:h:2026-01-{d}T{h:02d}:00:00Z" for d, h in _hours(10, 0, 11, 12)]
    expected += ["tick:paris:2026-01-09T02:56:00Z"]  # the first: the newest due then
    expected += [
        f"tick:paris:2026-01-{d}T{h:02d}:{m:02d}:00Z"
        for d in (10, 11)
        for h in (1, 2)
        for m in range(0, 60, 7)
    ]
    watchers = [
        start(repo, now, "watch", "--interval", "0.05", log=tmp_path / f"watch{i}.err")
        for i in range(2)
    ]
    try:
        for i in range(2):  # its first round, publishing what is due, starts now
            wait_until(
                lambda i=i: "watching" in (tmp_path / f"watch{i}.err").read_text(),
                f"watcher {i} started",
            )
        tickers = [
            start(repo, now, "tick", "--no-run", log=tmp_path / f"tick{i}.err") for i in range(3)
        ]
        for i, proc in enumerate(tickers):
            assert proc.wait(timeout=120) == 0, (tmp_path / f"tick{i}.err").read_text()
        # The tickers are done, so every due tick is in the log, whoever published it;
        # the last one there, nobody can append an earlier one any more.
        assert lookup(repo, "ticks/h") == "2026-01-11T12:00:00Z"
        assert lookup(repo, "ticks/paris") == "2026-01-11T03:56:00+01:00"
    finally:
        for proc in watchers:
            proc.send_signal(signal.SIGINT)
        for proc in watchers:
            proc.wait(timeout=60)
    ids = tick_ids(repo / ".git")
    assert [i for i, n in Counter(ids).items() if n > 1] == []
    assert sorted(set(ids)) == sorted(expected)
    fsck(repo)


def _hours(d0: int, h0: int, d1: int, h1: int) -> list[tuple[int, int]]:
    out = []
    d, h = d0, h0
    while (d, h) <= (d1, h1):
        out.append((d, h))
        d, h = (d + 1, 0) if h == 23 else (d, h + 1)
    return out


def test_two_watchers_alone_publish_each_tick_once(repo: Path, tmp_path: Path) -> None:
    define(repo, HOURLY_ALL)
    tick(repo, "2026-01-10T00:30:00Z")
    for now, last in (("2026-01-10T20:10:00Z", "20"), ("2026-01-11T05:59:59Z", "05")):
        watchers = [
            start(repo, now, "watch", "--interval", "0.05", log=tmp_path / f"w{i}.err")
            for i in range(2)
        ]
        try:
            for i in range(2):
                wait_until(
                    lambda i=i: "watching" in (tmp_path / f"w{i}.err").read_text(),
                    f"watcher {i} started",
                )
            wait_until(
                lambda last=last: lookup(repo, "ticks/h").endswith(f"T{last}:00:00Z"),
                "the watchers published the last tick due",
            )
        finally:
            for proc in watchers:
                proc.send_signal(signal.SIGINT)
            for proc in watchers:
                assert proc.wait(timeout=60) == 0
    ids = tick_ids(repo / ".git")
    hours = [i for i in ids if i.startswith("tick:h:")]
    assert hours == [f"tick:h:2026-01-{d}T{h:02d}:00:00Z" for d, h in _hours(10, 0, 11, 5)]
    assert len(ids) == len(set(ids))
    fsck(repo)


def test_watch_wakes_up_for_the_next_tick(repo: Path, tmp_path: Path) -> None:
    """Real time, one second apart: the watch checks every 60 s, yet ticks every second."""
    define(repo, '[schedules.s]\nevery = "1s"\ncatchup = "latest"\n')
    env_now = {k: v for k, v in os.environ.items() if k != "GDAG_NOW"}
    with open(tmp_path / "watch.err", "wb") as err:
        watcher = subprocess.Popen(
            [sys.executable, "-m", "gdag", "watch", "--interval", "60"],
            cwd=repo,
            stdin=subprocess.DEVNULL,
            stderr=err,
            env=env_now,
        )
    try:
        wait_until(lambda: len(tick_ids(repo / ".git")) >= 3, "three ticks", limit=30)
    finally:
        watcher.send_signal(signal.SIGINT)
        assert watcher.wait(timeout=60) == 0
    ids = tick_ids(repo / ".git")
    assert len(ids) == len(set(ids)) and sorted(ids) == ids
    fsck(repo)


def test_catchup_modes(repo: Path) -> None:
    define(
        repo,
        """
        [schedules.latest]
        every = "1h"

        [schedules.all]
        every = "1h"
        catchup = "all"

        [schedules.none]
        every = "1h"
        catchup = "none"
        """,
    )
    tick(repo, "2026-01-10T10:00:10Z")  # every schedule's first tick: 10:00
    got = tick(repo, "2026-01-10T13:20:00Z")  # 11:00, 12:00, 13:00 were missed
    assert [(t["schedule"], t["time"]) for t in got] == [
        ("all", "2026-01-10T11:00:00Z"),
        ("all", "2026-01-10T12:00:00Z"),
        ("all", "2026-01-10T13:00:00Z"),
        ("latest", "2026-01-10T13:00:00Z"),
    ]
    assert lookup(repo, "ticks/none") == "2026-01-10T10:00:00Z"  # 13:00 is 20 minutes late
    got = tick(repo, "2026-01-10T14:00:30Z")  # on time: every mode publishes 14:00
    assert sorted(t["schedule"] for t in got) == ["all", "latest", "none"]
    ids = tick_ids(repo / ".git")
    assert [i for i in ids if i.startswith("tick:none:")] == [
        "tick:none:2026-01-10T10:00:00Z",
        "tick:none:2026-01-10T14:00:00Z",
    ]
    fsck(repo)


def test_cron_across_a_clock_change_and_feb_29(repo: Path) -> None:
    define(
        repo,
        """
        [schedules.night]
        cron = "30 2 * * *"
        timezone = "Europe/Paris"
        catchup = "all"
        """,
    )
    tick(repo, "2026-03-28T12:00:00Z")
    got = tick(repo, "2026-03-30T12:00:00Z")
    assert [t["time"] for t in got] == [
        "2026-03-29T03:30:00+02:00",  # 02:30 did not exist that night
        "2026-03-30T02:30:00+02:00",
    ]
    define(repo, '[schedules.leap]\ncron = "0 12 29 feb *"\ncatchup = "all"\n')
    tick(repo, "2026-03-30T12:00:00Z")
    assert lookup(repo, "ticks/leap") == "2024-02-29T12:00:00Z"
    assert tick(repo, "2028-02-28T12:00:00Z") == []
    got = tick(repo, "2028-02-29T12:00:00Z")
    assert [t["time"] for t in got] == ["2028-02-29T12:00:00Z"]
    fsck(repo)


@pytest.mark.parametrize(
    ("toml", "needle"),
    [
        (
            '[schedules.a]\ncatchup = "all"\n',
            "[schedules.a]: needs exactly one of 'cron' or 'every'",
        ),
        ('[schedules.a]\ncron = "* * * * *"\nevery = "1m"\n', "[schedules.a]: needs exactly one"),
        ('[schedules.a]\ncron = "61 * * * *"\n', "[schedules.a]: cron '61 * * * *': minute"),
        ('[schedules.a]\ncron = "* * *"\n', "[schedules.a]: cron '* * *' has 3 fields, not 5"),
        ('[schedules.a]\nevery = "5w"\n', "[schedules.a]: every '5w' is not an interval"),
        (
            '[schedules.a]\ncron = "0 2 * * *"\ntimezone = "Mars/Olympus"\n',
            "[schedules.a]: unknown timezone 'Mars/Olympus'",
        ),
        (
            '[schedules.a]\nevery = "1h"\ntimezone = "UTC"\n',
            "[schedules.a]: timezone applies to cron rules only",
        ),
        (
            '[schedules.a]\nevery = "1h"\ncatchup = "some"\n',
            "[schedules.a]: catchup = 'some' is not one of latest, all, none",
        ),
        ('[schedules.a]\nevery = "1h"\nat = 3\n', "[schedules.a]: unknown key 'at'"),
        ('[schedules."a b"]\nevery = "1h"\n', "[schedules.a b]"),
        ("[schedules]\na = 1\n", "[schedules.a] must be a table"),
        (
            '[schedules.a]\nevery = "1h"\n[outputs."ticks/a"]\ntype = "int"\n',
            "schedule 'a' publishes ticks/a",
        ),
        (
            '[schedules.a]\nevery = "1h"\n[nodes.n]\nrun = "true"\npublishes = ["ticks/*"]\n',
            "[nodes.n]: publishes ticks/a, which schedule 'a' publishes",
        ),
    ],
)
def test_bad_schedules_are_definition_errors_naming_the_schedule(
    repo: Path, toml: str, needle: str
) -> None:
    (repo / "gdag.toml").write_text(toml)
    for command in (["tick"], ["check"]):
        r = gdag(*command, cwd=repo)
        assert r.returncode == 3, (command, r.stderr)
        assert r.stderr.startswith("gdag: error: gdag.toml: "), r.stderr
        assert needle in r.stderr, r.stderr
    assert tick_ids(repo / ".git") == []


def test_ticks_are_refused_to_gdag_publish_and_a_bad_gdag_now_to_every_command(
    repo: Path,
) -> None:
    define(repo, '[schedules.a]\nevery = "1h"\n')
    r = gdag("publish", "ticks/a", "2026-01-01T00:00:00Z", cwd=repo)
    assert r.returncode == 3 and "'ticks/a' is published by schedule a only" in r.stderr
    for command in (["tick"], ["schedules"], ["log", "--since", "2h"]):
        r = gdag(*command, cwd=repo, env={"GDAG_NOW": "tomorrow"})
        assert r.returncode == 3, r.stderr
        assert "gdag: error: GDAG_NOW='tomorrow' is not an ISO 8601 time" in r.stderr
    assert tick_ids(repo / ".git") == []


def test_log_since_reads_gdag_now(repo: Path) -> None:
    r = gdag("log", "--since", "2h", cwd=repo, env={"GDAG_NOW": "2000-01-01T00:00:00Z"})
    assert r.returncode == 0 and "init" in r.text  # everything is after 2000
    r = gdag("log", "--since", "2h", cwd=repo, env={"GDAG_NOW": "2999-01-01T00:00:00Z"})
    assert r.returncode == 0 and r.text == ""


# -- several machines ---------------------------------------------------------------


@pytest.fixture
def machines(tmp_path: Path) -> tuple[list[Path], Path]:
    """A bare remote and two clones sharing one gdag log with a schedule."""
    bare = tmp_path / "shared.git"
    git("init", "-q", "--bare", "-b", "main", str(bare), cwd=tmp_path)
    seed = tmp_path / "m0"
    git("init", "-q", "-b", "main", str(seed), cwd=tmp_path)
    define(seed, HOURLY_ALL)
    assert gdag("init", cwd=seed).returncode == 0
    git("add", "gdag.toml", cwd=seed)
    git("commit", "-qm", "definition", cwd=seed)
    git("remote", "add", "origin", f"file://{bare}", cwd=seed)
    git("push", "-q", "origin", "main", cwd=seed)
    assert gdag("sync", cwd=seed).returncode == 0
    clone = tmp_path / "m1"
    git("clone", "-q", f"file://{bare}", str(clone), cwd=tmp_path)
    assert gdag("sync", cwd=clone).returncode == 0
    return [seed, clone], bare


def test_tickers_on_two_machines_with_remote_publish_each_tick_once(
    machines: tuple[list[Path], Path], tmp_path: Path
) -> None:
    (a, b), bare = machines
    now = "2026-01-10T05:30:00Z"
    procs = [
        start(m, now, "tick", "--remote", "origin", "--no-run", log=tmp_path / f"r{i}.err")
        for i, m in enumerate((a, b, a, b))
    ]
    for i, proc in enumerate(procs):
        assert proc.wait(timeout=120) == 0, (tmp_path / f"r{i}.err").read_text()
    ids = tick_ids(bare)
    assert sorted(ids) == ["tick:h:2026-01-10T05:00:00Z", "tick:paris:2026-01-10T02:56:00Z"]
    tick(a, "2026-01-10T08:00:00Z", "--remote", "origin")  # catch-up: 06:00, 07:00, 08:00
    tick(b, "2026-01-10T08:00:00Z", "--remote", "origin")  # nothing left
    assert [i for i in tick_ids(bare) if i.startswith("tick:h:")] == [
        f"tick:h:2026-01-10T0{h}:00:00Z" for h in (5, 6, 7, 8)
    ]
    for m in (a, b):
        fsck(m)


def test_ticks_published_apart_count_once_after_sync(
    machines: tuple[list[Path], Path],
) -> None:
    (a, b), bare = machines
    tick(a, "2026-01-10T05:30:00Z")  # the same ticks on both machines, offline
    tick(b, "2026-01-10T05:30:00Z")
    assert gdag("publish", "note", "from b", "--no-run", cwd=b).returncode == 0
    for m in (a, b, a):
        r = gdag("sync", cwd=m)
        assert r.returncode == 0, r.stderr
    ids = tick_ids(bare)
    assert sorted(ids) == ["tick:h:2026-01-10T05:00:00Z", "tick:paris:2026-01-10T02:56:00Z"]
    tick(a, "2026-01-10T06:10:00Z")
    assert gdag("sync", cwd=a).returncode == 0
    assert gdag("sync", cwd=b).returncode == 0
    assert tick(b, "2026-01-10T06:10:00Z") == []  # b has 06:00 from a
    assert [i for i in tick_ids(bare) if i.startswith("tick:h:")] == [
        "tick:h:2026-01-10T05:00:00Z",
        "tick:h:2026-01-10T06:00:00Z",
    ]
    for m in (a, b):
        fsck(m)


def test_dag_json_gains_schedules_only_when_defined(tmp_path: Path) -> None:
    from gdag.dag import Dag
    from gdag.definition import Source, compile_definition

    plain = compile_definition(Source(tmp_path / "gdag.toml", b'[outputs."x"]\ntype = "int"\n'))
    assert "schedules" not in plain.to_json() and not plain.schedules
    src = b'[schedules.n]\ncron = "0 2 * * *"\ntimezone = "Europe/Paris"\n'
    dag = compile_definition(Source(tmp_path / "gdag.toml", src))
    doc = dag.to_json()
    assert doc["schedules"] == {
        "n": {"catchup": "latest", "cron": "0 2 * * *", "timezone": "Europe/Paris"}
    }
    assert Dag.from_json(doc).to_bytes() == dag.to_bytes()
    assert str(dag.output_type("ticks/n")) == "str"


def test_a_tick_that_cannot_be_published_is_reported_and_watch_goes_on(
    repo: Path, tmp_path: Path
) -> None:
    assert gdag("publish", "ticks/a", "not a time", cwd=repo).returncode == 0  # before
    define(
        repo,
        """
        [schedules.a]
        every = "1h"

        [nodes.n]
        run = 'cp "$GDAG_IN_GO" "$GDAG_OUT/went"'
        inputs = { go = "go" }
        publishes = ["went"]
        """,
    )
    now = "2026-01-10T05:30:00Z"
    r = gdag("tick", cwd=repo, env={"GDAG_NOW": now})
    assert r.returncode == 3
    assert "gdag: error: output 'ticks/a' has type bytes; its type cannot change to str" in (
        r.stderr
    )
    err = tmp_path / "watch.err"
    watcher = start(repo, now, "watch", "--interval", "0.05", log=err)
    try:
        wait_until(lambda: "cannot publish schedule ticks yet" in err.read_text(), "reported")
        assert gdag("publish", "go", "yes", "--no-run", cwd=repo).returncode == 0
        wait_until(lambda: gdag("lookup", "went", cwd=repo).text == "yes", "the node ran")
    finally:
        watcher.send_signal(signal.SIGINT)
        assert watcher.wait(timeout=60) == 0
    assert err.read_text().count("cannot publish schedule ticks yet") == 1
    fsck(repo)


def test_an_older_tick_re_applied_by_sync_does_not_make_a_tick_come_twice(
    machines: tuple[list[Path], Path],
) -> None:
    (a, b), bare = machines
    tick(a, "2026-01-10T05:30:00Z")  # offline: 05:00
    tick(b, "2026-01-10T08:30:00Z", "--remote", "origin")  # the remote's first: 08:00
    assert gdag("sync", cwd=a).returncode == 0  # 05:00 goes on top of 08:00
    assert lookup(a, "ticks/h") == "2026-01-10T05:00:00Z"
    got = tick(a, "2026-01-10T10:30:00Z", "--remote", "origin")
    assert [t["time"] for t in got if t["schedule"] == "h"] == [
        "2026-01-10T09:00:00Z",
        "2026-01-10T10:00:00Z",
    ]
    ids = tick_ids(bare)
    assert len(ids) == len(set(ids)), ids
    fsck(a)


def test_watchers_on_two_machines_with_remote_publish_each_tick_once(
    machines: tuple[list[Path], Path], tmp_path: Path
) -> None:
    (a, b), bare = machines
    tick(a, "2026-01-10T00:30:00Z", "--remote", "origin")
    now = "2026-01-10T09:30:00Z"
    watchers = [
        start(m, now, "watch", "--remote", "origin", "--interval", "0.05", log=tmp_path / f"{i}")
        for i, m in enumerate((a, b))
    ]
    try:
        for i in range(2):
            wait_until(lambda i=i: "watching" in (tmp_path / f"{i}").read_text(), "started")
        tick(a, now, "--remote", "origin", "--no-run")

        def remote_has_the_last() -> bool:
            return "tick:h:2026-01-10T09:00:00Z" in tick_ids(bare)

        wait_until(remote_has_the_last, "the last tick on the remote")
    finally:
        for proc in watchers:
            proc.send_signal(signal.SIGINT)
        for proc in watchers:
            assert proc.wait(timeout=60) == 0
    ids = tick_ids(bare)
    assert [i for i in ids if i.startswith("tick:h:")] == [
        f"tick:h:2026-01-10T0{h}:00:00Z" for h in range(10)
    ]
    assert len(ids) == len(set(ids))
    for m in (a, b):
        fsck(m)


def test_tick_without_schedules_says_so(repo: Path) -> None:
    r = gdag("tick", cwd=repo)
    assert r.returncode == 0 and r.text == ""
    assert r.stderr == "gdag: note: gdag.toml defines no schedules; nothing to tick\n"

"""Which program opened each connection, on screen: the Process column (only once a process
was looked up), its sort, the filter ``proc:NAME``, the detail pane's processes, and hostile
process names, driven with the pilot on the demo capture replayed through the real capture
thread. The connections get the ``ProcInfo`` a live lookup would leave, set by hand once the
replay has ended (the lookup itself needs root: see the netns tests of the lookup)."""

from __future__ import annotations

import os
import time

import pytest

from egress_tui.cli import demo_capture
from egress_tui.core.procs import UNKNOWN, ProcInfo
from egress_tui.core.safetext import safe_text
from egress_tui.ui.app import AppConfig, create_app
from tests.hostile import STRINGS
from tests.pilot import screen_text, select_host, until, wait_replay
from tests.test_hostile_tui import assert_plain
from tests.test_processes import CLAUDE, CRON, CURL, GIT, TEN_KB

os.environ["TZ"] = "UTC"
time.tzset()

SIZE = (150, 50)
WITHOUT = ["host", "via", "addresses", "ports", "conns", "outcomes", "first", "last", "verdict"]


def demo_app(**kw):
    return create_app(AppConfig(pcap=demo_capture(), speed=0, **kw))


def attribute(app, procs: dict[str, object]) -> None:
    """What the lookup leaves: each host's connections get a process (a list: one per
    connection, cycled), and the changed rows reach the screen as a capture batch would."""
    engine = app.inspection.capturer.engine  # the replay has ended: its thread is gone
    for name, p in procs.items():
        seq = p if isinstance(p, list) else [p]
        for i, c in enumerate(engine.hosts[name].conns):
            c.proc = seq[i % len(seq)]
    app.feed_rows([engine.row(engine.hosts[n]) for n in procs])


DEMO_PROCS = {"api.anthropic.com": [CLAUDE, CLAUDE, CLAUDE, UNKNOWN], "example.com": CURL,
              "bedrock-runtime.ap-northeast-1.amazonaws.com": [CLAUDE, CURL],
              "www.example.org": GIT, "ssh.example.net": UNKNOWN, "cdn.example.net": CRON}


def columns(app) -> list[str]:
    return [k.value for k in app.main.table.columns]


def shown(app) -> list[str]:
    t = app.main.table
    return [t.get_row_at(i)[0].host for i in range(t.row_count)]


def cell(app, host: str, column: str) -> str:
    return app.main.table.get_cell(host, column).plain


async def attributed_demo(pilot, procs=None) -> None:
    app = pilot.app
    await wait_replay(app, pilot)
    attribute(app, DEMO_PROCS if procs is None else procs)
    await until(pilot, lambda: "process" in columns(app), 10, "the Process column")


@pytest.mark.asyncio
async def test_the_process_column_comes_with_the_first_process():
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_replay(app, pilot)
        assert columns(app) == WITHOUT            # a capture file: no process, no column
        await select_host(app, pilot, "quic.example.net")
        before = shown(app)
        attribute(app, DEMO_PROCS)
        await until(pilot, lambda: "process" in columns(app), 10, "the Process column")
        assert columns(app) == ["host", "process"] + WITHOUT[1:]
        assert shown(app) == before               # same rows, same order
        assert app.main.table.highlighted_host == "quic.example.net"  # the cursor stayed on its host
        assert cell(app, "api.anthropic.com", "process") == "claude ?"
        assert cell(app, "bedrock-runtime.ap-northeast-1.amazonaws.com", "process") == "claude +1"
        assert cell(app, "www.example.org", "process") == "git-remote-https"
        assert cell(app, "ssh.example.net", "process") == "?"
        assert cell(app, "quic.example.net", "process") == "-"
        # a later batch updates the cell in place
        attribute(app, {"quic.example.net": CURL})
        await until(pilot, lambda: cell(app, "quic.example.net", "process") == "curl", 10, "the updated cell")


@pytest.mark.asyncio
async def test_sorting_by_process():
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await attributed_demo(pilot)
        for _ in columns(app):                    # s: sort by the next column, until Process
            if app.main.table.sort_column == "process":
                break
            await pilot.press("s")
        assert app.main.table.sort_column == "process"
        order = shown(app)
        # by program (of the most connections), then hosts with only unknown ones, then the rest
        assert order[:6] == ["api.anthropic.com", "bedrock-runtime.ap-northeast-1.amazonaws.com", "cdn.example.net",
                             "example.com", "www.example.org", "ssh.example.net"]
        assert set(order[6:]) == {"bedrock.ap-northeast-1.amazonaws.com", "quic.example.net", "http.example.net",
                                  "lookup.example.net", "nxdomain.example.net"}
        await pilot.press("S")                    # reversed
        assert shown(app)[-6:] == order[:6][::-1]


@pytest.mark.asyncio
async def test_the_filter_takes_proc():
    app = demo_app(presets=["anthropic"])
    async with app.run_test(size=SIZE) as pilot:
        await attributed_demo(pilot)
        total = app.main.table.row_count

        async def filtered(text: str) -> list[str]:
            await pilot.press("escape", "slash", *text, "enter")
            await pilot.pause()
            return sorted(shown(app))

        bedrock = "bedrock-runtime.ap-northeast-1.amazonaws.com"
        assert await filtered("proc:curl") == [bedrock, "example.com"]
        assert await filtered("proc:CURL") == [bedrock, "example.com"]          # any case
        assert await filtered("proc:git") == ["www.example.org"]                  # part of git-remote-https
        assert await filtered("proc:?") == ["api.anthropic.com", "ssh.example.net"]
        assert await filtered("proc:curl amazonaws") == [bedrock]                 # with free words: all must hold
        assert await filtered("proc:claude allowed") == ["api.anthropic.com"]
        assert await filtered("proc:claude proc:curl") == [bedrock]
        assert await filtered("proc:nosuch") == []
        assert await filtered("curl") == []       # a free word is not a program
        assert await filtered("proc:") == sorted(shown(app)) and app.main.table.row_count == total
        await pilot.press("escape")
        assert app.main.table.row_count == total


@pytest.mark.asyncio
async def test_the_detail_pane_lists_processes_chains_and_runs():
    app = demo_app()
    async with app.run_test(size=(150, 70)) as pilot:
        await attributed_demo(pilot)
        await select_host(app, pilot, "api.anthropic.com")
        text = screen_text(app)
        assert "programs    claude:21 ?:7" in text
        assert "pid 101  claude ← tini  run 1  21 connection(s)" in text
        assert "claude -p hello" in text
        assert "7 connection(s): process unknown (gone before the lookup)" in text
        assert "claude 101" in text and "process" in text.split("28 connection(s)")[1].splitlines()[1]
        await select_host(app, pilot, "www.example.org")
        text = screen_text(app)
        assert "pid 303  git-remote-https ← git ← bash ← claude ← tini  run 1  1 connection(s)" in text
        assert "git-remote-https origin" in text
        await select_host(app, pilot, "quic.example.net")  # not looked up: the pane as before
        text = screen_text(app)
        assert "processes" not in text and "programs" not in text
        assert "process" not in text.split("1 connection(s)")[1].splitlines()[1]


@pytest.mark.asyncio
async def test_the_process_column_at_100_columns():
    app = demo_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await attributed_demo(pilot)
        lines = screen_text(app).splitlines()
        header = next(ln for ln in lines if ln.lstrip().startswith("Host"))
        # every name whole, the Process column after it, and Via and Addresses still on screen
        assert header.split()[:4] == ["Host", "Process", "Via", "Addresses"], header
        assert len(header) <= 100
        api = next(ln for ln in lines if "api.anthropic.com" in ln)
        assert "api.anthropic.com" in api and "claude ?" in api and "dns,tls" in api
        width = app.main.table.columns["process"].get_render_width(app.main.table)
        assert width <= len("git-remote-https +1") + 2


@pytest.mark.asyncio
async def test_hostile_process_names_are_shown_as_data():
    values = STRINGS + [TEN_KB]
    app = demo_app()
    async with app.run_test(size=(150, 70)) as pilot:
        await wait_replay(app, pilot)
        names = [n for n in app.session.rows if app.inspection.capturer.engine.hosts[n].conns]
        procs = {}
        for i, name in enumerate(names):
            vs = [values[(i + k) % len(values)] for k in range(3)]
            procs[name] = [ProcInfo(500 + k, v[:15], "/tmp/" + v, v + " " + TEN_KB, ((1, v), (2, "[/]")), v)
                           for k, v in enumerate(vs)] + [UNKNOWN]
        attribute(app, procs)
        await until(pilot, lambda: "process" in columns(app), 10, "the Process column")
        assert app.main.table.columns["process"].get_render_width(app.main.table) < 30
        for name in names:
            await select_host(app, pilot, name)
            text = screen_text(app)
            assert_plain(text, f"the screen on {name!r}")
            got = {c.proc for c in app.inspection.capturer.engine.hosts[name].conns}
            for p in got - {UNKNOWN}:  # each process listed, its name escaped (markup shown as it is)
                assert f"pid {p.pid}  {safe_text(p.program)[:6]}" in text, (name, p.program)
            assert ("connection(s): process unknown (gone before the lookup)" in text) == (UNKNOWN in got)
        for term in ("proc:[/]", "proc:\\x1b", "proc:[bold", "proc:|"):
            await pilot.press("escape", "slash", *term, "enter")
            await pilot.pause()
            assert app.is_running
            assert_plain(screen_text(app), f"the screen filtered by {term!r}")

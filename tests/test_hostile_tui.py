"""The TUI fed a hostile capture: no markup error, no terminal control reaches the screen, and
every key works on every row (replayed through the real capture thread, like test_app.py)."""

from __future__ import annotations

import copy

import pytest

from tests.hostile import ESC_HIDE, STRINGS, hostile_capture
from tests.test_app import SIZE, screen_text, wait_replay
from egress_tui.ui.app import AppConfig, create_app
from egress_tui.live.containers import ContainerInfo
from egress_tui.core.hosts import Host
from egress_tui.core.runs import RunRecord, RunSpec
from egress_tui.ui.screens.dialogs import AllowDialog
from egress_tui.ui.screens.picker import PickerScreen
from egress_tui.ui.screens.runs import RunsScreen

# Every key of the main screen but a and c (pressed on their own below). Each key that opens
# a dialog is followed by escape, which must close it; space twice (pause, then resume).
KEYS = ["d", "e", "escape", "f", "r", "R", "escape", "l", "l", "p", "escape", "s", "S", "space", "space",
        "slash", "escape", "question_mark", "escape", "enter", "ctrl+s", "escape"]

# What a terminal acts on: C0 (but the newline between screen lines), DEL, C1, bidi controls.
CONTROLS = {chr(c) for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)] if c != 0x0A} | set(
    "\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff")


def assert_plain(text: str, where: str) -> None:
    bad = sorted({repr(c) for c in text if c in CONTROLS})
    assert not bad, f"{where} shows raw control characters {bad}"


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    return hostile_capture(str(tmp_path_factory.mktemp("hostile") / "hostile.pcap"))


@pytest.mark.asyncio
async def test_first_row_is_shown_without_a_key_press(capture):
    app = create_app(AppConfig(pcap=capture, speed=0, presets=["anthropic"]))
    async with app.run_test(size=SIZE) as pilot:
        await wait_replay(app, pilot)
        await pilot.pause(0.1)
        assert app.is_running
        first = app.main.table.highlighted_host
        assert first == "hide" + ESC_HIDE + ".example"
        text = screen_text(app)
        assert_plain(text, "the main screen")
        # the name is there, escaped, and the verdict after it is not hidden (detail pane)
        assert any(line.startswith("hide\\x1b[8m.example") and "denied" in line for line in text.splitlines())
        # markup in CNAMEs and ALPNs shown as the characters themselves
        assert "close[/]markup.example" in text and "[bold red]x.example" in text


@pytest.mark.asyncio
async def test_every_key_on_every_row(capture):
    app = create_app(AppConfig(pcap=capture, speed=0))
    async with app.run_test(size=SIZE) as pilot:
        await wait_replay(app, pilot)
        t = app.main.table
        rows = list(app.session.rows.values())
        names = [r.name for r in rows]
        assert len(names) > len(STRINGS)  # each string named a host, some two
        for name in names:
            if name not in app.session.rows:      # c cleared the table: put the rows back
                app.feed_rows([copy.copy(r) for r in rows])
                await pilot.pause()
            t.move_cursor(row=t.get_row_index(name))
            await pilot.pause()
            assert app.main._detail_for == name
            assert_plain(screen_text(app), f"the screen on row {name!r}")
            await pilot.press("a")                # the allow dialog shows the name
            assert isinstance(app.screen, AllowDialog)
            assert_plain(screen_text(app), f"the allow dialog of {name!r}")
            await pilot.press("escape", *KEYS)
            assert app.is_running, f"the app stopped on row {name!r}"
            assert app.screen is app.main, f"{type(app.screen).__name__} still open on row {name!r}"
            assert_plain(screen_text(app), f"the screen after every key on row {name!r}")
            await pilot.press("c")
            assert not app.session.rows
        assert app.is_running


def hostile_row(i: int, s: str) -> dict:
    """A host row as the engine reports it, with a corpus string in every field the
    container can fill (the dissectors turn non-ASCII into U+FFFD; a row can hold anything)."""
    h = Host(s, first=1_700_000_000.0 + i, last=1_700_000_001.0 + i)
    h.via = {"tls", "dns"}
    h.cnames = [s, STRINGS[(i + 1) % len(STRINGS)]]
    h.resolved = {"198.18.0.1"}
    h.queries = 1
    row = h.to_row()
    row.alpn = [STRINGS[(i + 2) % len(STRINGS)]]
    row.ja4 = [s]
    return row


@pytest.mark.asyncio
async def test_unicode_controls_are_escaped_where_they_show():
    app = create_app(AppConfig(start_capture=False))
    rows = [hostile_row(i, s) for i, s in enumerate(STRINGS)]
    async with app.run_test(size=SIZE) as pilot:
        app.feed_rows(rows)
        await pilot.pause()
        t = app.main.table
        for s, shown in (("bidi\u202eexe.txt", "bidi\\u202eexe.txt"),
                         ("zero\u200bwidth\ufeff.example", "zero\\u200bwidth\\ufeff.example"),
                         ("c1\x9bcsi.example", "c1\\x9bcsi.example"), ("l" * 10_000, "l" * 90)):
            t.move_cursor(row=t.get_row_index(s))
            await pilot.pause()
            text = screen_text(app)
            assert_plain(text, f"the screen on row {s[:20]!r}")
            assert shown in text
        # the long name is cut in the table, with a marker
        assert len(t.get_cell("l" * 10_000, "host").plain) <= 64
        assert t.get_cell("l" * 10_000, "host").plain.endswith("…")


@pytest.mark.asyncio
async def test_sorting_keeps_hosts_whose_shown_names_are_cut_alike():
    # two names that look the same once cut to the column width must still sort as themselves
    app = create_app(AppConfig(start_capture=False))
    a, b = "l" * 5000 + "a", "l" * 5000 + "b"
    rows = [hostile_row(0, b), hostile_row(1, a)]
    rows[0].connections, rows[1].connections = 1, 7
    async with app.run_test(size=SIZE) as pilot:
        app.feed_rows(rows)
        await pilot.pause()
        t = app.main.table
        t.sort_by("host", app.session.rows)
        await pilot.pause()
        assert [t.coordinate_to_cell_key((i, 0)).row_key.value for i in range(2)] == [a, b]
        t.sort_by("conns", app.session.rows)
        await pilot.pause()
        assert [t.coordinate_to_cell_key((i, 0)).row_key.value for i in range(2)] == [a, b]


@pytest.mark.asyncio
async def test_name_color_follows_its_verdict():
    app = create_app(AppConfig(start_capture=False))
    name = "api.anthropic.com"
    row = Host(name, first=1.0, last=2.0).to_row()
    async with app.run_test(size=SIZE) as pilot:
        app.feed_rows([row])
        await pilot.pause()
        app.allow(name)
        await pilot.pause()
        assert app.main.table.get_cell(name, "host").style == "green"


@pytest.mark.asyncio
async def test_notifications_log_picker_and_runs_show_data_not_markup():
    app = create_app(AppConfig(start_capture=False))
    bad = "[/]" + ESC_HIDE + "[bold]x\x1b]0;t\x07"
    items = [ContainerInfo("a" * 64, bad, bad, bad, [bad], 1, [])]
    hosts = {s: {"connections": 1, "outcomes": {"connected": 1}, "reached": True, "blocked": False,
                 "via": ["tls"], "ports": [443]} for s in STRINGS}
    runs = [RunRecord(n, RunSpec(command=["sh", "-c", bad]), bad, firewall=False, started=1_700_000_000.0,
                      exit_code=0, hosts=dict(hosts)) for n in (1, 2)]
    async with app.run_test(size=SIZE) as pilot:
        app.notify(bad, title=bad)
        app.main.show_log(bad)
        app.main.log_line(bad)
        await pilot.pause()
        text = screen_text(app)
        assert_plain(text, "the main screen")
        assert "[/]\\x1b[8m[bold]x" in text
        app.push_screen(PickerScreen(lambda: items))
        await pilot.pause()
        assert_plain(screen_text(app), "the picker")
        assert "[/]\\x1b[8m" in screen_text(app)
        app.pop_screen()
        app.push_screen(RunsScreen(runs))
        await pilot.pause()
        text = screen_text(app)
        assert_plain(text, "the runs view")
        assert "sh -c [/]\\x1b[8m" in text
        assert app.is_running

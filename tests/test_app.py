"""The TUI driven like a user drives it (Textual pilot), on the shipped demo capture replayed
through the real capture thread and engine."""

from __future__ import annotations

import os
import time

import pytest

from tests.pilot import screen_text, select_host, wait_replay  # noqa: F401 (other modules import them from here too)

from egress_tui.ui.app import AppConfig, create_app
from egress_tui.cli import demo_capture
from egress_tui.live.containers import ContainerInfo
from egress_tui.ui.screens.picker import PickerScreen

os.environ["TZ"] = "UTC"
time.tzset()

SIZE = (150, 44)


def demo_app(**kw):
    return create_app(AppConfig(pcap=demo_capture(), speed=0, **kw))


def cell(app, host, column):
    v = app.main.table.get_cell(host, column)
    return getattr(v, "plain", v)


@pytest.mark.asyncio
async def test_replay_fills_the_table_in_place():
    app = demo_app(presets=["bedrock:ap-northeast-1"])
    async with app.run_test(size=SIZE) as pilot:
        await wait_replay(app, pilot)
        t = app.main.table
        for host in ("api.anthropic.com", "bedrock-runtime.ap-northeast-1.amazonaws.com",
                     "bedrock.ap-northeast-1.amazonaws.com", "quic.example.net", "example.com"):
            assert host in {k.value for k in t.rows}
        assert cell(app, "bedrock-runtime.ap-northeast-1.amazonaws.com", "verdict") == "allowed"
        assert cell(app, "api.anthropic.com", "verdict") == "denied"
        assert cell(app, "example.com", "verdict") == "denied, blocked"
        assert cell(app, "quic.example.net", "via") == "dns,quic"
        assert cell(app, "example.com", "outcomes") == "unanswered:2"


@pytest.mark.asyncio
async def test_allow_remove_and_save(tmp_path):
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_replay(app, pilot)
        t = app.main.table
        runtime = "bedrock-runtime.ap-northeast-1.amazonaws.com"
        t.move_cursor(row=t.get_row_index(runtime))
        await pilot.pause()
        assert cell(app, runtime, "verdict") == "-"
        await pilot.press("a")
        await pilot.pause()
        await pilot.press("down", "enter")        # the second choice: *.ap-northeast-1.amazonaws.com
        await pilot.pause()
        assert cell(app, runtime, "verdict") == "allowed"
        assert cell(app, "bedrock.ap-northeast-1.amazonaws.com", "verdict") == "allowed"
        assert cell(app, "api.anthropic.com", "verdict") == "denied"
        assert cell(app, "example.com", "verdict") == "denied, blocked"
        await pilot.press("d")
        await pilot.pause()
        assert cell(app, runtime, "verdict") == "denied"
        assert cell(app, "bedrock.ap-northeast-1.amazonaws.com", "verdict") == "denied"
        await pilot.press("a", "enter")           # the host itself this time
        await pilot.pause()
        await pilot.press("ctrl+s")
        await pilot.pause()
        out = tmp_path / "allow.txt"
        inp = app.screen.query_one("Input")
        inp.value = str(out)
        await pilot.press("enter")
        await pilot.pause()
        assert out.read_text().splitlines()[1:] == [runtime]
        assert "allow.txt" in app.session.allowlist_label()


@pytest.mark.asyncio
async def test_preset_from_the_screen():
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_replay(app, pilot)
        await pilot.press("p")
        await pilot.pause()
        await pilot.press("down", "enter")        # bedrock: asks for a region
        await pilot.pause()
        app.screen.query_one("Input").value = "ap-northeast-1"
        await pilot.press("enter")
        await pilot.pause()
        assert cell(app, "bedrock.ap-northeast-1.amazonaws.com", "verdict") == "allowed"
        assert cell(app, "quic.example.net", "verdict") == "denied"


@pytest.mark.asyncio
async def test_filter_sort_pause_clear_help():
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_replay(app, pilot)
        t = app.main.table
        total = t.row_count
        await pilot.press("slash", *"bedrock")
        await pilot.pause()
        assert t.row_count == 2
        await pilot.press("escape")
        await pilot.pause()
        assert t.row_count == total
        app.main.table.sort_by("conns", app.session.rows)
        await pilot.pause()
        first = t.coordinate_to_cell_key((0, 0)).row_key.value
        assert app.session.rows[first].connections == max(r.connections for r in app.session.rows.values())
        await pilot.press("space")
        await pilot.pause()
        assert app.paused
        await pilot.press("space", "c")
        await pilot.pause()
        assert t.row_count == 0 and not app.session.rows
        await pilot.press("question_mark")
        await pilot.pause()
        assert app.screen.__class__.__name__ == "HelpScreen"
        keys = dict(app.screen.pairs)
        for key in ("space", "c", "?", "q", "/", "a", "d", "ctrl+s", "p", "e", "s"):
            assert key in keys, f"help does not list {key}"


@pytest.mark.asyncio
async def test_detail_pane_lists_flows():
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_replay(app, pilot)
        await select_host(app, pilot, "example.com")
        text = screen_text(app)
        assert "example.com  denied" not in text  # no allowlist: no verdict word
        assert "2 connection(s)" in text
        assert text.count("unanswered") >= 3      # the table cell and both flows
        conns, _ = app.host_connections("example.com")
        assert [c["outcome"] for c in conns] == ["unanswered", "unanswered"]


@pytest.mark.asyncio
async def test_exports(tmp_path):
    import json
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_replay(app, pilot)
        app.export("json", str(tmp_path / "r.json"))
        app.export("pcap", str(tmp_path / "p.pcap"))     # written by a worker
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert any(n.message.startswith("saved a copy of demo.pcap to") for n in app._notifications)
    hosts = {h["name"] for h in json.loads((tmp_path / "r.json").read_text())["hosts"]}
    assert "api.anthropic.com" in hosts
    assert (tmp_path / "p.pcap").read_bytes() == open(demo_capture(), "rb").read()


@pytest.mark.asyncio
async def test_picker_lists_and_filters():
    items = [ContainerInfo("a" * 64, "claude-dev", "egress-tui-test/claude", "running", ["lab"], 1, []),
             ContainerInfo("b" * 64, "postgres", "postgres:16", "running", ["bridge"], 2, [])]
    app = create_app(AppConfig(start_capture=False))
    chosen = []
    async with app.run_test(size=SIZE) as pilot:
        app.push_screen(PickerScreen(lambda: items), chosen.append)
        await app.workers.wait_for_complete()          # the lister runs in a worker
        await pilot.pause()
        table = app.screen.query_one("#picker-table")
        assert table.row_count == 2
        await pilot.press("slash", *"claude", "enter")
        await pilot.pause()
        assert table.row_count == 1
        await pilot.press("enter")
        await pilot.pause()
    assert chosen == [("a" * 64, "docker")]   # the id, and the engine it was listed from


@pytest.mark.asyncio
async def test_run_dialog_builds_the_provider_environment(monkeypatch):
    from egress_tui.ui.screens.run_dialog import RunDialog
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFROMMYSHELL")
    app = create_app(AppConfig(start_capture=False))
    got = []
    async with app.run_test(size=SIZE) as pilot:
        app.push_screen(RunDialog(), got.append)
        await pilot.pause()
        app.screen.query_one("#provider").value = "bedrock"
        await pilot.pause()
        assert app.screen.query_one("#region").value == "ap-northeast-1"
        app.screen.query_one("#command").value = "claude -p 'say hi'"
        app.screen.query_one("#env").value = "ANTHROPIC_MODEL=some-model"
        app.screen.query_one("#timeout").value = "30"
        await pilot.click("#run")
        await pilot.pause()
    [spec] = got
    assert spec.command == ["claude", "-p", "say hi"] and spec.timeout == 30
    assert spec.env["CLAUDE_CODE_USE_BEDROCK"] == "1" and spec.env["AWS_REGION"] == "ap-northeast-1"
    assert spec.env["AWS_ACCESS_KEY_ID"] == "AKIAFROMMYSHELL" and spec.env["ANTHROPIC_MODEL"] == "some-model"


@pytest.mark.asyncio
async def test_run_dialog_refuses_a_bad_time_limit():
    from egress_tui.ui.screens.run_dialog import RunDialog
    app = create_app(AppConfig(start_capture=False))
    got = []
    async with app.run_test(size=SIZE) as pilot:
        app.push_screen(RunDialog(), got.append)
        await pilot.pause()
        app.screen.query_one("#timeout").value = "soon [/]"     # markup in what was typed: shown, not parsed
        await pilot.click("#run")
        await pilot.pause()
        shown = str(app.screen.query_one("#run-error").render())
        assert app.is_running and not got and "cannot read that" in shown and "soon [/]" in shown


@pytest.mark.asyncio
async def test_firewall_and_rerun_keys_explain_themselves_on_a_replay():
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_replay(app, pilot)
        await pilot.press("f")
        await pilot.pause()
        await pilot.press("r")
        await pilot.pause()
        said = [n.message for n in app._notifications]
        assert any("the firewall needs a live container" in m for m in said), said
        assert any("reruns need a live container" in m for m in said), said

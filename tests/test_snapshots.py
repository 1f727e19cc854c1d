"""Snapshot tests: the screen as a user sees it, built by the same factory as the CLI.

Update after an intended change with `pytest tests/test_snapshots.py --snapshot-update`,
then look at the new SVGs before committing them.
"""

from __future__ import annotations

import os
import time

from egress_tui.ui.app import AppConfig, create_app
from egress_tui.cli import demo_capture
from egress_tui.live.containers import ContainerInfo
from egress_tui.ui.screens.picker import PickerScreen

os.environ["TZ"] = "UTC"
time.tzset()

SIZE = (140, 40)


async def finish_replay(pilot, host: str | None = None):
    app = pilot.app
    t0 = time.monotonic()
    while app.state != "replay finished":
        assert time.monotonic() - t0 < 30
        await pilot.pause(0.05)
    if host:
        t = app.main.table
        t.move_cursor(row=t.get_row_index(host))
    await pilot.pause(0.2)


def demo(**kw):
    return create_app(AppConfig(pcap=demo_capture(), speed=0, **kw))


def test_main_table_with_allowlist_colors(snap_compare):
    async def run_before(pilot):
        await finish_replay(pilot, "example.com")
    assert snap_compare(demo(presets=["bedrock:ap-northeast-1"]), terminal_size=SIZE, run_before=run_before)


def test_no_allowlist(snap_compare):
    async def run_before(pilot):
        await finish_replay(pilot, "quic.example.net")
    assert snap_compare(demo(), terminal_size=SIZE, run_before=run_before)


def test_filtered(snap_compare):
    async def run_before(pilot):
        await finish_replay(pilot)
        await pilot.press("slash", *"anthropic", "enter")
        await pilot.pause(0.2)
    assert snap_compare(demo(presets=["anthropic"]), terminal_size=SIZE, run_before=run_before)


def test_picker(snap_compare):
    items = [ContainerInfo("3f2a9c1d7e6b" + "0" * 52, "claude-bedrock", "egress-tui-test/claude", "running",
                           ["lab-internal"], 0, []),
             ContainerInfo("c41d0e9f3b25" + "0" * 52, "postgres", "postgres:16", "running", ["bridge"], 0, [])]
    app = create_app(AppConfig(start_capture=False))

    async def run_before(pilot):
        app.push_screen(PickerScreen(lambda: items))
        await app.workers.wait_for_complete()
        await pilot.pause(0.2)
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)

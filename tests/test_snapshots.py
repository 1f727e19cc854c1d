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
from tests.pilot import select_host, until, wait_replay

os.environ["TZ"] = "UTC"
time.tzset()

SIZE = (140, 40)


async def finish_replay(pilot, host: str | None = None):
    await wait_replay(pilot.app, pilot)
    if host:
        await select_host(pilot.app, pilot, host)


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
        await until(pilot, lambda: pilot.app.main.table.row_count < len(pilot.app.session.rows), 10, "the filter")
    assert snap_compare(demo(presets=["anthropic"]), terminal_size=SIZE, run_before=run_before)


def test_picker(snap_compare):
    items = [ContainerInfo("3f2a9c1d7e6b" + "0" * 52, "claude-bedrock", "egress-tui-test/claude", "running",
                           ["lab-internal"], 0, []),
             ContainerInfo("c41d0e9f3b25" + "0" * 52, "postgres", "postgres:16", "running", ["bridge"], 0, []),
             ContainerInfo("7d5e2a6c8f14" + "0" * 52, "claude-rootless", "localhost/egress-tui-test/claude",
                           "running", ["podman"], 0, [], engine="podman")]
    app = create_app(AppConfig(start_capture=False))

    async def run_before(pilot):
        app.push_screen(PickerScreen(lambda: items))
        await until(pilot, lambda: any(t.row_count == len(items) for t in app.screen.query("#picker-table")), 10,
                    "the picker")
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_proxy_line_at_100_columns(snap_compare):
    """The capture went through a proxy (--proxy): its line under the status bar, login masked,
    and the counters still on the first line at 100 columns."""
    from egress_tui.core.proxy import from_urls

    async def run_before(pilot):
        await finish_replay(pilot, "api.anthropic.com")
    app = demo(presets=["anthropic"], proxy=from_urls(["http://lab:s3cretpw@proxy.test:3128"]))
    assert snap_compare(app, terminal_size=(100, 30), run_before=run_before)


def test_processes_at_100_columns(snap_compare):
    """Live, with attribution: the Process column after the host (names whole at 100 columns),
    and the detail pane's processes with their parents, runs and command lines."""
    from tests.test_processes_tui import DEMO_PROCS, attribute

    async def run_before(pilot):
        await wait_replay(pilot.app, pilot)
        attribute(pilot.app, DEMO_PROCS)
        await until(pilot, lambda: "process" in pilot.app.main.table.columns, 10, "the Process column")
        await select_host(pilot.app, pilot, "bedrock-runtime.ap-northeast-1.amazonaws.com")
    assert snap_compare(demo(), terminal_size=(100, 40), run_before=run_before)

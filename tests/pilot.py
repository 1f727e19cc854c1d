"""Driving the app in tests and the screenshot script: wait on conditions, never on the clock."""

from __future__ import annotations

import html
import re
import time


async def until(pilot, cond, timeout: float = 30.0, what: str = "") -> None:
    """Let the app run until ``cond()`` holds; fail (AssertionError) after ``timeout`` seconds."""
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, f"timed out waiting for {what or cond}"
        await pilot.pause(0.05)
    await pilot.pause()


async def wait_replay(app, pilot, timeout: float = 30.0) -> None:
    """Until a replay has been read to the end and its last batch shown."""
    await until(pilot, lambda: app.state == "replay finished", timeout, f"the replay (state={app.state!r})")


async def select_host(app, pilot, host: str) -> None:
    """Put the cursor on a host's row and let the detail pane follow."""
    t = app.main.table
    t.move_cursor(row=t.get_row_index(host))
    await until(pilot, lambda: app.main._detail_for == host, 10, f"the detail pane to show {host}")


def screen_text(app) -> str:
    """What the terminal shows, as plain text (from Textual's own SVG screenshot)."""
    svg = app.export_screenshot()
    return html.unescape(re.sub(r"<[^>]+>", "", svg)).replace("\xa0", " ")

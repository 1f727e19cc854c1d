"""Regenerate screenshots/*.svg from the real app replaying the shipped demo capture.

Run by `make screenshots`. The picker shows a fixed list of containers (named below),
since a screenshot cannot depend on what happens to run on this machine.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

os.environ["TZ"] = "UTC"
time.tzset()
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from egress_tui.ui.app import AppConfig, create_app  # noqa: E402
from egress_tui.cli import demo_capture  # noqa: E402
from egress_tui.live.containers import ContainerInfo  # noqa: E402
from egress_tui.ui.screens.picker import PickerScreen  # noqa: E402

SIZE = (150, 42)
OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "screenshots")

SAMPLE_CONTAINERS = [
    ContainerInfo("3f2a9c1d7e6b" + "0" * 52, "claude-bedrock", "egress-tui-test/claude", "running",
                  ["lab-internal"], 0, []),
    ContainerInfo("8b1e4d2c9a07" + "0" * 52, "claude-anthropic", "egress-tui-test/claude", "running",
                  ["lab-internal"], 0, []),
    ContainerInfo("c41d0e9f3b25" + "0" * 52, "postgres", "postgres:16", "running", ["bridge"], 0, []),
]


def demo_app():
    return create_app(AppConfig(pcap=demo_capture(), speed=0, presets=["bedrock:ap-northeast-1"]))


async def settle(app, pilot):
    t0 = time.monotonic()
    while app.state != "replay finished":
        if time.monotonic() - t0 > 30:
            raise SystemExit("replay did not finish")
        await pilot.pause(0.05)
    await pilot.pause(0.2)


async def select(app, pilot, host):
    t = app.main.table
    t.move_cursor(row=t.get_row_index(host))
    await pilot.pause(0.2)


async def shots() -> list[str]:
    made = []

    async def save(app, name):
        path = os.path.join(OUT, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(app.export_screenshot(title="egress-tui"))
        made.append(path)

    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await select(app, pilot, "bedrock-runtime.ap-northeast-1.amazonaws.com")
        await save(app, "main.svg")
        await select(app, pilot, "example.com")
        await save(app, "blocked-detail.svg")
        await select(app, pilot, "api.anthropic.com")
        await pilot.press("a")
        await pilot.pause(0.2)
        await save(app, "allow-dialog.svg")
        await pilot.press("down", "enter")
        await pilot.pause(0.2)
        await save(app, "allowlist-colors.svg")
        await pilot.press("question_mark")
        await pilot.pause(0.2)
        await save(app, "help.svg")

    app = create_app(AppConfig(start_capture=False))
    async with app.run_test(size=SIZE) as pilot:
        app.push_screen(PickerScreen(lambda: SAMPLE_CONTAINERS))
        await app.workers.wait_for_complete()
        await pilot.pause(0.2)
        await save(app, "picker.svg")
    return made


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    for p in asyncio.run(shots()):
        print(p)

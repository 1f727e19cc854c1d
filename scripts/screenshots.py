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
from tests.pilot import select_host, until, wait_replay  # noqa: E402

SIZE = (150, 42)
OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "screenshots")

SAMPLE_CONTAINERS = [
    ContainerInfo("3f2a9c1d7e6b" + "0" * 52, "claude-bedrock", "egress-tui-test/claude", "running",
                  ["lab-internal"], 0, []),
    ContainerInfo("8b1e4d2c9a07" + "0" * 52, "claude-anthropic", "egress-tui-test/claude", "running",
                  ["lab-internal"], 0, []),
    ContainerInfo("c41d0e9f3b25" + "0" * 52, "postgres", "postgres:16", "running", ["bridge"], 0, []),
    ContainerInfo("7d5e2a6c8f14" + "0" * 52, "claude-podman", "localhost/egress-tui-test/claude", "running",
                  ["podman"], 0, [], engine="podman"),
]


def demo_app():
    return create_app(AppConfig(pcap=demo_capture(), speed=0, presets=["bedrock:ap-northeast-1"]))


async def settle(app, pilot):
    await wait_replay(app, pilot)


async def select(app, pilot, host):
    await select_host(app, pilot, host)


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
        await until(pilot, lambda: type(app.screen).__name__ == "AllowDialog", 10, "the allow dialog")
        await save(app, "allow-dialog.svg")
        await pilot.press("down", "enter")
        await until(pilot, lambda: app.screen is app.main, 10, "the allow dialog to close")
        await save(app, "allowlist-colors.svg")
        await pilot.press("question_mark")
        await until(pilot, lambda: type(app.screen).__name__ == "HelpScreen", 10, "the help screen")
        await save(app, "help.svg")

    # Behind a proxy: tunnels through Squid-style CONNECT and SOCKS5, one of them fronted
    import tempfile

    from tests import tunnelgen as tg
    from tests.pcapgen import Conversation
    conv = Conversation()
    conv.dns(tg.CLIENT, tg.RESOLVER, "squid.corp.test", [("squid.corp.test", 1, tg.PROXY)])
    tg.http_connect(conv, 40001, "api.anthropic.com:443", "api.anthropic.com", cuts=2)
    tg.http_connect(conv, 40002, "statsig.anthropic.com:443", "statsig.anthropic.com")
    tg.http_connect(conv, 40003, "api.anthropic.com:443", "exfil.example", cuts=3)
    tg.socks5(conv, 40004, "sentry.io", 443, "sentry.io", cuts=2)
    tg.http_connect(conv, 40005, "pypi.test:22", None, replies=(tg.proxy_error(403, "Forbidden"),))
    with tempfile.TemporaryDirectory() as d:
        app = create_app(AppConfig(pcap=tg.write(conv, os.path.join(d, "proxy.pcap")), speed=0,
                                   presets=["anthropic"]))
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            await select(app, pilot, "exfil.example")
            await save(app, "proxy-fronting.svg")

    app = create_app(AppConfig(start_capture=False))
    async with app.run_test(size=SIZE) as pilot:
        app.push_screen(PickerScreen(lambda: SAMPLE_CONTAINERS))
        await until(pilot, lambda: any(t.row_count == len(SAMPLE_CONTAINERS) for t in app.screen.query("#picker-table")),
                    10, "the picker")
        await save(app, "picker.svg")
    return made


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    for p in asyncio.run(shots()):
        print(p)

"""`f` on a target with a proxy configured, on the screen, against the real firewall in the
network lab: it asks which mode; "proxy only" locks the namespace to the proxy (the allowlist's
own hosts are no longer reachable directly), the status bar says so, allowing a host does not
make the firewall "older", re-applying keeps the mode, and `f` again removes it."""

from __future__ import annotations

import pytest

from egress_tui.core.proxy import from_urls
from egress_tui.firewall.dnssync import Guard
from egress_tui.firewall.runners import resolvers_of
from egress_tui.inspection import open_inspection
from egress_tui.live.capture import NetnsSource
from egress_tui.ui.app import AppConfig, create_app
from egress_tui.ui.screens.dialogs import ChoiceDialog
from tests.pilot import screen_text, until
from tests.test_firewall import reach
from tests.test_firewall_proxy import BANNER, PORT, connect, proxy_listener  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.root, pytest.mark.netns]

SECRET = "tui-secret-pw"
ON = f"FIREWALL ON: proxy only (proxy.test:{PORT})"


@pytest.mark.asyncio
async def test_choosing_proxy_only_with_f(lab, fw, proxy_listener, tmp_path):  # noqa: F811
    path = tmp_path / "allow.txt"
    path.write_text("alpha.test\n")
    v4, v6 = lab.address_for("proxy.test")
    app = create_app(AppConfig(start_capture=False, allow_files=[str(path)]))
    async with app.run_test(size=(180, 40)) as pilot:
        resolvers = resolvers_of(lab.pid)
        src = NetnsSource(lab.pid, "lab client", resolvers=resolvers)
        insp = open_inspection(source=src, target="lab client", method="netns (host)",
                               guard=Guard(fw, lab.pid, resolvers),
                               proxy=from_urls([f"http://user:{SECRET}@proxy.test:{PORT}"]))
        app.show_inspection(insp)
        try:
            await until(pilot, src.ready.is_set, 15, "the capture")
            # ? says what f does
            await pilot.press("question_mark")
            await until(pilot, lambda: app.screen.__class__.__name__ == "HelpScreen", 5, "help")
            assert "proxy only" in dict(app.screen.pairs)["f"]
            await pilot.press("escape")
            # f asks; escape changes nothing
            await pilot.press("f")
            await until(pilot, lambda: isinstance(app.screen, ChoiceDialog), 5, "the mode question")
            text = screen_text(app)
            assert "allowlist: only its 1 entry" in text
            assert f"proxy only: http://***@proxy.test:{PORT}" in text and SECRET not in text
            await pilot.press("escape")
            await pilot.pause(0.3)
            assert not insp.firewall_on and app.firewall_text == "firewall off"
            # f, then the second choice: proxy only
            await pilot.press("f")
            await until(pilot, lambda: isinstance(app.screen, ChoiceDialog), 5, "the mode question")
            await pilot.press("down", "enter")
            await until(pilot, lambda: app.firewall_text == ON, 60, "proxy-only on")
            await until(pilot, lambda: ON in screen_text(app), 5, "the status bar")
            assert insp.firewall_mode == "proxy" and fw.status().mode == "proxy"
            assert connect(lab, v4, PORT) == f"connected {BANNER}" and connect(lab, v6, PORT) == f"connected {BANNER}"
            assert not reach(lab, "https://alpha.test/")          # on the allowlist, but not the proxy
            assert not reach(lab, "https://denied.test/")
            # the allowlist gives verdicts only: changing it does not make the firewall "older"
            app.allow("beta.test")
            await pilot.pause(0.2)
            assert not app.firewall_stale and "older allowlist" not in screen_text(app)
            # the exported init-firewall.sh follows the firewall that is on
            script = tmp_path / "init-firewall.sh"
            app.export("init-script", str(script))
            text = script.read_text()
            assert "PROXY_ONLY=1" in text and "ENTRY_PAT=(proxy.test)" in text and SECRET not in text
            # re-apply (command palette) keeps the mode
            app.reapply_firewall()
            await until(pilot, lambda: not app.firewall_busy and app.firewall_text == ON, 60, "the re-apply")
            assert fw.status().proxies == [f"http://***@proxy.test:{PORT}"]
            assert connect(lab, v4, 443) == "timeout"
            # f again: removed, no question asked
            await pilot.press("f")
            await until(pilot, lambda: app.firewall_text == "firewall off" and not app.firewall_busy, 60, "removal")
            assert not isinstance(app.screen, ChoiceDialog)
            assert reach(lab, "https://alpha.test/") and connect(lab, v4, 443) == "connected"
        finally:
            insp.stop_capture()
            await pilot.pause()
            if app.guard is not None:
                app.guard.remove()

"""`a` with the firewall on, in the screen, against the real firewall in the network lab: the
firewall keeps what it applied (the newly allowed host stays blocked) and the status bar says
it carries an older allowlist until it is re-applied from the command palette."""

from __future__ import annotations

import pytest

from egress_tui.firewall.dnssync import Guard
from egress_tui.inspection import open_inspection
from egress_tui.firewall.runners import resolvers_of
from egress_tui.live.capture import NetnsSource
from egress_tui.ui.app import AppConfig, create_app
from egress_tui.ui.screens.dialogs import AllowDialog
from tests.pilot import screen_text, until
from tests.test_firewall import reach

pytestmark = [pytest.mark.root, pytest.mark.netns]

OLDER = "firewall carries an older allowlist"


@pytest.mark.asyncio
async def test_allowing_a_host_with_the_firewall_on_waits_for_a_re_apply(lab, fw, tmp_path):
    path = tmp_path / "allow.txt"
    path.write_text("alpha.test\n")
    app = create_app(AppConfig(start_capture=False, allow_files=[str(path)]))
    async with app.run_test(size=(180, 40)) as pilot:
        # what attach does for a container, with the lab's namespace in its place
        resolvers = resolvers_of(lab.pid)
        src = NetnsSource(lab.pid, "lab client", resolvers=resolvers)
        insp = open_inspection(source=src, target="lab client", method="netns (host)",
                               guard=Guard(fw, lab.pid, resolvers))
        app.show_inspection(insp)
        try:
            await until(pilot, src.ready.is_set, 15, "the capture")
            await pilot.press("f")
            await until(pilot, lambda: "FIREWALL ON" in app.firewall_text, 60, "the firewall")
            assert OLDER not in screen_text(app)
            assert reach(lab, "https://alpha.test/") and not reach(lab, "https://beta.test/")
            await until(pilot, lambda: getattr(app.session.rows.get("beta.test"), "blocked", False), 10, "beta's row")
            # a: allow beta.test, exactly
            t = app.main.table
            t.move_cursor(row=t.get_row_index("beta.test"))
            await pilot.press("a")
            await until(pilot, lambda: isinstance(app.screen, AllowDialog), 5, "the allow dialog")
            await pilot.press("enter")
            await until(pilot, lambda: app.session.allowlist.match("beta.test") is not None, 5, "the entry")
            await until(pilot, lambda: OLDER in screen_text(app), 5, "the status bar")
            # the firewall still carries what it applied: beta's fresh DNS answer opens nothing
            assert not reach(lab, "https://beta.test/")
            assert app.guard.flush()
            assert lab.address_for("beta.test")[0] not in app.guard.learned_addresses()
            # re-apply from the command palette
            await pilot.press("ctrl+p")
            await pilot.pause(0.2)
            await pilot.press(*"Re-apply the firewall")
            await pilot.pause(0.3)
            await pilot.press("enter")
            await until(pilot, lambda: app.guard.carries(app.session.allowlist)
                        and "FIREWALL ON" in app.firewall_text, 60, "the re-apply")
            await until(pilot, lambda: OLDER not in screen_text(app), 5, "the status bar to clear")
            assert reach(lab, "https://beta.test/") and reach(lab, "https://alpha.test/")
            assert fw.status().allowlist == ["alpha.test", "beta.test"]
        finally:
            # the capture's last batches are handled while the screen is still there
            insp.stop_capture()
            await pilot.pause()
            app.guard.remove()

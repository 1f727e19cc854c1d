"""`a` and `d` on rows whose names a hostile container chose, driven like a user drives them
(Textual pilot): what the allow dialog offers, what it says, and that nothing crashes."""

from __future__ import annotations

import pytest
from textual.widgets import OptionList

from egress_tui.ui.app import AppConfig, create_app
from egress_tui.core.hosts import Host
from egress_tui.ui.screens.dialogs import AllowDialog, option_id

SIZE = (150, 44)

NAMES = ["api.anthropic.com", "*.example.com", "0.0.0.0/0", "::/0", "*.co.uk", "bücher.example",
         "[/]x.example", "evil\x1b]0;pwned\x07\x1b[8m.example", "co.uk"]


def screen_text(app) -> str:
    import html
    import re
    return html.unescape(re.sub(r"<[^>]+>", "", app.export_screenshot())).replace("\xa0", " ")


def rows(names):
    out = []
    for i, n in enumerate(names):
        d = Host(n).to_row()
        d.first_seen = d.last_seen = 1000.0 + i
        d.ports, d.connections = [443], 1
        out.append(d)
    return out


async def start(pilot, app, names=NAMES):
    app.main.apply_rows(app.session.update(rows(names)))
    await pilot.pause()


async def open_allow(app, pilot, name):
    t = app.main.table
    t.move_cursor(row=t.get_row_index(name))
    await pilot.pause()
    await pilot.press("a")
    await pilot.pause()
    assert isinstance(app.screen, AllowDialog), f"no allow dialog for {name!r}"
    return app.screen


def offered(dialog):
    found = dialog.query(OptionList)
    if not found:
        return []
    ol = found.first()
    return [(dialog.by_id[ol.get_option_at_index(i).id], ol.get_option_at_index(i).prompt.plain)
            for i in range(ol.option_count)]


def why(dialog):
    found = dialog.query("#allow-why")
    return str(found.first().render()) if found else ""


@pytest.mark.asyncio
@pytest.mark.parametrize("name,expected,reason", [
    ("api.anthropic.com", [("api.anthropic.com", "api.anthropic.com\nonly api.anthropic.com"),
                           ("*.anthropic.com", "*.anthropic.com\napi.anthropic.com and any other subdomain "
                                               "of anthropic.com, not anthropic.com itself")], ""),
    ("*.example.com", [], "a name with '*' is not a host name"),
    ("0.0.0.0/0", [], "an address range, not a host name"),
    ("::/0", [], "an address range, not a host name"),
    ("*.co.uk", [], "a name with '*' is not a host name"),
    ("co.uk", [("co.uk", "co.uk\nonly co.uk")], "co.uk is a public suffix"),
    ("bücher.example", [("xn--bcher-kva.example", "xn--bcher-kva.example\nonly xn--bcher-kva.example "
                                                  "(bücher.example)")], ""),
    ("[/]x.example", [], "not a valid host name"),
])
async def test_allow_dialog_offers_only_safe_entries(name, expected, reason):
    app = create_app(AppConfig(start_capture=False))
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot, app)
        dialog = await open_allow(app, pilot, name)
        assert offered(dialog) == expected
        assert reason in why(dialog)
        if not expected:
            assert "yourself" in why(dialog)
        ids = [option_id(e) for e, _ in expected]
        assert all(i.startswith("c") and len(i) == 17 for i in ids)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, AllowDialog)
        assert app.session.allowlist.entries == ()


@pytest.mark.asyncio
async def test_allowing_from_the_dialog_changes_verdicts():
    app = create_app(AppConfig(start_capture=False))
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot, app, ["api.anthropic.com", "statsig.anthropic.com", "bücher.example", "anthropic.com"])
        await open_allow(app, pilot, "api.anthropic.com")
        await pilot.press("down", "enter")                    # *.anthropic.com
        await pilot.pause()
        assert [e.text() for e in app.session.allowlist.entries] == ["*.anthropic.com"]
        assert app.session.rows["statsig.anthropic.com"].allowed is True
        assert app.session.rows["anthropic.com"].allowed is False     # not the domain itself
        await open_allow(app, pilot, "bücher.example")
        await pilot.press("enter")
        await pilot.pause()
        assert app.session.rows["bücher.example"].allowed is True
        assert app.session.allowlist.to_text().splitlines()[1:] == ["*.anthropic.com", "xn--bcher-kva.example"]


@pytest.mark.asyncio
async def test_remove_key_on_every_hostile_row():
    app = create_app(AppConfig(start_capture=False, presets=["anthropic"]))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await start(pilot, app)
        t = app.main.table
        for name in NAMES:
            t.move_cursor(row=t.get_row_index(name))
            await pilot.pause()
            await pilot.press("d")
            await pilot.pause()
            if name.startswith("[/]"):
                await pilot.pause(0.2)
                assert "[/]x.example is not on the allowlist" in screen_text(app)   # the toast
        said = [n.message for n in app._notifications]
        assert "removed api.anthropic.com" in said
        assert "[/]x.example is not on the allowlist" in said   # shown as text, not markup
        assert "evil\\x1b]0;pwned\\x07\\x1b[8m.example is not on the allowlist" in said
        assert not any("\x1b" in m for m in said)
        assert app.session.rows["api.anthropic.com"].allowed is False

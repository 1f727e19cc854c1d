"""Exports for enforcement tools from the screen: the `e` menu and the command palette, from
the allowlist or from the hosts seen (the demo capture replayed through the real capture
thread), and names the container chose never reaching the file unless they are host names."""

from __future__ import annotations

import pytest
import yaml

from egress_tui.core.rows import HostRow
from egress_tui.ui.app import AppConfig, create_app
from egress_tui.cli import demo_capture
from tests.pilot import until, wait_replay

SIZE = (150, 44)
BEDROCK = "bedrock-runtime.ap-northeast-1.amazonaws.com"


def demo_app(**kw):
    return create_app(AppConfig(pcap=demo_capture(), speed=0, **kw))


def said(app) -> list[str]:
    return [n.message for n in app._notifications]


async def choose(pilot, option_id: str) -> None:
    """Pick an option of the dialog on top by its id, as a user does: highlight, enter."""
    from textual.widgets import OptionList
    ol = pilot.app.screen.query_one(OptionList)
    ol.highlighted = ol.get_option_index(option_id)
    await pilot.press("enter")
    await pilot.pause()


def body(path) -> list[str]:
    return [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("#")]


@pytest.mark.asyncio
async def test_export_menu_domains_from_every_host_seen(tmp_path):
    app = demo_app(presets=["bedrock:ap-northeast-1"])
    async with app.run_test(size=SIZE) as pilot:
        await wait_replay(app, pilot)
        await pilot.press("e")
        await choose(pilot, "tool:domains:")
        await choose(pilot, "seen")
        out = tmp_path / "seen.txt"
        await pilot.press("ctrl+a", "ctrl+k", *str(out), "enter")   # the path dialog, its default cleared
        await app.workers.wait_for_complete()
        await until(pilot, lambda: any("saved to" in m for m in said(app)), 10, "the export")
    seen = body(out)
    assert BEDROCK in seen and "api.anthropic.com" in seen
    contacted = {r.name for r in app.session.rows.values() if r.connections}
    assert set(seen) <= contacted
    assert "hosts seen in" in out.read_text()


@pytest.mark.asyncio
async def test_export_allowed_hosts_seen_for_squid(tmp_path):
    app = demo_app(presets=["bedrock:ap-northeast-1"])
    async with app.run_test(size=SIZE) as pilot:
        await wait_replay(app, pilot)
        out = tmp_path / "squid.conf"
        app.export_for("squid", "ssl_bump", "allowed", str(out))
        await app.workers.wait_for_complete()
        await until(pilot, lambda: any("saved to" in m for m in said(app)), 10, "the export")
    text = out.read_text()
    assert f"acl egress_tui_names dstdomain {BEDROCK}" in text
    assert f"acl egress_tui_sni_names ssl::server_name {BEDROCK}" in text
    assert "api.anthropic.com" not in text          # seen, but denied by the allowlist


@pytest.mark.asyncio
async def test_palette_exports_the_allowlist_for_cilium(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = demo_app(presets=["anthropic"])
    async with app.run_test(size=SIZE) as pilot:
        await wait_replay(app, pilot)
        commands = {c.title: c for c in app.get_system_commands(app.screen)}
        assert {"Export for squid", "Export for squid --ssl-bump", "Export for nftables",
                "Export for aws-network-firewall", "Export for aws-network-firewall --suricata",
                "Export for cilium", "Export for domains", "Export for harden-runner"} <= set(commands)
        commands["Export for cilium"].callback()
        await pilot.pause()
        await choose(pilot, "allowlist")
        await app.workers.wait_for_complete()
        await until(pilot, lambda: any("saved to" in m for m in said(app)), 10, "the export")
    doc = yaml.safe_load((tmp_path / "egress-tui-cilium.yaml").read_text())
    names = {sel.get("matchName") or sel.get("matchPattern") for rule in doc["spec"]["egress"]
             for sel in rule.get("toFQDNs", [])}
    assert names == {"api.anthropic.com", "statsig.anthropic.com", "sentry.io", "**.sentry.io",
                     "console.anthropic.com", "platform.claude.com", "raw.githubusercontent.com"}


@pytest.mark.asyncio
async def test_names_the_container_chose_are_checked_before_an_export(tmp_path):
    app = create_app(AppConfig(start_capture=False))
    async with app.run_test(size=SIZE) as pilot:
        hostile = ['x.test"\nhttp_access allow all', "*.co.uk", "0.0.0.0/0", "\x1b[8mhidden.test", "ok.example"]
        app.session.update([HostRow(name=n, connections=1, first_seen=i + 1.0) for i, n in enumerate(hostile)])
        assert [cid for cid, _ in app.export_sources()] == ["seen"]   # no allowlist: no verdicts to pick by
        out = tmp_path / "h.conf"
        app.export_for("squid", "", "seen", str(out))
        await app.workers.wait_for_complete()
        await until(pilot, lambda: any("saved to" in m for m in said(app)), 10, "the export")
    text = out.read_text()
    assert body(out) == ["acl egress_tui_names dstdomain ok.example", "http_access allow egress_tui_names"]
    assert "skipped: 'x.test\"\\nhttp_access allow all'" in text and "\x1b" not in text

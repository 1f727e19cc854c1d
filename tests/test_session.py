"""Row verdicts and warnings as the screen shows them (the core behind the colors)."""

from __future__ import annotations

from egress_tui.core.allowlist import Allowlist
from egress_tui.core.rows import HostRow
from egress_tui.core.session import Session


def row(name, addresses, ports=(443,)):
    return HostRow(name, addresses=list(addresses), ports=list(ports), via=["tls"], outcomes={"closed": 1},
                   connections=1)


def session(text):
    al = Allowlist()
    al.add_text(text)
    al.sources.append("t")
    return Session(allowlist=al)


def test_allowed_address_not_in_the_firewall_is_flagged():
    s = session("api.anthropic.com\n")
    s.firewall_addresses = {"198.18.1.1"}
    ok, moved = s.update([row("api.anthropic.com", ["198.18.1.1"]), row("api.anthropic.com", ["198.18.9.9"])])
    assert ok.warning == "" or ok is moved
    assert moved.warning == "not-in-firewall"
    s.firewall_addresses = {"198.18.0.0/16"}
    assert s.refresh_verdicts() and moved.warning == ""        # covered by a network entry
    s.firewall_addresses = None                                    # firewall off: nothing to warn
    assert s.warning(row("api.anthropic.com", ["10.9.9.9"])) == ""


def test_shared_address_with_a_denied_name_is_flagged():
    s = session("api.anthropic.com\n")
    s.shared = {"198.18.1.1": {"api.anthropic.com", "tracker.example"}}
    [r] = s.update([row("api.anthropic.com", ["198.18.1.1"])])
    assert r.allowed is True and r.warning == "shared-address"
    s.allow("tracker.example")
    assert s.refresh_verdicts() == [r] and r.warning == ""


def test_denied_rows_carry_no_warning():
    s = session("api.anthropic.com\n")
    s.firewall_addresses = set()
    [r] = s.update([row("evil.example", ["198.18.1.1"])])
    assert r.allowed is False and r.warning == ""


def test_disallow_removes_wildcards_that_match():
    s = session("*.anthropic.com\napi.anthropic.com\nother.test\n")
    assert sorted(s.disallow("api.anthropic.com")) == ["*.anthropic.com", "api.anthropic.com"]
    assert [e.text() for e in s.allowlist.entries] == ["other.test"]


def test_disallow_takes_every_port_and_survives_hostile_names():
    s = session("api.anthropic.com:443\napi.anthropic.com:8443\n198.18.0.0/15\nother.test\n")
    assert s.disallow("api.anthropic.com") == ["api.anthropic.com:443", "api.anthropic.com:8443"]
    for name in ("[/]", "\x1b]0;pwned\x07", "*." * 2000 + "x", "0.0.0.0/0", "bü\u202echer", ""):
        assert s.disallow(name) == []
    assert s.disallow("198.18.3.4") == ["198.18.0.0/15"]
    assert [e.text() for e in s.allowlist.entries] == ["other.test"]


def test_one_verdict_text():
    """The words every output shows for a row: the table, reports and the session report."""
    r = row("x.example", ["198.18.1.1"])
    assert r.verdict_text() == "-"
    r.allowed, r.blocked = False, True
    assert r.verdict_text() == "denied, blocked"
    r.allowed, r.suspicious_dns = None, 2
    assert r.verdict_text() == "blocked, 2 suspicious DNS"
    r.allowed, r.blocked, r.warning = True, False, "not-in-firewall"
    assert r.verdict_text() == "allowed, address not in firewall, 2 suspicious DNS"
    assert r.to_json()["verdict"] == r.verdict_text()

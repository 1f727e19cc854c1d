"""The firewall's plan and resolver parsing, as data: no namespace, no root needed."""

from __future__ import annotations

import pytest

from egress_tui.core.allowlist import Allowlist
from egress_tui.firewall.plan import build_plan
from egress_tui.firewall.runners import parse_resolv_conf


def allow(text: str) -> Allowlist:
    al = Allowlist()
    al.add_text(text)
    al.sources.append("test")
    return al


def test_plan_entries():
    al = allow("api.anthropic.com\nx.test:443\n*.amazonaws.com\n198.18.0.0/16\n[fd65::1]:8443\n")
    plan = build_plan(al, {"api.anthropic.com": [("198.18.1.1", 60), ("fd65::9", 60)],
                           "x.test": [("198.18.1.2", 60)]}, ["198.18.0.2"])
    assert plan.nets[4] == {"198.18.1.1": "api.anthropic.com", "198.18.0.0/16": "198.18.0.0/16"}
    assert plan.nets[6] == {"fd65::9": "api.anthropic.com"}
    assert set(plan.ports[4]) == {"198.18.1.2,tcp:443", "198.18.1.2,udp:443"}
    assert set(plan.ports[6]) == {"fd65::1,tcp:8443", "fd65::1,udp:8443"}
    assert plan.wildcards == ["*.amazonaws.com"]


@pytest.mark.parametrize("text,extra,expected", [
    ("nameserver 198.18.0.2\n", ["8.8.8.8"], ["198.18.0.2"]),                    # no embedded DNS
    ("nameserver 127.0.0.11\noptions ndots:0\n", ["198.18.0.2"], ["127.0.0.11", "198.18.0.2"]),
    ("nameserver 127.0.0.11\n# ExtServers: [host(192.0.2.53) 2001:db8::53]\n", [],
     ["127.0.0.11", "192.0.2.53", "2001:db8::53"]),
    ("nameserver fe80::1%eth0\nnameserver not-an-address\n", [], ["fe80::1"]),
])
def test_resolv_conf_parsing(text, extra, expected):
    assert parse_resolv_conf(text, extra) == expected

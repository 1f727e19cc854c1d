"""The egress firewall in a real network namespace (the lab's client), with real clients:
what it lets through, what it stops, IPv6, DNS, atomicity and clean removal."""

from __future__ import annotations

import os
import time

import pytest

from egress_tui.core.allowlist import Allowlist, AllowlistError
from egress_tui.live.capture import Capturer, NetnsSource
from egress_tui.firewall.apply import Firewall, plan_for, verify
from egress_tui.firewall.plan import FirewallError
from egress_tui.firewall.dnssync import Guard
from egress_tui.firewall.runners import NamespaceRunner, resolvers_of

pytestmark = [pytest.mark.root, pytest.mark.netns]

if os.geteuid() != 0:
    pytest.skip("the firewall tests need root", allow_module_level=True)


def allow(text: str) -> Allowlist:
    al = Allowlist()
    al.add_text(text)
    al.sources.append("test")
    return al


def reach(lab, url: str, *extra: str) -> bool:
    r = lab.curl("-sk", "-o", "/dev/null", "-w", "%{http_code}", "--connect-timeout", "1.5", *extra, url,
                 timeout=20)
    return r.stdout.strip() == "200"


def dig(lab, server: str, name: str) -> bool:
    # over TCP: the sink answers on every lab address, but its UDP replies come from one
    r = lab.run_client(["dig", "+tcp", "+time=1", "+tries=1", "+short", f"@{server}", name], timeout=10)
    return r.returncode == 0 and bool(r.stdout.strip())


def test_resolvers_come_from_the_namespace(lab):
    assert resolvers_of(lab.pid) == ["198.18.0.2"]


def test_allowed_passes_denied_stops_ipv4_and_ipv6(lab, fw):
    assert reach(lab, "https://denied.test/")                     # open before
    plan = plan_for(lab.pid, allow("alpha.test\nport-only.test:8443\n"), resolvers_of(lab.pid))
    assert plan.resolved["alpha.test"] and not plan.unresolved
    fw.apply(plan)
    assert reach(lab, "https://alpha.test/")
    assert reach(lab, "https://alpha.test/", "-6")
    assert not reach(lab, "https://denied.test/")
    assert not reach(lab, "https://denied.test/", "-6")          # IPv6 does not bypass it
    assert reach(lab, "https://port-only.test:8443/")
    assert not reach(lab, "https://port-only.test/")             # 443 is not 8443
    st = fw.status()
    assert st.on and st.allowlist == ["alpha.test", "port-only.test:8443"]
    assert st.dropped_packets[4] > 0 and st.dropped_packets[6] > 0


def test_dns_only_to_the_configured_resolver(lab, fw):
    other = lab.address_for("some-other-resolver.test")[0]      # the sink answers DNS there too
    assert dig(lab, other, "x.test")
    fw.apply(plan_for(lab.pid, allow("alpha.test\n"), resolvers_of(lab.pid)))
    assert dig(lab, "198.18.0.2", "x.test")
    assert not dig(lab, other, "x.test")


def test_verify_reports_like_the_seed_check(lab, fw):
    plan = plan_for(lab.pid, allow("alpha.test\n"), resolvers_of(lab.pid))
    fw.apply(plan)
    checks = {c.what: c for c in verify(lab.pid, plan, resolvers_of(lab.pid))}
    assert checks["denied"].name == "example.com" and checks["denied"].result == "timeout"
    assert checks["denied"].ok
    assert checks["allowed"].name == "alpha.test" and checks["allowed"].result == "connected"


def test_unresolvable_name_is_reported_not_fatal(lab, fw):
    plan = plan_for(lab.pid, allow("alpha.test\nnxdomain.test\n"), resolvers_of(lab.pid))
    assert plan.unresolved == ["nxdomain.test"]
    fw.apply(plan)
    assert reach(lab, "https://alpha.test/")


def test_fifty_cycles_leave_no_trace(lab, fw):
    before = fw.snapshot()
    plan = plan_for(lab.pid, allow("alpha.test\n*.amazonaws.com\n198.18.100.0/24\n"), resolvers_of(lab.pid))
    for _ in range(50):
        fw.apply(plan)
        assert fw.status().on
        assert fw.remove()
    after = fw.snapshot()
    assert before.same_rules(after), (before, after)
    assert "EGRESS-TUI" not in after.v4 + after.v6 and after.sets == ""


def _members(fw, name: str) -> list[str]:
    out = fw.runner.run("ipset", ["list", name], check=False)
    return sorted(ln.split()[0] for ln in out.split("Members:")[-1].splitlines() if ln.strip())


@pytest.mark.parametrize("broken", ["ipset", "ip6tables-restore"])
def test_a_failure_leaves_the_previous_firewall_exactly(lab, fw, broken):
    good = plan_for(lab.pid, allow("alpha.test\n"), resolvers_of(lab.pid))
    fw.apply(good)
    before, members = fw.snapshot(), _members(fw, "egress-tui-v4")
    tools = {broken: "/bin/false"} if broken != "ipset" else {"ipset": "/nonexistent/ipset"}
    failing = Firewall(NamespaceRunner(lab.pid, tools=tools), fw.state_key)
    other = plan_for(lab.pid, allow("beta.test\n"), resolvers_of(lab.pid))
    with pytest.raises(FirewallError) as e:
        failing.apply(other)
    if broken == "ipset":
        assert "apt-get install ipset" in str(e.value)
    after = fw.snapshot()
    assert before.same_rules(after)
    assert _members(fw, "egress-tui-v4") == members
    assert reach(lab, "https://alpha.test/") and not reach(lab, "https://beta.test/")


def test_a_failure_on_a_fresh_namespace_leaves_nothing(lab, fw):
    before = fw.snapshot()
    failing = Firewall(NamespaceRunner(lab.pid, tools={"ip6tables-restore": "/bin/false"}), fw.state_key)
    with pytest.raises(FirewallError):
        failing.apply(plan_for(lab.pid, allow("alpha.test\n"), resolvers_of(lab.pid)))
    assert before.same_rules(fw.snapshot())
    assert reach(lab, "https://denied.test/")


def test_bad_entry_is_refused_before_anything_changes(lab, fw):
    before = fw.snapshot()
    with pytest.raises(AllowlistError, match="line 2"):
        allow("alpha.test\nnot a host\n")
    assert before.same_rules(fw.snapshot())


def test_dns_answers_keep_the_set_current(lab, fw):
    """A wildcard entry has no addresses at apply time: the capture adds them as the
    container resolves names under it (rotating CDN/AWS addresses work the same way)."""
    guard = Guard(fw, lab.pid, resolvers_of(lab.pid))
    src = NetnsSource(lab.pid, "lab client", resolvers=resolvers_of(lab.pid))
    cap = Capturer(src, lambda b: None, interval=0.1)
    cap.engine.on_dns_answer = guard.on_dns_answer
    cap.start()
    try:
        assert src.ready.wait(15)
        plan, _ = guard.apply(allow("*.rotating.test\n"), check=False)
        assert plan.wildcards == ["*.rotating.test"] and not plan.nets[4]
        assert reach(lab, "https://a1.rotating.test/", "--connect-timeout", "5")
        assert reach(lab, "https://a2.rotating.test/", "-6", "--connect-timeout", "5")
        assert not reach(lab, "https://rotating-not.test/")
        assert guard.learned >= 2
        assert lab.address_for("a1.rotating.test")[0] in _members(fw, "egress-tui-v4")
    finally:
        cap.stop()
        cap.join(5)
        guard.remove()


def test_reject_makes_clients_fail_fast(lab, fw):
    fw.apply(plan_for(lab.pid, allow("alpha.test\n"), resolvers_of(lab.pid), reject=True))
    r = lab.curl("-sk", "--connect-timeout", "5", "https://rejected.test/", timeout=20)
    assert r.returncode == 7            # "Failed to connect": refused at once, not a time-out (28)
    assert reach(lab, "https://alpha.test/")


def test_saved_capture_holds_the_blocked_syns_on_the_nflog_interface(lab, fw, tmp_path):
    """Evidence is whole: what the firewall dropped never reached an interface, yet the saved
    pcapng holds those SYNs (on the nflog interface) next to the allowed traffic."""
    from collections import Counter
    from egress_tui.live.nflog import NFLOG_INTERFACE
    from egress_tui.live.recorder import PcapngRecorder
    from tests.lab.netlab import CLIENT_IF
    from tests.test_pcapng import tshark_fields

    path = tmp_path / "evidence.pcapng"
    src = NetnsSource(lab.pid, "lab client", resolvers=resolvers_of(lab.pid))
    rec = PcapngRecorder(str(path), source=src)
    cap = Capturer(src, lambda b: None, interval=0.1, record=rec)
    cap.start()
    denied_v4, denied_v6 = lab.address_for("denied.test")
    try:
        assert src.ready.wait(15), cap.error
        fw.apply(plan_for(lab.pid, allow("alpha.test\n"), resolvers_of(lab.pid)))
        assert reach(lab, "https://alpha.test/")
        lab.curl("-s", "--max-time", "2", "http://127.0.0.1:9/")      # refused at once, on lo
        assert not reach(lab, "https://denied.test/")
        deadline = time.monotonic() + 10
        while not rec.counts().get(NFLOG_INTERFACE) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        cap.stop()
        cap.join(5)
        rec.close()
    assert cap.error is None
    counts = rec.counts()
    assert counts.get(NFLOG_INTERFACE) and counts.get(CLIENT_IF) and counts.get("lo"), counts
    assert rec.not_written == 0

    rows = tshark_fields(path, "frame.interface_name", "ip.dst", "ipv6.dst", "tcp.flags.syn", "tcp.flags.ack")
    assert Counter(r[0] for r in rows) == counts
    blocked = [r for r in rows if r[0] == NFLOG_INTERFACE]
    assert all(r[3:] == ["1", "0"] for r in blocked), blocked                # the dropped SYNs
    assert {r[1] or r[2] for r in blocked} <= {denied_v4, denied_v6}
    alpha_v4, alpha_v6 = lab.address_for("alpha.test")
    on_wire = [r for r in rows if r[0] == CLIENT_IF and r[3:] == ["1", "0"]]
    assert {r[1] or r[2] for r in on_wire} & {alpha_v4, alpha_v6}          # the allowed SYN went out
    assert not {r[1] or r[2] for r in on_wire} & {denied_v4, denied_v6}    # the blocked one never did
    assert any(r[0] == "lo" and r[1] == "127.0.0.1" for r in rows)

"""Proxy-only firewall in a real network namespace (the lab's client): the only way out is the
proxy's address and port, plus DNS to the resolver; the same address on another port, another
address on the proxy's port, and everything over IPv6 likewise are dropped. A proxy that does
not resolve, or sits on loopback, changes nothing; a failure half-way puts back what was there;
removal leaves iptables-save, ip6tables-save and the sets exactly as before.

The "proxy" is a plain TCP listener in the lab's server namespace that says who it is: what is
tested here is the firewall, not a proxy (real Squid and Dante come with their own tests)."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys

import pytest

from egress_tui.core.allowlist import Allowlist
from egress_tui.core.proxy import from_urls
from egress_tui.firewall.apply import Firewall, plan_for, plan_for_proxy, verify
from egress_tui.firewall.dnssync import Guard
from egress_tui.firewall.plan import FirewallError
from egress_tui.firewall.runners import NamespaceRunner, resolvers_of
from egress_tui.firewall.script import render_proxy_script
from tests.test_firewall import dig, reach
from tests.test_init_script import BASH, run_script, state, write_script

pytestmark = [pytest.mark.root, pytest.mark.netns]

if os.geteuid() != 0:
    pytest.skip("the firewall tests need root", allow_module_level=True)

PORT = 3128
BANNER = "egress-tui-lab-proxy"
PROXY = f"http://lab-user:lab-secret-pw@proxy.test:{PORT}"

# A dual-stack listener on every lab address (the server namespace owns the lab ranges): it
# sends its banner to whoever connects. Nothing else listens on PORT.
LISTENER = r"""
import socket, sys, threading
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", int(sys.argv[1])))
s.listen(64)
print("READY", flush=True)
while True:
    c, _ = s.accept()
    try:
        c.sendall(sys.argv[2].encode() + b"\n")
    finally:
        c.close()
"""

# From inside the client namespace: connect, read the banner; what happened, in one word.
CONNECT = r"""
import socket, sys
addr, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_STREAM)
s.settimeout(1.5)
try:
    s.connect((addr, port))
except ConnectionRefusedError:
    print("refused")
except (TimeoutError, socket.timeout):
    print("timeout")
except OSError as e:
    print("error " + str(e))
else:
    try:
        said = s.recv(100).decode(errors="replace").strip()   # the lab proxy's banner
    except OSError:
        said = ""                                              # a server that waits for us to speak
    print(("connected " + said).strip())
"""


@pytest.fixture(scope="module")
def proxy_listener(lab):
    p = subprocess.Popen(["ip", "netns", "exec", lab.server_ns, sys.executable, "-c", LISTENER, str(PORT), BANNER],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        r, _, _ = select.select([p.stdout], [], [], 15)
        assert r and p.stdout.readline().strip() == b"READY", p.stderr.read() if p.poll() is not None else ""
        yield p
    finally:
        p.kill()
        p.wait(5)


def connect(lab, addr: str, port: int) -> str:
    r = lab.py(CONNECT, addr, str(port), timeout=20)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def allow(text: str) -> Allowlist:
    al = Allowlist()
    al.add_text(text)
    al.sources.append("test")
    return al


def members(fw, name: str) -> list[str]:
    out = fw.runner.run("ipset", ["list", name], check=False)
    return sorted(ln.split()[0] for ln in out.split("Members:")[-1].splitlines() if ln.strip())


def test_only_the_proxy_gets_out_ipv4_and_ipv6(lab, fw, proxy_listener):
    v4, v6 = lab.address_for("proxy.test")
    other4, other6 = lab.address_for("denied.test")
    dns_elsewhere = lab.address_for("some-other-resolver.test")[0]    # the sink answers DNS there too
    before = state(lab)
    # open before: the proxy, the proxy's address on another port (the sink's TLS), other addresses
    assert connect(lab, v4, PORT) == f"connected {BANNER}"
    assert connect(lab, v4, 443).startswith("connected")
    assert connect(lab, other4, PORT) == f"connected {BANNER}"
    assert reach(lab, "https://denied.test/") and dig(lab, dns_elsewhere, "x.test")

    resolvers = resolvers_of(lab.pid)
    plan = plan_for_proxy(lab.pid, from_urls([PROXY]), resolvers)
    assert plan.mode == "proxy" and plan.proxies == [f"http://***@proxy.test:{PORT}"]
    assert plan.ports == {4: {f"{v4},tcp:{PORT}": "proxy.test"}, 6: {f"{v6},tcp:{PORT}": "proxy.test"}}
    assert plan.nets == {4: {}, 6: {}}                                    # nothing else, no UDP
    assert "lab-secret-pw" not in json.dumps(plan.to_json())
    fw.apply(plan)

    assert connect(lab, v4, PORT) == f"connected {BANNER}"              # the proxy: through
    assert connect(lab, v6, PORT) == f"connected {BANNER}"
    assert connect(lab, v4, 443) == "timeout"                          # its address, another port
    assert connect(lab, v6, 443) == "timeout"
    assert connect(lab, other4, PORT) == "timeout"                      # another address, its port
    assert connect(lab, other6, PORT) == "timeout"
    assert not reach(lab, "https://denied.test/") and not reach(lab, "https://denied.test/", "-6")
    assert dig(lab, "198.18.0.2", "x.test")                             # DNS to the resolver
    assert not dig(lab, dns_elsewhere, "x.test")                        # and only there

    st = fw.status()
    assert st.on and st.mode == "proxy" and st.proxies == [f"http://***@proxy.test:{PORT}"]
    assert st.dropped_packets[4] > 0 and st.dropped_packets[6] > 0
    assert "lab-secret-pw" not in open(fw.state_path).read()

    checks = verify(lab.pid, plan, resolvers)
    by = {(c.what, c.name): c for c in checks}
    assert by[("rules", "EGRESS-TUI")].ok
    assert by[("in set", "proxy.test")].ok and by[("in set", "proxy.test")].address == v4
    assert by[("allowed", "proxy.test")].result == "connected"
    assert by[("denied", "proxy.test (another port)")].result == "timeout"
    assert by[("denied", "example.com")].ok and all(c.ok for c in checks), checks

    assert fw.remove()
    assert state(lab) == before                                         # exactly what was there
    assert connect(lab, other4, PORT) == f"connected {BANNER}"


def test_the_checks_fail_when_the_proxy_is_not_in_the_set(lab, fw, proxy_listener):
    """verify() reads the kernel: a proxy entry taken out of the set behind egress-tui's back
    is a failed check, and so is a missing rule."""
    v4 = lab.address_for("proxy.test")[0]
    plan = plan_for_proxy(lab.pid, from_urls([f"http://proxy.test:{PORT}"]), resolvers_of(lab.pid))
    fw.apply(plan)
    fw.runner.run("ipset", ["del", "egress-tui-v4-port", f"{v4},tcp:{PORT}"])
    subprocess.run(["nsenter", f"--net=/proc/{lab.pid}/ns/net", "ip6tables", "-D", "OUTPUT", "-j", "EGRESS-TUI"],
                   check=True)
    by = {c.what: c for c in verify(lab.pid, plan, resolvers_of(lab.pid))}
    assert not by["in set"].ok and "MISSING" in by["in set"].result
    assert not by["rules"].ok and by["rules"].result == "MISSING in IPv6"
    assert connect(lab, v4, PORT) == "timeout"                          # what the check said


def test_a_proxy_by_address_ipv6_only(lab, fw, proxy_listener):
    v4, v6 = lab.address_for("proxy.test")
    fw.apply(plan_for_proxy(lab.pid, from_urls([f"socks5h://[{v6}]:{PORT}"]), resolvers_of(lab.pid)))
    assert connect(lab, v6, PORT) == f"connected {BANNER}"
    assert connect(lab, v4, PORT) == "timeout"                          # only the address given
    assert connect(lab, v6, 443) == "timeout"


@pytest.mark.parametrize("url, says", [
    (f"http://nxdomain.test:{PORT}", "nxdomain.test does not resolve through the container's DNS (198.18.0.2)"),
    (f"http://127.0.0.1:{PORT}", "is on a loopback address"),
    (f"http://localhost:{PORT}", "is on a loopback address"),
    (f"socks5://[::1]:{PORT}", "is on a loopback address"),
    (f"http://0.0.0.0:{PORT}", "is on a loopback address"),
])
def test_a_proxy_that_cannot_work_changes_nothing(lab, fw, proxy_listener, url, says):
    """Over a firewall that is on (allowlist mode) and over none: both stay exactly as they were."""
    resolvers = resolvers_of(lab.pid)
    for on in (False, True):
        if on:
            fw.apply(plan_for(lab.pid, allow("alpha.test\n"), resolvers))
        before = state(lab)
        guard = Guard(Firewall(NamespaceRunner(lab.pid), fw.state_key), lab.pid, resolvers)
        with pytest.raises(FirewallError) as e:
            guard.apply_proxy(from_urls([url]))
        msg = str(e.value)
        assert says in msg and "\n" not in msg
        assert not guard.on and guard.mode == ""
        assert state(lab) == before
        assert reach(lab, "https://alpha.test/")
        assert reach(lab, "https://denied.test/") != on


@pytest.mark.parametrize("broken", ["ipset", "ip6tables-restore"])
def test_a_failure_leaves_the_previous_firewall_exactly(lab, fw, proxy_listener, broken):
    resolvers = resolvers_of(lab.pid)
    fw.apply(plan_for(lab.pid, allow("alpha.test\n"), resolvers))
    before = state(lab)
    tools = {"ipset": "/nonexistent/ipset"} if broken == "ipset" else {broken: "/bin/false"}
    failing = Firewall(NamespaceRunner(lab.pid, tools=tools), fw.state_key)
    with pytest.raises(FirewallError):
        failing.apply(plan_for_proxy(lab.pid, from_urls([f"http://proxy.test:{PORT}"]), resolvers))
    assert state(lab) == before
    assert fw.status().mode == "allowlist"
    assert reach(lab, "https://alpha.test/")
    assert connect(lab, lab.address_for("proxy.test")[0], PORT) == "timeout"


def test_a_failure_on_a_fresh_namespace_leaves_nothing(lab, fw, proxy_listener):
    before = state(lab)
    failing = Firewall(NamespaceRunner(lab.pid, tools={"ip6tables-restore": "/bin/false"}), fw.state_key)
    with pytest.raises(FirewallError):
        failing.apply(plan_for_proxy(lab.pid, from_urls([f"http://proxy.test:{PORT}"]), resolvers_of(lab.pid)))
    assert state(lab) == before
    assert reach(lab, "https://denied.test/")


def test_dns_answers_only_ever_add_the_proxy(lab, fw, proxy_listener):
    """The guard's copy of the 'allowlist' is the proxies: an answer for another name adds
    nothing; one for the proxy's name adds that address on the proxy's port, TCP only; a
    withdrawn answer never takes out the address the plan resolved at apply time."""
    v4 = lab.address_for("proxy.test")[0]
    guard = Guard(fw, lab.pid, resolvers_of(lab.pid))
    try:
        plan, checks = guard.apply_proxy(from_urls([f"http://proxy.test:{PORT}"]))
        assert guard.mode == "proxy" and guard.proxy.endpoints[0].host == "proxy.test"
        assert all(c.ok for c in checks), checks
        assert not guard.carries(allow("proxy.test:3128\n"))     # it carries no allowlist of the user's
        guard.on_dns_answer("denied.test", "198.18.70.9", 60)
        guard.on_dns_answer("proxy.test", "198.18.70.10", 60)         # the proxy moved
        guard.on_dns_withdraw("proxy.test", v4)                        # contradicted: stays
        assert guard.flush()
        guard.close()                                                  # ipset has had every line
        got = members(fw, "egress-tui-v4-port")
        assert got == sorted([f"{v4},tcp:{PORT}", f"198.18.70.10,tcp:{PORT}"]), got
        assert members(fw, "egress-tui-v4") == []
        assert guard.learned == 1 and guard.updater.errors == 0
    finally:
        guard.remove()


def test_the_script_gives_the_same_kernel_state_and_verdicts(lab, fw, proxy_listener, tmp_path):
    v4, v6 = lab.address_for("proxy.test")
    proxy = from_urls([PROXY])
    before = state(lab)
    text = render_proxy_script(proxy, generated_by="test")
    assert "lab-secret-pw" not in text
    script = write_script(tmp_path / "init-firewall.sh", text)
    r = run_script(lab, script)        # resolvers from the lab's resolv.conf, like a container's
    assert r.returncode == 0, r.stdout + r.stderr
    assert "applied, proxy only: the only way out is proxy.test" in r.stdout
    assert "check: example.com" in r.stdout and "is blocked, as expected" in r.stdout
    assert f"check: proxy.test ({v4}) port {PORT} is reachable, as expected" in r.stdout
    by_script = state(lab)
    assert connect(lab, v4, PORT) == f"connected {BANNER}" and connect(lab, v6, PORT) == f"connected {BANNER}"
    assert connect(lab, v4, 443) == "timeout" and connect(lab, v6, 443) == "timeout"
    assert fw.status().on
    assert fw.remove()
    fw.apply(plan_for_proxy(lab.pid, proxy, resolvers_of(lab.pid)))
    assert state(lab) == by_script
    assert run_script(lab, script, "--remove").returncode == 0
    assert state(lab) == before


def test_the_script_refuses_a_proxy_that_does_not_resolve(lab, fw, tmp_path):
    before = state(lab)
    script = write_script(tmp_path / "s.sh", render_proxy_script(from_urls([f"http://nxdomain.test:{PORT}"])))
    r = run_script(lab, script)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "proxy nxdomain.test did not resolve: nothing applied" in r.stderr
    assert state(lab) == before
    assert subprocess.run([BASH, "-n", str(script)]).returncode == 0

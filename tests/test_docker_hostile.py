"""A process in a real container forges DNS answers while the firewall is on: the forged
address is never named after the allowed host and never let through."""

from __future__ import annotations

import subprocess
import time

import pytest

from egress_tui.core.allowlist import Allowlist
from egress_tui.firewall.plan import FirewallError
from egress_tui.inspection import open_inspection

pytestmark = [pytest.mark.docker, pytest.mark.root]

NAME = "api.anthropic.com"

# Runs inside the target as root, with the default capabilities: what an agent's shell
# command could do. argv: forged address, the container's own address, a sink address.
FORGER = r'''
import os, socket, struct, sys, time
forged, own, sink = sys.argv[1:4]
def qname(n):
    return b"".join(bytes([len(l)]) + l.encode() for l in n.split(".")) + b"\0"
def msg(ident, response, answer=None):
    flags = 0x8180 if response else 0x0100
    m = struct.pack("!HHHHHH", ident, flags, 1, 1 if answer else 0, 0, 0) + qname("api.anthropic.com") + b"\0\1\0\1"
    if answer:
        m += b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 3600, 4) + socket.inet_aton(answer)
    return m
# 1. unsolicited "answers" from port 53 of the container's own addresses
s53 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s53.bind(("0.0.0.0", 53))
for dst in ((sink, 40000), ("127.0.0.1", 40001), (own, 40002)):
    try:
        s53.sendto(msg(0x4141, True, forged), dst)
    except PermissionError:
        print("dropped by the firewall:", dst, flush=True)  # NFLOG still shows it
# 2. race Docker's embedded resolver: ask it, and answer our own query at once from
#    127.0.0.11:53, the address and port its real answer comes from
s53.close()
fake = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
fake.bind(("127.0.0.11", 53))
for i in range(5):
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.connect(("127.0.0.11", 53))
    ident = int.from_bytes(os.urandom(2), "big")
    c.send(msg(ident, False))
    fake.sendto(msg(ident, True, forged), ("127.0.0.1", c.getsockname()[1]))
    c.settimeout(2)
    try:
        got = c.recv(512)
        print("stub got", socket.inet_ntoa(got[-4:]), flush=True)
    except OSError as e:
        print("stub got nothing", e, flush=True)
time.sleep(0.5)
# 3. the payoff the forger wants: reach the forged address
t = socket.socket()
t.settimeout(3)
try:
    t.connect((forged, 443))
    print("CONNECTED", flush=True)
except OSError as e:
    print("blocked:", e, flush=True)
'''


def members(fw, name):
    out = fw.runner.run("ipset", ["list", name], check=False)
    return sorted(ln.split()[0] for ln in out.split("Members:")[-1].splitlines() if ln.strip())


def test_forged_dns_answers_never_open_the_firewall(docker_lab, docker_client):
    lab = docker_lab
    forged = lab.address_for("forged-destination.test")
    insp = open_inspection(lab.target.name, dc=docker_client)
    assert "127.0.0.11" in insp.resolvers and lab.dns_ip in insp.resolvers
    cap = insp.start_capture()
    src = insp.source
    fw = insp.guard.firewall
    try:
        t0 = time.monotonic()
        while src.state != "capturing" or "probe.test" not in cap.engine.hosts:
            assert time.monotonic() - t0 < 30, "capture did not start"
            lab.exec(["getent", "hosts", "probe.test"], timeout=5)
        allow = Allowlist()
        allow.add_text(f"{NAME}\n", "test")
        allow.sources.append("test")
        plan, _ = insp.apply_firewall(allow, check=False)
        assert forged not in str(plan.resolved[NAME])
        res = lab.exec(["python3", "-c", FORGER, forged, lab.target_ip, lab.sink_ip], timeout=40)
        assert res.returncode == 0, res.stderr
        assert "blocked:" in res.stdout and "CONNECTED" not in res.stdout, res.stdout
        assert forged not in members(fw, "egress-tui-v4")
        # a real lookup of the allowed name still works and still feeds the set
        assert lab.exec(["getent", "hosts", NAME], timeout=10).returncode == 0
        with cap.lock:
            eng = cap.engine
            assert eng.addr_name.get(forged) != NAME
            row = eng.hosts[NAME].to_row()
            notes = list(row.suspicious)
        assert forged not in row.resolved
        forged_notes = [n for n in notes if any(forged in c for c in n["claims"])]
        # every forged answer is flagged: three unsolicited ones (the one the firewall dropped
        # seen through NFLOG as leaving eth0) and the five racing Docker's resolver (the kernel
        # usually moves those off port 53, their tuple clashing with the real query's NAT
        # mapping, which the port check catches; else they conflict with the real answer)
        assert len(forged_notes) >= 8, (notes, res.stdout)
        reasons = {n["reason"] for n in forged_notes}
        assert any("answers no query" in r for r in reasons), reasons
        assert "sent by the container itself" in reasons, reasons
        # and nothing else: the real lookups (the forger's own, getent's) are believed, unless
        # a forged answer to the same query made both suspect
        others = [n for n in notes if n not in forged_notes]
        assert all("second, different answer" in n["reason"] for n in others), others
    finally:
        insp.remove_firewall()
        insp.close()


def test_no_firewall_for_a_container_on_the_host_network(docker_client, lab_images):
    """Its namespace is the host's: applying the firewall there would lock down this host."""
    before = subprocess.run(["iptables-save", "-t", "filter"], capture_output=True, text=True).stdout
    c = docker_client.containers.create(lab_images["base"].id, ["sleep", "infinity"], network_mode="host",
                                        labels={"egress-tui.test": "host-network"})
    try:
        c.start()
        for method in ("auto", "helper"):
            with open_inspection(c.name, method=method, helper_image=lab_images["base"].id) as insp:
                with pytest.raises(FirewallError, match="uses the host's network"):
                    insp.guard
    finally:
        c.remove(force=True)
    after = subprocess.run(["iptables-save", "-t", "filter"], capture_output=True, text=True).stdout
    assert "EGRESS-TUI" not in after and before.count("\n") == after.count("\n")

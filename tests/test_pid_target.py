"""Any process's network namespace as a target (--pid, --netns): its resolv.conf read as the
hostile file it is; capture, firewall and report on a bare ``ip netns`` namespace, on a Docker
container's PID and on a containerd container's (the Kubernetes node path: ``crictl inspect``
gives the PID, here ``ctr task ls``); the refusals, each one line."""

from __future__ import annotations

import json
import os
import subprocess
import threading

import pytest

from egress_tui.firewall.apply import Firewall
from egress_tui.firewall.runners import NamespaceRunner
from egress_tui.inspection import RERUN_NEEDS_ENGINE
from egress_tui.live.namespaces import (MAX_NAMESERVERS, RESOLV_CONF_LIMIT, parse_resolv_conf, read_resolv_conf)
from tests.enginelab.run import EGRESS, egress, report_while

root_netns = [pytest.mark.root, pytest.mark.netns]


def one_line(r: subprocess.CompletedProcess, *needles: str) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    for n in needles:
        assert n in r.stderr, r.stderr
    return r.stderr


# -- the resolv.conf of a root we do not trust ------------------------------------------------

def test_only_nameserver_lines_with_resolver_addresses_count():
    text = ("# a comment naming 203.0.113.7\nsearch evil.test\nnameserver 198.18.0.2\n"
            "nameserver fe80::1%eth0\nnameserver 0.0.0.0\nnameserver 224.0.0.251\nnameserver \x1b]0;owned\x07\n"
            "nameserver 192.0.2.1\nnameserver 192.0.2.2\nnameserver 192.0.2.3\n")
    res = parse_resolv_conf(text, "rc")
    assert res.servers == ["198.18.0.2", "fe80::1", "192.0.2.1"]       # glibc's first three that are resolvers
    assert len(res.servers) == MAX_NAMESERVERS
    said = "\n".join(res.problems)
    assert "rc line 5: 0.0.0.0 is not a resolver address" in said and "224.0.0.251" in said
    assert "\\x1b]0;owned\\x07" in said and "\x1b" not in said         # shown as data, never as a control
    assert "2 nameserver(s) after the first 3 ignored" in said
    assert "203.0.113.7" not in said and "evil.test" not in said       # nothing else of the file is repeated


def test_docker_s_embedded_resolver_brings_its_upstream_servers():
    res = parse_resolv_conf("nameserver 127.0.0.11\n# ExtServers: [host(192.0.2.53) 2001:db8::53 not-an-ip]\n")
    assert res.servers == ["127.0.0.11", "192.0.2.53", "2001:db8::53"]
    assert parse_resolv_conf("nameserver 198.18.0.2\n# ExtServers: [192.0.2.53]\n").servers == ["198.18.0.2"]


@pytest.fixture
def fake_root(tmp_path):
    """A directory standing for a process's root (/proc/PID/root), and a file outside it."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "run").mkdir()
    outside = tmp_path / "outside.conf"
    outside.write_text("nameserver 203.0.113.66\n")
    return root, outside


def test_symlinks_resolve_inside_the_process_s_root_never_ours(fake_root):
    root, outside = fake_root
    (root / "run" / "stub.conf").write_text("nameserver 198.18.0.2\n")
    rc = root / "etc" / "resolv.conf"
    rc.symlink_to("/run/stub.conf")                       # systemd-resolved's way: absolute, in its root
    assert read_resolv_conf(str(root)).servers == ["198.18.0.2"]
    rc.unlink()
    rc.symlink_to(str(outside))                           # a path that names our file, not its
    res = read_resolv_conf(str(root))
    assert res.servers == [] and "cannot read" in res.problems[0]
    rc.unlink()
    rc.symlink_to("../../../../../../.." + str(outside))  # climbing out stops at its root
    assert read_resolv_conf(str(root)).servers == []


def test_a_fifo_a_device_or_a_huge_file_never_hang_or_flood(fake_root):
    root, _ = fake_root
    rc = root / "etc" / "resolv.conf"
    os.mkfifo(rc)                                          # would block a plain open() forever
    got = {}
    t = threading.Thread(target=lambda: got.update(r=read_resolv_conf(str(root))), daemon=True)
    t.start()
    t.join(5)
    assert not t.is_alive() and got["r"].servers == [] and "not a regular file" in got["r"].problems[0]
    rc.unlink()
    rc.symlink_to("/dev/zero")                             # resolved inside the root: no such file there
    assert read_resolv_conf(str(root)).servers == []
    rc.unlink()
    rc.write_text("nameserver 198.18.0.2\n" + "#" * (RESOLV_CONF_LIMIT * 4) + "\nnameserver 192.0.2.9\n")
    res = read_resolv_conf(str(root))
    assert res.servers == ["198.18.0.2"]                   # what lies past the limit is never read
    assert any("larger than 64 KiB" in p for p in res.problems)


# -- a bare ip netns namespace ------------------------------------------------------------

def _firewall_round_trip(target: list[str], netns: str, reach, tag: str, tmp_path) -> None:
    """apply (allowing ok-TAG.test), check, status, remove: the namespace's rules as before."""
    fw = Firewall(NamespaceRunner(netns), f"test-pid-{tag}")
    before = fw.snapshot()
    allow = tmp_path / "allow.txt"
    allow.write_text(f"ok-{tag}.test\n")
    r = egress("firewall", "apply", *target, "--allow", str(allow))
    assert r.returncode == 0, r.stderr
    assert "1 entries" in r.stdout and "FAILED" not in r.stdout, r.stdout
    try:
        assert reach(f"ok-{tag}.test") == "200"
        assert reach(f"denied-{tag}.test") == "000"
        st = json.loads(egress("firewall", "status", *target, "--format", "json").stdout)
        assert st["on"] and st["allowlist"] == [f"ok-{tag}.test"]
    finally:
        r = egress("firewall", "remove", *target)
    assert r.returncode == 0 and "firewall removed from" in r.stdout, r.stderr
    assert fw.snapshot().same_rules(before)
    assert reach(f"denied-{tag}.test") == "200"


@pytest.mark.root
@pytest.mark.netns
def test_netns_by_name_capture_and_firewall(lab, tmp_path):
    def reach(name: str) -> str:
        return lab.run_client(["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "3",
                               f"https://{name}/"]).stdout

    hosts, err, _ = report_while(["--netns", lab.client_ns], lambda: reach("alpha-ns.test"))
    assert f"capturing netns {lab.client_ns}" in err
    assert "tls" in hosts["alpha-ns.test"]["via"]
    _firewall_round_trip(["--netns", f"/run/netns/{lab.client_ns}"], f"/run/netns/{lab.client_ns}", reach, "ns",
                         tmp_path)
    # the standalone script for the same namespace lets DNS through to its resolver
    r = egress("firewall", "script", "--preset", "anthropic", "--netns", lab.client_ns)
    assert r.returncode == 0 and f"for netns {lab.client_ns}" in r.stdout, r.stderr
    assert "198.18.0.2" in r.stdout, r.stdout[:2000]


@pytest.mark.root
@pytest.mark.netns
@pytest.mark.asyncio
async def test_the_screen_on_a_pid_says_reruns_need_an_engine(lab):
    from egress_tui.ui.app import AppConfig, create_app
    from tests.pilot import until
    app = create_app(AppConfig(pid=lab.pid))
    async with app.run_test(size=(140, 40)) as pilot:
        await until(pilot, lambda: app.state == "capturing" or app.inspection is not None and app.inspection.is_live,
                    20, "the capture")
        assert app.target.startswith(f"pid {lab.pid}")
        await pilot.press("r")
        await pilot.pause()
        assert any(n.message == RERUN_NEEDS_ENGINE for n in app._notifications)
        await pilot.press("q")


# -- a Docker container's PID --------------------------------------------------------------

@pytest.mark.docker
@pytest.mark.root
def test_pid_of_a_docker_container(docker_lab, tmp_path):
    box = docker_lab.target
    pid = docker_lab.target_pid
    ns = f"/proc/{pid}/ns/net"

    def reach(name: str, resolve: str = "") -> str:
        extra = ["--resolve", f"{name}:443:{resolve}"] if resolve else []
        return docker_lab.exec(["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "3", *extra,
                                f"https://{name}/"], container=box).stdout

    hosts, err, _ = report_while(["--pid", str(pid)], lambda: reach("alpha-dpid.test"))
    assert f"capturing pid {pid} (" in err
    assert "tls" in hosts["alpha-dpid.test"]["via"]
    # behind Docker's 127.0.0.11 the upstream servers are not in the container's resolv.conf
    # (Docker 20.10 writes no ExtServers line): apply says lookups will fail, and the allowlist's
    # address (resolved at apply time) is what gets through
    allow = tmp_path / "allow.txt"
    allow.write_text("ok-dpid.test\n")
    fw = Firewall(NamespaceRunner(ns), "test-pid-docker")
    before = fw.snapshot()
    r = egress("firewall", "apply", "--pid", str(pid), "--allow", str(allow))
    assert r.returncode == 0, r.stderr
    try:
        if "ExtServers" not in docker_lab.exec(["cat", "/etc/resolv.conf"], container=box).stdout:
            assert "127.0.0.11" in r.stderr and "unknown" in r.stderr, r.stderr
        ok, denied = docker_lab.address_for("ok-dpid.test"), docker_lab.address_for("denied-dpid.test")
        assert reach("ok-dpid.test", ok) == "200"
        assert reach("denied-dpid.test", denied) == "000"
    finally:
        assert egress("firewall", "remove", "--pid", str(pid)).returncode == 0
    assert fw.snapshot().same_rules(before)
    assert reach("denied-dpid.test", denied) == "200"


# -- a containerd container: the Kubernetes node path ------------------------------------------

@pytest.mark.podman
@pytest.mark.docker
@pytest.mark.root
@pytest.mark.netns
def test_pid_of_a_containerd_container(lab, ctr_image, tmp_path):
    from tests.enginelab.containerd import CtrContainer, task_pid
    with CtrContainer(f"/run/netns/{lab.client_ns}", f"/etc/netns/{lab.client_ns}/resolv.conf") as box:
        pid = task_pid(box.id)                       # what crictl inspect's .info.pid gives on a node
        assert pid == box.pid and os.readlink(f"/proc/{pid}/ns/net") == os.readlink(f"/proc/{lab.pid}/ns/net")

        def reach(name: str) -> str:
            return box.exec(["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "3",
                             f"https://{name}/"]).stdout

        hosts, err, _ = report_while(["--pid", str(pid)], lambda: reach("alpha-ctr.test"))
        assert f"capturing pid {pid} (sleep)" in err
        assert "tls" in hosts["alpha-ctr.test"]["via"]
        assert hosts["alpha-ctr.test"]["processes"] == {"curl": 1}     # looked up in its /proc
        _firewall_round_trip(["--pid", str(pid)], f"/proc/{pid}/ns/net", reach, "ctr", tmp_path)


# -- refusals ---------------------------------------------------------------------------------

@pytest.mark.root
def test_refusals_are_one_line(tmp_path):
    me = os.getpid()
    one_line(egress("firewall", "apply", "--pid", str(me), "--preset", "anthropic"),
             "this host's own network namespace: a firewall there would lock down this host")
    one_line(egress("learn", "--pid", str(me), "--", "true"), RERUN_NEEDS_ENGINE)
    one_line(egress("report", "--pid", str(me), "--method", "helper"), "--method helper needs a container engine")
    one_line(egress("report", "--pid", "999999999"), "--pid 999999999: no such process on this host")
    one_line(egress("report", "--netns", "/etc/passwd"), "is not a network namespace")
    one_line(egress("firewall", "status", "box", "--pid", str(me)), "needs one target")
    one_line(egress("firewall", "status"), "needs one target: a CONTAINER name, --pid PID or --netns PATH")
    drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
    r = subprocess.run([*drop, EGRESS, "report", "--pid", str(me)], capture_output=True, text=True, timeout=60,
                       cwd=tmp_path)
    one_line(r, "--pid and --netns enter the namespace from the host: run as root")

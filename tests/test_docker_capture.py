"""The live inspector against a real container in the Docker lab: attach by name and by the
picker, read the rows off a real terminal (tmux), follow a stop/restart, and the helper-container
path; plus the headless `report --container` twin."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.dockerlab.images import BASE_TAG, SINK_TAG
from tests.lab.netlab import _QUIC

pytestmark = [pytest.mark.docker, pytest.mark.root]

ROOT = Path(__file__).resolve().parents[1]
EGRESS = str(Path(sys.executable).with_name("egress-tui"))

# Python's ssl with a long ALPN list: a ~1.9 KB ClientHello, two TCP segments once the
# container's offloads are off (what a post-quantum key share does to browsers).
BIG_HELLO = r"""
import socket, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["h2"] + ["x-padding-protocol-%02d-%s" % (i, "p" * 20) for i in range(36)])
with socket.create_connection((sys.argv[1], 443), timeout=5) as s:
    with ctx.wrap_socket(s, server_hostname=sys.argv[1]) as t:
        print(t.version())
"""


def traffic(lab, ctr, tag: str) -> dict:
    """Names are unique per call (tag) so each test sees its own rows."""
    run = lambda argv, t=20: lab.exec(argv, container=ctr, timeout=t)  # noqa: E731
    return {
        "split": run(["python3", "-c", BIG_HELLO, f"split-{tag}.test"]),
        "tls": run(["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", f"https://alpha-{tag}.test/"]),
        "http": run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://plain-{tag}.test/"]),
        "quic": run(["python3", "-c", _QUIC, f"quic-{tag}.test", "443", f"quic-{tag}.test", "h3"]),
        "blocked": run(["curl", "-sk", "--max-time", "2", f"https://{tag}.blackholed.test/"]),
    }


@pytest.fixture(scope="module")
def client_ctr(docker_lab):
    """A container with curl, python3 and aioquic on the lab network, confined like the target."""
    ctr = docker_lab.add_container(SINK_TAG, "client")
    pid = ctr.attrs["State"]["Pid"]
    docker_lab.nsenter(["ethtool", "-K", "eth0", "tso", "off", "gso", "off"], pid=pid)
    return ctr


def report_container(ctr, lab, tag: str, *extra: str) -> tuple[dict, dict]:
    p = subprocess.Popen([EGRESS, "report", "--container", ctr.name, "--duration", "14",
                          "--format", "json", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    # report says "capturing" once its capture listens: the traffic starts then, not after a guess
    said = []
    for line in p.stderr:
        said.append(line)
        if "capturing" in line:
            break
    assert any("capturing" in ln for ln in said), said
    done = traffic(lab, ctr, tag)
    out, err = p.communicate(timeout=60)
    err = "".join(said) + err
    assert p.returncode == 0, err
    return {h["name"]: h for h in json.loads(out)["hosts"]}, done


def check_hosts(hosts: dict, tag: str) -> None:
    assert "tls" in hosts[f"split-{tag}.test"]["via"]
    assert "tls" in hosts[f"alpha-{tag}.test"]["via"]
    assert "http" in hosts[f"plain-{tag}.test"]["via"]
    assert "quic" in hosts[f"quic-{tag}.test"]["via"]
    blocked = hosts[f"{tag}.blackholed.test"]     # named from its DNS lookup: no ClientHello
    assert blocked["blocked"] and blocked["outcomes"].get("unanswered"), blocked


def test_report_container_from_the_host(docker_lab, client_ctr):
    hosts, done = report_container(client_ctr, docker_lab, "netns")
    assert done["split"].stdout.strip() == "TLSv1.3", done["split"]
    check_hosts(hosts, "netns")


def test_report_container_through_a_helper_container(docker_lab, client_ctr, docker_client):
    # the base image has tcpdump; it is local, so nothing is pulled
    hosts, _ = report_container(client_ctr, docker_lab, "helper", "--method", "helper",
                                "--helper-image", BASE_TAG)
    check_hosts(hosts, "helper")
    assert not docker_client.containers.list(all=True, filters={"label": "egress-tui.helper"})


def test_missing_helper_image_is_one_line(client_ctr):
    r = subprocess.run([EGRESS, "report", "--container", client_ctr.name, "--method", "helper",
                        "--helper-image", "egress-tui-test/no-such-image:1", "--duration", "2"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "is not on this Docker host" in r.stderr and "Traceback" not in r.stderr


def test_unknown_container_is_one_line():
    for argv in ([EGRESS, "no-such-container-x"], [EGRESS, "report", "--container", "no-such-container-x"]):
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, r
        assert r.stderr.strip().splitlines() == [r.stderr.strip()]
        assert "no container named or with id 'no-such-container-x'" in r.stderr


# -- the saved evidence with the firewall on --------------------------------------------

# Tries the allowed name and the denied one a few times, so the capture sees some whatever its
# start-up takes: $1 allowed, $2 denied.
TRIES = 'for i in 1 2 3 4 5 6; do curl -sk -o /dev/null --max-time 1 "https://$1/"; ' \
        'curl -sk -o /dev/null --max-time 1 "https://$2/"; done; echo done'


@pytest.fixture(scope="module")
def locked_ctr(docker_lab, tmp_path_factory):
    """A container with egress-tui's firewall on (from the host), allowing only ev-ok-*.test."""
    ctr = docker_lab.add_container(SINK_TAG, "locked")
    allow = tmp_path_factory.mktemp("evidence") / "allow.txt"
    allow.write_text("ev-ok-netns.test\nev-ok-helper.test\n")
    r = subprocess.run([EGRESS, "firewall", "apply", ctr.name, "--allow", str(allow), "--no-verify"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    yield ctr
    subprocess.run([EGRESS, "firewall", "remove", ctr.name], capture_output=True, timeout=120)


@pytest.mark.parametrize("method", ["netns", "helper"])
def test_saved_capture_holds_the_blocked_attempts(docker_lab, locked_ctr, docker_client, method, tmp_path):
    from collections import Counter
    from egress_tui.live.nflog import NFLOG_INTERFACE
    from tests.test_pcapng import tshark_fields
    ok, denied = f"ev-ok-{method}.test", f"ev-denied-{method}.test"
    saved = tmp_path / "evidence.pcapng"
    extra = ["--helper-image", BASE_TAG] if method == "helper" else []
    p = subprocess.Popen([EGRESS, "report", "--container", locked_ctr.name, "--method", method, *extra,
                          "--duration", "14", "--save-pcap", str(saved), "--format", "json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "capturing" in p.stderr.readline()
    tried = docker_lab.exec(["sh", "-c", TRIES, "sh", ok, denied], container=locked_ctr, timeout=40)
    assert tried.stdout.strip() == "done", tried
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    report = json.loads(out)
    hosts = {h["name"]: h for h in report["hosts"]}
    assert hosts[denied]["blocked"] and hosts[denied]["outcomes"].get("unanswered"), hosts.get(denied)
    assert "tls" in hosts[ok]["via"]

    meta = report["saved_pcap"]
    assert meta["path"] == str(saved) and meta["not_written"] == 0
    counts = meta["packets"]
    rows = [[iface, v4 or v6, syn, ack] for iface, v4, v6, syn, ack in tshark_fields(
        saved, "frame.interface_name", "ip.dst", "ipv6.dst", "tcp.flags.syn", "tcp.flags.ack")]
    assert Counter(r[0] for r in rows) == counts                    # the report says what the file holds
    assert f"saved {sum(counts.values())} packets" in err
    # named in both modes: the helper's tcpdump writes cooked v2 and `ip` in it names the indexes
    assert counts.get("eth0") and counts.get("lo"), counts           # Docker's DNS answers on lo
    denied_ips = {docker_lab.address_for(denied, 4), docker_lab.address_for(denied, 6)}
    # (the firewall also drops the namespace's IPv6 multicast listener reports: NFLOG shows those too)
    blocked = [r for r in rows if r[0] == NFLOG_INTERFACE and r[2]]
    assert blocked and all(r[1] in denied_ips and r[2:] == ["1", "0"] for r in blocked), (denied_ips, blocked)
    # the denied SYNs never reached a device; the allowed connection did
    on_wire = {r[1] for r in rows if r[0] != NFLOG_INTERFACE and r[2:] == ["1", "0"]}
    assert {docker_lab.address_for(ok, 4), docker_lab.address_for(ok, 6)} & on_wire and not denied_ips & on_wire
    assert not docker_client.containers.list(all=True, filters={"label": "egress-tui.helper"})


# -- the screen, in a real terminal ------------------------------------------------------

def test_tui_attached_by_name_shows_hosts(docker_lab, client_ctr, tmux_session):
    t = tmux_session([EGRESS, client_ctr.name, "--preset", "anthropic"])
    t.wait_for(client_ctr.name, "netns (host)", "capturing")
    traffic(docker_lab, client_ctr, "tui")
    screen = t.wait_for("split-tui.test", "alpha-tui.test", "plain-tui.test", "quic-tui.test",
                        "⊘ tui.blackholed.test")
    del screen
    t.wait_line("quic-tui.test", "dns,quic", "denied")
    t.wait_line("tui.blackholed.test", "unanswered", "blocked")


def test_tui_picker_then_stop_and_restart(docker_lab, client_ctr, tmux_session):
    t = tmux_session([EGRESS])
    t.wait_for("Pick a running container", client_ctr.name)
    # keys sent within milliseconds of the first frame were lost (the filter showed "nt" of
    # "/-client"): type again until the filter holds them all, as a user would
    deadline = time.monotonic() + 30
    while not any(ln.startswith("▊  -client ") for ln in t.text().splitlines()):
        assert time.monotonic() < deadline, f"the filter never took the keys:\n{t.text()}"
        t.keys("/")
        t.keys("C-u")
        for ch in "-client":
            t.keys(ch)
        time.sleep(0.5)
    t.keys("Enter")                 # one match left: enter attaches
    t.wait_for("netns (host)", "capturing")
    traffic(docker_lab, client_ctr, "pick")
    t.wait_for("alpha-pick.test")
    client_ctr.stop(timeout=1)
    t.wait_for("stopped", timeout=20)
    client_ctr.start()
    client_ctr.reload()
    docker_lab._confine(client_ctr.attrs["State"]["Pid"])   # a new namespace: routes again
    docker_lab.nsenter(["ethtool", "-K", "eth0", "tso", "off", "gso", "off"], pid=client_ctr.attrs["State"]["Pid"])
    t.wait_for("capturing", timeout=20)
    time.sleep(1.5)
    done = docker_lab.exec(["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "https://after-restart.test/"],
                           container=client_ctr)
    assert done.stdout == "200", done
    screen = t.wait_for("after-restart.test", "alpha-pick.test")
    assert "drops 0" in screen


def test_not_root_gets_a_clear_message(client_ctr, tmp_path):
    """As an ordinary user: no Docker socket access, and no namespace to enter."""
    drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
    r = subprocess.run([*drop, EGRESS, "report", "--container", client_ctr.name, "--duration", "1"],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 2, r
    assert "no permission to talk to Docker" in r.stderr and "Traceback" not in r.stderr


def test_firewall_through_a_helper_container(docker_lab, client_ctr, docker_client):
    """Where the host cannot enter the namespace: the same rules, through a helper that shares it."""
    from tests.dockerlab.images import ensure_fw_image
    image = ensure_fw_image(docker_client).tags[0]
    name = client_ctr.name
    common = ["--method", "helper", "--helper-image", image]
    r = subprocess.run([EGRESS, "firewall", "apply", name, "--preset", "bedrock:ap-northeast-1", *common],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "check denied  example.com" in r.stdout and "[ok]" in r.stdout
    ok = docker_lab.exec(["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "--connect-timeout", "2",
                          "https://bedrock-runtime.ap-northeast-1.amazonaws.com/"], container=client_ctr)
    assert ok.stdout == "200"
    denied = docker_lab.exec(["curl", "-sk", "--connect-timeout", "2", "https://helper-denied.test/"],
                             container=client_ctr)
    assert denied.returncode != 0
    st = json.loads(subprocess.run([EGRESS, "firewall", "status", name, "--format", "json", *common],
                                   capture_output=True, text=True, timeout=60).stdout)
    assert st["on"] and st["dropped_packets"]["4"] > 0
    r = subprocess.run([EGRESS, "firewall", "remove", name, *common], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "removed" in r.stdout
    assert docker_lab.exec(["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "https://helper-denied.test/"],
                           container=client_ctr).stdout == "200"
    assert not docker_client.containers.list(all=True, filters={"label": "egress-tui.helper"})


# -- proxy-only, from the container's own proxy settings ----------------------------------------

PROXY_SECRET = "lab-proxy-secret"


@pytest.fixture(scope="module")
def proxied_ctr(docker_lab):
    """A container told to use a proxy (its environment, as the engine keeps it): the lab sink's
    TLS port 8443 on pxy.test's address stands in for the proxy."""
    return docker_lab.add_container(SINK_TAG, "proxied", environment={
        "HTTPS_PROXY": f"http://lab-user:{PROXY_SECRET}@pxy.test:8443", "no_proxy": "localhost,direct.test"})


def test_firewall_proxy_only_from_the_container_s_environment(docker_lab, proxied_ctr, client_ctr):
    def egress(*args):
        return subprocess.run([EGRESS, "firewall", *args], capture_output=True, text=True, timeout=120)

    def code(url: str) -> str:
        # straight there: the sink only stands in for the proxy's address and port, it is no proxy
        return docker_lab.exec(["curl", "-sk", "--noproxy", "*", "-o", "/dev/null", "-w", "%{http_code}",
                                "--connect-timeout", "2", url], container=proxied_ctr, timeout=15).stdout

    name = proxied_ctr.name
    try:
        r = egress("apply", client_ctr.name, "--proxy-only")          # no proxy configured there
        assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
        assert f"{client_ctr.name} has no proxy configured: set HTTPS_PROXY" in r.stderr
        r = egress("apply", name, "--proxy-only", "--proxy", "http://nxdomain.test:3128")
        assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
        assert "nxdomain.test does not resolve through the container's DNS" in r.stderr
        assert "firewall on " + name + ": off" in egress("status", name).stdout   # nothing applied
        assert code("https://other.test:8443/") == "200"

        r = egress("apply", name, "--proxy-only")
        out = r.stdout + r.stderr
        assert r.returncode == 0, out
        assert PROXY_SECRET not in out
        assert f"proxy only: http://***@pxy.test:8443 ({docker_lab.address_for('pxy.test')}" in r.stdout
        assert "check in set  pxy.test" in r.stdout and "check allowed pxy.test" in r.stdout
        assert "FAILED" not in r.stdout
        assert "no_proxy sends direct.test direct: proxy-only blocks them" in r.stderr
        assert code("https://pxy.test:8443/") == "200"                  # the proxy
        assert code("https://pxy.test/") != "200"                       # its address, another port
        assert code("https://other.test:8443/") != "200"                # another address
        st = egress("status", name)
        assert "mode: proxy only: http://***@pxy.test:8443" in st.stdout and PROXY_SECRET not in st.stdout
        assert "addresses in sets: IPv4 1, IPv6 1" in st.stdout and "dropped: IPv4 " in st.stdout
        data = json.loads(egress("status", name, "--format", "json").stdout)
        assert data["on"] and data["mode"] == "proxy" and data["proxies"] == ["http://***@pxy.test:8443"]
    finally:
        assert egress("remove", name).returncode == 0
    assert code("https://other.test:8443/") == "200"

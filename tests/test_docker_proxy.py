"""Proxies, live: egress-tui captures a real container whose curl, Python and Claude Code go
through the Docker lab's real Squid, Dante and ``ssh -D`` (tests/dockerlab/README.md, "Proxies
in the lab"), and its rows say what a user needs to know: the name spoken inside each tunnel,
the proxy it went through, the destination asked of the proxy, fronting, the proxy's refusals,
and traffic that goes around a configured proxy.

One lab for the module. Each capture is the CLI a user runs (``egress-tui report --container``,
``egress-tui learn``); it starts when the CLI says "capturing" and ends with Ctrl-C (SIGINT) once
the traffic is done, so nothing waits on a guessed duration. The saved capture is read again
offline, and by tshark, and both must agree with what was seen live.
"""

from __future__ import annotations

import base64
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from egress_tui.core.hosts import is_address
from tests.dockerlab.images import TARGET_TAG
from tests.lab import proxyd
from tests.test_proxy_tunnels import tshark_names

pytestmark = [pytest.mark.docker, pytest.mark.root]

EGRESS = str(Path(sys.executable).with_name("egress-tui"))
SQUID = f"http://proxy:{proxyd.HTTP_PORT}"
CREDS = f"{proxyd.USER}:{proxyd.PASSWORD}"

# A client that speaks CONNECT itself, then TLS through the tunnel: $1 the proxy host, $2 the name
PY_CONNECT = r"""
import socket, ssl, sys
proxy, name = sys.argv[1], sys.argv[2]
s = socket.create_connection((proxy, 3128), timeout=5)
s.sendall(b"CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n" % (name.encode(), name.encode()))
head = b""
while not head.endswith(b"\r\n\r\n"):
    head += s.recv(1)
print(head.split(b"\r\n")[0].decode())
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
with ctx.wrap_socket(s, server_hostname=name) as t:
    t.sendall(b"GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % name.encode())
    print(t.recv(100).split(b"\r\n")[0].decode())
"""

# What the target runs, in this order: (row it should make, argv). One name per case, so each
# row holds one tunnel.
TRAFFIC = [
    ("api.anthropic.com", ["curl", "-sk", "-x", SQUID, "https://api.anthropic.com/"]),
    # fronting: CONNECT api.anthropic.com:443, then a ClientHello for evil.test
    ("evil.test", ["curl", "-sk", "-x", SQUID, "--connect-to", "evil.test:443:api.anthropic.com:443",
                   "https://evil.test/"]),
    ("evil-socks.test", ["curl", "-sk", "-x", f"socks5h://proxy:{proxyd.SOCKS_PORT}",
                         "--connect-to", "evil-socks.test:443:api.anthropic.com:443", "https://evil-socks.test/"]),
    # socks5 and socks4: curl resolves the name and gives Dante an address
    ("s5.test", ["curl", "-sk", "-x", f"socks5://proxy:{proxyd.SOCKS_PORT}", "https://s5.test/"]),
    ("s4.test", ["curl", "-sk", "-x", f"socks4://proxy:{proxyd.SOCKS_PORT}", "https://s4.test/"]),
    ("s4a.test", ["curl", "-sk", "-x", f"socks4a://proxy:{proxyd.SOCKS4A_PORT}", "https://s4a.test/"]),
    ("s5auth.test", ["curl", "-sk", "-x", f"socks5h://{CREDS}@proxy:{proxyd.SOCKS_AUTH_PORT}",
                     "https://s5auth.test/"]),
    ("py-connect.test", ["python3", "-c", PY_CONNECT, "proxy", "py-connect.test"]),
    ("plain.test", ["curl", "-s", "-x", SQUID, "http://plain.test/"]),
    # 407, then the same CONNECT with the password, on the same connection: 200
    ("auth.test", ["curl", "-sk", "--proxy-anyauth", "-U", CREDS, "-x", f"http://proxy:{proxyd.HTTP_AUTH_PORT}",
                   "https://auth.test/"]),
    # Squid allows CONNECT to 443 and 8443 only: 403
    ("x.test", ["curl", "-sk", "-x", SQUID, "https://x.test:22/"]),
]

# The honest ones; evil.test, evil-socks.test and x.test are left out
ALLOWED = ["api.anthropic.com", "s5.test", "s4.test", "s4a.test", "s5auth.test", "py-connect.test",
           "plain.test", "auth.test"]

# row -> (proxy port, kind, target (None: an address of the name), fronting, verdict)
EXPECTED = {
    "api.anthropic.com": (proxyd.HTTP_PORT, "connect", "api.anthropic.com:443", None, "allowed"),
    "evil.test": (proxyd.HTTP_PORT, "connect", "api.anthropic.com:443",
                  "HTTP CONNECT to api.anthropic.com:443 carried TLS for evil.test", "denied, fronting"),
    "evil-socks.test": (proxyd.SOCKS_PORT, "socks5", "api.anthropic.com:443",
                        "SOCKS5 to api.anthropic.com:443 carried TLS for evil-socks.test", "denied, fronting"),
    "s5.test": (proxyd.SOCKS_PORT, "socks5", None, None, "allowed"),
    "s4.test": (proxyd.SOCKS_PORT, "socks4", None, None, "allowed"),
    "s4a.test": (proxyd.SOCKS4A_PORT, "socks4a", "s4a.test:443", None, "allowed"),
    "s5auth.test": (proxyd.SOCKS_AUTH_PORT, "socks5", "s5auth.test:443", None, "allowed"),
    "py-connect.test": (proxyd.HTTP_PORT, "connect", "py-connect.test:443", None, "allowed"),
    "plain.test": (proxyd.HTTP_PORT, "http", "plain.test:80", None, "allowed"),
    "auth.test": (proxyd.HTTP_AUTH_PORT, "connect", "auth.test:443", None, "allowed"),
    "x.test": (proxyd.HTTP_PORT, "connect", "x.test:22", None, "denied, blocked"),
}

# tshark knows 3128 as HTTP and 1080 as SOCKS; the other proxy ports it has to be told
DECODE_AS = ["-d", f"tcp.port=={proxyd.HTTP_AUTH_PORT},http", "-d", f"tcp.port=={proxyd.SOCKS_AUTH_PORT},socks",
             "-d", f"tcp.port=={proxyd.SOCKS4A_PORT},socks"]


class Capture:
    """``egress-tui report --container NAME ...`` running; ``stop()`` is Ctrl-C."""

    def __init__(self, container: str, *args: str):
        # --duration only caps a run that something went wrong with
        self.p = subprocess.Popen([EGRESS, "report", "--container", container, "--duration", "90",
                                   "--format", "json", *args],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        said = []
        for line in self.p.stderr:   # "capturing" once the capture listens: traffic may start
            said.append(line)
            if "capturing" in line:
                break
        self.said = said
        if not any("capturing" in ln for ln in said):
            self.p.kill()
            raise AssertionError(f"the capture did not start: {''.join(said)}{self.p.communicate()[1]}")

    def stop(self) -> tuple[int, dict, str, str]:
        self.p.send_signal(signal.SIGINT)
        out, err = self.p.communicate(timeout=60)
        err = "".join(self.said) + err
        assert out, err
        return self.p.returncode, json.loads(out), out, err


def by_name(report: dict) -> dict[str, dict]:
    return {h["name"]: h for h in report["hosts"]}


def proxy_endpoints(lab, port: int) -> set[str]:
    """The proxy as egress-tui writes an endpoint; the client picks IPv4 or IPv6 for "proxy"."""
    return {f"{lab.proxy_ip}:{port}"} | ({f"[{lab.proxy_ip6}]:{port}"} if lab.ipv6 else set())


def squid_lines(lab, pattern: str, timeout: float = 5.0) -> list[str]:
    """Access-log lines matching ``pattern`` (Squid writes a tunnel's line when it closes)."""
    deadline = time.monotonic() + timeout
    while True:
        log = lab.squid_access_log()
        lines = [ln for ln in log.splitlines() if re.search(pattern, ln)]
        if lines:
            return lines
        if time.monotonic() > deadline:
            raise AssertionError(f"no {pattern!r} in Squid's access log:\n{log}")
        time.sleep(0.1)


# -- 1. curl, Python and every kind of proxy, from one container --------------------------------

@pytest.fixture(scope="module")
def live(docker_proxy_lab, tmp_path_factory):
    lab = docker_proxy_lab
    tmp = tmp_path_factory.mktemp("proxy")
    allow = tmp / "allow.txt"
    allow.write_text("".join(f"{n}\n" for n in ALLOWED))
    pcap = tmp / "proxies.pcapng"
    t0 = time.monotonic()
    cap = Capture(lab.target.name, "--save-pcap", str(pcap), "--allow", str(allow), "--fail-on-denied")
    done = {name: lab.exec(argv, timeout=20) for name, argv in TRAFFIC}
    rc, report, out, err = cap.stop()
    return {"lab": lab, "rc": rc, "report": report, "hosts": by_name(report), "out": out, "err": err,
            "done": done, "pcap": pcap, "allow": allow, "seconds": time.monotonic() - t0}


def test_the_traffic_got_through_the_proxies(live):
    done = live["done"]
    for name, r in done.items():
        if name == "x.test":
            assert r.returncode == 56, r        # curl: CONNECT tunnel failed, response 403
        elif name == "py-connect.test":
            assert r.stdout.splitlines() == ["HTTP/1.1 200 Connection established", "HTTP/1.1 200 OK"], r
        else:
            assert (r.returncode, r.stdout) == (0, "ok\n"), (name, r)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_each_tunnel_is_a_row_named_by_what_it_carried(live, name):
    lab = live["lab"]
    port, kind, target, fronting, verdict = EXPECTED[name]
    h = live["hosts"][name]
    assert h["connections"] == 1, h
    assert set(h["proxies"]) <= proxy_endpoints(lab, port) and len(h["proxies"]) == 1, h["proxies"]
    if target is None:       # the client resolved the name and gave the proxy an address
        assert h["targets"] in ([f"{lab.address_for(name)}:443"], [f"[{lab.address_for(name, 6)}]:443"]), h
        assert h["addresses"] == [h["targets"][0].rpartition(":")[0].strip("[]")]   # that is the destination
        assert "dns" in h["via"]
    else:
        assert h["targets"] == [target], h
        assert h["addresses"] == []       # the proxy's address is not the destination's
    assert h["ports"] == [int((target or ":443").rpartition(":")[2])]
    assert h["fronting"] == ([fronting] if fronting else []), h
    assert h["verdict"] == verdict
    assert h["allowed"] is (name in ALLOWED)
    assert h["hidden"] == 0 and h["bypass"] == 0   # no proxy configured in this container
    (t,) = h["tunnels"]
    assert t["kind"] == kind and t["target"] == h["targets"][0]
    if name == "x.test":
        assert h["via"] == ["proxy"] and h["outcomes"] == {"refused": 1} and h["blocked"]
        assert (t["reply"], t["open"], t["refused"]) == ("403", False, "proxy answered 403")
        return
    assert h["outcomes"] == {"closed": 1} and not h["blocked"]
    assert set(h["via"]) - {"dns"} == ({"proxy", "http"} if kind == "http" else {"proxy", "tls"})
    assert t["inner"] == name and t["inner_by"] == ("http" if kind == "http" else "sni")
    if kind != "http":   # an absolute-form request's answer is the destination's, not the proxy's
        assert t["open"] and t["refused"] is None
        assert t["reply"] == {"connect": "200", "socks5": "SOCKS5 0"}.get(kind, "SOCKS4 0x5a")
    assert t["credentials_sent"] is (name in ("s5auth.test", "auth.test"))


def test_no_other_row_was_contacted(live):
    lab = live["lab"]
    contacted = {n for n, h in live["hosts"].items() if h["connections"]}
    # a connection to the proxy that carried nothing (happy eyeballs: the other address family
    # tried, then dropped) keeps the name it was looked up as: the proxy's own row
    extra = live["hosts"].get("proxy")
    if extra and extra["connections"]:
        assert extra["via"] == ["dns"] and set(extra["addresses"]) <= {lab.proxy_ip, lab.proxy_ip6}, extra
        contacted.discard("proxy")
    assert contacted == set(EXPECTED)


def test_proxy_credentials_appear_nowhere(live):
    basic = base64.b64encode(CREDS.encode()).decode()
    for text in (live["out"], live["err"]):
        assert proxyd.PASSWORD not in text and basic not in text


def test_fail_on_denied_names_the_fronting_and_the_refused(live):
    assert live["rc"] == 3, live["err"]
    lines = [ln for ln in live["err"].splitlines() if "outside the allowlist" in ln]
    assert lines == ["egress-tui: 3 host(s) outside the allowlist were contacted: "
                     "evil.test (asked of the proxy as api.anthropic.com:443), "
                     "evil-socks.test (asked of the proxy as api.anthropic.com:443), x.test"]
    fronting = [ln for ln in live["err"].splitlines() if "(fronting)" in ln]
    assert len(fronting) == 1 and fronting[0].startswith("egress-tui: 2 host(s) reached through a proxy tunnel")


def test_saved_capture_gives_the_same_rows_offline(live):
    r = subprocess.run([EGRESS, "report", "--pcap", str(live["pcap"]), "--format", "json",
                        "--allow", str(live["allow"])], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    live_hosts = live["report"]["hosts"]
    # the live capture also knew which process opened each connection; a file cannot
    assert any(h["processes"] for h in live_hosts)
    assert [without_processes(h) for h in json.loads(r.stdout)["hosts"]] == [without_processes(h) for h in live_hosts]


def without_processes(h: dict) -> dict:
    """A host's JSON row without what only a live capture can know: the processes."""
    out = {k: v for k, v in h.items() if k not in ("processes", "process_unknown", "process_chains")}
    out["tunnels"] = [{k: v for k, v in t.items() if k != "process"} for t in h["tunnels"]]
    return out


def test_the_target_alone_allowed_does_not_let_fronting_through(live):
    """With only api.anthropic.com allowed, the tunnel that asked Squid for it but spoke TLS for
    evil.test is denied."""
    allow = live["allow"].with_name("only-api.txt")
    allow.write_text("api.anthropic.com\n")
    r = subprocess.run([EGRESS, "report", "--pcap", str(live["pcap"]), "--format", "json", "--allow", str(allow),
                        "--fail-on-denied"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 3
    denied = [ln for ln in r.stderr.splitlines() if "outside the allowlist" in ln]
    # evil.test is denied although its target was allowed; api.anthropic.com itself is not denied
    assert len(denied) == 1 and "evil.test (asked of the proxy as api.anthropic.com:443)" in denied[0]
    listed = denied[0].split("contacted: ", 1)[1]
    assert "api.anthropic.com," not in listed.replace("api.anthropic.com:443", "")
    hosts = by_name(json.loads(r.stdout))
    assert hosts["evil.test"]["verdict"] == "denied, fronting"
    assert hosts["api.anthropic.com"]["verdict"] == "allowed"


def test_names_agree_with_tshark(live):
    ours = set()
    for h in live["report"]["hosts"]:
        if h["connections"]:
            ours.add(h["name"])
            ours.update(t.rpartition(":")[0] for t in h["targets"])
    ours = {n for n in ours if not is_address(n.strip("[]"))}
    assert tshark_names(str(live["pcap"]), *DECODE_AS) == ours


def test_squid_saw_what_the_rows_say(live):
    lab = live["lab"]
    squid_lines(lab, r"TCP_TUNNEL/200 \d+ CONNECT api\.anthropic\.com:443 ")  # the fronting one too
    squid_lines(lab, r"TCP_DENIED/407 \d+ CONNECT auth\.test:443 - ")
    squid_lines(lab, rf"TCP_TUNNEL/200 \d+ CONNECT auth\.test:443 {proxyd.USER} ")
    squid_lines(lab, r"TCP_DENIED/403 \d+ CONNECT x\.test:22 ")
    assert not re.search(r"CONNECT evil\.test", lab.squid_access_log())   # Squid never saw that name


# -- 2. and 3. a container told to use the proxy ----------------------------------------------

@pytest.fixture(scope="module")
def proxied(docker_proxy_lab):
    """The Claude Code image with HTTPS_PROXY and NO_PROXY in its environment, as a company
    setup would have it: curl and Claude Code read them."""
    return docker_proxy_lab.add_container(TARGET_TAG, "proxied",
                                          environment={"HTTPS_PROXY": SQUID, "NO_PROXY": "localhost"})


def test_claude_code_goes_through_squid(docker_proxy_lab, proxied):
    lab = docker_proxy_lab
    r = subprocess.run([EGRESS, "learn", proxied.name, "--provider", "anthropic",
                        "-e", "ANTHROPIC_API_KEY=sk-ant-egress-tui-test", "--timeout", "6",
                        "--format", "json", "--quiet"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "sk-ant-egress-tui-test" not in r.stdout + r.stderr
    hosts = by_name(json.loads(r.stdout))
    api = hosts["api.anthropic.com"]
    assert {"proxy", "tls"} <= set(api["via"]), api
    assert api["proxies"] and set(api["proxies"]) <= proxy_endpoints(lab, proxyd.HTTP_PORT), api
    assert "api.anthropic.com:443" in api["targets"] and api["addresses"] == []
    assert api["outcomes"].get("closed") or api["outcomes"].get("connected")
    assert api["fronting"] == [] and api["bypass"] == 0
    # everything else Claude Code reached went through Squid too; connections to the proxy
    # that carried nothing (a second address family tried and dropped) are the proxy's own row
    for name, h in hosts.items():
        if not h["connections"]:
            continue
        assert "proxy" in h["via"] or set(h["addresses"]) <= {lab.proxy_ip, lab.proxy_ip6}, h
        assert h["bypass"] == 0, h
    ips = "|".join(re.escape(a) for a in (proxied.attrs["NetworkSettings"]["Networks"][lab.name]["IPAddress"],
                                          proxied.attrs["NetworkSettings"]["Networks"][lab.name]["GlobalIPv6Address"])
                   if a)
    squid_lines(lab, rf" (?:{ips}) TCP_TUNNEL/200 \d+ CONNECT api\.anthropic\.com:443 ")


def test_traffic_around_the_configured_proxy_is_bypass(docker_proxy_lab, proxied):
    """The container says HTTPS_PROXY: a connection straight to a destination is a finding. (The
    engine learns the container's proxy settings from Inspection: engine.set_proxy_config.)"""
    lab = docker_proxy_lab
    cap = Capture(proxied.name)
    direct = lab.exec(["curl", "--noproxy", "*", "-sk", "https://direct.test/"], container=proxied)
    via = lab.exec(["curl", "-sk", "https://via-proxy.test/"], container=proxied)   # HTTPS_PROXY
    rc, report, _, err = cap.stop()
    assert rc == 0, err
    assert (direct.returncode, direct.stdout, via.returncode, via.stdout) == (0, "ok\n", 0, "ok\n")
    hosts = by_name(report)
    d, v = hosts["direct.test"], hosts["via-proxy.test"]
    assert d["bypass"] == 1 and "proxy bypass" in d["verdict"], d
    assert d["proxies"] == [] and "proxy" not in d["via"]
    assert v["bypass"] == 0 and "proxy bypass" not in v["verdict"], v
    assert {"proxy", "tls"} <= set(v["via"]) and v["targets"] == ["via-proxy.test:443"]

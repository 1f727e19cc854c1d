"""The Docker lab's proxies: a real Squid and real SOCKS servers between the target and the sink.

Everything is sent from the target container with its own curl, through the
``proxy`` container (``lab.add_proxies()``, tests/lab/proxyd.py); the sink
answers "ok".  One lab for the whole module.  Needs root (skipped otherwise);
as root it builds ``egress-tui-test/proxy`` when missing and never skips.
"""

from __future__ import annotations

import re
import time

import pytest

from tests.lab import proxyd

pytestmark = [pytest.mark.docker, pytest.mark.root]

# body, then what curl saw: status, the proxy's answer to CONNECT, the peer it talked to
_W = ["-w", "\n%{http_code} %{http_connect} %{remote_ip}"]


def _curl(lab, *args: str, timeout: float = 15):
    r = lab.exec(["curl", "-sS", "-m", "10", *_W, *args], timeout=timeout)
    body, _, status = r.stdout.rpartition("\n")
    code, connect, peer = (status.split() + ["", "", ""])[:3]
    return r, body, code, connect, peer


def _sink(name: str, lab) -> str:
    """Regex for the lab addresses of ``name`` (Squid picks IPv4 or IPv6)."""
    addrs = [lab.address_for(name)] + ([lab.address_for(name, 6)] if lab.ipv6 else [])
    return "(?:" + "|".join(re.escape(a) for a in addrs) + ")"


def _squid_line(lab, pattern: str, timeout: float = 5.0) -> str:
    """The access-log line matching ``pattern`` (Squid writes a tunnel's line when it closes)."""
    deadline = time.monotonic() + timeout
    while True:
        log = lab.squid_access_log()
        for line in log.splitlines():
            if re.search(pattern, line):
                return line
        if time.monotonic() > deadline:
            raise AssertionError(f"no {pattern!r} in Squid's access log:\n{log}")
        time.sleep(0.1)


def test_https_through_squid_reaches_the_sink(docker_proxy_lab):
    lab = docker_proxy_lab
    r, body, code, connect, peer = _curl(lab, "-k", "-x", lab.proxy_url(), "https://api.anthropic.com/")
    assert r.returncode == 0, r
    assert (body, code, connect, peer) == ("ok\n", "200", "200", lab.proxy_ip)
    # Squid resolved the name itself, through the lab DNS, and went to the sink's address
    _squid_line(lab, rf"^\S+\s+\d+ {re.escape(lab.target_ip)} TCP_TUNNEL/200 \d+ CONNECT api\.anthropic\.com:443 - "
                     rf"HIER_DIRECT/{_sink('api.anthropic.com', lab)} ")


def test_the_proxy_is_reachable_by_its_name(docker_proxy_lab):
    lab = docker_proxy_lab
    r, body, code, connect, peer = _curl(lab, "-k", "-x", f"http://proxy:{proxyd.HTTP_PORT}",
                                         "https://statsig.anthropic.com:8443/")
    assert r.returncode == 0, r
    assert (body, code, connect) == ("ok\n", "200", "200")
    assert peer in {lab.proxy_ip, lab.proxy_ip6}


def test_plain_http_in_absolute_form(docker_proxy_lab):
    lab = docker_proxy_lab
    r, body, code, connect, peer = _curl(lab, "-x", lab.proxy_url(), "http://example.test/")
    assert r.returncode == 0, r
    assert (body, code, connect, peer) == ("ok\n", "200", "000", lab.proxy_ip)  # no CONNECT: a proxied GET
    _squid_line(lab, rf" {re.escape(lab.target_ip)} TCP_MISS/200 \d+ GET http://example\.test/ - "
                     rf"HIER_DIRECT/{_sink('example.test', lab)} ")


@pytest.mark.parametrize("url,method,target", [
    ("https://x.test:22/", "CONNECT", "x.test:22"),          # CONNECT only to 443 and 8443
    ("http://example.test:8080/", "GET", "http://example.test:8080/"),  # plain HTTP only to 80
])
def test_squid_refuses_other_ports(docker_proxy_lab, url, method, target):
    lab = docker_proxy_lab
    r, _, code, connect, _ = _curl(lab, "-k", "-x", lab.proxy_url(), url)
    if method == "CONNECT":
        assert (r.returncode, connect) == (56, "403"), r  # the tunnel was refused
        assert "CONNECT tunnel failed, response 403" in r.stderr
    else:
        assert (r.returncode, code) == (0, "403"), r
    _squid_line(lab, rf"TCP_DENIED/403 \d+ {method} {re.escape(target)} ")


def test_proxy_auth_407_then_200(docker_proxy_lab):
    lab = docker_proxy_lab
    url = f"http://{lab.proxy_ip}:{proxyd.HTTP_AUTH_PORT}"
    r, body, code, connect, _ = _curl(lab, "-v", "-k", "--proxy-anyauth", "-U",
                                      f"{proxyd.USER}:{proxyd.PASSWORD}", "-x", url,
                                      "https://api.anthropic.com/")
    assert r.returncode == 0, r
    assert (body, code, connect) == ("ok\n", "200", "200")
    answers = re.findall(r"^< (HTTP/1\.1 \d+ [^\r\n]*)", r.stderr, re.MULTILINE)
    assert [a.split()[1] for a in answers[:2]] == ["407", "200"], answers
    assert 'Proxy-Authenticate: Basic realm="egress-tui lab proxy"' in r.stderr
    _squid_line(lab, r"TCP_DENIED/407 \d+ CONNECT api\.anthropic\.com:443 - ")
    _squid_line(lab, rf"TCP_TUNNEL/200 \d+ CONNECT api\.anthropic\.com:443 {proxyd.USER} ")


@pytest.mark.parametrize("creds", [None, f"{proxyd.USER}:wrong"])
def test_proxy_auth_refuses_without_the_password(docker_proxy_lab, creds):
    lab = docker_proxy_lab
    args = ["-k", "-x", f"http://{lab.proxy_ip}:{proxyd.HTTP_AUTH_PORT}"]
    if creds:
        args += ["--proxy-anyauth", "-U", creds]
    r, _, _, connect, _ = _curl(lab, *args, "https://api.anthropic.com/")
    assert (r.returncode, connect) == (56, "407"), r


@pytest.mark.parametrize("scheme,auth,port", [
    ("socks5h", False, proxyd.SOCKS_PORT),       # the name goes to Dante, which resolves it
    ("socks5", False, proxyd.SOCKS_PORT),        # curl resolves, Dante gets an address
    ("socks4", False, proxyd.SOCKS_PORT),
    ("socks4a", False, proxyd.SOCKS4A_PORT),     # OpenSSH's ssh -D (Dante has no SOCKS4a)
    ("socks5h", True, proxyd.SOCKS_AUTH_PORT),   # username/password (RFC 1929)
])
def test_socks_reaches_the_sink(docker_proxy_lab, scheme, auth, port):
    lab = docker_proxy_lab
    url = lab.proxy_url(scheme, auth=auth)
    assert url.endswith(f":{port}")
    r, body, code, _, peer = _curl(lab, "-k", "-x", url, "https://api.anthropic.com/")
    assert r.returncode == 0, r
    assert (body, code, peer) == ("ok\n", "200", lab.proxy_ip)
    if port != proxyd.SOCKS4A_PORT:  # Dante logs who it let through, and to where
        who = f"username%{proxyd.USER}@" if auth else ""
        logs = lab.proxy.logs().decode(errors="replace")
        assert re.search(rf"pass\(1\): tcp/connect \[: {who}{re.escape(lab.target_ip)}\.\d+ "
                         rf"{re.escape(lab.proxy_ip)}\.{port} -> ", logs), logs[-2000:]


@pytest.mark.parametrize("creds", [None, f"{proxyd.USER}:wrong"])
def test_socks_auth_port_wants_the_password(docker_proxy_lab, creds):
    lab = docker_proxy_lab
    host = f"{creds}@{lab.proxy_ip}" if creds else lab.proxy_ip
    r, *_ = _curl(lab, "-k", "-x", f"socks5h://{host}:{proxyd.SOCKS_AUTH_PORT}", "https://api.anthropic.com/")
    assert r.returncode == 97, r  # CURLE_PROXY: the SOCKS handshake failed


def test_dante_has_no_socks4a(docker_proxy_lab):
    """Why socks4a goes to the ssh -D port: Dante takes 0.0.0.1 for the address."""
    lab = docker_proxy_lab
    r, *_ = _curl(lab, "-k", "-x", f"socks4a://{lab.proxy_ip}:{proxyd.SOCKS_PORT}", "https://api.anthropic.com/")
    assert r.returncode == 97, r


def test_nothing_gets_out(docker_proxy_lab):
    """The target still has no route out, the proxy container neither: asked for an
    outside address, Squid and Dante fail too."""
    lab = docker_proxy_lab
    t0 = time.monotonic()
    r = lab.exec(["curl", "-sSv", "-k", "-m", "10", "https://1.1.1.1/"])
    assert r.returncode == 7 and "connect fail for 1.1.1.1: Network is unreachable" in r.stderr, r
    assert time.monotonic() - t0 < 3  # at once, not a time-out
    pid = lab.proxy.attrs["State"]["Pid"]
    assert lab.nsenter(["ip", "route", "show", "default"], pid=pid).stdout.strip() == ""
    assert lab.nsenter(["ip", "-6", "route", "show", "default"], pid=pid).stdout.strip() == ""
    r, _, _, connect, _ = _curl(lab, "-k", "-x", lab.proxy_url(), "https://1.1.1.1/")
    assert (r.returncode, connect) == (56, "503"), r  # Squid could not connect
    _squid_line(lab, rf" {re.escape(lab.target_ip)} \w+/503 \d+ CONNECT 1\.1\.1\.1:443 ")
    r, *_ = _curl(lab, "-k", "-x", lab.proxy_url("socks5h"), "https://1.1.1.1/")
    assert r.returncode == 97, r
    assert "connect(2) to 1.1.1.1.443 from" in lab.proxy.logs().decode(errors="replace")

"""Tunnels through proxies, offline: the destination a client asked a proxy for, the name it
then spoke inside, and what the proxy answered. Captures from tests/tunnelgen.py; each is also
read by tshark, whose names must match ours."""

from __future__ import annotations

import json
import shutil
import subprocess
from urllib.parse import urlsplit

import pytest

from egress_tui.core.allowlist import Allowlist, parse_entry
from egress_tui.core.engine import Engine, analyze_file
from egress_tui.core.proxy import from_urls
from egress_tui.core.report import host_rows, render
from tests import tunnelgen as tg
from tests.pcapgen import Conversation


def rows_of(conv: Conversation, tmp_path, allow: list[str] = (), proxy: list[str] = ()) -> dict:
    path = tg.write(conv, tmp_path / "t.pcap")
    eng = Engine()
    if proxy:
        eng.set_proxy_config(from_urls(proxy))
    analyze_file(path, eng)
    al = Allowlist([parse_entry(a) for a in allow], ["test"] if allow else [])
    return {r.name: r for r in host_rows(eng, al)}


@pytest.mark.parametrize("cuts", [1, 3, 9])
def test_connect_fronting_names_the_inner_sni_and_is_denied(tmp_path, cuts):
    conv = Conversation()
    tg.http_connect(conv, 40001, "api.anthropic.com:443", "evil.test", cuts=cuts)
    rows = rows_of(conv, tmp_path, allow=["api.anthropic.com", "evil.test"])
    assert set(rows) == {"evil.test"}
    r = rows["evil.test"]
    assert {"proxy", "tls"} <= set(r.via)
    assert r.targets == ["api.anthropic.com:443"]
    assert r.proxies == ["10.0.0.2:3128"]
    assert r.fronting == ["HTTP CONNECT to api.anthropic.com:443 carried TLS for evil.test"]
    assert r.addresses == []            # the proxy is not the destination
    assert r.ports == [443]
    assert r.outcomes == {"closed": 1}
    assert r.allowed is True and "fronting" in r.verdict_text()
    # the target alone is allowed, the inner name is not: denied
    rows = rows_of(conv, tmp_path, allow=["api.anthropic.com"])
    assert rows["evil.test"].allowed is False
    assert rows["evil.test"].verdict_text().startswith("denied")
    # the inner name alone is allowed, the target is not: denied too
    rows = rows_of(conv, tmp_path, allow=["evil.test"])
    assert rows["evil.test"].allowed is False


def test_connect_without_mismatch_is_plain(tmp_path):
    conv = Conversation()
    tg.http_connect(conv, 40002, "api.anthropic.com:443", "api.anthropic.com", cuts=4)
    r = rows_of(conv, tmp_path, allow=["api.anthropic.com"])["api.anthropic.com"]
    assert r.allowed is True and r.fronting == [] and r.verdict_text() == "allowed"
    assert r.tunnels[0]["reply"] == "200" and r.tunnels[0]["open"] is True


def test_407_then_200_on_one_connection(tmp_path):
    conv = Conversation()
    tg.http_connect(conv, 40003, "api.anthropic.com:443", "api.anthropic.com",
                    replies=(tg.proxy_error(407, "Proxy Authentication Required"), tg.ESTABLISHED), cuts=2)
    r = rows_of(conv, tmp_path)["api.anthropic.com"]
    t = r.tunnels[0]
    assert t["reply"] == "200" and t["open"] and t["refused"] is None
    assert t["credentials_sent"] is True
    assert r.outcomes == {"closed": 1} and not r.blocked


def test_407_then_200_when_the_407_page_was_not_captured(tmp_path):
    """A live capture lets through only the first segment of a proxy's answer (the rest of a
    407 page stays in the kernel, see live.capture.capture_filter): the 200 after it is read."""
    conv = Conversation()
    t = tg.Tcp(conv, tg.CLIENT, 40007, tg.PROXY, 3128)
    t.send(tg.connect_head("api.anthropic.com:443"))
    page = tg.proxy_error(407, "Proxy Authentication Required")
    t.recv(page[:200])
    t.sseq += len(page) - 200           # the rest of the page never reached the capture
    t.send(tg.connect_head("api.anthropic.com:443", auth="bGFiOmxhYnBhc3M="))
    t.recv(tg.ESTABLISHED)
    data, offs = tg.hello("api.anthropic.com")
    t.send(data, offs)
    t.close()
    r = rows_of(conv, tmp_path)["api.anthropic.com"]
    assert (r.tunnels[0]["reply"], r.tunnels[0]["open"], r.tunnels[0]["refused"]) == ("200", True, None)
    assert r.outcomes == {"closed": 1} and not r.blocked


def test_407_then_200_on_a_new_connection(tmp_path):
    conv = Conversation()
    tg.http_connect(conv, 40004, "api.anthropic.com:443", None,
                    replies=(tg.proxy_error(407, "Proxy Authentication Required"),))
    tg.http_connect(conv, 40005, "api.anthropic.com:443", "api.anthropic.com")
    r = rows_of(conv, tmp_path)["api.anthropic.com"]
    assert r.outcomes == {"closed": 1, "refused": 1}
    replies = sorted((t["reply"], t["refused"] or "") for t in r.tunnels)
    assert replies == [("200", ""), ("407", "proxy answered 407 (authentication required)")]


def test_403_refused_tunnel_is_blocked(tmp_path):
    conv = Conversation()
    tg.http_connect(conv, 40006, "x.test:22", None, replies=(tg.proxy_error(403, "Forbidden"),))
    r = rows_of(conv, tmp_path, allow=["api.anthropic.com"])["x.test"]
    assert r.outcomes == {"refused": 1} and r.blocked
    assert r.ports == [22] and r.targets == ["x.test:22"]
    assert r.verdict_text() == "denied, blocked"


@pytest.mark.parametrize("form,target", [("domain", "api.anthropic.com"), ("ipv4", "198.18.1.2"),
                                         ("ipv6", "fd65:6774::7")])
def test_socks5_forms(tmp_path, form, target):
    conv = Conversation()
    tg.socks5(conv, 40010, target, 443, "inner.test", cuts=3, form=form)
    r = rows_of(conv, tmp_path)["inner.test"]
    shown = f"[{target}]:443" if ":" in target else f"{target}:443"
    assert r.targets == [shown] and r.proxies == ["10.0.0.2:1080"]
    assert {"proxy", "tls"} <= set(r.via)
    assert r.tunnels[0]["kind"] == "socks5" and r.tunnels[0]["open"]
    if form == "domain":
        assert r.fronting and r.addresses == []
    else:
        assert r.addresses == [target]  # asked of the proxy by address: that is the destination


def test_socks5_by_address_named_by_dns(tmp_path):
    """socks5:// (not socks5h): the client resolved the name itself; the address is named by
    its DNS answer, and an SNI of the same name is no mismatch."""
    conv = Conversation()
    conv.dns(tg.CLIENT, tg.RESOLVER, "api.anthropic.com", [("api.anthropic.com", 1, "198.18.1.2")])
    tg.socks5(conv, 40011, "198.18.1.2", 443, None, form="ipv4")
    tg.socks5(conv, 40012, "198.18.1.2", 443, "api.anthropic.com", form="ipv4")
    rows = rows_of(conv, tmp_path, allow=["api.anthropic.com"])
    r = rows["api.anthropic.com"]
    assert r.connections == 2 and "198.18.1.2" not in rows
    assert r.fronting == [] and r.targets == ["198.18.1.2:443"]
    assert r.allowed is True and r.verdict_text() == "allowed"   # an address target is no denial


def test_socks5_by_an_address_dns_gave_another_name_is_fronting(tmp_path):
    conv = Conversation()
    conv.dns(tg.CLIENT, tg.RESOLVER, "api.anthropic.com", [("api.anthropic.com", 1, "198.18.1.2")])
    tg.socks5(conv, 40015, "198.18.1.2", 443, "evil.test", form="ipv4")
    r = rows_of(conv, tmp_path)["evil.test"]
    assert r.fronting == ["SOCKS5 to 198.18.1.2:443 carried TLS for evil.test"]


def test_socks5_credentials_are_never_kept(tmp_path):
    conv = Conversation()
    tg.socks5(conv, 40013, "api.anthropic.com", 443, "api.anthropic.com", credentials=("lab", "s3cretpw"))
    rows = rows_of(conv, tmp_path)
    r = rows["api.anthropic.com"]
    assert r.tunnels[0]["credentials_sent"] and r.tunnels[0]["open"]
    for fmt in ("json", "csv", "markdown", "table"):
        assert "s3cretpw" not in render(list(rows.values()), fmt)


def test_socks5_refusal(tmp_path):
    conv = Conversation()
    tg.socks5(conv, 40014, "denied.test", 443, None, rep=2)
    r = rows_of(conv, tmp_path)["denied.test"]
    assert r.blocked and r.tunnels[0]["refused"] == "SOCKS5 reply 2 (not allowed by ruleset)"


@pytest.mark.parametrize("target", ["api.anthropic.com", "198.18.1.3"])
def test_socks4_and_4a(tmp_path, target):
    conv = Conversation()
    tg.socks4(conv, 40020, target, 443, "api.anthropic.com")
    r = rows_of(conv, tmp_path)["api.anthropic.com"]
    assert r.tunnels[0]["kind"] == ("socks4" if target[0].isdigit() else "socks4a")
    assert r.tunnels[0]["open"] and r.targets == [f"{target}:443"]


def test_socks4_rejected(tmp_path):
    conv = Conversation()
    tg.socks4(conv, 40021, "nope.test", 443, None, granted=False)
    assert rows_of(conv, tmp_path)["nope.test"].blocked


def test_absolute_form_request_named_from_uri(tmp_path):
    conv = Conversation()
    tg.absolute_get(conv, 40030, "http://example.test:8080/path?q=1", "example.test:8080")
    tg.absolute_get(conv, 40031, "http://user:pw@other.test/", "front.test")
    rows = rows_of(conv, tmp_path, allow=["example.test"])
    r = rows["example.test"]
    assert r.ports == [8080] and {"proxy", "http"} <= set(r.via) and r.fronting == []
    o = rows["other.test"]
    assert o.ports == [80] and o.fronting == ["HTTP proxy request to other.test:80 carried HTTP Host front.test"]
    assert "pw" not in json.dumps(o.to_json())


def test_binary_that_starts_like_socks_is_not_a_tunnel(tmp_path):
    conv = Conversation()
    t = tg.Tcp(conv, tg.CLIENT, 40040, "10.0.0.9", 7000)
    t.send(b"\x05\x00\x17junk that is no SOCKS greeting")
    t.send(b"\x05\x09\x09" + b"\xff" * 40)
    t.close()
    rows = rows_of(conv, tmp_path)
    assert set(rows) == {"10.0.0.9"} and rows["10.0.0.9"].targets == []


def test_tls_to_the_proxy_is_a_hidden_destination(tmp_path):
    conv = Conversation()
    t = tg.Tcp(conv, tg.CLIENT, 40050, tg.PROXY, 3129)
    data, offs = tg.hello("proxy.corp.test")
    t.send(data, offs)
    t.close()
    rows = rows_of(conv, tmp_path, proxy=["https://10.0.0.2:3129"])
    r = rows["proxy.corp.test"]
    assert r.hidden == 1 and "destination hidden" in r.verdict_text()
    # without knowing it is a proxy, it is an ordinary TLS connection
    assert rows_of(conv, tmp_path)["proxy.corp.test"].hidden == 0


def test_direct_traffic_with_a_proxy_configured_is_bypass(tmp_path):
    conv = Conversation()
    tg.http_connect(conv, 40060, "api.anthropic.com:443", "api.anthropic.com")
    t = tg.Tcp(conv, tg.CLIENT, 40061, "10.0.0.9", 443)
    data, offs = tg.hello("direct.test")
    t.send(data, offs)
    t.close()
    t = tg.Tcp(conv, tg.CLIENT, 40062, "10.0.0.10", 443)
    data, offs = tg.hello("inside.corp.test")
    t.send(data, offs)
    t.close()
    rows = rows_of(conv, tmp_path, proxy=["http://10.0.0.2:3128"])
    assert rows["api.anthropic.com"].bypass == 0
    assert rows["direct.test"].bypass == 1 and "proxy bypass" in rows["direct.test"].verdict_text()
    # NO_PROXY: direct on purpose
    from egress_tui.core.proxy import from_env
    path = tg.write(conv, tmp_path / "np.pcap")
    eng = Engine()
    eng.set_proxy_config(from_env({"https_proxy": "http://10.0.0.2:3128", "no_proxy": ".corp.test"}))
    analyze_file(path, eng)
    got = {r.name: r.bypass for r in host_rows(eng)}
    assert got == {"api.anthropic.com": 0, "direct.test": 1, "inside.corp.test": 0}


def tshark_names(path: str, *options: str) -> set[str]:
    """The names tshark sees: SNI (inside tunnels too), CONNECT targets, SOCKS names, the hosts
    of absolute-form requests. ``options``: more tshark options, e.g. ``-d tcp.port==3129,http``
    for a proxy on a port tshark does not know."""
    out = subprocess.run(
        ["tshark", "-r", path, *options, "-o", "tcp.desegment_tcp_streams:TRUE", "-T", "fields",
         "-e", "tls.handshake.extensions_server_name", "-e", "http.request.method", "-e", "http.request.uri",
         "-e", "socks.remote_name"],
        capture_output=True, text=True, check=True).stdout
    names = set()
    for line in out.splitlines():
        sni, method, uri, socks_name = (line.split("\t") + ["", "", "", ""])[:4]
        if sni:
            names.add(sni)
        if method == "CONNECT" and uri:
            names.add(uri.rsplit(":", 1)[0])
        elif uri.startswith("http://"):  # to a proxy: the destination is in the URI
            names.add(urlsplit(uri).hostname)
        if socks_name:
            names.add(socks_name)
    return names


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is installed by make deps")
def test_names_agree_with_tshark(tmp_path):
    conv = Conversation()
    tg.http_connect(conv, 40070, "api.anthropic.com:443", "evil.test", cuts=3)
    tg.socks5(conv, 40071, "bedrock-runtime.us-east-1.amazonaws.com", 443, "front.test", cuts=2)
    path = tg.write(conv, tmp_path / "agree.pcap")
    eng = analyze_file(path, Engine())
    ours = set()
    for r in host_rows(eng):
        ours.add(r.name)
        ours.update(t.rsplit(":", 1)[0] for t in r.targets)
    assert tshark_names(path) == ours == {"api.anthropic.com", "evil.test",
                                          "bedrock-runtime.us-east-1.amazonaws.com", "front.test"}


def test_cli_fail_on_denied_counts_a_fronted_tunnel(tmp_path):
    import sys
    from pathlib import Path
    conv = Conversation()
    tg.http_connect(conv, 40080, "api.anthropic.com:443", "evil.test", cuts=2)
    path = tg.write(conv, tmp_path / "front.pcap")
    allow = tmp_path / "allow.txt"
    allow.write_text("api.anthropic.com\n")
    egress = str(Path(sys.executable).with_name("egress-tui"))
    r = subprocess.run([egress, "report", "--pcap", path, "--allow", str(allow), "--fail-on-denied",
                        "--format", "csv"], capture_output=True, text=True, timeout=60)
    from egress_tui.cli import EXIT_DENIED
    assert r.returncode == EXIT_DENIED, r.stderr
    lines = r.stderr.strip().splitlines()
    assert any("fronting" in ln and "evil.test" in ln for ln in lines)
    assert lines[-1] == ("egress-tui: 1 host(s) outside the allowlist were contacted: "
                         "evil.test (asked of the proxy as api.anthropic.com:443)")
    assert "HTTP CONNECT to api.anthropic.com:443 carried TLS for evil.test" in r.stdout


@pytest.mark.asyncio
async def test_tui_shows_the_inner_name_the_fronting_and_the_proxy_handshake(tmp_path):
    from egress_tui.ui.app import AppConfig, create_app
    from tests.pilot import screen_text, select_host, wait_replay
    conv = Conversation()
    tg.http_connect(conv, 40090, "api.anthropic.com:443", "evil.test", cuts=3)
    tg.http_connect(conv, 40091, "x.test:22", None, replies=(tg.proxy_error(403, "Forbidden"),))
    path = tg.write(conv, tmp_path / "tui.pcap")
    app = create_app(AppConfig(pcap=path, speed=0, presets=["anthropic"]))
    async with app.run_test(size=(160, 50)) as pilot:
        await wait_replay(app, pilot)
        await select_host(app, pilot, "evil.test")
        text = screen_text(app)
        row = next(ln for ln in text.splitlines() if ln.lstrip("│ ").startswith("evil.test"))
        assert "proxy,tls" in row and "denied" in row and "fronting" in row
        assert "fronting: HTTP CONNECT to api.anthropic.com:443 carried TLS for evil.test" in text
        assert "CONNECT api.anthropic.com:443 → 200" in text
        assert "10.0.0.2:3128" in text
        await select_host(app, pilot, "x.test")
        text = screen_text(app)
        assert "CONNECT x.test:22 → proxy answered 403" in text
        assert any("x.test" in ln and "denied, blocked" in ln for ln in text.splitlines())


def test_keep_alive_requests_to_other_hosts_are_not_hidden(tmp_path):
    """One connection to an HTTP proxy, three requests (the second with a body): each host
    gets its row and verdict, not just the first one's."""
    conv = Conversation()
    t = tg.Tcp(conv, tg.CLIENT, 40100, tg.PROXY, 3128)
    reqs = (b"GET http://deb.test/dists/Release HTTP/1.1\r\nHost: deb.test\r\n\r\n",
            b"POST http://upload.test/x HTTP/1.1\r\nHost: upload.test\r\nContent-Length: 11\r\n\r\nhello world",
            b"GET http://deb.test/pool/a.deb HTTP/1.1\r\nHost: deb.test\r\n\r\n",
            b"GET http://evil.test:8080/ HTTP/1.1\r\nHost: evil.test:8080\r\n\r\n")
    data = b"".join(reqs)
    t.send(data, [30, 70, 150])
    t.recv(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    t.close()
    rows = rows_of(conv, tmp_path, allow=["deb.test"])
    assert set(rows) == {"deb.test", "upload.test", "evil.test"}
    assert rows["deb.test"].connections == 1 and rows["deb.test"].allowed is True
    assert rows["upload.test"].allowed is False and rows["upload.test"].ports == [80]
    assert rows["evil.test"].allowed is False and rows["evil.test"].ports == [8080]
    assert {"proxy", "http"} <= set(rows["evil.test"].via)


def test_a_407_page_split_over_segments_the_live_filter_drops(tmp_path):
    """Live, the kernel filter passes only the segment that starts each proxy answer: the rest
    of a 407 page never arrives, and the 200 after the retry is still read."""
    conv = Conversation()
    t = tg.Tcp(conv, tg.CLIENT, 40110, tg.PROXY, 3128)
    t.send(tg.connect_head("api.anthropic.com:443"))
    page = tg.proxy_error(407, "Proxy Authentication Required")
    t.recv(page[:300])
    t.sseq += len(page) - 300   # the rest of the page: filtered out in the kernel
    t.send(tg.connect_head("api.anthropic.com:443", auth="bGFiOmxhYnBhc3M="))
    t.recv(tg.ESTABLISHED)
    data, offs = tg.hello("api.anthropic.com", 2)
    t.send(data, offs)
    t.close()
    r = rows_of(conv, tmp_path)["api.anthropic.com"]
    assert r.tunnels[0]["reply"] == "200" and r.tunnels[0]["open"] and not r.blocked


def test_the_live_filter_passes_proxy_answers_and_not_bulk():
    """The capture filter, compiled by libpcap and run on packets: a proxy's answers pass,
    bulk data from the same proxy does not."""
    import tempfile

    from egress_tui.live.capture import capture_filter
    from tests.pcapgen import ether, ip, tcp, write_pcap
    flt = capture_filter(["10.0.0.1", "fd00::1"])
    cases = {
        "200": (True, tcp(3128, 40000, "PA", 1, 1, tg.ESTABLISHED)),
        "407": (True, tcp(3128, 40000, "PA", 1, 1, tg.proxy_error(407, "x")[:1400])),
        "socks5": (True, tcp(1080, 40000, "PA", 1, 1, b"\x05\x00\x00\x01\x0a\x00\x00\x02\x9c\x40")),
        "socks4": (True, tcp(1080, 40000, "PA", 1, 1, b"\x00\x5a" + b"\0" * 6)),
        "bulk": (False, tcp(3128, 40000, "PA", 1, 1, b"\x17\x03\x03" + b"x" * 1400)),
        "small tls": (False, tcp(443, 40000, "PA", 1, 1, b"\x17\x03\x03\x00\x20" + b"y" * 32)),
    }
    frames = []
    for src, dst in (("10.0.0.2", "10.0.0.1"), ("fd00::2", "fd00::1")):
        for _name, (_want, seg) in cases.items():
            frames.append(ether(ip(src, dst, 6, seg)))
    with tempfile.TemporaryDirectory() as d:
        f = f"{d}/f.pcap"
        write_pcap(f, [(1.0 + i, fr) for i, fr in enumerate(frames)])
        out = subprocess.run(["tcpdump", "-nr", f, "-tt", flt], capture_output=True, text=True, check=True).stdout
    passed = {int(float(line.split()[0])) - 1 for line in out.splitlines()}
    want = {i for i, (_n, (w, _s)) in enumerate(list(cases.items()) * 2) if w}
    assert passed == want, (passed, want)


def test_idle_connections_to_the_configured_proxy_are_the_proxy_not_a_denied_host(tmp_path):
    """Clients open connections to their proxy ahead of use (Claude Code does); with the
    proxy known they are the configured proxy, not a host outside the allowlist."""
    conv = Conversation()
    conv.dns(tg.CLIENT, tg.RESOLVER, "squid.corp.test", [("squid.corp.test", 1, tg.PROXY)])
    tg.http_connect(conv, 40120, "api.anthropic.com:443", "api.anthropic.com")
    idle = tg.Tcp(conv, tg.CLIENT, 40121, tg.PROXY, 3128)
    idle.close()
    rows = rows_of(conv, tmp_path, allow=["api.anthropic.com"], proxy=["http://squid.corp.test:3128"])
    p = rows["squid.corp.test"]
    assert p.is_proxy and p.allowed is True and p.verdict_text() == "configured proxy"
    assert rows["api.anthropic.com"].allowed is True and not rows["api.anthropic.com"].is_proxy
    # not known as the proxy: an ordinary host, denied by the allowlist
    assert rows_of(conv, tmp_path, allow=["api.anthropic.com"])["squid.corp.test"].allowed is False


def test_a_proxy_name_never_looked_up_in_the_capture_is_still_the_proxy(tmp_path):
    """The container resolved its proxy's name before the capture began: its tunnels on the
    proxy's port are through the proxy, not around it; a tunnel to another port is not."""
    conv = Conversation()
    tg.http_connect(conv, 40130, "api.anthropic.com:443", "api.anthropic.com")
    tg.http_connect(conv, 40131, "other.test:443", "other.test", port=8080)
    rows = rows_of(conv, tmp_path, proxy=["http://squid.corp.test:3128"])
    assert rows["api.anthropic.com"].bypass == 0
    assert rows["other.test"].bypass == 1


def test_the_lookup_of_the_proxys_name_is_the_proxy(tmp_path):
    conv = Conversation()
    conv.dns(tg.CLIENT, tg.RESOLVER, "squid.corp.test", [("squid.corp.test", 1, tg.PROXY)])
    rows = rows_of(conv, tmp_path, allow=["api.anthropic.com"], proxy=["http://squid.corp.test:3128"])
    assert rows["squid.corp.test"].verdict_text() == "configured proxy"

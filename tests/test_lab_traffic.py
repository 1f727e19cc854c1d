"""End to end on a real wire: real clients in a network-namespace lab, tcpdump,
then `egress-tui report --format json`, asserting what a user would notice.

The lab (tests/lab) is two namespaces joined by a veth; the client side has
no default route and a sinkhole DNS answers every name with a lab address
(198.18.64.0/18, fd65:6774:0:1::/64), so nothing leaves the machine.

Most assertions share one lab and one capture (module fixture ``run``); the
report is produced once (fixture ``report``).  tshark checks the capture
itself, independently of egress-tui, so a broken lab is told apart from a
broken parser.  Lab tests skip only when not root or ``ip netns`` is missing.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.lab import dnsd
from tests.lab.netlab import Lab, can_run_lab

LAB_OK, LAB_WHY = can_run_lab()


def labtest(f):
    for mark in (pytest.mark.netns, pytest.mark.root, pytest.mark.skipif(not LAB_OK, reason=LAB_WHY or "ok")):
        f = mark(f)
    return f


# -- helpers ------------------------------------------------------------------------------


def egress_report(pcap: Path) -> dict:
    exe = Path(sys.executable).with_name("egress-tui")
    argv = [str(exe)] if exe.exists() else [sys.executable, "-m", "egress_tui"]
    p = subprocess.run([*argv, "report", "--pcap", str(pcap), "--format", "json"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, f"egress-tui report failed ({p.returncode}): {p.stderr}"
    return json.loads(p.stdout)


def tshark(pcap: Path, *args: str) -> list[list[str]]:
    p = subprocess.run(["tshark", "-n", "-r", str(pcap), "-o", "tcp.reassemble_out_of_order:TRUE", *args],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return [line.split("\t") for line in p.stdout.splitlines() if line.strip()]


def host(report: dict, name: str) -> dict:
    for h in report["hosts"]:
        if h["name"] == name:
            return h
    pytest.fail(f"{name} not in egress-tui's report; hosts: {sorted(h['name'] for h in report['hosts'])}")


def established(h: dict) -> int:
    o = h["outcomes"]
    return o.get("connected", 0) + o.get("closed", 0)


def same_addr(a: str) -> str:
    ip = ipaddress.ip_address(a)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return str(ip)


# -- the shared run -----------------------------------------------------------------------

NAMES = [
    "alpha.test", "beta.test", "gamma.test", "multi.test", "six.test", "delta.test", "split.test",
    "quic.test", "quic4.test", "cdn-alias.test", "refused.test", "dns-only.test", "tcp-dns.test",
    "blackholed.test", "split-reorder.test",
]


@dataclass
class Run:
    pcap: Path
    addr: dict[str, tuple[str, str]]
    out: dict[str, subprocess.CompletedProcess] = field(default_factory=dict)
    sink_log: str = ""


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
    if not LAB_OK:
        pytest.skip(LAB_WHY)
    pcap = tmp_path_factory.mktemp("lab") / "lab.pcap"
    with Lab() as lab:
        r = Run(pcap=pcap, addr={n: lab.address_for(n) for n in NAMES})
        w = ["-o", "/dev/null", "-w", "%{http_code} %{remote_ip}"]
        with lab.capture(pcap):
            # the slow one (SYNs into the black hole) runs alongside the rest
            blackholed = lab.popen_client(["curl", "-sS", "-k", "--connect-timeout", "2",
                                           "https://blackholed.test/"], text=True)
            r.out["alpha"] = lab.py_tls("alpha.test", 443, family=socket.AF_INET)
            r.out["beta"] = lab.curl("-k", "https://beta.test/", *w)
            r.out["gamma"] = lab.curl("-4", "http://gamma.test/", *w)
            r.out["multi"] = lab.curl("http://multi.test/a", "http://multi.test/b", "http://multi.test/c")
            r.out["six"] = lab.curl("-6", "-k", "https://six.test/", *w)
            r.out["delta"] = lab.openssl_s_client("delta.test", 8443, alpn="h2")
            r.out["split"] = lab.curl_cffi_get("https://split.test/")
            r.out["quic"] = lab.quic_connect("quic.test")
            r.out["quic4"] = lab.quic_connect("quic4.test", address=r.addr["quic4.test"][0])
            r.out["cdn"] = lab.curl("-k", "https://cdn-alias.test/", *w)
            r.out["refused"] = lab.curl("http://refused.test:9/", *w)
            r.out["dns-only"] = lab.resolve("dns-only.test")
            r.out["nxdomain"] = lab.resolve("nxdomain.test")
            r.out["tcp-dns"] = lab.dns_tcp_query("tcp-dns.test")
            # netem-free reorder + duplicate: the first ClientHello segment is held in an
            # NFQUEUE so the second goes out first, and big segments are cloned (TEE)
            lab.impair("split-reorder.test")
            r.out["reorder"] = lab.curl_cffi_get("https://split-reorder.test/")
            lab.clear_impairments()
            stdout, stderr = blackholed.communicate(timeout=30)
            r.out["blackholed"] = subprocess.CompletedProcess(blackholed.args, blackholed.returncode, stdout, stderr)
        r.sink_log = lab.sink_log()
    return r


@pytest.fixture(scope="module")
def report(run) -> dict:
    return egress_report(run.pcap)


def out_json(cp: subprocess.CompletedProcess) -> dict:
    assert cp.returncode == 0, f"rc={cp.returncode} stdout={cp.stdout!r} stderr={cp.stderr!r}"
    return json.loads(cp.stdout.strip().splitlines()[-1])


# -- the lab itself (no egress-tui involved) ----------------------------------------------------


def test_dns_responder_answers_deterministically():
    cfg = dnsd.DnsConfig()
    v4, v6 = dnsd.address_for("alpha.test", cfg)
    assert ipaddress.ip_address(v4) in dnsd.LAB_V4 and ipaddress.ip_address(v4) not in dnsd.BLACKHOLE_V4
    assert ipaddress.ip_address(v6) in dnsd.LAB_V6 and ipaddress.ip_address(v6) not in dnsd.BLACKHOLE_V6
    assert dnsd.address_for("Alpha.Test.", cfg) == (v4, v6)
    bv4, bv6 = dnsd.address_for("blackholed.test", cfg)
    assert ipaddress.ip_address(bv4) in dnsd.BLACKHOLE_V4 and ipaddress.ip_address(bv6) in dnsd.BLACKHOLE_V6
    assert dnsd.address_for("cdn-alias.test", cfg) == dnsd.address_for("edge.cdn.test", cfg)

    def ask(name, qtype):
        q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + dnsd.encode_name(name) + qtype.to_bytes(2, "big") + b"\x00\x01"
        r = dnsd.build_response(q, cfg)
        assert r[:2] == b"\x12\x34" and r[2] & 0x80
        return r[3] & 0xF, int.from_bytes(r[6:8], "big"), r

    rcode, an, r = ask("alpha.test", 1)
    assert (rcode, an) == (0, 1) and r.endswith(ipaddress.IPv4Address(v4).packed)
    rcode, an, r = ask("alpha.test", 28)
    assert (rcode, an) == (0, 1) and r.endswith(ipaddress.IPv6Address(v6).packed)
    assert ask("cdn-alias.test", 1)[:2] == (0, 2)          # CNAME + A
    assert ask("www.chain.test", 28)[:2] == (0, 3)         # CNAME, CNAME, AAAA
    assert ask("nxdomain.test", 1)[:2] == (3, 0)
    assert ask("alpha.test", 65)[:2] == (0, 0)             # HTTPS: empty NOERROR
    assert ask("https-rr.test", 65)[:2] == (0, 1)          # HTTPS: one ServiceMode record


@labtest
def test_clients_did_what_they_were_told(run):
    assert out_json(run.out["alpha"])["status"].startswith("HTTP/1.1 200")
    for k in ("beta", "gamma", "six", "cdn"):
        assert run.out[k].returncode == 0 and run.out[k].stdout.startswith("200 "), (k, run.out[k])
    assert run.out["multi"].stdout == "ok\n" * 3
    assert "ALPN protocol: h2" in run.out["delta"].stdout, run.out["delta"].stdout
    assert out_json(run.out["split"])["status"] == 200
    assert out_json(run.out["quic"])["alpn"] == "h3"
    assert same_addr(out_json(run.out["quic4"])["peer"]) == run.addr["quic4.test"][0]
    assert run.out["refused"].returncode == 7, run.out["refused"]          # couldn't connect
    assert run.out["blackholed"].returncode == 28, run.out["blackholed"]   # timed out
    assert set(out_json(run.out["dns-only"])["addresses"]) == set(run.addr["dns-only.test"])
    assert "error" in out_json(run.out["nxdomain"])
    assert out_json(run.out["tcp-dns"]) == {"id_ok": True, "rcode": 0, "answers": 1}
    assert out_json(run.out["reorder"])["status"] == 200


@labtest
def test_capture_never_leaves_the_lab(run):
    allowed = [ipaddress.ip_network(n) for n in ("198.18.0.0/15", "fd65:6774::/48", "fe80::/10", "ff02::/16")]
    rows = tshark(run.pcap, "-Y", "ip || ipv6", "-T", "fields", "-e", "ip.src", "-e", "ip.dst",
                  "-e", "ipv6.src", "-e", "ipv6.dst")
    seen = {a for row in rows for cell in row for a in cell.split(",") if a}
    assert seen
    stray = [a for a in seen if not any(ipaddress.ip_address(a) in n for n in allowed)]
    assert not stray, f"packets outside the lab ranges: {stray}"


@labtest
def test_split_client_hello_really_is_two_segments(run):
    rows = tshark(run.pcap, "-Y", 'tls.handshake.type == 1 && tls.handshake.extensions_server_name == "split.test"',
                  "-T", "fields", "-e", "tcp.segment.count", "-e", "tcp.reassembled.length")
    assert rows, "tshark saw no ClientHello for split.test"
    segments, length = int(rows[0][0] or 1), int(rows[0][1] or 0)
    assert segments >= 2 and length > 1460, f"ClientHello of {length} bytes in {segments} segment(s)"


@labtest
def test_reordered_duplicated_segments_on_the_wire(run):
    v4, v6 = run.addr["split-reorder.test"]
    rows = tshark(run.pcap, "-Y", f"(ip.dst == {v4} || ipv6.dst == {v6}) && tcp.len > 0",
                  "-T", "fields", "-e", "tcp.stream", "-e", "tcp.seq", "-e", "tcp.len")
    assert rows, "no client data toward split-reorder.test"
    stream = rows[0][0]
    seqs = [(int(s), int(n)) for st, s, n in rows if st == stream]
    assert seqs[0][0] > 1, f"first ClientHello segment was not held back: {seqs}"
    assert len(seqs) != len(set(seqs)), f"no duplicated segment on the wire: {seqs}"


# -- what egress-tui reports ------------------------------------------------------------------


@labtest
def test_python_ssl_client(run, report):
    h = host(report, "alpha.test")
    assert "tls" in h["via"]
    assert established(h) >= 1 and not h["outcomes"].get("refused") and not h["outcomes"].get("unanswered")
    assert h["addresses"] == [run.addr["alpha.test"][0]], (h["addresses"], run.addr["alpha.test"])  # over IPv4
    assert h["ports"] == [443]
    assert h["alpn"] == ["http/1.1"]
    assert "1.3" in h["tls_versions"]


@labtest
def test_curl_https_and_http(run, report):
    beta = host(report, "beta.test")
    assert "tls" in beta["via"] and established(beta) == 1 and "h2" in beta["alpn"]
    assert set(beta["addresses"]) <= set(run.addr["beta.test"])
    gamma = host(report, "gamma.test")
    assert "http" in gamma["via"] and "tls" not in gamma["via"]
    assert gamma["ports"] == [80] and established(gamma) == 1
    assert gamma["addresses"] == [run.addr["gamma.test"][0]]


@labtest
def test_every_connection_is_counted(run, report):
    h = host(report, "multi.test")
    assert h["connections"] == 3 and established(h) == 3, h


@labtest
def test_curl_over_ipv6(run, report):
    h = host(report, "six.test")
    assert "tls" in h["via"] and established(h) == 1
    assert h["addresses"] == [run.addr["six.test"][1]]


@labtest
def test_openssl_alpn_h2_on_8443(run, report):
    h = host(report, "delta.test")
    assert "tls" in h["via"] and h["ports"] == [8443] and h["alpn"] == ["h2"]
    assert established(h) == 1


@labtest
def test_split_client_hello_named_with_ja4(run, report):
    h = host(report, "split.test")
    assert "tls" in h["via"] and established(h) == 1
    assert any(j.startswith("t13d") for j in h["ja4"]), h["ja4"]
    assert "h2" in h["alpn"]


@labtest
def test_quic_initial_sni(run, report):
    for name, family in (("quic.test", None), ("quic4.test", 0)):
        h = host(report, name)
        assert "quic" in h["via"] and "tls" not in h["via"], h
        assert 443 in h["ports"] and established(h) >= 1, h
        assert "h3" in h["alpn"], h
        if family is not None:
            assert h["addresses"] == [run.addr[name][family]]


@labtest
def test_blackholed_name_is_unanswered(run, report):
    h = host(report, "blackholed.test")
    assert h["via"] == ["dns"], h["via"]
    assert h["outcomes"].get("unanswered", 0) >= 1 and established(h) == 0, h["outcomes"]
    assert set(h["addresses"]) <= set(run.addr["blackholed.test"])


@labtest
def test_refused_port(run, report):
    h = host(report, "refused.test")
    assert h["ports"] == [9]
    assert h["outcomes"].get("refused", 0) >= 1 and established(h) == 0, h["outcomes"]
    assert "tls" not in h["via"] and "http" not in h["via"]


@labtest
def test_dns_only_names(run, report):
    h = host(report, "dns-only.test")
    assert h["via"] == ["dns"] and h["connections"] == 0
    tcp = host(report, "tcp-dns.test")             # a lookup over DNS-over-TCP
    assert tcp["via"] == ["dns"] and tcp["connections"] == 0
    nx = host(report, "nxdomain.test")
    assert nx["connections"] == 0 and "NXDOMAIN" in json.dumps(nx.get("dns_rcodes", [])).upper(), nx


@labtest
def test_cname_alias_keeps_the_name_the_client_used(run, report):
    h = host(report, "cdn-alias.test")
    assert "tls" in h["via"] and established(h) == 1
    assert set(h["addresses"]) <= set(run.addr["cdn-alias.test"]) == set(dnsd.address_for("edge.cdn.test"))


@labtest
def test_reordered_duplicated_client_hello_still_named(run, report):
    h = host(report, "split-reorder.test")
    assert "tls" in h["via"] and established(h) == 1, h
    assert any(j.startswith("t13d") for j in h["ja4"]), h["ja4"]


@labtest
def test_tshark_names_are_a_subset_of_egress_tui(run, report):
    def names(*args):
        return {n for row in tshark(run.pcap, *args) for cell in row for n in cell.split(",") if n}

    tls = names("-Y", "tcp && tls.handshake.extensions_server_name", "-T", "fields",
                "-e", "tls.handshake.extensions_server_name")
    quic = names("-Y", "quic && tls.handshake.extensions_server_name", "-T", "fields",
                 "-e", "tls.handshake.extensions_server_name")
    http = names("-Y", "http.request", "-T", "fields", "-e", "http.host")
    by_via = {v: {h["name"] for h in report["hosts"] if v in h["via"]} for v in ("tls", "quic", "http")}
    assert {"alpha.test", "split.test", "delta.test", "split-reorder.test"} <= tls
    assert "quic.test" in quic and "gamma.test" in http
    assert tls <= by_via["tls"], tls - by_via["tls"]
    assert quic <= by_via["quic"], quic - by_via["quic"]
    assert http <= by_via["http"], http - by_via["http"]


def _grease(v: int) -> bool:
    return (v & 0x0F0F) == 0x0A0A and (v >> 8) == (v & 0xFF)


def tshark_ja4(pcap: Path) -> dict[str, set[str]]:
    """JA4 of every ClientHello tshark decodes (TCP and QUIC), computed here from
    tshark's fields per the JA4 spec -- an independent check of egress-tui's."""
    rows = tshark(pcap, "-Y", "tls.handshake.type == 1", "-T", "fields", "-E", "separator=|",
                  "-e", "tls.handshake.extensions_server_name", "-e", "tls.handshake.ciphersuite",
                  "-e", "tls.handshake.extension.type", "-e", "tls.handshake.sig_hash_alg",
                  "-e", "tls.handshake.extensions_alpn_str", "-e", "tls.handshake.extensions.supported_version",
                  "-e", "tls.handshake.version", "-e", "quic.version")
    out: dict[str, set[str]] = {}
    for line in rows:
        sni, cs, ex, sig, alpn, sv, legacy, quic = line[0].split("|")
        ciphers = [c for c in (int(x, 16) for x in cs.split(",") if x) if not _grease(c)]
        exts = [e for e in (int(x) for x in ex.split(",") if x) if not _grease(e)]
        versions = [v for v in (int(x, 16) for x in sv.split(",") if x) if not _grease(v)] or [int(legacy, 16)]
        ver = {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10"}.get(max(versions), "00")
        first = alpn.split(",")[0] if alpn else ""
        a = f"{'q' if quic else 't'}{ver}{'d' if sni else 'i'}{min(len(ciphers), 99):02d}{min(len(exts), 99):02d}"
        a += (first[0] + first[-1]) if first else "00"
        b = ",".join(f"{c:04x}" for c in sorted(ciphers))
        c = ",".join(f"{e:04x}" for e in sorted(e for e in exts if e not in (0x0000, 0x0010)))
        sigs = [x[2:] for x in sig.split(",") if x]
        if sigs:
            c += "_" + ",".join(sigs)
        digest = lambda text: hashlib.sha256(text.encode()).hexdigest()[:12]  # noqa: E731
        out.setdefault(sni, set()).add(f"{a}_{digest(b)}_{digest(c)}")
    return out


@labtest
def test_ja4_matches_an_independent_computation(run, report):
    expected = tshark_ja4(run.pcap)
    assert {"alpha.test", "split.test", "delta.test", "quic.test"} <= set(expected)
    for name, ja4s in expected.items():
        assert set(host(report, name)["ja4"]) == ja4s, name


# -- cleanup --------------------------------------------------------------------------


def _netns() -> set[str]:
    p = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    return {line.split()[0] for line in p.stdout.splitlines() if line.strip()}


@labtest
def test_lab_cleans_up_after_an_error():
    mine = lambda: {n for n in _netns() if n.startswith(f"egl-{os.getpid()}-")}  # noqa: E731
    assert not mine()
    # a leftover from a run that died (pid above pid_max: certainly not alive)
    stale = "egl-4194999-abcdef-c"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            with Lab() as lab:
                assert {lab.client_ns, lab.server_ns} <= mine()
                assert stale not in _netns(), "stale lab namespace was not removed"
                sink = lab.sink.pid
                raise RuntimeError("boom")
    finally:
        subprocess.run(["ip", "netns", "del", stale], capture_output=True)
    assert not mine()
    assert not Path(f"/etc/netns/{lab.client_ns}").exists()
    assert not Path(f"/proc/{sink}").exists(), "sink process survived the lab"

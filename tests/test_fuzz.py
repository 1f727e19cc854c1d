"""A fuzz target per dissector, each a bounded number of cases so it runs in `make test`.

What a hostile container controls reaches these parsers first. Each target checks that the
parser raises only its documented error, keeps the attacker's bytes as data (never drops
or reinterprets them into something else), and, for DNS, that the work stays linear.
"""

from __future__ import annotations

import io
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.pcapgen import (PACKET_HOST, PACKET_OUTGOING, dns_message, ether, ip, sll2, tcp, udp, write_pcap,
                           write_pcapng)
from tests.strategies import client_hello, dns_labels, hostile_names, mutate, wire_bytes
from egress_tui.wire import dns, quic, tls
from egress_tui.core.engine import Engine
from egress_tui.wire.packet import SUPPORTED_LINKTYPES
from egress_tui.wire.pcapfile import PcapError, read_frames

FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
C, S, R = "198.18.0.10", "198.18.64.10", "198.18.0.2"
VALID_DNS = dns_message(7, "api.anthropic.com", 1, [("api.anthropic.com", 5, "edge.cdn.test"),
                                                    ("edge.cdn.test", 1, "198.18.64.7")], True)


def _counting(monkeypatch) -> list:
    calls: list = []
    real = dns._label_text
    monkeypatch.setattr(dns, "_label_text", lambda b: calls.append(1) or real(b))
    return calls


# -- DNS -------------------------------------------------------------------------------------

@FUZZ
@given(st.one_of(st.binary(max_size=600), mutate(VALID_DNS)))
def test_dns_parse(data):
    with pytest.MonkeyPatch.context() as mp:
        calls = _counting(mp)
        try:
            m = dns.parse(data)
        except dns.DnsError:
            return
        finally:
            assert len(calls) <= len(data) // 2 + 1  # each label position decoded at most once
    for name, _t in m.questions:
        assert len(name.encode("utf-8")) <= 4 * 255


@FUZZ
@given(dns_labels(), st.integers(0, 65535))
def test_dns_names_are_data(labels, qtype):
    """Any label bytes come back as a name in which a dot always separates labels."""
    wire = b"".join(bytes([len(lb)]) + lb for lb in labels) + b"\0"
    msg = struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0) + wire + struct.pack("!HH", qtype, 1)
    try:
        m = dns.parse(msg)
    except dns.DnsError:
        assert any(len(lb) > 63 for lb in labels) or len(wire) > 255
        return
    name = m.questions[0][0]
    assert name.count(".") == max(len(labels) - 1, 0)  # a dot in a label is written \046


# -- TLS -------------------------------------------------------------------------------------

@FUZZ
@given(hostile_names(), st.lists(hostile_names(3), max_size=4))
def test_tls_fields_are_kept_as_data(name, alpn):
    sni = wire_bytes(name)[:1000]
    protos = [wire_bytes(a)[:255] for a in alpn if a]
    record = client_hello(sni or None, protos)
    hello = tls.parse_client_hello(tls.handshake_from_records(record))
    assert hello is not None
    want = sni.decode("ascii", "replace").rstrip(".").lower() if sni else None
    assert hello.sni == want
    assert hello.alpn == [p.decode("ascii", "replace") for p in protos]


@FUZZ
@given(mutate(client_hello(b"api.anthropic.com", [b"h2"])))
def test_tls_mutated_hello(record):
    r = tls.handshake_from_records(record)
    if isinstance(r, bytes):
        tls.parse_client_hello(r)


# -- QUIC ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def quic_initial():
    from tests.test_quic import single_datagram
    return single_datagram(quic.QUIC_V1)


@FUZZ
@given(st.data())
def test_quic_mutated_initial(quic_initial, data):
    datagram = data.draw(mutate(quic_initial))
    r = quic.parse_initial_datagram(datagram)
    if r is not None:
        asm = quic.CryptoAssembler()
        for off, chunk in r[1]:
            asm.add(off, chunk)
        msg = asm.client_hello()
        if msg is not None:
            tls.parse_client_hello(msg, "q")


# -- capture files ---------------------------------------------------------------------------

def _file(writer, frames) -> bytes:
    import os
    import tempfile
    fd, path = tempfile.mkstemp()
    os.close(fd)
    try:
        writer(path, frames)
        with open(path, "rb") as f:
            return f.read()
    finally:
        os.unlink(path)


PCAP = _file(write_pcap, [(1.0, ether(ip(C, S, 6, tcp(40000, 443, "S")))), (2.0, ether(ip(S, C, 17, udp(53, 1, b"x"))))])
PCAPNG = _file(write_pcapng, [(1.0, ether(ip(C, S, 6, tcp(40000, 443, "S"))))])


@FUZZ
@given(st.one_of(mutate(PCAP), mutate(PCAPNG), st.binary(max_size=200)))
def test_capture_files(data):
    eng = Engine()
    try:
        for lt, ts, frame in read_frames(io.BytesIO(data)):
            eng.feed(lt, ts, frame)
    except PcapError:
        pass


# -- the engine, frames of every link type -----------------------------------------------------

@FUZZ
@given(st.lists(st.tuples(st.sampled_from(sorted(SUPPORTED_LINKTYPES)), st.binary(max_size=120)), max_size=12))
def test_engine_any_frame(frames):
    eng = Engine()
    for lt, frame in frames:
        eng.feed(lt, 1.0, frame)


@FUZZ
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 3), st.sampled_from([R, "127.0.0.11", C]),
                          st.sampled_from([53, 40000, 40001]), hostile_names(3)), min_size=1, max_size=10))
def test_answers_the_container_sends_never_name_anything(packets):
    """Queries and "answers" in any order: if every answer left through the container's own
    interface, no address is ever named and nothing reaches a firewall."""
    eng = Engine(resolvers=[R, "127.0.0.11"])
    fed = []
    eng.on_dns_answer = lambda *a: fed.append(a)
    for i, (is_answer, ident, peer, port, name) in enumerate(packets):
        qname = "".join(c for c in name if c.isalnum())[:20] or "x"
        if is_answer:
            payload = dns_message(ident, qname, 1, [(qname, 1, "6.6.6.6")], True)
            frame = sll2(ip(peer, C, 17, udp(53, port, payload)), PACKET_OUTGOING)
        else:
            payload = dns_message(ident, qname, 1, [], False)
            frame = sll2(ip(C, peer, 17, udp(port, 53, payload)), PACKET_HOST)
        eng.feed(276, 1.0 + i, frame)
    assert not eng.addr_name and not fed


@FUZZ
@given(hostile_names())
def test_http_host_is_data(name):
    host = wire_bytes(name).replace(b"\r", b"").replace(b"\n", b"")[:300].strip()
    req = b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n"
    eng = Engine()
    eng.feed(1, 1.0, ether(ip(C, S, 6, tcp(40000, 80, "S", 1))))
    eng.feed(1, 1.1, ether(ip(C, S, 6, tcp(40000, 80, "PA", 2, 1, req))))
    assert len(eng.hosts) == 1


# -- proxy handshakes: CONNECT, SOCKS5, SOCKS4/4a and the proxy's answers ---------------------

_SOCKS5 = b"\x05\x02\x00\x02" + b"\x01\x03lab\x07labpass" + b"\x05\x01\x00\x03\x11api.anthropic.com\x01\xbb"
_SOCKS4A = b"\x04\x01\x01\xbb\x00\x00\x00\x01user\x00api.anthropic.com\x00"
_CONNECT = b"CONNECT api.anthropic.com:443 HTTP/1.1\r\nHost: api.anthropic.com:443\r\n\r\n"
_REPLIES = [b"\x05\x02\x01\x00\x05\x00\x00\x01\x0a\x00\x00\x02\x9c\x40", b"\x00\x5a" + b"\x00" * 6,
            b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 5\r\n\r\nxxxxxHTTP/1.1 200 OK\r\n\r\n"]


@FUZZ
@given(st.one_of(mutate(_SOCKS5), mutate(_SOCKS4A), mutate(_CONNECT), st.binary(max_size=300)),
       st.one_of(st.sampled_from(_REPLIES), st.binary(max_size=200)), hostile_names(3), st.integers(1, 5))
def test_proxy_handshakes(request, reply, sni, cuts):
    """Any client handshake, any proxy answer, any inner name, cut anywhere: the engine keeps
    going, names what it names as data, and (handshake intact) never keeps a SOCKS password."""
    inner = client_hello(wire_bytes(sni)[:200], [b"h2"])
    data = request + inner
    eng = Engine()
    eng.feed(1, 1.0, ether(ip(C, S, 6, tcp(40000, 1080, "S", 1))))
    eng.feed(1, 1.0, ether(ip(S, C, 6, tcp(1080, 40000, "SA", 9000, 2))))
    step = max(1, len(data) // cuts)
    for i, off in enumerate(range(0, len(data), step)):
        eng.feed(1, 1.1 + i, ether(ip(C, S, 6, tcp(40000, 1080, "PA", 2 + off, 9001, data[off:off + step]))))
        if i == 0:
            eng.feed(1, 1.1, ether(ip(S, C, 6, tcp(1080, 40000, "PA", 9001, 2 + step, reply))))
    rows = [eng.row(h) for h in eng.hosts.values()]
    assert len(rows) == 1
    from egress_tui.core.report import render
    for fmt in ("json", "csv", "markdown", "table"):
        text = render(rows, fmt)
        if request == _SOCKS5:
            assert "labpass" not in text

"""Property tests: no input makes a dissector raise, and a real ClientHello is found in any
segmentation, order and duplication once all of its bytes have arrived."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.pcapgen import ether, ip, ipv4, python_client_hello, tcp
from egress_tui.wire import dns, tls
from egress_tui.core.engine import Engine
from egress_tui.wire.packet import SUPPORTED_LINKTYPES, decode

C, S = "10.1.0.2", "198.18.64.10"
HELLO = python_client_hello("split.anthropic.test", ["h2", "http/1.1"])
# A post-quantum-sized hello (~1.9 KB): Python's hello with a 1,400-byte padding extension
# spliced in, re-framed as one record, so reassembly is exercised on two-segment sizes.
_msg = tls.handshake_from_records(HELLO)
_pad = b"\x00\x15" + (1400).to_bytes(2, "big") + b"\x00" * 1400


def _with_padding(msg: bytes) -> bytes:
    # find the extensions block: after version, random, session id, ciphers, compression
    p = 4 + 2 + 32
    p += 1 + msg[p]
    p += 2 + int.from_bytes(msg[p:p + 2], "big")
    p += 1 + msg[p]
    ext_len = int.from_bytes(msg[p:p + 2], "big")
    body = msg[4:p] + (ext_len + len(_pad)).to_bytes(2, "big") + _pad + msg[p + 2:]
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + len(hs).to_bytes(2, "big") + hs


BIG_HELLO = _with_padding(_msg)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(SUPPORTED_LINKTYPES)), st.binary(max_size=300))
def test_decode_never_raises(linktype, data):
    decode(linktype, data)


@settings(max_examples=300)
@given(st.binary(max_size=600))
def test_tls_never_raises(data):
    r = tls.handshake_from_records(b"\x16\x03" + data)
    if isinstance(r, bytes):
        tls.parse_client_hello(r)
    tls.parse_client_hello(b"\x01" + data)


@settings(max_examples=300)
@given(st.integers(0, len(_msg) - 1), st.integers(0, 255))
def test_corrupted_real_hello_never_raises(pos, val):
    m = bytearray(_msg)
    m[pos] = val
    tls.parse_client_hello(bytes(m))


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_dns_raises_only_dns_error(data):
    try:
        dns.parse(data)
    except dns.DnsError:
        pass


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from([6, 17]), st.integers(0, 65535), st.integers(0, 65535),
                          st.integers(0, 255), st.binary(max_size=200)), max_size=20))
def test_engine_never_raises_on_arbitrary_payloads(packets):
    eng = Engine()
    for proto, sport, dport, flags, payload in packets:
        if proto == 6:
            l4 = tcp(sport, dport, "", 0, 0, payload)
            l4 = l4[:13] + bytes([flags]) + l4[14:]
        else:
            from tests.pcapgen import udp
            l4 = udp(sport, dport, payload)
        eng.feed(1, 1.0, ether(ip(C, S, proto, l4)))


def _deliver(record: bytes, cuts: list[int], order: list[int], dups: list[int], withhold: int | None):
    eng = Engine()
    eng.feed(1, 0.0, ether(ipv4(C, S, 6, tcp(40000, 443, "S", 999))))
    bounds = [0, *sorted(set(cuts)), len(record)]
    pieces = [(bounds[i], record[bounds[i]:bounds[i + 1]]) for i in range(len(bounds) - 1)]
    pieces = [p for p in pieces if p[1]]
    seq = [pieces[i % len(pieces)] for i in order] + pieces + [pieces[i % len(pieces)] for i in dups]
    sent = set()
    for off, data in seq:
        if withhold is not None and off == pieces[withhold % len(pieces)][0]:
            continue
        eng.feed(1, 1.0, ether(ipv4(C, S, 6, tcp(40000, 443, "PA", 1000 + off, 1, data))))
        sent.add(off)
    return eng, pieces


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([HELLO, BIG_HELLO]),
       st.lists(st.integers(1, len(BIG_HELLO) - 1), max_size=8),
       st.lists(st.integers(0, 20), max_size=10),
       st.lists(st.integers(0, 20), max_size=4))
def test_sni_found_in_any_segmentation_order_and_duplication(record, cuts, order, dups):
    cuts = [c for c in cuts if c < len(record)]
    eng, _ = _deliver(record, cuts, order, dups, None)
    assert "split.anthropic.test" in eng.hosts


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(1, len(BIG_HELLO) - 1), min_size=1, max_size=6), st.integers(0, 10))
def test_missing_piece_means_no_sni_until_it_arrives(cuts, withhold):
    record = BIG_HELLO
    eng = Engine()
    eng.feed(1, 0.0, ether(ipv4(C, S, 6, tcp(40000, 443, "S", 999))))
    bounds = [0, *sorted(set(cuts)), len(record)]
    pieces = [(bounds[i], record[bounds[i]:bounds[i + 1]]) for i in range(len(bounds) - 1)]
    held = pieces[withhold % len(pieces)]
    for off, data in pieces:
        if (off, data) != held:
            eng.feed(1, 1.0, ether(ipv4(C, S, 6, tcp(40000, 443, "PA", 1000 + off, 1, data))))
    assert "split.anthropic.test" not in eng.hosts
    eng.feed(1, 2.0, ether(ipv4(C, S, 6, tcp(40000, 443, "PA", 1000 + held[0], 1, held[1]))))
    assert "split.anthropic.test" in eng.hosts


def test_big_hello_is_post_quantum_sized():
    assert 1800 < len(BIG_HELLO) < 2100
    assert tls.parse_client_hello(tls.handshake_from_records(BIG_HELLO)).sni == "split.anthropic.test"

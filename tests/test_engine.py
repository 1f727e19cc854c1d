"""The engine on crafted captures that carry real ClientHello bytes from Python's TLS stack.

Each test builds the packets of a scenario (split, reordered, retransmitted, dropped,
refused, proxied...) and checks the host list a user would read.
"""

from __future__ import annotations

import pytest

from tests.pcapgen import Conversation, python_client_hello, write_pcap, write_pcapng, ip, udp
from egress_tui.core.engine import Engine, analyze_file
from egress_tui.wire.pcapfile import PcapError

C4, S4, R4 = "10.1.0.2", "198.18.64.10", "10.1.0.53"
C6, S6 = "fd65:6774::2", "fd65:6774:1::10"


def run(conv: Conversation, tmp_path, link: int = 1, ng: bool = False) -> dict[str, dict]:
    p = str(tmp_path / ("c.pcapng" if ng else "c.pcap"))
    (write_pcapng if ng else write_pcap)(p, conv.frames, link)
    eng = analyze_file(p)
    return {h.name: h.to_row() for h in eng.host_list()}


def tls_conn(conv: Conversation, sni: str, cuts=(), order=None, client=C4, server=S4, port=443,
             cport=50000, alpn=("h2", "http/1.1")) -> bytes:
    hello = python_client_hello(sni, list(alpn))
    seq, ack = conv.tcp_open(client, cport, server, port)
    conv.segments(client, cport, server, port, seq, ack, hello, list(cuts), order)
    return hello


@pytest.mark.parametrize("link", [1, 113, 276, 101])
@pytest.mark.parametrize("ng", [False, True])
def test_sni_over_every_link_type_and_file_format(tmp_path, link, ng):
    conv = Conversation(link=link)
    tls_conn(conv, "api.anthropic.com")
    hosts = run(conv, tmp_path, link, ng)
    h = hosts["api.anthropic.com"]
    assert h.via == ["tls"]
    assert h.addresses == [S4]
    assert h.ports == [443]
    assert h.outcomes == {"connected": 1}
    assert h.alpn == ["h2", "http/1.1"]
    assert h.ja4[0].startswith("t13d") and h.ja4[0][8:10] == "h2"
    assert "1.3" in h.tls_versions


@pytest.mark.parametrize("cuts,order", [
    ([100], None),                      # SNI in the first of two segments... or not: see next
    ([20], None),                       # SNI entirely in the second segment
    ([3], None),                        # record header itself split
    ([60, 120, 300], None),             # four segments
    ([150], [1, 0]),                    # out of order
    ([100, 200], [2, 0, 1]),            # out of order, three pieces
    ([150], [0, 1, 1, 0]),              # retransmissions of both pieces
])
def test_split_client_hello(tmp_path, cuts, order):
    conv = Conversation()
    tls_conn(conv, "bedrock-runtime.ap-northeast-1.amazonaws.com", cuts, order)
    hosts = run(conv, tmp_path)
    assert "bedrock-runtime.ap-northeast-1.amazonaws.com" in hosts
    assert hosts["bedrock-runtime.ap-northeast-1.amazonaws.com"].via == ["tls"]


def test_overlapping_retransmission_with_different_boundaries(tmp_path):
    conv = Conversation()
    hello = python_client_hello("overlap.test")
    seq, ack = conv.tcp_open(C4, 50001, S4, 443)
    emit = lambda off, end: conv.emit(ip(C4, S4, 6, __import__("tests.pcapgen", fromlist=["tcp"]).tcp(
        50001, 443, "PA", seq + off, ack, hello[off:end])))
    emit(0, 90)
    emit(200, 400)        # a hole before this one
    emit(60, 250)         # overlaps both neighbours
    emit(380, len(hello))
    assert "overlap.test" in run(conv, tmp_path)


def test_ipv6_with_extension_header(tmp_path):
    from tests.pcapgen import ether, ipv6, tcp
    conv = Conversation()
    hello = python_client_hello("v6.test")
    for pkt in (tcp(50002, 443, "S", 1), ):
        conv.frames.append((1.0, ether(ipv6(C6, S6, 6, pkt, ext=True))))
    conv.frames.append((1.1, ether(ipv6(S6, C6, 6, tcp(443, 50002, "SA", 9, 2), ext=True))))
    conv.frames.append((1.2, ether(ipv6(C6, S6, 6, tcp(50002, 443, "PA", 2, 10, hello), ext=True))))
    h = run(conv, tmp_path)["v6.test"]
    assert h.addresses == [S6]
    assert h.outcomes == {"connected": 1}


def test_vlan_tagged_frames(tmp_path):
    from tests.pcapgen import ether, ipv4, tcp
    hello = python_client_hello("vlan.test")
    conv = Conversation()
    conv.frames = [(1.0, ether(ipv4(C4, S4, 6, tcp(50003, 443, "S", 1)), vlan=42)),
                   (1.1, ether(ipv4(C4, S4, 6, tcp(50003, 443, "PA", 2, 0, hello)), vlan=42))]
    assert "vlan.test" in run(conv, tmp_path)


def test_dropped_connection_is_named_from_dns_and_unanswered(tmp_path):
    conv = Conversation()
    conv.dns(C4, R4, "api.anthropic.com", [("api.anthropic.com", 1, S4)])
    conv.tcp_open(C4, 50004, S4, 443, answer="none")
    h = run(conv, tmp_path)["api.anthropic.com"]
    assert h.via == ["dns"]
    assert h.outcomes == {"unanswered": 1}
    assert h.blocked is True
    assert h.resolved == [S4]
    assert h.connections == 1


def test_refused_connection(tmp_path):
    conv = Conversation()
    conv.dns(C4, R4, "closed.test", [("closed.test", 1, S4)])
    conv.tcp_open(C4, 50005, S4, 8443, answer="rst")
    h = run(conv, tmp_path)["closed.test"]
    assert h.outcomes == {"refused": 1}
    assert h.ports == [8443]


def test_icmp_unreachable_counts_as_refused(tmp_path):
    from tests.pcapgen import ipv4, tcp
    conv = Conversation()
    syn = ipv4(C4, S4, 6, tcp(50006, 443, "S", 1))
    conv.emit(syn)
    conv.emit(ipv4(S4, C4, 1, bytes([3, 3, 0, 0, 0, 0, 0, 0]) + syn[:28]))
    h = run(conv, tmp_path)[S4]
    assert h.outcomes == {"refused": 1}


def test_cname_chain_names_the_address_after_the_name_asked(tmp_path):
    conv = Conversation()
    conv.dns(C4, R4, "statsig.anthropic.com", [
        ("statsig.anthropic.com", 5, "edge.cdn.test"),
        ("edge.cdn.test", 5, "e1.cdn.test"),
        ("e1.cdn.test", 1, S4)])
    seq, ack = conv.tcp_open(C4, 50007, S4, 80)
    conv.segments(C4, 50007, S4, 80, seq, ack, b"\x00\x01binary protocol", [])
    hosts = run(conv, tmp_path)
    h = hosts["statsig.anthropic.com"]
    assert h.cnames == ["edge.cdn.test", "e1.cdn.test"]
    assert h.connections == 1 and h.addresses == [S4]
    assert "edge.cdn.test" not in hosts


def test_sni_wins_over_dns_name(tmp_path):
    conv = Conversation()
    conv.dns(C4, R4, "alias.test", [("alias.test", 1, S4)])
    tls_conn(conv, "real.test")
    hosts = run(conv, tmp_path)
    assert hosts["real.test"].connections == 1
    assert hosts["alias.test"].connections == 0
    assert hosts["alias.test"].via == ["dns"]


def test_http_host_header_and_connect_proxy(tmp_path):
    conv = Conversation()
    seq, ack = conv.tcp_open(C4, 50008, S4, 80)
    conv.segments(C4, 50008, S4, 80, seq, ack,
                  b"GET / HTTP/1.1\r\nUser-Agent: x\r\nHost: Plain.Test:8080\r\n\r\n", [20])
    seq, ack = conv.tcp_open(C4, 50009, S4, 3128)
    conv.segments(C4, 50009, S4, 3128, seq, ack,
                  b"CONNECT api.anthropic.com:443 HTTP/1.1\r\nHost: api.anthropic.com:443\r\n\r\n", [])
    hosts = run(conv, tmp_path)
    assert hosts["plain.test"].via == ["http"]
    # a CONNECT names the destination asked for (the port too), not the proxy
    assert hosts["api.anthropic.com"].via == ["proxy"]
    assert hosts["api.anthropic.com"].ports == [443]
    assert hosts["api.anthropic.com"].proxies == [f"{S4}:3128"]


def test_dns_only_and_nxdomain(tmp_path):
    conv = Conversation()
    conv.dns(C4, R4, "gone.test", [], rcode=3)
    conv.dns(C4, R4, "v6only.test", [("v6only.test", 28, S6)], qtype=28)
    hosts = run(conv, tmp_path)
    assert hosts["gone.test"].dns_rcodes == ["NXDOMAIN"]
    assert hosts["gone.test"].connections == 0
    assert hosts["v6only.test"].resolved == [S6]


def test_quic_initial_from_aioquic(tmp_path):
    aioquic = pytest.importorskip("aioquic")  # noqa: F841 - a test dependency, always installed
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.connection import QuicConnection
    conf = QuicConfiguration(is_client=True, server_name="quic.test", alpn_protocols=["h3"])
    qc = QuicConnection(configuration=conf)
    qc.connect((S4, 443), now=0.0)
    conv = Conversation()
    for dgram, _addr in qc.datagrams_to_send(now=0.0):
        conv.emit(ip(C4, S4, 17, udp(51000, 443, dgram)))
    h = run(conv, tmp_path)["quic.test"]
    assert h.via == ["quic"]
    assert h.alpn == ["h3"]
    assert h.ja4[0].startswith("q13d")
    assert h.outcomes == {"unanswered": 1}


def test_connection_before_its_dns_answer_is_renamed(tmp_path):
    """Capture order can put the SYN before the answer (two interfaces merged)."""
    conv = Conversation()
    conv.tcp_open(C4, 50010, S4, 443, answer="none")
    conv.dns(C4, R4, "late.test", [("late.test", 1, S4)])
    hosts = run(conv, tmp_path)
    assert hosts["late.test"].connections == 1
    assert S4 not in hosts


def test_flow_table_is_bounded():
    eng = Engine(max_flows=1000)
    conv = Conversation()
    for i in range(3000):
        conv.emit(ip(C4, f"198.18.{64 + i // 250}.{i % 250 + 1}", 6,
                     __import__("tests.pcapgen", fromlist=["tcp"]).tcp(40000 + i % 20000, 443, "S", i)))
    for lt_ts, fr in conv.frames:
        eng.feed(1, lt_ts, fr)
    assert len(eng.flows) <= 1000
    assert eng.evicted >= 2000
    assert len(eng.hosts) == 3000  # what was learned survives eviction


def test_truncated_file_is_an_error(tmp_path):
    conv = Conversation()
    tls_conn(conv, "x.test")
    p = tmp_path / "t.pcap"
    write_pcap(str(p), conv.frames)
    p.write_bytes(p.read_bytes()[:-30])
    with pytest.raises(PcapError, match="truncated"):
        analyze_file(str(p))


def test_unknown_link_type_is_an_error(tmp_path):
    p = tmp_path / "usb.pcap"
    write_pcap(str(p), [(1.0, b"\x00" * 40)], linktype=189)
    with pytest.raises(PcapError, match="link type 189 is not supported"):
        analyze_file(str(p))

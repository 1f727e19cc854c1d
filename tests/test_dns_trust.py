"""The DNS trust model: which answers may name an address or feed the firewall.

A process in the watched container can send anything, including packets that look like DNS
answers. Only an answer from one of the container's resolvers, to a query the container
sent (ID, ports, question), that the container did not send itself, names addresses.
"""

from __future__ import annotations

import struct

import pytest

from tests.dnsbomb import compression_bomb
from tests.pcapgen import (PACKET_HOST, PACKET_OUTGOING, Conversation, dns_message, ether, ip, sll2, tcp, udp)
from egress_tui.wire import dns
from egress_tui.core.engine import Engine

CLIENT = "198.18.0.10"
RESOLVER = "198.18.0.2"
FORGED = "6.6.6.6"
NAME = "api.anthropic.com"


def feed(frames, link=1, **kw) -> Engine:
    eng = Engine(**kw)
    for t, fr in frames:
        eng.feed(link, t, fr)
    return eng


def query(ident=0x1234, sport=40000, name=NAME, server=RESOLVER, qtype=1):
    return ip(CLIENT, server, 17, udp(sport, 53, dns_message(ident, name, qtype, [], False)))


def answer(ident=0x1234, dport=40000, name=NAME, addr="198.18.64.7", src=RESOLVER, sport=53, qname=None,
           extra=()):
    ans = [(name, 1, addr), *extra]
    return ip(src, CLIENT, 17, udp(sport, dport, dns_message(ident, qname or name, 1, ans, True)))


def connect(addr, port=443, cport=50000):
    return ip(CLIENT, addr, 6, tcp(cport, port, "S", 1000))


def frames(*packets, wrap=ether):
    return [(1_700_000_000 + i * 0.01, wrap(p)) for i, p in enumerate(packets)]


def row(eng, name):
    return eng.hosts[name].to_row()


def test_a_matching_answer_names_the_address():
    eng = feed(frames(query(), answer(), connect("198.18.64.7")))
    assert "198.18.64.7" in row(eng, NAME).addresses
    assert row(eng, NAME).suspicious_dns == 0 and eng.suspicious_count == 0


def test_unsolicited_forged_answer_names_nothing():
    """The issue's attack: one UDP packet shaped like a DNS response, no query behind it."""
    eng = feed(frames(answer(addr=FORGED, src=CLIENT, dport=40000), connect(FORGED)))
    assert FORGED in eng.hosts  # the connection stays named by its bare address
    assert FORGED not in row(eng, NAME).resolved and FORGED not in row(eng, NAME).addresses
    r = row(eng, NAME)
    assert r.suspicious_dns == 1
    assert "answers no query" in r.suspicious[0]["reason"]
    assert r.suspicious[0]["claims"] == [f"{NAME} A {FORGED}"]


@pytest.mark.parametrize("bad, reason", [
    (dict(ident=0x9999), "answers no query"),
    (dict(dport=40001), "answers no query"),
    (dict(src="198.18.0.3"), "but the query went to 198.18.0.2"),
    (dict(qname="other.example"), "question is not the one"),
])
def test_answers_that_do_not_match_their_query(bad, reason):
    eng = feed(frames(query(), answer(addr=FORGED, **bad), connect(FORGED)))
    assert FORGED in eng.hosts
    assert eng.suspicious_count == 1 and reason in eng.suspicious[0]["reason"]


def test_an_answer_from_another_port_is_no_dns_answer():
    eng = feed(frames(query(), answer(addr=FORGED, sport=5353), connect(FORGED)))
    assert FORGED in eng.hosts and FORGED not in eng.addr_name


def test_configured_resolvers_are_the_only_ones_believed():
    pkts = (query(server="9.9.9.9"), answer(addr=FORGED, src="9.9.9.9"), connect(FORGED))
    assert FORGED in feed(frames(*pkts), resolvers=[RESOLVER]).hosts
    assert NAME in feed(frames(*pkts)).addr_name.values()  # a file: resolvers inferred from queries
    called = []
    eng = Engine(resolvers=[RESOLVER])
    eng.on_dns_answer = lambda *a: called.append(a)
    for t, fr in frames(query(), answer()):
        eng.feed(1, t, fr)
    assert called == [(NAME, "198.18.64.7", 300)]


def test_inferred_resolvers_never_feed_a_firewall():
    """Without configured resolvers (a capture file) nothing is handed to a firewall."""
    eng = Engine()
    called = []
    eng.on_dns_answer = lambda *a: called.append(a)
    for t, fr in frames(query(), answer()):
        eng.feed(1, t, fr)
    assert eng.addr_name["198.18.64.7"] == NAME and called == []


def test_a_query_source_is_not_a_resolver():
    """The container "queries" itself from a spoofed peer, then answers as that resolver."""
    spoofed_q = ip(RESOLVER, CLIENT, 17, udp(40000, 53, dns_message(7, NAME, 1, [], False)))
    forged = ip(CLIENT, RESOLVER, 17, udp(53, 40000, dns_message(7, NAME, 1, [(NAME, 1, FORGED)], True)))
    eng = feed(frames(query(), spoofed_q, forged, connect(FORGED)))
    assert FORGED in eng.hosts and eng.suspicious_count == 1


def test_an_answer_the_container_sent_itself_is_not_believed():
    """With direction (Linux cooked captures, and egress-tui's live capture) a spoofed
    resolver address gives the forgery away: it left through the container's own eth0."""
    out = lambda p: sll2(p, PACKET_OUTGOING)  # noqa: E731
    pk = [(query(), sll2), (answer(addr=FORGED), out), (connect(FORGED), out)]
    eng = feed([(1_700_000_000 + i * 0.01, w(p)) for i, (p, w) in enumerate(pk)], link=276)
    assert FORGED in eng.hosts
    assert eng.suspicious[0]["reason"] == "sent by the container itself"
    # on loopback every packet is the container's own: there the resolver address decides
    lo = lambda p: sll2(p, PACKET_OUTGOING, hatype=772)  # noqa: E731
    eng = feed([(1_700_000_000 + i * 0.01, lo(p)) for i, p in enumerate((query(), answer()))], link=276)
    assert eng.addr_name["198.18.64.7"] == NAME
    eng = feed(frames(query(), answer(), wrap=lambda p: sll2(p, PACKET_HOST)), link=276)
    assert eng.addr_name["198.18.64.7"] == NAME


def test_docker_embedded_resolver_port_rewrite():
    """Docker moves queries to 127.0.0.11 to a random port; the answer comes from port 53."""
    q = ip("127.0.0.1", "127.0.0.11", 17, udp(41000, 43555, dns_message(5, NAME, 1, [], False)))
    a = ip("127.0.0.11", "127.0.0.1", 17, udp(53, 41000, dns_message(5, NAME, 1, [(NAME, 1, "198.18.64.7")], True)))
    eng = feed(frames(q, a), resolvers=["127.0.0.11", RESOLVER])
    assert eng.addr_name["198.18.64.7"] == NAME and eng.suspicious_count == 0


def test_records_off_the_question_chain_name_nothing():
    """A real answer about evil.example that slips in a record for an allowed name."""
    eng = feed(frames(query(name="evil.example"),
                      answer(name="evil.example", addr="198.18.64.9", extra=[(NAME, 1, FORGED)]),
                      connect(FORGED)))
    assert eng.addr_name.get("198.18.64.9") == "evil.example"
    assert FORGED not in eng.addr_name and FORGED in eng.hosts


def test_a_second_different_answer_withdraws_the_first():
    withdrawn = []
    eng = Engine(resolvers=[RESOLVER])
    eng.on_dns_withdraw = lambda name, addr: withdrawn.append((name, addr))
    for t, fr in frames(query(), answer(addr=FORGED), connect(FORGED), answer(addr="198.18.64.7")):
        eng.feed(1, t, fr)
    assert withdrawn == [(NAME, FORGED)]
    assert FORGED not in eng.addr_name and FORGED in eng.hosts  # the connection lost the name
    assert "second, different answer" in eng.suspicious[-1]["reason"]
    # the same answer twice is a harmless repeat: nothing withdrawn
    eng = feed(frames(query(), answer(), answer()))
    assert eng.addr_name["198.18.64.7"] == NAME


def test_a_retried_query_may_be_answered_twice():
    eng = feed(frames(query(), query(), answer(), answer()))
    assert eng.suspicious_count == 0 and eng.addr_name["198.18.64.7"] == NAME


def test_dns_over_tcp_answers_sent_by_the_container():
    conv = Conversation(link=276)
    conv.wrap = lambda p: sll2(p, PACKET_HOST)
    seq, ack = conv.tcp_open(CLIENT, 40100, RESOLVER, 53)
    q = dns_message(9, NAME, 1, [], False)
    conv.emit(ip(CLIENT, RESOLVER, 6, tcp(40100, 53, "PA", seq, ack, struct.pack("!H", len(q)) + q)))
    r = dns_message(9, NAME, 1, [(NAME, 1, FORGED)], True)
    conv.wrap = lambda p: sll2(p, PACKET_OUTGOING)
    conv.emit(ip(RESOLVER, CLIENT, 6, tcp(53, 40100, "PA", ack, seq + len(q) + 2, struct.pack("!H", len(r)) + r)))
    eng = feed(conv.frames, link=276)
    assert FORGED not in eng.addr_name and eng.suspicious[0]["reason"] == "sent by the container itself"


def test_malformed_answers_are_flagged():
    bomb = compression_bomb()
    eng = feed(frames(query(ident=0x4242, name="a"), ip(RESOLVER, CLIENT, 17, udp(53, 40000, bomb))))
    assert eng.suspicious_count == 1 and eng.suspicious[0]["reason"].startswith("malformed DNS answer")


# -- the parser's limits --------------------------------------------------------------------

def test_compression_bomb_is_rejected_in_linear_time(monkeypatch):
    """Each label of a message is decoded at most once, however names chain through pointers."""
    calls = []
    real = dns._label_text
    monkeypatch.setattr(dns, "_label_text", lambda b: calls.append(1) or real(b))
    for backwards in (True, False):
        calls.clear()
        msg = compression_bomb(backwards=backwards)
        with pytest.raises(dns.DnsError):
            dns.parse(msg)
        assert len(calls) <= len(msg) // 2


def test_many_names_sharing_suffixes_cost_each_label_once(monkeypatch):
    """Within the limits: 200 answers whose owners all point into one long name."""
    long_name = ".".join(["l" * 60] * 4)          # 245 octets on the wire
    msg = bytearray(dns_message(1, long_name, 1, [], True))
    rr = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes(4)
    msg[6:8] = struct.pack("!H", 200)
    msg += rr * 200
    calls = []
    real = dns._label_text
    monkeypatch.setattr(dns, "_label_text", lambda b: calls.append(1) or real(b))
    m = dns.parse(bytes(msg))
    assert len(m.answers) == 200 and m.answers[-1].owner == long_name
    assert len(calls) == 4


@pytest.mark.parametrize("labels, ok", [(["a" * 63, "test"], True), (["a" * 64, "test"], False),
                                        (["a" * 63] * 3 + ["b" * 61], True), (["a" * 63] * 4, False)])
def test_rfc1035_limits(labels, ok):
    wire = b"".join(bytes([len(x)]) + x.encode() for x in labels) + b"\0"
    msg = struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0) + wire + struct.pack("!HH", 1, 1)
    if ok:
        assert dns.parse(msg).questions[0][0] == ".".join(labels)
    else:
        with pytest.raises(dns.DnsError):
            dns.parse(msg)


def test_a_dot_inside_a_label_cannot_pass_for_a_real_name():
    wire = bytes([17]) + b"api.anthropic.com" + b"\0"
    msg = struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0) + wire + struct.pack("!HH", 1, 1)
    assert dns.parse(msg).questions[0][0] == "api\\046anthropic\\046com"


def test_a_short_last_record_is_not_a_traceback(tmp_path):
    """A record shorter than an Ethernet header at the end of a read buffer."""
    from tests.pcapgen import write_pcap
    from egress_tui.core.engine import analyze_file
    p = tmp_path / "short.pcap"
    write_pcap(str(p), [(1.0, ether(query())), (2.0, b"\x00\x01\x02\x03\x04")])
    eng = analyze_file(str(p))
    assert eng.packets == 2 and NAME in eng.hosts


# -- where a user sees it ---------------------------------------------------------------------

def test_report_marks_suspicious_dns(tmp_path):
    from tests.pcapgen import write_pcap
    from egress_tui.cli import main
    p = tmp_path / "forged.pcap"
    write_pcap(str(p), frames(answer(addr=FORGED, src=CLIENT), connect(FORGED)))
    out = tmp_path / "r.txt"
    assert main(["report", "--pcap", str(p), "--preset", "anthropic", "-o", str(out)]) == 0
    line = next(ln for ln in out.read_text().splitlines() if ln.startswith(NAME))
    assert line.rstrip().endswith("allowed, 1 suspicious DNS")
    assert main(["report", "--pcap", str(p), "--format", "json", "-o", str(out)]) == 0
    import json
    data = json.loads(out.read_text())
    assert data["suspicious_dns"] == 1
    host = next(h for h in data["hosts"] if h["name"] == NAME)
    assert host["suspicious"][0]["claims"] == [f"{NAME} A {FORGED}"] and host["suspicious"][0]["time"].endswith("Z")


@pytest.mark.asyncio
async def test_the_screen_marks_the_claimed_name_and_says_why(tmp_path):
    from tests.pcapgen import write_pcap
    from tests.test_app import SIZE, screen_text, wait_replay
    from egress_tui.ui.app import AppConfig, create_app
    p = tmp_path / "forged.pcap"
    write_pcap(str(p), frames(answer(addr=FORGED, src=CLIENT), connect(FORGED)))
    app = create_app(AppConfig(pcap=str(p), speed=0, presets=["anthropic"]))
    async with app.run_test(size=SIZE) as pilot:
        await wait_replay(app, pilot)
        t = app.main.table
        assert t.get_cell(NAME, "verdict").plain == "allowed, 1 suspicious DNS"
        t.move_cursor(row=t.get_row_index(NAME))
        await pilot.pause()
        text = screen_text(app)
        assert "DNS answer not believed: answers no query the container sent" in text
        assert f"claimed {NAME} A {FORGED}" in " ".join(text.split())

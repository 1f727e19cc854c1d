"""DNS message parsing: questions, A/AAAA/CNAME answers, compression, SVCB hints, bad input."""

from __future__ import annotations

import struct

import pytest

from tests.pcapgen import dns_message
from egress_tui.wire import dns


def test_query_and_answers():
    m = dns.parse(dns_message(7, "api.anthropic.com", 1, [("api.anthropic.com", 5, "x.cdn.test"),
                                                          ("x.cdn.test", 1, "198.18.64.1"),
                                                          ("x.cdn.test", 28, "fd65:6774:1::1")], True))
    assert m.response and m.rcode == 0
    assert m.questions == [("api.anthropic.com", 1)]
    assert [(a.owner, a.rtype, a.value) for a in m.answers] == [
        ("api.anthropic.com", 5, "x.cdn.test"), ("x.cdn.test", 1, "198.18.64.1"),
        ("x.cdn.test", 28, "fd65:6774:1::1")]


def test_compressed_names():
    q = dns_message(1, "a.example.test", 1, [], True)
    # an answer whose owner is a pointer to the question name (offset 12)
    ans = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes([198, 18, 0, 9])
    msg = q[:6] + b"\x00\x01" + q[8:] + ans
    m = dns.parse(msg)
    assert m.answers[0].owner == "a.example.test" and m.answers[0].value == "198.18.0.9"


def test_compression_loop_is_rejected():
    msg = struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c" + b"\x00\x01\x00\x01"
    with pytest.raises(dns.DnsError):
        dns.parse(msg)


def test_https_record_target_and_hints():
    q = dns_message(2, "svc.test", 65, [], True)
    target = b"\x04edge\x04test\x00"
    params = struct.pack("!HH", 1, 3) + b"\x02h3" + struct.pack("!HH4s", 4, 4, bytes([198, 18, 1, 2]))
    rdata = struct.pack("!H", 1) + target + params
    ans = b"\xc0\x0c" + struct.pack("!HHIH", 65, 1, 300, len(rdata)) + rdata
    msg = q[:6] + b"\x00\x01" + q[8:] + ans
    a = dns.parse(msg).answers[0]
    assert a.value == "edge.test" and a.hints == ["198.18.1.2"]


@pytest.mark.parametrize("data", [b"", b"\x00" * 11, b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x3f"])
def test_garbage(data):
    with pytest.raises(dns.DnsError):
        dns.parse(data)

"""ClientHello parsing and JA4, on bytes from real TLS stacks and a published fingerprint."""

from __future__ import annotations

import struct

import pytest

from tests.pcapgen import python_client_hello
from egress_tui.wire import tls


def _hello(ciphers, exts, legacy=0x0303) -> bytes:
    """A ClientHello with exactly these ciphers and (type, body) extensions."""
    ext_bytes = b"".join(struct.pack("!HH", t, len(b)) + b for t, b in exts)
    body = (struct.pack("!H", legacy) + b"\x11" * 32 + b"\x00"
            + struct.pack("!H", 2 * len(ciphers)) + b"".join(struct.pack("!H", c) for c in ciphers)
            + b"\x01\x00" + struct.pack("!H", len(ext_bytes)) + ext_bytes)
    return b"\x01" + len(body).to_bytes(3, "big") + body


def _u16list(vals, width=2):
    data = b"".join(struct.pack("!H", v) for v in vals)
    return (len(data).to_bytes(width, "big") if width else b"") + data


def test_python_ssl_client_hello():
    rec = python_client_hello("api.anthropic.com", ["h2", "http/1.1"])
    msg = tls.handshake_from_records(rec)
    h = tls.parse_client_hello(msg)
    assert h.sni == "api.anthropic.com"
    assert h.alpn == ["h2", "http/1.1"]
    assert h.versions[0] == "1.3"
    assert h.ech is False
    assert h.ja4.startswith("t13d") and h.ja4[8:10] == "h2"
    assert tls.parse_client_hello(msg, "q").ja4.startswith("q13d")


def test_ja4_matches_a_published_chrome_fingerprint():
    """Chrome 143 as published with its raw (JA4_r/JA3) lists: same inputs, same JA4."""
    ciphers = [0x3A3A, 4865, 4866, 4867, 49195, 49199, 49196, 49200, 52393, 52392, 49171, 49172,
               156, 157, 47, 53]
    sigalgs = [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601]
    sni = b"tls.browserleaks.com"
    bodies = {
        0: struct.pack("!HBH", len(sni) + 3, 0, len(sni)) + sni,
        16: b"\x00\x0c\x02h2\x08http/1.1",
        13: _u16list(sigalgs),
        43: b"\x06\x2a\x2a\x03\x04\x03\x03",
        10: _u16list([4588, 29, 23, 24]),
    }
    order = [0x2A2A, 45, 51, 16, 65037, 23, 17613, 0, 11, 10, 43, 65281, 35, 18, 5, 13, 27, 0x4A4A]
    h = tls.parse_client_hello(_hello(ciphers, [(t, bodies.get(t, b"")) for t in order]))
    assert h.ja4 == "t13d1516h2_8daaf6152771_d8a2da3f94cd"
    assert h.ech is True            # 65037 = 0xfe0d
    assert h.sni == "tls.browserleaks.com"
    assert 4588 in h.groups         # X25519MLKEM768: the post-quantum key share


@pytest.mark.parametrize("alpn,expected", [
    (None, "00"), ("h2", "h2"), ("http/1.1", "h1"), ("h3", "h3"), ("\x07x\x09", "09")])
def test_ja4_alpn_characters(alpn, expected):
    exts = [] if alpn is None else [(16, bytes([0, len(alpn) + 1, len(alpn)]) + alpn.encode())]
    h = tls.parse_client_hello(_hello([0x1301], exts))
    assert h.ja4[8:10] == expected
    assert h.ja4.startswith("t12i")   # no supported_versions: legacy version; no SNI: "i"


def test_ja4_without_extensions_or_ciphers():
    h = tls.parse_client_hello(_hello([], []))
    assert h.ja4 == "t12i000000_000000000000_000000000000"


def test_hello_spread_over_several_records():
    rec = python_client_hello("multi.test")
    msg = tls.handshake_from_records(rec)
    # the same handshake message re-framed into three TLS records
    parts = [msg[:50], msg[50:300], msg[300:]]
    records = b"".join(b"\x16\x03\x01" + struct.pack("!H", len(p)) + p for p in parts)
    for cut in range(1, len(records)):
        assert tls.handshake_from_records(records[:cut]) == tls.NEED_MORE
    assert tls.handshake_from_records(records) == msg


@pytest.mark.parametrize("data", [b"GET / HTTP/1.1\r\n", b"SSH-2.0-OpenSSH", b"\x16\x02\x00", b"\x17\x03\x03\x00\x10"])
def test_not_tls(data):
    assert tls.handshake_from_records(data) == tls.NOT_TLS


def test_grease():
    assert all(tls.is_grease(v) for v in range(0x0A0A, 0x10000, 0x1010))
    assert not tls.is_grease(0x1301) and not tls.is_grease(0x0A1A)

"""Hypothesis strategies for what a hostile container can put on the wire: names, TLS and
DNS fields, whole frames. Shared by the fuzz targets."""

from __future__ import annotations

import struct

from hypothesis import strategies as st

# Pieces an attacker who knows egress-tui would try: terminal escapes, Rich markup, table
# and CSV breakers, bidi and zero-width characters, allow-all allowlist entries.
HOSTILE_PIECES = [
    "\x1b[8m", "\x1b]0;pwned\x07", "\x1b[2J", "\x9b31m", "[/]", "[bold red]", "[link=file:///etc/passwd]x[/link]",
    "|", "\\|", "\n", "\r", "\t", "=cmd|' /C calc'!A0", "+1", "-1", "@SUM(1)", "\u202e", "\u200b", "\ufeff",
    "\x00", "\x7f", "0.0.0.0/0", "::/0", "*.co.uk", "*", "..", ".", "xn--", "api.anthropic.com", "%s%n",
]


# suffixes where a wildcard would cover domains of many owners: ICANN ones and private
# ones (hosting platforms and cloud endpoints), plain, wildcard (*.compute.amazonaws.com)
# and exception (!city.kawasaki.jp) rules
PUBLIC_SUFFIXES = ["com", "co.uk", "uk", "jp", "kawasaki.jp", "city.kawasaki.jp", "github.io",
                   "s3.amazonaws.com", "us-east-1.amazonaws.com", "x.compute.amazonaws.com",
                   "compute.amazonaws.com", "amazonaws.com", "herokuapp.com", "blogspot.com",
                   "appspot.com", "pages.dev", "xn--p1ai", "рф", "test", "localhost", "internal"]

ADDRESSES = ["0.0.0.0/0", "::/0", "0.0.0.0/1", "128.0.0.0/1", "10.0.0.0/8", "10.0.0.1", "127.0.0.1",
             "::", "::1", "[::1]", "fe80::1%eth0", "2001:db8::/32", "::ffff:10.0.0.1", "0", "1",
             "0x7f.0x1", "0x7f000001", "2130706433", "127.1", "0177.0.0.1", "10.0.0.1:443", "1.2.3.4.",
             "0.0.0.0/0.", "10.0.0.0/255.0.0.0"]

NASTY = ["*", "*.", "*.*", "**", "a*.example.com", "*.co.uk", "*.com", "*.github.io", "", ".", "..",
         "example..com", "-a.example", "a-.example", "a_b.example", "a b.example", "[/]", "[bold red]x[/]",
         "[link=https://evil.example]x[/link]", "\x1b[8m", "\x1b]0;pwned\x07", "\x9b31m", "\r", "\n", "\t",
         "\x00", "\u202e", "\u200b", "\u200d", "\ufffd", "ü", "Ü", "ß", "\u212a", "\u0130", "ı", "а",
         "ٱ", "١", "xn--", "xn--abc", "xn--bcher-kva", "XN--BCHER-KVA", "bücher", "ab--cd", "r3---sn-x",
         "a" * 63, "a" * 64, "%2e", "@", ":", "/", "\\"]

_LDH_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789-"


def _labels() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(_LDH_ALPHABET, min_size=1, max_size=12),
        st.sampled_from(NASTY),
        st.text(st.characters(codec="utf-8"), min_size=1, max_size=6),
        st.text("abcÄäöüß.-*[]/", min_size=1, max_size=8),
        st.integers(0, 300).map(str),
    )


def hostile_names(max_pieces: int = 6) -> st.SearchStrategy[str]:
    """Names as a hostile container would send them (SNI, ALPN, HTTP Host, DNS): address
    ranges and addresses (inet_aton spellings too), wildcards, public suffixes from both parts
    of the Public Suffix List, IDNs good and bad, control characters, terminal escapes, Rich
    markup, labels and names just over the limits, and real-looking names built on these."""
    piece = st.one_of(st.sampled_from(HOSTILE_PIECES), st.text(max_size=12))
    suffix = st.sampled_from(PUBLIC_SUFFIXES)
    labels = st.lists(_labels(), min_size=1, max_size=5)
    return st.one_of(
        st.sampled_from(HOSTILE_PIECES),
        st.lists(piece, min_size=1, max_size=max_pieces).map("".join),
        st.binary(min_size=1, max_size=300).map(lambda b: b.decode("latin-1")),
        st.sampled_from(ADDRESSES + NASTY + PUBLIC_SUFFIXES),
        st.builds(lambda ls, s: ".".join([*ls, s]), labels, suffix),
        st.builds(lambda ls, s: "*." + ".".join([*ls, s]), labels, suffix),
        labels.map(".".join),
        st.builds(lambda n, s: ".".join(["a" * 63] * n + [s]), st.integers(1, 5), suffix),
        st.builds(lambda s, t: s + t, st.sampled_from(ADDRESSES + PUBLIC_SUFFIXES),
                  st.sampled_from(["", ".", ":443", "/0"])),
    )


def wire_bytes(name: str) -> bytes:
    """How a hostile client puts a name on the wire: bytes as they come (latin-1 keeps 0-255)."""
    return name.encode("utf-8", "surrogateescape") if any(ord(c) > 255 for c in name) else name.encode("latin-1")


def client_hello(sni: bytes | None, alpn: list[bytes], extra: bytes = b"") -> bytes:
    """A TLS record carrying a ClientHello with exactly these SNI and ALPN bytes."""
    exts = b""
    if sni is not None:
        entry = b"\x00" + struct.pack("!H", len(sni)) + sni
        body = struct.pack("!H", len(entry)) + entry
        exts += struct.pack("!HH", 0, len(body)) + body
    if alpn:
        lst = b"".join(bytes([len(p)]) + p for p in alpn)
        body = struct.pack("!H", len(lst)) + lst
        exts += struct.pack("!HH", 16, len(body)) + body
    exts += extra
    hello = (b"\x03\x03" + b"\x11" * 32 + b"\x00" + struct.pack("!H", 4) + b"\x13\x01\x13\x02" + b"\x01\x00"
             + struct.pack("!H", len(exts)) + exts)
    hs = b"\x01" + len(hello).to_bytes(3, "big") + hello
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def dns_labels() -> st.SearchStrategy[list[bytes]]:
    return st.lists(st.binary(min_size=1, max_size=70), min_size=0, max_size=6)


def mutate(data: bytes) -> st.SearchStrategy[bytes]:
    """A valid message with bytes flipped, cut or inserted."""
    n = max(len(data), 1)
    flips = st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, 255)), max_size=6)
    return st.tuples(flips, st.integers(0, n), st.binary(max_size=8)).map(
        lambda t: _apply(data, *t))


def _apply(data: bytes, flips, cut: int, insert: bytes) -> bytes:
    b = bytearray(data)
    for pos, val in flips:
        if pos < len(b):
            b[pos] = val
    return bytes(b[:cut]) + insert + bytes(b[cut:]) if insert else bytes(b[:max(cut, 1)] if cut < len(b) // 2 else b)

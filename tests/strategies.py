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


def hostile_names(max_pieces: int = 6) -> st.SearchStrategy[str]:
    piece = st.one_of(st.sampled_from(HOSTILE_PIECES), st.text(max_size=12))
    return st.one_of(
        st.sampled_from(HOSTILE_PIECES),
        st.lists(piece, min_size=1, max_size=max_pieces).map("".join),
        st.binary(min_size=1, max_size=300).map(lambda b: b.decode("latin-1")),
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

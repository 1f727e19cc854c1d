"""A hostile-strings corpus, and a capture that puts those strings where a container can.

The watched container controls every SNI, ALPN, HTTP Host header, DNS name and CNAME it sends;
``hostile_capture`` writes them into one pcap (through tests/pcapgen.py) so the report and the
TUI can be fed what an attacker would feed them.
"""

from __future__ import annotations

import struct

from tests.pcapgen import Conversation, write_pcap

ESC_HIDE = "\x1b[8m"             # SGR 8: the terminal conceals everything after it
ESC_TITLE = "\x1b]0;pwned\x07"   # OSC 0: the terminal retitles its window

# Each one breaks something when written as is: the terminal, Rich markup, a CSV cell, a
# Markdown row, or the width of a text table.
STRINGS: list[str] = [
    f"hide{ESC_HIDE}.example",
    f"title{ESC_TITLE}.example",
    "close[/]markup.example",
    "[bold red]x.example",
    "[link=https://evil.example]click[/link].example",
    "pipe|cell.example",
    "back\\|slash.example",
    "line\nbreak.example",
    "carriage\rreturn.example",
    "=cmd|' /C calc'!A0",
    "+1",
    "-2",
    "@SUM(1)",
    "\ttab-first.example",
    "bidi\u202eexe.txt",
    "zero\u200bwidth\ufeff.example",
    "nul\x00byte.example",
    "c1\x9bcsi.example",
    "del\x7fbyte.example",
    "<img src=x onerror=alert(1)>",
    "`tick`*star*_under_",
    "l" * 10_000,
]

# Bytes that are not UTF-8 at all (the dissectors decode with errors="replace").
RAW: list[bytes] = [b"raw\xff\xfe\xc0.example", b"\x1b[2J\x1b[H\x9b31m.example"]

# Everything above as the bytes a container would send.
WIRE: list[bytes] = [s.encode("utf-8") for s in STRINGS] + RAW

CLIENT, RESOLVER = "10.1.0.2", "10.1.0.53"


def server(i: int) -> str:
    return f"198.18.{i // 250}.{i % 250 + 1}"


def client_hello(sni: bytes, alpn: list[bytes]) -> bytes:
    """A TLS 1.3 ClientHello record with exactly this SNI and these ALPN protocols: Python's
    ssl module refuses such names, so the bytes are laid out by hand."""
    def ext(etype: int, body: bytes) -> bytes:
        return struct.pack("!HH", etype, len(body)) + body
    names = b"\x00" + struct.pack("!H", len(sni)) + sni
    protos = b"".join(bytes([len(p)]) + p for p in alpn)
    exts = (ext(0, struct.pack("!H", len(names)) + names)
            + ext(16, struct.pack("!H", len(protos)) + protos)
            + ext(43, b"\x02\x03\x04"))
    body = (b"\x03\x03" + b"\x11" * 32 + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
            + struct.pack("!H", len(exts)) + exts)
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def dns_labels(raw: bytes) -> bytes:
    """A DNS name for these bytes: cut into labels at dots and at the 63-byte label limit,
    and kept under the 255-byte name limit (a well-formed name with hostile characters)."""
    labels = [lb[i:i + 63] for lb in raw.split(b".") if lb for i in range(0, len(lb), 63)]
    out: list[bytes] = []
    for lb in labels:
        if sum(len(x) + 1 for x in out) + len(lb) + 2 > 250:
            break
        out.append(lb)
    return b".".join(out)


def hostile_capture(path: str) -> str:
    """Write a pcap where every corpus string is an SNI (with hostile ALPNs), an HTTP Host,
    and a DNS question whose answer is a hostile CNAME; returns the path."""
    conv = Conversation()
    port = 40000
    for i, raw in enumerate(WIRE):
        addr = server(i)
        # DNS: the name asked, a CNAME to another hostile name, then the address
        name = dns_labels(raw)
        alias = dns_labels(WIRE[(i + 1) % len(WIRE)] + b".cdn")
        conv.dns(CLIENT, RESOLVER, name, [(name, 5, alias), (alias, 1, addr)], sport=port, ident=i + 1)
        port += 1
        # TLS: the corpus string as SNI, the next ones as ALPN protocols (255 bytes at most)
        alpn = [WIRE[(i + k) % len(WIRE)][:255] for k in (2, 3)]
        seq, ack = conv.tcp_open(CLIENT, port, addr, 443)
        conv.segments(CLIENT, port, addr, 443, seq, ack, client_hello(raw, alpn), [])
        port += 1
        # HTTP: the same string as Host header, on another address (same name: the same row).
        # CR and LF would end the header line; 8 KB is as much of a request head as is read.
        if b"\r" not in raw and b"\n" not in raw and len(raw) < 4000:
            seq, ack = conv.tcp_open(CLIENT, port, server(i + 100), 80)
            conv.segments(CLIENT, port, server(i + 100), 80, seq, ack,
                          b"GET / HTTP/1.1\r\nHost: " + raw + b"\r\n\r\n", [])
            port += 1
    write_pcap(path, conv.frames)
    return path

"""Small helpers for unit tests: frames around payloads, pcap/pcapng writers, and real
ClientHello bytes produced by Python's own TLS stack (ssl.MemoryBIO, no network).

The lab tests (tests/test_lab_traffic.py) cover what real clients put on a real wire;
these helpers let fast tests place real handshake bytes into precise segment layouts.
"""

from __future__ import annotations

import socket
import ssl
import struct

ETH_SRC = b"\x02\x00\x00\x00\x00\x01"
ETH_DST = b"\x02\x00\x00\x00\x00\x02"


def python_client_hello(sni: str | None, alpn: list[str] | None = None) -> bytes:
    """The TLS records Python's ssl module sends first, for this SNI and ALPN."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=sni)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def ip_bytes(a: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6 if ":" in a else socket.AF_INET, a)


def ipv4(src: str, dst: str, proto: int, l4: bytes, frag: int = 0) -> bytes:
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, frag, 64, proto, 0,
                       ip_bytes(src), ip_bytes(dst)) + l4


def ipv6(src: str, dst: str, proto: int, l4: bytes, ext: bool = False) -> bytes:
    if ext:  # a hop-by-hop options header in front, to prove extension headers are skipped
        l4 = struct.pack("!BB6s", proto, 0, b"\x01\x04\x00\x00\x00\x00") + l4
        proto = 0
    return struct.pack("!IHBB16s16s", 0x60000000, len(l4), proto, 64, ip_bytes(src), ip_bytes(dst)) + l4


def tcp(sport: int, dport: int, flags: str, seq: int = 0, ack: int = 0, payload: bytes = b"") -> bytes:
    bits = {"F": 1, "S": 2, "R": 4, "P": 8, "A": 16}
    f = sum(bits[c] for c in flags)
    return struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, f,
                       65535, 0, 0) + payload


def udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def ip(src: str, dst: str, proto: int, l4: bytes) -> bytes:
    return (ipv6 if ":" in src else ipv4)(src, dst, proto, l4)


def ether(packet: bytes, vlan: int | None = None) -> bytes:
    etype = 0x86DD if packet[0] >> 4 == 6 else 0x0800
    tag = struct.pack("!HH", 0x8100, vlan) if vlan is not None else b""
    return ETH_DST + ETH_SRC + tag + struct.pack("!H", etype) + packet


PACKET_HOST = 0
PACKET_OUTGOING = 4


def sll(packet: bytes, pkttype: int = PACKET_HOST) -> bytes:
    etype = 0x86DD if packet[0] >> 4 == 6 else 0x0800
    return struct.pack("!HHH8sH", pkttype, 1, 6, ETH_SRC + b"\0\0", etype) + packet


def sll2(packet: bytes, pkttype: int = PACKET_HOST, hatype: int = 1) -> bytes:
    """A Linux cooked v2 frame; pkttype says whether the host sent (4) or received (0) it."""
    etype = 0x86DD if packet[0] >> 4 == 6 else 0x0800
    return struct.pack("!HHIHBB8s", etype, 0, 2, hatype, pkttype, 6, ETH_SRC + b"\0\0") + packet


LINK_WRAP = {1: ether, 113: sll, 276: sll2, 101: lambda p: p}


def write_pcap(path: str, frames: list[tuple[float, bytes]], linktype: int = 1, nanos: bool = False,
               big_endian: bool = False) -> None:
    e = ">" if big_endian else "<"
    magic = 0xA1B23C4D if nanos else 0xA1B2C3D4
    with open(path, "wb") as f:
        f.write(struct.pack(e + "IHHiIII", magic, 2, 4, 0, 0, 262144, linktype))
        for ts, fr in frames:
            sec = int(ts)
            frac = round((ts - sec) * (1e9 if nanos else 1e6))
            f.write(struct.pack(e + "IIII", sec, frac, len(fr), len(fr)) + fr)


def write_pcapng(path: str, frames: list[tuple[float, bytes]], linktype: int = 1,
                 big_endian: bool = False) -> None:
    e = ">" if big_endian else "<"

    def block(btype: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        n = 12 + len(body)
        return struct.pack(e + "II", btype, n) + body + struct.pack(e + "I", n)

    with open(path, "wb") as f:
        f.write(block(0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1)))
        # if_tsresol = 9 (nanoseconds), to prove the option is honoured
        f.write(block(1, struct.pack(e + "HHI", linktype, 0, 262144) + struct.pack(e + "HHB3x", 9, 1, 9)
                      + struct.pack(e + "HH", 0, 0)))
        for ts, fr in frames:
            t = round(ts * 1e9)
            f.write(block(6, struct.pack(e + "IIIII", 0, t >> 32, t & 0xFFFFFFFF, len(fr), len(fr)) + fr))


class Conversation:
    """Builds the packets of TCP connections and DNS exchanges with correct sequence numbers."""

    def __init__(self, t0: float = 1_700_000_000.0, link: int = 1):
        self.t = t0
        self.frames: list[tuple[float, bytes]] = []
        self.wrap = LINK_WRAP[link]

    def emit(self, packet: bytes) -> None:
        self.t += 0.001
        self.frames.append((self.t, self.wrap(packet)))

    def dns(self, client: str, resolver: str, name: str | bytes, answers: list[tuple],
            qtype: int = 1, rcode: int = 0, sport: int = 40000, ident: int = 0x1234) -> None:
        """A query and its response; answers are (owner, type, value) with type 1/28/5."""
        q = dns_message(ident, name, qtype, [], response=False)
        r = dns_message(ident, name, qtype, answers, response=True, rcode=rcode)
        self.emit(ip(client, resolver, 17, udp(sport, 53, q)))
        self.emit(ip(resolver, client, 17, udp(53, sport, r)))

    def tcp_open(self, client: str, cport: int, server: str, sport: int, answer: str = "synack",
                 isn: int = 1000, sisn: int = 5000) -> tuple[int, int]:
        self.emit(ip(client, server, 6, tcp(cport, sport, "S", isn)))
        if answer == "none":
            self.emit(ip(client, server, 6, tcp(cport, sport, "S", isn)))  # a retry
            return isn + 1, 0
        if answer == "rst":
            self.emit(ip(server, client, 6, tcp(sport, cport, "RA", 0, isn + 1)))
            return isn + 1, 0
        self.emit(ip(server, client, 6, tcp(sport, cport, "SA", sisn, isn + 1)))
        self.emit(ip(client, server, 6, tcp(cport, sport, "A", isn + 1, sisn + 1)))
        return isn + 1, sisn + 1

    def segments(self, client: str, cport: int, server: str, sport: int, seq: int, ack: int,
                 data: bytes, cuts: list[int], order: list[int] | None = None) -> None:
        """Send data cut at the given offsets, in the given order of pieces."""
        bounds = [0, *cuts, len(data)]
        pieces = [(bounds[i], data[bounds[i]:bounds[i + 1]]) for i in range(len(bounds) - 1)]
        for i in (order if order is not None else range(len(pieces))):
            off, chunk = pieces[i]
            self.emit(ip(client, server, 6, tcp(cport, sport, "PA", seq + off, ack, chunk)))


def _qname(name: str | bytes) -> bytes:
    raw = name.encode() if isinstance(name, str) else name  # bytes: any label content at all
    return b"".join(bytes([len(lb)]) + lb for lb in raw.split(b".") if lb) + b"\0"


def dns_message(ident: int, name: str | bytes, qtype: int, answers: list[tuple],
                response: bool, rcode: int = 0, ttl: int = 300) -> bytes:
    flags = (0x8180 if response else 0x0100) | rcode
    out = struct.pack("!HHHHHH", ident, flags, 1, len(answers), 0, 0) + _qname(name) + struct.pack("!HH", qtype, 1)
    for owner, rtype, value in answers:
        if rtype == 1:
            rdata = socket.inet_pton(socket.AF_INET, value)
        elif rtype == 28:
            rdata = socket.inet_pton(socket.AF_INET6, value)
        else:
            rdata = _qname(value)
        out += _qname(owner) + struct.pack("!HHIH", rtype, 1, ttl, len(rdata)) + rdata
    return out

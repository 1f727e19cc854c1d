"""Link, IP and transport header decoding straight from bytes.

One function, ``decode``, turns a frame into the few fields the flow table needs.
It is the hot path for every packet, so it avoids objects and uses ``unpack_from``.
"""

from __future__ import annotations

import struct

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_RAW_ALT = 12     # DLT_RAW as some BSD-derived writers number it
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

LINKTYPE_NAMES = {
    LINKTYPE_NULL: "BSD loopback", LINKTYPE_ETHERNET: "Ethernet", LINKTYPE_RAW: "raw IP",
    LINKTYPE_RAW_ALT: "raw IP", LINKTYPE_LOOP: "OpenBSD loopback",
    LINKTYPE_LINUX_SLL: "Linux cooked (SLL)", LINKTYPE_IPV4: "raw IPv4", LINKTYPE_IPV6: "raw IPv6",
    LINKTYPE_LINUX_SLL2: "Linux cooked v2 (SLL2)",
}
SUPPORTED_LINKTYPES = frozenset(LINKTYPE_NAMES)

PROTO_TCP = 6
PROTO_UDP = 17
# Not an IP protocol number: an ICMP/ICMPv6 "destination unreachable" about one of our
# flows. decode() reports the quoted packet's addresses and ports with this protocol.
PROTO_UNREACH = 256

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_ACK = 0x10

_V6_EXT = frozenset((0, 43, 60, 135, 139, 140))  # hop-by-hop, routing, dest opts, mobility, HIP, shim6

_tcp = struct.Struct("!HHIIBB").unpack_from
_udp = struct.Struct("!HH").unpack_from

# (src, dst, proto, sport, dport, tcp_flags, seq, payload_start, payload_end): the payload
# stays in the caller's buffer, so bulk packets never copy their bytes.
Decoded = tuple[bytes, bytes, int, int, int, int, int, int, int]


def l3_offset(linktype: int, b: bytes, start: int = 0, end: int | None = None) -> tuple[int, int]:
    """Return (offset of the IP header, IP version 4/6, or 0 to read it from the header).

    Returns (-1, 0) for frames that carry no IP (ARP, LLDP, ...).
    """
    if end is None:
        end = len(b)
    if linktype == LINKTYPE_ETHERNET:
        off = start + 12
        if end < off + 2:
            return -1, 0
        etype = (b[off] << 8) | b[off + 1]
        while etype in (0x8100, 0x88A8, 0x9100) and end >= off + 6:
            off += 4
            etype = (b[off] << 8) | b[off + 1]
        off += 2
    elif linktype == LINKTYPE_LINUX_SLL2:
        if end - start < 20:
            return -1, 0
        etype = (b[start] << 8) | b[start + 1]
        off = start + 20
    elif linktype == LINKTYPE_LINUX_SLL:
        if end - start < 16:
            return -1, 0
        etype = (b[start + 14] << 8) | b[start + 15]
        off = start + 16
    elif linktype in (LINKTYPE_RAW, LINKTYPE_RAW_ALT):
        return start, 0
    elif linktype == LINKTYPE_IPV4:
        return start, 4
    elif linktype == LINKTYPE_IPV6:
        return start, 6
    elif linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if end - start < 4:
            return -1, 0
        fam = b[start] if b[start] else b[start + 3]
        if fam == 2:
            return start + 4, 4
        if fam in (10, 24, 28, 30):
            return start + 4, 6
        return -1, 0
    else:
        return -1, 0
    if etype == 0x0800:
        return off, 4
    if etype == 0x86DD:
        return off, 6
    return -1, 0


def decode_at(linktype: int, b: bytes, start: int, end: int) -> Decoded | None:
    """Decode the frame b[start:end] down to TCP/UDP; None for anything else or malformed."""
    off, ver = l3_offset(linktype, b, start, end)
    if off < 0:
        return None
    try:
        return decode_ip(b, off, end, ver)
    except (struct.error, IndexError):
        return None


def decode(linktype: int, frame: bytes) -> tuple | None:
    """Decode a whole frame; like decode_at, but with the payload as bytes at the end."""
    d = decode_at(linktype, frame, 0, len(frame))
    if d is None:
        return None
    return (*d[:7], frame[d[7]:d[8]])


def decode_ip(b: bytes, off: int, end: int, ver: int = 0, _inner: bool = False) -> Decoded | None:
    if off >= end:
        return None
    if not ver:
        ver = b[off] >> 4
    if ver == 4:
        vihl = b[off]
        if vihl >> 4 != 4 or end - off < 20:
            return None
        ihl = (vihl & 0x0F) * 4
        total = (b[off + 2] << 8) | b[off + 3]
        if ((b[off + 6] & 0x1F) or b[off + 7]) and not _inner:
            return None  # a non-first fragment carries no transport header
        proto = b[off + 9]
        src = b[off + 12:off + 16]
        dst = b[off + 16:off + 20]
        l4 = off + ihl
        if ihl <= total and off + total < end and not _inner:
            end = off + total  # drop Ethernet padding
    elif ver == 6:
        if b[off] >> 4 != 6 or end - off < 40:
            return None
        plen = (b[off + 4] << 8) | b[off + 5]
        proto = b[off + 6]
        src = b[off + 8:off + 24]
        dst = b[off + 24:off + 40]
        l4 = off + 40
        if plen and l4 + plen < end and not _inner:
            end = l4 + plen
        while proto in _V6_EXT or proto == 44:
            nxt = b[l4]
            if proto == 44:
                if (((b[l4 + 2] << 8) | b[l4 + 3]) & 0xFFF8) and not _inner:
                    return None
                l4 += 8
            else:
                l4 += (b[l4 + 1] + 1) * 8
            proto = nxt
    else:
        return None
    if l4 + 8 > end:
        return None
    if _inner:
        # An ICMP error quotes only 8 bytes of the transport header: the ports.
        if proto not in (PROTO_TCP, PROTO_UDP):
            return None
        sport, dport = _udp(b, l4)
        return src, dst, proto, sport, dport, 0, 0, 0, 0
    if proto == PROTO_TCP:
        if l4 + 20 > end:
            return None
        sport, dport, seq, _ack, doff, flags = _tcp(b, l4)
        hl = (doff >> 4) * 4
        if hl < 20:
            return None
        return src, dst, PROTO_TCP, sport, dport, flags, seq, min(l4 + hl, end), end
    if proto == PROTO_UDP:
        sport, dport = _udp(b, l4)
        return src, dst, PROTO_UDP, sport, dport, 0, 0, l4 + 8, end
    if (proto == 1 and b[l4] == 3) or (proto == 58 and b[l4] == 1):
        inner = decode_ip(b, l4 + 8, end, 0, True)
        if inner is None:
            return None
        isrc, idst, iproto, isport, idport = inner[:5]
        return isrc, idst, PROTO_UNREACH, isport, idport, iproto, 0, 0, 0
    return None

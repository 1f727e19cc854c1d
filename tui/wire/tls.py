"""TLS ClientHello parsing: SNI, ALPN, offered versions, ECH and the JA4 fingerprint.

Pure byte parsing. Works on the handshake message itself, so the same code serves TLS
over TCP (after record reassembly) and QUIC (after CRYPTO frame reassembly).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field

EXT_SERVER_NAME = 0x0000
EXT_SUPPORTED_GROUPS = 0x000A
EXT_SIGNATURE_ALGORITHMS = 0x000D
EXT_ALPN = 0x0010
EXT_SUPPORTED_VERSIONS = 0x002B
EXT_KEY_SHARE = 0x0033
EXT_ECH = 0xFE0D

VERSION_NAMES = {0x0304: "1.3", 0x0303: "1.2", 0x0302: "1.1", 0x0301: "1.0", 0x0300: "SSL3"}
JA4_VERSIONS = {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3",
                0x0002: "s2", 0xFEFF: "d1", 0xFEFD: "d2", 0xFEFC: "d3"}

# Outcomes of looking at the start of a client stream.
NEED_MORE = "need-more"
NOT_TLS = "not-tls"

MAX_HELLO = 1 << 16


GREASE = frozenset(0x0A0A + 0x1010 * i for i in range(16))


def is_grease(v: int) -> bool:
    """GREASE values (RFC 8701) are noise a client adds; fingerprints ignore them."""
    return (v & 0x0F0F) == 0x0A0A and (v >> 8) == (v & 0xFF)


@dataclass(slots=True)
class ClientHello:
    sni: str | None
    alpn: list[str] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)
    ech: bool = False
    ja4: str = ""
    groups: list[int] = field(default_factory=list)


def handshake_from_records(data: bytes) -> bytes | str:
    """Pull the first handshake message out of the TLS records at the start of a stream.

    Returns the handshake message (type, 3-byte length, body) when it is complete,
    NEED_MORE when the bytes so far are a plausible beginning, NOT_TLS otherwise.
    A ClientHello may be spread over several records and each record over several
    TCP segments; the caller hands the contiguous prefix of the stream.
    """
    if not data:
        return NEED_MORE
    if data[0] != 0x16:
        return NOT_TLS
    if len(data) >= 2 and data[1] != 0x03:
        return NOT_TLS
    msg = bytearray()
    pos = 0
    n = len(data)
    while True:
        if pos + 5 > n:
            return NEED_MORE
        if data[pos] != 0x16 or data[pos + 1] != 0x03:
            return NOT_TLS
        rlen = (data[pos + 3] << 8) | data[pos + 4]
        if rlen == 0 or rlen > 16384 + 2048:
            return NOT_TLS
        frag = data[pos + 5:pos + 5 + rlen]
        msg += frag
        if len(msg) >= 4:
            if msg[0] != 0x01:
                return NOT_TLS
            hlen = (msg[1] << 16) | (msg[2] << 8) | msg[3]
            if hlen > MAX_HELLO:
                return NOT_TLS
            if len(msg) >= 4 + hlen:
                return bytes(msg[:4 + hlen])
        if len(frag) < rlen:
            return NEED_MORE
        pos += 5 + rlen


def parse_client_hello(msg: bytes, transport: str = "t") -> ClientHello | None:
    """Parse a ClientHello handshake message; None if it is not one or is malformed.

    ``transport`` is JA4's first letter: ``t`` for TCP, ``q`` for QUIC.
    """
    try:
        return _parse(msg, transport)
    except (IndexError, struct.error, ValueError):
        return None


def _u16(b: bytes, p: int) -> int:
    if p + 2 > len(b):
        raise IndexError
    return (b[p] << 8) | b[p + 1]


def _parse(msg: bytes, transport: str) -> ClientHello | None:
    if len(msg) < 4 or msg[0] != 0x01:
        return None
    end = 4 + ((msg[1] << 16) | (msg[2] << 8) | msg[3])
    if end > len(msg):
        return None
    p = 4
    legacy_version = _u16(msg, p)
    p += 2 + 32
    sid_len = msg[p]
    p += 1 + sid_len
    cs_len = _u16(msg, p)
    p += 2
    if p + cs_len > end or cs_len % 2:
        return None
    ciphers = list(struct.unpack_from("!%dH" % (cs_len // 2), msg, p))
    p += cs_len
    comp_len = msg[p]
    p += 1 + comp_len
    if p > end:
        return None
    exts: list[int] = []
    sni: str | None = None
    alpn: list[str] = []
    versions: list[int] = []
    sigalgs: list[int] = []
    groups: list[int] = []
    ech = False
    if p + 2 <= end:
        ext_total = _u16(msg, p)
        p += 2
        ext_end = min(end, p + ext_total)
        while p + 4 <= ext_end:
            etype = _u16(msg, p)
            elen = _u16(msg, p + 2)
            body = msg[p + 4:p + 4 + elen]
            if len(body) < elen:
                return None
            p += 4 + elen
            exts.append(etype)
            if etype == EXT_SERVER_NAME:
                sni = _sni(body)
            elif etype == EXT_ALPN:
                alpn = _alpn(body)
            elif etype == EXT_SUPPORTED_VERSIONS and body:
                n = body[0]
                versions = [_u16(body, 1 + i) for i in range(0, n - n % 2, 2)]
            elif etype == EXT_SIGNATURE_ALGORITHMS and len(body) >= 2:
                sigalgs = _u16_list(body)
            elif etype == EXT_SUPPORTED_GROUPS and len(body) >= 2:
                groups = _u16_list(body)
            elif etype == EXT_ECH:
                ech = True
    offered = [v for v in versions if not is_grease(v)] or [legacy_version]
    return ClientHello(
        sni=sni,
        alpn=alpn,
        versions=[VERSION_NAMES.get(v, "0x%04x" % v) for v in offered],
        ech=ech,
        ja4=ja4(transport, legacy_version, versions, sni is not None, ciphers, exts, alpn, sigalgs),
        groups=[g for g in groups if not is_grease(g)],
    )


def _u16_list(body: bytes) -> list[int]:
    """A u16-length-prefixed list of u16 values, clipped to the bytes present."""
    n = min(_u16(body, 0), len(body) - 2) // 2
    return list(struct.unpack_from("!%dH" % n, body, 2))


def _sni(body: bytes) -> str | None:
    # server_name_list: u16 length, then entries of (type u8, u16 length, name)
    p = 2
    while p + 3 <= len(body):
        ntype = body[p]
        nlen = _u16(body, p + 1)
        name = body[p + 3:p + 3 + nlen]
        p += 3 + nlen
        if ntype == 0 and name:
            text = name.decode("ascii", "replace").rstrip(".").lower()
            return text
    return None


def _alpn(body: bytes) -> list[str]:
    out = []
    p = 2
    while p < len(body):
        n = body[p]
        v = body[p + 1:p + 1 + n]
        p += 1 + n
        if v:
            out.append(v.decode("ascii", "replace"))
    return out


def _alnum(c: str) -> bool:
    return c.isascii() and c.isalnum()


# A client sends the same fingerprint on every connection: its last JA4s, by what they hash.
_ja4_seen: dict[tuple, str] = {}
JA4_KEPT = 1024


def ja4(transport: str, legacy_version: int, versions: list[int], has_sni: bool,
        ciphers: list[int], exts: list[int], alpn: list[str], sigalgs: list[int]) -> str:
    """The JA4 TLS client fingerprint (FoxIO spec), e.g. ``t13d1516h2_8daaf6152771_e5627efa2ab1``."""
    # what the fingerprint depends on: no GREASE (random on every connection), the extensions
    # only as a sorted list (Chrome shuffles them)
    grease = GREASE
    key = (transport, legacy_version, tuple([v for v in versions if v not in grease]), has_sni,
           tuple([c for c in ciphers if c not in grease]), tuple(sorted([e for e in exts if e not in grease])),
           alpn[0] if alpn else None, tuple(sigalgs))
    got = _ja4_seen.get(key)
    if got is None:
        if len(_ja4_seen) >= JA4_KEPT:
            _ja4_seen.clear()
        got = _ja4_seen[key] = _ja4(transport, legacy_version, versions, has_sni, ciphers, exts, alpn, sigalgs)
    return got


def _ja4(transport: str, legacy_version: int, versions: list[int], has_sni: bool,
         ciphers: list[int], exts: list[int], alpn: list[str], sigalgs: list[int]) -> str:
    real_versions = [v for v in versions if not is_grease(v)]
    top = max(real_versions) if real_versions else legacy_version
    ver = JA4_VERSIONS.get(top, "00")
    cs = [c for c in ciphers if not is_grease(c)]
    ex = [e for e in exts if not is_grease(e)]
    if alpn and alpn[0]:
        first = alpn[0]
        if _alnum(first[0]) and _alnum(first[-1]):
            a = first[0] + first[-1]
        else:
            h = first.encode("latin-1", "replace").hex()
            a = h[0] + h[-1]
    else:
        a = "00"
    part_a = "%s%s%s%02d%02d%s" % (transport, ver, "d" if has_sni else "i",
                                   min(len(cs), 99), min(len(ex), 99), a)
    if cs:
        part_b = _hash12(",".join("%04x" % c for c in sorted(cs)))
    else:
        part_b = "000000000000"
    ex_c = sorted(e for e in ex if e not in (EXT_SERVER_NAME, EXT_ALPN))
    if not ex_c:
        part_c = "000000000000"
    else:
        s = ",".join("%04x" % e for e in ex_c)
        if sigalgs:
            s += "_" + ",".join("%04x" % g for g in sigalgs)
        part_c = _hash12(s)
    return f"{part_a}_{part_b}_{part_c}"


def _hash12(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()[:12]

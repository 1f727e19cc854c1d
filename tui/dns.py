"""DNS message parsing: the questions a client asked and the answers it got.

Only what is needed to name addresses: A, AAAA, CNAME, and the target names and
address hints of HTTPS/SVCB records.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

TYPE_A = 1
TYPE_CNAME = 5
TYPE_PTR = 12
TYPE_AAAA = 28
TYPE_SVCB = 64
TYPE_HTTPS = 65

TYPE_NAMES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT",
              28: "AAAA", 33: "SRV", 64: "SVCB", 65: "HTTPS", 255: "ANY"}
RCODE_NAMES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


@dataclass(slots=True)
class Answer:
    owner: str
    rtype: int
    ttl: int
    value: str  # an address for A/AAAA, a name for CNAME, the target for SVCB/HTTPS
    hints: list[str] = field(default_factory=list)  # ipv4hint/ipv6hint of SVCB/HTTPS


@dataclass(slots=True)
class Message:
    ident: int
    response: bool
    rcode: int
    questions: list[tuple[str, int]]
    answers: list[Answer]


class DnsError(ValueError):
    pass


def _name(buf: bytes, p: int) -> tuple[str, int]:
    """Read a possibly compressed name at p; return (name, position after it)."""
    labels = []
    end = -1
    jumps = 0
    n = len(buf)
    while True:
        if p >= n:
            raise DnsError("name runs past the message")
        ln = buf[p]
        if ln == 0:
            p += 1
            break
        if ln & 0xC0 == 0xC0:
            if p + 1 >= n:
                raise DnsError("truncated pointer")
            if end < 0:
                end = p + 2
            p = ((ln & 0x3F) << 8) | buf[p + 1]
            jumps += 1
            if jumps > 32:
                raise DnsError("compression loop")
            continue
        if ln & 0xC0:
            raise DnsError("bad label type")
        label = buf[p + 1:p + 1 + ln]
        if len(label) < ln:
            raise DnsError("label runs past the message")
        labels.append(label.decode("ascii", "replace"))
        p += 1 + ln
    return ".".join(labels).lower(), (end if end >= 0 else p)


def parse(buf: bytes) -> Message:
    """Parse a DNS message (UDP payload, or TCP payload after the 2-byte length)."""
    if len(buf) < 12:
        raise DnsError("shorter than a DNS header")
    ident = (buf[0] << 8) | buf[1]
    flags = (buf[2] << 8) | buf[3]
    qd = (buf[4] << 8) | buf[5]
    an = (buf[6] << 8) | buf[7]
    if flags & 0x7800:  # opcode other than QUERY: nothing to learn here
        raise DnsError("not a standard query")
    p = 12
    questions = []
    for _ in range(min(qd, 16)):
        name, p = _name(buf, p)
        if p + 4 > len(buf):
            raise DnsError("truncated question")
        questions.append((name, (buf[p] << 8) | buf[p + 1]))
        p += 4
    answers = []
    for _ in range(min(an, 256)):
        owner, p = _name(buf, p)
        if p + 10 > len(buf):
            break
        rtype = (buf[p] << 8) | buf[p + 1]
        ttl = int.from_bytes(buf[p + 4:p + 8], "big")
        rdlen = (buf[p + 8] << 8) | buf[p + 9]
        p += 10
        rdata_end = p + rdlen
        if rdata_end > len(buf):
            break
        if rtype == TYPE_A and rdlen == 4:
            answers.append(Answer(owner, rtype, ttl, socket.inet_ntop(socket.AF_INET, buf[p:p + 4])))
        elif rtype == TYPE_AAAA and rdlen == 16:
            answers.append(Answer(owner, rtype, ttl, socket.inet_ntop(socket.AF_INET6, buf[p:p + 16])))
        elif rtype == TYPE_CNAME:
            answers.append(Answer(owner, rtype, ttl, _name(buf, p)[0]))
        elif rtype in (TYPE_SVCB, TYPE_HTTPS) and rdlen >= 3:
            answers.append(_svcb(buf, p, rdata_end, owner, rtype, ttl))
        p = rdata_end
    return Message(ident, bool(flags & 0x8000), flags & 0xF, questions, answers)


def _svcb(buf: bytes, p: int, end: int, owner: str, rtype: int, ttl: int) -> Answer:
    target, q = _name(buf, p + 2)
    hints: list[str] = []
    while q + 4 <= end:
        key = (buf[q] << 8) | buf[q + 1]
        vlen = (buf[q + 2] << 8) | buf[q + 3]
        val = buf[q + 4:q + 4 + vlen]
        q += 4 + vlen
        if key == 4:
            hints += [socket.inet_ntop(socket.AF_INET, val[i:i + 4]) for i in range(0, len(val) - 3, 4)]
        elif key == 6:
            hints += [socket.inet_ntop(socket.AF_INET6, val[i:i + 16]) for i in range(0, len(val) - 15, 16)]
    # "." as target means "the owner itself" (RFC 9460 section 2.5)
    return Answer(owner, rtype, ttl, target or owner, hints)

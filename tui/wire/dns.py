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
    qclasses: list[int] = field(default_factory=list)  # class of each question (1: IN)

    def question_key(self) -> tuple:
        """What an answer must repeat of its query: every question's name, type and class."""
        q = self.questions
        if len(q) == 1 and len(self.qclasses) == 1:  # nearly every message
            return ((q[0][0], q[0][1], self.qclasses[0]),)
        return tuple((n, t, c) for (n, t), c in zip(q, self.qclasses))


class DnsError(ValueError):
    pass


# RFC 1035 section 2.3.4: a label is at most 63 octets, a name at most 255 on the wire.
MAX_LABEL = 63
MAX_NAME = 255
# A dot or a backslash inside a label is written \DDD as in RFC 4343 presentation form, so
# a one-label "api.anthropic.com" can never pass for the three-label name. Other bytes are
# decoded the way the TLS parser decodes an SNI (ASCII, anything else U+FFFD), so a name
# looked up and then sent as SNI lands on one row; what a screen or file shows of control
# characters is escaped where it is shown (safetext).
_LABEL_ESCAPES = str.maketrans({".": "\\046", "\\": "\\092"})


def _label_text(label: bytes) -> str:
    text = label.decode("ascii", "replace").lower()
    return text.translate(_LABEL_ESCAPES) if "." in text or "\\" in text else text


class _Names:
    """Decodes the names of one message, each position at most once.

    Compression pointers must point strictly backwards (to where a name was written
    before), which rules out loops; positions already decoded are remembered, so a
    message whose names chain through many pointers costs time linear in its size, not
    in the product of its names and their pointer chains (a "compression bomb").
    """

    __slots__ = ("buf", "memo")

    def __init__(self, buf: bytes):
        self.buf = buf
        self.memo: dict[int, tuple[str, int]] = {}  # position -> (name from there, wire length)

    def read(self, p: int) -> tuple[str, int]:
        """The name at p and the position after it in the message."""
        buf, memo = self.buf, self.memo
        n = len(buf)
        trail: list[tuple[int, str]] = []  # (position, label) of the labels read here, in order
        end = -1
        limit = p  # a pointer must go below every position this name already used
        tail, tail_len = "", 1
        while True:
            if p in memo:
                tail, tail_len = memo[p]
                if end < 0:
                    end = self._skip(p)
                break
            if p >= n:
                raise DnsError("name runs past the message")
            ln = buf[p]
            if ln == 0:
                if end < 0:
                    end = p + 1
                break
            if ln & 0xC0 == 0xC0:
                if p + 1 >= n:
                    raise DnsError("truncated pointer")
                target = ((ln & 0x3F) << 8) | buf[p + 1]
                if target >= limit:
                    raise DnsError("compression pointer does not point backwards")
                if end < 0:
                    end = p + 2
                p = limit = target
                continue
            if ln & 0xC0:
                raise DnsError("bad label type")
            if p + 1 + ln > n:
                raise DnsError("label runs past the message")
            trail.append((p, _label_text(buf[p + 1:p + 1 + ln])))
            if len(trail) > MAX_NAME // 2:
                raise DnsError("name longer than 255 octets")
            p += 1 + ln
        # Build the name back from its end, remembering every suffix for the next names.
        name, wire = tail, tail_len
        for pos, label in reversed(trail):
            wire += 1 + buf[pos]
            if wire > MAX_NAME:
                raise DnsError("name longer than 255 octets")
            name = f"{label}.{name}" if name else label
            memo[pos] = (name, wire)
        return name, end

    def _skip(self, p: int) -> int:
        """The position after the name written at p (labels up to a zero or a pointer)."""
        buf = self.buf
        while True:
            ln = buf[p]
            if ln == 0:
                return p + 1
            if ln & 0xC0 == 0xC0:
                return p + 2
            p += 1 + ln


def _name(buf: bytes, p: int) -> tuple[str, int]:
    """Read a possibly compressed name at p; return (name, position after it)."""
    return _Names(buf).read(p)


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
    if qd > 16:
        raise DnsError("more than 16 questions")
    names = _Names(buf)
    p = 12
    questions = []
    qclasses = []
    for _ in range(qd):
        name, p = names.read(p)
        if p + 4 > len(buf):
            raise DnsError("truncated question")
        questions.append((name, (buf[p] << 8) | buf[p + 1]))
        qclasses.append((buf[p + 2] << 8) | buf[p + 3])
        p += 4
    answers = []
    for _ in range(min(an, 256)):
        owner, p = names.read(p)
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
            answers.append(Answer(owner, rtype, ttl, names.read(p)[0]))
        elif rtype in (TYPE_SVCB, TYPE_HTTPS) and rdlen >= 3:
            answers.append(_svcb(names, p, rdata_end, owner, rtype, ttl))
        p = rdata_end
    return Message(ident, bool(flags & 0x8000), flags & 0xF, questions, answers, qclasses)


def _svcb(names: _Names, p: int, end: int, owner: str, rtype: int, ttl: int) -> Answer:
    buf = names.buf
    target, q = names.read(p + 2)
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

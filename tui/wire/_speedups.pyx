# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""The compiled fast path: the per-packet loops of the engine and the DNS parser, in C.

Optional. ``pip install`` builds it when a C compiler and Python's headers are there; without
it (or with EGRESS_TUI_PURE=1) the pure-Python code runs, and that code is the reference:
every function here does exactly what its Python twin does, and tests/test_fastpath.py feeds
the same packets to both and compares every host, counter and error text.

* ``feed_pcap_blocks``, ``feed_records``, ``feed_frames``: the loops of ``Engine`` of the same
  names. A packet the engine's fast path would count (``Engine._fast_path``: a data segment or
  ACK on a connection with nothing more to tell, a UDP datagram that cannot be a QUIC
  Initial) is counted here from a few header bytes and one dict lookup; every other packet
  goes to ``Engine.feed_at``, the Python code, unchanged.
* ``parse_dns``: ``dns.parse``, same Message, same errors.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem
from cpython.ref cimport PyObject
from cpython.unicode cimport PyUnicode_DecodeASCII

import socket

from egress_tui.wire.dns import Answer, DnsError, Message, MAX_NAME, _LABEL_ESCAPES

cdef object _inet_ntop = socket.inet_ntop
cdef int _AF_INET = socket.AF_INET
cdef int _AF_INET6 = socket.AF_INET6


# --------------------------------------------------------------------------- the fast path

cdef inline int _u16(const unsigned char* b, Py_ssize_t p) noexcept:
    return (b[p] << 8) | b[p + 1]


cdef inline bint _link(int linktype, int* eoff, int* l2) noexcept:
    """Engine.FAST_LINK: where the EtherType (-1: none) and the IP header are."""
    if linktype == 1:
        eoff[0] = 12
        l2[0] = 14
    elif linktype == 276:
        eoff[0] = 0
        l2[0] = 20
    elif linktype == 113:
        eoff[0] = 14
        l2[0] = 16
    elif linktype == 101:
        eoff[0] = -1
        l2[0] = 0
    else:
        return False
    return True


cdef inline int _plain(const unsigned char* b, Py_ssize_t start, Py_ssize_t end, int eoff, int l2,
                       Py_ssize_t* ip_end_out, Py_ssize_t* l4_out) noexcept:
    """A plain TCP or UDP packet as decode_ip reads it: its protocol (6 or 17), the end of its IP
    packet and the start of its transport header; 0 for anything else (a fragment, IP options,
    an IPv6 extension header, a VLAN tag, lengths that do not add up), which feed_at decodes."""
    cdef Py_ssize_t ip = start + l2
    cdef Py_ssize_t ip_end, l4, total, plen
    cdef int proto
    cdef unsigned char b0
    if end - ip < 28:
        return 0
    b0 = b[ip]
    if b0 == 0x45:
        if eoff >= 0 and (b[start + eoff] != 0x08 or b[start + eoff + 1] != 0):
            return 0
        if (b[ip + 6] & 0x3F) or b[ip + 7]:
            return 0
        total = (b[ip + 2] << 8) | b[ip + 3]
        ip_end = ip + total if (20 <= total and ip + total < end) else end
        l4 = ip + 20
        proto = b[ip + 9]
    elif b0 >> 4 == 6:
        if eoff >= 0 and (b[start + eoff] != 0x86 or b[start + eoff + 1] != 0xDD):
            return 0
        plen = (b[ip + 4] << 8) | b[ip + 5]
        l4 = ip + 40
        ip_end = l4 + plen if (plen and l4 + plen < end) else end
        proto = b[ip + 6]
    else:
        return 0
    if (proto != 6 and proto != 17) or l4 + 8 > ip_end:
        return 0
    if proto == 6 and (l4 + 20 > ip_end or (b[l4 + 12] >> 4) < 5):
        return 0
    ip_end_out[0] = ip_end
    l4_out[0] = l4
    return proto


cdef bint _count(dict fast, dict fast_udp, const unsigned char* b, Py_ssize_t start, Py_ssize_t end,
                 int eoff, int l2, object ts) except -1:
    """Engine._fast_path after its checks of the engine's state: True when counted."""
    cdef Py_ssize_t ip = start + l2
    cdef Py_ssize_t ip_end, l4, n
    cdef int proto
    cdef PyObject* hit
    cdef bint from_client
    proto = _plain(b, start, end, eoff, l2, &ip_end, &l4)
    if proto == 0 or (proto == 6 and (b[l4 + 13] & 0x07)):  # SYN, FIN, RST: the full path
        return False
    if b[ip] == 0x45:
        key = PyBytes_FromStringAndSize(<const char*>b + ip + 12, 12)
    else:
        key = PyBytes_FromStringAndSize(<const char*>b + ip + 8, 36)
    hit = PyDict_GetItem(fast if proto == 6 else fast_udp, key)
    if hit is NULL:
        return False
    n = ip_end - l4 - ((b[l4 + 12] >> 4) * 4 if proto == 6 else 8)
    entry = <tuple>hit
    c = entry[0]
    from_client = entry[1] is True
    if proto == 17 and from_client and n > 0 and (b[l4 + 8] & 0xC0) == 0xC0:
        return False
    c.last = ts
    if from_client:
        c.pkts_out += 1
        if n > 0:
            c.bytes_out += n
    else:
        c.pkts_in += 1
        if n > 0:
            c.bytes_in += n
    return True


cdef class _Feeder:
    """One engine's fast path: counts packets in C, decodes the plain TCP and UDP ones in C and
    hands them to engine._tcp and engine._udp as feed_at would, hands anything else to
    engine.feed_at, and keeps engine.packets and engine.last_ts as the Python loop would."""

    cdef object engine
    cdef dict fast
    cdef dict fast_udp
    cdef object feed_at
    cdef object tcp
    cdef object udp
    cdef Py_ssize_t counted
    cdef object last_ts
    cdef int linktype
    cdef int eoff
    cdef int l2
    cdef bint ready

    def __cinit__(self, engine):
        self.engine = engine
        self.fast = engine.fast
        self.fast_udp = engine.fast_udp
        self.feed_at = engine.feed_at
        self.tcp = engine._tcp
        self.udp = engine._udp
        self.counted = 0
        self.linktype = -1
        self.ready = False

    cdef inline void _state(self, int linktype):
        """The engine state the fast path needs: a link type it has seen, a first timestamp."""
        self.linktype = linktype
        self.ready = (_link(linktype, &self.eoff, &self.l2) and linktype in self.engine.linktypes
                      and bool(self.engine.first_ts))

    cdef inline int _flush(self) except -1:
        if self.counted:
            self.engine.packets += self.counted
            self.engine.last_ts = self.last_ts
            self.counted = 0
        return 0

    cdef int one(self, int linktype, object ts, object buf, const unsigned char* b,
                 Py_ssize_t start, Py_ssize_t end) except -1:
        if linktype != self.linktype:
            self._state(linktype)
        if self.ready:
            if _count(self.fast, self.fast_udp, b, start, end, self.eoff, self.l2, ts):
                self.counted += 1
                self.last_ts = ts
                return 0
            if self._decoded(linktype, ts, buf, b, start, end):
                return 0
        self._flush()
        try:
            self.feed_at(linktype, ts, buf, start, end)
        finally:
            self._state(linktype)
        return 0


    cdef bint _decoded(self, int linktype, object ts, object buf, const unsigned char* b,
                       Py_ssize_t start, Py_ssize_t end) except -1:
        """feed_at for a plain TCP or UDP packet (no fragment, IP option, IPv6 extension header or
        VLAN tag: those go to feed_at): the same counters, then engine._tcp or engine._udp with
        the fields packet.decode_ip would give. False, having changed nothing, for the rest."""
        cdef Py_ssize_t ip = start + self.l2
        cdef Py_ssize_t ip_end, l4, poff, hl
        cdef int proto
        cdef unsigned int seq
        proto = _plain(b, start, end, self.eoff, self.l2, &ip_end, &l4)
        if proto == 0:
            return False
        if b[ip] == 0x45:
            src = PyBytes_FromStringAndSize(<const char*>b + ip + 12, 4)
            dst = PyBytes_FromStringAndSize(<const char*>b + ip + 16, 4)
        else:
            src = PyBytes_FromStringAndSize(<const char*>b + ip + 8, 16)
            dst = PyBytes_FromStringAndSize(<const char*>b + ip + 24, 16)
        # feed_at's own part: the packet counts, the frame is the one being decoded
        engine = self.engine
        engine.packets += self.counted + 1
        self.counted = 0
        engine.last_ts = ts
        engine._frame = (linktype, buf, start)
        if proto == 6:
            seq = (<unsigned int>b[l4 + 4] << 24) | (b[l4 + 5] << 16) | (b[l4 + 6] << 8) | b[l4 + 7]
            hl = (b[l4 + 12] >> 4) * 4
            poff = l4 + hl if l4 + hl < ip_end else ip_end
            self.tcp(ts, src, dst, _u16(b, l4), _u16(b, l4 + 2), b[l4 + 13], seq, buf, poff, ip_end)
        else:
            self.udp(ts, src, dst, _u16(b, l4), _u16(b, l4 + 2),
                     PyBytes_FromStringAndSize(<const char*>b + l4 + 8, ip_end - l4 - 8))
        return True


def pcap_walk(bytes buf, Py_ssize_t pos, bint little):
    """pcapfile.read_pcap_blocks' walk over a buffer of classic pcap records from pos: (the end of
    the last whole record, how many whole records, the length of a corrupt record or -1)."""
    cdef const unsigned char* b = <const unsigned char*>PyBytes_AS_STRING(buf)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(buf)
    cdef Py_ssize_t count = 0
    cdef unsigned int caplen
    while pos + 16 <= n:
        if little:
            caplen = b[pos + 8] | (b[pos + 9] << 8) | (b[pos + 10] << 16) | (<unsigned int>b[pos + 11] << 24)
        else:
            caplen = (<unsigned int>b[pos + 8] << 24) | (b[pos + 9] << 16) | (b[pos + 10] << 8) | b[pos + 11]
        if caplen > 0x4000000:
            return pos, count, caplen
        if pos + 16 + caplen > n:
            break
        pos += 16 + caplen
        count += 1
    return pos, count, -1


def feed_pcap_blocks(engine, blocks):
    """Engine.feed_pcap_blocks."""
    cdef _Feeder f = _Feeder(engine)
    cdef const unsigned char* b
    cdef Py_ssize_t pos, stop, start, size
    cdef unsigned int sec, frac, caplen
    cdef double scale
    cdef bint little
    cdef int linktype
    try:
        for linktype, scale, endian, buf, pos, stop in blocks:
            if type(buf) is not bytes:
                buf = bytes(buf)
            b = <const unsigned char*>PyBytes_AS_STRING(buf)
            size = PyBytes_GET_SIZE(buf)
            little = endian == "<"
            if stop > size:
                raise ValueError("pcap block runs past its buffer")
            while pos + 16 <= stop:
                if little:
                    sec = b[pos] | (b[pos + 1] << 8) | (b[pos + 2] << 16) | (<unsigned int>b[pos + 3] << 24)
                    frac = b[pos + 4] | (b[pos + 5] << 8) | (b[pos + 6] << 16) | (<unsigned int>b[pos + 7] << 24)
                    caplen = b[pos + 8] | (b[pos + 9] << 8) | (b[pos + 10] << 16) | (<unsigned int>b[pos + 11] << 24)
                else:
                    sec = (<unsigned int>b[pos] << 24) | (b[pos + 1] << 16) | (b[pos + 2] << 8) | b[pos + 3]
                    frac = (<unsigned int>b[pos + 4] << 24) | (b[pos + 5] << 16) | (b[pos + 6] << 8) | b[pos + 7]
                    caplen = (<unsigned int>b[pos + 8] << 24) | (b[pos + 9] << 16) | (b[pos + 10] << 8) | b[pos + 11]
                start = pos + 16
                pos = start + caplen
                if pos > stop:
                    raise ValueError("pcap record runs past its block")
                f.one(linktype, <double>sec + <double>frac * scale, buf, b, start, pos)
    finally:
        f._flush()


def feed_records(engine, records):
    """Engine.feed_records: (linktype, ts, buffer, start, end) items."""
    cdef _Feeder f = _Feeder(engine)
    cdef Py_ssize_t start, end
    try:
        for linktype, ts, buf, start, end in records:
            if type(buf) is not bytes or start < 0 or end > PyBytes_GET_SIZE(buf) or start > end:
                f._flush()
                engine.feed_at(linktype, ts, buf, start, end)
                f._state(linktype)
                continue
            f.one(linktype, ts, buf, <const unsigned char*>PyBytes_AS_STRING(buf), start, end)
    finally:
        f._flush()


def feed_frames(engine, frames):
    """Engine.feed_frames: (linktype, ts, frame) items, as a live capture hands them over."""
    cdef _Feeder f = _Feeder(engine)
    try:
        for linktype, ts, frame in frames:
            if type(frame) is not bytes:
                f._flush()
                engine.feed_at(linktype, ts, frame, 0, len(frame))
                f._state(linktype)
                continue
            f.one(linktype, ts, frame, <const unsigned char*>PyBytes_AS_STRING(frame), 0, PyBytes_GET_SIZE(frame))
    finally:
        f._flush()


# --------------------------------------------------------------------------- DNS

cdef object _new = object.__new__


cdef inline object _answer(object owner, int rtype, object ttl, object value, list hints):
    """Answer(owner, rtype, ttl, value, hints), without the dataclass's __init__ in Python."""
    a = _new(Answer)
    a.owner = owner
    a.rtype = rtype
    a.ttl = ttl
    a.value = value
    a.hints = hints
    return a


cdef class _Names:
    """dns._Names: each position decoded at most once, pointers only backwards."""

    cdef object obj
    cdef const unsigned char* buf
    cdef Py_ssize_t n
    cdef dict memo

    def __cinit__(self, bytes data):
        self.obj = data
        self.buf = <const unsigned char*>PyBytes_AS_STRING(data)
        self.n = PyBytes_GET_SIZE(data)
        self.memo = {}

    cdef Py_ssize_t _skip(self, Py_ssize_t p):
        cdef const unsigned char* buf = self.buf
        cdef int ln
        while True:
            ln = buf[p]
            if ln == 0:
                return p + 1
            if (ln & 0xC0) == 0xC0:
                return p + 2
            p += 1 + ln

    cdef tuple read(self, Py_ssize_t p):
        cdef const unsigned char* buf = self.buf
        cdef Py_ssize_t n = self.n
        cdef Py_ssize_t end = -1
        cdef Py_ssize_t limit = p
        cdef Py_ssize_t target, i, wire
        cdef int ln
        cdef list trail = []
        cdef dict memo = self.memo
        cdef object tail = ""
        cdef object name
        cdef bint special
        tail_len = 1
        while True:
            got = memo.get(p)
            if got is not None:
                tail, tail_len = got
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
            if (ln & 0xC0) == 0xC0:
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
            special = False
            for i in range(p + 1, p + 1 + ln):
                if buf[i] == 0x2E or buf[i] == 0x5C:
                    special = True
                    break
            text = PyUnicode_DecodeASCII(<const char*>buf + p + 1, ln, "replace").lower()
            if special:
                text = text.translate(_LABEL_ESCAPES)
            trail.append((p, text))
            if len(trail) > MAX_NAME // 2:
                raise DnsError("name longer than 255 octets")
            p += 1 + ln
        name = tail
        wire = tail_len
        for pos, label in reversed(trail):
            wire += 1 + buf[<Py_ssize_t>pos]
            if wire > MAX_NAME:
                raise DnsError("name longer than 255 octets")
            name = f"{label}.{name}" if name else label
            memo[pos] = (name, wire)
        return name, end


cdef object _svcb(_Names names, Py_ssize_t p, Py_ssize_t end, object owner, int rtype, object ttl):
    cdef const unsigned char* buf = names.buf
    cdef Py_ssize_t q, vlen, i, stop
    cdef int key
    cdef bytes data = names.obj
    target, q = names.read(p + 2)
    hints = []
    while q + 4 <= end:
        key = _u16(buf, q)
        vlen = _u16(buf, q + 2)
        val = data[q + 4:q + 4 + vlen]
        q += 4 + vlen
        if key == 4:
            stop = len(val) - 3
            hints += [_inet_ntop(_AF_INET, val[i:i + 4]) for i in range(0, stop, 4)] if stop > 0 else []
        elif key == 6:
            stop = len(val) - 15
            hints += [_inet_ntop(_AF_INET6, val[i:i + 16]) for i in range(0, stop, 16)] if stop > 0 else []
    return _answer(owner, rtype, ttl, target or owner, hints)


def parse_dns(data):
    """dns.parse: a DNS message (UDP payload, or TCP payload after the 2-byte length)."""
    cdef bytes buf = data if type(data) is bytes else bytes(data)
    cdef const unsigned char* b = <const unsigned char*>PyBytes_AS_STRING(buf)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(buf)
    cdef Py_ssize_t p, rdata_end, k
    cdef int flags, qd, an, rtype, rdlen
    cdef _Names names
    if n < 12:
        raise DnsError("shorter than a DNS header")
    ident = _u16(b, 0)
    flags = _u16(b, 2)
    qd = _u16(b, 4)
    an = _u16(b, 6)
    if flags & 0x7800:
        raise DnsError("not a standard query")
    if qd > 16:
        raise DnsError("more than 16 questions")
    names = _Names(buf)
    p = 12
    questions = []
    qclasses = []
    for k in range(qd):
        name, p = names.read(p)
        if p + 4 > n:
            raise DnsError("truncated question")
        questions.append((name, _u16(b, p)))
        qclasses.append(_u16(b, p + 2))
        p += 4
    answers = []
    for k in range(min(an, 256)):
        owner, p = names.read(p)
        if p + 10 > n:
            break
        rtype = _u16(b, p)
        ttl = (<unsigned long>b[p + 4] << 24) | (<unsigned long>b[p + 5] << 16) | (<unsigned long>b[p + 6] << 8) | b[p + 7]
        rdlen = _u16(b, p + 8)
        p += 10
        rdata_end = p + rdlen
        if rdata_end > n:
            break
        if rtype == 1 and rdlen == 4:
            answers.append(_answer(owner, rtype, ttl, _inet_ntop(_AF_INET, buf[p:p + 4]), []))
        elif rtype == 28 and rdlen == 16:
            answers.append(_answer(owner, rtype, ttl, _inet_ntop(_AF_INET6, buf[p:p + 16]), []))
        elif rtype == 5:
            answers.append(_answer(owner, rtype, ttl, names.read(p)[0], []))
        elif (rtype == 64 or rtype == 65) and rdlen >= 3:
            answers.append(_svcb(names, p, rdata_end, owner, rtype, ttl))
        p = rdata_end
    m = _new(Message)  # Message(...) without running the dataclass's __init__ in Python
    m.ident = ident
    m.response = bool(flags & 0x8000)
    m.rcode = flags & 0xF
    m.questions = questions
    m.answers = answers
    m.qclasses = qclasses
    return m

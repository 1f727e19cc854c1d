"""The engine: frames in, hosts out.

Keeps a bounded flow table, reassembles only the first bytes each client sends (enough
for a ClientHello or an HTTP request head), decrypts QUIC Initials, and learns from DNS
which name every address was looked up as, so that connections that never got as far
as a ClientHello are still named. Used unchanged by ``egress-tui report``, the live
capture and the TUI; imports nothing from the screen.
"""

from __future__ import annotations

import os
import struct
from collections import deque
from collections.abc import Iterable

from egress_tui.wire import dns as dnsmod
from egress_tui.wire import quic, tls
from egress_tui.core.hosts import (NAMED_ADDRESS, NAMED_DNS, NAMED_HTTP, NAMED_SNI, NAMED_TARGET, SOCKS4_REPLIES,
                                   SOCKS5_REPLIES, Conn, Host, Lookup, Tunnel, addr_text, is_address)
from egress_tui.core.proxy import ProxyConfig
from egress_tui.wire.packet import (PROTO_TCP, PROTO_UDP, SUPPORTED_LINKTYPES, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN,
                                    LINKTYPE_NAMES, decode_at)
from egress_tui.wire.pcapfile import CaptureInput, PcapError, read_pcap_blocks, read_records

# The compiled fast path (tui/wire/_speedups.pyx), when pip could build it; the Python code here
# is the reference it is tested against. EGRESS_TUI_PURE=1 runs the Python code alone.
try:
    if os.environ.get("EGRESS_TUI_PURE"):
        raise ImportError("EGRESS_TUI_PURE is set")
    from egress_tui.wire import _speedups
except ImportError:
    _speedups = None
COMPILED = _speedups is not None

# A ClientHello is at most a few KB (about 1.9 KB with a post-quantum key share); one
# TLS record holds 16 KB. Past this many bytes a stream is not going to tell us more.
STREAM_LIMIT = 16384 + 5
HTTP_HEAD_LIMIT = 8192
PENDING_LIMIT = 64           # out-of-order segments held per stream
DNS_TCP_LIMIT = 65536 + 2
DEFAULT_MAX_FLOWS = 200_000
# A flow over (closed or refused; any UDP flow) leaves the table after this many seconds without
# a packet, at the next sweep: the table holds the live flows, not the history. Linux keeps a
# closed connection in TIME_WAIT for 60 s; a packet on its ports after that opens a new one.
FLOW_LINGER = 60.0
# A connection never answered: Linux retries a SYN for about 127 s, the last gap 64 s.
UNANSWERED_LINGER = 150.0
SWEEP_MIN = 4096             # flows in the table before the first sweep
# Connections kept in full for the detail view (beyond a host's CONNS_KEPT): past this many,
# at a sweep, the oldest that are over are folded into their hosts' totals (Host.fold).
CONNS_FULL = 4096
HELLOS_KEPT = 4096           # distinct ClientHellos shared between connections (_intern_hello)
# A ClientHello or request head takes a handful of segments; a stream still waiting for
# its first bytes after this many client packets lost them (capture started late).
STREAM_GIVE_UP = 64
# Docker's embedded resolver. Its NAT rules move queries to a random port on loopback
# before a capture sees them, so port 53 alone does not identify them.
DOCKER_DNS = bytes((127, 0, 0, 11))
DOCKER_FORWARD_WAIT = 5.0    # seconds after a query to it that Docker's resolver may pass it upstream
# DNS queries waiting for their answer, and answered ones remembered to catch a second,
# different answer to the same query (a forgery racing the real resolver).
PENDING_QUERIES = 8192
ANSWERED_KEPT = 4096
QUERY_WAIT = 30.0            # seconds of capture time a query waits for its answer
SUSPICIOUS_KEPT = 500
PACKET_OUTGOING = 4          # sll_pkttype: sent by this host (here: by the container)
ARPHRD_LOOPBACK = 772

# Through a proxy the client's stream holds the proxy handshake first (a CONNECT head, or a
# SOCKS greeting with credentials), then the destination's ClientHello: this much more.
TUNNEL_EXTRA = 8192 + 600
# The proxy's answers: a SOCKS reply is a few bytes; an HTTP 407 page is a few KB.
TUNNEL_REPLY_LIMIT = 65536
CONNECT_RETRIES = 8          # CONNECT requests followed on one connection (407, then 200)
KEEPALIVE_HOSTS = 256        # other hosts followed on one kept-alive connection to an HTTP proxy
TARGETS_KEPT = 8

HTTP_METHODS = (b"GET ", b"POST ", b"HEAD ", b"PUT ", b"DELETE ", b"OPTIONS ", b"PATCH ",
                b"CONNECT ", b"TRACE ")
HTTP_PREFIXES = frozenset(m[:3] for m in HTTP_METHODS)

# The link types the fast path reads: (offset of the EtherType, -1 when the IP version says it;
# offset of the IP header).
FAST_LINK = {1: (12, 14), 276: (0, 20), 113: (14, 16), 101: (-1, 0)}


class Stream:
    """The first bytes of one direction of a TCP connection, reassembled in order.

    Segments may arrive out of order, twice, or overlapping; the contiguous prefix is
    kept (first copy wins) and later segments wait in a small bounded map.
    """

    __slots__ = ("base", "data", "pending", "limit", "consumed")

    def __init__(self, base: int, limit: int = STREAM_LIMIT):
        self.base = base
        self.data = bytearray()
        self.pending: dict[int, bytes] | None = None
        self.limit = limit
        self.consumed = 0  # for DNS over TCP: bytes already parsed as messages

    def add(self, seq: int, payload: bytes) -> bool:
        """Add a segment; True if the contiguous prefix grew."""
        rel = (seq - self.base) & 0xFFFFFFFF
        if rel >= 0x80000000:
            rel -= 0x100000000  # a retransmission that starts before our base
        n = len(self.data)
        if rel > n:
            if rel < self.limit:
                if self.pending is None:
                    self.pending = {}
                if len(self.pending) < PENDING_LIMIT and len(payload) > len(self.pending.get(rel, b"")):
                    self.pending[rel] = payload
            return False
        if rel + len(payload) <= n:
            return False
        self.data += payload[n - rel:self.limit - rel]
        if self.pending:
            self._drain()
        return True

    def _drain(self) -> None:
        pending = self.pending
        progress = True
        while progress and pending and len(self.data) < self.limit:
            progress = False
            n = len(self.data)
            for rel in sorted(pending):
                if rel > n:
                    break
                seg = pending.pop(rel)
                if rel + len(seg) > n:
                    self.data += seg[n - rel:self.limit - rel]
                    progress = True
                    break

    @property
    def full(self) -> bool:
        return len(self.data) >= self.limit

    def skip(self, n: int) -> None:
        """Start the stream ``n`` bytes further on, whether those bytes arrived or not: what
        follows a body the reader does not need can be read even when the body was never
        captured (a live capture lets through only the first segment of a proxy's 407)."""
        self.base = (self.base + n) & 0xFFFFFFFF
        del self.data[:n]
        if self.pending:
            # a segment that ends inside the skipped part is of no use; one that reaches past
            # it stays, at its new offset (negative when it starts before: add() copes)
            self.pending = {rel - n: seg for rel, seg in self.pending.items() if rel + len(seg) > n}
            self._drain()


class Engine:
    """Turns frames into hosts. Not thread-safe: one capture thread owns it."""

    def __init__(self, max_flows: int = DEFAULT_MAX_FLOWS, resolvers: Iterable[str] | None = None,
                 compiled: bool | None = None):
        self.max_flows = max_flows
        # the compiled loops and DNS parser (when built), or the Python ones: the same results
        self.compiled = COMPILED if compiled is None else (compiled and COMPILED)
        self._parse_dns = _speedups.parse_dns if self.compiled else dnsmod.parse
        self.flows: dict[tuple, Conn] = {}
        # raw "src dst sport dport" header bytes -> (conn, from_client), see feed_records
        self.fast: dict[bytes, tuple[Conn, bool]] = {}
        # the same for UDP flows (not DNS): "src dst sport dport" -> (conn, from_client)
        self.fast_udp: dict[bytes, tuple[Conn, bool]] = {}
        self.hosts: dict[str, Host] = {}
        # address -> name it was most recently looked up as (the name the client asked
        # for, not the CNAME target), and every name each address answered for.
        self.addr_name: dict[str, str] = {}
        self.addr_names: dict[str, set[str]] = {}
        self.dns_ttl: dict[tuple[str, str], tuple[float, int]] = {}  # (name, addr) -> (seen, ttl)
        self.dirty: set[str] = set()
        self.resolvers: dict[str, int] = {}   # resolver address -> DNS queries sent to it
        # called with (name asked for, address, ttl) for every address a DNS answer gives;
        # the firewall uses it to keep its sets current with rotating addresses
        self.on_dns_answer = None
        # called with (name, address) when an answer that named an address is withdrawn
        # because a second, different answer to the same query arrived
        self.on_dns_withdraw = None
        # called with each connection when it is first seen (a client's SYN, the first datagram
        # of a UDP flow such as a QUIC Initial, or any packet of one that began before the
        # capture), and with a Lookup for each DNS query: the process attribution looks up its
        # socket at once, and hands the answer back through set_proc (from the thread that owns
        # the engine). None: nothing is looked up, and this costs one check per new flow.
        self.on_new_flow = None
        # question -> when the container last asked Docker's resolver (127.0.0.11) it: the query
        # that resolver then sends upstream from the container's namespace is its own, not a
        # program's, and is not handed over (see _lookup_query)
        self._asked_docker: dict[tuple, float] = {}
        # The DNS trust model (README, "Which DNS answers count"): an answer names addresses
        # only when it comes from one of these resolvers (None: the servers the capture saw
        # queries go to), answers a query the client sent (ID, ports, question), was not
        # sent by the container itself, and parses within RFC 1035's limits.
        self.trusted_resolvers: frozenset[str] | None = None
        self.set_resolvers(resolvers)
        self.pending: dict[tuple, list] = {}      # (proto, client, port, id) -> query facts
        self.answered: dict[tuple, tuple] = {}    # same key -> (answer signature, [(name, addr)])
        self.query_sources: set[bytes] = set()    # addresses that sent queries
        self.suspicious: deque[dict] = deque(maxlen=SUSPICIOUS_KEPT)
        self.suspicious_count = 0
        self._frame: tuple = (0, b"", 0)
        self.packets = 0
        self.ignored = 0
        self.evicted = 0
        self.swept = 0                           # flows over and taken out of the table (_sweep)
        self._sweep_at = SWEEP_MIN
        self._hellos: dict[tuple, tls.ClientHello] = {}
        self._hello_parts: dict = {}
        self.first_ts = 0.0
        self.last_ts = 0.0
        self.linktypes: set[int] = set()
        self.proxy_config: ProxyConfig | None = None
        self.proxy_addrs: set[tuple[str, int]] = set()
        self.proxy_names: set[tuple[str, int]] = set()

    # -- input -------------------------------------------------------------------------

    def feed_frames(self, frames: Iterable[tuple[int, float, bytes]]) -> None:
        """Frames as (linktype, ts, frame): a live capture's batch. Packets of connections with
        nothing more to tell are counted without being decoded (see _fast_path)."""
        if self.compiled:
            _speedups.feed_frames(self, frames)
            return
        fast = self._fast_path
        feed = self.feed_at
        for linktype, ts, frame in frames:
            end = len(frame)
            if not fast(linktype, ts, frame, 0, end):
                feed(linktype, ts, frame, 0, end)

    def feed_records(self, records: Iterable[tuple[int, float, bytes, int, int]]) -> None:
        """Frames as (linktype, ts, buffer, start, end), see pcapfile.read_records."""
        if self.compiled:
            _speedups.feed_records(self, records)
            return
        fast = self._fast_path
        feed = self.feed_at
        for linktype, ts, buf, start, end in records:
            if not fast(linktype, ts, buf, start, end):
                feed(linktype, ts, buf, start, end)

    def feed_pcap_blocks(self, blocks) -> None:
        """The fastest path, for classic pcap: see pcapfile.read_pcap_blocks."""
        if self.compiled:
            _speedups.feed_pcap_blocks(self, blocks)
            return
        fast = self._fast_path
        feed = self.feed_at
        for linktype, scale, endian, buf, pos, stop in blocks:
            header = struct.Struct(endian + "III").unpack_from
            while pos < stop:
                sec, frac, caplen = header(buf, pos)
                start = pos + 16
                pos = start + caplen
                ts = sec + frac * scale
                if not fast(linktype, ts, buf, start, pos):
                    feed(linktype, ts, buf, start, pos)

    def _fast_path(self, linktype: int, ts: float, buf: bytes, start: int, end: int) -> bool:
        """Account a packet of a connection that has nothing more to tell; False if not one.

        Most packets of a capture are data and ACKs on connections whose handshake is done and
        whose ClientHello was read. They are recognised from a few fixed header bytes and one
        dict lookup, without decoding them. What this counts is exactly what feed_at would
        (tests/test_fastpath.py feeds every packet both ways); anything it is not sure of (a
        SYN, FIN or RST, IP options, a fragment, a VLAN tag, a length that does not add up, a
        UDP datagram that may be a QUIC Initial) goes to feed_at.
        """
        link = FAST_LINK.get(linktype)
        if link is None or linktype not in self.linktypes or not self.first_ts:
            return False
        eoff, ip = link
        ip += start
        if end - ip < 28:
            return False
        b0 = buf[ip]
        if b0 == 0x45:
            if eoff >= 0 and (buf[start + eoff] != 0x08 or buf[start + eoff + 1]):
                return False
            if buf[ip + 6] & 0x3F or buf[ip + 7]:
                return False  # a fragment
            total = (buf[ip + 2] << 8) | buf[ip + 3]
            ip_end = ip + total if 20 <= total and ip + total < end else end
            l4 = ip + 20
            key = buf[ip + 12:ip + 24]
            proto = buf[ip + 9]
        elif b0 >> 4 == 6:
            if eoff >= 0 and (buf[start + eoff] != 0x86 or buf[start + eoff + 1] != 0xDD):
                return False
            plen = (buf[ip + 4] << 8) | buf[ip + 5]
            l4 = ip + 40
            ip_end = l4 + plen if plen and l4 + plen < end else end
            if l4 + 8 > ip_end:
                return False
            key = buf[ip + 8:ip + 44]
            proto = buf[ip + 6]
        else:
            return False
        if proto == 6:
            if l4 + 20 > ip_end or buf[l4 + 13] & 0x07:  # SYN, FIN, RST: the full path
                return False
            hit = self.fast.get(key)
            if hit is None:
                return False
            hl = (buf[l4 + 12] >> 4) * 4
            if hl < 20:
                return False
            n = ip_end - l4 - hl
        elif proto == 17:
            if l4 + 8 > ip_end:
                return False
            hit = self.fast_udp.get(key)
            if hit is None:
                return False
            n = ip_end - l4 - 8
            if hit[1] and n > 0 and buf[l4 + 8] & 0xC0 == 0xC0:
                return False  # a long-header packet from the client: maybe a QUIC Initial
        else:
            return False
        c = hit[0]
        c.last = ts
        if hit[1]:
            c.pkts_out += 1
            if n > 0:
                c.bytes_out += n
        else:
            c.pkts_in += 1
            if n > 0:
                c.bytes_in += n
        self.packets += 1
        self.last_ts = ts
        return True

    def _go_fast(self, c: Conn) -> None:
        """The connection has nothing left to learn but FIN/RST: let the fast path count its
        packets. Only once the client has sent a packet (a first client segment of a connection
        picked up mid-stream is read) and no proxy answer is awaited."""
        t = c.tunnel
        if c.pkts_out == 0 or (t is not None and t.sphase != "done"):
            return
        c.fast = True
        ports = c.cport.to_bytes(2, "big") + c.sport.to_bytes(2, "big")
        self.fast[c.client + c.server + ports] = (c, True)
        self.fast[c.server + c.client + ports[2:] + ports[:2]] = (c, False)

    def _forget_fast(self, c: Conn) -> None:
        ports = c.cport.to_bytes(2, "big") + c.sport.to_bytes(2, "big")
        table = self.fast if c.proto == PROTO_TCP else self.fast_udp
        table.pop(c.client + c.server + ports, None)
        table.pop(c.server + c.client + ports[2:] + ports[:2], None)

    def feed(self, linktype: int, ts: float, frame: bytes) -> None:
        """Process one link-layer frame."""
        self.feed_at(linktype, ts, frame, 0, len(frame))

    def feed_at(self, linktype: int, ts: float, buf: bytes, start: int, end: int) -> None:
        """Process the frame buf[start:end] without copying it."""
        if linktype not in self.linktypes:
            if linktype not in SUPPORTED_LINKTYPES:
                raise PcapError(f"link type {linktype} is not supported; egress-tui reads "
                                + ", ".join(sorted(set(LINKTYPE_NAMES.values()))))
            self.linktypes.add(linktype)
        self.packets += 1
        if not self.first_ts:
            self.first_ts = ts
        self.last_ts = ts
        self._frame = (linktype, buf, start)
        d = decode_at(linktype, buf, start, end)
        if d is None:
            self.ignored += 1
            return
        src, dst, proto, sport, dport, flags, seq, poff, pend = d
        if proto == PROTO_TCP:
            self._tcp(ts, src, dst, sport, dport, flags, seq, buf, poff, pend)
        elif proto == PROTO_UDP:
            self._udp(ts, src, dst, sport, dport, buf[poff:pend])
        else:
            self._unreachable(ts, src, dst, sport, dport, flags)

    # -- flows -------------------------------------------------------------------------

    def _new_conn(self, key: tuple, proto: int, client: bytes, cport: int, server: bytes,
                  sport: int, ts: float) -> Conn:
        flows = self.flows
        if len(flows) >= self._sweep_at:
            self._sweep(ts)
        if len(flows) >= self.max_flows:
            # Oldest first: a flow table is a window, the hosts keep what was learned.
            for _ in range(max(1, self.max_flows // 64)):
                old = flows.pop(next(iter(flows)))
                old.over = True
                if old.fast or old.proto == PROTO_UDP:
                    self._forget_fast(old)
                self.evicted += 1
        c = Conn(proto, client, cport, server, sport, ts)
        flows[key] = c
        srv = addr_text(server)
        if sport == 53 or server == DOCKER_DNS:
            # DNS over TCP: the resolver is not a destination of its own; the names
            # looked up through it are the hosts (each query is looked up, see _dns_tcp).
            c.name, c.app = srv, "dns"
            self.resolvers[srv] = self.resolvers.get(srv, 0) + 1
            return c
        name = self.addr_name.get(srv)
        if name:
            c.name, c.named_by = name, NAMED_DNS
        else:
            c.name = srv
        self._host(c.name, c.named_by == NAMED_ADDRESS).add_conn(c)
        self.dirty.add(c.name)
        if self.on_new_flow is not None:
            self.on_new_flow(c)
        return c

    def _sweep(self, ts: float) -> None:
        """Take the flows that are over out of the table (their hosts keep them): TCP
        connections closed or refused and UDP flows idle for FLOW_LINGER seconds of capture
        time, connections never answered idle for UNANSWERED_LINGER. Runs whenever the table
        has grown by half since the last sweep, so it costs O(1) a flow and the table stays
        about as large as the flows that are live, however long the capture."""
        flows = self.flows
        gone = [key for key, c in flows.items()
                if (ts - c.last > FLOW_LINGER and (c.proto == PROTO_UDP or c.fin or c.rst or c.refused))
                or (ts - c.last > UNANSWERED_LINGER and not (c.synack or c.established or c.pkts_in))]
        for key in gone:
            c = flows.pop(key)
            c.over = True
            if c.fast or c.proto == PROTO_UDP:
                self._forget_fast(c)
        self.swept += len(gone)
        self._sweep_at = max(SWEEP_MIN, len(flows) * 3 // 2)
        self._fold_over()

    def _fold_over(self) -> None:
        """Past CONNS_FULL connections kept in full, fold the oldest that are over into their
        hosts' totals (Host.fold: the rows stay the same), so that memory follows the hosts and
        the live flows, not the length of the capture. Oldest hosts first, each host's oldest
        first (the rows list what they saw in order); a connection through a proxy is kept."""
        if self.proxy_config is not None:
            return  # rows then judge each connection against the proxy: keep them all
        total = sum(len(h.conns) for h in self.hosts.values())
        for h in self.hosts.values():
            if total <= CONNS_FULL:
                return
            conns = h.conns
            while conns and total > CONNS_FULL and conns[0].over and conns[0].tunnel is None:
                h.fold()
                total -= 1

    def _intern_hello(self, hello: tls.ClientHello) -> tls.ClientHello:
        """One object for equal ClientHellos (a client's connections to one name send the same
        one, but for its random parts, which are not kept): a long capture keeps thousands."""
        key = (hello.sni, hello.ech, hello.ja4, tuple(hello.alpn), tuple(hello.versions), tuple(hello.groups))
        seen = self._hellos
        got = seen.get(key)
        if got is not None:
            return got
        if len(seen) >= HELLOS_KEPT:
            seen.clear()
        seen[key] = hello
        # the parts repeat more than the whole: share them too (equal keys, equal values)
        parts = self._hello_parts
        if len(parts) >= 4 * HELLOS_KEPT:
            parts.clear()
        hello.alpn = parts.setdefault(key[3], hello.alpn)
        hello.versions = parts.setdefault(key[4], hello.versions)
        hello.groups = parts.setdefault(key[5], hello.groups)
        hello.ja4 = parts.setdefault(hello.ja4, hello.ja4)
        return hello

    def set_proc(self, item: Conn | Lookup, info) -> None:
        """The process attribution's answer for a connection or a DNS query handed to
        on_new_flow: a ProcInfo, or procs.UNKNOWN when its socket was gone."""
        item.proc = info
        if isinstance(item, Conn):
            if item.host is not None:
                self.dirty.add(item.name)
            return
        for name in item.names:
            h = self.hosts.get(name)
            if h is not None:
                h.count_query_proc(info)
                self.dirty.add(name)

    def _lookup_query(self, proto: int, client: bytes, cport: int, server: bytes, sport: int,
                      msg: dnsmod.Message, ts: float) -> None:
        """Hand a DNS query to the process attribution (the names it counts for are those
        _dns_message counts the query for)."""
        names = tuple(q for q, qtype in msg.questions
                      if q and qtype != dnsmod.TYPE_PTR and not q.endswith(".arpa"))
        if not names:
            return
        asked = self._asked_docker
        key = msg.question_key()
        if server == DOCKER_DNS:
            if len(asked) >= 1024:
                asked.pop(next(iter(asked)))
            asked[key] = ts
        elif asked:
            t = asked.get(key)
            if t is not None and 0 <= ts - t < DOCKER_FORWARD_WAIT:
                return  # Docker's resolver passing on a query a program asked it: that one counted
        self.on_new_flow(Lookup(proto, client, cport, server, sport, names, ts))

    def _host(self, name: str, is_address: bool = False) -> Host:
        h = self.hosts.get(name)
        if h is None:
            h = self.hosts[name] = Host(name, is_address=is_address)
        return h

    def _rename(self, c: Conn, name: str, named_by: str) -> None:
        if not name or name == c.name:
            c.named_by = named_by if c.name == name else c.named_by
            return
        old = c.host
        if old is not None:
            old.remove_conn(c)
            self.dirty.add(old.name)
            if not old.conns and not old.queries and not old.old_count:
                del self.hosts[old.name]
        c.name, c.named_by = name, named_by
        self._host(name).add_conn(c)
        self.dirty.add(name)

    def _tcp(self, ts, src, dst, sport, dport, flags, seq, buf, poff, pend) -> None:
        flows = self.flows
        key = (PROTO_TCP, src, sport, dst, dport)
        c = flows.get(key)
        if c is not None:
            from_client = True
        else:
            c = flows.get((PROTO_TCP, dst, dport, src, sport))
            if c is not None:
                from_client = False
            else:
                if flags & TCP_SYN and flags & TCP_ACK:
                    from_client = False
                    c = self._new_conn((PROTO_TCP, dst, dport, src, sport), PROTO_TCP, dst, dport, src, sport, ts)
                elif flags & TCP_SYN or sport > dport or (sport == dport):
                    from_client = True
                    c = self._new_conn(key, PROTO_TCP, src, sport, dst, dport, ts)
                else:
                    from_client = False
                    c = self._new_conn((PROTO_TCP, dst, dport, src, sport), PROTO_TCP, dst, dport, src, sport, ts)
        c.last = ts
        if from_client:
            c.pkts_out += 1
            if flags & TCP_SYN:
                if not c.syns:
                    c.stream = Stream((seq + 1) & 0xFFFFFFFF)
                    self.dirty.add(c.name)
                c.syns += 1
            elif flags & TCP_ACK and c.synack and not c.established:
                c.established = True
                self.dirty.add(c.name)
            if pend > poff:
                c.bytes_out += pend - poff
                if c.syns == 0 and c.stream is None and not c.app and c.pkts_out == 1:
                    c.stream = Stream(seq)  # capture began mid-connection: best effort
                if c.stream is not None:
                    if c.stream.add(seq, buf[poff:pend]):
                        self._inspect(c)
                    elif c.pkts_out > STREAM_GIVE_UP and c.stream is not None and c.sport != 53:
                        c.stream = None  # a hole that never fills: the start was not captured
            if flags & (TCP_FIN | TCP_RST):
                if flags & TCP_RST:
                    c.rst = True
                else:
                    c.fin = True
                self.dirty.add(c.name)
        else:
            c.pkts_in += 1
            if flags & TCP_SYN:
                if not c.synack:
                    c.synack = True
                    c.rseq = (seq + 1) & 0xFFFFFFFF
                    self.dirty.add(c.name)
                if c.app == "dns" and c.rstream is None:
                    c.rstream = Stream((seq + 1) & 0xFFFFFFFF, DNS_TCP_LIMIT)
            elif flags & TCP_RST:
                if not c.synack and not c.established:
                    c.refused = True
                else:
                    c.rst = True
                self.dirty.add(c.name)
            else:
                if not c.established and flags & TCP_ACK and (pend > poff or c.synack):
                    c.established = True
                    self.dirty.add(c.name)
                if flags & TCP_FIN:
                    c.fin = True
                    self.dirty.add(c.name)
            if pend > poff:
                c.bytes_in += pend - poff
                t = c.tunnel
                if t is not None and c.rstream is None and t.sphase != "done":
                    if c.pkts_in > 4 * STREAM_GIVE_UP:
                        t.sphase = "done"  # no proxy answer among this many packets: not a proxy
                    else:
                        c.rstream = Stream(seq, TUNNEL_REPLY_LIMIT)  # the next answer, from here
                if c.rstream is not None:
                    if t is not None:
                        if c.rstream.add(seq, buf[poff:pend]):
                            self._tunnel_server(c)
                        elif c.pkts_in > STREAM_GIVE_UP:
                            c.rstream = None
                    else:
                        if self._outgoing():
                            c.forged = True  # "answers" the container sent itself
                        if c.rstream.add(seq, buf[poff:pend]):
                            self._dns_tcp(c, c.rstream, ts, answers=True)
        if c.established and c.stream is None and c.rstream is None and not c.fast:
            self._go_fast(c)


    def _inspect(self, c: Conn) -> None:
        """Look at the contiguous start of the client's stream: TLS, HTTP, DNS or a proxy."""
        s = c.stream
        data = s.data
        if c.app == "dns" or c.sport == 53 or c.cport == 53:
            self._dns_tcp(c, s, c.last)
            return
        if c.tunnel is not None:
            self._tunnel_client(c)
            return
        b0 = data[0]
        if b0 == 0x16:
            self._tls(c, 0)
            return
        if b0 in (4, 5):
            # SOCKS: version 4 or 5 in the first byte; the rest must fit the protocol, or the
            # connection is left alone (see _tunnel_client)
            self._start_tunnel(c, "socks5" if b0 == 5 else "socks4")
            self._tunnel_client(c)
            return
        if bytes(data[:3]) in HTTP_PREFIXES:
            self._http(c, 0)
            return
        c.stream = None

    def _tls(self, c: Conn, off: int) -> None:
        """A ClientHello at ``off`` in the client's stream: straight to the server, or inside a
        proxy tunnel (then it names what the tunnel really reaches)."""
        s = c.stream
        r = tls.handshake_from_records(bytes(s.data[off:]) if off else s.data)
        if r is tls.NEED_MORE and not s.full:
            return
        c.stream = None
        if r is tls.NEED_MORE or r is tls.NOT_TLS:
            return
        hello = tls.parse_client_hello(r, "t")
        if hello is None:
            return
        c.hello = hello = self._intern_hello(hello)
        c.app = "tls"
        t = c.tunnel
        if t is None and self._to_proxy(c):
            # TLS to the proxy itself (an https:// proxy): the CONNECT inside is encrypted
            t = c.tunnel = Tunnel("tls-proxy")
            t.phase = t.sphase = "done"
            c.host.via.add("proxy")
        if hello.sni:
            if t is not None and not t.hidden:
                t.inner, t.inner_by = hello.sni.lower().rstrip("."), "sni"
                t.phase = "done"
            self._rename(c, hello.sni, NAMED_SNI)
        if t is not None:
            c.host.via.add("proxy")
        c.host.via.add("tls")
        self.dirty.add(c.name)

    def _http(self, c: Conn, off: int) -> None:
        """An HTTP request head at ``off``: named by its Host header, or through a proxy by its
        absolute URI (``GET http://name/``) or its CONNECT target."""
        s = c.stream
        data = bytes(s.data[off:])
        if not data.startswith(HTTP_METHODS):
            if len(data) >= 8:
                c.stream = None
            return
        head_end = data.find(b"\r\n\r\n")
        if head_end < 0 and len(data) < HTTP_HEAD_LIMIT:
            return
        head = data[:head_end if head_end >= 0 else HTTP_HEAD_LIMIT]
        t = c.tunnel
        if t is None and head_end >= 0:
            target = _request_target(head)
            if head.startswith(b"CONNECT ") or target is not None:
                self._start_tunnel(c, "connect" if head.startswith(b"CONNECT ") else "http")
                self._tunnel_client(c)
                return
        c.stream = None
        host = _header(head, b"host")
        if head.startswith(b"CONNECT "):
            host = head[8:head.find(b" ", 8)]  # a CONNECT inside a tunnel: its target
        c.app = c.app or "http"
        if host:
            name = _host_text(host)
            c.http_host = name
            if t is not None:
                t.inner, t.inner_by = name, "http"
                t.phase = "done"
            self._rename(c, name, NAMED_HTTP)
        if t is not None:
            c.host.via.add("proxy")
        c.host.via.add("http")
        self.dirty.add(c.name)

    # -- proxies -------------------------------------------------------------------------

    def set_proxy_config(self, cfg: ProxyConfig | None, addresses: dict[str, list[str]] | None = None) -> None:
        """The proxies the container is told to use (its HTTP(S)_PROXY...): connections to them
        that speak TLS are tunnels whose destination is hidden; connections around them are
        flagged as proxy bypass. ``addresses``: what each proxy host name resolves to, when known."""
        self.proxy_config = cfg if cfg else None
        self.proxy_addrs = set()
        self.proxy_names = set()
        for ep in (cfg.endpoints if cfg else []):
            if ep.is_address:
                self.proxy_addrs.add((ep.host, ep.port))
            else:
                self.proxy_names.add((ep.host, ep.port))
                for a in (addresses or {}).get(ep.host, []):
                    self.proxy_addrs.add((a, ep.port))

    def _to_proxy(self, c: Conn) -> bool:
        """Does this connection go to one of the configured proxies? Its address is one, or
        DNS gave it for a proxy's name; or, while a proxy's name has no known address (looked
        up before the capture began, or in /etc/hosts), it asked for a tunnel on that proxy's port."""
        if not self.proxy_addrs and not self.proxy_names:
            return False
        addr = addr_text(c.server)
        if (addr, c.sport) in self.proxy_addrs:
            return True
        if any((n, c.sport) in self.proxy_names for n in self.addr_names.get(addr, ())):
            return True
        t = c.tunnel
        if t is None or t.hidden or not t.targets:
            return False
        return any(port == c.sport and not self._proxy_address_known(name, port)
                   for name, port in self.proxy_names)

    def _proxy_address_known(self, name: str, port: int) -> bool:
        if any(p == port for _a, p in self.proxy_addrs):
            return True
        return any(name in names for names in self.addr_names.values())

    def bypasses_proxy(self, c: Conn) -> bool:
        """A proxy is configured, and this connection went somewhere else (NO_PROXY aside)."""
        cfg = self.proxy_config
        if cfg is None or c.app == "dns" or c.sport == 53 or c.server == DOCKER_DNS:
            return False
        if self._to_proxy(c):
            return False
        addr = addr_text(c.server)
        if addr.startswith("127.") or addr == "::1":
            return False  # inside the container's own namespace: not egress
        return not (cfg.excluded(c.name) or cfg.excluded(addr))

    def row(self, h: Host):
        """A host's row, with proxy bypass counted when a proxy is configured."""
        if self.proxy_config is None:
            return h.to_row()
        row = h.to_row(self.bypasses_proxy, self._to_proxy)
        if not row.is_proxy and not h.conns and any(h.name == n for n, _p in self.proxy_names):
            row.is_proxy = True  # the container looking up its proxy's name
        return row

    def _start_tunnel(self, c: Conn, kind: str) -> None:
        c.tunnel = Tunnel(kind)
        s = c.stream
        s.limit = STREAM_LIMIT + TUNNEL_EXTRA
        if kind == "http":
            c.tunnel.sphase = "done"  # the answer is the destination's, not the proxy's
        elif c.rseq is not None and c.rstream is None:
            c.rstream = Stream(c.rseq, TUNNEL_REPLY_LIMIT)

    def _not_a_tunnel(self, c: Conn) -> None:
        """What looked like a proxy handshake was not one: forget it, name nothing from it."""
        c.tunnel = None
        c.stream = None
        c.rstream = None

    def _tunnel_client(self, c: Conn) -> None:
        """Follow the client's side of a proxy handshake, then hand what it sends through the
        tunnel to the TLS or HTTP reader."""
        t = c.tunnel
        s = c.stream
        while c.stream is not None and c.tunnel is t:
            data = s.data
            p = t.cpos
            n = len(data) - p
            if n <= 0:
                return
            if t.phase == "inner":
                if t.kind == "connect" and not t.open and data[p:p + 8] == b"CONNECT ":
                    if t.requests >= CONNECT_RETRIES:
                        c.stream = None
                        return
                    t.phase = "request"  # the proxy said no (407): the client asks again
                    continue
                s.limit = max(s.limit, p + STREAM_LIMIT)
                if data[p] == 0x16:
                    self._tls(c, p)
                elif bytes(data[p:p + 3]) in HTTP_PREFIXES:
                    self._http(c, p)
                else:
                    c.stream = None  # some other protocol inside: the target names it
                return
            if t.kind in ("connect", "http"):
                end = data.find(b"\r\n\r\n", p)
                if end < 0:
                    if n >= HTTP_HEAD_LIMIT:
                        c.stream = None
                    return
                head = bytes(data[p:end])
                t.requests += 1
                t.auth = t.auth or _header(head, b"proxy-authorization") is not None
                if t.kind == "connect":
                    if not head.startswith(b"CONNECT "):
                        c.stream = None
                        return
                    got = _authority(head[8:head.find(b" ", 8) if head.find(b" ", 8) > 0 else len(head)])
                    t.cpos = end + 4
                    t.phase = "inner"
                    if got is None:
                        self._tunnel_target(c, "", 0)
                        continue
                    self._tunnel_target(c, got[0], got[1] or 443)
                    continue
                target = _request_target(head)
                if target is None:
                    c.stream = None
                    return
                host = _header(head, b"host")
                inner = _host_text(host) if host else ""
                if t.requests == 1:
                    self._tunnel_target(c, target[0], target[1])
                    t.inner, t.inner_by = (inner, "http") if inner else ("", "")
                    c.app = "http"
                    c.http_host = t.target
                    c.host.via.add("http")
                elif (target[0], target[1]) != (t.target, t.port) and len(t.seen) < KEEPALIVE_HOSTS:
                    self._keepalive_request(c, target, inner, end - p)
                # keep-alive: the next request follows this one's body (GET has none)
                length = _header(head, b"content-length")
                if _header(head, b"transfer-encoding") is not None or (length is not None and not length.isdigit()):
                    c.stream = None  # a chunked upload: where the next request starts is not followed
                    return
                s.skip(end + 4 - p + (int(length) if length is not None else 0))
                t.cpos = 0
                continue
            if t.kind == "socks5":
                if not self._socks5_client(c, t, data, p, n):
                    return
                continue
            if t.kind in ("socks4", "socks4a"):
                if not self._socks4_client(c, t, data, p, n):
                    return
                continue
            c.stream = None
            return

    def _keepalive_request(self, c: Conn, target: tuple[str, int], inner: str, size: int) -> None:
        """A further request on a kept-alive connection to an HTTP proxy, for another host: it
        gets a connection record of its own under that host, so its verdict is not hidden
        behind the first request's."""
        t = c.tunnel
        t.seen.add(target)
        child = Conn(c.proto, c.client, c.cport, c.server, c.sport, c.last)
        child.synack, child.established, child.syns = c.synack, c.established, c.syns
        child.pkts_out, child.bytes_out = 1, size
        child.app, child.http_host = "http", target[0]
        child.proc = c.proc  # the same socket; still None if its lookup has not come back yet
        ct = child.tunnel = Tunnel("http")
        ct.phase = ct.sphase = "done"
        ct.requests = t.requests
        ct.target, ct.port = target
        ct.targets.append(target)
        if inner:
            ct.inner, ct.inner_by = inner, "http"
        name, named_by = target[0], NAMED_TARGET
        if is_address(name):
            name, named_by = self.addr_name.get(name, name), NAMED_DNS if name in self.addr_name else NAMED_ADDRESS
            if named_by == NAMED_ADDRESS:
                self._host(name, True)
        child.name, child.named_by = name, named_by
        h = self._host(name)
        h.add_conn(child)
        h.via.update(("proxy", "http"))
        self.dirty.add(name)

    def _socks5_client(self, c: Conn, t: Tunnel, data: bytearray, p: int, n: int) -> bool:
        """One SOCKS5 client message (RFC 1928, RFC 1929); False to wait or stop."""
        if t.phase == "request" and p == 0:
            # greeting: VER NMETHODS METHODS...
            if n < 2:
                return False
            k = data[1]
            if k == 0:
                self._not_a_tunnel(c)
                return False
            if n < 2 + k:
                return False
            t.cpos = 2 + k
            t.phase = "after"
            return True
        b0 = data[p]
        if t.phase == "after" and b0 == 1:
            # username/password: VER ULEN UNAME PLEN PASSWD, a credential: skipped, never kept
            if n < 2 or n < 3 + data[p + 1]:
                return False
            ulen = data[p + 1]
            plen = data[p + 2 + ulen]
            if n < 3 + ulen + plen:
                return False
            t.auth = True
            t.cpos = p + 3 + ulen + plen
            return True
        if b0 != 5:
            self._not_a_tunnel(c)
            return False
        if n < 5:
            return False
        cmd, rsv, atyp = data[p + 1], data[p + 2], data[p + 3]
        if cmd not in (1, 2, 3) or rsv != 0 or atyp not in (1, 3, 4):
            self._not_a_tunnel(c)
            return False
        if atyp == 1:
            size, host_at = 4, p + 4
        elif atyp == 4:
            size, host_at = 16, p + 4
        else:
            size, host_at = data[p + 4], p + 5
            if size == 0:
                self._not_a_tunnel(c)
                return False
        end = host_at + size + 2
        if len(data) < end:
            return False
        raw = bytes(data[host_at:host_at + size])
        host = addr_text(raw) if atyp != 3 else _host_text(raw)
        port = (data[end - 2] << 8) | data[end - 1]
        t.cpos = end
        t.phase = "inner" if cmd == 1 else "done"
        self._tunnel_target(c, host, port)
        if cmd != 1:
            c.stream = None
        return True

    def _socks4_client(self, c: Conn, t: Tunnel, data: bytearray, p: int, n: int) -> bool:
        """A SOCKS4 or 4a request: VN CD DSTPORT DSTIP USERID 0 [HOST 0]."""
        if p != 0 or n < 9:
            return False
        if data[1] not in (1, 2):
            self._not_a_tunnel(c)
            return False
        zero = data.find(b"\0", 8, 8 + 256)
        if zero < 0:
            if n >= 8 + 256:
                self._not_a_tunnel(c)
            return False
        port = (data[2] << 8) | data[3]
        ip = bytes(data[4:8])
        end = zero + 1
        t.auth = zero > 8  # a user id
        if ip[:3] == b"\0\0\0" and ip[3]:
            z2 = data.find(b"\0", end, end + 256)
            if z2 < 0:
                if len(data) >= end + 256:
                    self._not_a_tunnel(c)
                return False
            host = _host_text(bytes(data[end:z2]))
            end = z2 + 1
            t.kind = "socks4a"
        else:
            host = addr_text(ip)
        t.cpos = end
        t.phase = "inner" if data[1] == 1 else "done"
        self._tunnel_target(c, host, port)
        if data[1] != 1:
            c.stream = None
        return True

    def _tunnel_target(self, c: Conn, host: str, port: int) -> None:
        """The client asked the proxy for host:port: the row is named by it until the tunnel
        shows the name spoken inside."""
        t = c.tunnel
        t.target, t.port = host, port
        if host and (host, port) not in t.targets and len(t.targets) < TARGETS_KEPT:
            t.targets.append((host, port))
        if host and is_address(host):
            # the names DNS gave this address (the engine's own set, not a copy: a CDN address
            # can have hundreds, and one learned a moment later counts too)
            t.target_names = self.addr_names.get(host, ())
        if not t.inner and host:
            if is_address(host):
                name = self.addr_name.get(host)
                if name:
                    self._rename(c, name, NAMED_DNS)
                else:
                    self._host(host, True)
                    self._rename(c, host, NAMED_ADDRESS)
            else:
                self._rename(c, host, NAMED_TARGET)
        c.host.via.add("proxy")
        self.dirty.add(c.name)

    def _tunnel_server(self, c: Conn) -> None:
        """Follow the proxy's answers: yes (200, SOCKS success) opens the tunnel, anything else
        refuses this destination (403, 407, a SOCKS error)."""
        t = c.tunnel
        s = c.rstream
        while c.rstream is not None:
            data = s.data
            p = t.spos
            n = len(data) - p
            if n <= 0:
                return
            if t.kind == "connect":
                end = data.find(b"\r\n\r\n", p)
                if not data.startswith(b"HTTP/", p) or (end < 0 and n >= HTTP_HEAD_LIMIT):
                    c.rstream = None
                    return
                if end < 0:
                    return
                head = bytes(data[p:end])
                code = _status_code(head)
                if code is None:
                    c.rstream = None
                    return
                body = 0
                if not 200 <= code < 300 and code >= 200 and code not in (204, 304):
                    length = _header(head, b"content-length")
                    if length is not None and length.strip().isdigit():
                        body = int(length.strip())
                    elif _header(head, b"transfer-encoding") is not None:
                        body = -1  # chunked: the rest of this stream cannot be followed
                if 100 <= code < 200:
                    t.spos = end + 4
                    continue
                t.reply = str(code)
                t.replies += 1
                if 200 <= code < 300:
                    t.open, t.refused = True, ""
                    t.sphase = "done"
                    c.rstream = None
                else:
                    t.refused = f"proxy answered {code}" + (" (authentication required)" if code == 407 else "")
                    if t.replies >= CONNECT_RETRIES:
                        t.sphase = "done"
                        c.rstream = None
                    elif body < 0 or body > s.limit:
                        # a body of unknown length: the next answer (to the client's next
                        # CONNECT) is read afresh from the next segment that arrives
                        c.rstream = None
                    else:
                        # the next answer (to the client's next CONNECT) starts after the body
                        s.skip(end + 4 + body)
                        t.spos = 0
                self.dirty.add(c.name)
                continue
            if t.kind == "socks5":
                if t.sphase == "reply" and p == 0:
                    t.sphase = "method"
                if t.sphase == "method":
                    if n < 2:
                        return
                    m = data[p + 1]
                    t.spos = p + 2
                    if data[p] != 5 or m == 0xFF:
                        self._tunnel_refused(c, "SOCKS5: no acceptable authentication method")
                        return
                    t.sphase = "auth" if m == 2 else "connect"
                    continue
                if t.sphase == "auth":
                    if n < 2:
                        return
                    t.spos = p + 2
                    if data[p + 1] != 0:
                        self._tunnel_refused(c, "SOCKS5: authentication failed")
                        return
                    t.sphase = "connect"
                    continue
                if n < 5:
                    return
                rep, atyp = data[p + 1], data[p + 3]
                size = 4 if atyp == 1 else 16 if atyp == 4 else data[p + 4] + 1
                if n < 4 + size + 2:
                    return
                t.reply = f"SOCKS5 {rep}"
                self._tunnel_answer(c, rep == 0, f"SOCKS5 reply {rep} ({SOCKS5_REPLIES.get(rep, 'unknown')})")
                return
            if t.kind in ("socks4", "socks4a"):
                if n < 8:
                    return
                cd = data[p + 1]
                t.reply = f"SOCKS4 {cd:#x}"
                self._tunnel_answer(c, cd == 0x5A, f"SOCKS4 reply {cd:#x} ({SOCKS4_REPLIES.get(cd, 'unknown')})")
                return
            c.rstream = None
            return

    def _tunnel_answer(self, c: Conn, ok: bool, why: str) -> None:
        """The proxy's final answer: the tunnel is open, or refused for this reason."""
        if not ok:
            self._tunnel_refused(c, why)
            return
        t = c.tunnel
        t.open, t.refused = True, ""
        t.sphase = "done"
        c.rstream = None
        self.dirty.add(c.name)

    def _tunnel_refused(self, c: Conn, why: str) -> None:
        t = c.tunnel
        t.refused = why
        t.sphase = "done"
        c.rstream = None
        c.stream = None
        self.dirty.add(c.name)

    def _udp(self, ts, src, dst, sport, dport, payload) -> None:
        if sport == 53 or dport == 53 or dst == DOCKER_DNS or src == DOCKER_DNS:
            self._dns_udp(ts, src, dst, sport, dport, payload)
            return
        flows = self.flows
        key = (PROTO_UDP, src, sport, dst, dport)
        c = flows.get(key)
        from_client = True
        if c is None:
            c = flows.get((PROTO_UDP, dst, dport, src, sport))
            if c is None:
                c = self._new_conn(key, PROTO_UDP, src, sport, dst, dport, ts)
                # the client's datagrams only add to counters, unless one may be a QUIC Initial
                self.fast_udp[src + dst + sport.to_bytes(2, "big") + dport.to_bytes(2, "big")] = (c, True)
            else:
                from_client = False
        c.last = ts
        if from_client:
            c.pkts_out += 1
            c.bytes_out += len(payload)
            if payload and payload[0] & 0xC0 == 0xC0 and c.app in ("", "quic") and c.hello is None:
                self._quic(c, payload)
        else:
            if not c.pkts_in:
                self.dirty.add(c.name)
                # from the second answer on, nothing but counters
                self.fast_udp[src + dst + sport.to_bytes(2, "big") + dport.to_bytes(2, "big")] = (c, False)
            c.pkts_in += 1
            c.bytes_in += len(payload)

    def _quic(self, c: Conn, payload: bytes) -> None:
        r = quic.parse_initial_datagram(payload)
        if r is None:
            return
        _dcid, frames = r
        if c.crypto is None:
            c.crypto = quic.CryptoAssembler()
            c.app = "quic"
        for off, data in frames:
            c.crypto.add(off, data)
        msg = c.crypto.client_hello()
        if msg is None:
            return
        c.crypto = None
        hello = tls.parse_client_hello(msg, "q")
        if hello is None:
            return
        c.hello = hello = self._intern_hello(hello)
        if hello.sni:
            self._rename(c, hello.sni, NAMED_SNI)
        c.host.via.add("quic")
        self.dirty.add(c.name)

    def _unreachable(self, ts, src, dst, sport, dport, proto) -> None:
        """An ICMP error quoting one of our packets: a REJECT rule or a closed UDP port."""
        c = self.flows.get((proto, src, sport, dst, dport))
        if c is not None and not c.established and not c.pkts_in:
            c.refused = True
            c.last = ts
            self.dirty.add(c.name)

    # -- DNS ---------------------------------------------------------------------------

    def set_resolvers(self, resolvers: Iterable[str] | None) -> None:
        """The container's configured resolvers (its resolv.conf, and Docker's upstream
        servers behind 127.0.0.11); None to infer them from where queries go (files)."""
        self.trusted_resolvers = None if resolvers is None else frozenset(resolvers)

    def _outgoing(self) -> bool:
        """The frame being decoded was sent by the container, on an interface other than
        loopback (Linux cooked captures say so; other link types cannot tell)."""
        lt, buf, start = self._frame
        if lt == 276:
            return buf[start + 10] == PACKET_OUTGOING and ((buf[start + 8] << 8) | buf[start + 9]) != ARPHRD_LOOPBACK
        if lt == 113:
            return (((buf[start] << 8) | buf[start + 1]) == PACKET_OUTGOING
                    and ((buf[start + 2] << 8) | buf[start + 3]) != ARPHRD_LOOPBACK)
        return False

    def _dns_udp(self, ts, src, dst, sport, dport, payload) -> None:
        try:
            msg = self._parse_dns(payload)
        except (dnsmod.DnsError, IndexError, ValueError, struct.error) as e:
            if payload[2:3] and payload[2] & 0x80:
                self._flag(ts, None, f"malformed DNS answer ({e})", src, sport, dst, dport)
            return
        if not msg.response:
            if dport == 53 or dst == DOCKER_DNS:
                srv = addr_text(dst)
                self.resolvers[srv] = self.resolvers.get(srv, 0) + 1
                self._expect(PROTO_UDP, src, sport, dst, dport, msg, ts)
            self._dns_message(msg, ts)
            if self.on_new_flow is not None:
                self._lookup_query(PROTO_UDP, src, sport, dst, dport, msg, ts)
            return
        reason = "sent by the container itself" if self._outgoing() else ""
        self._answer(PROTO_UDP, src, sport, dst, dport, msg, ts, reason)

    def _dns_tcp(self, c: Conn, s: Stream, ts: float, answers: bool = False) -> None:
        """DNS over TCP: a 2-byte length, then the message, repeated on one stream."""
        c.app = "dns"
        data = s.data
        pos = s.consumed
        while pos + 2 <= len(data):
            n = (data[pos] << 8) | data[pos + 1]
            if pos + 2 + n > len(data):
                break
            try:
                msg = self._parse_dns(bytes(data[pos + 2:pos + 2 + n]))
            except (dnsmod.DnsError, IndexError, ValueError, struct.error) as e:
                if answers:
                    self._flag(ts, None, f"malformed DNS answer ({e})", c.server, c.sport, c.client, c.cport)
                msg = None
            pos += 2 + n
            if msg is None:
                continue
            if not answers and not msg.response:
                self._expect(PROTO_TCP, c.client, c.cport, c.server, c.sport, msg, ts)
                self._dns_message(msg, ts)
                if self.on_new_flow is not None:
                    self._lookup_query(PROTO_TCP, c.client, c.cport, c.server, c.sport, msg, ts)
            elif answers and msg.response:
                reason = "sent by the container itself" if c.forged else ""
                self._answer(PROTO_TCP, c.server, c.sport, c.client, c.cport, msg, ts, reason)
            else:
                self._flag(ts, msg, "a DNS message going the wrong way on its connection",
                           c.server, c.sport, c.client, c.cport)
        s.consumed = pos

    def _expect(self, proto: int, client: bytes, cport: int, server: bytes, sport: int,
                msg: dnsmod.Message, ts: float) -> None:
        """Remember a query so that its answer can be recognised."""
        self.query_sources.add(client)
        key = (proto, client, cport, msg.ident)
        q = self.pending.get(key)
        if q is not None and q[0] == server and q[2] == msg.question_key():
            q[4] += 1  # the client asked again (a retry): one more answer is fine
            q[3] = ts
            return
        pending = self.pending
        if len(pending) >= PENDING_QUERIES:
            for old in list(pending)[:PENDING_QUERIES // 8]:
                del pending[old]
        self.answered.pop(key, None)
        pending[key] = [server, sport, msg.question_key(), ts, 1]

    def _answer(self, proto: int, src: bytes, sport: int, dst: bytes, dport: int,
                msg: dnsmod.Message, ts: float, reason: str = "") -> None:
        """Take an answer only if it passes the trust model; otherwise flag it."""
        key = (proto, dst, dport, msg.ident)
        signature = (msg.rcode, tuple(sorted((a.owner, a.rtype, a.value) for a in msg.answers)))
        if not reason:
            reason = self._untrusted(key, src, sport, msg, ts, signature)
        if reason:
            self._flag(ts, msg, reason, src, sport, dst, dport)
            return
        q = self.pending[key]
        q[4] -= 1
        if q[4] <= 0:
            del self.pending[key]
        named = self._dns_message(msg, ts)
        answered = self.answered
        if len(answered) >= ANSWERED_KEPT:
            for old in list(answered)[:ANSWERED_KEPT // 8]:
                del answered[old]
        answered[key] = (signature, named, src)

    def _untrusted(self, key: tuple, src: bytes, sport: int, msg: dnsmod.Message, ts: float,
                   signature: tuple) -> str:
        """Why an answer cannot be believed, or "" when it can."""
        srv = addr_text(src)
        q = self.pending.get(key)
        if q is not None and ts - q[3] > QUERY_WAIT:
            del self.pending[key]
            q = None
        if q is None:
            done = self.answered.get(key)
            if done is not None and done[2] == src:
                if done[0] == signature:
                    return "a repeated answer to a query already answered"
                self._withdraw(done[1], ts)
                return ("a second, different answer to a query already answered: both are "
                        "distrusted (a forgery racing the resolver?)")
            return "answers no query the container sent (ID and ports)"
        server, qport = q[0], q[1]
        if src != server:
            return f"from {srv}, but the query went to {addr_text(server)}"
        if sport != qport and not (server == DOCKER_DNS and sport == 53):
            return f"from port {sport}, but the query went to port {qport}"
        if msg.question_key() != q[2]:
            return "its question is not the one the container asked"
        if self.trusted_resolvers is not None:
            if srv not in self.trusted_resolvers:
                return f"from {srv}, which is not one of the container's resolvers"
        elif src in self.query_sources:
            return f"from {srv}, an address that itself sends queries"
        return ""

    def _flag(self, ts: float, msg: dnsmod.Message | None, reason: str, src: bytes, sport: int,
              dst: bytes, dport: int) -> None:
        """Record an answer that was not believed; it names nothing and feeds no firewall."""
        self.suspicious_count += 1
        claims = []
        if msg is not None:
            claims = [f"{a.owner} {dnsmod.TYPE_NAMES.get(a.rtype, a.rtype)} {a.value}" for a in msg.answers[:8]]
        item = {"time": ts, "reason": reason, "from": f"{addr_text(src)}:{sport}",
                "to": f"{addr_text(dst)}:{dport}", "question": msg.questions[0][0] if msg and msg.questions else "",
                "claims": claims}
        self.suspicious.append(item)
        name = item["question"]
        if name and not name.endswith(".arpa"):
            h = self._host(name)
            h.touch(ts)
            h.flag(reason, item)
            self.dirty.add(name)

    def _withdraw(self, named: list[tuple[str, str]], ts: float) -> None:
        """Take back what an answer named, when a conflicting answer shows it may be forged."""
        for root, addr in named:
            names = self.addr_names.get(addr)
            if names is not None:
                names.discard(root)
                if not names:
                    del self.addr_names[addr]
            if self.addr_name.get(addr) == root:
                del self.addr_name[addr]
            self.dns_ttl.pop((root, addr), None)
            h = self.hosts.get(root)
            if h is not None:
                h.resolved.discard(addr)
                for c in list(h.conns):
                    if c.named_by == NAMED_DNS and addr_text(c.server) == addr:
                        self._rename(c, addr, NAMED_ADDRESS)
                        if c.host is not None:
                            c.host.is_address = True
                self.dirty.add(root)
            if self.on_dns_withdraw is not None:
                self.on_dns_withdraw(root, addr)

    def _dns_message(self, msg: dnsmod.Message, ts: float) -> list[tuple[str, str]]:
        """Learn from a query or a trusted answer; returns the (name, address) pairs named."""
        named: list[tuple[str, str]] = []
        if not msg.response:
            for qname, qtype in msg.questions:
                if not qname or qtype == dnsmod.TYPE_PTR or qname.endswith(".arpa"):
                    continue
                h = self._host(qname)
                h.queries += 1
                h.via.add("dns")
                h.touch(ts)
                self.dirty.add(qname)
            return named
        # Follow CNAME chains back to the name the client asked for.
        origin: dict[str, str] = {q: q for q, _ in msg.questions}
        for a in msg.answers:
            if a.rtype == dnsmod.TYPE_CNAME or a.rtype in (dnsmod.TYPE_SVCB, dnsmod.TYPE_HTTPS):
                root = origin.get(a.owner)
                if root is not None and a.value != a.owner:
                    origin.setdefault(a.value, root)
        for qname, qtype in msg.questions:
            if not qname or qname.endswith(".arpa"):
                continue
            h = self._host(qname)
            h.via.add("dns")
            h.touch(ts)
            if msg.rcode:
                h.rcodes.add(dnsmod.RCODE_NAMES.get(msg.rcode, str(msg.rcode)))
            self.dirty.add(qname)
        for a in msg.answers:
            # Only records on the chain from the question count: an answer cannot name
            # addresses for names nobody asked about.
            root = origin.get(a.owner)
            if root is None or root not in self.hosts:
                continue
            h = self.hosts[root]
            if a.rtype == dnsmod.TYPE_CNAME and a.value not in h.cnames:
                h.cnames.append(a.value)
            addrs = [a.value] if a.rtype in (dnsmod.TYPE_A, dnsmod.TYPE_AAAA) else a.hints
            for addr in addrs:
                self.addr_name[addr] = root
                self.addr_names.setdefault(addr, set()).add(root)
                self.dns_ttl[(root, addr)] = (ts, a.ttl)
                h.resolved.add(addr)
                named.append((root, addr))
                if self.on_dns_answer is not None and self.trusted_resolvers is not None:
                    self.on_dns_answer(root, addr, a.ttl)
                self._adopt(addr, root)
        return named

    def _adopt(self, addr: str, name: str) -> None:
        """An address host made before its DNS answer was seen takes the name now."""
        h = self.hosts.get(addr)
        if h is None or not h.is_address:
            return
        for c in list(h.conns):
            if c.named_by == NAMED_ADDRESS:
                self._rename(c, name, NAMED_DNS)

    # -- output ------------------------------------------------------------------------

    def take_dirty(self) -> set[str]:
        """Names whose rows changed since the last call (for updating a table in place)."""
        d, self.dirty = self.dirty, set()
        return {n for n in d if n in self.hosts}

    def host_list(self) -> list[Host]:
        return list(self.hosts.values())

    def shared_addresses(self) -> dict[str, set[str]]:
        """Addresses that DNS gave for more than one name (shared CDN front ends)."""
        return {a: n for a, n in self.addr_names.items() if len(n) > 1}



def _host_text(raw: bytes) -> str:
    """A host name from the wire, as text: lower case, no port, no trailing dot. Bytes that
    are not ASCII become U+FFFD: the name then matches no allowlist entry."""
    return _strip_port(raw.strip().decode("ascii", "replace")).lower().rstrip(".")


def _header(head: bytes, name: bytes) -> bytes | None:
    """The value of the first header called ``name`` (lower case) in a request or response head."""
    n = len(name) + 1
    for line in head.split(b"\r\n")[1:]:
        if line[:n].lower() == name + b":":
            return line[n:].strip()
    return None


def _authority(raw: bytes) -> tuple[str, int] | None:
    """``host:port``, ``[v6]:port`` (a CONNECT target or a URI's authority), userinfo dropped."""
    text = raw.decode("ascii", "replace")
    text = text.rpartition("@")[2]  # user:password@ is a credential: never kept
    port = 0
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        host, rest = text[1:end], text[end + 1:]
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
    else:
        host, colon, p = text.rpartition(":")
        if not colon:
            host = text
        elif p.isdigit():
            port = int(p)
        else:
            return None
    host = host.lower().rstrip(".")
    if not host or port > 65535:
        return None
    return host, port


def _request_target(head: bytes) -> tuple[str, int] | None:
    """The destination of an absolute-form request (``GET http://name:8080/x HTTP/1.1``), the
    form a client sends to an HTTP proxy; None for an origin-form request (``GET /x``)."""
    sp = head.find(b" ")
    if sp < 0:
        return None
    uri = head[sp + 1:head.find(b" ", sp + 1) if head.find(b" ", sp + 1) > 0 else len(head)]
    low = uri[:8].lower()
    if low.startswith(b"http://"):
        rest, default = uri[7:], 80
    elif low.startswith(b"https://"):
        rest, default = uri[8:], 443
    else:
        return None
    end = len(rest)
    for ch in (b"/", b"?", b"#"):
        i = rest.find(ch)
        if 0 <= i < end:
            end = i
    got = _authority(rest[:end])
    if got is None:
        return None
    return got[0], got[1] or default


def _status_code(head: bytes) -> int | None:
    parts = head.split(b" ", 2)
    if len(parts) < 2 or not parts[1].isdigit() or len(parts[1]) != 3:
        return None
    return int(parts[1])


def _strip_port(authority: str) -> str:
    if authority.startswith("["):
        end = authority.find("]")
        return authority[1:end] if end > 0 else authority
    if authority.count(":") == 1:
        return authority.split(":", 1)[0]
    return authority


def analyze_file(path: str, engine: Engine | None = None) -> Engine:
    """Read a whole capture into an engine: a file, ``-`` (stdin), a FIFO or ``<(cmd)``, opened
    once and read once. Raises PcapError with a one-line reason."""
    engine = engine or Engine()
    with CaptureInput(path) as src:
        if src.kind == "pcap":
            engine.feed_pcap_blocks(read_pcap_blocks(src.stream))
        else:
            engine.feed_records(read_records(src.stream))
    return engine

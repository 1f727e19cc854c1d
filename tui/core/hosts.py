"""The host model: connections grouped by the name the container used to reach them.

A ``Conn`` is one TCP connection or UDP exchange; a ``Host`` is everything seen for one
name (or one bare address when no name is known). The engine fills these in; the
report, the TUI and the firewall read them.
"""

from __future__ import annotations

import ipaddress
import itertools
import socket
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from egress_tui.core.procs import ProcInfo
from egress_tui.core.procs import UNKNOWN as PROC_UNKNOWN
from egress_tui.core.rows import HostRow

CONNECTED = "connected"
REFUSED = "refused"
UNANSWERED = "unanswered"
CLOSED = "closed"
OUTCOMES = (CONNECTED, CLOSED, REFUSED, UNANSWERED)

# How a connection got its name, strongest first.
NAMED_SNI = "sni"
NAMED_HTTP = "http"
NAMED_TARGET = "proxy"    # the destination a client asked a proxy for (CONNECT, SOCKS, absolute URI)
NAMED_DNS = "dns"
NAMED_ADDRESS = "address"

# Per host, the most recent connections kept in full (for the detail view). Older ones
# only survive as outcome counts, so a week-long capture does not grow without bound.
CONNS_KEPT = 500
# Per host, the tunnel records kept in full for the detail view and the reports.
TUNNELS_KEPT = 20
# Per host, the distinct fronting findings kept (each is one line of text).
FINDINGS_KEPT = 20
# What a proxy's refusal looked like, by protocol and code.
SOCKS5_REPLIES = {1: "general failure", 2: "not allowed by ruleset", 3: "network unreachable",
                  4: "host unreachable", 5: "connection refused", 6: "TTL expired",
                  7: "command not supported", 8: "address type not supported"}
SOCKS4_REPLIES = {0x5B: "rejected or failed", 0x5C: "no identd", 0x5D: "identd mismatch"}
TUNNEL_KINDS = {"connect": "HTTP CONNECT", "http": "HTTP proxy request", "socks5": "SOCKS5",
                "socks4": "SOCKS4", "socks4a": "SOCKS4a", "tls-proxy": "TLS to the proxy"}

# Per host, the programs (and parent chains) a row names: the ones with the most connections.
# A container can start any number of differently named programs; the row stays small.
PROGRAMS_KEPT = 50
CHAINS_KEPT = 20

# Per host, the DNS answers that were not believed (see engine: the trust model), kept in
# full for the detail view; older ones only count.
SUSPICIOUS_KEPT = 20
# Per host, the distinct programs (see Host.query_procs) whose DNS queries for it are told
# apart; queries from any further one only count (Host.query_procs_other).
QUERY_PROCS_KEPT = 20


_addr_texts: dict[bytes, str] = {}


def addr_text(a: bytes) -> str:
    """An address from the wire as text (a capture asks for the same few thousand again and
    again: they are remembered, a bounded number)."""
    t = _addr_texts.get(a)
    if t is None:
        t = socket.inet_ntop(socket.AF_INET6 if len(a) == 16 else socket.AF_INET, a)
        if len(_addr_texts) >= 8192:
            _addr_texts.clear()
        _addr_texts[bytes(a)] = t
    return t


class Tunnel:
    """What a connection to a proxy asked for and got: the proxy protocol, the destination the
    client requested, the proxy's answer, and the name the client then spoke to inside."""

    __slots__ = ("kind", "target", "port", "reply", "open", "refused", "inner", "inner_by", "targets",
                 "auth", "cpos", "spos", "phase", "sphase", "requests", "seen", "replies", "target_names")

    def __init__(self, kind: str):
        self.kind = kind          # a key of TUNNEL_KINDS
        self.target = ""          # requested host: a name (as sent, lower case) or an address
        self.port = 0             # requested port
        self.reply = ""           # the proxy's last answer: "200", "407", "SOCKS5 rep 2 (...)"
        self.open = False         # the proxy said yes: what follows is the destination's traffic
        self.refused = ""         # the proxy said no (why), and never yes after
        self.inner = ""           # the name spoken inside: TLS SNI or HTTP Host
        self.inner_by = ""        # "sni" or "http"
        self.targets: list[tuple[str, int]] = []  # every (target, port) requested on this connection
        self.auth = False         # the client sent proxy credentials (never kept)
        self.cpos = 0             # parse position in the client's stream
        self.spos = 0             # parse position in the proxy's stream
        self.phase = "request"    # client side: request, after, inner, done
        self.sphase = "reply"     # proxy side: method, auth, reply, done
        self.requests = 0         # HTTP requests (CONNECT or absolute-form) seen
        self.seen: set[tuple[str, int]] = set()  # other hosts asked for on a kept-alive connection
        self.replies = 0          # the proxy's final answers to CONNECT seen
        self.target_names: Collection[str] = ()  # a target given as an address: the names DNS gave it

    @property
    def hidden(self) -> bool:
        """TLS to the proxy itself: the destination is encrypted and cannot be seen."""
        return self.kind == "tls-proxy"

    def target_text(self) -> str:
        if not self.target:
            return ""
        host = f"[{self.target}]" if ":" in self.target else self.target
        return f"{host}:{self.port}" if self.port else host

    def fronting(self) -> str:
        """A one-line finding when the name inside differs from the destination requested."""
        if not self.inner or not self.target or self.hidden:
            return ""
        if self.inner == self.target:
            return ""
        if is_address(self.target) and (not self.target_names or self.inner in self.target_names):
            # asked for by address (socks5://, socks4://: the client resolved the name itself):
            # a mismatch only when DNS gave that address to other names, never to this one
            return ""
        what = "TLS for" if self.inner_by == "sni" else "HTTP Host"
        return f"{TUNNEL_KINDS[self.kind]} to {self.target_text()} carried {what} {self.inner}"

    def to_dict(self, proxy: str) -> dict:
        return {"kind": self.kind, "proxy": proxy, "target": self.target_text() or None,
                "inner": self.inner or None, "inner_by": self.inner_by or None,
                "reply": self.reply or None, "open": self.open, "refused": self.refused or None,
                "credentials_sent": self.auth, "fronting": self.fronting() or None,
                "hidden": self.hidden}


class Lookup:
    """A DNS query the container sent, handed to ``Engine.on_new_flow`` like a new connection
    so that the program that sent it can be looked up; the answer counts in
    ``Host.query_procs`` of every name it asked for (see ``Engine.set_proc``)."""

    __slots__ = ("proto", "client", "cport", "server", "sport", "names", "first", "proc")

    def __init__(self, proto: int, client: bytes, cport: int, server: bytes, sport: int,
                 names: tuple[str, ...], ts: float):
        self.proto = proto
        self.client = client
        self.cport = cport
        self.server = server
        self.sport = sport
        self.names = names
        self.first = ts
        self.proc = None


class Conn:
    """One connection as seen on the wire, from the client's side."""

    __slots__ = (
        "proto", "client", "cport", "server", "sport", "first", "last",
        "syns", "synack", "established", "refused", "fin", "rst",
        "pkts_out", "pkts_in", "bytes_out", "bytes_in",
        "name", "named_by", "app", "hello", "http_host", "stream", "rstream", "crypto", "host", "fast",
        "forged", "tunnel", "rseq", "proc", "over",
    )

    def __init__(self, proto: int, client: bytes, cport: int, server: bytes, sport: int, ts: float):
        self.proto = proto
        self.client = client
        self.cport = cport
        self.server = server
        self.sport = sport
        self.first = ts
        self.last = ts
        self.syns = 0
        self.synack = False
        self.established = False
        self.refused = False
        self.fin = False
        self.rst = False
        self.pkts_out = 0
        self.pkts_in = 0
        self.bytes_out = 0
        self.bytes_in = 0
        self.name = ""
        self.named_by = NAMED_ADDRESS
        self.app = ""          # "tls", "quic", "http", "dns" once recognised
        self.hello = None      # tls.ClientHello
        self.http_host = None
        self.stream = None     # reassembly of the client's first bytes (None once done)
        self.rstream = None    # server side, only for DNS over TCP
        self.crypto = None     # QUIC CRYPTO frame assembler
        self.host: Host | None = None
        self.fast = False      # registered in the engine's fast path
        self.forged = False    # DNS over TCP: "answers" on it were sent by the container itself
        self.tunnel: Tunnel | None = None  # a proxy protocol seen on this connection
        self.rseq = None       # the server's first sequence number, from its SYN-ACK
        self.proc = None       # ProcInfo of the program that opened it; procs.UNKNOWN if gone; None: not looked up
        self.over = False      # out of the engine's flow table: no packet will change it any more

    @property
    def outcome(self) -> str:
        if self.refused:
            return REFUSED
        t = self.tunnel
        if t is not None and t.refused and not t.open:
            return REFUSED  # the proxy turned the destination down (403, 407, a SOCKS error)
        if self.established or self.synack or self.pkts_in:
            return CLOSED if (self.fin or self.rst) else CONNECTED
        return UNANSWERED

    @property
    def transport(self) -> str:
        return "tcp" if self.proto == 6 else "udp"

    def to_dict(self) -> dict:
        h = self.hello
        return {
            "transport": self.transport,
            "client": addr_text(self.client), "client_port": self.cport,
            "server": addr_text(self.server), "port": self.sport,
            "first_seen": self.first, "last_seen": self.last,
            "outcome": self.outcome, "app": self.app or None, "named_by": self.named_by,
            "sni": h.sni if h else None, "http_host": self.http_host,
            "alpn": h.alpn if h else [], "tls_versions": h.versions if h else [],
            "ech": h.ech if h else False, "ja4": h.ja4 if h else None,
            "packets_out": self.pkts_out, "packets_in": self.pkts_in,
            "bytes_out": self.bytes_out, "bytes_in": self.bytes_in,
            "tunnel": self.tunnel.to_dict(self.endpoint()) if self.tunnel is not None else None,
            "process": self.proc.to_dict() if hasattr(self.proc, "to_dict") else self.proc,
        }

    def endpoint(self) -> str:
        """server:port as text, [v6]:port for IPv6."""
        a = addr_text(self.server)
        return f"[{a}]:{self.sport}" if ":" in a else f"{a}:{self.sport}"

    @property
    def dest_port(self) -> int:
        """The port of the destination: the requested one through a proxy."""
        t = self.tunnel
        return t.port if t is not None and t.port else self.sport


class Folded:
    """What a host's rows take from connections no longer kept in full (see Host.fold)."""

    __slots__ = ("addresses", "ports", "alpn", "versions", "ja4", "ech", "chains")

    def __init__(self) -> None:
        self.addresses: set[str] = set()
        self.ports: set[int] = set()
        self.alpn: dict[str, None] = {}       # insertion-ordered sets: the rows list them in order
        self.versions: dict[str, None] = {}
        self.ja4: dict[str, None] = {}
        self.ech = False
        self.chains: dict[str, int] = {}


@dataclass
class Host:
    """Everything seen for one name (or one address when no name was ever learned)."""

    name: str
    is_address: bool = False
    first: float = 0.0
    last: float = 0.0
    via: set[str] = field(default_factory=set)
    queries: int = 0
    rcodes: set[str] = field(default_factory=set)
    resolved: set[str] = field(default_factory=set)   # addresses DNS gave for this name
    cnames: list[str] = field(default_factory=list)   # names its lookups were aliased to
    # the latest CONNS_KEPT connections; () until the first (most names are only looked up)
    conns: deque | tuple = ()
    old_outcomes: dict[str, int] = field(default_factory=dict)
    old_count: int = 0
    suspicious: int = 0                                # DNS answers about it that were not believed
    suspicious_notes: deque | tuple = ()  # a deque of at most SUSPICIOUS_KEPT from the first
    old_programs: dict[str, int] = field(default_factory=dict)  # of connections no longer kept in full
    old_unknown: int = 0
    # Which programs sent the DNS queries for this name: ProcInfo with its pids set to 0 (the
    # same program, command line and parents count together, whichever process it was), or
    # procs.UNKNOWN when the query's socket was gone before the lookup -> queries. At most
    # QUERY_PROCS_KEPT keys; queries from programs past those count in query_procs_other.
    # Queries whose sender was not looked up (a capture file, no attribution) are not here.
    query_procs: dict = field(default_factory=dict)
    query_procs_other: int = 0
    folded: Folded | None = None                       # connections folded into totals (fold)

    def flag(self, reason: str, detail: dict) -> None:
        """A DNS answer about this name was not believed (forged, unsolicited, malformed)."""
        self.suspicious += 1
        if not self.suspicious_notes:
            self.suspicious_notes = deque(maxlen=SUSPICIOUS_KEPT)
        self.suspicious_notes.append(dict(detail, reason=reason))

    def count_query_proc(self, info) -> None:
        """One DNS query for this name was sent by ``info`` (a ProcInfo, or procs.UNKNOWN)."""
        key = info.anonymous() if hasattr(info, "anonymous") else info
        qp = self.query_procs
        if key in qp or len(qp) < QUERY_PROCS_KEPT:
            qp[key] = qp.get(key, 0) + 1
        else:
            self.query_procs_other += 1

    def last_seen(self) -> float:
        """Connections update their own last time on every packet; the host's is the latest."""
        last = self.last
        for c in self.conns:
            if c.last > last:
                last = c.last
        return last

    def touch(self, ts: float) -> None:
        if not self.first or ts < self.first:
            self.first = ts
        if ts > self.last:
            self.last = ts

    def add_conn(self, c: Conn) -> None:
        if not self.conns:
            self.conns = deque(maxlen=CONNS_KEPT)
        elif len(self.conns) == self.conns.maxlen:
            self.fold()
        self.conns.append(c)
        c.host = self
        self.touch(c.first)
        self.touch(c.last)

    def fold(self) -> None:
        """Fold the oldest connection kept in full into the host's totals: its row stays what it
        was (connections, outcomes, addresses, ports, TLS, programs), only the detail view no
        longer lists it. What a proxy tunnel showed is not kept (the engine folds no tunnel)."""
        old = self.conns.popleft()
        self.old_outcomes[old.outcome] = self.old_outcomes.get(old.outcome, 0) + 1
        self.old_count += 1
        f = self.folded
        if f is None:
            f = self.folded = Folded()
        p = old.proc
        if isinstance(p, ProcInfo):
            prog = p.program
            if prog in self.old_programs or len(self.old_programs) < PROGRAMS_KEPT:
                self.old_programs[prog] = self.old_programs.get(prog, 0) + 1
            chain = p.chain()
            if chain in f.chains or len(f.chains) < PROGRAMS_KEPT:
                f.chains[chain] = f.chains.get(chain, 0) + 1
        elif p == PROC_UNKNOWN:
            self.old_unknown += 1
        t = old.tunnel
        if t is None or t.hidden:
            f.addresses.add(addr_text(old.server))
        elif t.target and is_address(t.target):
            f.addresses.add(t.target)
        f.ports.add(old.dest_port)
        h = old.hello
        if h is not None:
            f.alpn.update(dict.fromkeys(h.alpn))
            f.versions.update(dict.fromkeys(h.versions))
            f.ja4[h.ja4] = None
            f.ech = f.ech or h.ech
        if old.last > self.last:
            self.last = old.last

    def remove_conn(self, c: Conn) -> None:
        try:
            self.conns.remove(c)
        except (ValueError, AttributeError):  # AttributeError: () before the first
            pass

    @property
    def connections(self) -> int:
        return self.old_count + len(self.conns)

    def outcomes(self) -> dict[str, int]:
        out = dict(self.old_outcomes)
        for c in self.conns:
            o = c.outcome
            out[o] = out.get(o, 0) + 1
        return out

    @property
    def blocked(self) -> bool:
        """Every connection attempt failed (dropped or refused): what a firewall looks like."""
        o = self.outcomes()
        return bool(o) and not o.get(CONNECTED) and not o.get(CLOSED)

    def addresses(self) -> list[str]:
        """Addresses connected to directly, and addresses asked of a proxy (SOCKS by address);
        a proxy's own address is not the destination's (see ``proxies``)."""
        out = set(self.folded.addresses) if self.folded is not None else set()
        for c in self.conns:
            t = c.tunnel
            if t is None or t.hidden:
                out.add(addr_text(c.server))
            elif t.target and is_address(t.target):
                out.add(t.target)
        return sorted(out, key=_addr_key)

    def ports(self) -> list[int]:
        old = self.folded.ports if self.folded is not None else ()
        return sorted({*old, *(c.dest_port for c in self.conns)})

    def to_row(self, bypass: Callable[[Conn], bool] | None = None,
               to_proxy: Callable[[Conn], bool] | None = None) -> HostRow:
        """The row; ``bypass`` tells a connection that went around the configured proxy,
        ``to_proxy`` one that went to it."""
        hellos = [c.hello for c in self.conns if c.hello is not None]
        folded = self.folded or _NOTHING_FOLDED
        proxies: dict[str, None] = {}
        targets: dict[str, None] = {}
        fronting: dict[str, None] = {}
        tunnels = []
        hidden = 0
        for c in self.conns:
            t = c.tunnel
            if t is None:
                continue
            proxies.setdefault(c.endpoint(), None)
            for host, port in t.targets:
                targets.setdefault(_hostport(host, port), None)
            f = t.fronting()
            if f and len(fronting) < FINDINGS_KEPT:
                fronting.setdefault(f, None)
            hidden += t.hidden
            tunnels.append(dict(t.to_dict(c.endpoint()), process=_proc_json(c.proc)))
        programs, unknown, chains = self.processes()
        return HostRow(
            name=self.name,
            via=sorted(self.via),
            addresses=self.addresses(),
            resolved=sorted(self.resolved, key=_addr_key),
            ports=self.ports(),
            connections=self.connections,
            outcomes={k: v for k, v in sorted(self.outcomes().items())},
            blocked=self.blocked,
            first_seen=self.first,
            last_seen=self.last_seen(),
            dns_queries=self.queries,
            dns_rcodes=sorted(self.rcodes),
            cnames=list(self.cnames),
            alpn=_uniq(itertools.chain(folded.alpn, (a for h in hellos for a in h.alpn))),
            tls_versions=_uniq(itertools.chain(folded.versions, (v for h in hellos for v in h.versions))),
            ech=folded.ech or any(h.ech for h in hellos),
            ja4=_uniq(itertools.chain(folded.ja4, (h.ja4 for h in hellos))),
            suspicious_dns=self.suspicious,
            suspicious=[dict(n) for n in self.suspicious_notes],
            proxies=list(proxies),
            targets=list(targets),
            fronting=list(fronting),
            hidden=hidden,
            bypass=sum(1 for c in self.conns if bypass(c)) if bypass is not None else 0,
            tunnels=tunnels[-TUNNELS_KEPT:],
            # the configured proxy itself: connections to it that asked for nothing seen
            # (opened ahead of use, or TLS to it), not a destination of their own
            is_proxy=to_proxy is not None and bool(self.conns) and all(
                to_proxy(c) and (c.tunnel is None or c.tunnel.hidden) for c in self.conns),
            processes=programs,
            process_unknown=unknown,
            process_chains=chains,
        )

    def processes(self) -> tuple[dict[str, int], int, list[str]]:
        """Which programs opened its connections: program -> connections (most first, at most
        PROGRAMS_KEPT), how many had a process gone before the lookup, and the distinct parent
        chains (most first, at most CHAINS_KEPT). Connections not looked up count nowhere."""
        programs = dict(self.old_programs)
        unknown = self.old_unknown
        chains: dict[str, int] = dict(self.folded.chains) if self.folded is not None else {}
        for c in self.conns:
            p = c.proc
            if isinstance(p, ProcInfo):
                prog = p.program
                programs[prog] = programs.get(prog, 0) + 1
                chain = p.chain()
                chains[chain] = chains.get(chain, 0) + 1
            elif p == PROC_UNKNOWN:
                unknown += 1
        return (dict(_most(programs)[:PROGRAMS_KEPT]), unknown, [c for c, _n in _most(chains)[:CHAINS_KEPT]])


_NOTHING_FOLDED = Folded()


def _most(counts: dict[str, int]) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def _proc_json(p: object) -> dict | str | None:
    return p.to_dict() if isinstance(p, ProcInfo) else p if p == PROC_UNKNOWN else None


def _uniq(it) -> list:
    seen: dict = {}
    for x in it:
        seen.setdefault(x, None)
    return list(seen)


def _hostport(host: str, port: int) -> str:
    h = f"[{host}]" if ":" in host else host
    return f"{h}:{port}" if port else h


def is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def _addr_key(a: str) -> tuple[int, str]:
    return (1 if ":" in a else 0, a)

"""The host model: connections grouped by the name the container used to reach them.

A ``Conn`` is one TCP connection or UDP exchange; a ``Host`` is everything seen for one
name (or one bare address when no name is known). The engine fills these in; the
report, the TUI and the firewall read them.
"""

from __future__ import annotations

import socket
from collections import deque
from dataclasses import dataclass, field

from egress_tui.core.rows import HostRow

CONNECTED = "connected"
REFUSED = "refused"
UNANSWERED = "unanswered"
CLOSED = "closed"
OUTCOMES = (CONNECTED, CLOSED, REFUSED, UNANSWERED)

# How a connection got its name, strongest first.
NAMED_SNI = "sni"
NAMED_HTTP = "http"
NAMED_DNS = "dns"
NAMED_ADDRESS = "address"

# Per host, the most recent connections kept in full (for the detail view). Older ones
# only survive as outcome counts, so a week-long capture does not grow without bound.
CONNS_KEPT = 500
# Per host, the DNS answers that were not believed (see engine: the trust model), kept in
# full for the detail view; older ones only count.
SUSPICIOUS_KEPT = 20


def addr_text(a: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET6 if len(a) == 16 else socket.AF_INET, a)


class Conn:
    """One connection as seen on the wire, from the client's side."""

    __slots__ = (
        "proto", "client", "cport", "server", "sport", "first", "last",
        "syns", "synack", "established", "refused", "fin", "rst",
        "pkts_out", "pkts_in", "bytes_out", "bytes_in",
        "name", "named_by", "app", "hello", "http_host", "stream", "rstream", "crypto", "host", "fast",
        "forged",
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

    @property
    def outcome(self) -> str:
        if self.refused:
            return REFUSED
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
        }


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
    conns: deque = field(default_factory=lambda: deque(maxlen=CONNS_KEPT))
    old_outcomes: dict[str, int] = field(default_factory=dict)
    old_count: int = 0
    suspicious: int = 0                                # DNS answers about it that were not believed
    suspicious_notes: deque = field(default_factory=lambda: deque(maxlen=SUSPICIOUS_KEPT))

    def flag(self, reason: str, detail: dict) -> None:
        """A DNS answer about this name was not believed (forged, unsolicited, malformed)."""
        self.suspicious += 1
        self.suspicious_notes.append(dict(detail, reason=reason))

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
        if len(self.conns) == self.conns.maxlen:
            old = self.conns[0]
            self.old_outcomes[old.outcome] = self.old_outcomes.get(old.outcome, 0) + 1
            self.old_count += 1
        self.conns.append(c)
        c.host = self
        self.touch(c.first)
        self.touch(c.last)

    def remove_conn(self, c: Conn) -> None:
        try:
            self.conns.remove(c)
        except ValueError:
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
        return sorted({addr_text(c.server) for c in self.conns}, key=_addr_key)

    def ports(self) -> list[int]:
        return sorted({c.sport for c in self.conns})

    def to_row(self) -> HostRow:
        hellos = [c.hello for c in self.conns if c.hello is not None]
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
            alpn=_uniq(a for h in hellos for a in h.alpn),
            tls_versions=_uniq(v for h in hellos for v in h.versions),
            ech=any(h.ech for h in hellos),
            ja4=_uniq(h.ja4 for h in hellos),
            suspicious_dns=self.suspicious,
            suspicious=[dict(n) for n in self.suspicious_notes],
        )


def _uniq(it) -> list:
    seen: dict = {}
    for x in it:
        seen.setdefault(x, None)
    return list(seen)


def _addr_key(a: str) -> tuple[int, str]:
    return (1 if ":" in a else 0, a)

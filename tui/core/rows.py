"""The typed row: one host as every consumer sees it (session, table, reports, evidence).

The engine's ``Host`` makes one with ``to_row()``; the allowlist's verdict and a live warning
are filled in by whoever holds the allowlist. ``verdict_text()`` is the one verdict text that
the table, the reports and the session report all show.
"""

from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone

VERDICT_WORDS = {True: "allowed", False: "denied", None: "-"}
# Live only (with a firewall on): an allowed host whose traffic may still not pass as expected.
WARNINGS = {"not-in-firewall": "allowed, address not in firewall", "shared-address": "allowed, shared address"}


def iso(ts: float) -> str:
    if not ts:
        return ""
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def programs_text(processes: dict[str, int], unknown: int = 0, most: int | None = None) -> str:
    """``curl:3 git:1 ?:2``: programs with their connections, ``?`` for process unknown; with
    ``most``, that many programs and then ``+N``. Raw: the caller escapes it."""
    items = list(processes.items())
    shown = items if most is None else items[:most]
    parts = [f"{p}:{n}" for p, n in shown]
    if len(shown) < len(items):
        parts.append(f"+{len(items) - len(shown)}")
    if unknown:
        parts.append(f"?:{unknown}")
    return " ".join(parts)


@dataclass(slots=True)
class HostRow:
    name: str
    via: list[str] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)   # connected to
    resolved: list[str] = field(default_factory=list)    # from DNS answers that were believed
    ports: list[int] = field(default_factory=list)
    connections: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    blocked: bool = False                                # every attempt dropped or refused
    first_seen: float = 0.0
    last_seen: float = 0.0
    dns_queries: int = 0
    dns_rcodes: list[str] = field(default_factory=list)
    cnames: list[str] = field(default_factory=list)
    alpn: list[str] = field(default_factory=list)
    tls_versions: list[str] = field(default_factory=list)
    ech: bool = False
    ja4: list[str] = field(default_factory=list)
    suspicious_dns: int = 0                              # DNS answers about it not believed
    suspicious: list[dict] = field(default_factory=list)  # the latest of them: reason, from, to, claims
    proxies: list[str] = field(default_factory=list)     # proxy endpoints its connections went through
    targets: list[str] = field(default_factory=list)     # destinations asked of a proxy: "name:443"
    fronting: list[str] = field(default_factory=list)    # tunnels whose inner name is not the one requested
    hidden: int = 0                                      # TLS to the proxy itself: destination unseen
    bypass: int = 0                                      # connections around the configured proxy
    tunnels: list[dict] = field(default_factory=list)    # the latest tunnel records (see hosts.Tunnel)
    is_proxy: bool = False                               # the container's configured proxy itself
    allowed: bool | None = None                          # the allowlist's verdict; None: no allowlist
    warning: str = ""                                    # a key of WARNINGS, live only
    processes: dict[str, int] = field(default_factory=dict)  # program -> connections it opened, most first
    process_unknown: int = 0                             # connections whose process was gone before the lookup
    process_chains: list[str] = field(default_factory=list)  # "curl ← bash ← claude", most connections first

    @property
    def contacted(self) -> bool:
        return self.connections > 0

    def verdict_text(self) -> str:
        """Is it allowed, did it get through, was DNS about it forged: "denied, blocked"."""
        if self.warning:
            text = WARNINGS[self.warning]
        elif self.is_proxy:
            text = "configured proxy" + (", blocked" if self.blocked else "")
        else:
            text = VERDICT_WORDS[self.allowed]
            if self.blocked:
                text = "blocked" if self.allowed is None else f"{text}, blocked"
        return text + self.suspicious_text() + self.findings_text()

    def suspicious_text(self) -> str:
        return f", {self.suspicious_dns} suspicious DNS" if self.suspicious_dns else ""

    def findings_text(self) -> str:
        """What a proxy showed: a tunnel carrying another name, a way around the proxy, or a
        destination hidden inside TLS to the proxy."""
        out = ""
        if self.fronting:
            out += ", fronting"
        if self.bypass:
            out += ", proxy bypass"
        if self.hidden:
            out += ", destination hidden"
        return out

    @property
    def attributed(self) -> bool:
        """Whether any of its connections was looked up (found or gone)."""
        return bool(self.processes or self.process_unknown)

    def process_text(self) -> str:
        """The Process cell: the program that opened the most connections, ``+N`` when others
        did too, `` ?`` when some process was gone before the lookup (``?`` alone when none was
        found); ``-`` when none was looked up. Raw: the caller escapes it."""
        if not self.processes:
            return "?" if self.process_unknown else "-"
        top = next(iter(self.processes))
        n = len(self.processes) - 1
        return top + (f" +{n}" if n else "") + (" ?" if self.process_unknown else "")

    def programs_text(self, most: int | None = None) -> str:
        """Every program with its connections, ``curl:3 git:1 ?:2`` (``?``: process unknown);
        with ``most``, that many programs and then ``+N``. Raw: the caller escapes it."""
        return programs_text(self.processes, self.process_unknown, most)

    def sort_key(self) -> tuple[float, str]:
        """First seen first: the order rows appear in, everywhere."""
        return (self.first_seen, self.name)

    def to_json(self) -> dict:
        """For JSON files: times as ISO 8601 UTC."""
        # dataclasses.asdict, without its deep copy through every value (the row is
        # built for this call and its lists hold strings and ints; tunnels hold dicts)
        d = {}
        for f in _FIELDS:
            v = getattr(self, f)
            d[f] = v.copy() if type(v) in (list, dict) else v
        d["tunnels"] = [deepcopy(t) for t in self.tunnels]
        d["first_seen"], d["last_seen"] = iso(self.first_seen), iso(self.last_seen)
        d["suspicious"] = [dict(n, time=iso(n["time"])) if "time" in n else dict(n) for n in self.suspicious]
        if not self.warning:
            del d["warning"]
        d["verdict"] = self.verdict_text()
        return d



_FIELDS = tuple(f.name for f in fields(HostRow))

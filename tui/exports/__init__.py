"""Exports: the allowlist in the formats enforcement tools read (Squid, nftables, AWS Network
Firewall, Cilium, plain domain lists, harden-runner).

Every export is made from one ``Source`` (allowlist files, presets, or what a report saw) by
one module of this package, and carries a header comment: egress-tui's version, the source and
the date. What a format cannot express exactly is never dropped or widened silently: each
such entry becomes a ``Note``, written as a comment in the export and printed on stderr by the
caller. Names from a report come from the watched container: only valid host names, checked by
the same code as allowlist entries, ever reach an export (``sources.py``).

Headless: no Textual, no Docker SDK.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from egress_tui import __version__
from egress_tui.core.allowlist import Allowlist, Entry
from egress_tui.core.safetext import safe_text


class ExportError(ValueError):
    """An export that cannot be made; the message is one line that says what to do."""


@dataclass(frozen=True, slots=True)
class Note:
    """One entry the format cannot carry exactly, and what became of it."""
    entry: str   # the allowlist entry (or, for a skipped report row, the name: escaped when shown)
    what: str    # "left out", "widened", "narrowed", "skipped", "not checked"
    why: str

    def line(self, limit: int = 200) -> str:
        """One line for stderr or a comment: the entry quoted and escaped, the reason after it
        (so a line never ends in anything the entry chose, such as a backslash)."""
        return f"{self.what}: '{safe_text(self.entry, limit)}': {self.why}"


@dataclass
class Source:
    """What is exported: the entries, where they came from (for the header), and the report
    rows that were not host names (never exported)."""
    allowlist: Allowlist
    description: str
    skipped: list[Note] = field(default_factory=list)

    @property
    def entries(self) -> tuple[Entry, ...]:
        return self.allowlist.entries


@dataclass
class Options:
    """Per-format switches; each format reads the ones it has."""
    ssl_bump: bool = False                     # squid: peek and splice by SNI
    suricata: bool = False                     # aws-network-firewall: Suricata rule strings
    selector: dict[str, str] = field(default_factory=dict)  # cilium: endpointSelector labels
    reject: bool = False                       # nftables: reject instead of drop
    resolvers: list[str] = field(default_factory=list)      # nftables: DNS servers to let through
    resolved: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # nftables: name -> addrs
    name: str = ""                             # policy / rule group name (cilium, aws)
    capacity: int | None = None                # aws: rule group capacity (default: what it needs)


@dataclass
class Export:
    text: str
    notes: list[Note]


# name -> (what it writes, the file name the screen offers)
FORMATS: dict[str, tuple[str, str]] = {
    "squid": ("a squid.conf fragment to include before 'http_access deny all'", "egress-tui-squid.conf"),
    "nftables": ("a complete nft -f ruleset in its own inet table (same rules as firewall apply)",
                 "egress-tui.nft"),
    "aws-network-firewall": ("an AWS Network Firewall CreateRuleGroup request (domain list)",
                             "egress-tui-rule-group.json"),
    "cilium": ("a CiliumNetworkPolicy (toFQDNs)", "egress-tui-cilium.yaml"),
    "domains": ("one domain a line, .domain for a wildcard (Zscaler, PAN-OS EDL)", "egress-tui-domains.txt"),
    "harden-runner": ("a harden-runner step with allowed-endpoints (host:port)", "egress-tui-harden-runner.yaml"),
}
# variants the screen offers as their own choice: (format, option) -> (label, file name)
VARIANTS: dict[tuple[str, str], tuple[str, str]] = {
    ("squid", "ssl_bump"): ("squid with ssl-bump: the SNI must match too (peek and splice)",
                            "egress-tui-squid-sslbump.conf"),
    ("aws-network-firewall", "suricata"): ("AWS Network Firewall / Suricata rule strings",
                                           "egress-tui-suricata.rules"),
}


def header(fmt: str, source: Source, now: float | None = None, prefix: str = "# ") -> list[str]:
    """The first comment lines of every export: version, source, date (UTC)."""
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if now is None else now))
    return [f"{prefix}egress-tui {__version__} export, format {fmt}",
            f"{prefix}source: {safe_text(source.description, 400)}",
            f"{prefix}date: {when}"]


def notes_block(notes: list[Note], fmt: str, prefix: str = "# ") -> list[str]:
    """The notes as comment lines; nothing when there are none."""
    if not notes:
        return []
    return [f"{prefix}Not exactly as in the allowlist ({len(notes)}; {fmt} cannot express them):",
            *(f"{prefix}  {n.line()}" for n in notes)]


def render(fmt: str, source: Source, options: Options | None = None, now: float | None = None) -> Export:
    """``source`` in format ``fmt``; ExportError (one line) when it cannot be made."""
    options = options or Options()
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format '{safe_text(fmt, 40)}'; known: {', '.join(FORMATS)}")
    from egress_tui.exports import aws, cilium, domains, harden_runner, nftables, squid
    module = {"squid": squid, "nftables": nftables, "aws-network-firewall": aws, "cilium": cilium,
              "domains": domains, "harden-runner": harden_runner}[fmt]
    return module.render(source, options, now)


def wildcard_base(entry: Entry) -> str:
    """``example.com`` for ``*.example.com``."""
    return entry.pattern[2:]


def apex_allowed(entries: tuple[Entry, ...] | list[Entry], entry: Entry) -> bool:
    """Whether the domain of wildcard ``entry`` is itself allowed on the same port (then a
    ``.domain`` form that also matches the domain widens nothing)."""
    base = wildcard_base(entry)
    return any(e.pattern == base and e.network is None and e.port in (None, entry.port) for e in entries)

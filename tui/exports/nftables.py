"""``nftables``: a complete ``nft -f`` ruleset with the rules of ``egress-tui firewall apply``,
in its own ``inet`` table: loopback, established and related, IPv6 neighbour discovery, DNS
only to the resolvers, the allowlist's addresses (ports honoured, TCP and UDP), a copy of every
drop to NFLOG group 4242 (which egress-tui reads), then drop (or reject). Loading it replaces
that table in one transaction; ``nft delete table inet egress_tui`` removes everything.

The set contents come from the same ``Plan`` as the iptables firewall (``build_plan``), so the
two cannot drift. A ruleset is a file, so host names are resolved when it is exported, through
the resolvers it lets through (egress-tui's own checked lookups, ``firewall.runners``), and
their addresses are written as permanent elements, as ``firewall apply`` does. The sets carry
the ``timeout`` flag so that a DNS-fed updater can add rotating addresses with a TTL
(``nft add element inet egress_tui allow4 { ADDR timeout 300s }``); egress-tui's own DNS sync
feeds its ipset firewall, not this table. Re-export and reload to refresh the addresses.
A wildcard has no address to resolve: it is left out and listed, as in ``init-firewall.sh``.
"""

from __future__ import annotations

import ipaddress

from egress_tui.core.allowlist import Allowlist
from egress_tui.exports import Export, Note, Options, Source, header, notes_block
from egress_tui.exports.squid import collapse
from egress_tui.firewall.plan import build_plan
from egress_tui.live.nflog import GROUP as NFLOG_GROUP

TABLE = "egress_tui"
SET_NAMES = {4: ("allow4", "allow4_port"), 6: ("allow6", "allow6_port")}
_TYPES = {4: "ipv4_addr", 6: "ipv6_addr"}
_FIELD = {4: "ip", 6: "ip6"}


def names_to_resolve(allowlist: Allowlist) -> list[str]:
    """The host names whose addresses the ruleset needs (not wildcards, not addresses)."""
    return [e.pattern for e in allowlist.entries if e.network is None and not e.wildcard]


def resolve(allowlist: Allowlist, resolvers: list[str]) -> dict[str, list[tuple[str, int]]]:
    """The allowlist's names looked up now, from this network namespace, through ``resolvers``
    (connected sockets, random IDs, conflicting answers leave a name unresolved)."""
    from egress_tui.firewall.runners import resolve_names
    names = names_to_resolve(allowlist)
    return resolve_names(names, resolvers) if names and resolvers else {n: [] for n in names}


def system_resolvers(path: str = "/etc/resolv.conf") -> list[str]:
    """The nameservers of this machine's resolv.conf (none when it cannot be read)."""
    from egress_tui.firewall.runners import parse_resolv_conf
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return parse_resolv_conf(f.read(1024 * 1024))
    except OSError:
        return []


def _elements(items: list[str]) -> list[str]:
    if not items:
        return []
    return ["\t\telements = {", *(f"\t\t\t{x}," for x in items), "\t\t}"]


def render(source: Source, options: Options, now: float | None = None) -> Export:
    resolvers = []
    for r in options.resolvers:
        a = ipaddress.ip_address(r.split("%")[0])  # ValueError for a bad one: the caller checks first
        if str(a) not in resolvers:
            resolvers.append(str(a))
    plan = build_plan(source.allowlist, options.resolved, resolvers, options.reject)
    notes = list(source.skipped)
    notes += [Note(w, "left out", "a wildcard has no address to resolve when the ruleset is made (egress-tui's "
                                  "firewall fills it from DNS answers while it captures); list the host names")
              for w in plan.wildcards]
    where = ", ".join(resolvers) if resolvers else "no resolver"
    unresolved = set(plan.unresolved)
    notes += [Note(e.text(), "left out", f"did not resolve through {where} at export time: it stays blocked")
              for e in source.entries if e.pattern in unresolved and e.network is None]

    sets: list[str] = []
    for fam in (4, 6):
        plain, with_port = SET_NAMES[fam]
        nets = collapse([ipaddress.ip_network(a, strict=False) for a in plan.nets[fam]])
        by_port: dict[tuple[str, int], list] = {}
        for key in plan.ports[fam]:
            addr, _, proto_port = key.rpartition(",")
            proto, _, port = proto_port.partition(":")
            by_port.setdefault((proto, int(port)), []).append(ipaddress.ip_network(addr, strict=False))
        ported = [f"{a} . {proto} . {port}" for (proto, port), addrs in sorted(by_port.items())
                  for a in collapse(addrs)]
        sets += [f"\tset {plain} {{", f"\t\ttype {_TYPES[fam]}", "\t\tflags interval, timeout",
                 *_elements(nets), "\t}",
                 f"\tset {with_port} {{", f"\t\ttype {_TYPES[fam]} . inet_proto . inet_service",
                 "\t\tflags interval, timeout", *_elements(ported), "\t}"]

    rules = ['\t\toifname "lo" accept',
             "\t\tct state established,related accept",
             "\t\ticmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert } accept"]
    for r in resolvers:
        fam = 6 if ":" in r else 4
        rules += [f"\t\t{_FIELD[fam]} daddr {r} {proto} dport 53 accept" for proto in ("udp", "tcp")]
    for fam in (4, 6):
        plain, with_port = SET_NAMES[fam]
        rules += [f"\t\t{_FIELD[fam]} daddr @{plain} accept",
                  f"\t\t{_FIELD[fam]} daddr . meta l4proto . th dport @{with_port} accept"]
    # a dropped packet reaches no capture: copy it to NFLOG, where egress-tui reads the drops
    rules.append(f'\t\tlog prefix "egress-tui-drop " group {NFLOG_GROUP}')
    if options.reject:
        rules += ["\t\tmeta l4proto tcp reject with tcp reset", "\t\treject"]
    else:
        rules.append("\t\tdrop")

    lines = header("nftables", source, now)
    lines += ["#",
              f"# Load: nft -f FILE (replaces table inet {TABLE} in one transaction; other tables untouched)",
              f"# Remove: nft delete table inet {TABLE}",
              "# The same rules as `egress-tui firewall apply`: loopback, established, DNS only to",
              f"# {where}, the allowlist's addresses (ports honoured), everything else "
              + ("rejected." if options.reject else "dropped."),
              "# Names were resolved when this file was made; their addresses do not follow DNS changes:",
              "# export and load again to refresh them, or add addresses with a timeout:",
              f"#   nft add element inet {TABLE} allow4 {{ 192.0.2.1 timeout 300s }}"]
    if not resolvers:
        lines.append("# No DNS server was given or found: DNS is blocked except over loopback.")
    lines += notes_block(notes, "nftables")
    lines += ["", f"table inet {TABLE}", f"delete table inet {TABLE}", "",
              f"table inet {TABLE} {{", *sets,
              "\tchain output {", "\t\ttype filter hook output priority filter; policy accept;", *rules, "\t}",
              "}"]
    return Export("\n".join(lines) + "\n", notes)

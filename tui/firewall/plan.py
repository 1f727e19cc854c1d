"""What the firewall will install: its chain, sets and rules for an allowlist, as data
that both `firewall apply` and `init-firewall.sh` are made from.
"""

from __future__ import annotations
import ipaddress
import re
from dataclasses import asdict, dataclass, field
from egress_tui.core.allowlist import Allowlist, AllowlistError, _inet_aton, parse_entry
from egress_tui.core.proxy import ProxyConfig, ProxyEndpoint
from egress_tui.core.safetext import safe_text
from egress_tui.live.nflog import GROUP as NFLOG_GROUP

CHAIN = "EGRESS-TUI"
SETS = {4: ("egress-tui-v4", "egress-tui-v4-port"), 6: ("egress-tui-v6", "egress-tui-v6-port")}
NEW = "-new"  # suffix of the sets being filled before they are swapped in
# ipset restore batches consecutive adds to one set until another command comes; an add to
# this scratch set after each real one pushes the real one into the kernel at once
SYNC_SET = "egress-tui-sync"
STATE_DIR = "/run/egress-tui"
MIN_TTL = 60  # a set entry learned from DNS lives at least this long (clients cache)
# What a "name:port" entry lets through to its port: udp too, QUIC uses the same port. A proxy
# is reached over TCP only (its clients speak HTTP CONNECT or SOCKS over TCP to it).
PORT_PROTOCOLS = ("tcp", "udp")
PROXY_PROTOCOLS = ("tcp",)
# The modes: "allowlist" lets the allowlist's addresses through; "proxy" only the proxies'
# (the only way out is the proxy, and what goes through it is the proxy's to decide).
MODES = ("allowlist", "proxy")


class FirewallError(Exception):
    """The firewall could not be applied or removed; the namespace is as it was before."""


# -- the plan -------------------------------------------------------------------------

@dataclass
class Plan:
    """Everything the firewall will contain, computed before anything is touched."""

    allowlist: list[str]
    resolvers: list[str]
    reject: bool = False
    nets: dict[int, dict[str, str]] = field(default_factory=lambda: {4: {}, 6: {}})   # addr -> comment
    ports: dict[int, dict[str, str]] = field(default_factory=lambda: {4: {}, 6: {}})  # "addr,tcp:443"
    resolved: dict[str, list[str]] = field(default_factory=dict)
    unresolved: list[str] = field(default_factory=list)
    wildcards: list[str] = field(default_factory=list)
    mode: str = "allowlist"                                   # "allowlist" or "proxy"
    proxies: list[str] = field(default_factory=list)          # proxy mode: the proxies' URLs, masked
    protocols: list[str] = field(default_factory=lambda: list(PORT_PROTOCOLS))  # of a name:port entry

    def ipset_script(self, suffix: str = NEW) -> str:
        lines = []
        for fam, (plain, with_port) in SETS.items():
            family = "inet" if fam == 4 else "inet6"
            lines.append(f"create {plain}{suffix} hash:net family {family} timeout 0 comment -exist")
            lines.append(f"flush {plain}{suffix}")
            lines.append(f"create {with_port}{suffix} hash:net,port family {family} timeout 0 comment -exist")
            lines.append(f"flush {with_port}{suffix}")
            for addr, why in sorted(self.nets[fam].items()):
                lines.append(f'add {plain}{suffix} {addr} timeout 0 comment "{_comment(why)}" -exist')
            for entry, why in sorted(self.ports[fam].items()):
                lines.append(f'add {with_port}{suffix} {entry} timeout 0 comment "{_comment(why)}" -exist')
        return "\n".join(lines) + "\n"

    def iptables_script(self, fam: int, hook_present: bool) -> str:
        plain, with_port = SETS[fam]
        c = '-m comment --comment "egress-tui"'
        rules = [f"-A {CHAIN} -o lo {c} -j ACCEPT",
                 f"-A {CHAIN} -m conntrack --ctstate ESTABLISHED,RELATED {c} -j ACCEPT"]
        if fam == 6:
            # neighbour discovery and router solicitation: without them IPv6 stops working at all
            for t in ("router-solicitation", "neighbour-solicitation", "neighbour-advertisement"):
                rules.append(f"-A {CHAIN} -p ipv6-icmp --icmpv6-type {t} {c} -j ACCEPT")
        for r in self.resolvers:
            if (":" in r) == (fam == 6):
                for proto in ("udp", "tcp"):
                    rules.append(f'-A {CHAIN} -d {r} -p {proto} --dport 53 -m comment --comment "egress-tui resolver" -j ACCEPT')
        rules.append(f"-A {CHAIN} -m set --match-set {plain} dst {c} -j ACCEPT")
        rules.append(f"-A {CHAIN} -m set --match-set {with_port} dst,dst {c} -j ACCEPT")
        # a dropped packet never reaches the device, so no capture would see it: copy it
        # to the capture first (see nflog.py), so blocked connections show up as such
        rules.append(f"-A {CHAIN} {c} -j NFLOG --nflog-group {NFLOG_GROUP} --nflog-prefix egress-tui-drop")
        if self.reject:
            rules.append(f"-A {CHAIN} -p tcp {c} -j REJECT --reject-with tcp-reset")
            rules.append(f"-A {CHAIN} {c} -j REJECT")
        else:
            rules.append(f"-A {CHAIN} {c} -j DROP")
        hook = [] if hook_present else [f"-I OUTPUT 1 -j {CHAIN}"]
        return "\n".join(["*filter", f":{CHAIN} - [0:0]", *rules, *hook, "COMMIT"]) + "\n"

    def to_json(self) -> dict:
        d = asdict(self)
        d["nets"] = {str(k): v for k, v in self.nets.items()}
        d["ports"] = {str(k): v for k, v in self.ports.items()}
        return d


EMBEDDED_DNS = "127.0.0.11"


def resolver_warning(resolvers: list[str]) -> str:
    """One line when the firewall would break the container's DNS, else "": no resolver is
    known, or only Docker's embedded one, whose queries to the servers it forwards to leave
    from inside the container's namespace, through this firewall, and are dropped."""
    if not resolvers:
        return "no DNS server is known for this container: under the firewall it cannot resolve names"
    if all(r == EMBEDDED_DNS for r in resolvers):
        return (f"the servers Docker's embedded DNS ({EMBEDDED_DNS}) forwards to are unknown: under the "
                "firewall its lookups fail; start the container with --dns SERVER")
    return ""


def _comment(text: str) -> str:
    return re.sub(r'[^A-Za-z0-9_.:*/@ -]', "", text)[:250]


def build_plan(allowlist: Allowlist, resolved: dict[str, list[tuple[str, int]]], resolvers: list[str],
               reject: bool = False, protocols: tuple[str, ...] = PORT_PROTOCOLS) -> Plan:
    """Turn an allowlist and the addresses its names resolved to into set entries."""
    plan = Plan(allowlist=[e.text() for e in allowlist.entries], resolvers=resolvers, reject=reject,
                protocols=list(protocols))
    for e in allowlist.entries:
        if e.network is not None:
            addrs = [e.pattern]  # "198.18.0.0/16", or a bare address
        elif e.wildcard:
            plan.wildcards.append(e.pattern)
            continue
        else:
            got = resolved.get(e.pattern, [])
            addrs = sorted({a for a, _ttl in got})
            plan.resolved[e.pattern] = addrs
            if not addrs:
                plan.unresolved.append(e.pattern)
                continue
        for a in addrs:
            fam = 6 if ":" in a else 4
            if e.port is None:
                plan.nets[fam][a] = e.pattern
            else:
                for proto in protocols:
                    plan.ports[fam][f"{a},{proto}:{e.port}"] = e.pattern
    return plan


# -- proxy only ------------------------------------------------------------------------

def is_loopback(host: str) -> bool:
    """An address or name that means this very namespace: 127.0.0.0/8, ::1, the unspecified
    addresses (a connection to 0.0.0.0 reaches the local host), IPv4-mapped forms of those,
    and ``localhost`` or any name under it (RFC 6761); also in the forms libc reads as an
    address (``0x7f.1``, ``2130706433``)."""
    h = host.lower().rstrip(".")
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    if h == "localhost" or h.endswith(".localhost"):
        return True
    try:
        a = ipaddress.ip_address(_inet_aton(h) or h.split("%")[0])
    except ValueError:
        return False
    mapped = getattr(a, "ipv4_mapped", None)
    if mapped is not None:
        a = mapped
    return a.is_loopback or a.is_unspecified


def _named(ep: ProxyEndpoint) -> str:
    return f"proxy {ep.url}" + (f" ({safe_text(ep.var, 40)})" if ep.var else "")


def _loopback_refusal(ep: ProxyEndpoint, addr: str = "") -> FirewallError:
    where = f" ({ep.host} is {addr})" if addr else ""
    return FirewallError(f"{_named(ep)} is on a loopback address{where}: it runs inside the container, where "
                         "the firewall cannot tell the proxy's own traffic from anything else's; refused "
                         "(proxy-only needs a proxy outside the container)")


def proxy_allowlist(proxy: ProxyConfig) -> Allowlist:
    """The proxies as allowlist entries, ``host:port`` each: what proxy-only mode lets through.

    FirewallError (one line, no credential) when there is no proxy, when a proxy setting
    could not be read (applying the others would cut off the clients that use it), or when a
    proxy is on a loopback address."""
    if proxy.problems:
        raise FirewallError(f"cannot use the proxy settings: {proxy.problems[0]}; nothing applied")
    if not proxy.endpoints:
        raise FirewallError("no proxy is configured: set HTTPS_PROXY (or HTTP_PROXY, ALL_PROXY) on the "
                            "container, or give the proxy's URL")
    al = Allowlist(sources=["proxy"])
    for ep in proxy.endpoints:
        if is_loopback(ep.host):
            raise _loopback_refusal(ep)
        try:
            al.add(parse_entry(ep.authority, ep.var or "proxy", ep.url))
        except AllowlistError as e:
            raise FirewallError(f"{_named(ep)}: {e}") from None
    return al


def build_proxy_plan(proxy: ProxyConfig, resolved: dict[str, list[tuple[str, int]]], resolvers: list[str],
                     reject: bool = False) -> Plan:
    """Proxy-only: the proxies' addresses on their ports (TCP), DNS to the resolvers, and
    nothing else. Unlike an allowlist name, a proxy name that does not resolve is an error:
    with the proxy unreachable nothing could get out at all. So is a name that resolves to a
    loopback address. FirewallError, one line; nothing is applied."""
    al = proxy_allowlist(proxy)
    plan = build_plan(al, resolved, resolvers, reject, protocols=PROXY_PROTOCOLS)
    plan.mode = "proxy"
    plan.proxies = [ep.url for ep in proxy.endpoints]
    by_host = {ep.host: ep for ep in proxy.endpoints}
    if plan.unresolved:
        ep = by_host[plan.unresolved[0]]
        more = f" (and {len(plan.unresolved) - 1} more)" if len(plan.unresolved) > 1 else ""
        dns = ", ".join(resolvers) if resolvers else "no DNS server is known"
        raise FirewallError(f"{_named(ep)}: {ep.host} does not resolve through the container's DNS ({dns}){more}; "
                            "nothing applied: with the proxy unreachable nothing could get out")
    for name, addrs in plan.resolved.items():
        for a in addrs:
            if is_loopback(a):
                raise _loopback_refusal(by_host[name], a)
    return plan

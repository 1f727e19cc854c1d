"""A standalone ``init-firewall.sh``: the egress firewall of ``tui/firewall/plan.py``, as a bash
script that runs inside the container (as root, with NET_ADMIN). The script's text is the real
bash file ``init-firewall.sh`` beside this module; rendering fills in its markers.

For security teams that want a script in the image (like the devcontainer's
``init-firewall.sh`` many users adapted) rather than egress-tui applying the firewall from
the host. It builds the very same chain, sets and rules as ``tui.firewall.Firewall``: the
rule text and the ipset lines are taken from ``Plan`` itself when the script is rendered
(with placeholder addresses that are swapped for bash variables), so the two cannot drift,
and ``egress-tui firewall status`` recognises a firewall the script applied.

The bugs of the original script it does not have:
- it never flushes a table or touches another chain (the original flushed everything,
  Docker's embedded-DNS NAT rules included): own chain, one jump from OUTPUT, own sets;
- a name that does not resolve is reported and skipped (the original aborted half-way,
  leaving the container open); every name is looked up for IPv4 and IPv6;
- IPv6 is filtered too (the original ignored it, so IPv6 was wide open);
- DNS is allowed to the container's resolvers only (the original allowed port 53 anywhere,
  a free tunnel out);
- all or nothing: sets are filled aside and swapped in, each family's rules load in one
  ``iptables-restore --noflush`` transaction, and any failure puts back what was there.

Nothing here imports Textual.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from importlib import resources

from egress_tui.core.allowlist import Allowlist, Entry
from egress_tui.core.proxy import ProxyConfig
from egress_tui.firewall.plan import (CHAIN, NEW, PORT_PROTOCOLS, PROXY_PROTOCOLS, SETS, SYNC_SET, Plan, _comment,
                                      build_plan, proxy_allowlist)

SCRIPT_NAME = "init-firewall.sh"

# Text-only markers (documentation ranges, RFC 5737 / RFC 3849): the script's bash
# templates are cut out of Plan's output around them; they never reach the script.
_PH = {4: "192.0.2.53", 6: "2001:db8::53"}
_PH_WHY = "egress-tui-placeholder"
_PH_PORT = 54321
_HEREDOC = "EGRESS_TUI_EOF"

_USAGE = f"""\
Usage, as root in the container (docker run --cap-add=NET_ADMIN ...; needs bash, iptables,
ip6tables, ipset and getent; timeout and flock are used when present):
  {SCRIPT_NAME}                 apply; running it again replaces what it applied before
  {SCRIPT_NAME} --remove        remove exactly what it added (chain, jump, sets)
  {SCRIPT_NAME} --status        on/off and dropped packets; exit 0 when on, 3 when not
  {SCRIPT_NAME} --dry-run       print the ipset and iptables-restore input; change nothing
  options: --resolver ADDR         also allow DNS to ADDR (repeatable)
           --no-verify             skip the checks after applying
Exit status: 0 done, 1 failed (the firewall is as it was before), 2 bad usage,
             4 applied, but a check after applying failed."""


def _q(text: str) -> str:
    return shlex.quote(str(text))


def _safe_comment_text(text: str) -> str:
    """For a ``#`` comment line: no control characters (a newline would end the comment)."""
    return re.sub(r"[\x00-\x1f\x7f]", " ", str(text))[:300]


class TemplateError(RuntimeError):
    """tui/firewall/plan.py's Plan changed in a way this module cannot follow: update it."""


def _require(ok: object, what: object) -> None:
    if not ok:
        raise TemplateError(f"firewall_script.py cannot cut a template out of Plan's output: {what!r}")


def _split_once(line: str, marker: str) -> tuple[str, str]:
    before, sep, after = line.partition(marker)
    _require(sep and marker not in after, (marker, line))
    return before, after


# -- templates cut out of tui.firewall.Plan -------------------------------------------

def _rules_function(reject: bool) -> str:
    """bash ``rules FAM HOOKED``: prints Plan.iptables_script(FAM, HOOKED) for the
    resolvers in $RESOLVERS (the rule text comes from Plan, with one resolver swapped in)."""
    out = ["rules() {  # $1: 4 or 6; $2: 1 when OUTPUT already jumps to the chain",
           "  local r",
           '  case "$1" in']
    for fam in (4, 6):
        plan = Plan(allowlist=[], resolvers=[_PH[fam]], reject=reject)
        fresh = plan.iptables_script(fam, hook_present=False).splitlines()
        hooked = plan.iptables_script(fam, hook_present=True).splitlines()
        hook = [ln for ln in fresh if ln not in hooked]
        _require(len(hook) == 1 and fresh[-1] == "COMMIT" and fresh[-2] == hook[0], fresh)
        marked = [i for i, ln in enumerate(hooked) if _PH[fam] in ln]
        _require(marked and marked == list(range(marked[0], marked[-1] + 1)), hooked)
        head, res, tail = hooked[:marked[0]], hooked[marked[0]:marked[-1] + 1], hooked[marked[-1] + 1:]
        _require(tail[-1] == "COMMIT", None)
        for ln in head + tail:
            _require(ln != _HEREDOC, None)
        skip = "==" if fam == 4 else "!="  # the other family's resolvers
        out.append(f"    {fam})")
        out.append(f"      cat <<'{_HEREDOC}'")
        out += head
        out.append(_HEREDOC)
        out.append('      for r in "${RESOLVERS[@]}"; do')
        out.append(f'        if [[ "$r" {skip} *:* ]]; then continue; fi')
        for ln in res:
            before, after = _split_once(ln, _PH[fam])
            out.append(f"        printf '%s%s%s\\n' {_q(before)} \"$r\" {_q(after)}")
        out.append("      done")
        if len(tail) > 1:
            out.append(f"      cat <<'{_HEREDOC}'")
            out += tail[:-1]
            out.append(_HEREDOC)
        out.append(f"      if [ \"$2\" != 1 ]; then printf '%s\\n' {_q(hook[0])}; fi")
        out.append("      printf '%s\\n' COMMIT")
        out.append("      ;;")
    out += ["    *) return 1 ;;", "  esac", "}"]
    return "\n".join(out)


def _set_input_function() -> str:
    """bash ``set_input``: prints Plan.ipset_script() for the entries in NET4/PORT4/NET6/PORT6
    (associative arrays: set entry -> comment), in Plan's order (entries sorted)."""
    arrays = {}
    for fam in (4, 6):
        plain, with_port = SETS[fam]
        arrays[plain + NEW] = f"NET{fam}"
        arrays[with_port + NEW] = f"PORT{fam}"
    empty = Plan(allowlist=[], resolvers=[]).ipset_script().splitlines()
    marked = Plan(allowlist=[], resolvers=[])
    for fam in (4, 6):
        marked.nets[fam] = {_PH[fam]: _PH_WHY}
        marked.ports[fam] = {_PH[fam]: _PH_WHY}  # the entry text is a placeholder either way
    lines = marked.ipset_script().splitlines()
    _require([ln for ln in lines if not ln.startswith("add ")] == empty, lines)
    out = ["set_input() {  # the `ipset restore` input: Plan.ipset_script() for NET4 PORT4 NET6 PORT6",
           "  local k"]
    pending_static: list[str] = []
    for ln in lines:
        if not ln.startswith("add "):
            pending_static.append(ln)
            continue
        if pending_static:
            out.append("  printf '%s\\n' " + " ".join(_q(s) for s in pending_static))
            pending_static = []
        set_name = ln.split()[1]
        arr = arrays[set_name]
        fam = 6 if arr.endswith("6") else 4
        pre, rest = _split_once(ln, _PH[fam])
        mid, post = _split_once(rest, _PH_WHY)
        out.append(f"  for k in \"${{!{arr}[@]}}\"; do printf '%s\\n' \"$k\"; done | LC_ALL=C sort |")
        out.append("    while IFS= read -r k; do")
        out.append(f"      printf '%s%s%s%s%s\\n' {_q(pre)} \"$k\" {_q(mid)} \"${{{arr}[$k]}}\" {_q(post)}")
        out.append("    done")
    if pending_static:
        out.append("  printf '%s\\n' " + " ".join(_q(s) for s in pending_static))
    out.append("}")
    return "\n".join(out)


def _port_protocols(protocols: tuple[str, ...] = PORT_PROTOCOLS) -> list[str]:
    """The protocols a ``name:port`` entry allows, and the set entry format, from build_plan."""
    al = Allowlist(entries=[Entry("192.0.2.53", _PH_PORT, network=ipaddress.ip_network("192.0.2.53"))])
    plan = build_plan(al, {}, [], protocols=protocols)
    protos = []
    for key in sorted(plan.ports[4]):
        m = re.fullmatch(rf"{re.escape(_PH[4])},([a-z]+):{_PH_PORT}", key)
        _require(m, f"unexpected set entry format {key!r}: update firewall_script.py")
        protos.append(m.group(1))
    _require(protos and not plan.nets[4], None)
    return protos


# -- the script -------------------------------------------------------------------------

def render_init_script(allowlist: Allowlist, *, reject: bool = False, resolvers: list[str] | None = None,
                       generated_by: str = "") -> str:
    """A bash script that applies egress-tui's firewall from inside the container.

    ``resolvers``: the DNS servers to allow (egress-tui knows the container's, including
    the upstream servers of Docker's embedded resolver); ``None`` or empty: the
    ``nameserver`` lines of /etc/resolv.conf when the script runs. Raises ValueError for a
    resolver that is not an IP address.
    """
    return _render(allowlist, reject=reject, resolvers=resolvers, generated_by=generated_by)


def render_proxy_script(proxy: ProxyConfig, *, reject: bool = False, resolvers: list[str] | None = None,
                        generated_by: str = "") -> str:
    """The same script for proxy-only mode (``build_proxy_plan``): only the proxies' addresses
    on their ports (TCP) and DNS to the resolvers are let through. Where egress-tui refuses,
    the script refuses too: a proxy name that does not resolve, or resolves to a loopback
    address, stops it before anything changes. FirewallError for a proxy egress-tui refuses
    at once (on loopback, unreadable settings); ValueError for a bad resolver."""
    return _render(proxy_allowlist(proxy), reject=reject, resolvers=resolvers, generated_by=generated_by,
                   proxies=[ep.url for ep in proxy.endpoints])


def _render(allowlist: Allowlist, *, reject: bool, resolvers: list[str] | None, generated_by: str,
            proxies: list[str] | None = None) -> str:
    proxy_only = proxies is not None
    baked: list[str] = []
    for r in resolvers or []:
        try:
            a = str(ipaddress.ip_address(str(r).split("%")[0]))
        except ValueError:
            raise ValueError(f"resolver {r!r} is not an IP address") from None
        if a not in baked:
            baked.append(a)

    kinds, pats, ports, whys, wildcards = [], [], [], [], []
    for e in allowlist.entries:
        if e.wildcard:
            wildcards.append(e.text())
            continue
        kinds.append("net" if e.network is not None else "name")
        pats.append(e.pattern)
        ports.append("" if e.port is None else str(int(e.port)))
        whys.append(_comment(e.pattern))

    rules_fn = _rules_function(reject)
    set_fn = _set_input_function()
    protos = _port_protocols(PROXY_PROTOCOLS if proxy_only else PORT_PROTOCOLS)

    # the example.com check is meaningless when the allowlist allows it
    deny_check = "" if allowlist.match("example.com") else "example.com"

    header = [f"# {SCRIPT_NAME}: an egress firewall for this container, IPv4 and IPv6 (iptables + ipset).",
              "# Generated by egress-tui" + (f": {_safe_comment_text(generated_by)}" if generated_by else "") + ".",
              "# The same chain, sets and rules as `egress-tui firewall apply`, which recognises",
              "# them (`egress-tui firewall status`).",
              "#"]
    if proxy_only:
        header += ["# Mode: PROXY ONLY. The only way out is the proxies below (TCP to their port), plus DNS",
                   "# to the resolvers. A proxy name that does not resolve, or resolves to a loopback",
                   "# address, stops the script before anything changes. Proxies:"]
        header += [f"#   {_safe_comment_text(u)}" for u in proxies]
        header += ["#", "# Let through (the proxies as entries):"]
    else:
        header.append("# Allowlist:")
    if allowlist.entries:
        for e in allowlist.entries:
            note = f"  ({_safe_comment_text(e.comment)})" if e.comment else ""
            header.append(f"#   {_safe_comment_text(e.text())}{note}")
    else:
        header.append("#   (empty: everything but loopback and DNS is blocked)")
    if wildcards:
        header += ["#",
                   "# NOT enforced by this script (it resolves names once, when it runs; a wildcard",
                   "# has no address to resolve). egress-tui enforces these from the DNS answers it",
                   "# sees while capturing; for this script, list the exact host names instead:"]
        header += [f"#   {_safe_comment_text(w)}" for w in wildcards]
    header += ["#",
               f"# Policy for everything else: {'REJECT (clients fail at once)' if reject else 'DROP'}.",
               "# DNS: " + (f"only to {', '.join(baked)} (the container's resolvers, from egress-tui)" if baked
                            else "only to the nameservers of /etc/resolv.conf when the script runs"),
               ]

    subst = {
        "@HEADER@": "\n".join(header),
        "@CHAIN@": _q(CHAIN),
        "@SET4@": _q(SETS[4][0]), "@SET4P@": _q(SETS[4][1]),
        "@SET6@": _q(SETS[6][0]), "@SET6P@": _q(SETS[6][1]),
        "@NEW@": _q(NEW), "@SYNC@": _q(SYNC_SET), "@PREFIX@": _q("egress-tui"),
        "@KINDS@": " ".join(_q(x) for x in kinds),
        "@PATS@": " ".join(_q(x) for x in pats),
        "@PORTS@": " ".join(_q(x) for x in ports),
        "@WHYS@": " ".join(_q(x) for x in whys),
        "@WILDCARDS@": " ".join(_q(x) for x in wildcards),
        "@RESOLVERS@": " ".join(_q(x) for x in baked),
        "@PROTOS@": " ".join(_q(x) for x in protos),
        "@DENY_CHECK@": _q(deny_check),
        "@PROXY_ONLY@": "1" if proxy_only else "0",
        "@RULES_FN@": rules_fn,
        "@SET_FN@": set_fn,
        "@USAGE_COMMENT@": "\n".join(("# " + ln).rstrip() for ln in _USAGE.splitlines()),
        "@USAGE@": _USAGE,
    }
    # one pass, so nothing that was substituted in (an allowlist comment, say) is ever read
    # again as a template marker: a block (# >>> @X@ ... # <<<, a stub that keeps the
    # template valid bash), a comment line (# @X@ ...), or a marker within a line
    marker = re.compile(r"^# >>> (@[A-Z0-9_]+@)[^\n]*\n.*?^# <<<$|^# (@[A-Z0-9_]+@)[^\n]*$|(@[A-Z0-9_]+@)",
                        re.M | re.S)
    return marker.sub(lambda m: subst[m.group(1) or m.group(2) or m.group(3)], template())


def template() -> str:
    """The script's text before rendering: ``init-firewall.sh`` beside this module, a real
    bash file (shellcheck reads it as it is) with markers where the allowlist and the rules
    cut out of Plan go."""
    return resources.files("egress_tui.firewall").joinpath(SCRIPT_NAME).read_text(encoding="utf-8")

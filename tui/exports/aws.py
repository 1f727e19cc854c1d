"""``aws-network-firewall``: a ``CreateRuleGroup`` request for AWS Network Firewall, a stateful
domain list (``ALLOWLIST``) inspecting ``TLS_SNI`` and ``HTTP_HOST``, with its capacity
computed; for ``aws network-firewall create-rule-group --cli-input-json file://FILE``.

A domain list is what ``domains`` writes (no ports, no addresses; ``.example.com`` also matches
``example.com``). With ``suricata`` (``--suricata``) the same allowlist as Suricata-compatible
rule strings instead, which AWS Network Firewall also takes (``Rules`` / ``RulesString``), and
which can say what a domain list cannot: ports, addresses and ranges, subdomains without the
domain itself.

JSON has no comments: the header and a count of the notes go into ``Description``.
"""

from __future__ import annotations

import json
import re

from egress_tui.exports import Export, ExportError, Options, Source, header, notes_block, wildcard_base
from egress_tui.exports.domains import domain_list
from egress_tui.exports.squid import collapse

DEFAULT_NAME = "egress-tui-allowlist"
TARGET_TYPES = ["TLS_SNI", "HTTP_HOST"]
_NAME_RE = re.compile(r"[a-zA-Z0-9-]{1,128}\Z")
DESCRIPTION_MAX = 512
FIRST_SID = 1000001


def domain_list_capacity(targets: int, types: int = len(TARGET_TYPES)) -> int:
    """What a domain list rule group uses: a rule per domain and inspected protocol, plus one per
    protocol (AWS generates a pass rule for each domain and protocol, and a drop rule for each
    protocol)."""
    return targets * types + types


def render(source: Source, options: Options, now: float | None = None) -> Export:
    name = options.name or DEFAULT_NAME
    if not _NAME_RE.match(name):
        raise ExportError(f"--name '{name[:140]}': an AWS rule group name is 1 to 128 letters, digits and hyphens")
    if options.suricata:
        return _suricata(source, options, now)
    targets, notes = domain_list(source)
    notes = source.skipped + notes
    if not targets:
        raise ExportError("nothing in this allowlist fits a domain list (host names without a port): "
                          "use --suricata for addresses and ports")
    need = domain_list_capacity(len(targets))
    capacity = options.capacity if options.capacity is not None else need
    if capacity < need:
        raise ExportError(f"--capacity {capacity} is too small: this domain list needs {need} "
                          f"({len(targets)} domains x {len(TARGET_TYPES)} protocols + {len(TARGET_TYPES)})")
    head = "; ".join(line.lstrip("# ") for line in header("aws-network-firewall", source, now))
    if notes:
        head += f"; {len(notes)} allowlist entries not exactly as listed (see the export's stderr)"
    description = head if len(head) <= DESCRIPTION_MAX else head[:DESCRIPTION_MAX - 1] + "…"
    request = {
        "RuleGroupName": name,
        "Type": "STATEFUL",
        "Capacity": capacity,
        "Description": description,
        "RuleGroup": {
            "RulesSource": {
                "RulesSourceList": {
                    "Targets": targets,
                    "TargetTypes": list(TARGET_TYPES),
                    "GeneratedRulesType": "ALLOWLIST",
                },
            },
        },
    }
    return Export(json.dumps(request, indent=2, ensure_ascii=True) + "\n", notes)


def _text(value: str) -> str:
    """A Suricata option value: ``"``, ``;`` and ``\\`` escaped, controls dropped. Names are host
    names already; this keeps the rule whole whatever it is given."""
    value = re.sub(r"[\x00-\x1f\x7f]", "", value)
    return re.sub(r'([\\";])', r"\\\1", value)


def _suricata(source: Source, options: Options, now: float | None) -> Export:
    notes = list(source.skipped)
    rules: list[str] = []
    sid = FIRST_SID

    def add(action: str, proto: str, dst: str, port: int | None, opts: str) -> None:
        nonlocal sid
        rules.append(f"{action} {proto} $HOME_NET any -> {dst} {port if port is not None else 'any'} "
                     f"({opts} sid:{sid}; rev:1;)")
        sid += 1

    nets: dict[int | None, list] = {}
    for e in source.entries:
        if e.network is not None:
            nets.setdefault(e.port, []).append(e.network)
            continue
        if e.wildcard:
            # subdomains only: ".example.com" at the end, without dotprefix (which would let the
            # domain itself match too)
            domain = wildcard_base(e)
            match = f'content:"{_text("." + domain)}"; nocase; endswith;'
            http_match = f'content:"{_text("." + domain)}"; endswith;'
        else:
            match = f'content:"{_text(e.pattern)}"; nocase; startswith; endswith;'
            http_match = f'content:"{_text(e.pattern)}"; startswith; endswith;'
        what = _text(e.text())
        add("pass", "tls", "$EXTERNAL_NET", e.port,
            f'tls.sni; {match} msg:"egress-tui allows {what} (TLS SNI)"; flow:to_server, established;')
        add("pass", "http", "$EXTERNAL_NET", e.port,
            f'http.host; {http_match} msg:"egress-tui allows {what} (HTTP Host)"; flow:to_server, established;')
    for port in sorted(nets, key=lambda p: -1 if p is None else p):
        dst = "[" + ",".join(collapse(nets[port])) + "]"
        where = dst + (f" port {port}" if port is not None else "")
        if port is None:
            add("pass", "ip", dst, None, f'msg:"egress-tui allows {_text(where)}";')
        else:
            for proto in ("tcp", "udp"):
                add("pass", proto, dst, port, f'msg:"egress-tui allows {_text(where)} ({proto})";')
    add("drop", "tls", "$EXTERNAL_NET", None, 'msg:"egress-tui: TLS to a name not allowed"; '
        "flow:to_server, established; ssl_state:client_hello; ssl_version:any;")
    add("drop", "http", "$EXTERNAL_NET", None, 'msg:"egress-tui: HTTP to a host not allowed"; '
        'flow:to_server, established; http.header_names; content:"|0d 0a|"; startswith;')
    lines = header("aws-network-firewall --suricata", source, now)
    lines += ["#",
              "# Suricata-compatible rules for an AWS Network Firewall stateful rule group (Rules /",
              "# RulesString), or for Suricata itself ($HOME_NET and $EXTERNAL_NET must be defined).",
              f"# Capacity needed: {len(rules)} (one per rule). TLS is allowed by its SNI, HTTP by its Host;",
              "# TLS and HTTP to anything else is dropped; other traffic is left to the policy's default",
              "# action, except to the addresses and ranges allowed here."]
    lines += notes_block(notes, "Suricata")
    lines += ["", *rules]
    return Export("\n".join(lines) + "\n", notes)

"""``cilium``: a ``CiliumNetworkPolicy`` (cilium.io/v2) for the pods ``--selector`` picks.

Egress rules: DNS to kube-dns on port 53 through Cilium's DNS proxy (``rules.dns`` with
``matchPattern: "*"``: the proxy must see the lookups to learn the addresses ``toFQDNs``
allows, and, as in egress-tui's firewall, DNS goes only to the cluster's resolver, for any
name); ``toFQDNs`` with ``matchName`` for names and ``matchPattern: "**.example.com"`` for a
wildcard (every level of subdomain, not the domain itself: what ``*.example.com`` means in an
allowlist; Cilium before 1.19 reads ``**.`` as ``*.``, one level, which is narrower); ``toCIDR``
for addresses and ranges; ``toPorts`` (TCP and UDP) for entries with a port. Every entry fits.

YAML is written by hand with every string JSON-quoted (a JSON string is a YAML double-quoted
scalar), so no value can change the document's structure.
"""

from __future__ import annotations

import json
import re

from egress_tui import __version__
from egress_tui.core.safetext import safe_text
from egress_tui.exports import Export, ExportError, Note, Options, Source, header, notes_block, wildcard_base
from egress_tui.exports.squid import collapse

DEFAULT_NAME = "egress-tui-allowlist"
KUBE_DNS = {"k8s:io.kubernetes.pod.namespace": "kube-system", "k8s:k8s-app": "kube-dns"}
PORT_PROTOCOLS = ("TCP", "UDP")
# Kubernetes object names (DNS-1123 subdomain) and label keys and values
_NAME_RE = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?\Z")
_LABEL_NAME = r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)"
_LABEL_KEY_RE = re.compile(rf"((k8s|any):)?([a-z0-9]([-a-z0-9.]{{0,251}}[a-z0-9])?/)?{_LABEL_NAME}\Z")
_LABEL_VALUE_RE = re.compile(rf"{_LABEL_NAME}?\Z")


def parse_selector(items: list[str]) -> dict[str, str]:
    """``--selector KEY=VALUE`` options as matchLabels; ExportError (one line) for a bad one."""
    labels: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not _LABEL_KEY_RE.match(key) or not _LABEL_VALUE_RE.match(value):
            raise ExportError(f"--selector '{safe_text(item, 80)}': want a Kubernetes label KEY=VALUE, "
                              "like app=claude-code")
        labels[key] = value
    return labels


def _q(value: str) -> str:
    return json.dumps(value, ensure_ascii=True)


def _labels(labels: dict[str, str], indent: str) -> list[str]:
    if not labels:
        return [f"{indent}matchLabels: {{}}"]
    return [f"{indent}matchLabels:", *(f"{indent}  {_q(k)}: {_q(v)}" for k, v in labels.items())]


def _ports(port: int, indent: str) -> list[str]:
    out = [f"{indent}toPorts:", f"{indent}- ports:"]
    for proto in PORT_PROTOCOLS:
        out += [f"{indent}  - port: {_q(str(port))}", f"{indent}    protocol: {proto}"]
    return out


def render(source: Source, options: Options, now: float | None = None) -> Export:
    name = options.name or DEFAULT_NAME
    if not _NAME_RE.match(name):
        raise ExportError(f"--name '{safe_text(name, 80)}': a Kubernetes object name is lower-case letters, "
                          "digits, '-' and '.'")
    notes = list(source.skipped)
    if not options.selector:
        notes.append(Note("endpointSelector", "warning", "no --selector: the policy applies to every pod in "
                                                         "its namespace"))
    fqdns: dict[int | None, list[str]] = {}
    nets: dict[int | None, list] = {}
    for e in source.entries:
        if e.network is not None:
            nets.setdefault(e.port, []).append(e.network)
        elif e.wildcard:
            fqdns.setdefault(e.port, []).append(f"matchPattern: {_q('**.' + wildcard_base(e))}")
        else:
            fqdns.setdefault(e.port, []).append(f"matchName: {_q(e.pattern)}")

    egress = ["  - toEndpoints:", "    - " + _labels(KUBE_DNS, "      ")[0].strip(),
              *_labels(KUBE_DNS, "      ")[1:],
              "    toPorts:", "    - ports:", '      - port: "53"', "        protocol: ANY",
              "      rules:", "        dns:", '        - matchPattern: "*"']
    order = sorted(set(fqdns) | set(nets), key=lambda p: -1 if p is None else p)
    for port in order:
        if port in fqdns:
            egress += ["  - toFQDNs:", *(f"    - {sel}" for sel in dict.fromkeys(fqdns[port]))]
            if port is not None:
                egress += _ports(port, "    ")
        if port in nets:
            egress += ["  - toCIDR:", *(f"    - {_q(n if '/' in n else n + ('/128' if ':' in n else '/32'))}"
                                        for n in collapse(nets[port]))]
            if port is not None:
                egress += _ports(port, "    ")

    description = f"egress-tui {__version__} export of {safe_text(source.description, 200)}"
    lines = header("cilium", source, now)
    lines += ["#",
              "# kubectl apply -n NAMESPACE -f FILE. Needs Cilium's DNS proxy (the L7 proxy, on by default).",
              "# A wildcard is written **.domain (every level of subdomain): Cilium 1.19 and later; earlier",
              "# releases read it as *.domain (one level only), which lets through less, never more."]
    lines += notes_block(notes, "Cilium")
    lines += ["apiVersion: cilium.io/v2",
              "kind: CiliumNetworkPolicy",
              "metadata:",
              f"  name: {_q(name)}",
              "spec:",
              f"  description: {_q(description)}",
              "  endpointSelector:",
              *_labels(options.selector, "    "),
              "  egress:",
              *egress]
    return Export("\n".join(lines) + "\n", notes)

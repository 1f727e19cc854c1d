"""`egress-tui export`: every format read back by the parser that matters (egress-tui's own
allowlist parser, AWS's service model in botocore, OISF's Suricata rule parser, YAML), the
Cilium policy checked field by field against Cilium's documented v2 API, reports as hostile
input, and what a format cannot express listed, never dropped or widened in silence.

Squid and nftables are proven by the real programs: tests/test_docker_exports.py and
tests/test_export_nftables.py."""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import sys

import pytest
import yaml

from egress_tui import __version__
from egress_tui.core.allowlist import Allowlist, build, is_host_name, parse_entry
from egress_tui.exports import FORMATS, ExportError, Options, render
from egress_tui.exports.aws import domain_list_capacity
from egress_tui.exports.sources import from_allowlist, from_report
from tests.pcapgen import Conversation, python_client_hello, write_pcap

ALLOWLIST = """\
api.anthropic.com
*.sentry.io
*.amazonaws.com
internal.example.com:8443
*.corp.example.com:8443
198.18.0.0/15
198.51.100.7
2001:db8::/32
[2001:db8:1::5]:443
"""


def egress(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "egress_tui", *args], capture_output=True, text=True,
                          input=stdin, timeout=60)


@pytest.fixture
def allow_file(tmp_path):
    p = tmp_path / "allow.txt"
    p.write_text(ALLOWLIST)
    return str(p)


def source(text: str = ALLOWLIST):
    al = Allowlist(sources=["test"])
    al.add_text(text)
    return from_allowlist(al)


def entry_texts(al: Allowlist) -> set[str]:
    return {e.text() for e in al.entries}


# -- every export: a header, notes in a comment and on stderr ------------------------------

@pytest.mark.parametrize("fmt", [f for f in FORMATS if f != "nftables"])
def test_every_export_says_version_source_and_date(fmt, allow_file):
    extra = ["--selector", "app=claude"] if fmt == "cilium" else []
    r = egress("export", fmt, "--allow", allow_file, *extra)
    assert r.returncode == 0, r.stderr
    if fmt == "aws-network-firewall":
        head = json.loads(r.stdout)["Description"]
    else:
        head = "\n".join(line for line in r.stdout.splitlines() if line.startswith("#"))
    assert f"egress-tui {__version__}" in head and allow_file in head
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", head)


@pytest.mark.parametrize("fmt,lost", [
    ("domains", {"internal.example.com:8443", "*.corp.example.com:8443", "198.18.0.0/15", "198.51.100.7",
                 "2001:db8::/32", "[2001:db8:1::5]:443", "*.sentry.io", "*.amazonaws.com"}),
    ("harden-runner", {"198.18.0.0/15", "198.51.100.7", "2001:db8::/32", "[2001:db8:1::5]:443",
                       "api.anthropic.com", "*.sentry.io", "*.amazonaws.com"}),
    ("aws-network-firewall", {"internal.example.com:8443", "*.corp.example.com:8443", "198.18.0.0/15",
                              "198.51.100.7", "2001:db8::/32", "[2001:db8:1::5]:443", "*.sentry.io",
                              "*.amazonaws.com"}),
])
def test_what_a_format_cannot_express_is_listed_on_stderr_and_in_the_file(fmt, lost, allow_file):
    r = egress("export", fmt, "--allow", allow_file)
    assert r.returncode == 0, r.stderr
    said = {m for m in re.findall(r"egress-tui: (?:left out|widened|narrowed): '([^']+)'", r.stderr)}
    assert said == lost
    if fmt != "aws-network-firewall":  # JSON has no comments: its Description counts them
        in_file = set(re.findall(r"^#\s+(?:left out|widened|narrowed): '([^']+)'", r.stdout, re.M))
        assert in_file == lost
    else:
        assert f"{len(lost)} allowlist entries not exactly as listed" in json.loads(r.stdout)["Description"]


# -- domains and harden-runner: back through egress-tui's own parser ------------------------

def test_domains_round_trip_through_the_allowlist_parser():
    exp = render("domains", source())
    lines = [ln for ln in exp.text.splitlines() if ln and not ln.startswith("#")]
    back = Allowlist()
    back.add_text("\n".join("*" + ln if ln.startswith(".") else ln for ln in lines))
    assert entry_texts(back) == {"api.anthropic.com", "*.sentry.io", "*.amazonaws.com"}
    # .sentry.io also matches sentry.io itself: said, as a widening
    widened = {n.entry for n in exp.notes if n.what == "widened"}
    assert widened == {"*.sentry.io", "*.amazonaws.com"}


def test_a_wildcard_whose_domain_is_allowed_too_widens_nothing():
    exp = render("domains", source("*.sentry.io\nsentry.io\n"))
    assert not exp.notes
    assert [ln for ln in exp.text.splitlines() if not ln.startswith("#")] == [".sentry.io", "sentry.io"]


def test_harden_runner_round_trip():
    exp = render("harden-runner", source())
    step = yaml.safe_load(exp.text)
    assert isinstance(step, list) and len(step) == 1
    assert step[0]["uses"].startswith("step-security/harden-runner@")
    assert step[0]["with"]["egress-policy"] == "block"
    endpoints = step[0]["with"]["allowed-endpoints"].split()
    back = Allowlist()
    back.add_text("\n".join(endpoints))
    # entries with a port come back as they were; those without, for 443 (said, as narrowed)
    assert entry_texts(back) == {"api.anthropic.com:443", "*.sentry.io:443", "*.amazonaws.com:443",
                                 "internal.example.com:8443", "*.corp.example.com:8443"}
    assert {n.entry for n in exp.notes if n.what == "narrowed"} == {"api.anthropic.com", "*.sentry.io",
                                                                     "*.amazonaws.com"}


def test_harden_runner_with_nothing_left_blocks_everything():
    step = yaml.safe_load(render("harden-runner", source("198.18.0.0/15\n")).text)
    assert step[0]["with"]["allowed-endpoints"] == ""


# -- AWS Network Firewall: botocore's own service model ----------------------------------------

def _aws_model():
    import botocore.session
    return botocore.session.get_session().get_service_model("network-firewall").operation_model("CreateRuleGroup")


def _validate_aws(request: dict) -> None:
    """What botocore checks before it sends (types, required members, enums, lengths), plus the
    patterns the model documents, which botocore leaves to the service."""
    from botocore.validate import ParamValidator
    op = _aws_model()
    report = ParamValidator().validate(request, op.input_shape)
    assert not report.has_errors(), report.generate_report()

    def walk(shape, value, path):
        pattern = shape.metadata.get("pattern")
        if pattern and isinstance(value, str):
            assert re.search(pattern, value), (path, pattern, value)
        if shape.type_name == "structure":
            for k, v in value.items():
                walk(shape.members[k], v, f"{path}.{k}")
        elif shape.type_name == "list":
            for i, v in enumerate(value):
                walk(shape.member, v, f"{path}[{i}]")
    walk(op.input_shape, request, "CreateRuleGroup")


def test_aws_request_is_valid_for_botocore_and_carries_the_domain_list():
    exp = render("aws-network-firewall", source())
    request = json.loads(exp.text)
    _validate_aws(request)
    rsl = request["RuleGroup"]["RulesSource"]["RulesSourceList"]
    assert rsl["GeneratedRulesType"] == "ALLOWLIST" and rsl["TargetTypes"] == ["TLS_SNI", "HTTP_HOST"]
    assert rsl["Targets"] == ["api.anthropic.com", ".sentry.io", ".amazonaws.com"]
    assert request["Type"] == "STATEFUL"
    # a pass rule per domain and protocol, and a drop rule per protocol
    assert request["Capacity"] == 3 * 2 + 2 == domain_list_capacity(3)
    assert "TLS_SNI" in _aws_model().input_shape.members["RuleGroup"].members["RulesSource"].members[
        "RulesSourceList"].members["TargetTypes"].member.enum


def test_aws_capacity_grows_with_the_list_and_a_given_one_must_fit():
    names = "\n".join(f"host{i}.example.com" for i in range(40))
    request = json.loads(render("aws-network-firewall", source(names)).text)
    assert request["Capacity"] == 82
    _validate_aws(request)
    with pytest.raises(ExportError, match="needs 82"):
        render("aws-network-firewall", source(names), Options(capacity=50))
    bigger = json.loads(render("aws-network-firewall", source(names), Options(capacity=500)).text)
    assert bigger["Capacity"] == 500
    with pytest.raises(ExportError, match="letters, digits and hyphens"):
        render("aws-network-firewall", source(names), Options(name="no spaces"))


def test_aws_description_holds_a_hostile_source_as_one_valid_line(tmp_path):
    weird = tmp_path / "a\nb\u202e.txt"
    weird.write_text("api.anthropic.com\n")
    al = build([str(weird)])
    request = json.loads(render("aws-network-firewall", from_allowlist(al)).text)
    _validate_aws(request)
    assert "\n" not in request["Description"] and "\u202e" not in request["Description"]


# -- Suricata rule strings: OISF's parser (suricata-update) ------------------------------------

def _suricata_rules(text: str):
    from suricata.update import rule as surirule
    rules = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        r = surirule.parse(line)
        assert r is not None, f"not a rule: {line}"
        rules.append(r)
    return rules


def test_suricata_rules_parse_and_say_what_the_allowlist_says():
    exp = render("aws-network-firewall", source(), Options(suricata=True))
    rules = _suricata_rules(exp.text)
    sids = [r["sid"] for r in rules]
    assert len(sids) == len(set(sids)) and all(r["rev"] == 1 for r in rules)
    by = {}
    for r in rules:
        by.setdefault((r["action"], r["proto"]), []).append(r)
    tls = {(r["raw"].split('content:"')[1].split('"')[0], r["dest_port"]) for r in by[("pass", "tls")]}
    assert tls == {("api.anthropic.com", "any"), (".sentry.io", "any"), (".amazonaws.com", "any"),
                   ("internal.example.com", "8443"), (".corp.example.com", "8443")}
    assert len(by[("pass", "http")]) == 5
    # exact names: the whole SNI; wildcards: subdomains only (no dotprefix, so not the domain itself)
    api = next(r for r in by[("pass", "tls")] if '"api.anthropic.com"' in r["raw"])
    assert "startswith; endswith;" in api["raw"] and "tls.sni;" in api["raw"]
    wild = next(r for r in by[("pass", "tls")] if '".sentry.io"' in r["raw"])
    assert "dotprefix" not in wild["raw"] and "startswith" not in wild["raw"]
    nets = {r["dest_addr"]: r["dest_port"] for r in rules if r["proto"] in ("ip", "tcp", "udp")}
    assert nets == {"[198.18.0.0/15,198.51.100.7,2001:db8::/32]": "any", "[2001:db8:1::5]": "443"}
    assert {(r["action"], r["proto"]) for r in rules if r["action"] == "drop"} == {("drop", "tls"),
                                                                                   ("drop", "http")}
    assert rules[-1]["action"] == "drop" and not exp.notes  # Suricata says it all exactly
    assert f"Capacity needed: {len(rules)}" in exp.text


def _sni_matches(rule_raw: str, sni: str) -> bool:
    """What the rule's tls.sni content match does with a name (content, nocase, startswith,
    endswith as Suricata defines them)."""
    content = rule_raw.split('content:"')[1].split('"')[0]
    s, c = sni.lower(), content.lower()
    if "startswith" in rule_raw and "endswith" in rule_raw:
        return s == c
    if "endswith" in rule_raw:
        return s.endswith(c)
    return c in s


@pytest.mark.parametrize("sni,allowed", [
    ("api.anthropic.com", True), ("API.anthropic.com", True), ("xapi.anthropic.com", False),
    ("a.sentry.io", True), ("a.b.sentry.io", True), ("sentry.io", False), ("evilsentry.io", False),
])
def test_suricata_sni_matches_mean_the_allowlist(sni, allowed):
    rules = _suricata_rules(render("aws-network-firewall", source(), Options(suricata=True)).text)
    passes = [r["raw"] for r in rules if r["action"] == "pass" and r["proto"] == "tls" and r["dest_port"] == "any"]
    assert any(_sni_matches(raw, sni) for raw in passes) is allowed
    assert (build_al().match(sni) is not None) is allowed


def build_al() -> Allowlist:
    al = Allowlist(sources=["t"])
    al.add_text(ALLOWLIST)
    return al


# -- Cilium: every field against the documented cilium.io/v2 API ------------------------------
# From Cilium's CRD (pkg/k8s/apis/cilium.io/client/crds/v2/ciliumnetworkpolicies.yaml) and the
# policy language reference (Documentation/security/policy/language.rst).

SPEC_FIELDS = {"description", "egress", "egressDeny", "enableDefaultDeny", "endpointSelector", "ingress",
               "ingressDeny", "labels", "log", "nodeSelector"}
EGRESS_FIELDS = {"authentication", "icmps", "toCIDR", "toCIDRSet", "toEndpoints", "toEntities", "toFQDNs",
                 "toGroups", "toNodes", "toPorts", "toRequires", "toServices"}
# "ToEndpoints, ToCIDR, ToCIDRSet, ToEntities, ToServices and ToGroups are mutually exclusive"
EXCLUSIVE = {"toEndpoints", "toCIDR", "toCIDRSet", "toEntities", "toServices", "toGroups", "toFQDNs"}
PORT_RULE_FIELDS = {"listener", "originatingTLS", "ports", "rules", "serverNames", "terminatingTLS"}
PORT_FIELDS = {"port", "endPort", "protocol"}
PROTOCOLS = {"TCP", "UDP", "SCTP", "ANY"}
PORT_RE = re.compile(r"^(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})"
                     r"|([a-zA-Z0-9]-?)*[a-zA-Z](-?[a-zA-Z0-9])*$")
MATCH_NAME_RE = re.compile(r"^([-a-zA-Z0-9_]+[.]?)+$")
MATCH_PATTERN_RE = re.compile(r"^([-a-zA-Z0-9_*]+[.]?)+$")
LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
OBJECT_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _selector(sel: dict) -> None:
    assert set(sel) <= {"matchLabels", "matchExpressions"}, sel
    for k, v in (sel.get("matchLabels") or {}).items():
        assert isinstance(k, str) and isinstance(v, str) and len(v) <= 63 and LABEL_VALUE_RE.match(v), (k, v)


def _fqdn_selector(sel: dict) -> None:
    assert len(sel) == 1 and set(sel) <= {"matchName", "matchPattern"}, sel  # exactly one of them
    value = next(iter(sel.values()))
    assert isinstance(value, str) and len(value) <= 255
    if "matchName" in sel:
        assert MATCH_NAME_RE.match(value), value
    else:
        assert MATCH_PATTERN_RE.match(value), value
        # "**" is valid only as a "**." prefix (Cilium 1.19, PR 43420)
        assert "**" not in value or (value.startswith("**.") and "**" not in value[3:]), value


def check_cilium_policy(doc: dict) -> None:
    assert doc["apiVersion"] == "cilium.io/v2" and doc["kind"] == "CiliumNetworkPolicy"
    assert set(doc) == {"apiVersion", "kind", "metadata", "spec"}
    assert OBJECT_NAME_RE.match(doc["metadata"]["name"]) and len(doc["metadata"]["name"]) <= 253
    spec = doc["spec"]
    assert set(spec) <= SPEC_FIELDS, set(spec) - SPEC_FIELDS
    assert ("endpointSelector" in spec) != ("nodeSelector" in spec)          # oneOf
    assert {"ingress", "ingressDeny", "egress", "egressDeny"} & set(spec)    # anyOf
    assert isinstance(spec.get("description", ""), str)
    _selector(spec["endpointSelector"])
    for rule in spec["egress"]:
        assert set(rule) <= EGRESS_FIELDS, set(rule) - EGRESS_FIELDS
        assert len(EXCLUSIVE & set(rule)) == 1, rule
        for sel in rule.get("toEndpoints", []):
            _selector(sel)
        for cidr in rule.get("toCIDR", []):
            assert "/" in cidr and ipaddress.ip_network(cidr, strict=True)    # format: cidr
        for sel in rule.get("toFQDNs", []):
            _fqdn_selector(sel)
        for pr in rule.get("toPorts", []):
            assert set(pr) <= PORT_RULE_FIELDS
            assert len(pr["ports"]) <= 40
            for p in pr["ports"]:
                assert set(p) <= PORT_FIELDS and "port" in p
                assert isinstance(p["port"], str) and PORT_RE.match(p["port"])
                assert p.get("protocol", "ANY") in PROTOCOLS
            if "rules" in pr:
                assert len(pr["rules"]) == 1 and set(pr["rules"]) <= {"http", "kafka", "dns", "l7proto"}
                for sel in pr["rules"].get("dns", []):
                    _fqdn_selector(sel)


def cilium_entries(doc: dict) -> set[str]:
    """The policy read back as allowlist entries (what egress-tui would write for it)."""
    out = set()
    for rule in doc["spec"]["egress"]:
        ports = {int(p["port"]) for pr in rule.get("toPorts", []) for p in pr["ports"]} or {None}
        if "toEndpoints" in rule:
            continue
        assert len(ports) == 1
        port = ports.pop()
        items = [sel.get("matchName") or "*." + sel["matchPattern"].removeprefix("**.")
                 for sel in rule.get("toFQDNs", [])]
        items += [str(n.network_address) if n.num_addresses == 1 else str(n)
                  for n in map(ipaddress.ip_network, rule.get("toCIDR", []))]
        for item in items:
            out.add(parse_entry(f"[{item}]:{port}" if port and ":" in item else
                                f"{item}:{port}" if port else item).text())
    return out


def test_cilium_policy_follows_the_v2_api_and_names_round_trip():
    exp = render("cilium", source(), Options(selector={"app": "claude-code", "k8s:team": "ml"}))
    doc = yaml.safe_load(exp.text)
    check_cilium_policy(doc)
    assert doc["spec"]["endpointSelector"]["matchLabels"] == {"app": "claude-code", "k8s:team": "ml"}
    assert cilium_entries(doc) == entry_texts(build_al())
    # the DNS rule Cilium's proxy needs: kube-dns, port 53, every lookup seen by the proxy
    dns = doc["spec"]["egress"][0]
    assert dns["toEndpoints"] == [{"matchLabels": {"k8s:io.kubernetes.pod.namespace": "kube-system",
                                                   "k8s:k8s-app": "kube-dns"}}]
    assert dns["toPorts"] == [{"ports": [{"port": "53", "protocol": "ANY"}], "rules": {"dns": [{"matchPattern": "*"}]}}]
    ported = next(r for r in doc["spec"]["egress"] if {"matchName": "internal.example.com"} in r.get("toFQDNs", []))
    assert ported["toPorts"] == [{"ports": [{"port": "8443", "protocol": "TCP"}, {"port": "8443", "protocol": "UDP"}]}]
    assert not exp.notes  # every entry fits


def test_cilium_without_a_selector_says_it_selects_every_pod():
    exp = render("cilium", source("api.anthropic.com\n"))
    doc = yaml.safe_load(exp.text)
    check_cilium_policy(doc)
    assert doc["spec"]["endpointSelector"] == {"matchLabels": {}}
    assert [n.what for n in exp.notes] == ["warning"]


@pytest.mark.parametrize("bad", ["app", "=x", "app=a b", "app=" + "x" * 64, "a/b/c=x", 'app="x"', "app=x\ny"])
def test_cilium_selector_must_be_a_label(bad):
    r = egress("export", "cilium", "--preset", "anthropic", "--selector", bad)
    assert r.returncode == 2 and "want a Kubernetes label KEY=VALUE" in r.stderr and len(r.stderr.splitlines()) == 1


# -- reports: what was seen, as hostile input --------------------------------------------------

@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A real report: `egress-tui report --format json` over a capture with an allowed host and
    a denied one."""
    conv = Conversation()
    c, r = "10.1.0.2", "10.1.0.53"
    for i, name in enumerate(["bedrock-runtime.ap-northeast-1.amazonaws.com", "api.anthropic.com"]):
        server = f"198.18.64.{10 + i}"
        conv.dns(c, r, name, [(name, 1, server)])
        seq, ack = conv.tcp_open(c, 50000 + i, server, 443)
        conv.segments(c, 50000 + i, server, 443, seq, ack, python_client_hello(name, ["http/1.1"]), [200])
    conv.dns(c, r, "only-looked-up.example.com", [("only-looked-up.example.com", 1, "198.18.64.30")])
    d = tmp_path_factory.mktemp("rep")
    write_pcap(str(d / "cap.pcap"), conv.frames)
    out = d / "report.json"
    p = egress("report", "--pcap", str(d / "cap.pcap"), "--preset", "bedrock:ap-northeast-1",
               "--format", "json", "-o", str(out))
    assert p.returncode == 0, p.stderr
    return str(out)


def test_from_report_exports_the_allowed_hosts_or_all_seen(report):
    r = egress("export", "domains", "--from-report", report)
    assert r.returncode == 0, r.stderr
    assert [ln for ln in r.stdout.splitlines() if not ln.startswith("#")] == [
        "bedrock-runtime.ap-northeast-1.amazonaws.com"]
    assert f"report {report}" in r.stdout and "(the allowed hosts: 1)" in r.stdout
    r = egress("export", "domains", "--from-report", report, "--all-seen")
    assert [ln for ln in r.stdout.splitlines() if not ln.startswith("#")] == [
        "bedrock-runtime.ap-northeast-1.amazonaws.com", "api.anthropic.com"]
    assert "skipped: '1 names': only looked up in DNS" in r.stderr


def test_learn_then_export_is_one_line_with_a_preset_too(report):
    r = egress("export", "squid", "--from-report", report, "--all-seen", "--preset", "anthropic")
    assert r.returncode == 0, r.stderr
    assert "preset anthropic + report" in r.stdout
    assert "acl egress_tui_names dstdomain api.anthropic.com" in r.stdout
    assert r.stdout.count("dstdomain api.anthropic.com") == 1  # once, whichever source had it


def test_a_report_without_verdicts_needs_all_seen(tmp_path):
    p = tmp_path / "r.json"
    p.write_text(json.dumps({"hosts": [{"name": "a.example.com", "allowed": None, "connections": 1}]}))
    r = egress("export", "domains", "--from-report", str(p))
    assert r.returncode == 2 and "--all-seen" in r.stderr and len(r.stderr.splitlines()) == 1
    assert egress("export", "domains", "--from-report", str(p), "--all-seen").stdout.endswith("a.example.com\n")


@pytest.mark.parametrize("content,why", [
    (b"not json", "is not JSON"), (b"[1, 2]", "has no 'hosts' list"), (b'{"hosts": 3}', "has no 'hosts' list"),
    (b"\xff\xfe", "is not JSON"), (b"[" * 100000 + b"]" * 100000, "is not JSON"),
], ids=["text", "list", "hosts-not-list", "not-utf8", "deep"])
def test_a_file_that_is_not_a_report_is_one_line(tmp_path, content, why):
    p = tmp_path / "r.json"
    p.write_bytes(content)
    r = egress("export", "domains", "--from-report", str(p), "--all-seen")
    assert r.returncode == 2 and why in r.stderr and len(r.stderr.splitlines()) == 1


# Names a container can put in a report (SNI, Host, DNS): each tries to leave its place.
HOSTILE = [
    'evil.test"; drop all #',                      # quote out of a string
    "a.test\nhttp_access allow all",               # a new squid line
    "b.test\r\n  - matchPattern: \"*\"",           # a new YAML item
    "c.test } } table inet x { chain y {",         # out of an nft block
    "d.test\\",                                    # a comment continued onto the next line
    '"}], "Targets": ["*"], "x": [{"',             # out of a JSON string
    "e.test; sid:1; pass ip any any -> any any (", # a Suricata rule
    "*",                                           # everything
    "*.co.uk", "0.0.0.0/0", "::/0", "0x7f.1", "10.0.0.1", "-x.test",
    "all",                                         # a host name (one label); in squid a dstdomain value
    "\x1b]0;pwned\x07f.test", "g.test\u202e", "<script>.test", "$(reboot).test", "`id`.test",
    "h" * 64 + ".test", ("i." * 130) + "test",
    "bücher.example",                              # a real IDN: exported as its xn-- form
    "ok.example.com",
]
VALID = {"xn--bcher-kva.example", "ok.example.com", "all"}


@pytest.fixture
def hostile_report(tmp_path):
    rows = [{"name": n, "allowed": True, "connections": 1, "ports": [443]} for n in HOSTILE]
    rows += [{"name": 12, "allowed": True, "connections": 1}, {"allowed": True},
             {"name": "j.test", "allowed": True, "connections": "1"}, {"name": ["k.test"], "connections": 1},
             "not a row", None]
    p = tmp_path / "hostile.json"
    p.write_text(json.dumps({"source": "learn box\n# acl x", "hosts": rows}))
    return str(p)


def _non_comment(text: str) -> str:
    return "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f != "nftables"] + ["squid-bump", "suricata"])
def test_hostile_report_names_never_reach_an_export(fmt, hostile_report):
    args = {"squid-bump": ["squid", "--ssl-bump"], "suricata": ["aws-network-firewall", "--suricata"]}.get(fmt, [fmt])
    r = egress("export", *args, "--from-report", hostile_report)
    assert r.returncode == 0, r.stderr
    body = _non_comment(r.stdout)
    for bad in ("evil", "drop all", "http_access allow all", "table inet x", "pwned", "<script>", "reboot", "`",
                "co.uk", "0.0.0.0", "::/0", "10.0.0.1", "\x1b", "\u202e", "Targets\": [\"*\"]", "sid:1;"):
        assert bad not in body, (bad, body)
    # every comment line is one line of plain text, ending in words egress-tui wrote
    for line in r.stdout.splitlines():
        assert "\x1b" not in line and "\r" not in line and not line.endswith("\\")
    # the skipped names are said on stderr, escaped
    assert r.stderr.count("egress-tui: skipped:") >= len(HOSTILE) - len(VALID)
    assert "\x1b" not in r.stderr and "\\x1b]0;pwned" in r.stderr
    exported = exported_names(fmt, r.stdout)
    assert exported == VALID, exported


def exported_names(fmt: str, text: str) -> set[str]:
    """The host names an export allows, read back by each format's own parser."""
    if fmt in ("squid", "squid-bump"):
        return {ln.split()[-1] for ln in text.splitlines() if re.match(r"acl \S+ dstdomain ", ln)}
    if fmt == "domains":
        return {ln for ln in text.splitlines() if ln and not ln.startswith("#")}
    if fmt == "harden-runner":
        return {ep.rsplit(":", 1)[0] for ep in yaml.safe_load(text)[0]["with"]["allowed-endpoints"].split()}
    if fmt == "cilium":
        doc = yaml.safe_load(text)
        check_cilium_policy(doc)
        return cilium_entries(doc)
    if fmt == "aws-network-firewall":
        request = json.loads(text)
        _validate_aws(request)
        return set(request["RuleGroup"]["RulesSource"]["RulesSourceList"]["Targets"])
    if fmt == "suricata":
        return {r["raw"].split('content:"')[1].split('"')[0] for r in _suricata_rules(text)
                if r["action"] == "pass"}
    raise AssertionError(fmt)


def test_every_exported_report_name_is_a_host_name(hostile_report):
    src = from_report(hostile_report, all_seen=False)
    assert {e.pattern for e in src.entries} == VALID
    assert all(is_host_name(e.pattern) and e.port is None and e.network is None for e in src.entries)


# -- the command line --------------------------------------------------------------------------

@pytest.mark.parametrize("args,said", [
    (["export", "squid"], "export needs what to export"),
    (["export", "squid", "--preset", "anthropic", "--suricata"], "--suricata goes with export aws-network-firewall"),
    (["export", "domains", "--preset", "anthropic", "--ssl-bump"], "--ssl-bump goes with export squid"),
    (["export", "squid", "--preset", "anthropic", "--selector", "a=b"], "--selector goes with export cilium"),
    (["export", "squid", "--preset", "anthropic", "--resolver", "1.1.1.1"], "--resolver goes with export nftables"),
    (["export", "domains", "--preset", "anthropic", "--name", "x"], "--name goes with export cilium"),
    (["export", "domains", "--preset", "anthropic", "--all-seen"], "--all-seen goes with --from-report"),
    (["export", "nftables", "--preset", "anthropic", "--resolver", "dns.example"], "not an IP address"),
    (["export", "domains", "--preset", "nope"], "unknown preset"),
    (["export", "domains", "--from-report", "/nonexistent.json"], "cannot read report"),
    (["export", "domains", "--preset", "anthropic", "-o", "/nonexistent/dir/x"], "cannot write"),
])
def test_bad_export_commands_are_one_line(args, said):
    r = egress(*args)
    assert r.returncode == 2 and said in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_export_writes_the_file_and_says_so(tmp_path):
    out = tmp_path / "list.txt"
    r = egress("export", "domains", "--preset", "bedrock:ap-northeast-1", "-o", str(out))
    assert r.returncode == 0 and r.stdout == ""
    assert f"wrote domains to {out}: 2 entries" in r.stderr
    assert out.read_text().splitlines()[-2:] == ["bedrock-runtime.ap-northeast-1.amazonaws.com",
                                                 "bedrock.ap-northeast-1.amazonaws.com"]


def test_an_export_loads_neither_textual_nor_docker(tmp_path):
    out = tmp_path / "x.yaml"
    code = ("from egress_tui.cli import main\n"
            f"assert main(['export', 'cilium', '--preset', 'anthropic', '-o', {str(out)!r}]) == 0\n"
            "import json, sys\nprint(json.dumps(sorted(sys.modules)))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/", timeout=60)
    assert p.returncode == 0, p.stderr
    loaded = {m.split(".")[0] for m in json.loads(p.stdout.splitlines()[-1])}
    assert not {"textual", "docker"} & loaded


# -- nftables: the same plan as firewall apply (nft itself: tests/test_export_nftables.py) -----

def test_nftables_rules_follow_the_iptables_firewall_rule_for_rule():
    from egress_tui.firewall.plan import build_plan
    al = build_al()
    resolved = {"api.anthropic.com": [("198.51.100.20", 60), ("2001:db8:2::20", 60)],
                "internal.example.com": [("203.0.113.5", 60)]}
    for reject in (False, True):
        text = render("nftables", source(), Options(resolvers=["192.0.2.53"], resolved=resolved, reject=reject)).text
        ipt = build_plan(al, resolved, ["192.0.2.53"], reject).iptables_script(4, hook_present=True)
        chain = text[text.index("chain output"):]
        kinds = [k for k, pat in (("lo", 'oifname "lo" accept'), ("established", "ct state established,related"),
                                  ("resolver", "ip daddr 192.0.2.53 udp dport 53"), ("set", "daddr @allow4 accept"),
                                  ("nflog", "group 4242"), ("reject", "reject with tcp reset"),
                                  ("drop", "\t\tdrop")) if pat in chain]
        ipt_kinds = [k for k, pat in (("lo", "-o lo"), ("established", "ESTABLISHED,RELATED"),
                                      ("resolver", "-d 192.0.2.53 -p udp --dport 53"),
                                      ("set", "--match-set egress-tui-v4 dst"), ("nflog", "--nflog-group 4242"),
                                      ("reject", "--reject-with tcp-reset"), ("drop", "-j DROP")) if pat in ipt]
        assert kinds == ipt_kinds
        assert [chain.index(p) for p in ('oifname "lo"', "ct state", "udp dport 53", "@allow4", "group 4242")] == \
            sorted(chain.index(p) for p in ('oifname "lo"', "ct state", "udp dport 53", "@allow4", "group 4242"))
    # every address the iptables plan lets through is in a set (networks collapsed, ports kept)
    assert "2001:db8::/32" in text and "198.18.0.0/15" in text and "198.51.100.7" in text
    assert "203.0.113.5 . tcp . 8443" in text and "203.0.113.5 . udp . 8443" in text
    assert "2001:db8:1::5 . tcp . 443" in text
    assert "2001:db8:2::20" not in text          # inside 2001:db8::/32 already: collapsed
    assert "198.51.100.20" in text


def test_nftables_from_a_hostile_report_holds_only_addresses_of_host_names(hostile_report):
    src = from_report(hostile_report, all_seen=False)
    resolved = {"ok.example.com": [("198.51.100.9", 60)], "xn--bcher-kva.example": [("198.51.100.20", 60)],
                "all": [("198.51.100.40", 60)]}
    exp = render("nftables", src, Options(resolvers=["192.0.2.53"], resolved=resolved))
    body = _non_comment(exp.text)
    assert set(re.findall(r"\d+\.\d+\.\d+\.\d+(?:/\d+)?", body)) == {"198.51.100.9", "198.51.100.20",
                                                                    "198.51.100.40", "192.0.2.53"}
    for bad in ("evil", "table inet x", "0.0.0.0", "co.uk", "\x1b"):
        assert bad not in body

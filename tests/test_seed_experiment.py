"""The seed's afternoon, end to end, with real Claude Code from npm in a real container on
the Docker lab: Bedrock mode reaches the two Bedrock hosts; with the bedrock preset applied
from the host it still does, while Anthropic mode's api.anthropic.com shows as blocked, named
by its DNS lookup. No traffic leaves the lab (sinkhole DNS, no route out)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


pytestmark = [pytest.mark.docker, pytest.mark.root]

EGRESS = str(Path(sys.executable).with_name("egress-tui"))
RUNTIME = "bedrock-runtime.ap-northeast-1.amazonaws.com"
CONTROL = "bedrock.ap-northeast-1.amazonaws.com"
DUMMY_AWS = ["-e", "AWS_ACCESS_KEY_ID=AKIAEGRESSTUITEST000", "-e", "AWS_SECRET_ACCESS_KEY=not-a-real-secret"]


def egress(*args, timeout=120):
    return subprocess.run([EGRESS, *args], capture_output=True, text=True, timeout=timeout)


def learn(lab, provider, *extra, tmp=None):
    args = ["learn", lab.target.name, "--provider", provider, "--timeout", "12", "--format", "json", "--quiet"]
    if provider == "bedrock":
        args += ["--region", "ap-northeast-1", *DUMMY_AWS]
    else:
        args += ["-e", "ANTHROPIC_API_KEY=sk-ant-egress-tui-test"]
    r = egress(*args, *extra)
    assert r.returncode == 0, r.stderr
    return {h["name"]: h for h in json.loads(r.stdout)["hosts"]}


def reached(h):
    return bool(h["outcomes"].get("closed") or h["outcomes"].get("connected"))


def saves(lab):
    return [lab.nsenter([t, "-t", "filter"]).stdout for t in ("iptables-save", "ip6tables-save")]


def normalize(text):
    import re
    return [re.sub(r"\[\d+:\d+\]", "", ln) for ln in text.splitlines() if not ln.startswith("#")]


@pytest.fixture(scope="module")
def before(docker_lab):
    egress("firewall", "remove", docker_lab.target.name)
    return [normalize(s) for s in saves(docker_lab)]


def test_1_bedrock_mode_without_firewall_reaches_the_two_bedrock_hosts(docker_lab, before, tmp_path_factory):
    out = tmp_path_factory.mktemp("learn") / "allow.txt"
    hosts = learn(docker_lab, "bedrock", "--write-allowlist", str(out))
    assert reached(hosts[RUNTIME]) and "tls" in hosts[RUNTIME]["via"]
    assert reached(hosts[CONTROL])
    assert "api.anthropic.com" not in hosts
    written = [ln.split()[0] for ln in out.read_text().splitlines() if ln and not ln.startswith("#")]
    assert set(written) == {RUNTIME, CONTROL}


def test_2_firewall_apply_with_the_bedrock_preset(docker_lab, before):
    r = egress("firewall", "apply", docker_lab.target.name, "--preset", "bedrock:ap-northeast-1")
    assert r.returncode == 0, r.stderr
    assert "check denied  example.com" in r.stdout and "[ok]" in r.stdout
    st = json.loads(egress("firewall", "status", docker_lab.target.name, "--format", "json").stdout)
    assert st["on"] and st["allowlist"] == [RUNTIME, CONTROL]


def test_3_bedrock_rerun_still_reaches_bedrock(docker_lab, before):
    hosts = learn(docker_lab, "bedrock")
    assert reached(hosts[RUNTIME]) and reached(hosts[CONTROL])


def test_4_anthropic_mode_is_blocked_and_named_by_dns(docker_lab, before, tmp_path):
    report = tmp_path / "session.md"
    hosts = learn(docker_lab, "anthropic", "--preset", "bedrock:ap-northeast-1", "--session-report", str(report))
    md = report.read_text()
    assert "- firewall: ON" in md and "**blocked**: api.anthropic.com" in md
    assert "sk-ant-egress-tui-test" not in md
    h = hosts["api.anthropic.com"]
    assert h["blocked"] and h["outcomes"].get("unanswered") and not reached(h)
    assert h["via"] == ["dns"] and h["allowed"] is False      # no ClientHello ever left


def test_5_ipv6_dns_and_embedded_dns_under_the_firewall(docker_lab, before):
    lab = docker_lab
    assert lab.exec(["getent", "hosts", "still-resolves.test"]).returncode == 0   # 127.0.0.11 works
    r = lab.exec(["curl", "-sk", "-6", "--connect-timeout", "2", "https://denied-v6.test/"])
    assert r.returncode != 0                                                      # IPv6 is filtered too
    other = lab.address_for("another-resolver.test")
    r = lab.exec(["python3", "-c", "import socket; socket.create_connection((%r, 53), timeout=2)" % other])
    assert r.returncode != 0                                                      # no DNS elsewhere
    st = json.loads(egress("firewall", "status", lab.target.name, "--format", "json").stdout)
    assert st["dropped_packets"]["4"] > 0 and st["dropped_packets"]["6"] > 0


def test_6_remove_restores_the_namespace(docker_lab, before):
    r = egress("firewall", "remove", docker_lab.target.name)
    assert r.returncode == 0 and "removed" in r.stdout
    assert [normalize(s) for s in saves(docker_lab)] == before
    assert "egress-tui" not in docker_lab.nsenter(["ipset", "list", "-n"]).stdout
    assert docker_lab.exec(["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}",
                            "https://open-again.test/"]).stdout == "200"


def test_learn_without_claude_names_the_container_and_the_fix(docker_lab):
    ctr = docker_lab.dns.name  # the DNS container has no claude
    r = egress("learn", ctr, "--timeout", "5")
    assert r.returncode == 2
    assert "has no 'claude' command" in r.stderr and "npm install -g @anthropic-ai/claude-code" in r.stderr

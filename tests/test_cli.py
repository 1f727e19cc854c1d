"""`egress-tui report` and `presets` as a user runs them: output, exit codes, one-line errors."""

from __future__ import annotations

import csv
import os
import io
import json
import subprocess
import sys

import pytest

from tests.pcapgen import Conversation, python_client_hello, write_pcap

C, S, R = "10.1.0.2", "198.18.64.10", "10.1.0.53"


def egress(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "egress_tui", *args], capture_output=True, text=True,
                          input=stdin, timeout=60)


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    conv = Conversation()
    conv.dns(C, R, "bedrock-runtime.ap-northeast-1.amazonaws.com",
             [("bedrock-runtime.ap-northeast-1.amazonaws.com", 1, S)])
    seq, ack = conv.tcp_open(C, 50000, S, 443)
    conv.segments(C, 50000, S, 443, seq, ack,
                  python_client_hello("bedrock-runtime.ap-northeast-1.amazonaws.com", ["http/1.1"]), [200])
    conv.dns(C, R, "api.anthropic.com", [("api.anthropic.com", 1, "198.18.64.11")])
    conv.tcp_open(C, 50001, "198.18.64.11", 443, answer="none")
    p = tmp_path_factory.mktemp("cap") / "run.pcap"
    write_pcap(str(p), conv.frames)
    return str(p)


def test_table(capture):
    r = egress("report", "--pcap", capture, "--preset", "bedrock:ap-northeast-1")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["host", "via", "addresses", "ports", "conns", "outcomes", "verdict"]
    bedrock = next(line for line in lines if line.startswith("bedrock-runtime"))
    assert "tls" in bedrock and "allowed" in bedrock and "connected:1" in bedrock
    anth = next(line for line in lines if line.startswith("api.anthropic.com"))
    assert "denied, blocked" in anth and "unanswered:1" in anth


def test_json(capture):
    r = egress("report", "--pcap", capture, "--preset", "bedrock:ap-northeast-1", "--format", "json")
    data = json.loads(r.stdout)
    hosts = {h["name"]: h for h in data["hosts"]}
    b = hosts["bedrock-runtime.ap-northeast-1.amazonaws.com"]
    assert b["via"] == ["dns", "tls"] and b["allowed"] is True and b["alpn"] == ["http/1.1"]
    assert b["ports"] == [443] and b["connections"] == 1 and b["ja4"][0].startswith("t13d")
    a = hosts["api.anthropic.com"]
    assert a["allowed"] is False and a["outcomes"] == {"unanswered": 1} and a["blocked"] is True
    for key in ("name", "via", "addresses", "ports", "connections", "outcomes", "allowed", "alpn", "ja4"):
        assert key in a
    assert data["packets"] == 11  # 2 DNS exchanges, a 5-packet connection, 2 unanswered SYNs


def test_csv_and_markdown(capture, tmp_path):
    out = tmp_path / "r.csv"
    assert egress("report", "--pcap", capture, "--format", "csv", "-o", str(out)).returncode == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert {r["name"] for r in rows} == {"bedrock-runtime.ap-northeast-1.amazonaws.com", "api.anthropic.com"}
    assert all(r["allowed"] == "" for r in rows)
    md = egress("report", "--pcap", capture, "--format", "markdown").stdout
    assert "| api.anthropic.com | dns |" in md


def test_stdin(capture):
    with open(capture, "rb") as f:
        r = subprocess.run([sys.executable, "-m", "egress_tui", "report", "--pcap", "-", "--format", "json"],
                           stdin=f, capture_output=True, timeout=60)
    assert len(json.loads(r.stdout)["hosts"]) == 2


def test_fail_on_denied(capture, tmp_path):
    r = egress("report", "--pcap", capture, "--preset", "bedrock:ap-northeast-1", "--fail-on-denied")
    assert r.returncode == 3
    assert "api.anthropic.com" in r.stderr.splitlines()[-1]
    allow = tmp_path / "allow.txt"
    allow.write_text("api.anthropic.com\n")
    r = egress("report", "--pcap", capture, "--allow", str(allow), "--preset", "bedrock:ap-northeast-1",
               "--fail-on-denied")
    assert r.returncode == 0, r.stderr


def _one_line_error(r, *needles):
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    for n in needles:
        assert n in lines[0]


def test_errors_are_one_line(capture, tmp_path):
    _one_line_error(egress("report", "--pcap", str(tmp_path / "nope.pcap")), "No such file")
    trunc = tmp_path / "trunc.pcap"
    trunc.write_bytes(open(capture, "rb").read()[:-20])
    _one_line_error(egress("report", "--pcap", str(trunc)), "truncated")
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"<html>not a capture</html>")
    _one_line_error(egress("report", "--pcap", str(junk)), "not a pcap or pcapng")
    usb = tmp_path / "usb.pcap"
    write_pcap(str(usb), [(1.0, b"\0" * 30)], linktype=189)
    _one_line_error(egress("report", "--pcap", str(usb)), "link type 189")
    bad = tmp_path / "allow.txt"
    bad.write_text("api.anthropic.com\n\n# ok\nnot/a host\n")
    _one_line_error(egress("report", "--pcap", capture, "--allow", str(bad)), "line 4")
    _one_line_error(egress("report", "--pcap", capture, "--preset", "bedrock"), "needs a REGION")
    _one_line_error(egress("report"), "--pcap FILE")
    _one_line_error(egress("report", "--pcap", str(tmp_path)), "is a directory")


def test_presets_command():
    r = egress("presets")
    assert r.returncode == 0
    assert "bedrock:REGION" in r.stdout and "api.anthropic.com" in r.stdout


def test_report_never_imports_textual(capture):
    code = ("import sys; from egress_tui.cli import main; main(['report', '--pcap', %r]); "
            "assert 'textual' not in sys.modules, 'textual imported'; "
            "assert 'scapy' not in sys.modules, 'scapy imported'" % capture)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_docker_unreachable_is_one_line(tmp_path):
    env = dict(os.environ, DOCKER_HOST=f"unix://{tmp_path}/no-docker.sock")
    for argv in (["report", "--container", "claude"], ["claude"]):
        r = subprocess.run([sys.executable, "-m", "egress_tui", *argv], capture_output=True, text=True,
                           env=env, timeout=60)
        _one_line_error(r, "Docker is not reachable at unix://", "is dockerd running?")


def test_live_inspector_needs_a_terminal(capture):
    r = egress("--pcap", capture)
    _one_line_error(r, "needs a terminal", "egress-tui report")

"""Allowlist entries, files, presets and verdicts: tables of input and expected outcome."""

from __future__ import annotations

import pytest

from tui.allowlist import Allowlist, AllowlistError, build, parse_entry, preset_entries


@pytest.mark.parametrize("entry,name,port,expected", [
    ("api.anthropic.com", "api.anthropic.com", 443, True),
    ("api.anthropic.com", "API.Anthropic.com.", 443, True),
    ("api.anthropic.com", "x.api.anthropic.com", 443, False),
    ("*.amazonaws.com", "bedrock-runtime.ap-northeast-1.amazonaws.com", 443, True),
    ("*.amazonaws.com", "amazonaws.com", 443, False),
    ("*.amazonaws.com", "evilamazonaws.com", 443, False),
    ("api.anthropic.com:443", "api.anthropic.com", 443, True),
    ("api.anthropic.com:443", "api.anthropic.com", 80, False),
    ("198.18.0.0/15", "198.18.64.3", 443, True),
    ("198.18.0.0/15", "198.20.0.1", 443, False),
    ("[fd65:6774::1]:443", "fd65:6774::1", 443, True),
    ("fd65:6774::/48", "fd65:6774:0:1::5", 8443, True),
])
def test_matching(entry, name, port, expected):
    al = Allowlist()
    al.add_text(entry)
    assert (al.match(name, port) is not None) is expected


@pytest.mark.parametrize("text,reason", [
    ("http://api.anthropic.com", "is a URL, not a host name: write just 'api.anthropic.com'"),
    ("api.anthropic.com:99999", "port must be"),
    ("api..anthropic.com", "not a host name"),
    ("a*.example.com", "wildcard"),
    ("*.com", "not a host name or a wildcard"),
    ("300.1.1.1", "not a valid IP"),
    ("-bad-.test", "not a host name"),
])
def test_bad_entries(text, reason):
    with pytest.raises(AllowlistError, match=reason):
        parse_entry(text)


def test_file_errors_name_the_line(tmp_path):
    f = tmp_path / "allow.txt"
    f.write_text("# Claude Code\napi.anthropic.com\n\nstatsig.anthropic.com  # flags\nnot a host\n")
    with pytest.raises(AllowlistError, match=r"allow.txt line 5: one entry per line"):
        build([str(f)])
    f.write_text("api.anthropic.com\nhttps://x.test/\n")
    with pytest.raises(AllowlistError, match=r"line 2: 'https://x.test/' is a URL"):
        build([str(f)])
    with pytest.raises(AllowlistError, match="cannot read allowlist"):
        build([str(tmp_path / "missing.txt")])


def test_file_and_presets_combine(tmp_path):
    f = tmp_path / "allow.txt"
    f.write_text("internal.test:8443  # our git server\n")
    al = build([str(f)], ["bedrock:ap-northeast-1"])
    assert al.verdict("bedrock-runtime.ap-northeast-1.amazonaws.com", [443]) is True
    assert al.verdict("internal.test", [8443]) is True
    assert al.verdict("internal.test", [8443, 22]) is False
    assert al.verdict("api.anthropic.com", [443]) is False
    assert Allowlist().verdict("api.anthropic.com", [443]) is None
    text = al.to_text()
    assert "internal.test:8443  # our git server" in text
    again = Allowlist()
    again.add_text(text)
    assert [e.text() for e in again.entries] == [e.text() for e in al.entries]


def test_presets():
    names = [e.pattern for e in preset_entries("anthropic")]
    assert "api.anthropic.com" in names and "statsig.anthropic.com" in names
    assert [e.pattern for e in preset_entries("bedrock:ap-northeast-1")] == [
        "bedrock-runtime.ap-northeast-1.amazonaws.com", "bedrock.ap-northeast-1.amazonaws.com"]
    assert preset_entries("vertex:us-east5")[0].pattern == "us-east5-aiplatform.googleapis.com"
    assert preset_entries("vertex:global")[0].pattern == "aiplatform.googleapis.com"
    for bad, msg in [("bedrock", "needs a REGION"), ("bedrock:mars", "not an AWS region"),
                     ("nope", "unknown preset"), ("anthropic:x", "takes no argument")]:
        with pytest.raises(AllowlistError, match=msg):
            preset_entries(bad)

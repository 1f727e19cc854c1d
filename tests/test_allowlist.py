"""Allowlist entries, files, presets and verdicts: tables of input and expected outcome."""

from __future__ import annotations

import ipaddress
import os
import socket
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from publicsuffixlist import PublicSuffixList

from tests.strategies import hostile_names
from egress_tui.core.allowlist import (Allowlist, AllowlistError, build, choices_for, learned_allowlist, parse_entry,
                                       preset_entries)


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


PSL = PublicSuffixList()    # the list as the package ships it, consulted independently


# -- entries offered for observed names (the container chooses the names) -------------

def offered(name):
    return [c.entry for c in choices_for(name).choices]


@pytest.mark.parametrize("name,entries", [
    ("api.anthropic.com", ["api.anthropic.com", "*.anthropic.com"]),
    ("a.b.example.co.uk", ["a.b.example.co.uk", "*.b.example.co.uk", "*.example.co.uk"]),
    ("API.Anthropic.COM.", ["api.anthropic.com", "*.anthropic.com"]),
    ("anthropic.com", ["anthropic.com"]),                     # its own registrable domain
    ("example.co.uk", ["example.co.uk"]),
    ("co.uk", ["co.uk"]),                                     # a public suffix: the name, no wildcard
    ("com", ["com"]),
    ("foo.github.io", ["foo.github.io"]),                     # private part of the list
    ("a.foo.github.io", ["a.foo.github.io", "*.foo.github.io"]),
    ("github.io", ["github.io"]),
    ("x.s3.amazonaws.com", ["x.s3.amazonaws.com"]),
    ("a.x.compute.amazonaws.com", ["a.x.compute.amazonaws.com"]),  # *.compute.amazonaws.com rule
    ("bedrock-runtime.ap-northeast-1.amazonaws.com",
     ["bedrock-runtime.ap-northeast-1.amazonaws.com", "*.ap-northeast-1.amazonaws.com", "*.amazonaws.com"]),
    ("bücher.example", ["xn--bcher-kva.example"]),
    ("www.bücher.de", ["www.xn--bcher-kva.de", "*.xn--bcher-kva.de"]),
    ("xn--bcher-kva.example", ["xn--bcher-kva.example"]),
    ("r3---sn-abc.googlevideo.com", ["r3---sn-abc.googlevideo.com", "*.googlevideo.com"]),
    ("localhost", ["localhost"]),
    ("a.b.c.d.e.f.example.com",                               # deep: nearest parents and the domain
     ["a.b.c.d.e.f.example.com", "*.b.c.d.e.f.example.com", "*.c.d.e.f.example.com",
      "*.d.e.f.example.com", "*.example.com"]),
])
def test_choices_for_host_names(name, entries):
    assert offered(name) == entries


@pytest.mark.parametrize("name,why", [
    ("0.0.0.0/0", "an address range"),
    ("::/0", "an address range"),
    ("10.0.0.0/8", "an address range"),
    ("10.0.0.1", "an address,"),
    ("[::1]", "an address,"),
    ("0x7f.0x1", "resolvers read it as 127.0.0.1"),
    ("0x7f000001", "resolvers read it as 127.0.0.1"),
    ("0x7f.0x1.", "resolvers read it as 127.0.0.1"),
    ("*.example.com", "with '*'"),
    ("*.co.uk", "with '*'"),
    ("*", "with '*'"),
    ("a_b.example", "not a valid host name"),
    ("a" * 64 + ".example", "not a valid host name"),
    (("a" * 63 + ".") * 4 + "com", "not a valid host name"),  # 260 bytes
    ("example.123", "not a valid host name"),
    ("xn--abc.example", "not a valid host name"),              # not what IDNA would write
    ("BÜCHER.example", "not a valid host name"),               # IDNA 2008 has no upper case
    ("a\u200db.example", "not a valid host name"),
    ("[/]evil.example", "not a valid host name"),
    ("x\x1b[8m.example", "not a valid host name"),
    ("", "not a valid host name"),
])
def test_choices_for_refuses(name, why):
    c = choices_for(name)
    assert c.host is None and c.choices == ()
    assert why in c.why and "by hand" not in c.why and "yourself" in c.why


def test_choices_say_what_they_allow():
    exact, wild = choices_for("api.anthropic.com").choices
    assert exact.allows == "only api.anthropic.com"
    assert wild.allows == ("api.anthropic.com and any other subdomain of anthropic.com, "
                           "not anthropic.com itself")
    assert choices_for("bücher.example").choices[0].allows == "only xn--bcher-kva.example (bücher.example)"
    assert "public suffix" in choices_for("co.uk").why


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_names())
def test_offered_entries_are_never_wider_than_the_observed_domain(name):
    psl = PSL
    c = choices_for(name)
    entries = [ch.entry for ch in c.choices]
    assert len(set(entries)) == len(entries)                   # unique: option ids never clash
    if c.host is None:
        assert not entries and c.why
        return
    assert entries[0] == c.host
    for ch in c.choices:
        assert "\n" not in ch.allows and ch.allows.isprintable()
        e = parse_entry(ch.entry)
        assert e.network is None and e.text() == ch.entry
        with pytest.raises(ValueError):
            ipaddress.ip_network(ch.entry.removeprefix("*."), strict=False)
        with pytest.raises(OSError):
            socket.inet_aton(ch.entry)
        al = Allowlist([e])
        assert al.match(name) is e                             # it allows what was seen
        if e.wildcard:
            parent = e.pattern[2:]
            base = psl.privatesuffix(c.host)
            assert base is not None and (parent == base or parent.endswith("." + base))
            assert not psl.is_public(parent)


# -- the index answers exactly what trying every entry in turn answers ---------------

_names = st.lists(st.sampled_from(["a", "b", "x", "A"]), min_size=1, max_size=4).map(".".join)
_entry_texts = st.one_of(
    st.builds(lambda n, p: n + p, _names, st.sampled_from(["", ":443", ":80"])),
    st.builds(lambda n, p: "*." + n + p, _names.filter(lambda n: "." in n), st.sampled_from(["", ":443"])),
    st.sampled_from(["10.0.0.0/8", "10.1.2.3", "10.1.0.0/16:443", "0.0.0.0/0:22", "fd00::/8", "[fd00::1]:443"]),
)


def _first_by_scan(entries, name, port):
    return next((e for e in entries if e.matches_name(name)
                 and (e.port is None or port is None or e.port == port)), None)


@settings(max_examples=400, deadline=None)
@given(st.lists(_entry_texts, max_size=12),
       st.one_of(_names, _names.map(lambda n: n + "."), _names.map(lambda n: "." + n), st.sampled_from(
           ["10.1.2.3", "10.9.9.9", "11.0.0.1", "fd00::1", "fe80::1", "..x", ".x", "x", ""])),
       st.sampled_from([None, 22, 80, 443]))
def test_index_matches_a_linear_scan(texts, name, port):
    al = Allowlist()
    for t in texts:
        e = parse_entry(t.lower() if not t[0].isdigit() else t)
        al.add(e)
    assert al.match(name, port) is _first_by_scan(al.entries, name, port)


def test_duplicates_and_removal_keep_order():
    al = Allowlist()
    al.add_text("b.ex.test\n*.ex.test\nb.ex.test\nb.ex.test:443\n10.0.0.0/8\n")
    assert [e.text() for e in al.entries] == ["b.ex.test", "*.ex.test", "b.ex.test:443", "10.0.0.0/8"]
    assert al.match("b.ex.test", 443).text() == "b.ex.test"
    assert [e.text() for e in al.remove_matching("b.ex.test")] == ["b.ex.test", "*.ex.test", "b.ex.test:443"]
    assert [e.text() for e in al.entries] == ["10.0.0.0/8"]
    assert al.match("b.ex.test") is None and al.match("10.2.3.4").text() == "10.0.0.0/8"
    assert al.remove("10.0.0.0/8") and not al.entries and al.match("10.2.3.4") is None


# -- learn --write-allowlist: what a run's names become --------------------------------

def test_learned_allowlist_keeps_exact_host_names_only():
    seen = ["api.anthropic.com", "0.0.0.0/0", "::/0", "*.co.uk", "*.example.com", "bücher.example",
            "10.1.2.3", "evil\x1b]0;pwned\x07.example", "[/]", "co.uk", "API.anthropic.com"]
    al, skipped = learned_allowlist((n, "reached") for n in seen)
    assert al.to_text().splitlines()[1:] == ["api.anthropic.com  # reached",
                                             "xn--bcher-kva.example  # reached", "co.uk  # reached"]
    assert len(skipped) == 7
    for line in skipped:
        assert line.isprintable() and "\x1b" not in line
    assert any(line.startswith("'0.0.0.0/0': an address range") for line in skipped)
    assert any(line.startswith("'*.co.uk': a name with '*'") for line in skipped)
    assert any(line.startswith("'evil\\x1b]0;pwned\\x07.example': not a valid host name") for line in skipped)
    al, _ = learned_allowlist([("api.anthropic.com", "reached by python3 -c 'import x\nrun()'")])
    assert al.to_text().splitlines()[1:] == ["api.anthropic.com  # reached by python3 -c 'import x run()'"]
    again = Allowlist()
    again.add_text(al.to_text())                               # the file it writes loads back
    assert again.match("api.anthropic.com", 443) and not again.match("co.uk", 443)


# -- loading: bounded, once, linear ----------------------------------------------------

def _one_line(e):
    msg = str(e.value)
    assert "\n" not in msg and len(msg) < 300, msg
    return msg


def test_dev_zero_is_refused_after_a_bounded_read():
    with pytest.raises(AllowlistError) as e:
        build(["/dev/zero"])
    assert "allowlist /dev/zero is larger than 4 MiB" in _one_line(e)


def test_nul_bytes_and_other_encodings_are_one_line_errors(tmp_path):
    f = tmp_path / "a.txt"
    f.write_bytes(b"api.anthropic.com\n\0\0\0\n")
    with pytest.raises(AllowlistError) as e:
        build([str(f)])
    assert "NUL bytes" in _one_line(e)
    f.write_bytes("bücher.example\n".encode("latin-1"))
    with pytest.raises(AllowlistError) as e:
        build([str(f)])
    assert "not UTF-8 text" in _one_line(e)
    f.write_text("ok.example\n" + "x" * 100_000 + " y\n")
    with pytest.raises(AllowlistError) as e:
        build([str(f)])
    assert "line 2: one entry per line" in _one_line(e)


def test_a_fifo_is_read_once(tmp_path):
    fifo = tmp_path / "allow.fifo"
    os.mkfifo(fifo)

    def write():
        with open(fifo, "w") as f:
            f.write("api.anthropic.com\n*.sentry.io\n")

    t = threading.Thread(target=write)
    t.start()
    al = build([str(fifo)])
    t.join(10)
    assert al.verdict("api.anthropic.com", [443]) is True
    assert al.verdict("o1.ingest.sentry.io", [443]) is True and al.verdict("sentry.io", [443]) is False


def test_ten_thousand_lines_load_and_give_the_right_verdicts(tmp_path):
    lines = []
    for i in range(10_000):
        lines.append([f"host{i}.example{i % 97}.test", f"*.zone{i}.test", f"10.{i // 256 % 256}.{i % 256}.0/24",
                      f"port{i}.test:{1 + i % 60000}"][i % 4])
    f = tmp_path / "big.txt"
    f.write_text("\n".join(lines) + "\n")
    al = build([str(f)])
    assert len(al.entries) == 10_000
    assert al.verdict("host9996.example9996.test".replace("example9996", f"example{9996 % 97}"), [443]) is True
    assert al.verdict("host9997.example1.test", [443]) is False
    assert al.verdict("deep.a.zone9997.test", [443]) is True and al.verdict("zone9997.test", [443]) is False
    assert al.verdict("unnamed", [443], ["10.39.14.7"]) is True          # 10.39.14.0/24 is line 9999
    assert al.verdict("unnamed", [443], ["10.39.15.7"]) is False
    assert al.verdict("port9999.test", [1 + 9999 % 60000]) is True and al.verdict("port9999.test", [1]) is False
    assert al.match("host0.example0.test").source == f"{f}:1"


def test_report_takes_dev_zero_and_process_substitution_like_a_user_would():
    import json
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "egress_tui", "report", "--demo", "--allow", "/dev/zero"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.splitlines() == [
        "egress-tui: allowlist /dev/zero is larger than 4 MiB: an allowlist holds one host a line; "
        "check that this is the right file"]
    # <(cmd) is a pipe that can be read once
    script = 'exec "$0" -m egress_tui report --demo --format json --allow <(printf "api.anthropic.com\\n")'
    r = subprocess.run(["bash", "-c", script, sys.executable], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    verdicts = {h["name"]: h["allowed"] for h in json.loads(r.stdout)["hosts"]}
    assert verdicts["api.anthropic.com"] is True and verdicts["example.com"] is False

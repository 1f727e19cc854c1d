"""Hostile names in every output format: the terminal, CSV, Markdown, JSON and the session
report show them as data; none can hide a verdict, run a formula, break a row or blow up the
output."""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.hostile import ESC_HIDE, STRINGS, hostile_capture
from tests.test_cli import egress
from egress_tui.core.evidence import session_data, session_markdown
from egress_tui.core.hosts import Host
from egress_tui.core.rows import HostRow
from egress_tui.core.report import TABLE_COLUMNS, render
from egress_tui.core.runs import RunRecord, RunSpec
from egress_tui.core.safetext import csv_cell, json_text, md_code, md_text, safe_text

# What a terminal acts on, or what hides or reorders text. The newline between lines is allowed.
UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")


def assert_plain(text: str, where: str) -> None:
    bad = sorted({repr(c) for c in UNSAFE.findall(text)})
    assert not bad, f"{where} holds raw control characters {bad}"


def unescape(shown: str) -> str:
    """The escapes safe_text writes are Python's: a reader can always get the bytes back."""
    return shown.encode("latin-1", "backslashreplace").decode("unicode_escape")


# -- safe_text and the cell helpers ------------------------------------------------------------

@pytest.mark.parametrize("raw, shown", [
    ("a\x1b[8mb", "a\\x1b[8mb"),
    ("t\x1b]0;x\x07", "t\\x1b]0;x\\x07"),
    ("\tx\r\n", "\\tx\\r\\n"),
    ("nul\x00", "nul\\x00"),
    ("c1\x9b", "c1\\x9b"),
    ("del\x7f", "del\\x7f"),
    ("bidi\u202eexe", "bidi\\u202eexe"),
    ("zw\u200b\ufeff", "zw\\u200b\\ufeff"),
    ("tag\U000e0041", "tag\\U000e0041"),
    ("back\\slash", "back\\\\slash"),
    ("[bold]ok.example", "[bold]ok.example"),
    ("api.anthropic.com", "api.anthropic.com"),
])
def test_safe_text_escapes_controls_visibly(raw, shown):
    assert safe_text(raw) == shown
    assert unescape(shown) == raw


def test_every_control_and_format_character_is_escaped():
    missed = [f"U+{c:04X}" for c in range(0x110000)
              if unicodedata.category(chr(c)) in ("Cc", "Cf", "Zl", "Zp", "Cs") and safe_text(chr(c)) == chr(c)]
    assert not missed


@given(st.text())
def test_safe_text_is_plain_and_loses_nothing(s):
    shown = safe_text(s)
    assert_plain(shown.replace("\n", "\x00"), "safe_text")  # a newline counts here too
    assert unescape(shown) == s


def test_safe_text_cuts_with_a_marker():
    assert safe_text("x" * 100, 10) == "x" * 9 + "…"
    assert safe_text("short", 10) == "short"
    assert len(safe_text("\x1b" * 100, 10)) == 10


@pytest.mark.parametrize("raw, cell", [
    ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
    ("+1", "'+1"), ("-2", "'-2"), ("@SUM(1)", "'@SUM(1)"),
    ("\tx", "\\tx"), ("\rx", "\\rx"),
    ("api.anthropic.com", "api.anthropic.com"), (443, "443"),
])
def test_csv_cell_neutralises_formulas(raw, cell):
    assert csv_cell(raw) == cell


@given(st.text())
def test_markdown_text_shows_the_characters_themselves(s):
    shown = md_text(s)
    assert "\n" not in shown and len(md_cells(f"| {shown} |")) == 1
    assert re.sub(r"\\(.)", r"\1", shown) == safe_text(s)


@pytest.mark.parametrize("raw", ["plain", "a`b", "``x``", "`", " ", "x\n\n# h", "|"])
def test_markdown_code_span_cannot_be_closed_from_inside(raw):
    span = md_code(raw)
    fence = re.match("`+", span).group()
    inner = span[len(fence):-len(fence)]
    assert span.endswith(fence) and fence not in inner and "\n" not in span
    assert inner.strip(" ") == safe_text(raw).strip(" ") or not raw.strip()


def test_json_escapes_del_too():
    text = json_text({"n": "a\x7f\x1b\u202e"})
    assert_plain(text, "json")
    assert json.loads(text) == {"n": "a\x7f\x1b\u202e"}


# -- `egress-tui report` on a crafted capture -------------------------------------------------

@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    return hostile_capture(str(tmp_path_factory.mktemp("hostile") / "hostile.pcap"))


def md_cells(line: str) -> list[str]:
    """A GitHub-flavoured Markdown table row split into cells (``\\|`` stays inside one)."""
    cells, cur, i = [], "", 0
    body = line.strip()
    assert body.startswith("|") and body.endswith("|") and not body.endswith("\\|"), line
    body = body[1:-1]
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body):
            cur += body[i:i + 2]
            i += 2
            continue
        if body[i] == "|":
            cells.append(cur)
            cur = ""
        else:
            cur += body[i]
        i += 1
    return cells + [cur]


def test_table_escapes_and_keeps_the_verdict_visible(capture):
    r = egress("report", "--pcap", capture, "--preset", "anthropic")
    assert r.returncode == 0, r.stderr
    assert_plain(r.stdout, "report --format table")
    [line] = [ln for ln in r.stdout.splitlines() if ln.startswith("hide\\x1b[8m.example ")]
    assert line.rstrip().endswith("denied")
    assert any(ln.startswith("title\\x1b]0;pwned\\x07.example ") for ln in r.stdout.splitlines())
    widths = {len(ln) for ln in r.stdout.splitlines()}
    assert max(widths) < 300, "a long name widened the table"


def test_fail_on_denied_names_are_escaped(capture):
    r = egress("report", "--pcap", capture, "--preset", "anthropic", "--fail-on-denied", "-o", "/dev/null")
    assert r.returncode == 3, r.stderr
    assert_plain(r.stderr.rstrip("\n"), "the --fail-on-denied message")
    assert "hide\\x1b[8m.example" in r.stderr and len(r.stderr) < 2000


def test_csv_cells_cannot_start_a_formula(capture):
    r = egress("report", "--pcap", capture, "--format", "csv")
    assert r.returncode == 0, r.stderr
    assert_plain(r.stdout.replace("\r\n", "\n"), "report --format csv")
    rows = list(csv.reader(io.StringIO(r.stdout)))
    assert len(rows) > len(STRINGS)
    for row in rows:
        assert len(row) == len(rows[0])
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell
    names = {row[0] for row in rows[1:]}
    assert {"'=cmd|' /c calc'!a0", "'+1", "'-2", "'@sum(1)", "\\ttab-first.example"} <= names


def test_markdown_rows_keep_their_columns(capture):
    r = egress("report", "--pcap", capture, "--format", "markdown")
    assert r.returncode == 0, r.stderr
    assert_plain(r.stdout, "report --format markdown")
    table = [ln for ln in r.stdout.splitlines() if ln.startswith("|")]
    assert len(table) > len(STRINGS)
    for ln in table:
        assert len(md_cells(ln)) == len(TABLE_COLUMNS), ln
    assert any(md_cells(ln)[0].strip() == "pipe\\|cell.example" for ln in table)
    assert any(md_cells(ln)[0].strip() == "back\\\\\\\\\\|slash.example" for ln in table)
    assert not re.search(r"(?<!\\)<img", r.stdout) and "\\<img src=x onerror=alert(1)\\>" in r.stdout


def test_json_holds_the_names_exactly(capture):
    r = egress("report", "--pcap", capture, "--format", "json")
    assert r.returncode == 0, r.stderr
    assert_plain(r.stdout, "report --format json")
    names = {h["name"] for h in json.loads(r.stdout)["hosts"]}
    assert "hide" + ESC_HIDE + ".example" in names and "del\x7fbyte.example" in names


def row(name: str, i: int = 0) -> HostRow:
    d = Host(name, first=1_700_000_000.0 + i, last=1_700_000_001.0 + i).to_row()
    d.allowed = False
    d.via, d.resolved, d.ports = ["tls"], ["198.18.0.1"], list(range(1, 2000))
    return d


def test_table_output_grows_with_rows_not_with_names():
    rows = [row(f"{i:04d}" + "n" * 10_000, i) for i in range(1000)]
    text = render(rows, "table")
    assert len(text) < 1000 * 300
    assert all(ln.rstrip().endswith("denied") for ln in text.splitlines()[2:])


# -- the session report ----------------------------------------------------------------------

def test_session_markdown_keeps_wire_data_as_data():
    bad = "evil`` [x](javascript:1)\n\n# injected\n| a | b |" + ESC_HIDE
    rows = [row(s, i) for i, s in enumerate(STRINGS + [bad])]
    hosts = {s: {"connections": 1, "outcomes": {"connected": 1}, "reached": True, "blocked": False,
                 "via": ["tls"], "ports": [443]} for s in STRINGS + [bad]}
    runs = [RunRecord(n, RunSpec(command=["sh", "-c", bad], region=bad), bad, firewall=False,
                      started=1.0, ended=2.0, exit_code=0, hosts=dict(hosts) if n == 1 else {bad: hosts[bad]})
            for n in (1, 2)]
    data = session_data(source=bad, container={"name": bad, "image": bad, "id": "f" * 64}, rows=rows,
                        runs=runs, allowlist=[bad], firewall=None, versions={"egress-tui": "test"})
    md = session_markdown(data)
    assert_plain(md, "the session report")
    assert "\n# injected" not in md
    outside_code = re.sub(r"```.*?```", "", md)
    assert "[x](javascript" not in outside_code and "\\[x\\](javascript" in outside_code
    table = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert len(table) == 2 + len(rows)
    for ln in table:
        assert len(md_cells(ln)) == 6, ln
    assert md_code(bad) in md

"""Which program opened each connection, as every output shows it: the row's fields, the
table, JSON, CSV and Markdown reports, the session report's split of a run into its command
(Claude Code) and the tools it started, and the comments of a learned allowlist.

The lookup itself (``/proc``, as root) is not exercised here: connections of a real capture
get the ``ProcInfo`` it would leave, set by hand, hostile values included.
"""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from egress_tui.cli import demo_capture
from egress_tui.core.allowlist import Allowlist, learned_allowlist
from egress_tui.core.engine import Engine, analyze_file
from egress_tui.core.evidence import session_data, session_markdown
from egress_tui.core.hosts import CHAINS_KEPT, CONNS_KEPT, PROGRAMS_KEPT, Conn, Host, Tunnel
from egress_tui.core.procs import UNKNOWN, ProcInfo, from_dict, in_run, programs_line, run_tag
from egress_tui.core.report import PROCESS_COLUMN, TABLE_COLUMNS, host_rows, render
from egress_tui.core.runs import RunRecord, RunSpec, hosts_during, process_split, programs_comment
from tests.hostile import ESC_HIDE, STRINGS
from tests.strategies import hostile_names
from tests.test_hostile_output import assert_plain, md_cells

TINI = (1, "tini")
CLAUDE = ProcInfo(101, "claude", "/usr/local/bin/node", "claude -p hello", (TINI,), run_tag(1))
BASH = (150, "bash")
CURL = ProcInfo(202, "curl", "/usr/bin/curl", "curl -sS https://example.com", (BASH, (101, "claude"), TINI),
                run_tag(1))
GIT = ProcInfo(303, "git-remote-http", "/usr/lib/git-core/git-remote-https", "git-remote-https origin",
               ((302, "git"), BASH, (101, "claude"), TINI), run_tag(1))
CRON = ProcInfo(44, "cron", "/usr/sbin/cron", "cron -f", (TINI,))   # already running: no run


def conn(i: int, proc: object = None) -> Conn:
    c = Conn(6, bytes([10, 0, 0, 2]), 40000 + i, bytes([198, 18, 0, 1]), 443, 1_700_000_000.0 + i)
    c.established = True
    c.proc = proc
    return c


def host(name: str, procs: list) -> Host:
    h = Host(name)
    for i, p in enumerate(procs):
        h.add_conn(conn(i, p))
    return h


# -- the program's name --------------------------------------------------------------------

@pytest.mark.parametrize("comm, exe, program", [
    ("curl", "/usr/bin/curl", "curl"),
    ("wget", "/bin/busybox", "wget"),                                  # an applet of busybox
    ("claude", "/usr/local/bin/node", "claude"),                       # Claude Code from npm
    ("claude", "/root/.local/share/claude/versions/1.0.58", "claude"),  # the native one, via a symlink
    ("python3", "/usr/bin/python3.11", "python3"),                     # as it was started
    ("git-remote-http", "/usr/lib/git-core/git-remote-https", "git-remote-https"),  # comm cut at 15
    ("", "/usr/bin/env", "env"),
    ("", "", "?"),
])
def test_a_program_is_named_as_it_was_started(comm, exe, program):
    assert ProcInfo(1, comm, exe).program == program


def test_a_process_reads_back_as_it_was_written():
    for value in (CURL, GIT, UNKNOWN, None):
        c = conn(0, value)
        assert from_dict(c.to_dict()["process"]) == value
    assert from_dict({"pid": "x", "parents": ["junk", {"pid": 3}]}) == ProcInfo(0, "", parents=((3, ""),))
    assert in_run("1", 1) and in_run("run 1", 1) and not in_run("", 1) and not in_run("12", 1)


# -- the row ---------------------------------------------------------------------------------

def test_the_row_counts_programs_and_processes_gone_before_the_lookup():
    h = host("api.anthropic.com", [CLAUDE, CLAUDE, CURL, CLAUDE, UNKNOWN, None, UNKNOWN])
    r = h.to_row()
    assert r.processes == {"claude": 3, "curl": 1}       # most connections first
    assert list(r.processes) == ["claude", "curl"]
    assert r.process_unknown == 2                         # the one not looked up counts nowhere
    assert r.process_chains == ["claude ← tini", "curl ← bash ← claude ← tini"]
    assert r.attributed and r.process_text() == "claude +1 ?"
    assert r.programs_text() == "claude:3 curl:1 ?:2"
    assert r.programs_text(1) == "claude:3 +1 ?:2"
    j = r.to_json()
    assert (j["processes"], j["process_unknown"], j["process_chains"]) == (
        {"claude": 3, "curl": 1}, 2, ["claude ← tini", "curl ← bash ← claude ← tini"])


@pytest.mark.parametrize("procs, cell", [
    ([None, None], "-"),          # not looked up (a capture file; attribution off)
    ([UNKNOWN], "?"),
    ([CURL, UNKNOWN], "curl ?"),
    ([GIT, CURL, GIT], "git-remote-https +1"),
])
def test_the_process_cell(procs, cell):
    r = host("x.example", procs).to_row()
    assert r.process_text() == cell
    assert r.attributed == (cell != "-")


def test_a_row_without_processes_keeps_its_json_but_for_empty_fields():
    """Captures have no processes: the row's JSON gains three empty fields and nothing else."""
    j = host("x.example", [None]).to_row().to_json()
    assert (j["processes"], j["process_unknown"], j["process_chains"]) == ({}, 0, [])
    before = ("name via addresses resolved ports connections outcomes blocked first_seen last_seen dns_queries "
              "dns_rcodes cnames alpn tls_versions ech ja4 suspicious_dns suspicious proxies targets fronting hidden "
              "bypass tunnels is_proxy allowed verdict").split()  # the row's JSON before issue 11
    assert list(j) == before[:-1] + ["processes", "process_unknown", "process_chains", "verdict"]


def test_counts_survive_connections_no_longer_kept_in_full():
    h = host("busy.example", [CURL] * (CONNS_KEPT + 30) + [UNKNOWN] * 5)
    r = h.to_row()
    assert r.connections == CONNS_KEPT + 35
    assert r.processes == {"curl": CONNS_KEPT + 30} and r.process_unknown == 5


def test_a_container_naming_a_thousand_programs_keeps_the_row_small():
    h = host("many.example", [ProcInfo(i, f"p{i:04d}", parents=((i + 5000, f"q{i}"),)) for i in range(1000)])
    r = h.to_row()
    assert len(r.processes) == PROGRAMS_KEPT and len(r.process_chains) == CHAINS_KEPT
    assert len(h.old_programs) <= PROGRAMS_KEPT


def test_each_tunnel_names_its_process():
    h = Host("api.anthropic.com")
    c = conn(0, CURL)
    c.tunnel = Tunnel("connect")
    c.tunnel.target, c.tunnel.port, c.tunnel.targets = "api.anthropic.com", 443, [("api.anthropic.com", 443)]
    h.add_conn(c)
    c2 = conn(1)
    c2.tunnel = Tunnel("connect")
    h.add_conn(c2)
    t1, t2 = h.to_row().tunnels
    assert t1["process"]["comm"] == "curl" and t1["process"]["parents"][0] == {"pid": 150, "comm": "bash"}
    assert t2["process"] is None


# -- every output --------------------------------------------------------------------------------

@pytest.fixture
def engine() -> Engine:
    """The demo capture, its connections attributed as a live lookup would have."""
    eng = analyze_file(demo_capture())
    for i, c in enumerate(eng.hosts["api.anthropic.com"].conns):
        c.proc = CLAUDE if i % 4 else UNKNOWN
    for c in eng.hosts["example.com"].conns:
        c.proc = CURL
    for c in eng.hosts["www.example.org"].conns:
        c.proc = GIT
    for c in eng.hosts["ssh.example.net"].conns:
        c.proc = CRON
    return eng


def test_json_report_carries_the_programs(engine):
    data = json.loads(render(host_rows(engine), "json"))
    hosts = {h["name"]: h for h in data["hosts"]}
    api = hosts["api.anthropic.com"]
    assert api["processes"] == {"claude": 21} and api["process_unknown"] == 7
    assert api["process_chains"] == ["claude ← tini"]
    assert hosts["example.com"]["processes"] == {"curl": 2}
    assert hosts["quic.example.net"]["processes"] == {} and hosts["quic.example.net"]["process_unknown"] == 0


def test_csv_report_has_processes_columns(engine):
    rows = {r["name"]: r for r in csv.DictReader(io.StringIO(render(host_rows(engine), "csv")))}
    assert rows["api.anthropic.com"]["processes"] == "claude:21"
    assert rows["api.anthropic.com"]["process_unknown"] == "7"
    assert rows["www.example.org"]["processes"] == "git-remote-https:1"
    assert rows["quic.example.net"]["processes"] == "" and rows["quic.example.net"]["process_unknown"] == "0"


def test_table_and_markdown_get_a_process_column_after_the_host(engine):
    lines = render(host_rows(engine), "table").splitlines()
    assert lines[0].split() == ["host", PROCESS_COLUMN] + TABLE_COLUMNS[1:]
    cells = {ln.split()[0]: ln.split()[1:4] for ln in lines[2:]}
    assert cells["api.anthropic.com"][:2] == ["claude", "?"]
    assert cells["example.com"][0] == "curl" and cells["quic.example.net"][0] == "-"
    md = [ln for ln in render(host_rows(engine), "markdown").splitlines() if ln.startswith("|")]
    assert [c.strip() for c in md_cells(md[0])] == ["host", PROCESS_COLUMN] + TABLE_COLUMNS[1:]
    by_name = {md_cells(ln)[0].strip(): [c.strip() for c in md_cells(ln)] for ln in md[2:]}
    assert by_name["api.anthropic.com"][1] == "claude:21 ?:7"
    assert by_name["quic.example.net"][1] == "-"


def test_reports_of_a_capture_without_processes_are_unchanged():
    rows = host_rows(analyze_file(demo_capture()))
    assert render(rows, "table").splitlines()[0].split() == TABLE_COLUMNS
    header = [ln for ln in render(rows, "markdown").splitlines() if ln.startswith("|")][0]
    assert [c.strip() for c in md_cells(header)] == TABLE_COLUMNS


# -- runs: Claude Code itself, and the tools it started ---------------------------------------

def run_record(engine: Engine, command: list[str] | None = None, number: int = 1) -> RunRecord:
    rec = RunRecord(number, RunSpec(command=command or ["claude", "-p", "hello"]), "box", firewall=False,
                    started=engine.first_ts, ended=engine.last_ts, exit_code=0)
    rec.hosts = hosts_during(engine, engine.first_ts, engine.last_ts)
    return rec


def test_a_run_splits_into_claude_code_and_the_tools_it_started(engine):
    rec = run_record(engine)
    api = rec.hosts["api.anthropic.com"]
    assert api["processes"] == [{"program": "claude", "chain": "claude ← tini", "run": "1", "connections": 21}]
    assert api["process_unknown"] == 7
    split = process_split(rec)
    assert split == {"command": "Claude Code", "itself": ["api.anthropic.com"],
                     "tools": ["example.com", "www.example.org"], "others": ["ssh.example.net"],
                     "unknown": ["api.anthropic.com"]}
    # the same processes, seen from a second run: none of them was started by it
    assert process_split(run_record(engine, number=2))["others"] == [
        "api.anthropic.com", "example.com", "ssh.example.net", "www.example.org"]
    # another command: claude is then a tool of it (or not its own at all)
    assert process_split(run_record(engine, ["bash", "-c", "claude -p hello"]))["tools"][0] == "api.anthropic.com"


def test_the_session_report_names_programs_per_host_and_per_run(engine):
    rows = host_rows(engine)
    data = session_data(source="test", container=None, rows=rows, runs=[run_record(engine)], allowlist=[],
                        firewall=None, versions={"egress-tui": "test"})
    assert data["runs"][0]["by_process"]["itself"] == ["api.anthropic.com"]
    assert {h["name"]: h["processes"] for h in data["hosts"]}["example.com"] == {"curl": 2}
    md = session_markdown(data)
    table = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert [c.strip() for c in md_cells(table[0])] == ["host", "programs", "via", "ports", "connections", "outcomes",
                                                        "verdict"]
    assert any(md_cells(ln)[:2] == [" example.com ", " curl:2 "] for ln in table)
    assert "- Claude Code itself: api.anthropic.com\n" in md
    assert "- tools it started: example.com, www.example.org\n" in md
    assert "- processes not started by this run: ssh.example.net\n" in md
    assert "- process unknown (gone before the lookup): api.anthropic.com\n" in md
    assert re.search(r"^- reached: api\.anthropic\.com \(closed:28\) by claude, process unknown \(7\)$", md, re.M)
    assert re.search(r"^- \*\*blocked\*\*: example\.com \(unanswered:2\) by curl$", md, re.M)


def test_a_session_report_without_processes_has_no_programs():
    eng = analyze_file(demo_capture())
    data = session_data(source="test", container=None, rows=host_rows(eng), runs=[run_record(eng)], allowlist=[],
                        firewall=None, versions={})
    md = session_markdown(data)
    assert "programs" not in md and "Which process" not in md and " by " not in md.split("## Runs")[1]


# -- learn --write-allowlist: each entry says which programs needed it -------------------------

def learned(rec: RunRecord) -> Allowlist:
    al, _skipped = learned_allowlist(
        (name, f"reached by {' '.join(rec.spec.command)}{programs_comment(h, rec)}")
        for name, h in rec.hosts.items() if h["connections"])
    return al


def test_learned_entries_name_their_programs(engine):
    text = learned(run_record(engine)).to_text()
    lines = {ln.split()[0]: ln for ln in text.splitlines()[1:]}
    assert lines["api.anthropic.com"].endswith("# reached by claude -p hello; programs: claude, process unknown")
    assert lines["example.com"].endswith("; programs: curl (tool)")
    assert lines["ssh.example.net"].endswith("; programs: cron (not started by this run)")
    assert lines["bedrock-runtime.ap-northeast-1.amazonaws.com"].endswith("# reached by claude -p hello")
    back = Allowlist()
    back.add_text(text)
    assert [e.text() for e in back.entries] == [ln.split()[0] for ln in text.splitlines()[1:]]


# -- hostile values: a process names itself and writes its own command line -------------------

TEN_KB = "\x1b]0;pwned\x07[bold]" + "x" * 10_000


def hostile_engine(values: list[str]) -> tuple[Engine, dict[str, str]]:
    """The demo capture, each value a process's comm, exe, command line, parents and run;
    and the program each host's row must then name."""
    eng = analyze_file(demo_capture())
    hosts = [h for h in eng.host_list() if h.conns]
    expected = {}
    for i, v in enumerate(values):
        p = ProcInfo(1000 + i, v[:15], "/tmp/" + v, v + " --token=" + v, ((1, v), (2, "[/]" + v)), v)
        h = hosts[i % len(hosts)]
        for c in h.conns:
            c.proc = p
        expected[h.name] = p.program
    return eng, expected


def check_outputs(eng: Engine, expected: dict[str, str]) -> None:
    rows = host_rows(eng)
    for fmt in ("table", "markdown", "json"):
        assert_plain(render(rows, fmt), f"report --format {fmt}")
    table = render(rows, "table")
    assert max(len(ln) for ln in table.splitlines()) < 400
    md = [ln for ln in render(rows, "markdown").splitlines() if ln.startswith("|")]
    assert all(len(md_cells(ln)) == len(TABLE_COLUMNS) + 1 for ln in md), md
    out = render(rows, "csv")
    assert_plain(out.replace("\r\n", "\n"), "report --format csv")
    parsed = list(csv.reader(io.StringIO(out)))
    assert all(len(r) == len(parsed[0]) for r in parsed)
    assert all(not cell.startswith(("=", "+", "-", "@", "\t", "\r")) for r in parsed for cell in r)
    # JSON keeps every value exactly, for a machine to read
    got = {h["name"]: h for h in json.loads(render(rows, "json"))["hosts"]}
    for name, program in expected.items():
        assert got[name]["processes"] == {program: got[name]["connections"]}
    rec = RunRecord(1, RunSpec(command=["claude"]), "box", False, eng.first_ts, eng.last_ts, 0)
    rec.hosts = hosts_during(eng, eng.first_ts, eng.last_ts)
    data = session_data(source="t", container=None, rows=rows, runs=[rec], allowlist=[], firewall=None,
                        versions={})
    md = session_markdown(data)
    assert_plain(md, "the session report")
    assert all(len(md_cells(ln)) == 7 for ln in md.splitlines() if ln.startswith("|"))
    assert "\n# " not in md.replace("\n# egress-tui session report", "")
    text = learned(rec).to_text()
    assert_plain(text, "the learned allowlist")
    for ln in text.splitlines()[1:]:
        assert len(ln) < 600 and ln.count("  # ") >= 1, ln
    back = Allowlist()
    back.add_text(text)  # still a valid allowlist: every comment stayed on its line
    assert len(back.entries) == len(text.splitlines()) - 1


def test_hostile_process_values_in_every_output():
    values = STRINGS + [TEN_KB, "wget\u202egpj.exe", "claude\n127.0.0.1", ESC_HIDE + "curl"]
    check_outputs(*hostile_engine(values))


@settings(max_examples=25, deadline=None)
@given(st.lists(hostile_names(), min_size=1, max_size=6))
def test_hostile_names_as_processes(values):
    check_outputs(*hostile_engine(values))


def test_programs_line_is_one_bounded_line():
    line = programs_line(["a\nb", TEN_KB, "[bold]", "\u202e", "x", "y", "z"], most=5, width=32)
    assert_plain(line, "programs_line")
    assert "\n" not in line and len(line) < 5 * 40 and line.endswith(" +2 more")


@pytest.mark.asyncio
async def test_the_runs_view_splits_a_run_by_process(engine):
    from egress_tui.ui.app import AppConfig, create_app
    from egress_tui.ui.screens.runs import RunsScreen
    from tests.pilot import screen_text
    app = create_app(AppConfig(start_capture=False))
    async with app.run_test(size=(150, 50)) as pilot:
        app.push_screen(RunsScreen([run_record(engine)]))
        await pilot.pause()
        text = screen_text(app)
        assert "Claude Code itself: api.anthropic.com" in text
        assert "tools it started: example.com, www.example.org" in text
        assert "processes not started by this run: ssh.example.net" in text
        assert any("api.anthropic.com" in ln and "by claude" in ln for ln in text.splitlines())

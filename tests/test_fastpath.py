"""The fast paths against the reference: the engine reading every packet with ``feed_at``.

``Engine._fast_path`` (Python) and ``tui/wire/_speedups.pyx`` (compiled, built by pip) count
packets without decoding them, walk a capture's records and parse DNS in C. Whatever they do,
the engine must end up exactly where ``feed_at`` on every packet leaves it: the same rows,
connections, counters and flow table, on the benchmark's own kind of capture, on hostile
captures, and packet for packet on mutated frames. The pure-Python engine is the fallback
when nothing was compiled (EGRESS_TUI_PURE=1 forces it): it is run here too.
"""

from __future__ import annotations

import importlib.util
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.dnsbomb import compression_bomb
from tests.hostile import hostile_capture
from tests.pcapgen import LINK_WRAP, Conversation, dns_message, ip, python_client_hello, tcp, udp, write_pcapng
from tests.strategies import mutate
from egress_tui.core import engine as engine_mod
from egress_tui.core.engine import FLOW_LINGER, Engine
from egress_tui.core.report import host_rows, render, render_chunks
from egress_tui.core.safetext import json_text
from egress_tui.wire import dns
from egress_tui.wire.pcapfile import CaptureInput, read_frames, read_pcap_blocks, read_records

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "tui" / "data" / "demo.pcap"
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
# The fast paths under test: the Python one always, the compiled one where it was built
# (test_the_compiled_fast_path_is_built says whether it must be).
FAST = [False, True] if engine_mod.COMPILED else [False]


def _gen_pcap():
    spec = importlib.util.spec_from_file_location("bench_gen_pcap", ROOT / "bench" / "gen_pcap.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def bench_capture(tmp_path_factory) -> Path:
    """make bench's handshake-heavy capture, a twentieth of the size, two epochs of the same
    hosts: split ClientHellos with their anomalies, DNS, QUIC, plain HTTP, bulk."""
    path = tmp_path_factory.mktemp("bench") / "handshake.pcap"
    truth = _gen_pcap().generate_handshake(path, seed=3, epochs=2, scale=0.05)
    assert truth["split_hellos"] > 0 and truth["quic"] and truth["packets_by_kind"]["bulk"] > 0
    return path


def reference(frames) -> Engine:
    eng = Engine(compiled=False)
    for linktype, ts, frame in frames:
        eng.feed(linktype, ts, frame)
    return eng


def file_frames(path: Path) -> list:
    with CaptureInput(str(path)) as src:
        return list(read_frames(src.stream))


def fed(path: Path, compiled: bool, how: str) -> Engine:
    """The capture through one of the engine's loops, as report and the live capture use them."""
    eng = Engine(compiled=compiled)
    with CaptureInput(str(path)) as src:
        if how == "blocks":
            assert src.kind == "pcap"
            eng.feed_pcap_blocks(read_pcap_blocks(src.stream))
        elif how == "records":
            eng.feed_records(read_records(src.stream))
        else:
            eng.feed_frames(read_frames(src.stream))
    return eng


def state(eng: Engine) -> dict:
    """Everything a user, a report or the screen can get out of an engine."""
    return {
        "rows": [r.to_json() for r in host_rows(eng)],
        "conns": [c.to_dict() for h in eng.host_list() for c in h.conns],
        "counters": (eng.packets, eng.ignored, eng.evicted, eng.swept, eng.suspicious_count, eng.first_ts,
                     eng.last_ts, sorted(eng.linktypes)),
        "flows": [(k, c.pkts_out, c.pkts_in, c.bytes_out, c.bytes_in, c.last) for k, c in eng.flows.items()],
        "dirty": sorted(eng.take_dirty()),
        "suspicious": list(eng.suspicious),
        "resolvers": dict(eng.resolvers),
        "shared": eng.shared_addresses(),
    }


# -- whole captures -----------------------------------------------------------------------------

@pytest.mark.parametrize("compiled", FAST, ids=lambda c: "compiled" if c else "python")
@pytest.mark.parametrize("how", ["blocks", "records", "frames"])
def test_bench_capture_same_as_reference(bench_capture, compiled, how):
    want = state(reference(file_frames(bench_capture)))
    assert want["rows"] and want["counters"][0] == 2 * 10_000  # two epochs of 10,000 packets
    assert state(fed(bench_capture, compiled, how)) == want


@pytest.mark.parametrize("compiled", FAST, ids=lambda c: "compiled" if c else "python")
def test_hostile_and_demo_captures_same_as_reference(tmp_path, compiled):
    hostile = Path(hostile_capture(str(tmp_path / "hostile.pcap")))
    for path in (hostile, DEMO):
        want = state(reference(file_frames(path)))
        assert state(fed(path, compiled, "blocks")) == want
        ng = tmp_path / "same.pcapng"
        write_pcapng(str(ng), [(ts, fr) for _lt, ts, fr in file_frames(path)], linktype=file_frames(path)[0][0])
        assert state(fed(ng, compiled, "records")) == state(reference(file_frames(ng)))


def test_the_compiled_fast_path_is_built():
    """pip builds it (make deps installs gcc, libc6-dev and python3-dev); a test run without it
    would test only the fallback. EGRESS_TUI_PURE=1 is the one way to run without it."""
    if os.environ.get("EGRESS_TUI_PURE"):
        assert not engine_mod.COMPILED and not Engine().compiled
        return
    assert engine_mod.COMPILED, "tui/wire/_speedups.pyx is not built: pip install -e . needs gcc and python3-dev"
    assert Engine().compiled and not Engine(compiled=False).compiled


def test_report_is_the_same_without_the_compiled_path(bench_capture):
    """The fallback, end to end: `egress-tui report` with EGRESS_TUI_PURE=1 writes the same report."""
    def report(pure: bool) -> dict:
        env = dict(os.environ)
        env.pop("EGRESS_TUI_PURE", None)
        if pure:
            env["EGRESS_TUI_PURE"] = "1"
        out = subprocess.run([sys.executable, "-m", "egress_tui", "report", "--pcap", str(bench_capture),
                              "--format", "json"], capture_output=True, env=env, check=True, timeout=300).stdout
        doc = json.loads(out)
        del doc["generated"]
        return doc

    pure, default = report(True), report(False)
    assert len(pure["hosts"]) > 50 and pure == default


# -- packet for packet on hostile frames ---------------------------------------------------------

def conversation(link: int, v6: bool) -> list[tuple[int, float, bytes]]:
    """Every path the fast path takes or refuses: DNS, a TLS connection that goes fast (data,
    pure ACKs), a UDP flow with short- and long-header datagrams, and the closing FIN."""
    c, s, r = ("fd00::10", "fd00::64:10", "fd00::2") if v6 else ("198.18.0.10", "198.18.64.10", "198.18.0.2")
    conv = Conversation(link=link)
    conv.dns(c, r, "api.example.test", [("api.example.test", 28 if v6 else 1, s)], qtype=28 if v6 else 1)
    seq, ack = conv.tcp_open(c, 40001, s, 443)
    hello = python_client_hello("api.example.test", ["h2"])
    conv.segments(c, 40001, s, 443, seq, ack, hello, [100])
    seq += len(hello)
    for i in range(3):
        conv.emit(ip(s, c, 6, tcp(443, 40001, "PA", ack, seq, bytes([0x17]) * 300)))
        ack += 300
        conv.emit(ip(c, s, 6, tcp(40001, 443, "A", seq, ack)))
        conv.emit(ip(c, s, 6, tcp(40001, 443, "PA", seq, ack, b"\x17\x03\x03" + bytes(40))))
        seq += 43
    conv.emit(ip(c, s, 17, udp(50000, 443, bytes([0x41]) + bytes(60))))
    conv.emit(ip(s, c, 17, udp(443, 50000, bytes([0x42]) + bytes(40))))
    conv.emit(ip(c, s, 17, udp(50000, 443, bytes([0x43]) + bytes(60))))
    conv.emit(ip(s, c, 17, udp(443, 50000, bytes([0x44]) + bytes(40))))
    conv.emit(ip(c, s, 17, udp(50000, 443, bytes([0xC3, 0, 0, 0, 1]) + bytes(60))))
    conv.emit(ip(c, s, 6, tcp(40001, 443, "FA", seq, ack)))
    conv.emit(ip(s, c, 6, tcp(443, 40001, "FA", ack, seq + 1)))
    conv.emit(ip(c, s, 6, tcp(40001, 443, "A", seq + 1, ack + 1)))
    return [(link, ts, fr) for ts, fr in conv.frames]


@st.composite
def hostile_frames(draw):
    link = draw(st.sampled_from(sorted(LINK_WRAP)))
    frames = conversation(link, draw(st.booleans()))
    n = len(frames)
    out = [bytearray(fr) for _lt, _ts, fr in frames]
    # bytes changed where the fast path reads (link, IP and transport headers, the first payload byte)
    for i, off, val in draw(st.lists(st.tuples(st.integers(6, n - 1), st.integers(0, 90), st.integers(0, 255)),
                                     max_size=8)):
        if off < len(out[i]):
            out[i][off] = val
    for i, keep in draw(st.lists(st.tuples(st.integers(6, n - 1), st.integers(0, 120)), max_size=3)):
        del out[i][keep:]  # cut short, as a snap length or a hostile length field makes it
    repeats = draw(st.lists(st.integers(0, n - 1), max_size=4))
    order = list(range(n)) + repeats
    return [(link, frames[i][1] + 0.5 * (k >= n), bytes(out[i])) for k, i in enumerate(order)]


@FUZZ
@given(hostile_frames())
def test_hostile_frames_packet_for_packet(frames):
    ref = Engine(compiled=False)
    fast = [Engine(compiled=c) for c in FAST]
    for linktype, ts, frame in frames:
        ref.feed(linktype, ts, frame)
        want = state(ref)
        for eng in fast:
            eng.feed_frames([(linktype, ts, frame)])
            assert state(eng) == want


@pytest.mark.parametrize("compiled", FAST, ids=lambda c: "compiled" if c else "python")
def test_fast_path_refuses_what_it_cannot_count(compiled):
    """Once a connection goes fast, its FIN, a fragment, a VLAN-tagged or IP-optioned copy, a
    truncated one and an ARP frame shaped like it all go to the full decode: counted as the
    reference counts them (or ignored), not as data of the connection."""
    frames = conversation(1, False)
    data = next(fr for _lt, _ts, fr in frames[::-1] if len(fr) > 300)  # a server data segment
    t = frames[-1][1]
    arp = data[:12] + b"\x08\x06" + data[14:]
    vlan = data[:12] + struct.pack("!HH", 0x8100, 7) + data[12:]
    fragment = data[:20] + b"\x20\x00" + data[22:]  # more fragments, offset 0: decoded
    later = data[:20] + b"\x00\x10" + data[22:]  # a non-first fragment: ignored
    short = data[:14 + 20 + 10]
    bad_total = data[:16] + b"\x00\x10" + data[18:]  # IP total length 16: shorter than its header
    extra = [arp, vlan, fragment, later, short, bad_total]
    feed = frames[:-3] + [(1, t + i, fr) for i, fr in enumerate(extra)]
    eng = Engine(compiled=compiled)
    eng.feed_frames(feed)
    assert state(eng) == state(reference(feed))


# -- the flow table: live flows only --------------------------------------------------------------

def short_connections(n: int, gap: float, cport=lambda i: 20000 + i) -> list[tuple[int, float, bytes]]:
    conv = Conversation(t0=1_700_000_000.0)
    frames = []
    for i in range(n):
        conv.t = 1_700_000_000.0 + i * gap
        seq, ack = conv.tcp_open("198.18.0.10", cport(i), "198.18.64.10", 443)
        conv.emit(ip("198.18.0.10", "198.18.64.10", 6, tcp(cport(i), 443, "PA", seq, ack, b"GET / HTTP/1.1\r\n")))
        conv.emit(ip("198.18.64.10", "198.18.0.10", 6, tcp(443, cport(i), "FA", ack, seq + 16)))
        conv.emit(ip("198.18.0.10", "198.18.64.10", 6, tcp(cport(i), 443, "FA", seq + 16, ack + 1)))
    frames += [(1, ts, fr) for ts, fr in conv.frames]
    return frames


@pytest.mark.parametrize("compiled", FAST, ids=lambda c: "compiled" if c else "python")
def test_flow_table_holds_live_flows(monkeypatch, compiled):
    """300 connections one after another over 50 minutes: every one is in the report, but the
    flow table only ever holds the last few minutes' (memory follows the live flows, not the
    length of the capture)."""
    monkeypatch.setattr(engine_mod, "SWEEP_MIN", 16)
    frames = short_connections(300, 10.0)
    eng = Engine(compiled=compiled)
    sizes = []
    for k in range(0, len(frames), 40):
        eng.feed_frames(frames[k:k + 40])
        sizes.append(len(eng.flows))
    rows = {r.name: r for r in host_rows(eng)}
    assert rows["198.18.64.10"].connections == 300 and rows["198.18.64.10"].outcomes == {"closed": 300}
    assert eng.swept > 250 and max(sizes) <= 2 * (FLOW_LINGER / 10 + 16)
    assert state(eng) == state(reference(frames))


def test_reused_port_after_time_wait_is_a_new_connection(monkeypatch):
    """The same ports again right after a close are the same connection (a late retransmission
    or the last ACK); after FLOW_LINGER they are a new one, once the table was swept."""
    monkeypatch.setattr(engine_mod, "SWEEP_MIN", 4)
    soon = short_connections(2, 1.0, cport=lambda i: 33333)
    eng = reference(soon)
    assert eng.hosts["198.18.64.10"].connections == 1
    fillers = short_connections(8, FLOW_LINGER / 4)  # other flows, so the table fills and is swept
    late = short_connections(1, 1.0, cport=lambda i: 33333)
    end = fillers[-1][1]
    frames = soon + fillers + [(lt, ts - late[0][1] + end + 1, fr) for lt, ts, fr in late]
    eng = reference(frames)
    assert eng.hosts["198.18.64.10"].connections == 1 + 8 + 1


# -- the compiled DNS parser ----------------------------------------------------------------------

VALID_DNS = dns_message(7, "api.anthropic.com", 1, [("api.anthropic.com", 5, "edge.cdn.test"),
                                                    ("edge.cdn.test", 1, "198.18.64.7")], True)
# an HTTPS record with a target and v4/v6 hints: type 65, priority 1, target ".", ipv4hint, ipv6hint
HTTPS_RR = (struct.pack("!HHHHHH", 9, 0x8180, 1, 1, 0, 0) + b"\x03www\x07example\x00" + struct.pack("!HH", 65, 1)
            + b"\xc0\x0c" + struct.pack("!HHIH", 65, 1, 60, 2 + 1 + 4 + 8 + 4 + 32) + b"\x00\x01\x00"
            + struct.pack("!HH", 4, 8) + bytes([198, 18, 0, 1, 198, 18, 0, 2])
            + struct.pack("!HH", 6, 32) + bytes(15) + b"\x01" + bytes(15) + b"\x02")


def outcome(parse, data) -> tuple:
    try:
        return ("message", repr(parse(data)))
    except dns.DnsError as e:
        return ("error", str(e))


needs_compiled = pytest.mark.skipif(not engine_mod.COMPILED, reason="the compiled module is not built "
                                    "(test_the_compiled_fast_path_is_built says whether it must be)")


@needs_compiled
@FUZZ
@given(st.one_of(st.binary(max_size=600), mutate(VALID_DNS), mutate(HTTPS_RR)))
def test_compiled_dns_parser_is_the_python_one(data):
    from egress_tui.wire import _speedups
    assert outcome(_speedups.parse_dns, data) == outcome(dns.parse, data)
    assert outcome(_speedups.parse_dns, bytearray(data)) == outcome(dns.parse, bytearray(data))


@needs_compiled
def test_compiled_dns_parser_on_bombs_and_odd_names():
    from egress_tui.wire import _speedups
    cases = [VALID_DNS, HTTPS_RR, compression_bomb(), compression_bomb(backwards=False),
             dns_message(1, b"a.b\\c.\xff\x00\x1b[8m", 1, [], False), dns_message(2, "X" * 63 + ".Y", 28, [], True)]
    for data in cases:
        assert outcome(_speedups.parse_dns, data) == outcome(dns.parse, data)
    assert outcome(dns.parse, HTTPS_RR)[0] == "message" and "198.18.0.2" in outcome(dns.parse, HTTPS_RR)[1]


# -- the report's JSON --------------------------------------------------------------------------

keys = st.one_of(st.text(), st.integers(), st.booleans(), st.none(), st.floats())
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text()),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.tuples(inner, inner),
                            st.dictionaries(keys, inner, max_size=4)),
    max_leaves=30)


@FUZZ
@given(json_values, st.integers(0, 4))
def test_indented_json_is_json_dumps(value, indent):
    assert json_text(value, indent=indent) == json.dumps(value, ensure_ascii=True, indent=indent).replace(
        "\x7f", "\\u007f")


def test_json_of_what_json_cannot_write_fails_as_json_does():
    for bad in ({1, 2}, [object()], {(1, 2): 3}):
        with pytest.raises(TypeError):
            json_text(bad, indent=2)


def test_streamed_json_report_is_the_whole_one(bench_capture):
    eng = Engine()
    with CaptureInput(str(bench_capture)) as src:
        eng.feed_pcap_blocks(read_pcap_blocks(src.stream))
    rows = host_rows(eng)
    meta = {"source": "x\x7f\x1b", "packets": eng.packets}
    whole = json_text(dict(meta, hosts=[r.to_json() for r in rows]), indent=2) + "\n"
    assert "".join(render_chunks(iter(rows), "json", meta)) == whole == render(rows, "json", meta)
    assert render([], "json", meta) == json_text(dict(meta, hosts=[]), indent=2) + "\n"
    assert json.loads(whole)["hosts"][0]["name"] == rows[0].name



def test_folded_connections_leave_the_rows_as_they_were(bench_capture, monkeypatch):
    """Past CONNS_FULL connections, the oldest that are over are folded into their hosts'
    totals: memory stops growing with the capture, and every row says what it said with all
    of them kept (connections, outcomes, addresses, ports, ALPN, TLS versions, JA4)."""
    monkeypatch.setattr(engine_mod, "SWEEP_MIN", 64)
    monkeypatch.setattr(engine_mod, "FLOW_LINGER", 10.0)  # the small capture spans two minutes
    frames = file_frames(bench_capture)
    kept_all = reference(frames)
    monkeypatch.setattr(engine_mod, "CONNS_FULL", 16)
    for compiled in FAST:
        eng = Engine(compiled=compiled)
        eng.feed_frames(frames)
        assert sum(len(h.conns) for h in eng.host_list()) < sum(len(h.conns) for h in kept_all.host_list()) // 2
        got = state(eng)
        assert got["rows"] == state(kept_all)["rows"]
        assert got == state(reference(frames))


def test_analysis_leaves_no_garbage_in_cycles(bench_capture):
    """egress-tui report turns the cyclic collector off while it reads a capture: that is only
    right while reading one makes no reference cycles that become garbage."""
    import gc
    gc.collect()
    gc.disable()
    try:
        eng = Engine()
        with CaptureInput(str(bench_capture)) as src:
            eng.feed_pcap_blocks(read_pcap_blocks(src.stream))
        "".join(render_chunks(host_rows(eng), "json", {}))
        assert gc.collect() < 100  # a few from imports done on the way, not one per packet or host
    finally:
        gc.enable()

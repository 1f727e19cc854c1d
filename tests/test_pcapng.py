"""Saved evidence is pcapng: several interfaces and link types in one file, nanosecond
timestamps, read back by our reader and by tshark; the recorder names each interface after
where its frames came from (the firewall's NFLOG drops included) and never drops silently."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from collections import Counter

import pytest

from egress_tui.live.capture import (ARPHRD_ETHER, ARPHRD_LOOPBACK, ARPHRD_NONE, LINKTYPE_SLL2, PACKET_HOST,
                                     PACKET_OUTGOING, sll2_frame)
from egress_tui.live.nflog import NFLOG_INTERFACE
from egress_tui.live.recorder import PcapngRecorder
from egress_tui.wire.pcapfile import open_capture, pcapng_interfaces, read_frames
from egress_tui.wire.pcapng import PcapngWriter, to_ns
from egress_tui.core.engine import Engine
from tests.pcapgen import ether, ip, sll, tcp, udp

T0 = 1_790_000_000


def tshark_fields(path, *fields: str, display_filter: str = "") -> list[list[str]]:
    if not shutil.which("tshark"):
        if os.environ.get("CI"):
            pytest.fail("tshark is missing: make deps installs it")
        pytest.skip("tshark is not installed (make deps)")
    argv = ["tshark", "-n", "-r", str(path), "-T", "fields"] + [a for f in fields for a in ("-e", f)]
    if display_filter:
        argv += ["-Y", display_filter]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [line.split("\t") for line in r.stdout.splitlines()]


def interfaces(path) -> list:
    with open(path, "rb") as f:
        return pcapng_interfaces(f)


def syn(src: str, dst: str, sport: int = 40000, dport: int = 443) -> bytes:
    return ip(src, dst, 6, tcp(sport, dport, "S"))


# -- the writer and the reader ------------------------------------------------------------

def test_round_trip_several_interfaces_link_types_and_nanoseconds(tmp_path):
    frames = [  # (interface, ns, frame)
        (0, T0 * 10**9 + 123_456_789, ether(syn("10.0.0.2", "203.0.113.7"))),
        (1, T0 * 10**9 + 123_456_790, sll2_frame(syn("10.0.0.2", "198.51.100.9"), 0, ARPHRD_NONE, PACKET_OUTGOING)),
        (2, T0 * 10**9 + 999_999_999, sll(ip("10.0.0.2", "10.0.0.1", 17, udp(5353, 53, b"q")))),
        (3, T0 * 10**9 + 1, ip("2001:db8::2", "2001:db8::9", 6, tcp(40001, 443, "S"))),
        (0, (T0 + 1) * 10**9, ether(syn("10.0.0.2", "203.0.113.8"))),
    ]
    path = tmp_path / "w.pcapng"
    with open(path, "wb") as f:
        w = PcapngWriter(f, application="test", comment="round trip")
        assert [w.add_interface(1, "eth0", "the container's eth0"),
                w.add_interface(276, "nflog (dropped)", "never on the wire"),
                w.add_interface(113, "any"),
                w.add_interface(101, "raw")] == [0, 1, 2, 3]
        for iface, ns, data in frames:
            w.write_packet(iface, ns, data)
    assert w.bytes_written == path.stat().st_size

    ifaces = interfaces(path)
    assert [(i.linktype, i.name, i.description, i.tick) for i in ifaces] == [
        (1, "eth0", "the container's eth0", 1e-9), (276, "nflog (dropped)", "never on the wire", 1e-9),
        (113, "any", "", 1e-9), (101, "raw", "", 1e-9)]
    back = list(open_capture(str(path)))
    assert [(lt, data) for lt, _ts, data in back] == [(ifaces[i].linktype, d) for i, _ns, d in frames]
    for (_lt, ts, _d), (_i, ns, _f) in zip(back, frames):
        assert abs(to_ns(ts) - ns) < 500  # a float holds about a quarter of a microsecond here

    rows = tshark_fields(path, "frame.interface_name", "frame.time_epoch", "ip.dst", "ipv6.dst", "tcp.flags.syn")
    assert rows == [
        ["eth0", f"{T0}.123456789", "203.0.113.7", "", "1"],
        ["nflog (dropped)", f"{T0}.123456790", "198.51.100.9", "", "1"],
        ["any", f"{T0}.999999999", "10.0.0.1", "", ""],
        ["raw", f"{T0}.000000001", "", "2001:db8::9", "1"],
        ["eth0", f"{T0 + 1}.000000000", "203.0.113.8", "", "1"],
    ]


def test_the_reader_still_refuses_what_is_not_pcapng():
    from egress_tui.wire.pcapfile import PcapError
    with pytest.raises(PcapError):
        pcapng_interfaces(io.BytesIO(b"\xd4\xc3\xb2\xa1" + b"\0" * 20))


def test_to_ns_keeps_whole_seconds_exact():
    assert to_ns(T0 + 0.5) == T0 * 10**9 + 500_000_000
    assert to_ns(0.000000001) == 1
    assert to_ns(float(T0)) % 10**9 == 0


# -- the recorder -------------------------------------------------------------------------

class NetnsLike:
    """What the recorder reads from a live source: its ifindex map and a description."""

    description = "netns of lab client (eth0, lo), BPF in kernel"
    filter_used = "udp port 53"

    def __init__(self):
        self.interface_names = {2: "eth0", 1: "lo", 0: NFLOG_INTERFACE}


def firewall_session() -> list:
    """A DNS lookup on lo, a connection that gets through on eth0, and a blocked one whose
    SYNs only NFLOG saw (as NetnsSource wraps them)."""
    t = float(T0)
    return [
        (LINKTYPE_SLL2, t + 0.01, sll2_frame(ether(ip("127.0.0.1", "127.0.0.11", 17, udp(40000, 53, b"q"))),
                                             1, ARPHRD_LOOPBACK, PACKET_HOST)),
        (LINKTYPE_SLL2, t + 0.02, sll2_frame(ether(syn("172.30.0.5", "172.30.0.9")), 2, ARPHRD_ETHER,
                                             PACKET_OUTGOING)),
        (LINKTYPE_SLL2, t + 0.03, sll2_frame(syn("172.30.0.5", "203.0.113.66", 40002), 0, ARPHRD_NONE,
                                             PACKET_OUTGOING)),
        (LINKTYPE_SLL2, t + 1.03, sll2_frame(syn("172.30.0.5", "203.0.113.66", 40002), 0, ARPHRD_NONE,
                                             PACKET_OUTGOING)),
        (LINKTYPE_SLL2, t + 1.04, sll2_frame(ether(ip("172.30.0.9", "172.30.0.5", 6, tcp(443, 40001, "SA"))),
                                             2, ARPHRD_ETHER, PACKET_HOST)),
    ]


def test_blocked_syns_sit_on_the_nflog_interface_next_to_the_rest(tmp_path):
    path = tmp_path / "fw.pcapng"
    rec = PcapngRecorder(str(path), source=NetnsLike())
    frames = firewall_session()
    rec.add(frames[:3])
    rec.add(frames[3:])
    rec.close()
    assert rec.counts() == {"lo": 1, "eth0": 2, NFLOG_INTERFACE: 2}
    assert rec.not_written == 0 and not rec.truncated
    assert rec.summary()["packets"] == rec.counts()
    assert rec.describe() == f"5 packets (lo 1, eth0 2, {NFLOG_INTERFACE} 2)"

    rows = tshark_fields(path, "frame.interface_name", "ip.dst", "tcp.flags.syn", "tcp.flags.ack")
    assert rows == [["lo", "127.0.0.11", "", ""], ["eth0", "172.30.0.9", "1", "0"],
                    [NFLOG_INTERFACE, "203.0.113.66", "1", "0"], [NFLOG_INTERFACE, "203.0.113.66", "1", "0"],
                    ["eth0", "172.30.0.5", "1", "1"]]
    assert Counter(r[0] for r in rows) == rec.counts()
    ifaces = {i.name: i for i in interfaces(path)}
    assert "dropped" in ifaces[NFLOG_INTERFACE].description and "NFLOG" in ifaces[NFLOG_INTERFACE].description
    assert ifaces["eth0"].description == f"eth0 in {NetnsLike.description}"
    # the engine reads the saved file as it read the live frames: the blocked attempt is there
    eng = Engine()
    with open(path, "rb") as f:
        eng.feed_frames(read_frames(f))
    assert eng.packets == 5
    assert eng.hosts["203.0.113.66"].to_row().outcomes == {"unanswered": 1}


def test_the_file_is_whole_while_it_grows(tmp_path):
    # the TUI's export copies the recording while the capture goes on
    path = tmp_path / "live.pcapng"
    rec = PcapngRecorder(str(path), source=NetnsLike())
    rec.add(firewall_session()[:3])
    rec.flush()
    copy = tmp_path / "copy.pcapng"
    shutil.copyfile(path, copy)
    assert len(list(open_capture(str(copy)))) == 3
    assert [r[0] for r in tshark_fields(copy, "frame.interface_name")] == ["lo", "eth0", NFLOG_INTERFACE]
    rec.close()


def test_past_the_limit_frames_are_counted_not_hidden(tmp_path):
    path = tmp_path / "small.pcapng"
    rec = PcapngRecorder(str(path), max_bytes=600, source=NetnsLike())
    frames = firewall_session()
    rec.add(frames)
    rec.add(frames)
    rec.close()
    written = sum(rec.counts().values())
    assert rec.truncated and 0 < written < 10
    assert rec.not_written == 10 - written
    s = rec.summary()
    assert s["not_written"] == rec.not_written and s["limit_bytes"] == 600
    assert f"{rec.not_written} not written: the file reached its limit of 600 bytes" in rec.describe()
    # the file still reads, and says what it lacks per interface
    rows = tshark_fields(path, "frame.interface_name")
    assert Counter(r[0] for r in rows) == {k: v for k, v in rec.counts().items() if v}
    assert b"packets not written: the file reached its limit of 600 bytes" in path.read_bytes()  # its statistics


def test_a_write_error_is_reported_and_the_capture_goes_on(tmp_path):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    rec = PcapngRecorder("/dev/full", source=NetnsLike())
    big = [(LINKTYPE_SLL2, T0 + i * 0.001, sll2_frame(ether(syn("172.30.0.5", "172.30.0.9")) + b"x" * 1400,
                                                      2, ARPHRD_ETHER, PACKET_OUTGOING)) for i in range(40)]
    rec.add(big)   # no exception: the capture thread must not die of a full disk
    rec.add(big)
    rec.close()
    assert rec.error and "No space left" in rec.error
    assert rec.not_written > 0 and sum(rec.counts().values()) + rec.not_written == 80
    assert rec.summary()["error"] == rec.error
    assert "not written: cannot write /dev/full" in rec.describe()


def test_a_restarted_namespace_maps_its_new_indexes(tmp_path):
    src = NetnsLike()
    path = tmp_path / "restart.pcapng"
    rec = PcapngRecorder(str(path), source=src)
    eth = ether(syn("172.30.0.5", "172.30.0.9"))
    rec.add([(LINKTYPE_SLL2, T0, sll2_frame(eth, 2, ARPHRD_ETHER, PACKET_OUTGOING))])
    # the container restarted: a new namespace where eth0 is index 7 and index 2 is another device
    src.interface_names = {1: "lo", 7: "eth0", 2: "eth1", 0: NFLOG_INTERFACE}
    rec.add([(LINKTYPE_SLL2, T0 + 1, sll2_frame(eth, 7, ARPHRD_ETHER, PACKET_OUTGOING)),
             (LINKTYPE_SLL2, T0 + 2, sll2_frame(eth, 2, ARPHRD_ETHER, PACKET_OUTGOING))])
    rec.close()
    assert rec.counts() == {"eth0": 2, "eth1": 1}
    assert [i.name for i in interfaces(path)] == ["eth0", "eth1"]


def test_a_replay_names_its_interface_after_the_file(tmp_path):
    class Replay:
        description = "replay of cap.pcap at recorded pace"
        capture_name = "cap.pcap"
    path = tmp_path / "r.pcapng"
    rec = PcapngRecorder(str(path), source=Replay())
    pkt = syn("10.0.0.2", "203.0.113.7")
    rec.add([(1, T0, ether(pkt)), (101, T0 + 1, pkt), (LINKTYPE_SLL2, T0 + 2, sll2_frame(pkt, 3, ARPHRD_NONE, 4))])
    rec.close()
    # one file, three link types: each its own interface, told apart by the link type
    assert rec.counts() == {"cap.pcap": 1, "cap.pcap (raw IP)": 1, "cap.pcap (Linux cooked v2 (SLL2))": 1}
    assert [(i.linktype, i.name) for i in interfaces(path)] == [
        (1, "cap.pcap"), (101, "cap.pcap (raw IP)"), (276, "cap.pcap (Linux cooked v2 (SLL2))")]


def test_a_helper_stream_is_the_any_device(tmp_path):
    class Helper:
        description = "helper container in target's namespace"
        capture_name = "any"
        interface_names = {0: NFLOG_INTERFACE}
    path = tmp_path / "h.pcapng"
    rec = PcapngRecorder(str(path), source=Helper())
    pkt = syn("172.30.0.5", "203.0.113.66")
    rec.add([(113, T0, sll(pkt, PACKET_OUTGOING)),
             (LINKTYPE_SLL2, T0 + 1, sll2_frame(pkt, 0, ARPHRD_NONE, PACKET_OUTGOING))])
    rec.close()
    assert rec.counts() == {"any": 1, NFLOG_INTERFACE: 1}
    assert [r[0] for r in tshark_fields(path, "frame.interface_name")] == ["any", NFLOG_INTERFACE]


def test_a_hostile_interface_name_is_data(tmp_path):
    src = NetnsLike()
    src.interface_names = {2: "eth0\x1b[2J\x07"}
    rec = PcapngRecorder(str(tmp_path / "h.pcapng"), source=src)
    rec.add([(LINKTYPE_SLL2, T0, sll2_frame(ether(syn("10.0.0.2", "10.0.0.1")), 2, ARPHRD_ETHER, 0))])
    rec.close()
    assert "\x1b" not in rec.describe() and "\x07" not in rec.describe()
    assert rec.counts() == {"eth0\x1b[2J\x07": 1}  # JSON escapes it; the one-line text shows it escaped


# -- helper mode: tcpdump -i nflog:GROUP next to -i any -----------------------------------

def test_a_linktype_nflog_frame_yields_its_ip_packet():
    import struct
    from egress_tui.live.nflog import linktype_nflog_payload
    pkt = syn("172.30.0.5", "203.0.113.66")

    def tlv(t, v):
        return struct.pack("<HH", 4 + len(v), t) + v + b"\0" * (-len(v) % 4)
    frame = bytes([2, 0]) + struct.pack(">H", 4242) + tlv(10, b"egress-tui-drop\0") + tlv(9, pkt)
    assert linktype_nflog_payload(frame) == pkt
    assert linktype_nflog_payload(frame[:4] + tlv(10, b"x")) is None
    assert linktype_nflog_payload(b"\2\0\0\0\0\0") is None      # a zero-length TLV ends it



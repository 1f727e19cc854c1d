"""The capture reader: formats, byte orders, resolutions, and damaged files."""

from __future__ import annotations

import io
import struct

import pytest

from tests.pcapgen import write_pcap, write_pcapng
from egress_tui.wire.pcapfile import PcapError, open_capture, read_frames

FRAMES = [(1_700_000_000.25, b"\x01" * 60), (1_700_000_001.5, b"\x02" * 1514), (1_700_000_002.0, b"")]


@pytest.mark.parametrize("kind", ["us-le", "us-be", "ns-le", "ng"])
def test_formats_round_trip(tmp_path, kind):
    p = str(tmp_path / "x")
    if kind == "ng":
        write_pcapng(p, FRAMES, 276)
    else:
        write_pcap(p, FRAMES, 276, nanos=kind.startswith("ns"), big_endian=kind.endswith("be"))
    got = list(open_capture(p))
    assert [(lt, fr) for lt, _, fr in got] == [(276, fr) for _, fr in FRAMES]
    assert [round(ts, 3) for _, ts, _ in got] == [round(ts, 3) for ts, _ in FRAMES]


def test_many_frames_cross_block_boundaries(tmp_path):
    frames = [(float(i), bytes([i % 256]) * (i % 1500)) for i in range(3000)]
    p = str(tmp_path / "big.pcap")
    write_pcap(p, frames)
    assert [fr for _, _, fr in open_capture(p)] == [fr for _, fr in frames]


@pytest.mark.parametrize("data,msg", [
    (b"", "empty file"),
    (b"hello world, not a capture", "not a pcap or pcapng"),
    (b"\xd4\xc3\xb2\xa1\x02\x00", "pcap header is shorter"),
])
def test_not_a_capture(data, msg):
    with pytest.raises(PcapError, match=msg):
        list(read_frames(io.BytesIO(data)))


@pytest.mark.parametrize("writer", [write_pcap, write_pcapng])
def test_truncation_is_reported_unless_streaming(tmp_path, writer):
    p = tmp_path / "t"
    writer(str(p), FRAMES)
    data = p.read_bytes()[:-7]
    with pytest.raises(PcapError, match="truncated"):
        list(read_frames(io.BytesIO(data)))
    assert len(list(read_frames(io.BytesIO(data), strict=False))) == 2


def test_corrupt_record_length():
    hdr = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    rec = struct.pack("<IIII", 0, 0, 0x7FFFFFFF, 10)
    with pytest.raises(PcapError, match="corrupt pcap record"):
        list(read_frames(io.BytesIO(hdr + rec)))


def test_missing_file():
    with pytest.raises(PcapError, match="cannot read /nonexistent.pcap: No such file"):
        list(open_capture("/nonexistent.pcap"))

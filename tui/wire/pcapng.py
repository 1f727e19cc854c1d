"""Writing pcapng: one section, one interface per source and link type, nanosecond timestamps.

A classic pcap holds one link type, so frames from the container's interfaces, from the
firewall's NFLOG and from a helper's ``any`` device could not share a file; pcapng
describes each interface in its own block (name, description, link type) and every packet
names its interface, so tshark shows a blocked SYN next to the traffic around it.

Little-endian, one section of unknown length: the file is whole after every block, so a
copy taken while a capture goes on reads cleanly. Reading is pcapfile.read_frames.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

BLOCK_SHB = 0x0A0D0D0A
BLOCK_IDB = 1
BLOCK_ISB = 5
BLOCK_EPB = 6
BYTE_ORDER_MAGIC = 0x1A2B3C4D

OPT_COMMENT = 1
SHB_USERAPPL = 4
IF_NAME = 2
IF_DESCRIPTION = 3
IF_TSRESOL = 9
IF_FILTER = 11
ISB_IFRECV = 4
ISB_USRDELIV = 8

NANOSECONDS = 9  # if_tsresol: 10^-9 s per tick

_u32 = struct.Struct("<I").pack
_epb_head = struct.Struct("<IIIIIII").pack  # type, length, interface, ts high, ts low, caplen, len


def _option(code: int, value: bytes) -> bytes:
    n = len(value)
    return struct.pack("<HH", code, n) + value + b"\0" * (-n % 4)


def _options(opts: list[tuple[int, bytes]]) -> bytes:
    """Options followed by opt_endofopt; nothing at all when there are none."""
    if not opts:
        return b""
    return b"".join(_option(code, value) for code, value in opts) + b"\0\0\0\0"


def _block(btype: int, body: bytes) -> bytes:
    n = 12 + len(body)
    return _u32(btype) + _u32(n) + body + _u32(n)


def _text(s: str) -> bytes:
    return s.encode("utf-8", "replace")


def to_ns(ts: float) -> int:
    """Seconds since the epoch as integer nanoseconds (the fraction rounded on its own, so
    the whole seconds stay exact)."""
    sec = int(ts // 1)
    return sec * 1_000_000_000 + round((ts - sec) * 1e9)


def packet_block_size(caplen: int) -> int:
    """Bytes an Enhanced Packet Block of ``caplen`` bytes takes (for size limits)."""
    return 32 + caplen + (-caplen % 4)


class PcapngWriter:
    """Writes blocks to ``f`` as they come; ``bytes_written`` counts them."""

    def __init__(self, f: BinaryIO, application: str = "", comment: str = ""):
        self.f = f
        self.linktypes: list[int] = []
        self.bytes_written = 0
        opts = []
        if comment:
            opts.append((OPT_COMMENT, _text(comment)))
        if application:
            opts.append((SHB_USERAPPL, _text(application)))
        # byte-order magic, version 1.0, section length -1 (unknown: the file grows as we go)
        self._write(_block(BLOCK_SHB, struct.pack("<IHHq", BYTE_ORDER_MAGIC, 1, 0, -1) + _options(opts)))

    def _write(self, block: bytes) -> int:
        self.f.write(block)
        self.bytes_written += len(block)
        return len(block)

    def add_interface(self, linktype: int, name: str, description: str = "", snaplen: int = 0,
                      capture_filter: str = "") -> int:
        """Describe an interface; returns its id for write_packet. Timestamps are in ns."""
        opts = [(IF_NAME, _text(name))]
        if description:
            opts.append((IF_DESCRIPTION, _text(description)))
        opts.append((IF_TSRESOL, bytes([NANOSECONDS])))
        if capture_filter:
            opts.append((IF_FILTER, b"\0" + _text(capture_filter)))  # 0: a libpcap filter string
        self._write(_block(BLOCK_IDB, struct.pack("<HHI", linktype, 0, snaplen) + _options(opts)))
        self.linktypes.append(linktype)
        return len(self.linktypes) - 1

    def write_packet(self, interface: int, ts_ns: int, data: bytes, orig_len: int | None = None) -> int:
        """One packet on a described interface; returns the bytes written."""
        if not 0 <= interface < len(self.linktypes):
            raise ValueError(f"interface {interface} was never described")
        n = len(data)
        blen = 32 + n + (-n % 4)
        block = b"".join((_epb_head(BLOCK_EPB, blen, interface, ts_ns >> 32 & 0xFFFFFFFF, ts_ns & 0xFFFFFFFF,
                                    n, n if orig_len is None else orig_len),
                          data, b"\0" * (-n % 4), _u32(blen)))
        return self._write(block)

    def write_statistics(self, interface: int, ts_ns: int, received: int, delivered: int, comment: str = "") -> int:
        """An Interface Statistics Block: what the interface saw against what the file holds."""
        opts = [(ISB_IFRECV, struct.pack("<Q", received)), (ISB_USRDELIV, struct.pack("<Q", delivered))]
        if comment:
            opts.insert(0, (OPT_COMMENT, _text(comment)))
        body = struct.pack("<III", interface, ts_ns >> 32 & 0xFFFFFFFF, ts_ns & 0xFFFFFFFF) + _options(opts)
        return self._write(_block(BLOCK_ISB, body))

"""Streaming reader for pcap and pcapng files.

Reads in large blocks and slices frames out with ``struct.unpack_from`` so that a
200,000-packet file costs a few hundred milliseconds and a constant amount of memory.
Yields ``(linktype, timestamp, frame_bytes)``; knows nothing about protocols.
"""

from __future__ import annotations

import os
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

BLOCK = 1 << 20

# read_pcap_blocks' walk over the records, compiled (tui/wire/_speedups.pyx) when it was built
try:
    if os.environ.get("EGRESS_TUI_PURE"):
        raise ImportError("EGRESS_TUI_PURE is set")
    from egress_tui.wire._speedups import pcap_walk as _pcap_walk
except ImportError:
    _pcap_walk = None

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"


class PcapError(Exception):
    """The file is not a capture we can read, or it ends in the middle of a record."""


class _Buffered:
    """A forward-only window over a binary stream, refilled in large blocks."""

    __slots__ = ("read", "buf", "pos", "consumed")

    def __init__(self, f: BinaryIO):
        # read1: return what is there (a live pipe) rather than wait for a whole block
        self.read = getattr(f, "read1", None) or f.read
        self.buf = b""
        self.pos = 0
        self.consumed = 0  # bytes of the file before buf[0]

    def need(self, n: int) -> bool:
        """Make sure n bytes are available from pos; False at a clean end of file."""
        if len(self.buf) - self.pos >= n:
            return True
        rest = self.buf[self.pos:]
        self.consumed += self.pos
        chunks = [rest]
        have = len(rest)
        while have < n:
            chunk = self.read(max(BLOCK, n - have))
            if not chunk:
                break
            chunks.append(chunk)
            have += len(chunk)
        self.buf = b"".join(chunks)
        self.pos = 0
        return have >= n

    @property
    def offset(self) -> int:
        return self.consumed + self.pos


def read_frames(f: BinaryIO, *, strict: bool = True) -> Iterator[tuple[int, float, bytes]]:
    """Yield (linktype, timestamp, frame) for each packet of a pcap or pcapng stream."""
    for linktype, ts, buf, start, end in read_records(f, strict=strict):
        yield linktype, ts, buf[start:end]


def read_records(f: BinaryIO, *, strict: bool = True) -> Iterator[tuple[int, float, bytes, int, int]]:
    """Yield (linktype, timestamp, buffer, start, end): the frame is buffer[start:end].

    The fast path: no per-packet copy. The buffer is only valid until the next item.

    With ``strict`` a record cut short at the end of the file raises PcapError (a file
    that was still being written); without it the partial record is dropped silently,
    which is what a live stream that stops mid-record wants.
    """
    r = _Buffered(f)
    if not r.need(4):
        raise PcapError("empty file: not a pcap or pcapng capture")
    magic = r.buf[r.pos:r.pos + 4]
    if magic in PCAP_MAGICS:
        yield from _read_pcap(r, strict)
    elif magic == PCAPNG_SHB:
        yield from _read_pcapng(r, strict)
    else:
        raise PcapError("not a pcap or pcapng capture (unknown magic %s)" % magic.hex())


def _truncated(r: _Buffered, count: int, strict: bool) -> None:
    if strict:
        raise PcapError(f"capture is truncated: the record after packet {count} ends early "
                        f"(byte {r.offset}); was it still being written?")


def read_pcap_blocks(f: BinaryIO, *, strict: bool = True) -> Iterator[tuple[int, float, str, bytes, int, int]]:
    """Classic pcap only, for the fastest readers: yield (linktype, seconds per tick,
    endian, buffer, start, stop) where buffer[start:stop] holds whole records.

    The caller walks the 16-byte record headers itself, which saves a generator step per
    packet. Raises PcapError if the stream is not a classic pcap (see is_classic_pcap).
    """
    r = _Buffered(f)
    if not r.need(24) or r.buf[:4] not in PCAP_MAGICS:
        raise PcapError("not a classic pcap file")
    endian, scale = PCAP_MAGICS[r.buf[:4]]
    linktype = struct.unpack_from(endian + "I", r.buf, 20)[0] & 0x0FFFFFFF
    r.pos = 24
    caplen_at = struct.Struct(endian + "I").unpack_from
    count = 0
    walk = _pcap_walk
    while True:
        buf, pos = r.buf, r.pos
        n = len(buf)
        start = pos
        if walk is not None and type(buf) is bytes:
            pos, k, bad = walk(buf, pos, endian == "<")  # the loop below, in C
            if bad >= 0:
                raise PcapError(f"corrupt pcap record after packet {count + k}: length {bad}")
            count += k
        while pos + 16 <= n:
            caplen = caplen_at(buf, pos + 8)[0]
            if caplen > 0x4000000:
                raise PcapError(f"corrupt pcap record after packet {count}: length {caplen}")
            if pos + 16 + caplen > n:
                break
            pos += 16 + caplen
            count += 1
        if pos > start:
            r.pos = pos
            yield linktype, scale, endian, buf, start, pos
            continue
        # not one whole record left in the buffer: refill
        want = 16 + caplen_at(buf, pos + 8)[0] if n - pos >= 16 else 16
        if not r.need(want):
            if len(r.buf) - r.pos:
                _truncated(r, count, strict)
            return


def _read_pcap(r: _Buffered, strict: bool) -> Iterator[tuple[int, float, bytes, int, int]]:
    if not r.need(24):
        raise PcapError("capture is truncated: pcap header is shorter than 24 bytes")
    endian, scale = PCAP_MAGICS[r.buf[r.pos:r.pos + 4]]
    linktype = struct.unpack_from(endian + "I", r.buf, r.pos + 20)[0] & 0x0FFFFFFF
    r.pos += 24
    rec = struct.Struct(endian + "IIII")
    unpack = rec.unpack_from
    count = 0
    while True:
        buf = r.buf
        pos = r.pos
        if len(buf) - pos < 16:
            if not r.need(16):
                if len(r.buf) - r.pos:
                    _truncated(r, count, strict)
                return
            buf, pos = r.buf, r.pos
        sec, frac, caplen, _wirelen = unpack(buf, pos)
        if caplen > 0x4000000:
            raise PcapError(f"corrupt pcap record after packet {count}: length {caplen}")
        end = pos + 16 + caplen
        if end > len(buf):
            if not r.need(16 + caplen):
                _truncated(r, count, strict)
                return
            buf, pos = r.buf, r.pos
            end = pos + 16 + caplen
        r.pos = end
        count += 1
        yield linktype, sec + frac * scale, buf, pos + 16, end


def _read_pcapng(r: _Buffered, strict: bool) -> Iterator[tuple[int, float, bytes, int, int]]:
    endian = "<"
    interfaces: list[tuple[int, float]] = []  # (linktype, seconds per tick)
    count = 0
    while True:
        if not r.need(12):
            if len(r.buf) - r.pos:
                _truncated(r, count, strict)
            return
        buf, pos = r.buf, r.pos
        btype = buf[pos:pos + 4]
        if btype == PCAPNG_SHB:
            bom = buf[pos + 8:pos + 12]
            if bom == b"\x4d\x3c\x2b\x1a":
                endian = "<"
            elif bom == b"\x1a\x2b\x3c\x4d":
                endian = ">"
            else:
                raise PcapError("corrupt pcapng section header (bad byte-order magic)")
            interfaces = []
        btype_n, blen = struct.unpack_from(endian + "II", buf, pos)
        if blen < 12 or blen % 4 or blen > 0x4000000:
            raise PcapError(f"corrupt pcapng block after packet {count}: length {blen}")
        if not r.need(blen):
            _truncated(r, count, strict)
            return
        buf, pos = r.buf, r.pos
        r.pos = pos + blen
        if btype_n == 1:  # Interface Description Block
            linktype = struct.unpack_from(endian + "H", buf, pos + 8)[0]
            interfaces.append((linktype, _if_tsresol(buf, pos, blen, endian)))
        elif btype_n == 6:  # Enhanced Packet Block
            if_id, ts_hi, ts_lo, caplen = struct.unpack_from(endian + "IIII", buf, pos + 8)
            if if_id >= len(interfaces):
                raise PcapError(f"corrupt pcapng: packet {count + 1} names interface {if_id}, "
                                "which was never described")
            if 28 + caplen > blen:
                raise PcapError(f"corrupt pcapng: packet {count + 1} is longer than its block")
            linktype, tick = interfaces[if_id]
            count += 1
            yield linktype, ((ts_hi << 32) | ts_lo) * tick, buf, pos + 28, pos + 28 + caplen
        elif btype_n == 3:  # Simple Packet Block: no timestamp, interface 0
            if not interfaces:
                raise PcapError("corrupt pcapng: packet before any interface description")
            wirelen = struct.unpack_from(endian + "I", buf, pos + 8)[0]
            caplen = min(wirelen, blen - 16)
            count += 1
            yield interfaces[0][0], 0.0, buf, pos + 12, pos + 12 + caplen


def _if_options(buf: bytes, pos: int, blen: int, endian: str) -> dict[int, bytes]:
    """The options of an Interface Description Block (first value of each code)."""
    out: dict[int, bytes] = {}
    opt = pos + 16
    end = pos + blen - 4
    while opt + 4 <= end:
        code, length = struct.unpack_from(endian + "HH", buf, opt)
        if code == 0:
            break
        out.setdefault(code, bytes(buf[opt + 4:min(opt + 4 + length, end)]))
        opt += 4 + ((length + 3) & ~3)
    return out


def _if_tsresol(buf: bytes, pos: int, blen: int, endian: str) -> float:
    """Seconds per timestamp tick from the if_tsresol option (default microseconds)."""
    v = _if_options(buf, pos, blen, endian).get(9)
    if not v:
        return 1e-6
    return 2.0 ** -(v[0] & 0x7F) if v[0] & 0x80 else 10.0 ** -v[0]


@dataclass(frozen=True)
class Interface:
    """An interface a pcapng file describes: what its packets are and where they came from."""

    linktype: int
    name: str
    description: str
    tick: float  # seconds per timestamp unit


def pcapng_interfaces(f: BinaryIO) -> list[Interface]:
    """The interfaces a pcapng stream describes, in order (a packet's interface id indexes
    this list; a new section starts a new list, as the format says, and this returns the last)."""
    r = _Buffered(f)
    if not r.need(4) or r.buf[:4] != PCAPNG_SHB:
        raise PcapError("not a pcapng capture")
    endian = "<"
    out: list[Interface] = []
    while r.need(12):
        buf, pos = r.buf, r.pos
        if buf[pos:pos + 4] == PCAPNG_SHB:
            endian = ">" if buf[pos + 8:pos + 12] == b"\x1a\x2b\x3c\x4d" else "<"
            out = []
        btype, blen = struct.unpack_from(endian + "II", buf, pos)
        if blen < 12 or blen % 4 or blen > 0x4000000 or not r.need(blen):
            raise PcapError(f"corrupt pcapng block at byte {r.offset}")
        buf, pos = r.buf, r.pos
        r.pos = pos + blen
        if btype == 1:
            opts = _if_options(buf, pos, blen, endian)
            text = lambda code: opts.get(code, b"").decode("utf-8", "replace")  # noqa: E731
            out.append(Interface(struct.unpack_from(endian + "H", buf, pos + 8)[0], text(2), text(3),
                                 _if_tsresol(buf, pos, blen, endian)))
    return out


def open_capture(path: str, *, strict: bool = True) -> Iterator[tuple[int, float, bytes]]:
    """Read frames from a capture file (or ``-``, a FIFO, ``/dev/fd/N``); raises PcapError
    with a readable message."""
    with CaptureInput(path) as src:
        yield from read_frames(src.stream, strict=strict)


def open_records(path: str, *, strict: bool = True) -> Iterator[tuple[int, float, bytes, int, int]]:
    """Like open_capture, yielding read_records' zero-copy (buffer, start, end) items."""
    with CaptureInput(path) as src:
        yield from read_records(src.stream, strict=strict)


class CaptureInput:
    """A capture opened exactly once: a regular file, ``-`` (stdin), a FIFO or ``<(cmd)``
    (``/dev/fd/N``). The format (``kind``: "pcap" or "pcapng", either byte order) comes from
    the first bytes of that same stream, and ``stream`` hands those bytes back to the reader:
    a pipe cannot be opened twice or rewound.

    Raises PcapError in one line when it cannot be read or is not a capture.
    """

    def __init__(self, path: str, stdin: BinaryIO | None = None):
        self.path = path
        self.name = "stdin" if path == "-" else path
        if path == "-":
            f, self._owned = (stdin or sys.stdin.buffer), False
        else:
            f, self._owned = _open(path), True
        try:
            head = _read_exactly(f, 4)
        except OSError as e:
            self.close(f)
            raise PcapError(f"cannot read {self.name}: {e.strerror}") from None
        if head in PCAP_MAGICS:
            self.kind = "pcap"
        elif head == PCAPNG_SHB:
            self.kind = "pcapng"
        else:
            self.close(f)
            empty = " (it is empty)" if not head else ""
            raise PcapError(f"{self.name} is not a pcap or pcapng capture{empty}")
        self._file = f
        self.stream = _Prefixed(head, f)

    def close(self, f: BinaryIO | None = None) -> None:
        f = f or getattr(self, "_file", None)
        if f is not None and self._owned:
            f.close()

    def __enter__(self) -> CaptureInput:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Prefixed:
    """A binary stream with bytes already read from it put back in front."""

    def __init__(self, head: bytes, f: BinaryIO):
        self.head = head
        self.f = f
        self._read1 = getattr(f, "read1", None) or f.read

    def read1(self, n: int = -1) -> bytes:
        if self.head:
            out, self.head = (self.head, b"") if n < 0 else (self.head[:n], self.head[n:])
            return out
        return self._read1(n)

    def read(self, n: int = -1) -> bytes:
        head, self.head = (self.head, b"") if n < 0 else (self.head[:n], self.head[n:])
        rest = self.f.read(-1 if n < 0 else n - len(head)) if n < 0 or n > len(head) else b""
        return head + (rest or b"")


def _read_exactly(f: BinaryIO, n: int) -> bytes:
    """Up to n bytes, fewer only at the end of the stream (a pipe may deliver them piecemeal)."""
    out = b""
    while len(out) < n:
        chunk = f.read(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def _open(path: str) -> BinaryIO:
    try:
        return open(path, "rb")
    except OSError as e:
        raise PcapError(f"cannot read {path}: {e.strerror}") from None

"""The saved capture: every frame a source yields, in a pcapng file, bounded in size.

One interface per link type and origin, named after where the frames came from, so the
evidence is whole: the container's ``eth0`` and ``lo``, the firewall's drops (read through
NFLOG, they never touch an interface: ``nflog (dropped by the egress-tui firewall)``), a
helper's ``any`` device, or the replayed file. Frames stay ``(linktype, ts, bytes)``; a
Linux cooked v2 frame carries its interface index, which the source maps to a name
(``source.interface_names``); other frames take ``source.capture_name``.

Nothing is dropped silently: past ``max_bytes`` (or after a write error) frames are counted
as not written, per interface, and closing the file records the counts in it too.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from egress_tui import __version__
from egress_tui.core.safetext import safe_text
from egress_tui.live.capture import LINKTYPE_SLL2, Frame
from egress_tui.live.nflog import GROUP, NFLOG_INTERFACE
from egress_tui.wire.packet import LINKTYPE_NAMES
from egress_tui.wire.pcapng import PcapngWriter, packet_block_size, to_ns

NO_NAMES: dict[int, str] = {}


@dataclass
class _Interface:
    linktype: int
    name: str
    description: str
    capture_filter: str
    id: int | None = None   # the pcapng interface id, once described in the file
    written: int = 0
    not_written: int = 0


class PcapngRecorder:
    """Appends frames to ``path`` (called by the capture thread; readers take its lock)."""

    def __init__(self, path: str, max_bytes: int = 512 << 20, source: object = None):
        self.path = path
        self.max_bytes = max_bytes
        self.source = source
        self.truncated = False          # frames came after the file reached max_bytes
        self.error: str | None = None   # writing failed; the capture goes on without the file
        self._f = open(path, "wb")
        what = getattr(source, "description", "")
        self._w = PcapngWriter(self._f, application=f"egress-tui {__version__}",
                               comment=f"egress-tui capture of {what}" if what else "")
        self._by_name: dict[tuple[int, str], _Interface] = {}
        self._by_key: dict[tuple[int, int], _Interface] = {}  # (linktype, ifindex or -1)
        self._names: object = None       # the source's ifindex map the keys were resolved with
        self._closed = False

    # -- naming ---------------------------------------------------------------------------

    def _lookup(self, key: tuple[int, int]) -> _Interface:
        linktype, ifindex = key
        names = getattr(self.source, "interface_names", None)
        fallback = getattr(self.source, "capture_name", "") or "capture"
        if ifindex >= 0 and names is not None:
            name = names.get(ifindex) or (NFLOG_INTERFACE if ifindex == 0 else f"ifindex {ifindex}")
        else:
            name = fallback
        used = {i.name for i in self._by_name.values() if i.linktype != linktype}
        if name in used:  # one name, two link types (a replayed file that mixes them)
            name = f"{name} ({LINKTYPE_NAMES.get(linktype, f'link type {linktype}')})"
        iface = self._by_name.get((linktype, name))
        if iface is None:
            if name == NFLOG_INTERFACE:
                desc, bpf = (f"packets the egress-tui firewall dropped, copied to NFLOG group {GROUP}: "
                             "they never reached an interface"), ""
            else:
                where = getattr(self.source, "description", "")
                desc = f"{name} in {where}" if where and where != name else name
                bpf = getattr(self.source, "filter_used", "") or ""
            iface = self._by_name[(linktype, name)] = _Interface(linktype, name, desc, bpf)
        self._by_key[key] = iface
        return iface

    # -- writing --------------------------------------------------------------------------

    def add(self, frames: list[Frame]) -> None:
        names = getattr(self.source, "interface_names", None)
        if names is not self._names:
            # the source moved to a new namespace (a container restarted): indexes mean other devices
            self._names = names
            self._by_key = {k: v for k, v in self._by_key.items() if k[1] < 0}
        by_key = self._by_key
        w = self._w
        full = self.truncated or self.error is not None or self._closed
        for lt, ts, data in frames:
            key = (lt, int.from_bytes(data[4:8], "big")) if lt == LINKTYPE_SLL2 and len(data) >= 20 else (lt, -1)
            iface = by_key.get(key) or self._lookup(key)
            if not full and w.bytes_written + packet_block_size(len(data)) > self.max_bytes:
                self.truncated = full = True
            if full:
                iface.not_written += 1
                continue
            try:
                if iface.id is None:
                    iface.id = w.add_interface(lt, iface.name, iface.description, capture_filter=iface.capture_filter)
                w.write_packet(iface.id, to_ns(ts), data)
            except OSError as e:
                self.error = f"cannot write {self.path}: {e.strerror or e}"
                full = True
                iface.not_written += 1
                continue
            iface.written += 1

    def flush(self) -> None:
        if self.error is None and not self._closed:
            try:
                self._f.flush()
            except OSError as e:
                self.error = f"cannot write {self.path}: {e.strerror or e}"

    def close(self) -> None:
        """Record, per interface, what was captured against what the file holds; then close."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.error is None:
                now = to_ns(time.time())
                for iface in self._by_name.values():
                    if iface.id is None:
                        iface.id = self._w.add_interface(iface.linktype, iface.name, iface.description)
                    note = (f"{iface.not_written} packets not written: the file reached its limit of "
                            f"{_size(self.max_bytes)}") if iface.not_written else ""
                    self._w.write_statistics(iface.id, now, iface.written + iface.not_written, iface.written, note)
            self._f.close()
        except OSError as e:
            self.error = self.error or f"cannot write {self.path}: {e.strerror or e}"
            try:
                self._f.close()
            except OSError:
                pass

    # -- what the file holds --------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Packets written, per interface name, in the order the interfaces first appeared."""
        return {i.name: i.written for i in self._by_name.values()}

    @property
    def not_written(self) -> int:
        return sum(i.not_written for i in self._by_name.values())

    def summary(self) -> dict:
        """For reports: where the file is, what it holds per interface, and what it lacks."""
        out = {"path": os.path.abspath(self.path), "packets": self.counts(), "not_written": self.not_written}
        if self.truncated:
            out["limit_bytes"] = self.max_bytes
        if self.error:
            out["error"] = self.error
        return out

    def describe(self) -> str:
        """One line: '12 packets (eth0 9, lo 2, nflog (...) 1)', plus what is missing and why."""
        counts = self.counts()
        total = sum(counts.values())
        parts = ", ".join(f"{safe_text(name, 64)} {n}" for name, n in counts.items())
        line = f"{total} packet{'s' if total != 1 else ''}" + (f" ({parts})" if parts else "")
        if self.not_written:
            why = self.error or f"the file reached its limit of {_size(self.max_bytes)}"
            line += f"; {self.not_written} not written: {why}"
        return line


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 and not n % (1 << 20) else f"{n} bytes"

"""Packets the firewall dropped, read back through NFLOG.

A packet dropped in OUTPUT never reaches the network device, so a packet socket never
sees it: a DROP firewall would hide exactly the connections a user wants to see blocked.
The firewall's last rules copy each packet they drop to netlink group ``GROUP``
(``-j NFLOG``); this module reads that group (raw netlink, no library) and yields the
IP packets, which the engine takes as raw-IP frames.
"""

from __future__ import annotations

import os
import socket
import struct

GROUP = 4242
# what saved captures call the packets read here (pcapng interface name, report counts)
NFLOG_INTERFACE = "nflog (dropped by the egress-tui firewall)"
NETLINK_NETFILTER = 12
NFNL_SUBSYS_ULOG = 4
NFULNL_MSG_PACKET = 0
NFULNL_MSG_CONFIG = 1
NFULA_CFG_CMD = 1
NFULA_CFG_MODE = 2
NFULNL_CFG_CMD_BIND = 1
NFULNL_CFG_CMD_PF_BIND = 3
NFULNL_CFG_CMD_PF_UNBIND = 4
NFULNL_COPY_PACKET = 2
NFULA_TIMESTAMP = 3
NFULA_PAYLOAD = 9
NLM_F_REQUEST = 1
NLM_F_ACK = 4
NLMSG_ERROR = 2
LINKTYPE_RAW = 101


def _attr(atype: int, payload: bytes) -> bytes:
    n = 4 + len(payload)
    return struct.pack("=HH", n, atype) + payload + b"\0" * (-n % 4)


def _config(seq: int, family: int, group: int, attrs: bytes) -> bytes:
    body = struct.pack("=BBH", family, 0, socket.htons(group)) + attrs
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG,
                       NLM_F_REQUEST | NLM_F_ACK, seq, 0) + body


class NflogReader:
    """A bound NFLOG socket for ``group`` in the current thread's network namespace."""

    def __init__(self, group: int = GROUP, copy_range: int = 0xFFFF):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            self.sock.bind((0, 0))
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            seq = 1
            for fam in (socket.AF_INET, socket.AF_INET6):
                # old kernels want the family bound; new ones accept and ignore it
                for cmd in (NFULNL_CFG_CMD_PF_UNBIND, NFULNL_CFG_CMD_PF_BIND):
                    self._send(_config(seq, fam, 0, _attr(NFULA_CFG_CMD, bytes([cmd]))), check=False)
                    seq += 1
            self._send(_config(seq, socket.AF_UNSPEC, group, _attr(NFULA_CFG_CMD, bytes([NFULNL_CFG_CMD_BIND]))))
            self._send(_config(seq + 1, socket.AF_UNSPEC, group,
                               _attr(NFULA_CFG_MODE, struct.pack(">IBB", copy_range, NFULNL_COPY_PACKET, 0))))
        except OSError:
            self.sock.close()
            raise
        self.sock.setblocking(False)

    def _send(self, msg: bytes, check: bool = True) -> None:
        self.sock.send(msg)
        data = self.sock.recv(65536)
        if len(data) >= 20:
            _len, mtype = struct.unpack_from("=IH", data, 0)
            if mtype == NLMSG_ERROR:
                err = struct.unpack_from("=i", data, 16)[0]
                if err and check:
                    raise OSError(-err, f"NFLOG config: {os.strerror(-err)}")

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self) -> list[tuple[int, float, bytes]]:
        """Every packet queued now, as (LINKTYPE_RAW, timestamp, ip packet)."""
        out: list[tuple[int, float, bytes]] = []
        while True:
            try:
                data = self.sock.recv(1 << 17)
            except BlockingIOError:
                return out
            out.extend(parse_messages(data))

    def close(self) -> None:
        self.sock.close()


def parse_messages(data: bytes) -> list[tuple[int, float, bytes]]:
    """NFLOG packet messages in one netlink datagram -> raw IP frames."""
    import time
    out = []
    pos = 0
    while pos + 16 <= len(data):
        mlen, mtype = struct.unpack_from("=IH", data, pos)
        if mlen < 16 or pos + mlen > len(data):
            break
        if mtype == (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET:
            a = pos + 16 + 4  # after nlmsghdr and nfgenmsg
            end = pos + mlen
            payload = None
            ts = None
            while a + 4 <= end:
                alen, atype = struct.unpack_from("=HH", data, a)
                if alen < 4:
                    break
                atype &= 0x7FFF
                val = data[a + 4:a + alen]
                if atype == NFULA_PAYLOAD:
                    payload = bytes(val)
                elif atype == NFULA_TIMESTAMP and len(val) >= 16:
                    sec, usec = struct.unpack(">QQ", val[:16])
                    ts = sec + usec / 1e6
                a += (alen + 3) & ~3
            if payload:
                out.append((LINKTYPE_RAW, ts or time.time(), payload))
        pos += (mlen + 3) & ~3
    return out


LINKTYPE_NFLOG = 239  # what tcpdump -i nflog:GROUP writes


def linktype_nflog_payload(frame: bytes) -> bytes | None:
    """The IP packet inside a LINKTYPE_NFLOG frame (a 4-byte header, then TLVs whose length
    and type are in the capturing host's byte order: little-endian where helpers run)."""
    pos = 4
    while pos + 4 <= len(frame):
        tlen, ttype = struct.unpack_from("<HH", frame, pos)
        if tlen < 4:
            return None
        if ttype & 0x7FFF == NFULA_PAYLOAD:
            return frame[pos + 4:pos + tlen]
        pos += (tlen + 3) & ~3
    return None

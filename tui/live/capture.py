"""Live packet sources and the capture thread that feeds the engine.

A source yields lists of frames ``(linktype, ts, bytes)``; the ``Capturer`` thread owns
the engine, feeds it, and every few hundred milliseconds hands one ``Batch`` (the rows
that changed, plus counters) to a callback. The TUI's callback only posts a message;
the headless CLI's prints. Nothing here imports Textual.

Sources:
- ``ReplaySource``: a capture file at its recorded pace (or N times faster).
- ``NetnsSource``: enter a network namespace (a container's, from its PID) in the
  capture thread and listen on its interfaces with scapy's L2 listen socket and a
  kernel BPF filter, so bulk traffic never reaches Python.

Stopping drains: ``Capturer.stop`` sets the stop event; each source then stops its
producer, yields what was captured before, and ends. The thread feeds all of it.
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from egress_tui.core.engine import Engine
from egress_tui.core.rows import HostRow
from egress_tui.live.nflog import NFLOG_INTERFACE
from egress_tui.wire.pcapfile import CaptureInput, PcapError, open_capture, read_frames

Frame = tuple[int, float, bytes]

CLONE_NEWNET = 0x40000000
SOL_PACKET = 263
PACKET_STATISTICS = 6
SO_TIMESTAMPNS = 35
PACKET_HOST = 0
PACKET_OUTGOING = 4
ARPHRD_ETHER = 1
ARPHRD_LOOPBACK = 772
ARPHRD_NONE = 0xFFFE
LINKTYPE_SLL2 = 276
# Interfaces whose frames start with a 14-byte Ethernet header (a loopback's is all zeros).
ETHERNET_LIKE = frozenset((ARPHRD_ETHER, ARPHRD_LOOPBACK))
_sll2 = struct.Struct("!HHIHBB8s").pack


def sll2_frame(data: bytes, ifindex: int, hatype: int, pkttype: int, hwaddr: bytes = b"") -> bytes:
    """Wrap a captured frame as Linux cooked v2 (LINKTYPE_LINUX_SLL2), which records the
    interface and the direction: the engine uses the direction to tell DNS answers the
    container received from "answers" it sent itself, and a saved capture keeps both."""
    if hatype in ETHERNET_LIKE and len(data) >= 14:
        proto = (data[12] << 8) | data[13]
        payload = data[14:]
        hwaddr = data[6:12]  # the sender's address, as SLL2 records it
    else:
        proto = 0x86DD if data[:1] and data[0] >> 4 == 6 else 0x0800
        payload = data
    return _sll2(proto, 0, ifindex, hatype, pkttype, len(hwaddr[:8]), hwaddr[:8]) + payload


class CaptureError(Exception):
    """A capture cannot start or went away; the message says what to do."""


class Source(Protocol):
    description: str
    kernel_drops: int
    errors: int

    def batches(self, stop: threading.Event) -> Iterator[list[Frame]]:
        """Yield lists of frames until the source ends. Once ``stop`` is set: stop the
        producer, yield what it captured before, and end soon (never block for good)."""
        ...


class Recorder(Protocol):
    """Keeps the frames a capture saw (a pcap file): ``add`` runs under the capture lock."""

    def add(self, frames: list[Frame]) -> None: ...

    def close(self) -> None: ...


# -- BPF ----------------------------------------------------------------------------------

# TCP payload: its length, and where it starts (IPv4: in tcp[]; IPv6 without extension headers,
# as everywhere here: in ip6[], after the 40-byte header)
_PL4 = "(ip[2:2] - ((ip[0] & 0x0f) << 2) - ((tcp[12] & 0xf0) >> 2))"
_AT4 = "((tcp[12] & 0xf0) >> 2)"
_PL6 = "(ip6[4:2] - ((ip6[52] & 0xf0) >> 2))"
_AT6 = "(40 + ((ip6[52] & 0xf0) >> 2))"
_HTTP = "0x48545450"          # "HTTP"
# The longest SOCKS reply: SOCKS5 with a domain name (4 + 1 + 255 + 2 bytes). SOCKS5 method and
# connect replies start with 5, RFC 1929's auth reply with 1, a SOCKS4 reply with 0.
_SOCKS_REPLY_MAX = 262


def capture_filter(own_addresses: list[str]) -> str:
    """A BPF filter that lets through what the engine needs and little else.

    What the container sends, except pure ACKs (its ClientHellos on any port, requests,
    DNS queries); of what it receives, only connection control (SYN/FIN/RST), DNS
    answers, QUIC long-header packets (handshake replies), ICMP errors, and what a
    proxy answers: TCP segments that start an HTTP reply head (a proxy's 200, 403 or
    407 to CONNECT) and short ones that may be a SOCKS reply (first byte 0, 1, 4 or 5,
    at most 262 bytes). A bulk download, most of any capture, stays in the kernel:
    neither its data nor the ACKs the container sends back reach Python.
    """
    v4 = [a for a in own_addresses if ":" not in a]
    v6 = [a for a in own_addresses if ":" in a]
    sent = []
    if v4:
        src = " or ".join(f"src host {a}" for a in v4)
        sent.append(f"(ip and ({src}) and (not tcp or tcp[13] & 0x07 != 0 or "
                    "ip[2:2] - ((ip[0] & 0x0f) << 2) - ((tcp[12] & 0xf0) >> 2) > 0))")
    if v6:
        src = " or ".join(f"src host {a}" for a in v6)
        sent.append(f"(ip6 and ({src}) and (ip6[6] != 6 or ip6[53] & 0x07 != 0 or "
                    "ip6[4:2] - ((ip6[52] & 0xf0) >> 2) > 0))")
    received = [
        # Docker's embedded resolver moves queries to 127.0.0.11 to another port before a
        # capture sees them: without this, only its answers would pass, and an answer whose
        # query was never seen is not believed (the DNS trust model)
        "udp port 53", "tcp port 53", "host 127.0.0.11",
        "(ip and tcp and tcp[13] & 0x07 != 0)",
        "(ip6 and ip6[6] == 6 and ip6[53] & 0x07 != 0)",
        "(ip and udp and udp[8] & 0x80 != 0)",
        "(ip6 and ip6[6] == 17 and ip6[48] & 0x80 != 0)",
        "icmp", "icmp6",
        # a proxy's answers (see engine._tunnel_server). The payload length is checked before
        # the payload is read: a load past the packet's end would drop the packet outright.
        f"(ip and tcp and {_PL4} >= 4 and tcp[{_AT4}:4] = {_HTTP})",
        f"(ip6 and ip6[6] == 6 and {_PL6} >= 4 and ip6[{_AT6}:4] = {_HTTP})",
        f"(ip and tcp and {_PL4} > 0 and {_PL4} <= {_SOCKS_REPLY_MAX} and tcp[{_AT4}] & 0xfa = 0)",
        f"(ip6 and ip6[6] == 6 and {_PL6} > 0 and {_PL6} <= {_SOCKS_REPLY_MAX} and ip6[{_AT6}] & 0xfa = 0)",
    ]
    return " or ".join(sent + received)


# -- network namespaces -------------------------------------------------------------------

_libc = None


def netns_path(target: int | str) -> str:
    """The namespace file of a target: a PID's ``/proc/PID/ns/net``, or a path as given
    (``/run/netns/NAME``)."""
    return target if isinstance(target, str) else f"/proc/{target}/ns/net"


def setns_net(pid: int | str) -> None:
    """Move the calling thread into the network namespace of process ``pid`` (or of the
    namespace file at a path, given as a str).

    Only this thread moves (setns is per thread): the rest of the process stays in the
    host's namespace. Sockets opened afterwards stay bound to the container's namespace.
    """
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    path = netns_path(pid)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise CaptureError(f"process {pid} is gone (the container stopped?)" if isinstance(pid, int)
                           else f"namespace {path} is gone") from None
    except PermissionError:
        raise CaptureError(f"cannot open {path}: run egress-tui as root, or use a helper container "
                           "(--helper-image)") from None
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            if e == errno.EPERM:
                raise CaptureError("entering the container's network namespace needs root "
                                   "(CAP_SYS_ADMIN); run with sudo or use a helper container")
            raise CaptureError(f"setns into {path} failed: {os.strerror(e)}")
    finally:
        os.close(fd)


def namespace_addresses() -> list[str]:
    """The addresses of the current thread's network namespace (call after setns_net)."""
    import fcntl
    out: list[str] = []
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for _idx, name in socket.if_nameindex():
            try:
                req = struct.pack("256s", name.encode()[:15])
                res = fcntl.ioctl(s.fileno(), 0x8915, req)  # SIOCGIFADDR
                out.append(socket.inet_ntoa(res[20:24]))
            except OSError:
                pass
    finally:
        s.close()
    try:
        with open("/proc/self/task/%d/net/if_inet6" % threading.get_native_id()) as f:
            for line in f:
                h = line.split()[0]
                out.append(socket.inet_ntop(socket.AF_INET6, bytes.fromhex(h)))
    except OSError:
        pass
    return [a for a in out if not a.startswith("127.") and a != "::1"]


def _packet_drops(sock: socket.socket) -> int:
    """Kernel drops since the last call (reading PACKET_STATISTICS resets it)."""
    try:
        raw = sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
    except OSError:
        return 0
    return struct.unpack("II", raw)[1]


class NetnsSource:
    """Listen inside a network namespace, on all of its interfaces (lo included: Docker's
    embedded DNS answers there)."""

    def __init__(self, pid: int | str, label: str = "", interfaces: list[str] | None = None,
                 bpf: str | None = None, resolvers: list[str] | None = None):
        self.pid = pid  # or the path of a namespace file (--netns)
        # the namespace's configured resolvers: only their answers name addresses and feed
        # a firewall (None: infer them from where queries go, and feed no firewall)
        self.resolvers = resolvers
        self.label = label or f"pid {pid}"
        self.interfaces = interfaces
        self.bpf = bpf
        self.description = f"netns of {self.label}"
        self.kernel_drops = 0
        self.errors = 0
        self.packets = 0
        self.ready = threading.Event()   # set once every socket listens (tests wait on it)
        self.filter_used = ""
        # ifindex -> interface name, for the frames' SLL2 headers (the recorder names its
        # interfaces with it); filled in place when the sockets open
        self.interface_names: dict[int, str] = {}

    def batches(self, stop: threading.Event) -> Iterator[list[Frame]]:
        # Must run in the thread that will read: setns moves only this thread.
        setns_net(self.pid)
        import logging
        logging.getLogger("scapy").setLevel(logging.ERROR)  # its warnings would scribble on the screen
        from scapy.arch.linux import L2ListenSocket  # not scapy.all: slow, and sets globals
        names = self.interfaces or [n for _i, n in socket.if_nameindex()]
        own = namespace_addresses()
        # a namespace with no address of its own (--network none: loopback only) cannot tell what
        # it sends from what it receives by address: then everything is read
        bpf = self.bpf if self.bpf is not None else capture_filter(own) if own else ""
        socks = []
        nflog = None
        try:
            for name in names:
                try:
                    s = L2ListenSocket(iface=name, promisc=False, filter=bpf or None)
                except OSError as e:
                    if e.errno == errno.ENODEV:
                        continue  # the interface went away between listing and opening
                    raise CaptureError(f"cannot listen on {name} in {self.label}: {e.strerror}") from None
                except Exception as e:  # scapy raises its own types for filter errors
                    raise CaptureError(f"cannot listen on {name} in {self.label}: {e}") from None
                sock = s.ins
                _ifname, _proto, _pkttype, hatype, _addr = sock.getsockname()
                ifindex = socket.if_nametoindex(name)
                # scapy leaves a small receive buffer: at 20k pkt/s a scheduling hiccup drops
                # frames. FORCE lifts the rmem_max cap (we are root here).
                for opt in (33, socket.SO_RCVBUF):  # SO_RCVBUFFORCE, then the capped one
                    try:
                        sock.setsockopt(socket.SOL_SOCKET, opt, 8 << 20)
                        break
                    except OSError:
                        continue
                # kernel timestamps come with each packet, not through one ioctl per packet
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                sock.setblocking(False)
                socks.append((s, ifindex, hatype))
                self.interface_names[ifindex] = name
            if not socks:
                raise CaptureError(f"no interface to listen on in {self.label}")
            # what a firewall in this namespace drops never reaches an interface: egress-tui's
            # rules copy it to NFLOG, read here (kernels without nfnetlink_log: skipped)
            try:
                from egress_tui.live.nflog import NflogReader
                nflog = NflogReader()
            except OSError:
                nflog = None
            if nflog is not None:
                self.interface_names[0] = NFLOG_INTERFACE
            self.description = f"netns of {self.label} ({', '.join(names)}), BPF in kernel"
            self.filter_used = bpf
            self.ready.set()
            by_fd = {s.ins.fileno(): (s, ifindex, hatype) for s, ifindex, hatype in socks}
            if nflog is not None:
                by_fd[nflog.fileno()] = (nflog, 0, ARPHRD_NONE)
            last_stats = time.monotonic()
            while not stop.is_set():
                try:
                    ready, _, _ = select.select(list(by_fd), [], [], 0.05)
                except (OSError, ValueError):
                    return
                if not ready:
                    yield []  # nothing new: lets the capture thread send what changed on time
                    if time.monotonic() - last_stats > 0.5 and not os.path.exists(netns_path(self.pid)):
                        # the process went, while its namespace may live on (a bind mount, as
                        # Podman's ns:PATH and a pod's): whoever follows the target must hear it
                        return
                    continue
                batch: list[Frame] = []
                if not self._read(ready, by_fd, nflog, batch):
                    return  # the namespace is being torn down
                if batch:
                    self.packets += len(batch)
                    yield batch
                now = time.monotonic()
                if now - last_stats > 0.5:
                    last_stats = now
                    for s, _i, _h in socks:
                        self.kernel_drops += _packet_drops(s.ins)
                    if not os.path.exists(netns_path(self.pid)):
                        return
            # stopped: what the kernel queued before the stop is still the capture's
            yield from self._tail(by_fd, nflog)
        finally:
            for s, _i, _h in socks:
                try:
                    s.close()
                except OSError:
                    pass  # already gone with its namespace
            if nflog is not None:
                nflog.close()

    def _read(self, fds, by_fd: dict, nflog, batch: list[Frame]) -> bool:
        """Read what is queued on the ready sockets; False if the namespace's device is gone."""
        for fd in fds:
            s, ifindex, hatype = by_fd[fd]
            if s is nflog:
                # dropped in OUTPUT: sent by the container, never on the wire
                batch.extend((LINKTYPE_SLL2, ts, sll2_frame(pkt, 0, ARPHRD_NONE, PACKET_OUTGOING))
                             for _lt, ts, pkt in nflog.read())
                continue
            if not self._drain(s.ins, ifindex, hatype, batch):
                return False
        return True

    # the tail is read until the sockets are empty, but never longer than this under a flood
    TAIL_LIMIT = 2.0

    def _tail(self, by_fd: dict, nflog) -> Iterator[list[Frame]]:
        """Everything still queued on the sockets, until they are empty."""
        give_up = time.monotonic() + self.TAIL_LIMIT
        while time.monotonic() < give_up:
            try:
                ready, _, _ = select.select(list(by_fd), [], [], 0)
            except (OSError, ValueError):
                return
            if not ready:
                return
            batch: list[Frame] = []
            alive = self._read(ready, by_fd, nflog, batch)
            if batch:
                self.packets += len(batch)
                yield batch
            if not alive:
                return

    def _drain(self, sock: socket.socket, ifindex: int, hatype: int, batch: list[Frame]) -> bool:
        """Read what is queued on one socket without blocking; False if the device is gone."""
        loopback = hatype == ARPHRD_LOOPBACK
        for _ in range(512):
            try:
                data, anc, _flags, addr = sock.recvmsg(65535, 256)
            except BlockingIOError:
                return True
            except OSError as e:
                if e.errno in (errno.ENETDOWN, errno.ENXIO, errno.ENODEV):
                    return False
                self.errors += 1
                return True
            pkttype = addr[2]
            if loopback and pkttype == PACKET_OUTGOING:
                continue  # loopback shows every packet twice, sent and received: keep one
            ts = 0.0
            for level, kind, value in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
                    sec, nsec = struct.unpack_from("qq", value)
                    ts = sec + nsec * 1e-9
            batch.append((LINKTYPE_SLL2, ts or time.time(), sll2_frame(data, ifindex, hatype, pkttype, addr[4])))
        return True


class ReplaySource:
    """A capture replayed at its recorded pace times ``speed`` (0: as fast as possible).

    ``capture`` is a path, or a CaptureInput already opened (and checked) by the caller: a
    FIFO, ``<(cmd)`` or stdin can be read only once, so whoever checked it hands it on."""

    def __init__(self, capture: str | CaptureInput, speed: float = 1.0):
        self.input = capture if isinstance(capture, CaptureInput) else None
        self.path = capture.path if isinstance(capture, CaptureInput) else capture
        self.speed = speed
        pace = "as fast as possible" if not speed else (f"{speed:g}x" if speed != 1 else "recorded pace")
        name = "stdin" if self.path == "-" else os.path.basename(self.path)
        self.description = f"replay of {name} at {pace}"
        self.capture_name = name  # what a recording of the replay calls its interface
        self.kernel_drops = 0
        self.errors = 0
        self.done = False

    def _frames(self) -> Iterator[Frame]:
        if self.input is None:
            yield from open_capture(self.path, strict=False)
            return
        with self.input as src:
            yield from read_frames(src.stream, strict=False)

    def batches(self, stop: threading.Event) -> Iterator[list[Frame]]:
        start_wall = time.monotonic()
        start_ts = None
        batch: list[Frame] = []
        last_yield = time.monotonic()
        for frame in self._frames():
            if stop.is_set():
                return
            ts = frame[1]
            if start_ts is None:
                start_ts = ts
            if self.speed:
                due = start_wall + (ts - start_ts) / self.speed
                delay = due - time.monotonic()
                if delay > 0:
                    if batch:
                        yield batch
                        batch = []
                    if stop.wait(min(delay, 5.0)):
                        return
                    # long silences in a recording are shortened to 5 s
                    if delay > 5.0:
                        start_wall -= delay - 5.0
            batch.append(frame)
            if len(batch) >= 2048 or time.monotonic() - last_yield > 0.05:
                yield batch
                batch = []
                last_yield = time.monotonic()
        if batch:
            yield batch
        self.done = True


# -- the capture thread -------------------------------------------------------------------

@dataclass
class Batch:
    """What changed since the last batch: the UI applies it in one go."""

    rows: list[HostRow] = field(default_factory=list)     # the hosts that changed
    packets: int = 0                                       # packets seen in total
    rate: float = 0.0                                      # packets per second lately
    kernel_drops: int = 0
    errors: int = 0
    status: str = ""                                       # e.g. "container stopped"
    shared: dict[str, set[str]] = field(default_factory=dict)  # address -> names (shared CDN)
    ended: bool = False
    cleared: bool = False
    # the connections of the host the screen shows (Capturer.watch), when they changed or
    # were asked for: the screen never reads the engine while the capture thread owns it
    watched: str | None = None
    watched_conns: list[dict] = field(default_factory=list)


class Capturer(threading.Thread):
    """Owns the engine; reads a source and hands a Batch to ``on_batch`` a few times a second.

    ``on_batch`` runs in this thread: it must only hand the batch over (post a message,
    put it on a queue). Readers elsewhere take ``lock`` before touching ``engine``.
    """

    def __init__(self, source: Source, on_batch: Callable[[Batch], None], engine: Engine | None = None,
                 interval: float = 0.1, record: Recorder | None = None):
        super().__init__(name="egress-capture", daemon=True)
        self.source = source
        self.on_batch = on_batch
        self.engine = engine or Engine()
        self.interval = interval
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.status = ""
        self.error: str | None = None
        self.frames: list[Frame] | None = None
        self.record = record
        self._rate_window: list[tuple[float, int]] = []
        self._cleared = False
        self._resolvers = None
        self._watch: str | None = None       # see watch()
        self._watch_sent: str | None = None
        # called, under the lock, with every engine clear() makes (what its owner told the
        # first one, e.g. the proxy settings, holds for the next)
        self.on_new_engine: Callable[[Engine], None] | None = None
        # the process attribution (live/procs.py), see attribute()
        self.attributor = None

    def attribute(self, attributor) -> None:
        """Look up the process behind each new flow with ``attributor`` (an Attributor, started
        by its owner): the engine hands it every new flow, and this thread sets the answers
        on the connections, in its own loop. Call before start()."""
        self.attributor = attributor
        self.engine.on_new_flow = attributor.request

    def stop(self) -> None:
        """Ask the source to stop; the thread goes on feeding what it yields until it ends
        (join to wait for that: the tail of the capture is still coming)."""
        self.stop_event.set()

    def clear(self) -> None:
        """Forget every host; capture goes on."""
        with self.lock:
            old = self.engine
            self.engine = Engine(old.max_flows, resolvers=old.trusted_resolvers)
            self.engine.on_dns_answer = old.on_dns_answer
            self.engine.on_dns_withdraw = old.on_dns_withdraw
            self.engine.on_new_flow = old.on_new_flow
            if self.on_new_engine is not None:
                self.on_new_engine(self.engine)
            self._cleared = True

    def run(self) -> None:
        last = time.monotonic()
        attributor = self.attributor
        try:
            for frames in self.source.batches(self.stop_event):
                if not frames:
                    if attributor is not None and attributor.pending:
                        with self.lock:
                            attributor.apply(self.engine)
                    if time.monotonic() - last >= self.interval:
                        last = time.monotonic()
                        self._emit()
                    continue
                with self.lock:
                    # a live source knows the container's resolvers (they change on restart)
                    resolvers = getattr(self.source, "resolvers", None)
                    if resolvers is not self._resolvers:
                        self._resolvers = resolvers
                        self.engine.set_resolvers(resolvers)
                    # one call a batch: packets of flows with nothing more to tell are only
                    # counted (in C when the fast path is built), the rest decoded
                    self.engine.feed_frames(frames)
                    if self.record is not None:
                        self.record.add(frames)
                    if attributor is not None and attributor.pending:
                        attributor.apply(self.engine)
                now = time.monotonic()
                if now - last >= self.interval:
                    last = now
                    self._emit()
        except (CaptureError, PcapError) as e:
            self.error = str(e)
        except Exception as e:  # a capture thread must report, never die silently
            self.error = f"capture failed: {type(e).__name__}: {e}"
        if attributor is not None:
            # the lookups of the last flows: asked for, their answers coming in now
            attributor.wait_idle(1.0)
            with self.lock:
                attributor.apply(self.engine)
        self._emit(ended=True)

    def watch(self, name: str | None) -> None:
        """Ask for the connections of ``name`` in the next batch, and in every batch in which
        the host changes (any thread; the capture thread answers within ``interval``)."""
        if name != self._watch:
            self._watch = name
            self._watch_sent = None

    def _emit(self, ended: bool = False) -> None:
        watched, watched_conns = None, []
        with self.lock:
            eng = self.engine
            names = eng.take_dirty()
            # in first-seen order: the table appends new rows, so its default order holds
            rows = sorted((eng.row(eng.hosts[n]) for n in names), key=HostRow.sort_key)
            packets = eng.packets
            want = self._watch
            if want is not None and (want in names or want != self._watch_sent):
                h = eng.hosts.get(want)
                watched, watched_conns = want, [c.to_dict() for c in h.conns] if h else []
                self._watch_sent = want
            shared = eng.shared_addresses() if rows or watched else None
            cleared, self._cleared = self._cleared, False
        now = time.monotonic()
        win = self._rate_window
        win.append((now, packets))
        while len(win) > 2 and now - win[0][0] > 2.0:
            win.pop(0)
        rate = (win[-1][1] - win[0][1]) / (win[-1][0] - win[0][0]) if len(win) > 1 and win[-1][0] > win[0][0] else 0.0
        self.on_batch(Batch(rows=rows, packets=packets, rate=0.0 if ended else max(rate, 0.0),
                            kernel_drops=getattr(self.source, "kernel_drops", 0),
                            errors=getattr(self.source, "errors", 0),
                            status=self.error or self.status, ended=ended, cleared=cleared,
                            shared=shared if shared is not None else {},
                            watched=watched, watched_conns=watched_conns))

"""The processes of a network namespace and the sockets they hold, read from ``/proc``.

This module is the part of process attribution (``live/procs.py``) that reads ``/proc``, and
it is written to run in two places, so it imports nothing but the standard library:

- on the host, as root (the netns method): ``/proc`` shows every PID of the host, and the
  container's processes are those whose ``ns/net`` is its init's;
- inside the helper's agent (``live/procs_agent.py``, the helper method): a helper container
  that shares the target's PID and network namespaces reads its own ``/proc``, which is the
  container's, and answers the host over its standard streams.

The lookup, in three steps:

1. The socket. The kernel looks it up by the flow's addresses and ports in the container's
   namespace (sock_diag netlink, a socket opened there: a hash lookup, microseconds), and says
   its inode. Where that socket cannot be had, the tables ``/proc/<init>/net/{tcp,tcp6,udp,udp6}``
   (the sockets of init's namespace) are searched instead: the same answer, but reading them
   walks the kernel's whole hash table (about 6 ms here for TCP, more on a busy host). No socket
   (or inode 0: closed, in TIME_WAIT): it is gone (``GONE``), never a guess.
2. Its holder. Every process whose ``ns/net`` is the container's is a member; the first whose
   ``/proc/<pid>/fd/*`` links to ``socket:[inode]`` holds it. Each scan remembers every socket
   it passes (inode -> pid), and /proc is listed again for new members on a miss.
3. The process. comm, exe, the command line and the environment (for the caller to mask the
   command line with: ``core/secrets``), and its parents up to the container's init; a parent
   outside the container's network or PID namespace (``docker exec``'s shim, the host) ends
   the chain.

Everything read from /proc was written by the container (a process names itself and writes
its own command line): lengths are capped, bytes that are not UTF-8 are replaced, nothing is
trusted. A process is read through a descriptor of its /proc directory, which stays bound to
that process: if it exits meanwhile, the reads fail rather than read its PID's next owner.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

PROTO_TCP, PROTO_UDP = 6, 17
COMM_MAX = 16              # the kernel keeps 15 bytes; a longer one was not written by it
CMDLINE_MAX = 4096         # bytes of /proc/PID/cmdline read (and characters kept once masked)
EXE_MAX = 4096
ENVIRON_MAX = 65536        # bytes of /proc/PID/environ read, for the secrets to mask
PARENTS_MAX = 32
FDS_MAX = 65536            # descriptors of one process scanned at most (a hostile one may open many)
NET_TABLE_MAX = 64 << 20   # bytes of one /proc/PID/net/* table read at most
LIST_GAP = 0.005           # seconds: /proc is listed again at most this often (several misses at once)
INODES_KEPT = 65536        # inode -> holder remembered
SAME_SOCKET_TTL = 2.0      # seconds an answer serves a second lookup of the same socket (A and AAAA)
_V4MAPPED = b"\0" * 10 + b"\xff\xff"
_WILD4, _WILD6 = "0" * 8, "0" * 32
DOCKER_DNS = bytes((127, 0, 0, 11))  # Docker's resolver: its NAT moves port 53 before the capture sees it
NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
INET_DIAG_NOCOOKIE = 0xFFFFFFFF
GONE = "gone"
# lookup()'s answer for a socket that is there but held by no process of the container: Docker's
# embedded resolver forwarding a query from inside the namespace, egress-tui's own lookups
OUTSIDE = "held outside the container"


@dataclass(frozen=True)
class RawProc:
    """A process as /proc shows it, before its command line is masked (by the caller)."""

    pid: int                                  # as the /proc it was read from numbers it
    start: int                                # start time in clock ticks since boot
    comm: str
    exe: str
    argv: tuple[str, ...]
    cut: bool                                 # the command line was longer than CMDLINE_MAX
    env: tuple[tuple[str, str], ...]          # its environment: the secrets to mask with
    parents: tuple[tuple[int, str], ...]      # (pid, comm) up to the container's init
    run: str = ""

    def to_wire(self) -> dict:
        """As JSON for the agent's answer (the host checks every field again)."""
        return {"pid": self.pid, "start": self.start, "comm": self.comm, "exe": self.exe,
                "argv": list(self.argv), "cut": self.cut, "env": [list(kv) for kv in self.env],
                "parents": [list(p) for p in self.parents], "run": self.run}


def _hex(addr: bytes) -> str:
    """An address as /proc/net/* writes it: each 32-bit word in the host's byte order."""
    return "".join("%08X" % w for w in struct.unpack(f"={len(addr) // 4}I", addr))


def _forms(addr: bytes) -> list[tuple[str, str]]:
    """(table suffix, hex) for an address: an IPv4 flow may belong to an IPv6 socket
    (dual stack, the address v4-mapped)."""
    if len(addr) == 4:
        return [("", _hex(addr)), ("6", _hex(_V4MAPPED + addr))]
    return [("6", _hex(addr))]


@dataclass(frozen=True)
class _Stat:
    comm: str
    ppid: int
    start: int     # start time in clock ticks since boot: with the pid, names one process


def _parse_stat(raw: bytes) -> _Stat | None:
    """/proc/PID/stat: ``pid (comm) state ppid ...``; comm may hold spaces and parentheses."""
    try:
        close = raw.rindex(b")")
        comm = raw[raw.index(b"(") + 1:close]
        rest = raw[close + 2:].split()
        return _Stat(_text(comm, COMM_MAX), int(rest[1]), int(rest[19]))
    except (ValueError, IndexError):
        return None


def _text(raw: bytes, limit: int) -> str:
    return raw[:limit].decode("utf-8", "replace")


class SockDiag:
    """One socket's inode by its addresses and ports, asked of the kernel (NETLINK_SOCK_DIAG,
    an exact lookup: no dump) in the network namespace the netlink socket was opened in."""

    def __init__(self, sock):
        self.sock = sock
        self.seq = 0

    @classmethod
    def open_in(cls, pid: int, enter: Callable[[int], None] | None) -> SockDiag:
        """A netlink socket opened in the network namespace of process ``pid``, by a thread
        that enters it with ``enter(pid)`` and ends (a socket stays in the namespace it was
        made in); with ``enter=None``, in this thread's own namespace (the helper's agent,
        which runs in the container's). OSError or the error ``enter`` raises when it cannot
        be (not root)."""
        if enter is None:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG)
            sock.settimeout(1.0)
            return cls(sock)
        box: list = []

        def make() -> None:
            try:
                enter(pid)
                box.append(socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG))
            except Exception as e:  # noqa: BLE001 - handed to the caller
                box.append(e)

        t = threading.Thread(target=make, name="egress-procs-netns", daemon=True)
        t.start()
        t.join()
        got = box[0] if box else OSError("no netlink socket")
        if isinstance(got, Exception):
            raise got
        got.settimeout(1.0)
        return cls(got)

    def close(self) -> None:
        self.sock.close()

    def inode(self, proto: int, local: bytes, lport: int, remote: bytes, rport: int) -> int:
        """The inode of the socket with this local and remote end (0: none, or nobody holds it).
        UDP finds what would receive a datagram from remote to local: a socket connected to
        that remote end, else one bound to the local port. OSError if netlink fails."""
        family = socket.AF_INET if len(local) == 4 else socket.AF_INET6
        if proto == PROTO_UDP:
            # udp_diag takes the ends the other way round ("for historical reasons", says the kernel)
            src, sport, dst, dport = remote, rport, local, lport
        else:
            src, sport, dst, dport = local, lport, remote, rport
        self.seq = (self.seq + 1) & 0xFFFFFFFF
        body = (struct.pack("=BBBBI", family, proto, 0, 0, 0xFFFFFFFF) + struct.pack(">HH", sport, dport)
                + src.ljust(16, b"\0") + dst.ljust(16, b"\0")
                + struct.pack("=III", 0, INET_DIAG_NOCOOKIE, INET_DIAG_NOCOOKIE))
        self.sock.send(struct.pack("=IHHII", 16 + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, self.seq, 0) + body)
        while True:
            data = self.sock.recv(65536)
            pos = 0
            while pos + 16 <= len(data):
                mlen, mtype, _flags, seq = struct.unpack_from("=IHHI", data, pos)
                if mlen < 16:
                    break
                if seq == self.seq:
                    if mtype == NLMSG_ERROR or mlen < 16 + 72:
                        return 0  # ENOENT: no such socket
                    got_sport, got_dport = struct.unpack_from(">HH", data, pos + 20)
                    if proto == PROTO_TCP and (got_sport, got_dport) != (lport, rport):
                        return 0  # a listener on the port, not this connection
                    if proto == PROTO_UDP and (got_sport != lport or got_dport not in (rport, 0)):
                        return 0
                    return struct.unpack_from("=I", data, pos + 16 + 68)[0]
                pos += (mlen + 3) & ~3  # a late answer to an earlier question: skipped


class ProcTable:
    """The processes of one network namespace (the container's, through its init's PID) and
    the sockets they hold, read from ``root`` (``/proc``). Not thread-safe: the Attributor's
    thread owns it."""

    def __init__(self, init_pid: int, root: str = "/proc", sock_diag: bool = True,
                 enter: Callable[[int], None] | None = None):
        self.root = root
        self.enter = enter
        self._same: OrderedDict[int, tuple[float, RawProc]] = OrderedDict()  # inode -> answer
        self.init_pid = 0
        self.netns = self.pidns = ""
        self.use_diag = sock_diag
        self.diag: SockDiag | None = None
        self.set_init(init_pid)

    def set_init(self, pid: int) -> None:
        """Follow the container's init (a restart is a new process and a new namespace):
        everything known of the one before is forgotten."""
        self.init_pid = pid
        if self.diag is not None:
            self.diag.close()
            self.diag = None
        if self.use_diag and pid > 0:
            try:
                self.diag = SockDiag.open_in(pid, self.enter)
            except Exception:  # noqa: BLE001 - not root, or no such process: the /proc tables do
                self.diag = None
        self.netns = self._ns(pid, "net")
        self.pidns = self._ns(pid, "pid")
        self.members: dict[int, None] = {}
        self.hot: deque[int] = deque(maxlen=8)      # the last holders found: looked at first
        self.inode_pid: OrderedDict[int, tuple[int, int]] = OrderedDict()  # inode -> (pid, start)
        self.runs: dict[int, tuple[int, str]] = {}   # pid -> (start, run)
        self.listed = 0.0
        self._same.clear()

    # -- membership --------------------------------------------------------------------------

    def _ns(self, pid: int, kind: str) -> str:
        try:
            return os.readlink(f"{self.root}/{pid}/ns/{kind}")
        except OSError:
            return ""

    def in_container(self, pid: int, pidns: str = "") -> bool:
        """In the container's network namespace, and in ``pidns`` (by default its init's)."""
        net = self._ns(pid, "net")
        return bool(net) and net == self.netns and self._ns(pid, "pid") == (pidns or self.pidns)

    def refresh(self, force: bool = False) -> list[int]:
        """List /proc again (at most every LIST_GAP unless forced): the members that are new."""
        now = time.monotonic()
        if not self.netns or (not force and now - self.listed < LIST_GAP):
            return []
        self.listed = now
        try:
            names = os.listdir(self.root)
        except OSError:
            return []
        members: dict[int, None] = {}
        new = []
        old = self.members
        for name in names:
            if not name.isdigit():
                continue
            pid = int(name)
            if self._ns(pid, "net") == self.netns:
                members[pid] = None
                if pid not in old:
                    new.append(pid)
        self.members = members
        new.sort(reverse=True)  # the newest first, roughly (PIDs wrap)
        return new

    # -- sockets -----------------------------------------------------------------------------

    def _table(self, name: str) -> str:
        try:
            with open(f"{self.root}/{self.init_pid}/net/{name}", "rb") as f:
                return f.read(NET_TABLE_MAX).decode("ascii", "replace")
        except OSError:
            return ""

    def close(self) -> None:
        if self.diag is not None:
            self.diag.close()
            self.diag = None

    def socket_inodes(self, proto: int, client: bytes, cport: int, server: bytes, sport: int) -> set[int]:
        """The inodes of the sockets that may carry this flow (empty: gone): asked of the kernel
        (sock_diag), else searched in the /proc tables."""
        if self.diag is not None:
            try:
                return self._diag_inodes(proto, client, cport, server, sport)
            except OSError:
                self.diag.close()
                self.diag = None  # the namespace went away, or netlink broke: the tables do
        return self.table_inodes(proto, client, cport, server, sport)

    def _diag_inodes(self, proto: int, client: bytes, cport: int, server: bytes, sport: int) -> set[int]:
        ask = self.diag.inode
        tries = [(client, cport, server, sport)]
        if server == DOCKER_DNS:
            tries.append((client, cport, server, 53))  # the socket asked port 53; NAT moved it
        # never the other way round (the server's end, for a connection into the container): on a
        # loopback connection inside the container both ends are there, and a client gone
        # would be answered with its server
        for local, lport, remote, rport in tries:
            inode = ask(proto, local, lport, remote, rport)
            if not inode and len(local) == 4:
                inode = ask(proto, _V4MAPPED + local, lport, _V4MAPPED + remote, rport)  # a dual-stack socket
            if inode:
                return {inode}
        return set()

    def table_inodes(self, proto: int, client: bytes, cport: int, server: bytes, sport: int) -> set[int]:
        """The inodes of the sockets that may carry this flow in the namespace, best match first:
        the exact addresses and ports; else (a DNAT, e.g. Docker's DNS on 127.0.0.11 moved to
        another port) the same local end and remote address; for UDP, else a socket on the local
        port that is not connected (sendto). Empty when the socket is gone."""
        kind = "tcp" if proto == PROTO_TCP else "udp"
        tables = {}
        tiers: list[list[tuple[str, str]]] = [[], [], []]
        for (suffix, lhex), (_s, rhex) in zip(_forms(client), _forms(server)):
            local, remote = f"{lhex}:{cport:04X}", f"{rhex}:{sport:04X}"
            tiers[0].append((suffix, f" {local} {remote} "))
            tiers[1].append((suffix, f" {local} {rhex}:"))
            if proto == PROTO_UDP:
                zero = _WILD4 if suffix == "" else _WILD6
                tiers[2].append((suffix, f" {local} {zero}:0000 "))
                tiers[2].append((suffix, f" {zero}:{cport:04X} {zero}:0000 "))
        for tier in tiers:
            found: set[int] = set()
            for suffix, needle in tier:
                name = kind + suffix
                if name not in tables:
                    tables[name] = self._table(name)
                found |= _inodes(tables[name], needle)
            if found:
                return found
        return set()

    def holder(self, inode: int) -> tuple[int, int] | None:
        """(pid, start) of a member holding the socket, or None when none does (any more)."""
        hit = self.inode_pid.get(inode)
        if hit is not None:
            return hit
        done: set[int] = set()
        new = self.refresh()
        for batch in (new, list(self.hot), list(self.members)):
            for pid in batch:
                if pid not in done:
                    done.add(pid)
                    if self._scan(pid, inode):
                        return self.inode_pid[inode]
        for pid in self.refresh(force=True):  # a process newer than the last listing
            if pid not in done and self._scan(pid, inode):
                return self.inode_pid[inode]
        return None

    def _scan(self, pid: int, want: int) -> bool:
        """Remember every socket process ``pid`` holds; True if it holds ``want``."""
        st = self._stat(pid)
        if st is None:
            self.members.pop(pid, None)
            return False
        try:
            fd_dir = os.open(f"{self.root}/{pid}/fd", os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return False
        hit = False
        try:
            names = os.listdir(fd_dir)
            for name in names[:FDS_MAX]:
                try:
                    link = os.readlink(name, dir_fd=fd_dir)
                except OSError:
                    continue
                if not link.startswith("socket:["):
                    continue
                try:
                    inode = int(link[8:-1])
                except ValueError:
                    continue
                self._remember(inode, pid, st.start)
                hit = hit or inode == want
        except OSError:
            return False
        finally:
            os.close(fd_dir)
        if hit and (not self.hot or self.hot[-1] != pid):
            if pid in self.hot:
                self.hot.remove(pid)
            self.hot.append(pid)
        return hit

    def _remember(self, inode: int, pid: int, start: int) -> None:
        cache = self.inode_pid
        if inode not in cache:
            if len(cache) >= INODES_KEPT:
                cache.popitem(last=False)
            cache[inode] = (pid, start)

    def forget(self, inode: int) -> None:
        self.inode_pid.pop(inode, None)

    # -- the whole lookup ----------------------------------------------------------------------

    def lookup(self, proto: int, client: bytes, cport: int, server: bytes, sport: int) -> RawProc | str:
        """The process holding the flow's socket now; GONE when the socket is gone (or several
        programs match: never a guess); OUTSIDE when no process of the container holds it."""
        inodes = self.socket_inodes(proto, client, cport, server, sport)
        if not inodes:
            return GONE
        now = time.monotonic()
        answers: set[RawProc] = set()
        for inode in inodes:
            got = self._same.get(inode)
            if got is not None and now - got[0] < SAME_SOCKET_TTL:
                answers.add(got[1])
                continue
            info = None
            for _attempt in range(2):
                held = self.holder(inode)
                if held is None:
                    break
                info = self.info(*held)
                if info is not None:
                    break
                self.forget(inode)  # that holder is gone: another process may hold it too
            if info is None:
                if held is None and len(inodes) == 1 and self.socket_inodes(proto, client, cport, server, sport) == inodes:
                    return OUTSIDE  # still there, and nobody in the container holds it
                continue
            self._same[inode] = (now, info)
            if len(self._same) > 256:
                self._same.popitem(last=False)
            answers.add(info)
        if len(answers) != 1:
            return GONE
        return answers.pop()

    def forget_answers(self) -> None:
        """Answers kept for a second lookup of the same socket are dropped (a run is being
        registered: they may be about to get its tag)."""
        self._same.clear()

    # -- processes ---------------------------------------------------------------------------

    def _stat(self, pid: int, dir_fd: int | None = None) -> _Stat | None:
        raw = _read(dir_fd, "stat", 4096) if dir_fd is not None else _read_path(f"{self.root}/{pid}/stat", 4096)
        return _parse_stat(raw) if raw else None

    def info(self, pid: int, start: int) -> RawProc | None:
        """The process, or None if it is gone (or its PID now names another process)."""
        try:
            dfd = os.open(f"{self.root}/{pid}", os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return None
        try:
            st = self._stat(pid, dfd)
            if st is None or st.start != start:
                return None
            comm = _text(_read(dfd, "comm", 64).rstrip(b"\n"), COMM_MAX) or st.comm
            try:
                exe = os.readlink("exe", dir_fd=dfd)[:EXE_MAX]
            except OSError:
                exe = ""
            raw = _read(dfd, "cmdline", CMDLINE_MAX + 1)
            cut = len(raw) > CMDLINE_MAX
            argv = [_text(a, CMDLINE_MAX) for a in raw[:CMDLINE_MAX].split(b"\0")]
            if argv and not argv[-1]:
                argv.pop()
            env = _environ(_read(dfd, "environ", ENVIRON_MAX))
            # read again: a process that exited meanwhile reads as nothing, never as its successor
            if self._stat(pid, dfd) is None:
                return None
        finally:
            os.close(dfd)
        parents, starts = self._parents(st.ppid, start, self._ns(pid, "pid"))
        return RawProc(pid=pid, start=start, comm=comm, exe=exe, argv=tuple(argv), cut=cut,
                       env=tuple(env.items()), parents=parents,
                       run=self._run((pid, start), *zip((p for p, _c in parents), starts)))

    def _parents(self, ppid: int, child_start: int, pidns: str) -> tuple[tuple[tuple[int, str], ...], list[int]]:
        """(pid, comm) of each parent up to the container's init, and their start times. The
        chain stays in the process's own PID namespace (a sidecar sharing the network has its
        own) and in the container's network namespace."""
        out: list[tuple[int, str]] = []
        starts: list[int] = []
        pid, seen = ppid, set()
        while pid > 0 and pid not in seen and len(out) < PARENTS_MAX:
            seen.add(pid)
            if not self.in_container(pid, pidns):
                break  # docker exec's shim, the host, the lab's test runner: not the container's
            st = self._stat(pid)
            if st is None or st.start > child_start:
                break  # gone, or the PID is now another, younger process: not this one's parent
            out.append((pid, st.comm))
            starts.append(st.start)
            if pid == self.init_pid:
                break
            pid, child_start = st.ppid, st.start
        return tuple(out), starts

    def _run(self, *who: tuple[int, int]) -> str:
        runs = self.runs
        if not runs:
            return ""
        for pid, start in who:
            hit = runs.get(pid)
            if hit is not None and hit[0] == start:
                return hit[1]
        return ""

    def register_run(self, pid: int, run: str, in_container: bool = True) -> tuple[int, int] | None:
        """Process ``pid`` is rerun ``run``: numbered as the container sees it (the PID a run's
        wrapper prints) or, with ``in_container=False``, as the host does. (host pid, start),
        or None when no such process is (still) in the container."""
        host_pid = pid if not in_container else self.host_pid(pid)
        if host_pid is None or not self.in_container(host_pid):
            return None
        st = self._stat(host_pid)
        if st is None:
            return None
        self.runs[host_pid] = (st.start, run)
        return host_pid, st.start

    def host_pid(self, ns_pid: int) -> int | None:
        """The host's number of the member the container's PID namespace numbers ``ns_pid``."""
        self.refresh(force=True)
        for pid in sorted(self.members, reverse=True):
            status = _read_path(f"{self.root}/{pid}/status", 8192)
            for line in status.split(b"\n"):
                if line.startswith(b"NSpid:"):
                    nums = line.split()[1:]
                    if nums and nums[-1] == str(ns_pid).encode() and self._ns(pid, "pid") == self.pidns:
                        return pid
                    break
        return None


def _inodes(table: str, needle: str) -> set[int]:
    """Inodes (not 0: a socket nobody holds) of the lines of a /proc/net table holding needle."""
    out: set[int] = set()
    pos = table.find(needle)
    while pos >= 0:
        start = table.rfind("\n", 0, pos) + 1
        end = table.find("\n", pos)
        fields = table[start:end if end >= 0 else len(table)].split()
        if len(fields) > 9 and fields[9].isdigit() and fields[9] != "0":
            out.add(int(fields[9]))
        pos = table.find(needle, pos + 1)
    return out


def _read(dir_fd: int | None, name: str, limit: int) -> bytes:
    """Up to ``limit`` bytes of a file (relative to ``dir_fd`` when given); b"" when unreadable."""
    try:
        fd = os.open(name, os.O_RDONLY, dir_fd=dir_fd)
    except OSError:
        return b""
    try:
        return _read_fd(fd, limit)
    finally:
        os.close(fd)


def _read_path(path: str, limit: int) -> bytes:
    return _read(None, path, limit)


def _read_fd(fd: int, limit: int) -> bytes:
    chunks, size = [], 0
    try:
        while size < limit:
            chunk = os.read(fd, min(65536, limit - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError:
        pass
    return b"".join(chunks)


def _environ(raw: bytes) -> dict[str, str]:
    env = {}
    for item in raw.split(b"\0"):
        k, eq, v = item.partition(b"=")
        if eq and k:
            env[_text(k, 256)] = _text(v, ENVIRON_MAX)
    return env

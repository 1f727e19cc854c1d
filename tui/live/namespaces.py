"""Any process's network namespace as a target: ``--pid PID`` and ``--netns PATH``.

What a bare namespace offers is what /proc gives: the namespace itself
(``/proc/PID/ns/net``, or a bind mount such as ``/run/netns/NAME``), the addresses in it, and
the resolvers of the process's root (``/proc/PID/root/etc/resolv.conf``). No engine stands
behind it, so there is nothing to rerun a command through, and the resolvers come from a file
the process can rewrite: that file is hostile input, read bounded and validated (see
``read_resolv_conf``). Nothing here imports Textual or the Docker SDK.
"""

from __future__ import annotations

import ctypes
import errno
import ipaddress
import os
import re
import stat
from dataclasses import dataclass, field

from egress_tui.core.safetext import safe_text

# glibc reads at most this many nameservers (MAXNS); the rest of the file is never used
MAX_NAMESERVERS = 3
# a resolv.conf is a few hundred bytes; a larger one is cut here, and said
RESOLV_CONF_LIMIT = 64 * 1024
NETNS_DIR = "/run/netns"


class NamespaceError(Exception):
    """The namespace cannot be a target as asked; one line, says what to do."""


@dataclass
class Resolvers:
    """The nameservers a resolv.conf names (validated addresses, in order, at most
    MAX_NAMESERVERS of its own), and what was wrong with it, one escaped line each."""

    servers: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    source: str = ""


def parse_resolv_conf(text: str, source: str = "resolv.conf") -> Resolvers:
    """The nameservers of a resolv.conf from a hostile writer: only ``nameserver ADDRESS``
    lines count, each address must be an IP address a resolver can have (not unspecified,
    multicast or broadcast; a ``%scope`` suffix is dropped), glibc's first three are kept.
    Behind Docker's embedded 127.0.0.11 the servers its ``# ExtServers:`` comment names
    are added (that resolver forwards to them from inside the namespace, so a firewall must
    let them through), under the same rules. Nothing else of the file is ever repeated."""
    out = Resolvers(source=source)
    ext: list[str] = []
    ignored = 0
    for n, line in enumerate(text.splitlines()[:4096], 1):
        parts = line.split()
        if line.startswith("# ExtServers:"):
            ext += re.findall(r"[0-9a-fA-F:.]{3,45}", line[:1024].split(":", 1)[1])[:MAX_NAMESERVERS]
            continue
        if len(parts) < 2 or parts[0] != "nameserver":
            continue
        addr = _resolver_address(parts[1])
        if addr is None:
            out.problems.append(f"{source} line {n}: {safe_text(parts[1], 60)} is not a resolver address")
        elif len(out.servers) >= MAX_NAMESERVERS:
            ignored += 1
        elif addr not in out.servers:
            out.servers.append(addr)
    if ignored:
        out.problems.append(f"{source}: {ignored} nameserver(s) after the first {MAX_NAMESERVERS} ignored "
                            "(as glibc does)")
    if "127.0.0.11" in out.servers:
        for a in ext:
            addr = _resolver_address(a)
            if addr and addr not in out.servers:
                out.servers.append(addr)
    return out


def _resolver_address(text: str) -> str | None:
    try:
        ip = ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return None
    if ip.is_unspecified or ip.is_multicast or str(ip) == "255.255.255.255":
        return None
    return str(ip)


# -- reading a file inside another root, safely ------------------------------------------------

_SYS_OPENAT2 = 437                 # x86_64, arm64 and most others since Linux 5.6
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_IN_ROOT = 0x10
_libc = None


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def _open_in_root(root: str, path: str) -> int:
    """An fd for ``path`` resolved inside ``root`` (``/proc/PID/root``), every symlink on the
    way resolved against that root, never against this host's: a container's
    ``/etc/resolv.conf -> /etc/shadow`` names its own file, not ours. openat2(RESOLVE_IN_ROOT);
    where the kernel has none, a path with any symlink in it is refused (OSError)."""
    global _libc
    dirfd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        how = _OpenHow(os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY, 0,
                       _RESOLVE_IN_ROOT | _RESOLVE_NO_MAGICLINKS)
        fd = _libc.syscall(_SYS_OPENAT2, dirfd, path.lstrip("/").encode(), ctypes.byref(how),
                           ctypes.sizeof(how))
        if fd >= 0:
            return fd
        err = ctypes.get_errno()
        if err not in (errno.ENOSYS, errno.EPERM):  # EPERM: a seccomp filter that does not know it
            raise OSError(err, os.strerror(err), path)
        # no openat2: walk the path ourselves and follow no symlink at all
        cur = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dirfd)
        try:
            parts = [p for p in path.split("/") if p and p != "."]
            for i, part in enumerate(parts):
                last = i == len(parts) - 1
                flags = (os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY if last else os.O_PATH | os.O_DIRECTORY)
                nxt = os.open(part if part != ".." else ".", flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=cur)
                os.close(cur)
                cur = nxt
            return cur
        except BaseException:
            os.close(cur)
            raise
    finally:
        os.close(dirfd)


def read_bounded_regular(fd: int, limit: int) -> tuple[bytes, bool]:
    """(up to ``limit`` bytes of a regular file, whether more was there); OSError for
    anything but a regular file (a FIFO or a device would block or never end)."""
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        raise OSError(errno.EINVAL, "not a regular file")
    chunks, size = [], 0
    while size <= limit:
        chunk = os.read(fd, min(65536, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    data = b"".join(chunks)
    return data[:limit], len(data) > limit


def read_resolv_conf(root: str, path: str = "/etc/resolv.conf", label: str = "") -> Resolvers:
    """The resolvers of the file ``path`` inside the root directory ``root`` (e.g.
    ``/proc/PID/root``), as ``parse_resolv_conf`` reads them. Bounded (RESOLV_CONF_LIMIT),
    regular files only, symlinks resolved inside that root; an unreadable file is a problem
    line, never an error."""
    label = label or f"{root.rstrip('/')}{path}"
    try:
        fd = _open_in_root(root, path)
    except OSError as e:
        return Resolvers(problems=[f"cannot read {label}: {e.strerror or e}"], source=label)
    try:
        data, cut = read_bounded_regular(fd, RESOLV_CONF_LIMIT)
    except OSError as e:
        return Resolvers(problems=[f"cannot read {label}: {e.strerror or e}"], source=label)
    finally:
        os.close(fd)
    res = parse_resolv_conf(data.decode("utf-8", "replace"), label)
    if cut:
        res.problems.append(f"{label} is larger than {RESOLV_CONF_LIMIT // 1024} KiB: only its start was read")
    return res


# -- the target ---------------------------------------------------------------------------------

@dataclass
class NamespaceTarget:
    """A network namespace given by a process (``pid``) or by a path (``path``)."""

    path: str                        # what setns and nsenter open
    name: str                        # for messages: "pid 1234 (sleep)", "netns lab"
    inode: int                       # the namespace's identity (stable across PIDs)
    pid: int = 0                     # 0 for a path
    resolvers: list[str] = field(default_factory=list)
    resolver_source: str = ""
    problems: list[str] = field(default_factory=list)   # about its resolv.conf, one line each
    addresses: list[str] = field(default_factory=list)

    @property
    def state_key(self) -> str:
        """Names the firewall's state file: the namespace, whichever process shows it."""
        return f"netns-{self.inode}"

    def host_refusal(self) -> str:
        """Why no firewall may go here ("" when it may): this host's own namespace."""
        if self.inode == host_netns_inode():
            return (f"{self.name} is in this host's own network namespace: a firewall there would lock down "
                    "this host")
        return ""

    def still_same(self) -> str:
        """"" while the path still shows the same namespace; else why not (the process
        exited, or its PID now belongs to another namespace)."""
        try:
            ino = os.stat(self.path).st_ino
        except OSError:
            return f"{self.name} is gone"
        return "" if ino == self.inode else f"{self.name} is now in another network namespace"


def host_netns_inode() -> int:
    """The inode of this host's network namespace (PID 1's; ours if PID 1's cannot be read)."""
    for path in ("/proc/1/ns/net", "/proc/self/ns/net"):
        try:
            return os.stat(path).st_ino
        except OSError:
            continue
    return -1


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm", "rb") as f:
            return safe_text(f.read(64).decode("utf-8", "replace").strip(), 16)
    except OSError:
        return ""


def _namespace_inode(path: str, what: str) -> int:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        raise NamespaceError(f"{what}: no such namespace") from None
    except PermissionError:
        raise NamespaceError(f"{what}: no permission to open {path}; run egress-tui as root") from None
    except OSError as e:
        raise NamespaceError(f"{what}: cannot open {path} ({e.strerror})") from None


def namespace_of_pid(pid: int) -> NamespaceTarget:
    """The network namespace of process ``pid``, with its root's resolvers."""
    if pid <= 0:
        raise NamespaceError(f"--pid {pid}: give the PID of a process (from ctr task ls, crictl inspect, ps)")
    if not os.path.exists(f"/proc/{pid}"):
        raise NamespaceError(f"--pid {pid}: no such process on this host")
    path = f"/proc/{pid}/ns/net"
    inode = _namespace_inode(path, f"--pid {pid}")
    comm = _comm(pid)
    target = NamespaceTarget(path, f"pid {pid}" + (f" ({comm})" if comm else ""), inode, pid=pid)
    res = read_resolv_conf(f"/proc/{pid}/root", label=f"/proc/{pid}/root/etc/resolv.conf")
    target.resolvers, target.resolver_source, target.problems = res.servers, res.source, res.problems
    return target


_NS_GET_NSTYPE = 0xB703
_CLONE_NEWNET = 0x40000000


def is_network_namespace(path: str) -> bool:
    """True when ``path`` is a network namespace (asked of the kernel: NS_GET_NSTYPE)."""
    import fcntl
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError:
        return False
    try:
        return fcntl.ioctl(fd, _NS_GET_NSTYPE) == _CLONE_NEWNET
    except OSError:
        return False
    finally:
        os.close(fd)


def namespace_at(path: str) -> NamespaceTarget:
    """A namespace by path: ``/run/netns/NAME`` (``ip netns``), a bare NAME meaning that, or
    any bind mount of one. Its resolvers are what ``ip netns exec`` would give a process
    there: ``/etc/netns/NAME/resolv.conf`` when it exists, else this host's."""
    if "/" not in path:
        path = os.path.join(NETNS_DIR, path)
    inode = _namespace_inode(path, f"--netns {safe_text(path, 80)}")
    if not is_network_namespace(path):
        raise NamespaceError(f"--netns {safe_text(path, 80)} is not a network namespace (ip netns add NAME "
                             "makes one under /run/netns)")
    name = os.path.basename(path)
    target = NamespaceTarget(path, f"netns {safe_text(name, 40)}", inode)
    etc = os.path.join("/etc/netns", name)
    if os.path.dirname(path) == NETNS_DIR and os.path.exists(os.path.join(etc, "resolv.conf")):
        res = read_resolv_conf(etc, "/resolv.conf", label=os.path.join(etc, "resolv.conf"))
    else:
        res = read_resolv_conf("/", label="/etc/resolv.conf")
    target.resolvers, target.resolver_source, target.problems = res.servers, res.source, res.problems
    return target

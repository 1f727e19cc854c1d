"""``Lab``: two network namespaces, a veth between them, and nothing else.

    client ns  veth-c 198.18.0.1/24, fd65:6774::1/64
               routes: 198.18.64.0/18 and fd65:6774:0:1::/64 via the server.
               NO default route: anything else is "network unreachable".
               resolv.conf (via /etc/netns/<ns>/) -> 198.18.0.2
    server ns  veth-s 198.18.0.2/24, fd65:6774::2/64
               local routes for 198.18.64.0/18 and fd65:6774:0:1::/64 on lo, so
               a wildcard listener accepts on every lab address;
               drops everything to 198.18.127.0/24 and fd65:6774:0:1:ffff::/80
               (the "blackholed" names), runs ``python -m tests.lab.sink``.

Segmentation offloads (and tx checksum offload) are off on both ends, so a
1.9 KB ClientHello is two real TCP segments with valid checksums on the wire.

Usage::

    with Lab() as lab:
        with lab.capture(path):
            lab.run_client(["curl", "-sk", "https://alpha.test/"])

Every instance gets a unique suffix (pid + random), everything is torn down
on exit even after errors, and namespaces left behind by dead processes are
removed when the next Lab starts.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import json
import os
import re
import secrets
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from . import dnsd

PROJECT_ROOT = Path(__file__).resolve().parents[2]
NS_PREFIX = "egl"
_NS_RE = re.compile(rf"^{NS_PREFIX}-(\d+)-[0-9a-f]{{6}}-[cs]$")

CLIENT_IF = "veth-c"
SERVER_IF = "veth-s"
CLIENT_V4, SERVER_V4 = "198.18.0.1", "198.18.0.2"
CLIENT_V6, SERVER_V6 = "fd65:6774::1", "fd65:6774::2"
LINK_V4_PREFIX, LINK_V6_PREFIX = 24, 64
DNS_SERVER = SERVER_V4


class LabError(RuntimeError):
    pass


class NetemUnsupported(LabError):
    pass


def _run(argv: list[str], check: bool = True, timeout: float = 30, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed ({p.returncode}): {p.stderr.strip() or p.stdout.strip()}")
    return p


def can_run_lab() -> tuple[bool, str]:
    """(ok, reason) -- whether this process may build a Lab at all."""
    if os.geteuid() != 0:
        return False, "network lab needs root (network namespaces, raw capture)"
    if shutil.which("ip") is None:
        return False, "iproute2 'ip' not found"
    try:
        p = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
    except OSError as exc:
        return False, f"'ip netns' unavailable: {exc}"
    if p.returncode != 0:
        return False, f"'ip netns' unavailable: {p.stderr.strip()}"
    return True, ""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped) is dead for our purposes
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2] not in "ZX"
    except (OSError, ValueError, IndexError):
        return True


def _ns_list() -> list[str]:
    p = _run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in p.stdout.splitlines() if line.strip()]


def _destroy_ns(ns: str) -> None:
    """Kill the processes inside one of *our* namespaces (by pid), then delete it."""
    for _ in range(3):
        pids = [int(x) for x in _run(["ip", "netns", "pids", ns], check=False).stdout.split() if x.isdigit()]
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    _run(["ip", "netns", "del", ns], check=False)
    shutil.rmtree(f"/etc/netns/{ns}", ignore_errors=True)


def cleanup_stale() -> list[str]:
    """Remove lab namespaces whose creating process is gone."""
    removed = []
    for ns in _ns_list():
        m = _NS_RE.match(ns)
        if m and not _pid_alive(int(m.group(1))):
            _destroy_ns(ns)
            removed.append(ns)
    return removed


class Lab:
    def __init__(
        self,
        dns_config: dnsd.DnsConfig | None = None,
        *,
        workdir: str | os.PathLike | None = None,
        python: str = sys.executable,
        verbose: bool = False,
        sink_timeout: float = 30,
        prefer_ipv4: bool = False,
    ) -> None:
        self.dns_config = dns_config or dnsd.DnsConfig()
        self.suffix = f"{os.getpid()}-{secrets.token_hex(3)}"
        self.client_ns = f"{NS_PREFIX}-{self.suffix}-c"
        self.server_ns = f"{NS_PREFIX}-{self.suffix}-s"
        self.client_if, self.server_if = CLIENT_IF, SERVER_IF
        self.python = python
        self.verbose = verbose
        self.sink_timeout = sink_timeout
        self.prefer_ipv4 = prefer_ipv4
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix=f"egress-lab-{self.suffix}-"))
        self.sink: subprocess.Popen | None = None
        self.sink_info: dict = {}
        self._procs: list[subprocess.Popen] = []
        self._created: list[str] = []
        self._closed = False
        self._netem_ok: bool | None = None
        self._impair_n = 0
        self._holders: list[subprocess.Popen] = []
        self._netem_error = ""
        self.capture_stderr = ""

    # -- lifecycle --------------------------------------------------------------
    def __enter__(self) -> "Lab":
        ok, why = can_run_lab()
        if not ok:
            raise LabError(why)
        atexit.register(self.close)
        try:
            cleanup_stale()
            self._setup()
            self._start_sink()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _ns(self, ns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return _run(["ip", "netns", "exec", ns, *argv], check=check)

    def _sysctl(self, ns: str, key: str, value: str) -> None:
        path = "/proc/sys/" + key.replace(".", "/")
        self._ns(ns, "sh", "-c", f"echo {value} > {path}")

    def _setup(self) -> None:
        c, s = self.client_ns, self.server_ns
        for ns in (c, s):
            _run(["ip", "netns", "add", ns])
            self._created.append(ns)
        # The veth is born inside the namespaces: no name is ever taken in the root ns.
        _run(["ip", "link", "add", CLIENT_IF, "netns", c, "type", "veth", "peer", "name", SERVER_IF, "netns", s])
        for ns, ifname, v4, v6 in ((c, CLIENT_IF, CLIENT_V4, CLIENT_V6), (s, SERVER_IF, SERVER_V4, SERVER_V6)):
            for scope in ("all", "default", ifname):
                self._sysctl(ns, f"net.ipv6.conf.{scope}.accept_dad", "0")
            self._sysctl(ns, f"net.ipv6.conf.{ifname}.accept_ra", "0")
            self._sysctl(ns, f"net.ipv6.conf.{ifname}.router_solicitations", "0")
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
            _run(["ip", "-n", ns, "addr", "add", f"{v4}/{LINK_V4_PREFIX}", "dev", ifname])
            _run(["ip", "-n", ns, "-6", "addr", "add", f"{v6}/{LINK_V6_PREFIX}", "dev", ifname, "nodad"])
            self._ns(ns, "ethtool", "-K", ifname, "tso", "off", "gso", "off", "gro", "off", "tx", "off")
            _run(["ip", "-n", ns, "link", "set", ifname, "up"])
        # server: own the whole lab ranges; drop the black-hole ranges
        _run(["ip", "-n", s, "route", "add", "local", str(dnsd.LAB_V4), "dev", "lo"])
        _run(["ip", "-n", s, "-6", "route", "add", "local", str(dnsd.LAB_V6), "dev", "lo"])
        self._install_blackhole()
        # client: only the lab ranges, via the server; no default route
        _run(["ip", "-n", c, "route", "add", str(dnsd.LAB_V4), "via", SERVER_V4, "dev", CLIENT_IF])
        _run(["ip", "-n", c, "-6", "route", "add", str(dnsd.LAB_V6), "via", SERVER_V6, "dev", CLIENT_IF])
        routes = _run(["ip", "-n", c, "route", "show", "default"]).stdout + _run(
            ["ip", "-n", c, "-6", "route", "show", "default"]
        ).stdout
        if routes.strip():
            raise LabError(f"client namespace has a default route: {routes!r}")
        self._wait_link_ready()
        etc = Path("/etc/netns") / c
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text(f"nameserver {DNS_SERVER}\noptions timeout:1 attempts:2\n")
        (etc / "hosts").write_text("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
        if self.prefer_ipv4 and Path("/etc/gai.conf").exists():
            # glibc ranks ULA above IPv4 by default; like most container networks, prefer IPv4
            (etc / "gai.conf").write_text(
                "precedence ::1/128 50\nprecedence ::/0 40\nprecedence 2002::/16 30\n"
                "precedence ::/96 20\nprecedence ::ffff:0:0/96 100\n"
            )

    def _wait_link_ready(self, timeout: float = 10) -> None:
        """Wait for carrier on both ends and for the v6 addresses to leave
        "tentative": until the kernel's link watcher reports the veth up
        (up to ~1 s), a nodad address is still tentative and neighbour
        solicitations for it go unanswered, which would stall the first v6
        connection by a second."""
        deadline = time.monotonic() + timeout
        while True:
            ready = True
            for ns, ifname in ((self.client_ns, CLIENT_IF), (self.server_ns, SERVER_IF)):
                out = _run(["ip", "-n", ns, "-6", "addr", "show", "dev", ifname]).stdout
                link = _run(["ip", "-n", ns, "link", "show", "dev", ifname]).stdout
                if "tentative" in out or "state UP" not in link:
                    ready = False
            if ready:
                return
            if time.monotonic() > deadline:
                raise LabError("veth did not come up")
            time.sleep(0.05)

    def _install_blackhole(self) -> None:
        s = self.server_ns
        if shutil.which("iptables") and shutil.which("ip6tables"):
            self._ns(s, "iptables", "-w", "-A", "INPUT", "-d", str(dnsd.BLACKHOLE_V4), "-j", "DROP")
            self._ns(s, "ip6tables", "-w", "-A", "INPUT", "-d", str(dnsd.BLACKHOLE_V6), "-j", "DROP")
        elif shutil.which("nft"):
            rules = (
                "table inet egl_lab { chain input { type filter hook input priority 0; "
                f"ip daddr {dnsd.BLACKHOLE_V4} drop; ip6 daddr {dnsd.BLACKHOLE_V6} drop; }} }}"
            )
            self._ns(s, "nft", rules)
        else:
            raise LabError("need iptables/ip6tables or nft to build the black-hole range")

    def _start_sink(self) -> None:
        log = open(self.workdir / "sink.log", "wb")
        argv = [
            "ip", "netns", "exec", self.server_ns,
            self.python, "-m", "tests.lab.sink",
            "--dns-config", self.dns_config.to_json(),
            "--dns-host", "0.0.0.0",
            "--workdir", str(self.workdir),
        ]
        if self.verbose:
            argv.append("-v")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
        self.sink = subprocess.Popen(argv, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=log, env=env)
        log.close()
        deadline = time.monotonic() + self.sink_timeout
        line = b""
        while time.monotonic() < deadline:
            if self.sink.poll() is not None:
                break
            r, _, _ = select.select([self.sink.stdout], [], [], 0.2)
            if r:
                line = self.sink.stdout.readline()
                if line.startswith(b"READY"):
                    self.sink_info = json.loads(line[5:].strip() or b"{}")
                    return
                if not line:
                    break
        raise LabError(f"sink did not become ready: {line!r}\n{self.sink_log()}")

    def sink_log(self) -> str:
        try:
            return (self.workdir / "sink.log").read_text(errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for p in [*self._procs, *([self.sink] if self.sink else [])]:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM)
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        p.kill()
                    p.wait(5)
        if self.sink and self.sink.stdout:
            self.sink.stdout.close()
        for ns in reversed(self._created):
            _destroy_ns(ns)
        self._created.clear()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        with contextlib.suppress(Exception):
            atexit.unregister(self.close)

    # -- addresses ----------------------------------------------------------------
    def address_for(self, name: str) -> tuple[str, str]:
        """(v4, v6) the lab DNS hands out for ``name`` (after CNAMEs)."""
        return dnsd.address_for(name, self.dns_config)

    # -- running things -------------------------------------------------------------
    def client_argv(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.client_ns, *argv]

    def run_client(
        self,
        argv: list[str],
        timeout: float = 30,
        env: dict | None = None,
        input: bytes | str | None = None,
        text: bool = True,
    ) -> subprocess.CompletedProcess:
        """Run ``argv`` in the client namespace; returns the CompletedProcess."""
        if isinstance(input, str) and not text:
            input = input.encode()
        return subprocess.run(
            self.client_argv(argv),
            capture_output=True,
            timeout=timeout,
            env=env,
            input=input if input is not None else ("" if text else b""),
            text=text,
            cwd=PROJECT_ROOT,
        )

    def popen_client(self, argv: list[str], env: dict | None = None, **kw) -> subprocess.Popen:
        """Start ``argv`` in the client namespace in the background."""
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        kw.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.Popen(self.client_argv(argv), env=env, cwd=PROJECT_ROOT, **kw)
        self._procs.append(p)
        return p

    def client_pid(self) -> int:
        """The pid of a process that lives in the client namespace (stopped with the lab):
        what egress-tui enters, as it would a container's."""
        p = self.popen_client(["sleep", "infinity"])
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            pids = subprocess.run(["ip", "netns", "pids", self.client_ns], capture_output=True,
                                  text=True).stdout.split()
            if pids:
                return int(pids[0])
            time.sleep(0.05)
        p.kill()
        raise LabError("no process appeared in the client namespace")

    def run_server(self, argv: list[str], timeout: float = 30) -> subprocess.CompletedProcess:
        return _run(["ip", "netns", "exec", self.server_ns, *argv], check=False, timeout=timeout)

    # -- capture ------------------------------------------------------------------------
    @contextlib.contextmanager
    def capture(self, path: str | os.PathLike, iface: str | None = None, bpf: str | None = None,
                settle: float = 0.5):
        """tcpdump in the client namespace, written to ``path``.

        Returns once tcpdump reports "listening"; on exit waits ``settle``
        seconds for the last packets, stops it with SIGINT and waits, so the
        file is complete.
        """
        if shutil.which("tcpdump") is None:
            raise LabError("tcpdump not found")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        argv = ["tcpdump", "-i", iface or CLIENT_IF, "-n", "-U", "-s", "0", "-Z", "root", "-w", str(path)]
        if bpf:
            argv.append(bpf)
        p = subprocess.Popen(self.client_argv(argv), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._procs.append(p)
        err: list[bytes] = []
        listening = threading.Event()

        def pump() -> None:
            for line in iter(p.stderr.readline, b""):
                err.append(line)
                if b"listening on" in line:
                    listening.set()

        t = threading.Thread(target=pump, daemon=True)
        t.start()
        deadline = time.monotonic() + 15
        while not listening.is_set() and time.monotonic() < deadline and p.poll() is None:
            listening.wait(0.1)
        if not listening.is_set():
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            p.wait()
            raise LabError(f"tcpdump did not start: {b''.join(err).decode(errors='replace')}")
        try:
            yield path
        finally:
            time.sleep(settle)
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            t.join(5)
            self.capture_stderr = b"".join(err).decode(errors="replace")

    # -- impairments --------------------------------------------------------------------
    @property
    def netem_supported(self) -> bool:
        if self._netem_ok is None and shutil.which("tc") is None:
            self._netem_ok, self._netem_error = False, "tc (iproute2) not found"
        if self._netem_ok is None:
            p = self._ns(self.client_ns, "tc", "qdisc", "add", "dev", CLIENT_IF, "root", "netem", "delay", "0ms",
                         check=False)
            self._netem_ok = p.returncode == 0
            self._netem_error = p.stderr.strip()
            if self._netem_ok:
                self._ns(self.client_ns, "tc", "qdisc", "del", "dev", CLIENT_IF, "root", check=False)
        return self._netem_ok

    def netem(self, *args) -> None:
        """``tc qdisc replace dev veth-c root netem ARGS``: ``lab.netem("delay", "10ms", "reorder", "25%")``,
        ``lab.netem(["delay", "10ms"])`` or ``lab.netem("delay 10ms duplicate 20%")``.

        Raises NetemUnsupported when the kernel has no sch_netem.
        """
        if len(args) == 1 and isinstance(args[0], (list, tuple)):
            args = tuple(args[0])
        elif len(args) == 1 and " " in args[0]:
            args = tuple(args[0].split())
        if not self.netem_supported:
            raise NetemUnsupported(f"kernel has no netem qdisc: {self._netem_error}")
        self._ns(self.client_ns, "tc", "qdisc", "replace", "dev", CLIENT_IF, "root", "netem", *args)

    def clear_netem(self) -> None:
        self._ns(self.client_ns, "tc", "qdisc", "del", "dev", CLIENT_IF, "root", check=False)

    def impair(self, target: str, *, dport: int = 443, min_length: int = 1200, hold_ms: int = 60,
               reorder: bool = True, duplicate: bool = True) -> None:
        """Reorder and duplicate TCP segments without netem (client ns netfilter).

        ``target`` is a lab name (both of its addresses) or one address.  Only
        big packets (IP length >= ``min_length``) to it on ``dport`` are
        touched, i.e. the first segment of a ClientHello too big for one MSS:

        * reorder: the *first* such packet goes to an NFQUEUE whose reader
          (``python -m tests.lab.netlab hold``, stdlib netlink) holds it for
          ``hold_ms`` before accepting it.  TCP counts it as sent, so the next
          segment goes out first: the wire (and the server) see them swapped.
        * duplicate: every such packet is also cloned onto the wire (TEE to the
          server), so it appears twice.
        """
        try:
            addrs = [str(ipaddress.ip_address(target))]
        except ValueError:
            addrs = list(self.address_for(target))
        self._impair_n += 1
        tag, queue = f"egl{self._impair_n}", 40 + self._impair_n
        if reorder:
            p = self.popen_client([self.python, "-m", "tests.lab.netlab", "hold", "--queue", str(queue),
                                   "--hold-ms", str(hold_ms)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            r, _, _ = select.select([p.stdout], [], [], 15)
            line = p.stdout.readline() if r else b""
            if not line.startswith(b"READY"):
                p.kill()
                raise LabError(f"NFQUEUE holder did not start: {line!r} {p.stderr.read(2000) if p.poll() is not None else ''}")
            self._holders.append(p)
        for addr in addrs:
            v6 = ":" in addr
            tool = "ip6tables" if v6 else "iptables"
            if shutil.which(tool) is None:
                raise LabError(f"{tool} not found")
            m = ["-d", addr, "-p", "tcp", "--dport", str(dport), "-m", "length", "--length", f"{min_length}:65535"]
            if reorder:
                self._ns(self.client_ns, tool, "-w", "-A", "OUTPUT", *m, "-m", "recent", "--name", tag,
                         "--rcheck", "-j", "ACCEPT")
                self._ns(self.client_ns, tool, "-w", "-A", "OUTPUT", *m, "-m", "recent", "--name", tag,
                         "--set", "-j", "NFQUEUE", "--queue-num", str(queue), "--queue-bypass")
            if duplicate:
                self._ns(self.client_ns, tool, "-w", "-t", "mangle", "-A", "POSTROUTING", *m,
                         "-j", "TEE", "--gateway", SERVER_V6 if v6 else SERVER_V4)

    def clear_impairments(self) -> None:
        for p in self._holders:
            if p.poll() is None:
                p.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(5)
        self._holders.clear()
        for tool in ("iptables", "ip6tables"):
            if shutil.which(tool):
                self._ns(self.client_ns, tool, "-w", "-F", "OUTPUT", check=False)
                self._ns(self.client_ns, tool, "-w", "-t", "mangle", "-F", "POSTROUTING", check=False)

    # -- ready-made clients (all run inside the client namespace) ---------------------
    def py(self, code: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        """``python -c code args...`` with this Lab's interpreter, in the client ns."""
        return self.run_client([self.python, "-c", code, *args], timeout=timeout)

    def py_tls(self, host: str, port: int = 443, alpn: tuple[str, ...] = ("http/1.1",),
               family: int = 0, timeout: float = 30) -> subprocess.CompletedProcess:
        """Python ``ssl`` client: handshake, one HTTP/1.1 GET; prints a JSON summary."""
        return self.py(_PY_TLS, host, str(port), ",".join(alpn), str(family), timeout=timeout)

    def curl(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return self.run_client(["curl", "-sS", *args], timeout=timeout)

    def curl_cffi_get(self, url: str, impersonate: str = "chrome", timeout: float = 30) -> subprocess.CompletedProcess:
        """curl_cffi (browser ClientHello, ~1.9 KB with the post-quantum key share)."""
        return self.py(_CURL_CFFI, url, impersonate, timeout=timeout)

    def quic_connect(self, server_name: str, port: int = 443, address: str | None = None,
                     alpn: str = "h3", timeout: float = 30) -> subprocess.CompletedProcess:
        """aioquic client: full QUIC handshake + one PING; prints a JSON summary."""
        return self.py(_QUIC, server_name, str(port), address or server_name, alpn, timeout=timeout)

    def openssl_s_client(self, host: str, port: int = 443, alpn: str | None = None,
                         servername: str | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
        argv = ["openssl", "s_client", "-connect", f"{host}:{port}", "-servername", servername or host]
        if alpn:
            argv += ["-alpn", alpn]
        return self.run_client(argv, timeout=timeout)

    def resolve(self, name: str, timeout: float = 30) -> subprocess.CompletedProcess:
        """getaddrinfo only (a lookup with no connection); prints JSON addresses or the error."""
        return self.py(_RESOLVE, name, timeout=timeout)

    def dns_tcp_query(self, name: str, qtype: int = 1, server: str = DNS_SERVER,
                      timeout: float = 30) -> subprocess.CompletedProcess:
        """One raw DNS query over TCP; prints JSON {rcode, answers}."""
        return self.py(_DNS_TCP, name, str(qtype), server, timeout=timeout)


_PY_TLS = r"""
import json, socket, ssl, sys
host, port, alpn, fam = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
if alpn:
    ctx.set_alpn_protocols(alpn.split(","))
info = socket.getaddrinfo(host, port, fam, socket.SOCK_STREAM)[0]
with socket.socket(info[0], socket.SOCK_STREAM) as raw:
    raw.settimeout(10)
    raw.connect(info[4])
    with ctx.wrap_socket(raw, server_hostname=host) as t:
        t.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = t.recv(4096)
            if not chunk:
                break
            data += chunk
        print(json.dumps({"version": t.version(), "alpn": t.selected_alpn_protocol(),
                          "peer": t.getpeername()[0],
                          "status": data.split(b"\r\n", 1)[0].decode(errors="replace")}))
"""

_CURL_CFFI = r"""
import json, sys
from curl_cffi import requests
r = requests.get(sys.argv[1], impersonate=sys.argv[2], verify=False, timeout=10)
print(json.dumps({"status": r.status_code, "http_version": str(r.http_version), "body": r.text}))
"""

_QUIC = r"""
import asyncio, json, ssl, sys
from aioquic.asyncio import connect
from aioquic.quic.configuration import QuicConfiguration
name, port, target, alpn = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
async def main():
    cfg = QuicConfiguration(is_client=True, alpn_protocols=[alpn], verify_mode=ssl.CERT_NONE, server_name=name)
    async with connect(target, port, configuration=cfg) as client:
        await asyncio.wait_for(client.ping(), 5)
        q = client._quic
        print(json.dumps({"alpn": q.tls.alpn_negotiated, "peer": q._network_paths[0].addr[0]}))
asyncio.run(asyncio.wait_for(main(), 15))
"""

_RESOLVE = r"""
import json, socket, sys
try:
    infos = socket.getaddrinfo(sys.argv[1], None, 0, socket.SOCK_STREAM)
    print(json.dumps({"addresses": sorted({i[4][0] for i in infos})}))
except socket.gaierror as e:
    print(json.dumps({"error": e.errno, "message": str(e)}))
"""

_DNS_TCP = r"""
import json, os, socket, struct, sys
name, qtype, server = sys.argv[1], int(sys.argv[2]), sys.argv[3]
qid = int.from_bytes(os.urandom(2), "big")
q = struct.pack("!6H", qid, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0" + struct.pack("!HH", qtype, 1)
with socket.create_connection((server, 53), timeout=5) as s:
    s.sendall(struct.pack("!H", len(q)) + q)
    n = struct.unpack("!H", s.recv(2))[0]
    r = b""
    while len(r) < n:
        r += s.recv(n - len(r))
print(json.dumps({"id_ok": r[:2] == q[:2], "rcode": r[3] & 0xF, "answers": struct.unpack("!H", r[6:8])[0]}))
"""


# -- NFQUEUE "hold" helper (stdlib netlink), run inside the client namespace ----------------

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS = 1, 2
NFQA_PACKET_HDR, NFQA_VERDICT_HDR = 1, 2
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NF_ACCEPT = 1
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2


def _nla(atype: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), atype) + payload
    return raw + b"\0" * (-len(raw) % 4)


def _nfq_msg(msg: int, queue: int, attrs: bytes, seq: int, flags: int = NLM_F_REQUEST) -> bytes:
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue)) + attrs
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg, flags, seq, 0) + body


def _nl_attrs(data: bytes) -> dict[int, bytes]:
    out, off = {}, 0
    while off + 4 <= len(data):
        ln, at = struct.unpack_from("=HH", data, off)
        if ln < 4:
            break
        out[at & 0x7FFF] = data[off + 4 : off + ln]
        off += (ln + 3) & ~3
    return out


def nfqueue_hold(queue: int, hold_ms: int, count: int = 1, timeout: float = 60) -> int:
    """Hold the first ``count`` packets of NFQUEUE ``queue`` for ``hold_ms`` each, then accept them
    (and accept anything else at once).  Prints READY once bound."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.bind((0, 0))
    seq = 1
    for attrs in (
        _nla(NFQA_CFG_CMD, struct.pack("!BBH", NFQNL_CFG_CMD_BIND, 0, socket.AF_UNSPEC)),
        _nla(NFQA_CFG_PARAMS, struct.pack("!IB", 0xFFFF, NFQNL_COPY_META)),
    ):
        sock.send(_nfq_msg(NFQNL_MSG_CONFIG, queue, attrs, seq, NLM_F_REQUEST | NLM_F_ACK))
        reply = sock.recv(65536)
        _len, mtype = struct.unpack_from("=IH", reply)
        if mtype == NLMSG_ERROR and struct.unpack_from("=i", reply, 16)[0] != 0:
            raise OSError(-struct.unpack_from("=i", reply, 16)[0], "nfqueue config failed")
        seq += 1
    print("READY", flush=True)
    held = 0
    deadline = time.monotonic() + timeout
    sock.settimeout(1)
    while held < count and time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        off = 0
        while off + 16 <= len(data):
            mlen, mtype = struct.unpack_from("=IH", data, off)
            if mlen < 16:
                break
            if mtype == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                attrs = _nl_attrs(data[off + 20 : off + mlen])
                pid = struct.unpack("!I", attrs[NFQA_PACKET_HDR][:4])[0]
                if held < count:
                    time.sleep(hold_ms / 1000)
                    held += 1
                verdict = _nla(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, pid))
                sock.send(_nfq_msg(NFQNL_MSG_VERDICT, queue, verdict, seq))
                seq += 1
            off += (mlen + 3) & ~3
    return 0


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(prog="python -m tests.lab.netlab")
    sub = ap.add_subparsers(dest="cmd", required=True)
    h = sub.add_parser("hold", help="NFQUEUE reader that delays the first packet(s)")
    h.add_argument("--queue", type=int, required=True)
    h.add_argument("--hold-ms", type=int, default=60)
    h.add_argument("--count", type=int, default=1)
    a = ap.parse_args()
    sys.exit(nfqueue_hold(a.queue, a.hold_ms, a.count))

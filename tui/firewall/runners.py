"""Running host tools and lookups inside a container's network namespace: from the host
(nsenter, setns) or through a helper container that shares it. Nothing here imports Textual.
"""

from __future__ import annotations
import ipaddress
import os
import select
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterable
from egress_tui.wire import dns as dnsmod
from egress_tui.firewall.plan import FirewallError
from egress_tui.live.capture import netns_path
from egress_tui.live.namespaces import parse_resolv_conf as parse_nameservers, read_resolv_conf
from egress_tui.live.helpers import HelperOwner, remove_quietly, start_helper

DNS_TIMEOUT = 2.0


# -- running commands in the namespace ------------------------------------------------------

class NamespaceRunner:
    """Runs host tools inside the network namespace of process ``pid`` (nsenter)."""

    TOOLS = ("iptables-save", "iptables-restore", "ip6tables-save", "ip6tables-restore", "ipset")

    def __init__(self, pid: int | str, tools: dict[str, str] | None = None):
        self.pid = pid  # or the path of a namespace file (--netns /run/netns/NAME)
        self.tools = {t: shutil.which(t) or t for t in self.TOOLS}
        self.tools.update(tools or {})

    def check_tools(self) -> None:
        missing = [t for t in self.TOOLS if not (os.path.isabs(self.tools[t]) and os.access(self.tools[t], os.X_OK))]
        if missing:
            pkgs = sorted({"ipset" if t == "ipset" else "iptables" for t in missing})
            raise FirewallError(f"{', '.join(missing)} not found on this host: apt-get install {' '.join(pkgs)}")
        if not os.path.exists(netns_path(self.pid)):
            raise FirewallError(f"process {self.pid} is gone: is the container still running?"
                                if isinstance(self.pid, int) else f"namespace {self.pid} is gone")
        if os.geteuid() != 0:
            raise FirewallError("applying a firewall in a container's namespace needs root; run with sudo")

    def run(self, tool: str, args: list[str], input: str | None = None, check: bool = True) -> str:
        argv = ["nsenter", f"--net={netns_path(self.pid)}", "--", self.tools[tool], *args]
        try:
            r = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise FirewallError(f"{tool} failed to run: {e}") from None
        if check and r.returncode != 0:
            msg = (r.stderr or r.stdout).strip().splitlines()
            raise FirewallError(f"{tool} failed: {msg[-1] if msg else f'exit {r.returncode}'}")
        return r.stdout

    def popen(self, tool: str, args: list[str]) -> subprocess.Popen:
        argv = ["nsenter", f"--net={netns_path(self.pid)}", "--", self.tools[tool], *args]
        return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, bufsize=1)

    def resolve(self, names: list[str], resolvers: list[str]) -> dict[str, list[tuple[str, int]]]:
        return in_namespace(self.pid, resolve_names, names, resolvers)

    def probes(self, targets: list[tuple[str, int]]) -> list[str]:
        return in_namespace(self.pid, lambda: [probe(a, p) for a, p in targets])

    def close(self) -> None:
        pass


class HelperRunner:
    """The same tools, run in a helper container that shares the target's network namespace
    (for hosts that cannot enter it: not root, Docker Desktop, a remote engine). The helper
    image needs iptables, ip6tables, ipset, getent and bash."""

    INPUT = "/tmp/egress-tui-input"

    def __init__(self, dc, container_id: str, image: str, owner: HelperOwner | None = None, name: str = ""):
        self.dc = dc
        self.cid = container_id
        self.name = name or container_id[:12]
        self.image = image
        self.owner = owner or HelperOwner()
        self.pid = None
        self.helper = None

    def _ensure(self):
        """The helper, started on first use (and again if it went away)."""
        from docker.errors import NotFound
        if self.helper is not None:
            try:
                self.helper.reload()
                if self.helper.status == "running":
                    return self.helper
            except NotFound:
                pass
            remove_quietly(self.helper)
        self.helper, _ = start_helper(self.dc, self.cid, self.name, self.image, ["sleep", "infinity"],
                                      entrypoint=[], purpose="firewall", needs="iptables and ipset",
                                      owner=self.owner, error=FirewallError)
        return self.helper

    def check_tools(self) -> None:
        h = self._ensure()
        # a constant script with the tool name as its argument: nothing is built into a command
        missing = [t for t in NamespaceRunner.TOOLS if h.exec_run(["sh", "-c", 'command -v "$0"', t]).exit_code]
        if missing:
            raise FirewallError(f"{', '.join(missing)} not found in helper image {self.image}: use an image "
                                "with iptables and ipset (--helper-image)")

    def run(self, tool: str, args: list[str], input: str | None = None, check: bool = True) -> str:
        import io
        import tarfile
        h = self._ensure()
        argv = [tool, *args]
        if input is not None:
            data = input.encode()
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as tar:
                info = tarfile.TarInfo(os.path.basename(self.INPUT))
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            h.put_archive(os.path.dirname(self.INPUT), buf.getvalue())
            argv = ([tool, "-file", self.INPUT, *args] if tool == "ipset" else [*argv, self.INPUT])
        res = h.exec_run(argv, demux=True)
        out, err = res.output if res.output else (b"", b"")
        if check and res.exit_code != 0:
            msg = (err or out or b"").decode(errors="replace").strip().splitlines()
            raise FirewallError(f"{tool} failed in the helper: {msg[-1] if msg else f'exit {res.exit_code}'}")
        return (out or b"").decode(errors="replace")

    def popen(self, tool: str, args: list[str]):
        return _ExecPipe(self.dc, self._ensure().id, [tool, *args])

    def resolve(self, names: list[str], resolvers: list[str]) -> dict[str, list[tuple[str, int]]]:
        h = self._ensure()
        out: dict[str, list[tuple[str, int]]] = {}
        for n in names:
            res = h.exec_run(["getent", "ahosts", n])
            addrs = sorted({ln.split()[0] for ln in res.output.decode(errors="replace").splitlines() if ln.strip()})
            out[n] = [(a, 0) for a in addrs]
        return out

    def probes(self, targets: list[tuple[str, int]]) -> list[str]:
        h = self._ensure()
        results = []
        for addr, port in targets:
            res = h.exec_run(["timeout", "3", "bash", "-c", 'exec 3<>"/dev/tcp/$0/$1"', addr, str(port)])
            text = res.output.decode(errors="replace")
            results.append("connected" if res.exit_code == 0 else "timeout" if res.exit_code == 124
                           else "refused" if "refused" in text else "unreachable")
        return results

    def close(self) -> None:
        """Remove the helper container; FirewallError (naming it) when the engine refuses."""
        from docker.errors import DockerException, NotFound
        helper, self.helper = self.helper, None
        if helper is None:
            return
        try:
            helper.remove(force=True)
        except NotFound:
            return  # already gone: nothing is left behind
        except DockerException as e:
            raise FirewallError(f"cannot remove the firewall helper container {helper.short_id} ({e}); "
                                f"remove it with: docker rm -f {helper.short_id}") from None


class _ExecPipe:
    """Popen-like writer into a long-running exec (a persistent ipset restore in the helper)."""

    def __init__(self, dc, container_id: str, argv: list[str]):
        self.dc = dc
        ex = dc.api.exec_create(container_id, argv, stdin=True, stdout=False, stderr=False)
        self.id = ex["Id"]
        self.sock = dc.api.exec_start(self.id, socket=True)
        self.stdin = self

    def write(self, text: str) -> None:
        raw = getattr(self.sock, "_sock", self.sock)
        raw.sendall(text.encode())

    def flush(self) -> None:
        pass

    def poll(self):
        from docker.errors import DockerException
        try:
            running = self.dc.api.exec_inspect(self.id).get("Running")
        except DockerException as e:  # the caller handles a pipe that broke as an OSError
            raise OSError(f"cannot inspect the helper's ipset process: {e}") from None
        return None if running else 0

    def close(self) -> None:
        raw = getattr(self.sock, "_sock", self.sock)
        try:
            raw.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def wait(self, timeout: float | None = None) -> None:
        self.close()

    def kill(self) -> None:
        self.close()


# -- resolving names the way the container would ----------------------------------------

def resolvers_of(pid: int, extra: Iterable[str] = ()) -> list[str]:
    """The DNS servers the process uses: its root's resolv.conf (read bounded, symlinks
    resolved inside that root: see live/namespaces.py), plus Docker's upstream servers
    (``extra``) when it uses Docker's embedded resolver at 127.0.0.11."""
    return _with_upstream(read_resolv_conf(f"/proc/{pid}/root").servers, extra)


def parse_resolv_conf(text: str, extra: Iterable[str] = ()) -> list[str]:
    """Nameservers of a resolv.conf; behind Docker's 127.0.0.11 also its upstream servers
    (newer Docker lists them in an ExtServers comment; ``extra`` from the daemon otherwise)."""
    return _with_upstream(parse_nameservers(text).servers, extra)


def _with_upstream(servers: list[str], extra: Iterable[str]) -> list[str]:
    if "127.0.0.11" in servers:  # the embedded resolver forwards from inside the namespace
        for a in extra:
            try:
                a = str(ipaddress.ip_address(a))
            except ValueError:
                continue
            if a not in servers:
                servers.append(a)
    return servers


def _query(ident: int, name: str, qtype: int) -> bytes:
    q = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(lb)]) + lb.encode() for lb in name.split(".") if lb) + b"\0"
    return q + struct.pack("!HH", qtype, 1)


# After the last answer, how long to keep listening for a second, different answer to the
# same query: a process in the container racing the resolver with a forged one.
CONFLICT_GRACE = 0.15


def _chain_addresses(msg: dnsmod.Message, name: str) -> list[tuple[str, int]]:
    """A/AAAA records on the CNAME chain from ``name`` (nothing about other names)."""
    chain = {name}
    for a in msg.answers:
        if a.rtype == dnsmod.TYPE_CNAME and a.owner in chain:
            chain.add(a.value)
    return [(a.value, a.ttl) for a in msg.answers
            if a.rtype in (dnsmod.TYPE_A, dnsmod.TYPE_AAAA) and a.owner in chain]


def resolve_names(names: list[str], resolvers: list[str], timeout: float = DNS_TIMEOUT
                  ) -> dict[str, list[tuple[str, int]]]:
    """A and AAAA for each name from the first resolver that answers: {name: [(addr, ttl)]}.

    Call from a thread that has entered the container's namespace (capture.setns_net), so
    the queries go where the container's would, through its own resolver. That namespace
    is the container's: its processes can see our queries and race the resolver with
    forged answers. So the socket is connected to the resolver (the kernel drops
    datagrams from anywhere else), every query has a random ID, an answer must repeat the
    question, and a name that gets two different answers to one query stays unresolved.
    """
    result: dict[str, list[tuple[str, int]]] = {n: [] for n in names}
    if not names or not resolvers:
        return result
    for server in resolvers:
        pending = {n for n in names if not result[n]}
        if not pending:
            break
        fam = socket.AF_INET6 if ":" in server else socket.AF_INET
        try:
            s = socket.socket(fam, socket.SOCK_DGRAM)
            s.connect((server, 53))
        except OSError:
            continue
        try:
            s.setblocking(False)
            asked: dict[int, tuple[str, int]] = {}
            for n in sorted(pending):
                for qtype in (dnsmod.TYPE_A, dnsmod.TYPE_AAAA):
                    ident = int.from_bytes(os.urandom(2), "big")
                    while ident in asked:
                        ident = int.from_bytes(os.urandom(2), "big")
                    asked[ident] = (n, qtype)
                    try:
                        s.send(_query(ident, n, qtype))
                    except OSError:
                        pass
            got: dict[int, tuple] = {}       # ident -> signature of the first answer
            conflicted: set[str] = set()
            found: dict[str, list[tuple[str, int]]] = {}
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if len(got) == len(asked):
                    deadline = min(deadline, time.monotonic() + CONFLICT_GRACE)
                r, _, _ = select.select([s], [], [], max(0.0, deadline - time.monotonic()))
                if not r:
                    break
                try:
                    msg = dnsmod.parse(s.recv(65535))
                except (OSError, dnsmod.DnsError, IndexError, ValueError):
                    continue
                q = asked.get(msg.ident)
                if q is None or not msg.response or msg.question_key() != ((q[0], q[1], 1),):
                    continue
                addrs = _chain_addresses(msg, q[0])
                signature = (msg.rcode, tuple(sorted(a for a, _t in addrs)))
                if msg.ident in got:
                    if got[msg.ident] != signature:
                        conflicted.add(q[0])
                    continue
                got[msg.ident] = signature
                found.setdefault(q[0], []).extend(addrs)
            for n, addrs in found.items():
                if n not in conflicted:
                    result[n] = addrs
        finally:
            s.close()
    return result


def in_namespace(pid: int | str, fn, *args):
    """Run fn(*args) in a short-lived thread that entered the namespace of ``pid``."""
    from egress_tui.live.capture import setns_net
    box: dict = {}

    def work():
        try:
            setns_net(pid)
            box["value"] = fn(*args)
        except BaseException as e:  # handed back to the caller's thread
            box["error"] = e

    t = threading.Thread(target=work, name="egress-netns", daemon=True)
    t.start()
    t.join(60)
    if "error" in box:
        raise box["error"]
    return box.get("value")


def probe(addr: str, port: int, timeout: float = 2.0) -> str:
    """Try a TCP connection (call inside the namespace): connected, refused, timeout, unreachable."""
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((addr, port))
        return "connected"
    except ConnectionRefusedError:
        return "refused"
    except TimeoutError:
        return "timeout"
    except OSError as e:
        return "unreachable" if e.errno in (101, 113) else f"error: {e.strerror}"
    finally:
        s.close()

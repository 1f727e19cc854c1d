"""An egress firewall for one network namespace: iptables + ipset, IPv4 and IPv6.

Applied from the host into the container's namespace (nsenter), so the image needs no
NET_ADMIN, no iptables, no sudo, and nothing inside the container can undo it.

What it fixes in the hand-made script it replaces (see the README):
- own chain (EGRESS-TUI) and own sets only, hooked into OUTPUT with one jump: it never
  flushes tables, so Docker's embedded-DNS NAT rules keep working;
- IPv6 too (ip6tables, ``hash:net family inet6``);
- atomic: sets are filled aside and swapped in, each family's rules load in one
  ``iptables-restore`` transaction, and any failure puts back exactly what was there;
- a name that does not resolve is reported, not fatal;
- DNS only to the container's configured resolvers, not to anything on port 53;
- the sets keep up with rotating addresses: DNS answers for allowed names seen while
  capturing are added with a timeout taken from their TTL (see ``SetUpdater``).

Nothing here imports Textual.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import select
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from . import dns as dnsmod
from .allowlist import Allowlist
from .nflog import GROUP as NFLOG_GROUP

CHAIN = "EGRESS-TUI"
SETS = {4: ("egress-tui-v4", "egress-tui-v4-port"), 6: ("egress-tui-v6", "egress-tui-v6-port")}
NEW = "-new"  # suffix of the sets being filled before they are swapped in
# ipset restore batches consecutive adds to one set until another command comes; an add to
# this scratch set after each real one pushes the real one into the kernel at once
SYNC_SET = "egress-tui-sync"
STATE_DIR = "/run/egress-tui"
DNS_TIMEOUT = 2.0
MIN_TTL = 60  # a set entry learned from DNS lives at least this long (clients cache)


class FirewallError(Exception):
    """The firewall could not be applied or removed; the namespace is as it was before."""


# -- running commands in the namespace ------------------------------------------------------

class NamespaceRunner:
    """Runs host tools inside the network namespace of process ``pid`` (nsenter)."""

    TOOLS = ("iptables-save", "iptables-restore", "ip6tables-save", "ip6tables-restore", "ipset")

    def __init__(self, pid: int, tools: dict[str, str] | None = None):
        self.pid = pid
        self.tools = {t: shutil.which(t) or t for t in self.TOOLS}
        self.tools.update(tools or {})

    def check_tools(self) -> None:
        missing = [t for t in self.TOOLS if not (os.path.isabs(self.tools[t]) and os.access(self.tools[t], os.X_OK))]
        if missing:
            pkgs = sorted({"ipset" if t == "ipset" else "iptables" for t in missing})
            raise FirewallError(f"{', '.join(missing)} not found on this host: apt-get install {' '.join(pkgs)}")
        if not os.path.exists(f"/proc/{self.pid}/ns/net"):
            raise FirewallError(f"process {self.pid} is gone: is the container still running?")
        if os.geteuid() != 0:
            raise FirewallError("applying a firewall in a container's namespace needs root; run with sudo")

    def run(self, tool: str, args: list[str], input: str | None = None, check: bool = True) -> str:
        argv = ["nsenter", f"--net=/proc/{self.pid}/ns/net", "--", self.tools[tool], *args]
        try:
            r = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise FirewallError(f"{tool} failed to run: {e}") from None
        if check and r.returncode != 0:
            msg = (r.stderr or r.stdout).strip().splitlines()
            raise FirewallError(f"{tool} failed: {msg[-1] if msg else f'exit {r.returncode}'}")
        return r.stdout

    def popen(self, tool: str, args: list[str]) -> subprocess.Popen:
        argv = ["nsenter", f"--net=/proc/{self.pid}/ns/net", "--", self.tools[tool], *args]
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

    def __init__(self, dc, container_id: str, image: str):
        self.dc = dc
        self.cid = container_id
        self.image = image
        self.pid = None
        self.helper = None

    def _ensure(self):
        from docker.errors import DockerException, ImageNotFound, NotFound
        if self.helper is not None:
            try:
                self.helper.reload()
                if self.helper.status == "running":
                    return self.helper
            except NotFound:
                pass
        try:
            self.helper = self.dc.containers.create(
                self.image, ["sleep", "infinity"], entrypoint=[], network_mode=f"container:{self.cid}",
                cap_add=["NET_ADMIN", "NET_RAW"], labels={"egress-tui.firewall-helper": self.cid})
            self.helper.start()
        except ImageNotFound:
            raise FirewallError(f"helper image {self.image} is not on this Docker host: docker pull it, or "
                                "pass --helper-image with a local image that has iptables and ipset") from None
        except DockerException as e:
            raise FirewallError(f"cannot start the firewall helper container: {e}") from None
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
        if self.helper is not None:
            try:
                self.helper.remove(force=True)
            except Exception:
                pass
            self.helper = None


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
        return None if self.dc.api.exec_inspect(self.id).get("Running") else 0

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
    """The DNS servers the process uses: its resolv.conf, plus Docker's upstream servers
    (``extra``) when it uses Docker's embedded resolver at 127.0.0.11."""
    try:
        with open(f"/proc/{pid}/root/etc/resolv.conf", encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        text = ""
    return parse_resolv_conf(text, extra)


def parse_resolv_conf(text: str, extra: Iterable[str] = ()) -> list[str]:
    """Nameservers of a resolv.conf; behind Docker's 127.0.0.11 also its upstream servers
    (newer Docker lists them in an ExtServers comment; ``extra`` from the daemon otherwise)."""
    out: list[str] = []
    ext: list[str] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            out.append(parts[1].split("%")[0])
        elif line.startswith("# ExtServers:"):
            ext += re.findall(r"[0-9a-fA-F:.]{3,}", line.split(":", 1)[1])
    if "127.0.0.11" in out:  # the embedded resolver forwards from inside the namespace
        for a in [*ext, *extra]:
            if a not in out:
                out.append(a)
    valid = []
    for a in out:
        try:
            valid.append(str(ipaddress.ip_address(a)))
        except ValueError:
            continue
    return valid


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


def in_namespace(pid: int, fn, *args):
    """Run fn(*args) in a short-lived thread that entered the namespace of ``pid``."""
    from .capture import setns_net
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


# -- the plan -------------------------------------------------------------------------

@dataclass
class Plan:
    """Everything the firewall will contain, computed before anything is touched."""

    allowlist: list[str]
    resolvers: list[str]
    reject: bool = False
    nets: dict[int, dict[str, str]] = field(default_factory=lambda: {4: {}, 6: {}})   # addr -> comment
    ports: dict[int, dict[str, str]] = field(default_factory=lambda: {4: {}, 6: {}})  # "addr,tcp:443"
    resolved: dict[str, list[str]] = field(default_factory=dict)
    unresolved: list[str] = field(default_factory=list)
    wildcards: list[str] = field(default_factory=list)

    def ipset_script(self, suffix: str = NEW) -> str:
        lines = []
        for fam, (plain, with_port) in SETS.items():
            family = "inet" if fam == 4 else "inet6"
            lines.append(f"create {plain}{suffix} hash:net family {family} timeout 0 comment -exist")
            lines.append(f"flush {plain}{suffix}")
            lines.append(f"create {with_port}{suffix} hash:net,port family {family} timeout 0 comment -exist")
            lines.append(f"flush {with_port}{suffix}")
            for addr, why in sorted(self.nets[fam].items()):
                lines.append(f'add {plain}{suffix} {addr} timeout 0 comment "{_comment(why)}" -exist')
            for entry, why in sorted(self.ports[fam].items()):
                lines.append(f'add {with_port}{suffix} {entry} timeout 0 comment "{_comment(why)}" -exist')
        return "\n".join(lines) + "\n"

    def iptables_script(self, fam: int, hook_present: bool) -> str:
        plain, with_port = SETS[fam]
        c = '-m comment --comment "egress-tui"'
        rules = [f"-A {CHAIN} -o lo {c} -j ACCEPT",
                 f"-A {CHAIN} -m conntrack --ctstate ESTABLISHED,RELATED {c} -j ACCEPT"]
        if fam == 6:
            # neighbour discovery and router solicitation: without them IPv6 stops working at all
            for t in ("router-solicitation", "neighbour-solicitation", "neighbour-advertisement"):
                rules.append(f"-A {CHAIN} -p ipv6-icmp --icmpv6-type {t} {c} -j ACCEPT")
        for r in self.resolvers:
            if (":" in r) == (fam == 6):
                for proto in ("udp", "tcp"):
                    rules.append(f'-A {CHAIN} -d {r} -p {proto} --dport 53 -m comment --comment "egress-tui resolver" -j ACCEPT')
        rules.append(f"-A {CHAIN} -m set --match-set {plain} dst {c} -j ACCEPT")
        rules.append(f"-A {CHAIN} -m set --match-set {with_port} dst,dst {c} -j ACCEPT")
        # a dropped packet never reaches the device, so no capture would see it: copy it
        # to the capture first (see nflog.py), so blocked connections show up as such
        rules.append(f"-A {CHAIN} {c} -j NFLOG --nflog-group {NFLOG_GROUP} --nflog-prefix egress-tui-drop")
        if self.reject:
            rules.append(f"-A {CHAIN} -p tcp {c} -j REJECT --reject-with tcp-reset")
            rules.append(f"-A {CHAIN} {c} -j REJECT")
        else:
            rules.append(f"-A {CHAIN} {c} -j DROP")
        hook = [] if hook_present else [f"-I OUTPUT 1 -j {CHAIN}"]
        return "\n".join(["*filter", f":{CHAIN} - [0:0]", *rules, *hook, "COMMIT"]) + "\n"

    def to_json(self) -> dict:
        d = asdict(self)
        d["nets"] = {str(k): v for k, v in self.nets.items()}
        d["ports"] = {str(k): v for k, v in self.ports.items()}
        return d


def _comment(text: str) -> str:
    return re.sub(r'[^A-Za-z0-9_.:*/@ -]', "", text)[:250]


def build_plan(allowlist: Allowlist, resolved: dict[str, list[tuple[str, int]]], resolvers: list[str],
               reject: bool = False) -> Plan:
    """Turn an allowlist and the addresses its names resolved to into set entries."""
    plan = Plan(allowlist=[e.text() for e in allowlist.entries], resolvers=resolvers, reject=reject)
    for e in allowlist.entries:
        if e.network is not None:
            addrs = [e.pattern]  # "198.18.0.0/16", or a bare address
        elif e.wildcard:
            plan.wildcards.append(e.pattern)
            continue
        else:
            got = resolved.get(e.pattern, [])
            addrs = sorted({a for a, _ttl in got})
            plan.resolved[e.pattern] = addrs
            if not addrs:
                plan.unresolved.append(e.pattern)
                continue
        for a in addrs:
            fam = 6 if ":" in a else 4
            if e.port is None:
                plan.nets[fam][a] = e.pattern
            else:
                for proto in ("tcp", "udp"):  # udp too: QUIC uses the same port
                    plan.ports[fam][f"{a},{proto}:{e.port}"] = e.pattern
    return plan


# -- applying, removing, status -------------------------------------------------------

@dataclass
class Snapshot:
    v4: str
    v6: str
    sets: str

    @staticmethod
    def _normalize(save: str) -> str:
        # comments carry timestamps and counters move with traffic: neither is a rule
        out = [re.sub(r"\[\d+:\d+\]", "[0:0]", ln) for ln in save.splitlines() if not ln.startswith("#")]
        return "\n".join(out)

    def same_rules(self, other: "Snapshot") -> bool:
        return (self._normalize(self.v4) == self._normalize(other.v4)
                and self._normalize(self.v6) == self._normalize(other.v6) and self.sets == other.sets)


@dataclass
class Status:
    on: bool
    allowlist: list[str]
    dropped_packets: dict[int, int]
    set_entries: dict[int, int]
    applied_at: float | None = None
    partial: bool = False  # the chain exists in one family only, or the hook is missing


class Firewall:
    """The firewall of one namespace. ``state_key`` names the file that remembers the
    allowlist it carries (the kernel only knows addresses)."""

    def __init__(self, runner: NamespaceRunner, state_key: str):
        self.runner = runner
        self.state_key = re.sub(r"[^A-Za-z0-9_.-]", "_", state_key)

    # the state file: what allowlist is in force, for `status` and for the screen
    @property
    def state_path(self) -> str:
        return os.path.join(STATE_DIR, f"{self.state_key}.json")

    def snapshot(self) -> Snapshot:
        r = self.runner
        return Snapshot(r.run("iptables-save", ["-t", "filter"]), r.run("ip6tables-save", ["-t", "filter"]),
                        self._set_list())

    def _set_list(self) -> str:
        """`ipset list` of our sets only, minus what changes by itself (timeouts, initval)."""
        out = self.runner.run("ipset", ["list", "-n"])
        return "\n".join(sorted(ln for ln in out.splitlines() if ln.startswith("egress-tui")))

    def apply(self, plan: Plan) -> None:
        """Load the plan whole, or leave the namespace exactly as it was."""
        r = self.runner
        r.check_tools()
        before = self.snapshot()
        existing = set(before.sets.splitlines())
        live = [name for pair in SETS.values() for name in pair]
        created: list[str] = []
        swapped: list[str] = []   # each swap, so a failure half-way undoes exactly those
        done4 = False
        try:
            # 1. the new contents, aside
            r.run("ipset", ["-exist", "restore"], input=plan.ipset_script(NEW))
            r.run("ipset", ["-exist", "create", SYNC_SET, "hash:ip", "family", "inet", "timeout", "1"])
            if SYNC_SET not in existing:
                created.append(SYNC_SET)
            # 2. empty live sets where none exist yet, so the swap and the rules have a target
            for name in live:
                if name not in existing:
                    fam = "inet6" if "v6" in name else "inet"
                    kind = "hash:net,port" if name.endswith("-port") else "hash:net"
                    r.run("ipset", ["create", name, kind, "family", fam, "timeout", "0", "comment"])
                    created.append(name)
            # 3. swap: the live sets now hold the new entries (the old ones sit in *-new)
            for name in live:
                r.run("ipset", ["swap", name + NEW, name])
                swapped.append(name)
            # 4. one transaction per family
            r.run("iptables-restore", ["--noflush"], input=plan.iptables_script(4, _hooked(before.v4)))
            done4 = True
            r.run("ip6tables-restore", ["--noflush"], input=plan.iptables_script(6, _hooked(before.v6)))
        except FirewallError:
            self._rollback(before, swapped, done4, created)
            raise
        finally:
            for name in live:
                r.run("ipset", ["destroy", name + NEW], check=False)
        self._save_state(plan)

    def _rollback(self, before: Snapshot, swapped: list[str], done4: bool, created: list[str]) -> None:
        r = self.runner
        if done4:
            r.run("iptables-restore", ["-T", "filter"], input=before.v4, check=False)
        for name in swapped:
            r.run("ipset", ["swap", name + NEW, name], check=False)
        for name in created:
            r.run("ipset", ["destroy", name], check=False)

    def remove(self) -> bool:
        """Delete the chain, its hook and the sets; False if there was nothing to remove."""
        r = self.runner
        r.check_tools()
        found = False
        for fam, (save, restore) in {4: ("iptables-save", "iptables-restore"),
                                     6: ("ip6tables-save", "ip6tables-restore")}.items():
            current = r.run(save, ["-t", "filter"])
            if f":{CHAIN} " not in current:
                continue
            found = True
            lines = ["*filter"]
            lines += [f"-D OUTPUT -j {CHAIN}"] * _hooked_count(current)
            lines += [f"-F {CHAIN}", f"-X {CHAIN}", "COMMIT"]
            r.run(restore, ["--noflush"], input="\n".join(lines) + "\n")
        for name in self._set_list().splitlines():
            r.run("ipset", ["destroy", name])
            found = True
        try:
            os.unlink(self.state_path)
        except OSError:
            pass
        return found

    def status(self) -> Status:
        r = self.runner
        r.check_tools()
        drops: dict[int, int] = {}
        present = {}
        for fam, save in ((4, "iptables-save"), (6, "ip6tables-save")):
            out = r.run(save, ["-c", "-t", "filter"])
            present[fam] = (f":{CHAIN} " in out, _hooked(out))
            drops[fam] = sum(int(m.group(1)) for m in re.finditer(
                rf"^\[(\d+):\d+\] -A {CHAIN} .*-j (?:DROP|REJECT)", out, re.M))
        entries = {}
        for fam, (plain, with_port) in SETS.items():
            n = 0
            for name in (plain, with_port):
                out = r.run("ipset", ["list", name, "-t"], check=False)
                m = re.search(r"Number of entries: (\d+)", out)
                n += int(m.group(1)) if m else 0
            entries[fam] = n
        on = all(p[0] and p[1] for p in present.values())
        partial = any(p[0] or p[1] for p in present.values()) and not on
        state = self._load_state()
        return Status(on=on, allowlist=state.get("allowlist", []) if on else [], dropped_packets=drops,
                      set_entries=entries, applied_at=state.get("applied_at") if on else None, partial=partial)

    def _save_state(self, plan: Plan) -> None:
        os.makedirs(STATE_DIR, mode=0o700, exist_ok=True)
        data = plan.to_json()
        data["applied_at"] = time.time()
        tmp = self.state_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, self.state_path)

    def _load_state(self) -> dict:
        try:
            with open(self.state_path, encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}


def _hooked(save: str) -> bool:
    return _hooked_count(save) > 0


def _hooked_count(save: str) -> int:
    return len(re.findall(rf"^(?:\[\d+:\d+\] )?-A OUTPUT -j {CHAIN}$", save, re.M))


class SetUpdater:
    """Adds addresses to the live sets as DNS answers for allowed names go by.

    A persistent ``ipset restore`` reads one command per line, so an address is in the
    set within a millisecond or so of the answer being captured, usually before the
    client's SYN. Entries time out after the record's TTL (at least MIN_TTL).
    """

    def __init__(self, runner: NamespaceRunner):
        self.runner = runner
        self.proc: subprocess.Popen | None = None
        self.added: dict[str, float] = {}   # addr -> expiry (to skip repeats)
        self.errors = 0

    def add(self, addr: str, ttl: int, name: str, port: int | None = None) -> bool:
        now = time.monotonic()
        key = f"{addr},{port}"
        if self.added.get(key, 0) > now + MIN_TTL / 2:
            return False
        try:
            ipaddress.ip_address(addr)
        except ValueError:
            return False
        fam = 6 if ":" in addr else 4
        timeout = max(int(ttl), MIN_TTL)
        why = _comment("dns " + name)
        if port is None:
            line = f'add {SETS[fam][0]} {addr} timeout {timeout} comment "{why}" -exist\n'
        else:
            line = "".join(f'add {SETS[fam][1]} {addr},{proto}:{port} timeout {timeout} comment "{why}" -exist\n'
                           for proto in ("tcp", "udp"))
        line += f"add {SYNC_SET} 127.0.0.1 -exist\n"
        if not self._send(line):
            return False
        self.added[key] = now + timeout
        return True

    def _send(self, lines: str) -> bool:
        """Hand commands to the persistent ``ipset restore``; False (and counted) on failure."""
        try:
            if self.proc is None or self.proc.poll() is not None:
                self.proc = self.runner.popen("ipset", ["-exist", "restore"])
            self.proc.stdin.write(lines)
            self.proc.stdin.flush()
        except (OSError, ValueError):
            self.errors += 1
            self.proc = None
            return False
        return True

    def remove(self, addr: str, port: int | None = None) -> None:
        """Take an address back out of the sets (its DNS answer turned out not to be trusted)."""
        try:
            ipaddress.ip_address(addr)
        except ValueError:
            return
        fam = 6 if ":" in addr else 4
        if port is None:
            line = f"del {SETS[fam][0]} {addr} -exist\n"
        else:
            line = "".join(f"del {SETS[fam][1]} {addr},{proto}:{port} -exist\n" for proto in ("tcp", "udp"))
        self.added.pop(f"{addr},{port}", None)
        self._send(line)

    def close(self) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
        self.proc = None


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


# -- one call for the CLI and the screen -----------------------------------------------

@dataclass
class Check:
    """One verification probe after apply, like the seed's `curl example.com` check."""

    what: str      # "denied" or "allowed"
    name: str
    address: str
    port: int
    result: str    # connected, refused, timeout, unreachable, ...
    ok: bool


def _runner(where) -> "NamespaceRunner | HelperRunner":
    return NamespaceRunner(where) if isinstance(where, int) else where


def verify(where, plan: Plan, resolvers: list[str], denied_name: str = "example.com") -> list[Check]:
    """From inside the namespace (``where``: a pid or a runner): a denied address must be
    unreachable; an allowed one reachable, or reported unreachable for other reasons."""
    runner = _runner(where)
    allowed_addrs = set(plan.nets[4]) | set(plan.nets[6])
    todo: list[tuple[str, str, str, int]] = []
    got = runner.resolve([denied_name], resolvers)
    for addr, _ttl in got.get(denied_name, [])[:1]:
        if addr not in allowed_addrs:
            todo.append(("denied", denied_name, addr, 443))
    for name, addrs in plan.resolved.items():
        if addrs:
            port = 443
            for e in plan.allowlist:
                if e.startswith(name + ":"):
                    port = int(e.rsplit(":", 1)[1])
            todo.append(("allowed", name, addrs[0], port))
            break
    results = runner.probes([(a, p) for _w, _n, a, p in todo])
    return [Check(w, n, a, p, r, r != "connected" if w == "denied" else True)
            for (w, n, a, p), r in zip(todo, results)]


def plan_for(where, allowlist: Allowlist, resolvers: list[str], reject: bool = False) -> Plan:
    """Resolve the allowlist's names through the container's own resolvers, then plan."""
    names = [e.pattern for e in allowlist.entries if e.network is None and not e.wildcard]
    resolved = _runner(where).resolve(names, resolvers) if names else {}
    return build_plan(allowlist, resolved, resolvers, reject)


class Guard:
    """The firewall of one running container while egress-tui watches it: apply, remove,
    and feed it the DNS answers the capture sees (``on_dns_answer`` is the engine hook)."""

    def __init__(self, firewall: Firewall, pid: int, resolvers: list[str]):
        self.firewall = firewall
        self.pid = pid
        self.resolvers = resolvers
        self.allowlist: Allowlist | None = None
        self.plan: Plan | None = None
        self.updater = SetUpdater(firewall.runner)
        self.learned = 0

    @property
    def on(self) -> bool:
        return self.plan is not None

    def apply(self, allowlist: Allowlist, reject: bool = False, check: bool = True) -> tuple[Plan, list[Check]]:
        runner = self.firewall.runner
        plan = plan_for(runner, allowlist, self.resolvers, reject)
        self.firewall.apply(plan)
        self.allowlist, self.plan = allowlist, plan
        self.updater.added.clear()
        return plan, (verify(runner, plan, self.resolvers) if check else [])

    def remove(self) -> None:
        self.updater.close()
        self.firewall.remove()
        self.plan = None
        self.firewall.runner.close()

    def on_dns_answer(self, name: str, addr: str, ttl: int) -> None:
        al = self.allowlist
        if self.plan is None or al is None:
            return
        for e in al.entries:
            if e.network is None and e.matches_name(name):
                if self.updater.add(addr, ttl, name, e.port):
                    self.learned += 1

    def on_dns_withdraw(self, name: str, addr: str) -> None:
        """A DNS answer the sets learned from was contradicted: take its address out again,
        unless the plan itself allowed that address (resolved at apply time)."""
        if self.plan is None:
            return
        fam = 6 if ":" in addr else 4
        if addr in self.plan.nets[fam]:
            return
        ports = {e.port for e in (self.allowlist.entries if self.allowlist else []) if e.matches_name(name)}
        for port in ports:
            self.updater.remove(addr, port)

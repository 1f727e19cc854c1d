"""Applying, removing and checking the firewall in a namespace, atomically: sets filled
aside and swapped in, each family's rules in one iptables-restore, rollback on failure.
"""

from __future__ import annotations
import ipaddress
import json
import os
import re
import time
from dataclasses import dataclass, field
from egress_tui.core.allowlist import Allowlist
from egress_tui.core.proxy import ProxyConfig
from egress_tui.firewall.plan import (CHAIN, FirewallError, NEW, Plan, SETS, STATE_DIR, SYNC_SET, build_plan,
                                      build_proxy_plan, proxy_allowlist)
from egress_tui.firewall.runners import HelperRunner, NamespaceRunner

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
    mode: str = ""         # "allowlist" or "proxy" while on ("" when off, or applied by a script)
    proxies: list[str] = field(default_factory=list)  # proxy mode: the proxies' URLs, masked


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
                      set_entries=entries, applied_at=state.get("applied_at") if on else None, partial=partial,
                      mode=state.get("mode", "allowlist") if on and state else "",
                      proxies=list(state.get("proxies", [])) if on else [])

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
    unreachable; an allowed one reachable, or reported unreachable for other reasons.

    Proxy-only (``plan.mode == "proxy"``) checks more, since a proxy that is not let through
    leaves no way out at all: the rules are in place in both families, each proxy's address
    and port is in the kernel's set, the proxy answers (reported), and the proxy's own
    address on another port is unreachable."""
    runner = _runner(where)
    allowed_addrs = set(plan.nets[4]) | set(plan.nets[6])
    todo: list[tuple[str, str, str, int]] = []
    got = runner.resolve([denied_name], resolvers)
    for addr, _ttl in got.get(denied_name, [])[:1]:
        if addr not in allowed_addrs:
            todo.append(("denied", denied_name, addr, 443))
    kernel: list[Check] = []
    if plan.mode == "proxy":
        kernel.append(_rules_check(runner))
        members = _port_members(runner)
        for name, addr, port in _proxy_targets(plan):
            ok = all((_addr_key(addr), proto, port) in members for proto in plan.protocols)
            kernel.append(Check("in set", name, addr, port, "in the set" if ok else "MISSING from the set", ok))
            todo.append(("allowed", name, addr, port))
            other = 443 if port != 443 else 80
            todo.append(("denied", f"{name} (another port)", addr, other))
    else:
        for name, addrs in plan.resolved.items():
            if addrs:
                port = 443
                for e in plan.allowlist:
                    if e.startswith(name + ":"):
                        port = int(e.rsplit(":", 1)[1])
                todo.append(("allowed", name, addrs[0], port))
                break
    results = runner.probes([(a, p) for _w, _n, a, p in todo])
    return kernel + [Check(w, n, a, p, r, r != "connected" if w == "denied" else True)
                     for (w, n, a, p), r in zip(todo, results)]


def _proxy_targets(plan: Plan) -> list[tuple[str, str, int]]:
    """(name, first address, port) of each proxy entry of a proxy-only plan."""
    out = []
    for text in plan.allowlist:
        host, _, port = text.rpartition(":")
        host = host.strip("[]")
        addrs = plan.resolved.get(host) or [host]
        out.append((host, addrs[0], int(port)))
    return out


def _addr_key(addr: str) -> str:
    try:
        return str(ipaddress.ip_address(addr))
    except ValueError:
        return addr


def _port_members(runner) -> set[tuple[str, str, int]]:
    """(address, protocol, port) of every entry of the live port sets, as the kernel has them."""
    out: set[tuple[str, str, int]] = set()
    for fam in (4, 6):
        text = runner.run("ipset", ["list", SETS[fam][1]], check=False)
        for ln in text.split("Members:", 1)[-1].splitlines() if "Members:" in text else []:
            m = re.match(r"(\S+),(tcp|udp):(\d+)\b", ln.strip())
            if m:
                out.add((_addr_key(m.group(1)), m.group(2), int(m.group(3))))
    return out


def _rules_check(runner) -> Check:
    """The chain, its hook from OUTPUT and its final DROP or REJECT, in both families."""
    missing = []
    for fam, save in ((4, "iptables-save"), (6, "ip6tables-save")):
        out = runner.run(save, ["-t", "filter"], check=False)
        if (f":{CHAIN} " not in out or not _hooked(out)
                or not re.search(rf"^-A {CHAIN} .*-j (?:DROP|REJECT)", out, re.M)):
            missing.append(f"IPv{fam}")
    ok = not missing
    return Check("rules", CHAIN, "", 0, "in place (IPv4, IPv6)" if ok else "MISSING in " + ", ".join(missing), ok)


def plan_for(where, allowlist: Allowlist, resolvers: list[str], reject: bool = False) -> Plan:
    """Resolve the allowlist's names through the container's own resolvers, then plan."""
    names = [e.pattern for e in allowlist.entries if e.network is None and not e.wildcard]
    resolved = _runner(where).resolve(names, resolvers) if names else {}
    return build_plan(allowlist, resolved, resolvers, reject)


def plan_for_proxy(where, proxy: ProxyConfig, resolvers: list[str], reject: bool = False) -> Plan:
    """Proxy-only: resolve the proxies' names through the container's own resolvers (as
    allowlist names are), then plan. FirewallError, one line, when a proxy is on loopback or
    its name does not resolve: nothing is applied."""
    al = proxy_allowlist(proxy)  # refuses loopback before anything is looked up
    names = [e.pattern for e in al.entries if e.network is None]
    resolved = _runner(where).resolve(names, resolvers) if names else {}
    return build_proxy_plan(proxy, resolved, resolvers, reject)

"""Keeping the firewall's sets current while egress-tui captures: trusted DNS answers for
allowed names add their addresses (with a TTL timeout), contradicted ones take them out.
"""

from __future__ import annotations
import ipaddress
import subprocess
import time
from egress_tui.core.allowlist import Allowlist
from egress_tui.firewall.apply import Check, Firewall, plan_for, verify
from egress_tui.firewall.plan import MIN_TTL, Plan, SETS, SYNC_SET, _comment
from egress_tui.firewall.runners import NamespaceRunner

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

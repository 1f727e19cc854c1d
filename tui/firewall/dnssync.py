"""Keeping the firewall's sets current while egress-tui captures: trusted DNS answers for
allowed names add their addresses (with a TTL timeout), contradicted ones take them out.

The capture thread only hands each answer to a queue (``Guard.on_dns_answer``); the Guard's
own worker thread writes to the sets, so a slow ``ipset`` (or, in helper mode, a Docker API
call) never holds up the capture, and the capture's lock never waits on either.
"""

from __future__ import annotations
import ipaddress
import queue
import subprocess
import threading
import time
from dataclasses import dataclass
from egress_tui.core.allowlist import Allowlist, Entry
from egress_tui.core.proxy import ProxyConfig
from egress_tui.firewall.apply import Check, Firewall, plan_for, plan_for_proxy, verify
from egress_tui.firewall.plan import MIN_TTL, PORT_PROTOCOLS, Plan, SETS, SYNC_SET, _comment, proxy_allowlist
from egress_tui.firewall.runners import NamespaceRunner

# DNS updates waiting for the worker. A container resolves a few names a second; thousands
# waiting means ipset has stopped reading, and then the oldest updates are already stale.
QUEUE_SIZE = 4096
# how long close() waits for the update in hand before ending the ipset process under it
JOIN_TIMEOUT = 5.0
_STOP = ("stop", "", "", 0)


class SetUpdater:
    """Adds addresses to the live sets as DNS answers for allowed names go by.

    A persistent ``ipset restore`` reads one command per line, so an address is in the
    set a millisecond or two after the answer was captured (bench/live.py). A client that
    connects the moment its lookup returns is often quicker: its first SYN is dropped and
    the kernel's retry, a second later, gets through. Entries time out after the record's
    TTL (at least MIN_TTL).

    Used by one thread at a time (the Guard's worker, or the Guard under its lock).
    ``errors`` counts updates that were lost (ipset would not start, stopped reading, or
    refused a line); ``last_error`` says why, for the screen.
    """

    def __init__(self, runner: NamespaceRunner):
        self.runner = runner
        self.proc: subprocess.Popen | None = None
        self.added: dict[str, float] = {}   # "addr,port" -> expiry (to skip repeats)
        self.errors = 0
        self.last_error = ""

    def add(self, addr: str, ttl: int, name: str, port: int | None = None,
            protocols: tuple[str, ...] | list[str] = PORT_PROTOCOLS) -> bool:
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
                           for proto in protocols)
        line += f"add {SYNC_SET} 127.0.0.1 -exist\n"
        if not self._send(line):
            return False
        self.added[key] = now + timeout
        return True

    def remove(self, addr: str, port: int | None = None,
               protocols: tuple[str, ...] | list[str] = PORT_PROTOCOLS) -> bool:
        """Take an address back out of the sets (its DNS answer turned out not to be trusted)."""
        try:
            ipaddress.ip_address(addr)
        except ValueError:
            return False
        fam = 6 if ":" in addr else 4
        if port is None:
            line = f"del {SETS[fam][0]} {addr} -exist\n"
        else:
            line = "".join(f"del {SETS[fam][1]} {addr},{proto}:{port} -exist\n" for proto in protocols)
        line += f"add {SYNC_SET} 127.0.0.1 -exist\n"  # else the del waits in ipset for the next command
        self.added.pop(f"{addr},{port}", None)
        return self._send(line)

    def _send(self, lines: str) -> bool:
        """Hand commands to the persistent ``ipset restore``; False (and counted) on failure."""
        try:
            if self.proc is not None and self.proc.poll() is not None:
                # it exited: a line it refused (its set was removed behind our back, say) ended
                # it, and whatever was written after that line is lost too
                self.count_error(self._end() or "ipset restore exited")
            if self.proc is None:
                self.proc = self.runner.popen("ipset", ["-exist", "restore"])
            self.proc.stdin.write(lines)
            self.proc.stdin.flush()
        except (OSError, ValueError) as e:
            self.count_error(self._end() or f"cannot write to ipset restore: {e}")
            return False
        return True

    def count_error(self, why: str) -> None:
        self.errors += 1
        self.last_error = why

    def _end(self) -> str:
        """Stop the ipset process (if it still runs); its last error line, or ""."""
        p, self.proc = self.proc, None
        if p is None:
            return ""
        p.kill()
        return _reason(p)

    def interrupt(self) -> None:
        """From another thread: end the ipset process, so a write stuck on it fails at once."""
        p = self.proc
        if p is not None:
            p.kill()

    def close(self) -> None:
        """Let ipset finish what it was given; a refused line or a hang counts as an error."""
        p, self.proc = self.proc, None
        if p is None:
            return
        try:
            p.stdin.close()
        except (OSError, ValueError):
            pass  # it had already stopped reading: the write that found out counted it
        try:
            code = p.wait(JOIN_TIMEOUT)
        except subprocess.TimeoutExpired:
            p.kill()
            self.count_error("ipset restore did not finish its last updates in time; killed")
            _reason(p)
            return
        if code:  # a line was refused, and what came after it never reached the sets
            self.count_error(_reason(p) or f"ipset restore exited with {code}")


def _reason(p) -> str:
    """The last line an ended ipset process wrote to stderr, as "ipset: ...", or ""."""
    try:
        p.wait(JOIN_TIMEOUT)
    except subprocess.TimeoutExpired:
        return "ipset restore did not exit when killed"
    err = getattr(p, "stderr", None)  # a helper's exec has none
    try:
        text = err.read(4000) if err is not None else ""
    except (OSError, ValueError):
        return ""
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return f"ipset: {lines[-1]}" if lines else ""


@dataclass(frozen=True)
class _Applied:
    """What the guard put in force: its own copy of the allowlist (never handed out, never
    changed) and the plan made from it; in proxy-only mode the allowlist is the proxies'
    ``host:port`` entries, and ``proxy`` the settings they came from."""
    allowlist: Allowlist
    keys: frozenset[tuple[str, int | None]]
    plan: Plan
    proxy: ProxyConfig | None = None


def _keys(allowlist: Allowlist) -> frozenset[tuple[str, int | None]]:
    """What the firewall enforces of an allowlist: its patterns and ports, not comments or order."""
    return frozenset((e.pattern, e.port) for e in allowlist.entries)


class Guard:
    """The firewall of one running container while egress-tui watches it: apply, remove,
    and feed it the DNS answers the capture sees (``on_dns_answer`` is the engine hook).

    In proxy-only mode (``apply_proxy``) it enforces the proxies instead: only the proxies'
    addresses, and DNS answers only ever add addresses of the proxies' names.

    It enforces a copy of the allowlist it was given: changing the session's allowlist
    changes nothing here until the next ``apply`` (``carries`` tells whether they differ).
    DNS updates wait in a bounded queue for the guard's worker thread, started by ``apply``
    and joined by ``close`` and ``remove``; when the queue is full an update is dropped and
    counted in ``dropped``, and the capture thread never waits.
    """

    def __init__(self, firewall: Firewall, pid: int, resolvers: list[str], queue_size: int = QUEUE_SIZE):
        self.firewall = firewall
        self.pid = pid
        self.resolvers = resolvers
        self.updater = SetUpdater(firewall.runner)
        self.learned = 0     # addresses the worker added to the sets
        self.dropped = 0     # DNS updates lost because the queue was full
        self._applied: _Applied | None = None
        self._queue: queue.Queue[tuple[str, str, str, int]] = queue.Queue(queue_size)
        # one writer to the sets at a time: the worker, or apply/remove swapping them
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._progress = threading.Condition()
        self._queued = 0     # updates put in the queue (by the capture thread)
        self._handled = 0    # updates the worker is done with (written, refused or given up)

    # -- what is in force -------------------------------------------------------------------

    @property
    def on(self) -> bool:
        return self._applied is not None

    @property
    def plan(self) -> Plan | None:
        a = self._applied
        return a.plan if a else None

    @property
    def mode(self) -> str:
        """"allowlist" or "proxy" while on, "" when off."""
        a = self._applied
        return a.plan.mode if a else ""

    @property
    def proxy(self) -> ProxyConfig | None:
        """The proxy settings enforced in proxy-only mode (None otherwise)."""
        a = self._applied
        return a.proxy if a else None

    @property
    def allowlist(self) -> Allowlist | None:
        """A copy of the allowlist in force (None when off): changing it changes nothing.
        In proxy-only mode: the proxies' ``host:port`` entries."""
        a = self._applied
        return a.allowlist.copy() if a else None

    @property
    def applied_entries(self) -> tuple[Entry, ...]:
        a = self._applied
        return a.allowlist.entries if a else ()

    def carries(self, allowlist: Allowlist) -> bool:
        """True when the firewall is on in allowlist mode and enforces exactly these entries
        (patterns and ports; comments and order do not matter to it)."""
        a = self._applied
        return a is not None and a.proxy is None and a.keys == _keys(allowlist)

    def learned_addresses(self) -> set[str]:
        """Addresses the worker has added from DNS answers (safe from any thread)."""
        return {k.split(",")[0] for k in self.updater.added.copy()}

    # -- apply, remove, close -----------------------------------------------------------------

    def apply(self, allowlist: Allowlist, reject: bool = False, check: bool = True) -> tuple[Plan, list[Check]]:
        mine = allowlist.copy()
        plan = plan_for(self.firewall.runner, mine, self.resolvers, reject)
        return self._put_in_force(_Applied(mine, _keys(mine), plan), check)

    def apply_proxy(self, proxy: ProxyConfig, reject: bool = False, check: bool = True) -> tuple[Plan, list[Check]]:
        """Proxy-only: the only way out is the proxies. FirewallError (one line, nothing
        changed) when a proxy is on loopback, or its name does not resolve."""
        plan = plan_for_proxy(self.firewall.runner, proxy, self.resolvers, reject)
        mine = proxy_allowlist(proxy)
        return self._put_in_force(_Applied(mine, _keys(mine), plan, proxy), check)

    def _put_in_force(self, applied: _Applied, check: bool) -> tuple[Plan, list[Check]]:
        runner = self.firewall.runner
        plan = applied.plan
        with self._lock:
            self.firewall.apply(plan)
            # fresh sets were swapped in: what the updater remembers adding is not in them, and
            # its ipset process may sit in the namespace of a container that has since restarted
            self.updater.added.clear()
            self.updater.close()
            self._applied = applied
        self._start()
        return plan, (verify(runner, plan, self.resolvers) if check else [])

    def remove(self) -> None:
        self._halt()
        try:
            with self._lock:
                self.updater.close()
                self.firewall.remove()
                self._applied = None
        except BaseException:
            if self._applied is not None:
                self._start()  # still on: keep feeding it
            raise
        self.firewall.runner.close()

    def forget(self) -> None:
        """The namespace went away with the rules in it (the container restarted)."""
        self._halt()
        with self._lock:
            self.updater.close()
            self._applied = None

    def close(self) -> None:
        """Stop feeding the firewall and end its processes; the rules stay as they are."""
        self._halt()
        with self._lock:
            self.updater.close()
        self.firewall.runner.close()

    # -- the capture thread's side: enqueue and return ----------------------------------------

    def on_dns_answer(self, name: str, addr: str, ttl: int) -> None:
        self._enqueue("add", name, addr, ttl)

    def on_dns_withdraw(self, name: str, addr: str) -> None:
        """A DNS answer the sets learned from was contradicted: take its address out again,
        unless the plan itself allowed that address (resolved at apply time)."""
        self._enqueue("del", name, addr, 0)

    def _enqueue(self, kind: str, name: str, addr: str, ttl: int) -> None:
        a = self._applied
        if a is None or self._stop.is_set():
            return
        # an index lookup in an allowlist nobody changes: answers for other names never
        # take a place in the queue
        if a.allowlist.match(name) is None:
            return
        try:
            self._queue.put_nowait((kind, name, addr, ttl))
        except queue.Full:
            self.dropped += 1
            return
        self._queued += 1

    def flush(self, timeout: float = JOIN_TIMEOUT) -> bool:
        """Wait until the worker is done with every update queued so far (each written to
        ipset, refused, or given up by close); False if that takes longer than ``timeout``."""
        target = self._queued
        with self._progress:
            return self._progress.wait_for(lambda: self._handled >= target, timeout)

    def _handled_one(self) -> None:
        with self._progress:
            self._handled += 1
            self._progress.notify_all()

    # -- the worker ---------------------------------------------------------------------------

    def _start(self) -> None:
        if self._worker is not None and self._worker.is_alive():
            return
        self._stop.clear()
        self._worker = threading.Thread(target=self._work, name="egress-dns-sets", daemon=True)
        self._worker.start()

    def _halt(self) -> None:
        self._stop.set()
        w, self._worker = self._worker, None
        if w is not None:
            try:
                self._queue.put_nowait(_STOP)
            except queue.Full:
                pass  # the worker looks at _stop after the update in hand
            w.join(JOIN_TIMEOUT)
            if w.is_alive():
                self.updater.interrupt()  # a write stuck on an ipset that stopped reading
                w.join(JOIN_TIMEOUT)
            if w.is_alive():
                self.updater.count_error("the DNS set worker did not stop")
        while True:  # what nobody will apply any more
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                self._handled_one()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if self._stop.is_set():
                self._handled_one()
                return
            try:
                with self._lock:
                    self._update(*item)
            except Exception as e:  # a bug: said on the screen, where a thread's traceback is not
                self.updater.count_error(f"the DNS set worker stopped: {type(e).__name__}: {e}")
                return
            finally:
                self._handled_one()

    def _update(self, kind: str, name: str, addr: str, ttl: int) -> None:
        # matched again against what is in force now: the firewall may have been
        # re-applied with another allowlist since the answer was queued
        a = self._applied
        if a is None:
            return
        ports = list(dict.fromkeys(e.port for e in a.allowlist.matching(name) if e.network is None))
        protocols = a.plan.protocols
        if kind == "add":
            for port in ports:
                if self.updater.add(addr, ttl, name, port, protocols):
                    self.learned += 1
            return
        fam = 6 if ":" in addr else 4
        if addr in a.plan.nets[fam]:
            return
        for port in ports:
            # an address the plan itself allowed on this port (a proxy's, resolved at apply
            # time) stays: only what DNS answers added goes
            if port is not None and any(f"{addr},{p}:{port}" in a.plan.ports[fam] for p in protocols):
                continue
            self.updater.remove(addr, port, protocols)

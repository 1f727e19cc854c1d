"""One inspection of one target, and everything it starts.

An ``Inspection`` owns, for one container (or one replayed capture): the capture source and
its thread, the pcap recording, the helper containers, the firewall guard and its runner, and
the runs. It is a context manager, and ``close()`` (idempotent) releases all of it on every
way out: it stops the capture and drains it (every packet captured before the stop reaches
the engine and the recording), stops the firewall's DNS updates, and removes every helper
container the inspection started. It never changes the firewall itself: taking it off is
``remove_firewall()``; a firewall left on stays on.

``open_inspection`` builds one, for the CLI commands and for the screen alike. Its methods
may wait on Docker, iptables and the capture lock: the screen calls them from workers.
Nothing here imports Textual.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable

from egress_tui.core.procs import run_tag
from egress_tui.core.proxy import ProxyConfig
from egress_tui.core.runs import (RunError, RunRecord, RunSpec, hosts_during, proxy_names, proxy_secrets,
                                  run_proxy)
from egress_tui.core.secrets import redact, secret_values
from egress_tui.firewall.apply import Firewall
from egress_tui.firewall.dnssync import Guard
from egress_tui.firewall.plan import FirewallError
from egress_tui.firewall.runners import HelperRunner, NamespaceRunner
from egress_tui.live.capture import Batch, Capturer, NetnsSource, ReplaySource
from egress_tui.live import containers
from egress_tui.live.containers import (DEFAULT_HELPER_IMAGE, ContainerInfo, ContainerSource, DockerError,
                                        HelperSource)
from egress_tui.live.engines import ContainerEngine, connect, locate, wrap
from egress_tui.live.namespaces import NamespaceError, NamespaceTarget, namespace_at, namespace_of_pid
from egress_tui.live.procs import Attributor
from egress_tui.live.procs_helper import AgentTable
from egress_tui.live.recorder import PcapngRecorder
from egress_tui.live.helpers import HelperOwner, reap_orphans, remove_helpers

# After a run ends, how long its late packets (FIN, a last SYN retry) still count as its own.
LATE_PACKETS = 1.0
# What a rerun on a bare namespace says: there is nothing to run a command through.
RERUN_NEEDS_ENGINE = ("reruns need a container engine (a command runs through Docker's or Podman's exec): "
                      "--pid and --netns give only a namespace; name the container instead")
# How long close() waits for the capture to drain (a helper's tcpdump gets a few seconds to
# exit, then is removed, which ends its stream).
DRAIN_TIMEOUT = 15.0


class InspectionError(Exception):
    """An inspection cannot start as asked; one line, says what to do."""


def set_engine_proxy(engine, proxy: ProxyConfig, addresses: dict[str, list[str]] | None = None) -> bool:
    """Tell an engine which proxies the target goes through (and, when known, the addresses
    their names resolve to), so it can tell traffic through them from traffic that bypasses
    them; False when there is none or the engine cannot take it."""
    setter = getattr(engine, "set_proxy_config", None)
    if not proxy or setter is None:
        return False
    if addresses:
        setter(proxy, addresses)
    else:
        setter(proxy)
    return True


class Inspection:
    """One target watched (and maybe locked down) by egress-tui, and all it started."""

    def __init__(self, *, source=None, container: ContainerInfo | None = None, dc=None, method: str = "",
                 target: str = "", helper_image: str | None = None, owner: HelperOwner | None = None,
                 guard=None, proxy: ProxyConfig | None = None, container_engine: ContainerEngine | None = None,
                 namespace: NamespaceTarget | None = None):
        self.dc = dc
        # the engine that knows the container (Docker or Podman: live/engines.py); None for a
        # replay or a bare namespace
        self.container_engine = container_engine or (wrap(dc) if dc is not None and container is not None else None)
        self.namespace = namespace          # --pid / --netns: a namespace with no engine behind it
        self.container = container
        self.method = method                # "netns (host)", "helper IMAGE" or "replay"
        self.target = target or (container.name if container else namespace.name if namespace else "")
        self.helper_image = helper_image or DEFAULT_HELPER_IMAGE
        self.owner = owner or HelperOwner()
        self.source = source                # built when the capture starts, unless given
        self.resolvers: list[str] | None = None   # the engine's DNS settings for the container
        self.firewall_refusal = ""          # why this target can have no firewall ("" if it can)
        self.notices: list[str] = []        # one line each, for the user (orphans removed, ...)
        self.capturer: Capturer | None = None
        self.attributor: Attributor | None = None  # which process opened each connection
        self._procs_refusal = ""            # why connections get no process ("" when they do)
        self.recording: str | None = None   # the pcap file the capture is recorded to
        self.runs: list[RunRecord] = []
        self.reapply_needed = False         # the container restarted with the firewall on
        self.reapply_allowlist = None       # then: the allowlist the firewall carried
        self.reapply_proxy = None           # then: the proxies, when it was proxy-only
        self._proxy = proxy                 # given for a bare namespace; else the container's
        self.proxy_addresses: dict[str, list[str]] | None = None  # proxy names, looked up at start
        self.closed = False
        self._halt = threading.Event()      # set by close(): a run going on stops
        self._recorder = None
        self.recording_summary: dict | None = None    # what the recording holds, once it is closed
        self.recording_description = ""
        self._temporary_recording = False
        self._guard = guard                 # made on first use for a container; given for a bare namespace
        self._guard_pid = guard.pid if guard is not None else 0
        self._lock = threading.Lock()       # _guard and closed: never held while waiting
        self._closing = threading.Lock()    # held for the whole of close()

    # -- a context manager that always closes ---------------------------------------------

    def __enter__(self) -> Inspection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def is_live(self) -> bool:
        """Watching a namespace as it runs (a container, or a namespace given with its guard)."""
        return self.container is not None or self._guard is not None or self.namespace is not None

    @property
    def description(self) -> str:
        return getattr(self.source, "description", self.target)

    @property
    def procs_refusal(self) -> str:
        """Why connections get no process, one line ("" while they do): the method cannot look
        them up, or the helper's agent could not start or died."""
        att = self.attributor
        return self._procs_refusal or (att.refusal if att is not None else "")

    @property
    def proxy(self) -> ProxyConfig:
        """The proxy settings of the target: those given (``--proxy``, for a capture file or a
        bare namespace), else the container's (from the engine's view of its environment);
        empty when there are none. Credentials stay in ProxyEndpoint.userinfo."""
        if self._proxy is not None:
            return self._proxy
        c = self.container
        return c.proxy if c is not None else ProxyConfig()

    # -- capture ----------------------------------------------------------------------------

    def start_capture(self, on_batch: Callable[[Batch], None] | None = None,
                      on_state: Callable[[str], None] | None = None, record: str | None = None) -> Capturer:
        """Start the capture thread. ``on_batch`` runs in that thread (hand the batch over,
        nothing more); ``on_state`` hears the container stop and restart; ``record``: a pcap
        path to record to, or "" for a temporary one removed at close."""
        if self.source is None:
            self.source = self._live_source()
        if hasattr(self.source, "on_state"):
            self.source.on_state = lambda text: self._state(text, on_state)
        with self._lock:  # a close() running meanwhile must find the thread, or prevent it
            if self.closed:
                raise InspectionError("this inspection is closed")
            if record is not None:
                if not record:
                    fd, record = tempfile.mkstemp(prefix="egress-tui-", suffix=".pcapng")
                    os.close(fd)
                    self._temporary_recording = True
                self.recording = record
                # pcapng, one interface per origin (eth0, lo, the firewall's drops): see recorder
                self._recorder = PcapngRecorder(record, source=self.source)
            self.capturer = Capturer(self.source, on_batch or (lambda batch: None), record=self._recorder)
            self.capturer.on_new_engine = lambda engine: set_engine_proxy(engine, self.proxy, self.proxy_addresses)
            set_engine_proxy(self.capturer.engine, self.proxy, self.proxy_addresses)
            self.attributor = self._attributor()
            if self.attributor is not None:
                self.attributor.start()
                self.capturer.attribute(self.attributor)
            if self._guard is not None:
                self.capturer.engine.on_dns_answer = self._guard.on_dns_answer
                self.capturer.engine.on_dns_withdraw = self._guard.on_dns_withdraw
            self.capturer.start()
        self._resolve_proxies()
        return self.capturer

    def can_look_up(self) -> bool:
        """Whether names can be looked up as the container would: from inside its namespace
        (the netns method, as root), through its resolvers; a bare namespace likewise."""
        if self.namespace is not None:
            return bool(os.geteuid() == 0 and self.resolvers)
        info = self.container
        return bool(info is not None and info.pid and self.method.startswith("netns") and os.geteuid() == 0
                    and self.resolvers)

    def look_up(self, names: list[str]) -> dict[str, list[tuple[str, int]]]:
        """``names`` looked up through the container's resolvers from inside its namespace, as
        the firewall looks its names up (blocking: call from a worker). Only when can_look_up()."""
        if not self.can_look_up():
            raise InspectionError("names are looked up in the container only from the host (--method netns, as root)")
        ns = self.namespace
        where = (ns.pid or ns.path) if ns is not None else self.container.pid
        return NamespaceRunner(where).resolve(names, list(self.resolvers or []))

    def _resolve_proxies(self) -> None:
        """The container may have looked its proxy's name up before the capture began: look it
        up now, through the container's own resolvers from inside its namespace, off the
        caller's thread, and tell the engine the addresses. Only where the namespace can be
        entered from here (the netns method, as root); elsewhere the engine learns them from
        the container's own lookups."""
        proxy = self.proxy
        names = sorted({ep.host for ep in (proxy.endpoints if proxy else []) if not ep.is_address})
        if not names or not self.can_look_up():
            return

        def run() -> None:
            try:
                got = self.look_up(names)
            except Exception:  # noqa: BLE001 - best effort; the engine still learns from DNS
                return
            addresses = {n: sorted({a for a, _ttl in got.get(n, [])}) for n in names}
            if not any(addresses.values()):
                return
            self.proxy_addresses = addresses
            cap = self.capturer
            if cap is not None:
                with cap.lock:
                    set_engine_proxy(cap.engine, proxy, addresses)

        threading.Thread(target=run, name="egress-tui-proxy-lookup", daemon=True).start()

    def _attributor(self) -> Attributor | None:
        """The process attribution: from the host where it can read the container's /proc (the
        netns method, as root; a container's init is followed across restarts), else from a
        helper container that shares the container's PID namespace (the helper method). None
        where neither can be, with the reason in procs_refusal."""
        src = self.source
        if self.method == "replay" or (self.container is None and not isinstance(src, NetnsSource)):
            self._procs_refusal = "a capture file does not say which process sent what"
            return None
        if isinstance(src, NetnsSource) and isinstance(src.pid, str):
            self._procs_refusal = "a namespace given by its path has no process to look processes up under"
            return None
        info = self.container
        init = (lambda: src.pid) if isinstance(src, NetnsSource) else (
            lambda: (getattr(self.source, "info", None) or info).pid)
        if not self.method.startswith("netns") and not isinstance(src, NetnsSource):
            table = AgentTable(self.dc, info.id, info.name, self.helper_image, owner=self.owner, init_pid=info.pid)
            return Attributor(init, table=table)
        if os.geteuid() != 0:
            self._procs_refusal = "looking up processes needs root (or --method helper)"
            return None
        return Attributor(init)

    def _live_source(self):
        ns = self.namespace
        if ns is not None:
            return NetnsSource(ns.pid or ns.path, ns.name, resolvers=ns.resolvers or None)
        info = self.container
        if self.method.startswith("netns"):
            return ContainerSource(self.dc, info.id, engine=self.container_engine)
        return HelperSource(self.dc, info.id, self.helper_image, owner=self.owner, engine=self.container_engine)

    def wait_ready(self, timeout: float = 20.0) -> bool:
        """Wait until the capture listens (what happens from then on is seen), and the process
        lookup is ready too (a helper's agent started, or refused); False if the capture ended
        or did not get there in time."""
        ready = getattr(self.source, "ready", None)
        cap = self.capturer
        if ready is None or cap is None:
            return cap is not None and cap.is_alive()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.05):
            if not cap.is_alive() or time.monotonic() > deadline:
                return ready.is_set()
        att = self.attributor
        if att is not None:
            att.ready.wait(max(0.0, deadline - time.monotonic()))
        return True

    def stop_capture(self, timeout: float = DRAIN_TIMEOUT) -> None:
        """Stop the capture and wait while it drains: afterwards the engine and the recording
        hold every packet captured before the stop."""
        cap = self.capturer
        if cap is None:
            return
        cap.stop()
        cap.join(timeout)
        if self._recorder is not None:
            with cap.lock:  # a capture thread that did not end in time may still be adding
                self._recorder.close()
                self.recording_summary = self._recorder.summary()
                self.recording_description = self._recorder.describe()
                self._recorder = None

    @property
    def engine(self):
        return self.capturer.engine if self.capturer else None

    @property
    def error(self) -> str | None:
        return self.capturer.error if self.capturer else None

    def host_connections(self, name: str) -> tuple[list[dict], dict[str, set[str]]] | None:
        """Flows of one host. While the capture runs, never waits for it: the host is watched
        and its flows come with the next batch (``Batch.watched``), and this returns None. Once
        the capture has ended, the engine is read directly."""
        cap = self.capturer
        if cap is None:
            return [], {}
        if cap.is_alive():
            cap.watch(name)
            return None
        with cap.lock:  # the thread is gone: nobody holds it
            h = cap.engine.hosts.get(name)
            conns = [c.to_dict() for c in h.conns] if h else []
            shared = cap.engine.shared_addresses()
        return conns, shared

    def clear(self) -> None:
        if self.capturer:
            self.capturer.clear()

    def save_recording(self, path: str) -> str:
        """Copy the recording so far to ``path`` (under the capture lock: the thread appends);
        returns what it holds, in words (packets per interface)."""
        if not self.recording or self.capturer is None:
            raise OSError("no packets captured yet")
        with self.capturer.lock:
            rec = self._recorder
            if rec is not None:
                rec.flush()
            shutil.copyfile(self.recording, path)
            return rec.describe() if rec is not None else self.recording_description

    def _state(self, text: str, then: Callable[[str], None] | None) -> None:
        """The container stopped or restarted (capture thread). A restart is a new namespace
        without our rules: the guard follows the new process, and a firewall that was on is
        marked to be applied again (``reapply_needed``)."""
        info = getattr(self.source, "info", None)
        guard = self._guard
        if guard is not None and info is not None and info.pid and info.pid != self._guard_pid:
            self._guard_pid = guard.pid = info.pid
            if getattr(guard.firewall.runner, "pid", None) is not None:
                guard.firewall.runner.pid = info.pid
            if guard.on:
                # the rules went with the old namespace; what they enforced is applied again
                self.reapply_allowlist = guard.allowlist
                self.reapply_proxy = guard.proxy
                guard.forget()
                self.reapply_needed = True
        if then:
            then(text)

    # -- firewall -----------------------------------------------------------------------------

    @property
    def guard(self):
        """The firewall guard of this container, made on first use (the runner, and for the
        helper method its helper container, only when the firewall is first touched).
        FirewallError when this target can have no firewall."""
        with self._lock:
            if self._guard is not None:
                return self._guard
            if self.closed:
                raise FirewallError("this inspection is closed")
            if self.namespace is not None:
                self._guard = self._namespace_guard(self.namespace)
                self._guard_pid = self._guard.pid
                guard = self._guard
        if self.namespace is not None:
            self._hook(guard)
            return guard
        with self._lock:
            if self._guard is not None:
                return self._guard
            if self.container is None:
                raise FirewallError("the firewall needs a live container captured from the host (as root)")
            if self.firewall_refusal:
                raise FirewallError(self.firewall_refusal)
            info = getattr(self.source, "info", None) or self.container
            if info.status != "running" or not info.pid:
                raise FirewallError(f"container {info.name} is {info.status}: start it first")
            if self.resolvers is None:
                raise FirewallError(f"cannot read the DNS settings of {info.name} from the engine")
            if self.method.startswith("netns"):
                if os.geteuid() != 0:
                    raise FirewallError("the firewall is applied from the host into the container's namespace: "
                                        "run as root, or use --method helper")
                runner = NamespaceRunner(info.pid)
            else:
                runner = HelperRunner(self.dc, info.id, self.helper_image, owner=self.owner, name=info.name)
            self._guard = Guard(Firewall(runner, info.id), info.pid, self.resolvers)
            self._guard_pid = info.pid
        self._hook(self._guard)
        return self._guard

    def _namespace_guard(self, ns: NamespaceTarget):
        """The firewall of a bare namespace (--pid, --netns), applied from the host."""
        if self.firewall_refusal:
            raise FirewallError(self.firewall_refusal)
        changed = ns.still_same()
        if changed:
            raise FirewallError(f"{changed}: nothing applied")
        if os.geteuid() != 0:
            raise FirewallError(f"the firewall is applied from the host into the namespace of {ns.name}: run as root")
        return Guard(Firewall(NamespaceRunner(ns.pid or ns.path), ns.state_key), ns.pid, list(ns.resolvers))

    def _hook(self, guard) -> None:
        """Trusted DNS answers the capture sees keep the firewall's sets current."""
        cap = self.capturer
        if cap is not None:
            with cap.lock:
                cap.engine.on_dns_answer = guard.on_dns_answer
                cap.engine.on_dns_withdraw = guard.on_dns_withdraw

    @property
    def made_guard(self):
        """The guard if one was made (None otherwise); never makes one."""
        return self._guard

    @property
    def firewall_possible(self) -> bool:
        return self.is_live and not self.firewall_refusal

    @property
    def firewall_on(self) -> bool:
        return self._guard is not None and self._guard.on

    @property
    def firewall_mode(self) -> str:
        """"allowlist" or "proxy" (only the proxies are let through) while on, "" when off."""
        g = self._guard
        return g.mode if g is not None else ""

    def firewall_summary(self) -> str:
        """The firewall in a few words for a status bar: "firewall off", "FIREWALL ON (3
        entries, 7 addresses)", "FIREWALL ON: proxy only (squid:3128)"; "" where there can
        be none."""
        if not self.firewall_possible:
            return ""
        g = self._guard
        if g is None or not g.on:
            return "firewall off"
        if g.mode == "proxy":
            eps = g.proxy.endpoints if g.proxy is not None else []
            shown = ", ".join(ep.authority for ep in eps[:3]) + (f" +{len(eps) - 3}" if len(eps) > 3 else "")
            return f"FIREWALL ON: proxy only ({shown})"
        entries, addresses = self.firewall_counts()
        return f"FIREWALL ON ({entries} entries, {addresses} addresses)"

    def apply_firewall(self, allowlist, reject: bool = False, check: bool = True,
                       proxy: ProxyConfig | None = None):
        """(plan, checks): the allowlist enforced in the container's namespace; with
        ``proxy``, proxy-only instead: only the proxies' addresses and ports (and DNS to the
        resolvers) are let through, and ``allowlist`` is not used (it still gives the verdicts
        on the names seen through the proxy)."""
        self.reapply_needed = False
        if proxy is not None:
            return self.guard.apply_proxy(proxy, reject, check)
        return self.guard.apply(allowlist, reject, check)

    def remove_firewall(self) -> None:
        self.guard.remove()

    def firewall_status(self):
        return self.guard.firewall.status()

    def firewall_state(self) -> dict | None:
        """The firewall as the session report records it; None where there can be none."""
        if not self.firewall_possible:
            return None
        try:
            st = self.firewall_status()
        except Exception as e:  # Docker or iptables failing: the report says so, in its place
            return {"on": None, "error": str(e)}
        state = {"on": st.on, "allowlist": st.allowlist, "dropped_packets": st.dropped_packets}
        if st.on:
            state["mode"] = st.mode or "allowlist"
            if st.mode == "proxy":
                state["proxies"] = st.proxies
        return state

    def firewall_counts(self) -> tuple[int, int] | None:
        """(allowlist entries, addresses let through) while the firewall is on, else None."""
        g = self._guard
        if g is None or not g.on:
            return None
        p = g.plan
        n = len(p.nets[4]) + len(p.nets[6]) + (len(p.ports[4]) + len(p.ports[6])) // 2
        return len(p.allowlist), n + g.learned

    def firewall_addresses(self) -> set[str] | None:
        """Addresses the firewall lets through now; None when it is off, and in proxy-only
        mode, where the allowlist's names are reached through the proxy, never directly."""
        g = self._guard
        if g is None or not g.on or g.mode == "proxy":
            return None
        addrs = set(g.plan.nets[4]) | set(g.plan.nets[6])
        addrs |= {k.split(",")[0] for k in list(g.plan.ports[4]) + list(g.plan.ports[6])}
        addrs |= g.learned_addresses()
        return addrs

    # -- runs ---------------------------------------------------------------------------------

    def new_run(self, spec: RunSpec) -> RunRecord:
        """The record of a run about to start (numbered, with the firewall's state now)."""
        if self.container is None or self.capturer is None:
            raise InspectionError(RERUN_NEEDS_ENGINE if self.namespace is not None
                                  else "reruns need a live container (not a replay)")
        proxy = self.run_proxy(spec)
        rec = RunRecord(len(self.runs) + 1, spec, self.container.name, firewall=self.firewall_on,
                        started=time.time(), proxy_env=proxy_names(proxy), proxy=proxy.to_json())
        self.runs.append(rec)
        return rec

    def run_proxy(self, spec: RunSpec) -> ProxyConfig:
        """The proxy settings a rerun has: the container's own (a command run in it inherits
        them), with whatever proxy variable the run's environment sets instead."""
        return run_proxy(self.container.proxy if self.container else ProxyConfig(), spec.env)

    def execute(self, rec: RunRecord, on_line: Callable[[str], None],
                stop: threading.Event | None = None) -> RunRecord:
        """Run the command in the container while capturing; the record gets its exit, its
        output's tail and the hosts reached during it. Failures land in ``rec.error``."""
        from egress_tui.live.execute import run_in_container
        tail: list[str] = []

        def line(text: str) -> None:
            tail.append(text)
            del tail[:-200]
            on_line(text)

        stop = stop or self._halt
        # the command inherits the container's proxy login: its output may print it
        hide = proxy_secrets(self.container.proxy) | proxy_secrets(self.run_proxy(rec.spec))
        att = self.attributor
        on_pid = (lambda pid: att.register_run(pid, run_tag(rec.number))) if att is not None else None
        rec.started = time.time()
        try:
            if self.container_engine is not None:
                rec.exit_code, rec.timed_out = self.container_engine.exec(self.container.id, rec.spec, line, stop,
                                                                          hide=hide, on_pid=on_pid)
            else:
                rec.exit_code, rec.timed_out = run_in_container(self.dc, self.container.id, rec.spec, line, stop,
                                                                hide=hide, on_pid=on_pid)
        except RunError as e:
            rec.error = str(e)  # already masked
        except Exception as e:  # Docker went away mid-run: recorded, not raised
            rec.error = redact(f"{type(e).__name__}: {e}", secret_values(rec.spec.env) | hide)
        rec.ended = time.time()
        stop.wait(LATE_PACKETS)
        rec.output_tail = tail
        with self.capturer.lock:
            rec.hosts = hosts_during(self.capturer.engine, rec.started, rec.ended + LATE_PACKETS)
        return rec

    # -- the end ------------------------------------------------------------------------------

    def close(self) -> None:
        """Release everything this inspection started; safe to call again, from any thread.
        The capture drains first, so the engine and the recording are whole afterwards."""
        with self._closing:  # a second caller waits until the first one is done
            self._close()

    def _close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
            guard = self._guard
        self._halt.set()
        self.stop_capture()
        if self.attributor is not None:
            self.attributor.stop()
        if guard is not None:
            for step in (guard.close, guard.firewall.runner.close):
                try:
                    step()
                except Exception as e:  # every step runs, whatever the one before did
                    self.notices.append(f"closing the firewall guard: {e}")
        if self.dc is not None and self.container is not None:
            # by label: also a helper whose creation was interrupted before we knew its id
            remove_helpers(self.dc, self.owner)
        if self._temporary_recording and self.recording:
            try:
                os.unlink(self.recording)
            except OSError:
                pass


def open_inspection(container: str | None = None, *, replay=None, speed: float = 1.0, source=None,
                    target: str = "", method: str = "auto", helper_image: str | None = None,
                    dc=None, guard=None, proxy: ProxyConfig | None = None, engine: str = "auto",
                    engines: list[ContainerEngine] | None = None, pid: int | None = None,
                    netns: str | None = None) -> Inspection:
    """The one way to build an inspection, for the CLI commands and the screen.

    ``container``: a name, id or id prefix; the capture method is decided here (``auto``:
    from the host when the engine is provably local and we are root, else a helper
    container; an explicit ``netns`` that cannot be proven is refused). Helpers left by an
    egress-tui process that is gone are removed first (said in ``notices``).
    ``replay``: a capture path or an opened CaptureInput, replayed ``speed`` times faster.
    ``source``: a capture source built by the caller (tests, the benchmark), and with it
    ``guard``: the firewall of a namespace that is not a container (the network lab's).
    ``proxy``: the proxies the target goes through: given for a capture file or a bare namespace
    (``--proxy``), else a container's own settings (its HTTP(S)_PROXY/NO_PROXY, read from the
    engine); their problems in ``notices``.
    ``engine``: which container engine (``auto``: every one that answers; the one that knows
    the container is used, and named in ``notices`` when it is not Docker); ``engines``: engines
    already connected (the screen's); ``dc``: a docker SDK client made by the caller (tests).
    ``pid`` / ``netns``: any process's network namespace, or one by path, with what /proc
    gives (no engine: the capture and the firewall work, reruns do not).
    Raises DockerError or InspectionError with one line.
    """
    if pid is not None or netns is not None:
        return _namespace_inspection(pid, netns, method, proxy)
    if replay is not None:
        name = replay if isinstance(replay, str) else replay.path
        return _said(Inspection(source=ReplaySource(replay, speed), method="replay", guard=guard, proxy=proxy,
                                target=target or ("stdin" if name == "-" else os.path.basename(name))))
    if source is not None:
        return _said(Inspection(source=source, method=method, target=target or getattr(source, "description", ""),
                                guard=guard, proxy=proxy))
    if not container:
        raise InspectionError("no container given")
    if dc is not None:
        engines = [wrap(dc)]
    eng, info, which = locate(container, engines or connect(engine))
    dc = eng.dc
    chosen = eng.choose_method(info, method)
    if chosen == "netns":
        refused = eng.enter_refusal()
        if refused:
            raise InspectionError(refused)
    image = helper_image or DEFAULT_HELPER_IMAGE
    insp = Inspection(dc=dc, container=info, method="netns (host)" if chosen == "netns" else f"helper {image}",
                      helper_image=image, proxy=proxy, container_engine=eng)
    if which and eng.name != "docker":
        insp.notices.append(which)
    orphans = reap_orphans(dc)
    if orphans:
        insp.notices.append(orphans)
    _said(insp)
    if proxy is not None and info.proxy:
        insp.notices.append(f"--proxy stands for {info.name}'s own settings ({info.proxy.summary()}) here; "
                            "commands rerun in the container still get its own")
    # a firewall on the host's own network would lock down this host, not the container
    insp.firewall_refusal = eng.host_network_refusal(info)
    try:
        insp.resolvers = eng.resolvers(info)
    except DockerError as e:  # the capture still works; the firewall says why not
        insp.notices.append(f"firewall unavailable: {e}")
    return insp


def _namespace_inspection(pid: int | None, netns: str | None, method: str, proxy: ProxyConfig | None) -> Inspection:
    """An inspection of a bare namespace: captured and firewalled from the host (as root)."""
    if pid is not None and netns is not None:
        raise InspectionError("give --pid or --netns, not both")
    if method == "helper":
        raise InspectionError("--method helper needs a container engine: a bare namespace (--pid, --netns) is "
                              "entered from the host, as root")
    if not containers.can_enter_namespaces():
        raise InspectionError("--pid and --netns enter the namespace from the host: run as root (sudo)")
    try:
        ns = namespace_of_pid(pid) if pid is not None else namespace_at(netns or "")
    except NamespaceError as e:
        raise InspectionError(str(e)) from None
    insp = Inspection(namespace=ns, method="netns (host)", proxy=proxy)
    insp.resolvers = list(ns.resolvers)
    insp.firewall_refusal = ns.host_refusal()
    insp.notices += ns.problems
    if not ns.resolvers:
        insp.notices.append(f"no nameserver in {ns.resolver_source}: DNS answers name nothing, and a firewall "
                            "would let no lookup through")
    return _said(insp)


def _said(insp: Inspection) -> Inspection:
    """Proxy settings that could not be read become notices, one masked line each: the
    capture goes on without them."""
    for problem in insp.proxy.problems:
        insp.notices.append(f"proxy setting of {insp.target} not understood: {problem}")
    return insp

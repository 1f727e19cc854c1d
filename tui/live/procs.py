"""Which process in the container opened a connection, looked up in a thread of its own.

This machine's kernel offers eBPF tools no kprobes and no ``sock`` tracepoints, so the way in
is ``/proc`` (``live/proctable.py`` reads it). Where it is read depends on the method:

- netns, as root: from the host, which sees every PID (``ProcTable`` here, entering the
  container's network namespace only for its sock_diag socket);
- helper: inside a helper container that shares the target's PID and network namespaces
  (``live/procs_helper.py``); its pids are the container's own.

The ``Attributor`` runs the lookups in a thread of its own. The capture thread hands it each
new flow (``Engine.on_new_flow`` -> ``request``) and applies the answers to its engine in its
own loop (``apply``, under the capture lock). Command lines are masked here, with the secrets
of the process's own environment (``core/secrets``), whichever side read them. Reruns are
tagged: ``register_run`` names a process (the rerun's wrapper shell) and every process
descended from it carries the run.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

from egress_tui.core.hosts import Lookup
from egress_tui.core.procs import UNKNOWN, ProcInfo
from egress_tui.core.secrets import mask_cmdline, secret_values
from egress_tui.live.proctable import CMDLINE_MAX, GONE, OUTSIDE, ProcTable, RawProc

RECENT_KEPT = 4096         # answers remembered, to tag with a run registered after them
PENDING_MAX = 4096         # lookups waiting at most: past that (a flood of flows), new ones are not looked up
_STOP = object()


class Unavailable(Exception):
    """No process can be looked up at all (a table raises it: the helper's agent could not
    start, or died); the message is one line for the user. Flows asked about meanwhile stay
    "not looked up", never "process unknown"."""


_RUN = object()


def proc_info(raw: RawProc, pid_ns: str = "") -> ProcInfo:
    """What a connection keeps of a process: its command line masked with the secrets of its
    own environment, the environment itself dropped."""
    cmdline = mask_cmdline(list(raw.argv), secret_values(dict(raw.env)))[:CMDLINE_MAX] + (" …" if raw.cut else "")
    return ProcInfo(pid=raw.pid, comm=raw.comm, exe=raw.exe, cmdline=cmdline, parents=raw.parents,
                    run=raw.run, pid_ns=pid_ns)


# -- the worker thread -----------------------------------------------------------------------


@dataclass
class AttributionStats:
    """What the attribution did so far (the benchmark and the status line read these)."""

    requested: int = 0
    attributed: int = 0
    unknown: int = 0
    errors: int = 0
    outside: int = 0          # sockets held by no process of the container (Docker's resolver)
    skipped: int = 0          # not looked up: too many waiting (a flood of new flows)
    seconds: float = 0.0      # spent looking up, in the worker thread
    last_error: str = ""


class Attributor:
    """Looks up, in a thread of its own, the process behind each flow the capture hands it.

    ``request`` (engine.on_new_flow) and ``apply`` run in the capture thread, which owns the
    engine; the lookups run here, and their answers wait in a queue until ``apply`` sets them
    on the connections (Engine.set_proc). ``init_pid``: the container's init, or a callable
    that tells it (a container that restarts gets a new one).
    """

    def __init__(self, init_pid: int | Callable[[], int], root: str = "/proc", table=None):
        self._pid_of = init_pid if callable(init_pid) else (lambda: init_pid)
        if table is None:
            from egress_tui.live.capture import setns_net
            table = ProcTable(self._pid_of(), root, enter=setns_net)
        # the table: a ProcTable read here, or an AgentTable asking a helper (live/procs_helper);
        # both answer lookup, register_run, set_init, close and carry init_pid
        self.table = table
        self.pid_ns = getattr(table, "pid_ns", "")   # "container" when pids are the container's
        self.refusal = ""                           # why no lookup can be done, once known
        self.ready = threading.Event()              # set once the table is open (or refused)
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._answers: deque = deque()              # (item, info), from the worker to apply()
        self._retags: deque = deque()               # (host pid, run) registered, for apply()
        self._recent: deque = deque(maxlen=RECENT_KEPT)  # (item, info) applied, for late run tags
        self._thread: threading.Thread | None = None
        self.stats = AttributionStats()
        self.idle = threading.Event()               # set while no lookup waits (tests, bench)
        self.idle.set()
        self._pending = 0
        self._count_lock = threading.Lock()

    # -- the capture thread's side -------------------------------------------------------------

    def request(self, item) -> None:
        """Look up the process of a new Conn or DNS Lookup (anything with proto, client, cport,
        server, sport): its answer comes back through ``apply``."""
        with self._count_lock:
            if self._pending >= PENDING_MAX:
                self.stats.skipped += 1  # its proc stays None: not looked up, which is what happened
                return
            self._pending += 1
            self.idle.clear()
        self._requests.put((item, item.proto, item.client, item.cport, item.server, item.sport))

    def apply(self, engine) -> int:
        """Set the answers that came back on the engine's connections; call it from the thread
        that owns the engine. Returns how many were applied."""
        n = 0
        answers = self._answers
        while answers:
            item, info = answers.popleft()
            engine.set_proc(item, info)
            if isinstance(info, ProcInfo) and not info.run:
                self._recent.append(item)
            n += 1
        while self._retags:
            pid, run = self._retags.popleft()
            self._tag(engine, pid, run)
        return n

    def _tag(self, engine, pid: int, run: str) -> None:
        """A run registered after some of its connections were looked up: tag those now."""
        for item in self._recent:
            info = item.proc
            if (isinstance(info, ProcInfo) and not info.run
                    and (info.pid == pid or any(p == pid for p, _c in info.parents))):
                if isinstance(item, Lookup):
                    continue  # a DNS query already counted under its untagged program
                engine.set_proc(item, replace(info, run=run))

    def register_run(self, pid: int, run: str, in_container: bool = True) -> None:
        """Process ``pid`` (as the container numbers it, e.g. the PID a rerun's wrapper
        prints; with ``in_container=False`` as the host does) is rerun ``run``: it and every
        process descended from it are tagged with it, including connections looked up before."""
        with self._count_lock:
            self._pending += 1
            self.idle.clear()
        self._requests.put((_RUN, pid, run, in_container))

    @property
    def pending(self) -> bool:
        """Answers wait for apply()."""
        return bool(self._answers) or bool(self._retags)

    # -- the thread ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="egress-procs", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Finish the lookups already asked for (within ``timeout``), then end the thread."""
        t = self._thread
        if t is None:
            self.table.close()
            return
        self._requests.put(_STOP)
        t.join(timeout)
        if not t.is_alive():
            self.table.close()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every lookup asked for so far has an answer waiting for apply()."""
        return self.idle.wait(timeout)

    def _loop(self) -> None:
        opener = getattr(self.table, "open", None)  # a helper's agent starts now, not on the first flow
        if opener is not None:
            try:
                opener()
            except Unavailable as e:
                self.refusal = str(e)
            except Exception as e:  # noqa: BLE001 - said, and every lookup is then refused too
                self.refusal = f"process lookup failed to start: {type(e).__name__}: {e}"
        self.ready.set()
        while True:
            req = self._requests.get()
            if req is _STOP:
                return
            try:
                if req[0] is _RUN:
                    self._register(*req[1:])
                else:
                    self._answer(*req)
            except Unavailable as e:  # no lookup can be done (the helper's agent is gone): not looked up
                self.refusal = str(e)
                self.stats.skipped += 1
            except Exception as e:  # a lookup must never end the thread: that one is unknown
                self.stats.errors += 1
                self.stats.last_error = f"{type(e).__name__}: {e}"
                if req[0] is not _RUN:
                    self._answers.append((req[0], UNKNOWN))
            finally:
                with self._count_lock:
                    self._pending -= 1
                    if self._pending <= 0:
                        self.idle.set()

    def _register(self, pid: int, run: str, in_container: bool) -> None:
        self._follow_init()
        self.table.forget_answers()  # an answer kept for a second lookup may be about to get the run
        got = self.table.register_run(pid, run, in_container)
        if got is not None:
            self._retags.append((got[0], run))

    def _follow_init(self) -> None:
        pid = self._pid_of()
        if pid and pid != self.table.init_pid:
            self.table.set_init(pid)

    def _answer(self, item, proto: int, client: bytes, cport: int, server: bytes, sport: int) -> None:
        t0 = time.perf_counter()
        self._follow_init()
        info = self.lookup(proto, client, cport, server, sport)
        self.stats.seconds += time.perf_counter() - t0
        self.stats.requested += 1
        if info == OUTSIDE:
            self.stats.outside += 1
            if isinstance(item, Lookup):
                return  # Docker's resolver forwarding the container's query: counted as the query was
            info = UNKNOWN
        elif info == UNKNOWN:
            self.stats.unknown += 1
        else:
            self.stats.attributed += 1
        self._answers.append((item, info))

    def lookup(self, proto: int, client: bytes, cport: int, server: bytes, sport: int) -> ProcInfo | str:
        """The process holding the flow's socket now; UNKNOWN when it is gone; OUTSIDE when no
        process of the container holds it (in the worker thread; the benchmark calls it directly)."""
        got = self.table.lookup(proto, client, cport, server, sport)
        if got == GONE:
            return UNKNOWN
        if isinstance(got, RawProc):
            return proc_info(got, self.pid_ns)
        return got

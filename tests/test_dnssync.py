"""The firewall's DNS-to-set updater without root: the Guard's own copy of the allowlist, its
worker thread behind a bounded queue, and what the screen says when updates are lost.

The Guard runs on an injected runner whose ``ipset restore`` is a pipe that records the lines
it is given and can be made to stop reading (a helper's exec stuck on the Docker API, an
ipset that hangs). The kernel side is in test_firewall.py (root, the network lab)."""

from __future__ import annotations

import threading
import time

import pytest

from egress_tui.core.allowlist import Allowlist, parse_entry
from egress_tui.core.engine import Engine
from egress_tui.firewall import dnssync
from egress_tui.firewall.apply import Firewall
from egress_tui.firewall.dnssync import Guard
from egress_tui.live.capture import Capturer, ReplaySource
from tests.pcapgen import dns_message, ether, ip, udp, write_pcap

CLIENT, RESOLVER = "198.18.0.10", "198.18.0.2"
PINNED = "198.18.64.1"   # what the fake resolver gives every exact name at apply time


class Pipe:
    """A persistent ``ipset restore`` as the updater sees it. With a ``gate``, every write
    waits until the gate opens (or the process is killed, which breaks the pipe)."""

    def __init__(self, gate: threading.Event | None):
        self.gate = gate
        self.lines: list[str] = []
        self.writing = threading.Event()
        self.killed = False
        self.stdin = self
        self.stderr = None

    def write(self, text: str) -> None:
        self.writing.set()
        if self.gate is not None:
            self.gate.wait()
        if self.killed:
            raise BrokenPipeError(32, "Broken pipe")
        self.lines += text.splitlines()

    def flush(self) -> None:
        pass

    def poll(self):
        return 0 if self.killed else None

    def close(self) -> None:
        pass

    def wait(self, timeout=None) -> int:
        return 0

    def kill(self) -> None:
        self.killed = True
        if self.gate is not None:
            self.gate.set()


class Runner:
    """Runs nothing: iptables and ipset calls succeed, exact names resolve to PINNED."""

    pid = None

    def __init__(self, gate: threading.Event | None = None):
        self.gate = gate
        self.pipes: list[Pipe] = []

    def check_tools(self) -> None:
        pass

    def run(self, tool, args, input=None, check=True) -> str:
        return ""

    def popen(self, tool, args) -> Pipe:
        self.pipes.append(Pipe(self.gate))
        return self.pipes[-1]

    def resolve(self, names, resolvers):
        return {n: [(PINNED, 60)] for n in names}

    def probes(self, targets):
        return ["connected" for _ in targets]

    def close(self) -> None:
        pass

    def in_sets(self) -> list[str]:
        """Addresses the updater added, minus those it deleted again, in order."""
        out: list[str] = []
        for p in self.pipes:
            for ln in p.lines:
                verb, name, member = ln.split()[:3]
                if name == dnssync.SYNC_SET:
                    continue
                addr = member.split(",")[0]
                if verb == "add" and addr not in out:
                    out.append(addr)
                elif verb == "del" and addr in out:
                    out.remove(addr)
        return out


def allow(text: str) -> Allowlist:
    al = Allowlist()
    al.add_text(text, "test")
    al.sources.append("test")
    return al


@pytest.fixture
def make_guard(monkeypatch, tmp_path):
    monkeypatch.setattr("egress_tui.firewall.apply.STATE_DIR", str(tmp_path))
    made: list[Guard] = []

    def make(gate=None, queue_size=dnssync.QUEUE_SIZE) -> tuple[Runner, Guard]:
        runner = Runner(gate)
        made.append(Guard(Firewall(runner, "test"), 1, [RESOLVER], queue_size=queue_size))
        return runner, made[-1]

    yield make
    for g in made:
        if g.updater.runner.gate is not None:
            g.updater.runner.gate.set()
        g.close()


def until(cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "egress-dns-sets"]


def test_the_firewall_keeps_the_allowlist_it_applied(make_guard):
    runner, guard = make_guard()
    session = allow("*.a.test\n")
    guard.apply(session, check=False)
    assert guard.carries(session)
    # `a` and `d` in the session, no re-apply
    session.add(parse_entry("*.b.test"))
    session.remove("*.a.test")
    assert not guard.carries(session)
    assert [e.pattern for e in guard.applied_entries] == ["*.a.test"]
    guard.on_dns_answer("x.b.test", "198.18.64.2", 300)
    guard.on_dns_answer("x.a.test", "198.18.64.3", 300)
    assert guard.flush()
    assert runner.in_sets() == ["198.18.64.3"]       # what was applied, not what the session says now
    # nor can a caller change it through what the guard hands out
    guard.allowlist.add(parse_entry("*.c.test"))
    guard.on_dns_answer("x.c.test", "198.18.64.4", 300)
    assert guard.flush() and runner.in_sets() == ["198.18.64.3"]
    # re-applied: the firewall carries the session's allowlist again
    guard.apply(session, check=False)
    assert guard.carries(session)
    guard.on_dns_answer("x.a.test", "198.18.64.5", 300)
    guard.on_dns_answer("x.b.test", "198.18.64.2", 300)
    assert guard.flush()
    assert "198.18.64.2" in runner.in_sets() and "198.18.64.5" not in runner.in_sets()


def test_carrying_ignores_order_and_comments_not_ports(make_guard):
    _runner, guard = make_guard()
    assert not guard.carries(allow("a.test\n"))                     # off carries nothing
    guard.apply(allow("a.test  # the API\nb.test:8443\n"), check=False)
    assert guard.carries(allow("b.test:8443\na.test\n"))
    assert not guard.carries(allow("a.test\nb.test\n"))
    guard.remove()
    assert not guard.on and not guard.carries(allow("a.test\nb.test:8443\n"))


def test_withdrawn_answers_leave_the_sets_but_applied_addresses_stay(make_guard):
    runner, guard = make_guard()
    guard.apply(allow("api.test\n*.cdn.test\n"), check=False)
    guard.on_dns_answer("x.cdn.test", "198.18.64.7", 300)
    guard.on_dns_answer("api.test", "198.18.64.8", 300)
    assert guard.flush() and runner.in_sets() == ["198.18.64.7", "198.18.64.8"]
    guard.on_dns_withdraw("x.cdn.test", "198.18.64.7")
    guard.on_dns_withdraw("api.test", PINNED)        # resolved at apply time: the plan keeps it
    assert guard.flush()
    assert runner.in_sets() == ["198.18.64.8"]
    assert not any(PINNED in ln for p in runner.pipes for ln in p.lines)


def dns_capture(path, names):
    frames = []
    t = 1_700_000_000.0
    for i, name in enumerate(names):
        q = dns_message(i, name, 1, [], False)
        a = dns_message(i, name, 1, [(name, 1, f"198.18.{64 + i // 250}.{1 + i % 250}")], True)
        frames.append((t + i * 0.001, ether(ip(CLIENT, RESOLVER, 17, udp(40000 + i, 53, q)))))
        frames.append((t + i * 0.001 + 0.0005, ether(ip(RESOLVER, CLIENT, 17, udp(53, 40000 + i, a)))))
    write_pcap(str(path), frames)


def test_a_stuck_ipset_never_holds_up_the_capture(make_guard, tmp_path):
    """ipset stops reading (a hung process, a helper's exec waiting on the engine): the capture
    thread still feeds the engine to the end, the updates that do not fit are counted, and
    those queued reach the sets once ipset reads again."""
    gate = threading.Event()
    runner, guard = make_guard(gate, queue_size=8)
    guard.apply(allow("*.rot.test\n"), check=False)
    names = [f"n{i}.rot.test" for i in range(200)]
    dns_capture(tmp_path / "dns.pcap", names)
    cap = Capturer(ReplaySource(str(tmp_path / "dns.pcap"), speed=0), lambda b: None,
                   engine=Engine(resolvers=[RESOLVER]))
    cap.engine.on_dns_answer = guard.on_dns_answer
    cap.start()
    cap.join(30)
    assert not cap.is_alive() and cap.error is None
    until(lambda: runner.pipes and runner.pipes[-1].writing.is_set())
    assert not runner.in_sets()                                         # the worker is still stuck
    with cap.lock:
        assert all(n in cap.engine.hosts for n in names)                # every answer was read
    assert 200 - 8 - 1 <= guard.dropped < 200
    gate.set()
    assert guard.flush()
    assert len(runner.in_sets()) == 200 - guard.dropped


def test_close_joins_a_worker_stuck_on_ipset(make_guard, monkeypatch):
    monkeypatch.setattr(dnssync, "JOIN_TIMEOUT", 0.2)
    runner, guard = make_guard(threading.Event())
    guard.apply(allow("*.rot.test\n"), check=False)
    assert len(workers()) == 1
    guard.on_dns_answer("a.rot.test", "198.18.64.1", 60)
    guard.on_dns_answer("b.rot.test", "198.18.64.2", 60)
    until(lambda: runner.pipes and runner.pipes[-1].writing.is_set())
    guard.close()                                  # ends the ipset under the stuck write
    assert workers() == []
    assert guard.flush(0)                          # nothing is left waiting
    assert guard.updater.errors == 1 and "Broken pipe" in guard.updater.last_error
    guard.on_dns_answer("c.rot.test", "198.18.64.3", 60)   # closed: nothing is queued any more
    assert guard.dropped == 0 and guard.flush(0)
    assert guard.on                                # close leaves the rules in force


def test_remove_stops_the_worker_and_apply_starts_it(make_guard):
    _runner, guard = make_guard()
    guard.apply(allow("a.test\n"), check=False)
    guard.apply(allow("b.test\n"), check=False)
    assert len(workers()) == 1
    guard.remove()
    assert workers() == [] and not guard.on
    guard.apply(allow("a.test\n"), check=False)
    assert len(workers()) == 1


def test_a_refused_line_is_counted_with_ipset_s_reason(make_guard):
    runner, guard = make_guard()
    guard.apply(allow("*.rot.test\n"), check=False)
    guard.on_dns_answer("a.rot.test", "198.18.64.1", 60)
    assert guard.flush()

    class Err:
        @staticmethod
        def read(n):
            return "ipset v7.17: Error in line 3: The set with the given name does not exist\n"

    runner.pipes[-1].killed = True                 # it exited after refusing a line
    runner.pipes[-1].stderr = Err
    guard.on_dns_answer("b.rot.test", "198.18.64.2", 60)
    assert guard.flush()
    assert guard.updater.errors == 1
    assert guard.updater.last_error == "ipset: ipset v7.17: Error in line 3: The set with the given name does not exist"
    assert runner.in_sets() == ["198.18.64.1", "198.18.64.2"]   # a new ipset took the next update



@pytest.mark.asyncio
async def test_the_status_bar_counts_what_the_firewall_lost(make_guard, monkeypatch):
    from egress_tui.ui.app import AppConfig, create_app
    from tests.pilot import screen_text
    from tests.pilot import until as until_shown
    monkeypatch.setattr(dnssync, "JOIN_TIMEOUT", 0.2)
    runner, guard = make_guard(threading.Event(), queue_size=2)
    from egress_tui.inspection import open_inspection
    from egress_tui.cli import demo_capture
    app = create_app(AppConfig(start_capture=False, presets=["anthropic"]))
    async with app.run_test(size=(200, 40), notifications=True) as pilot:
        app.show_inspection(open_inspection(replay=demo_capture(), speed=0, guard=guard))
        await pilot.press("f")
        await until_shown(pilot, lambda: "FIREWALL ON" in app.firewall_text, 10, "the firewall")
        assert "dropped" not in screen_text(app) and "errors" not in app.firewall_warning()
        guard.on_dns_answer("x.ingest.sentry.io", "198.18.64.1", 60)
        until(lambda: runner.pipes and runner.pipes[-1].writing.is_set())   # ipset stops reading
        for i in range(2, 11):
            guard.on_dns_answer("x.ingest.sentry.io", f"198.18.64.{i}", 60)
        app.refresh_status()
        await pilot.pause()
        assert "FIREWALL ON" in screen_text(app) and "DNS updates dropped: 7" in screen_text(app)
        guard.close()                                    # the stuck write breaks: an error, said once
        app.refresh_status()
        await pilot.pause()
        assert "DNS updates dropped: 7, set update errors: 1" in screen_text(app)
        said = [n.message for n in app._notifications]
        assert sum("a DNS set update failed: cannot write to ipset restore" in m for m in said) == 1

"""The engine's side of the process attribution: which flows it hands over (each new connection
once, each DNS query), and what an answer changes (the connection, the host's lookups)."""

from __future__ import annotations

from egress_tui.core import procs
from egress_tui.core.engine import Engine
from egress_tui.core.hosts import QUERY_PROCS_KEPT, Conn, Lookup
from egress_tui.core.procs import ProcInfo
from tests.pcapgen import Conversation, ip, python_client_hello, udp

C4, S4, R4 = "10.1.0.2", "198.18.64.10", "10.1.0.53"
CURL = ProcInfo(pid=4242, comm="curl", exe="/usr/bin/curl", cmdline="curl https://api.test/",
                parents=((4200, "sh"), (1, "tini")))


def feed(conv: Conversation) -> tuple[Engine, list]:
    eng = Engine(resolvers=[R4])
    seen: list = []
    eng.on_new_flow = seen.append
    for ts, frame in conv.frames:
        eng.feed(1, ts, frame)
    return eng, seen


def scenario() -> Conversation:
    conv = Conversation()
    conv.dns(C4, R4, "api.test", [("api.test", 1, S4)])
    seq, ack = conv.tcp_open(C4, 50000, S4, 443)
    conv.segments(C4, 50000, S4, 443, seq, ack, python_client_hello("api.test"), [])
    conv.emit(ip(C4, S4, 17, udp(50001, 443, b"\x40" + b"\0" * 40)))  # a UDP flow (short header)
    conv.emit(ip(S4, C4, 17, udp(443, 50001, b"\x40" + b"\0" * 40)))
    conv.emit(ip(C4, S4, 17, udp(50001, 443, b"\x40" + b"\0" * 40)))
    return conv


def test_each_new_flow_is_handed_over_once_and_each_dns_query():
    eng, seen = feed(scenario())
    lookups = [x for x in seen if isinstance(x, Lookup)]
    conns = [x for x in seen if isinstance(x, Conn)]
    assert [(lk.names, lk.cport, lk.sport) for lk in lookups] == [(("api.test",), 40000, 53)]
    assert sorted((c.transport, c.cport, c.sport) for c in conns) == [("tcp", 50000, 443), ("udp", 50001, 443)]
    assert all(c.proc is None for c in conns)  # handed over, not answered yet


def test_an_answer_lands_on_its_connection_and_marks_the_row_changed():
    eng, seen = feed(scenario())
    tcp = next(x for x in seen if isinstance(x, Conn) and x.transport == "tcp")
    eng.take_dirty()
    eng.set_proc(tcp, CURL)
    assert eng.take_dirty() == {"api.test"}
    assert tcp.to_dict()["process"] == {"pid": 4242, "comm": "curl", "exe": "/usr/bin/curl",
                                        "cmdline": "curl https://api.test/",
                                        "parents": [{"pid": 4200, "comm": "sh"}, {"pid": 1, "comm": "tini"}],
                                        "run": None, "pid_namespace": "host"}
    udp_conn = next(x for x in seen if isinstance(x, Conn) and x.transport == "udp")
    eng.set_proc(udp_conn, procs.UNKNOWN)
    assert udp_conn.to_dict()["process"] == procs.UNKNOWN


def test_dns_queries_count_per_program_not_per_process():
    eng, seen = feed(scenario())
    q = next(x for x in seen if isinstance(x, Lookup))
    eng.set_proc(q, CURL)
    again = Lookup(q.proto, q.client, q.cport, q.server, q.sport, q.names, q.first)
    # the same program from the same shell, run again: another process, the same key
    eng.set_proc(again, ProcInfo(pid=5000, comm="curl", exe="/usr/bin/curl", cmdline="curl https://api.test/",
                                 parents=((4999, "sh"), (1, "tini"))))
    eng.set_proc(Lookup(q.proto, q.client, q.cport, q.server, q.sport, q.names, q.first), procs.UNKNOWN)
    h = eng.hosts["api.test"]
    assert h.query_procs == {CURL.anonymous(): 2, procs.UNKNOWN: 1}
    key = next(iter(h.query_procs))
    assert key.pid == 0 and key.chain() == "curl ← sh ← tini"


def test_the_programs_counted_per_host_are_bounded():
    eng, seen = feed(scenario())
    q = next(x for x in seen if isinstance(x, Lookup))
    for i in range(QUERY_PROCS_KEPT + 5):
        eng.set_proc(Lookup(q.proto, q.client, q.cport, q.server, q.sport, q.names, q.first),
                     ProcInfo(pid=i + 10, comm=f"tool{i}"))
    h = eng.hosts["api.test"]
    assert len(h.query_procs) == QUERY_PROCS_KEPT and h.query_procs_other == 5


def test_without_an_attribution_nothing_is_looked_up():
    conv = scenario()
    eng = Engine(resolvers=[R4])
    for ts, frame in conv.frames:
        eng.feed(1, ts, frame)
    assert all(c.proc is None for h in eng.hosts.values() for c in h.conns)
    assert all(not h.query_procs for h in eng.hosts.values())


def test_dockers_resolver_passing_a_query_on_is_not_a_program_of_the_container():
    conv = Conversation()
    # a program asks Docker's resolver; the resolver asks upstream from the container's namespace
    conv.dns(C4, "127.0.0.11", "api.test", [("api.test", 1, S4)], sport=41000)
    conv.dns(C4, R4, "api.test", [("api.test", 1, S4)], sport=42000, ident=0x9999)
    # a program asking the upstream server itself, for another name: handed over
    conv.dns(C4, R4, "other.test", [("other.test", 1, S4)], sport=43000)
    eng = Engine(resolvers=["127.0.0.11", R4])
    seen: list = []
    eng.on_new_flow = seen.append
    for ts, frame in conv.frames:
        eng.feed(1, ts, frame)
    assert [(lk.names, lk.cport) for lk in seen] == [(("api.test",), 41000), (("other.test",), 43000)]
    assert eng.hosts["api.test"].queries == 2  # both still count as queries, as before

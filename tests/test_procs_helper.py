"""The helper method's process lookup, without Docker: the agent's code run as the helper runs
it (``python3 -c``, the two stdlib-only modules), here on the host; and the host's side fed
hostile answers (the agent shares namespaces with the watched container: what it says is
checked like anything else from there)."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys

import pytest

from egress_tui.live import procs_helper
from egress_tui.live.procs import Unavailable
from egress_tui.live.procs_helper import AgentTable, _raw, agent_source
from egress_tui.live.proctable import COMM_MAX, GONE, PARENTS_MAX


def ask(p: subprocess.Popen, req: dict | bytes) -> dict:
    p.stdin.write(req if isinstance(req, bytes) else json.dumps(req).encode() + b"\n")
    p.stdin.flush()
    return json.loads(p.stdout.readline())


# a client in the agent's namespaces: a loopback connection, held until its input ends
CLIENT = """
import os, socket, sys
srv = socket.create_server(("127.0.0.1", 0))
cli = socket.create_connection(srv.getsockname())
acc, _ = srv.accept()
print(os.getpid(), cli.getsockname()[1], srv.getsockname()[1], flush=True)
sys.stdin.read()
"""


@pytest.mark.root
@pytest.mark.netns
def test_the_agent_as_the_helper_runs_it_finds_a_socket_and_its_process():
    """The agent as ``python3 -c`` runs it in the helper, here as PID 1 of a new PID and network
    namespace (``unshare``) with its own /proc, like a helper sharing a container's; a client
    entered into both namespaces holds a loopback connection. Its pids are the namespace's."""
    p = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", "--net", sys.executable, "-c", agent_source()],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={"PATH": os.environ["PATH"]})
    client = None
    try:
        hello = json.loads(p.stdout.readline())
        assert hello["ready"] is True and hello["diag"] is True and hello["pid"] == 1
        agent = int(open(f"/proc/{p.pid}/task/{p.pid}/children").read().split()[0])  # as the host numbers it
        enter = ["nsenter", "-t", str(agent), "--net", "--pid", "--"]
        subprocess.run([*enter, "ip", "link", "set", "lo", "up"], check=True)
        client = subprocess.Popen([*enter, sys.executable, "-c", CLIENT], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        pid, lport, sport = map(int, client.stdout.readline().split())
        lo = socket.inet_aton("127.0.0.1").hex()
        flow = [6, lo, lport, lo, sport]
        got = ask(p, {"id": 1, "op": "lookup", "flow": flow})
        assert got["id"] == 1
        proc = _raw(got["answer"])
        # its pid in the namespace; nsenter, its parent, is outside it: no chain
        assert proc.pid == pid and proc.argv[0] == sys.executable and proc.parents == ()
        # a socket nobody has: gone, never a guess
        assert ask(p, {"id": 2, "op": "lookup", "flow": [6, lo, 1, lo, 1]}) == {"id": 2, "answer": GONE}
        # a run: the client, by the number the namespace gives it
        assert ask(p, {"id": 3, "op": "run", "pid": pid, "run": "7"})["answer"][0] == pid
        assert ask(p, {"id": 4, "op": "lookup", "flow": flow})["answer"]["run"] == "7"
        # nonsense is answered with an error, and the agent goes on
        assert "error" in ask(p, b"{not json\n")
        assert "error" in ask(p, {"id": 5, "op": "rm -rf /"})
        assert ask(p, {"id": 6, "op": "lookup", "flow": flow})["answer"]["pid"] == pid
        p.stdin.close()
        assert p.wait(10) == 0  # its input ended: it ends (and its namespace with it)
    finally:
        p.kill()
        p.wait()
        if client is not None:
            client.kill()
            client.wait()


WELL_FORMED = {"pid": 42, "start": 1000, "comm": "curl", "exe": "/usr/bin/curl", "argv": ["curl", "https://x.test/"],
               "cut": False, "env": [["HOME", "/root"]], "parents": [[1, "sh"]], "run": ""}


def test_a_well_formed_answer_reads_back():
    p = _raw(WELL_FORMED)
    assert (p.pid, p.comm, p.argv, p.parents, p.env) == (42, "curl", ("curl", "https://x.test/"), ((1, "sh"),),
                                                         (("HOME", "/root"),))


@pytest.mark.parametrize("field,value", [
    ("pid", True), ("pid", -1), ("pid", "42"), ("pid", 1 << 40), ("start", 1.5), ("comm", 7),
    ("argv", "curl"), ("env", [["A"]]), ("env", [[1, 2]]), ("parents", [[0, "sh"]]), ("parents", [["1", "sh"]]),
    ("parents", {"1": "sh"}),
])
def test_an_answer_of_the_wrong_shape_is_refused(field, value):
    with pytest.raises(ValueError):
        _raw({**WELL_FORMED, field: value})
    with pytest.raises(ValueError):
        _raw([WELL_FORMED])


def test_an_oversized_answer_is_cut_to_what_the_host_keeps():
    p = _raw({**WELL_FORMED, "comm": "c" * 10_000, "argv": ["a" * 3000] * 50,
              "parents": [[i + 1, "sh"] for i in range(1000)], "run": "r" * 1000})
    assert len(p.comm) == COMM_MAX and len(p.parents) == PARENTS_MAX and len(p.run) == 32
    assert len(p.argv) == 1 and p.cut  # what did not fit is said to be cut, never dropped silently


def frame(data: bytes, kind: int = 1) -> bytes:
    return struct.pack(">BxxxI", kind, len(data)) + data


class HostileAgent:
    """The host's end of an AgentTable wired to a socket pair: the test writes what an agent
    taken over by the container might."""

    def __init__(self, monkeypatch):
        monkeypatch.setattr(procs_helper, "ANSWER_TIMEOUT", 0.5)
        self.table = AgentTable(None, "id", "name", "image")
        self.table._sock, self.agent = socket.socketpair()
        self.table.close = lambda: None  # nothing to remove: there is no container

    def lookup(self):
        return self.table.lookup(6, b"\x7f\0\0\1", 1000, b"\x7f\0\0\1", 443)

    def answer(self, payload: bytes) -> None:
        self.agent.sendall(payload)


def test_docker_frames_split_anywhere_and_stderr_are_read_right(monkeypatch):
    h = HostileAgent(monkeypatch)
    line = json.dumps({"id": 1, "answer": WELL_FORMED}).encode() + b"\n"
    h.answer(frame(b"noise on stderr\n", kind=2) + frame(line[:7]) + frame(line[7:]))
    assert h.lookup().comm == "curl"


@pytest.mark.parametrize("payload,why", [
    (b"", "stopped answering"),                                    # silence
    (frame(b"x" * (procs_helper.LINE_MAX + 10)), "overlong"),     # a line that never ends
    (frame(b"<html>\n"), "not JSON"),
])
def test_a_hostile_or_silent_agent_makes_lookups_unavailable_not_wrong(monkeypatch, payload, why):
    h = HostileAgent(monkeypatch)
    h.answer(payload)
    with pytest.raises(Unavailable, match=why):
        h.lookup()
    with pytest.raises(Unavailable):  # and stays so: no new agent until the target restarts
        h.lookup()


def test_an_answer_to_another_question_is_skipped(monkeypatch):
    h = HostileAgent(monkeypatch)
    h.answer(frame(json.dumps({"id": 99, "answer": GONE}).encode() + b"\n"
                   + json.dumps({"id": 1, "answer": WELL_FORMED}).encode() + b"\n"))
    assert h.lookup().pid == 42


def test_an_agent_gone_says_so(monkeypatch):
    h = HostileAgent(monkeypatch)
    h.agent.close()
    with pytest.raises(Unavailable, match="gone|stopped"):
        h.lookup()

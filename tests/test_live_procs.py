"""Which process opened each connection, looked up from the host while the capture runs, with
real programs in the network lab's client namespace (what egress-tui does to a container):
curl from a shell, Python's urllib, two programs at once, a connection the firewall drops, a
process that exits right after connecting, a rerun's descendants, a hostile process."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from egress_tui.core import procs
from egress_tui.core.allowlist import Allowlist
from egress_tui.firewall.apply import plan_for
from egress_tui.firewall.runners import resolvers_of
from egress_tui.inspection import open_inspection
from egress_tui.live.capture import NetnsSource
from tests.lab.netlab import PROJECT_ROOT

pytestmark = [pytest.mark.root, pytest.mark.netns]

if os.geteuid() != 0:
    pytest.skip("looking up processes from the host needs root", allow_module_level=True)

PORT = 8080
@pytest.fixture(scope="module")
def watched(lab):
    """The lab's client namespace captured as a container is: open_inspection with the netns
    method, which starts the process attribution with the capture and stops it in close()."""
    # a server that answers GET /delay/MS after MS ms: a connection lives as long as a test wants
    slow = subprocess.Popen(["ip", "netns", "exec", lab.server_ns, sys.executable, "-m", "tests.lab.slowd", str(PORT)],
                            stdout=subprocess.PIPE, text=True, cwd=PROJECT_ROOT)
    try:
        assert slow.stdout.readline().startswith("READY")
        src = NetnsSource(lab.pid, "lab client", resolvers=resolvers_of(lab.pid))
        insp = open_inspection(source=src, target="lab client", method="netns (host)")
        try:
            insp.start_capture()
            assert insp.wait_ready(15), insp.error
            assert insp.attributor is not None and not insp.procs_refusal
            yield insp
        finally:
            insp.close()
    finally:
        slow.kill()
        slow.wait()


def looked_up(insp, name: str, count: int = 1, timeout: float = 15.0) -> list:
    """The connections to ``name`` once ``count`` of them are there, every one looked up."""
    deadline = time.monotonic() + timeout
    while True:
        with insp.capturer.lock:
            h = insp.engine.hosts.get(name)
            conns = list(h.conns) if h is not None else []
        if len(conns) >= count and all(c.proc is not None for c in conns):
            return conns
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}: {[(c.cport, c.proc) for c in conns]} after {timeout} s "
                                 f"({insp.attributor.stats})")
        time.sleep(0.05)


def test_curl_from_a_shell_with_its_parent_and_its_login_masked(lab, watched):
    r = lab.run_client(["sh", "-c", 'curl -s -o /dev/null "http://user:hunter22@shell.test:8080/delay/300"; echo $$'])
    sh_pid = int(r.stdout.strip())
    [c] = looked_up(watched, "shell.test")
    p = c.proc
    assert (p.comm, p.program) == ("curl", "curl") and p.exe.endswith("/curl")
    # sh's own parent is the test runner, outside the namespace: the chain ends at sh
    assert p.parents == ((sh_pid, "sh"),)
    assert p.chain() == "curl ← sh"
    assert "http://***@shell.test:8080/delay/300" in p.cmdline and "hunter22" not in p.cmdline
    assert p.run == ""


def test_python_urllib_with_a_secret_of_its_environment_masked(lab, watched):
    code = ("import os, sys, urllib.request; print(os.getpid(), flush=True); "
            "urllib.request.urlopen('http://urllib.test:8080/delay/300?key=' + sys.argv[1]).read()")
    token = "s3cr3t-value-42"
    r = lab.run_client([sys.executable, "-c", code, token], env={**os.environ, "MY_API_TOKEN": token})
    assert r.returncode == 0, r.stderr
    [c] = looked_up(watched, "urllib.test")
    p = c.proc
    assert p.pid == int(r.stdout.split()[0])
    assert p.program.startswith("python") and "urllib.request.urlopen" in p.cmdline
    assert token not in p.cmdline and "<hidden>" in p.cmdline
    assert p.parents == ()  # started by the test runner from outside the namespace


def test_two_programs_connecting_at_once_to_the_same_host_each_get_their_own(lab, watched):
    curl = lab.popen_client(["sh", "-c", 'echo $$; exec curl -s -o /dev/null -w "%{local_port}" '
                                         'http://both.test:8080/delay/500'], text=True)
    py = lab.popen_client([sys.executable, "-c",
                           "import os, socket; s = socket.create_connection(('both.test', 8080)); "
                           "print(os.getpid(), s.getsockname()[1], flush=True); "
                           "s.sendall(b'GET /delay/500 HTTP/1.1\\r\\nHost: both.test\\r\\n\\r\\n'); s.recv(100)"],
                          text=True)
    curl_pid, curl_port = map(int, curl.communicate(timeout=30)[0].split())
    py_pid, py_port = map(int, py.communicate(timeout=30)[0].split())
    by_port = {c.cport: c.proc for c in looked_up(watched, "both.test", 2)}
    assert by_port[curl_port].pid == curl_pid and by_port[curl_port].comm == "curl"
    assert by_port[py_port].pid == py_pid and by_port[py_port].program.startswith("python")


def test_a_connection_the_firewall_drops_is_attributed(lab, fw, watched):
    al = Allowlist()
    al.add_text("alpha.test\n")
    fw.apply(plan_for(lab.pid, al, resolvers_of(lab.pid)))
    # the SYN never leaves: seen through NFLOG, its socket waits in SYN_SENT meanwhile
    r = lab.run_client(["sh", "-c", "curl -s --max-time 2 http://denied.test:8080/; echo $$"])
    sh_pid = int(r.stdout.strip())
    conns = looked_up(watched, "denied.test")  # curl tries the IPv6 and the IPv4 address
    for c in conns:
        assert c.outcome == "unanswered"
        assert c.proc.comm == "curl" and c.proc.parents == ((sh_pid, "sh"),)


BRIEF = ("import os, socket, sys, time; s = socket.create_connection((sys.argv[1], 8080)); "
         "s.sendall(b'GET /delay/3000 HTTP/1.1\\r\\n\\r\\n'); print(os.getpid(), s.getsockname()[1], flush=True); "
         "time.sleep(float(sys.argv[2])); os._exit(0)")


def test_a_process_that_exits_right_after_connecting_is_never_misattributed(lab, watched):
    started = []
    # at once, and after a tenth of a second: the connection outlives nothing / 100 ms
    for hold in (0, 0, 0, 0, 0, 0.1, 0.1, 0.1):
        r = lab.run_client([sys.executable, "-c", BRIEF, "brief.test", str(hold)])
        pid, port = map(int, r.stdout.split())
        started.append((port, pid, hold))
    by_port = {c.cport: c.proc for c in looked_up(watched, "brief.test", len(started))}
    for port, pid, hold in started:
        got = by_port[port]
        if hold:
            assert got != procs.UNKNOWN and got.pid == pid, (hold, got)
        else:
            # too quick to catch, or caught: never another process
            assert got == procs.UNKNOWN or got.pid == pid, got


def test_a_rerun_tags_its_descendants_even_when_registered_late(lab, watched):
    att = watched.attributor
    # like a rerun's wrapper, the shell says its PID (as the container numbers it) from inside
    early = lab.popen_client(["sh", "-c", "echo $$; sleep 0.5; curl -s -o /dev/null http://run-early.test:8080/delay/200"],
                             text=True)
    att.register_run(int(early.stdout.readline()), "run 7")
    early.wait(30)
    [c] = looked_up(watched, "run-early.test")
    assert c.proc.comm == "curl" and c.proc.run == "run 7"

    late = lab.popen_client(["sh", "-c", "curl -s -o /dev/null http://run-late.test:8080/delay/200; sleep 2"])
    [c] = looked_up(watched, "run-late.test")
    assert c.proc.run == ""  # looked up before anyone said it was a run
    att.register_run(late.pid, "run 8")
    deadline = time.monotonic() + 10
    while c.proc.run != "run 8" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert c.proc.run == "run 8" and c.proc.parents[0] == (late.pid, "sh")
    late.wait(30)


DNS_CLIENT = r"""
import os, socket, struct, sys, time
q = struct.pack("!HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0) + b"\x04dnsq\x04test\x00" + struct.pack("!HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((sys.argv[1], 53))
s.send(q)
s.recv(512)
print(os.getpid(), flush=True)
time.sleep(0.3)
"""


def test_a_dns_query_counts_for_the_program_that_sent_it(lab, watched):
    r = lab.run_client([sys.executable, "-c", DNS_CLIENT, resolvers_of(lab.pid)[0]])
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 10
    while True:
        with watched.capturer.lock:
            h = watched.engine.hosts.get("dnsq.test")
            got = dict(h.query_procs) if h is not None else {}
        if got or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    [(who, n)] = got.items()
    assert n == 1 and who.program.startswith("python") and who.pid == 0 and "dnsq" in who.cmdline


HOSTILE = r"""
import ctypes, os, socket, sys, time
ctypes.CDLL(None).prctl(15, b"ev\xffil) 1 2 (x", 0, 0, 0)  # PR_SET_NAME: any bytes, 15 kept
s = socket.create_connection(("hostile.test", 8080))
s.sendall(b"GET /delay/300 HTTP/1.1\r\n\r\n")
print(os.getpid(), flush=True)
s.recv(100)
"""


def test_a_hostile_process_names_and_command_lines_are_data(lab, watched):
    argv = [b"py\xff\nthon\x1b[31m", b"-c", HOSTILE.encode(), b"\xfe" * 10_000]
    # exec the interpreter with an argv[0] and arguments that are not text at all
    r = subprocess.run(["ip", "netns", "exec", lab.client_ns, sys.executable, "-c",
                        "import os, sys; os.execv(sys.executable, [bytes.fromhex(a) for a in sys.argv[1:]])",
                        *[a.hex() for a in argv]], capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    [c] = looked_up(watched, "hostile.test")
    p = c.proc
    assert p.pid == int(r.stdout.split()[0])
    assert p.comm == "ev\ufffdil) 1 2 (x"  # stat's "(comm)" with ") " inside was read right
    assert len(p.cmdline) <= 4096 + 2 and "\ufffd" in p.cmdline and p.cmdline.startswith("py\ufffd\nthon")


SOCKETS = r"""
import os, socket, sys
v4, v6 = sys.argv[1], sys.argv[2]
held = {}
a = socket.create_connection((v4, 8080)); held["tcp4"] = a
b = socket.create_connection((v6, 8080)); held["tcp6"] = b
c = socket.socket(socket.AF_INET6); c.connect(("::ffff:" + v4, 8080)); held["tcp4-on-6"] = c  # dual stack
d = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); d.connect((v4, 443)); held["udp"] = d
e = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); e.sendto(b"x", (v4, 443)); held["udp-sendto"] = e
for kind, s in held.items():
    local, peer = s.getsockname(), s.getpeername() if kind != "udp-sendto" else (v4, 443)
    laddr = local[0].removeprefix("::ffff:") if kind == "tcp4-on-6" else local[0]
    if kind == "udp-sendto":
        laddr = "198.18.0.1"  # bound to the wildcard; the datagram left from the lab address
    print(kind, os.fstat(s.fileno()).st_ino, laddr, local[1], peer[0].removeprefix("::ffff:"), peer[1], flush=True)
print("END", flush=True)
sys.stdin.read()
"""


def test_sock_diag_and_the_proc_tables_find_the_same_sockets(lab, watched):
    """Each flow as the capture sees it (addresses as on the wire), looked up by the kernel's
    sock_diag and by the /proc/net tables (the fallback): the socket's own inode, its process."""
    import socket as sk
    from egress_tui.live.capture import setns_net
    from egress_tui.live.proctable import ProcTable
    v4, v6 = lab.address_for("sockets.test")
    p = lab.popen_client([sys.executable, "-c", SOCKETS, v4, v6], text=True, stdin=subprocess.PIPE)
    try:
        rows = []
        for line in iter(p.stdout.readline, "END\n"):
            kind, ino, laddr, lport, raddr, rport = line.split()
            rows.append((kind, int(ino), laddr, int(lport), raddr, int(rport)))
        assert len(rows) == 5
        diag, tables = ProcTable(lab.pid, enter=setns_net), ProcTable(lab.pid, sock_diag=False)
        flows = []
        assert diag.diag is not None and tables.diag is None
        for kind, ino, laddr, lport, raddr, rport in rows:
            fam = sk.AF_INET6 if ":" in laddr else sk.AF_INET
            flow = (17 if kind.startswith("udp") else 6, sk.inet_pton(fam, laddr), lport, sk.inet_pton(fam, raddr), rport)
            assert diag.socket_inodes(*flow) == {ino}, kind
            assert tables.socket_inodes(*flow) == {ino}, kind
            held = diag.holder(ino)
            assert held is not None and held[0] == p.pid and diag.info(*held).pid == p.pid
            flows.append(flow)
    finally:
        p.kill()
        p.wait()
    # the process is gone, and its sockets with it (closing, held by nobody): nothing is found
    for flow in flows:
        assert diag.socket_inodes(*flow) == set() and tables.socket_inodes(*flow) == set(), flow
    diag.close()
